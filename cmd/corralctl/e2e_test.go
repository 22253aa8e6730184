package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// binDir holds the corrald and corralctl binaries that the end-to-end test
// builds once.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "corralctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var buildOnce sync.Once

// binaries builds corrald and corralctl with one go build, the first time
// a test asks for them, and returns their paths.
func binaries(t *testing.T) (corrald, corralctl string) {
	t.Helper()
	buildOnce.Do(func() { testenv.Build(t, binDir, "../corrald", ".") })
	return filepath.Join(binDir, "corrald"), filepath.Join(binDir, "corralctl")
}

// ctlResult is what one run of the corralctl binary did.
type ctlResult struct {
	stdout, stderr string
	code           int
}

// ctlRunner runs the corralctl binary against one corrald.
type ctlRunner struct {
	t   *testing.T
	bin string
	env []string
}

func newCtlRunner(t *testing.T, bin, endpoint, tokenFile string) *ctlRunner {
	home := t.TempDir() // no configuration file of the user's
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CORRAL_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		envEndpoint+"="+endpoint, envTokenFile+"="+tokenFile)
	return &ctlRunner{t: t, bin: bin, env: env}
}

// run runs corralctl with args and returns its outputs and exit status.
func (r *ctlRunner) run(args ...string) ctlResult {
	r.t.Helper()
	cmd := exec.Command(r.bin, args...)
	cmd.Env = r.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := ctlResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		r.t.Fatalf("corralctl %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// ok runs corralctl and fails the test unless it exits 0.
func (r *ctlRunner) ok(args ...string) string {
	r.t.Helper()
	res := r.run(args...)
	if res.code != 0 {
		r.t.Fatalf("corralctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

// okJSON runs corralctl with -o json and decodes its output into out.
func (r *ctlRunner) okJSON(out any, args ...string) {
	r.t.Helper()
	stdout := r.ok(append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		r.t.Fatalf("corralctl %s: output is not the JSON expected: %v\n%s", strings.Join(args, " "), err, stdout)
	}
}

// fails runs corralctl, expects exit status code and returns stderr.
func (r *ctlRunner) fails(code int, args ...string) string {
	r.t.Helper()
	res := r.run(args...)
	if res.code != code {
		r.t.Fatalf("corralctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.code, code, res.stdout, res.stderr)
	}
	return res.stderr
}

// TestEndToEnd drives the real corralctl binary against a real corrald on
// SQLite: the catalogue, an image upload, servers in both output formats,
// updates, an in-use flavor, idempotent creates, a reader's refused create
// and clean deletion.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs corrald")
	}
	corrald, corralctl := binaries(t)
	cd := testenv.StartCorrald(t, corrald)
	endpoint, tokenFile := cd.Endpoint, cd.TokenFile
	ctl := newCtlRunner(t, corralctl, endpoint, tokenFile)

	// The catalogue.
	var region types.Region
	ctl.okJSON(&region, "region", "create", "dc1", "--description", "first datacenter")
	var zone types.Zone
	ctl.okJSON(&zone, "zone", "create", "rack1", "--region", "dc1")
	if zone.RegionID != region.ID {
		t.Errorf("zone in region %q, want %q", zone.RegionID, region.ID)
	}
	var agg types.Aggregate
	ctl.okJSON(&agg, "aggregate", "create", "general", "--traits", "ssd,avx2", "--cpu-allocation-ratio", "4")
	if diff := cmp.Diff([]string{"ssd", "avx2"}, agg.Traits); diff != "" || agg.CPUAllocationRatio != 4 || agg.RAMAllocationRatio != 1 {
		t.Errorf("aggregate %+v: traits (-want +got):\n%s", agg, diff)
	}
	var flavor types.Flavor
	ctl.okJSON(&flavor, "flavor", "create", "m1.small", "--vcpus", "2", "--ram-mib", "2048", "--disk-gib", "20")
	var project types.Project
	ctl.okJSON(&project, "project", "create", "games")

	// A compute host for servers to be placed on, registered as its agent
	// would and heartbeating measured free memory.
	adminTok, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	api := client.New(endpoint, strings.TrimSpace(string(adminTok)), nil)
	reg, err := api.RegisterHost(context.Background(), types.HostRegister{Name: "hv1", Region: "dc1", Zone: "rack1",
		Aggregates: []string{"general"}, Inventory: types.Inventory{CPUs: 16, RAMMiB: 65536, DiskGiB: 500}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := api.WithToken(reg.Token).Heartbeat(context.Background(), reg.Host.ID, types.Usage{MemFreeMiB: 60000}); err != nil {
		t.Fatal(err)
	}

	// An image, uploaded from a file: a real qcow2, since corrald checks
	// that the data is what disk_format says.
	imgPath := filepath.Join(t.TempDir(), "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", imgPath, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	data, err := os.ReadFile(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	var image types.Image
	ctl.okJSON(&image, "image", "create", "debian-12", "--disk-format", "qcow2", "--file", imgPath)
	sum := sha256.Sum256(data)
	if image.Status != types.ImageActive || image.SizeBytes != int64(len(data)) || image.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("image after upload: status %q, %d bytes, sha256 %s; want active, %d bytes, %x",
			image.Status, image.SizeBytes, image.SHA256, len(data), sum)
	}

	// A server.
	var web1 types.Server
	ctl.okJSON(&web1, "server", "create", "web-1", "--kind", "vm", "--flavor", "m1.small", "--image", "debian-12",
		"--project", "games", "--region", "dc1", "--zone", "rack1", "--aggregate", "general")
	want := types.Server{Meta: web1.Meta, Name: "web-1", Kind: "vm", ProjectID: project.ID, FlavorID: flavor.ID, ImageID: image.ID,
		RegionID: region.ID, ZoneID: zone.ID, AggregateID: agg.ID, DesiredState: "active", State: "scheduled", HostID: reg.Host.ID, Addresses: []types.Address{}}
	if diff := cmp.Diff(want, web1); diff != "" {
		t.Errorf("created server (-want +got):\n%s", diff)
	}

	// List: JSON is the array of items, the table has the server's row.
	var servers []types.Server
	ctl.okJSON(&servers, "server", "list", "--all")
	if len(servers) != 1 || servers[0].ID != web1.ID {
		t.Errorf("server list -o json: %+v, want only %s", servers, web1.ID)
	}
	table := strings.Split(strings.TrimSpace(ctl.ok("server", "list", "--project", "games")), "\n")
	if len(table) != 2 {
		t.Fatalf("server list: %d lines, want a header and one row:\n%s", len(table), strings.Join(table, "\n"))
	}
	if diff := cmp.Diff([]string{"ID", "NAME", "KIND", "STATE", "PROJECT", "FLAVOR", "HOST"}, strings.Fields(table[0])); diff != "" {
		t.Errorf("server list header (-want +got):\n%s", diff)
	}
	// Tables name the project, flavor and host.
	if diff := cmp.Diff([]string{web1.ID, "web-1", "vm", "scheduled", "games", "m1.small", "hv1"}, strings.Fields(table[1])); diff != "" {
		t.Errorf("server list row (-want +got):\n%s", diff)
	}

	// Show, by name in table form and by ID in JSON.
	shown := keyValues(t, ctl.ok("server", "show", "web-1"))
	for k, v := range map[string]string{"id": web1.ID, "name": "web-1", "state": "scheduled", "project_id": project.ID, "addresses": "-"} {
		if shown[k] != v {
			t.Errorf("server show web-1: %s is %q, want %q", k, shown[k], v)
		}
	}
	var got types.Server
	ctl.okJSON(&got, "server", "show", web1.ID)
	if diff := cmp.Diff(web1, got); diff != "" {
		t.Errorf("server show -o json (-want +got):\n%s", diff)
	}

	// Update, conditional on the revision.
	ctl.okJSON(&got, "server", "update", "web-1", "--desired-state", "stopped", "--if-match", "1")
	if got.DesiredState != "stopped" || got.Revision != 2 {
		t.Errorf("after update: desired state %q at revision %d, want stopped at 2", got.DesiredState, got.Revision)
	}
	stderr := ctl.fails(1, "server", "update", "web-1", "--desired-state", "active", "--if-match", "1")
	if !strings.HasPrefix(stderr, "corralctl: precondition_failed: ") {
		t.Errorf("stale update: stderr %q, want a precondition_failed error", stderr)
	}

	// A flavor in use cannot go, and the error names its user.
	stderr = ctl.fails(1, "flavor", "delete", "m1.small")
	if !strings.Contains(stderr, "corralctl: flavor_in_use: ") || !strings.Contains(stderr, "web-1") ||
		!strings.Contains(stderr, web1.ID) {
		t.Errorf("flavor delete of a flavor in use: stderr %q, want flavor_in_use naming web-1 (%s)", stderr, web1.ID)
	}

	// The same Idempotency-Key twice creates one server.
	var first, second types.Server
	args := []string{"server", "create", "web-2", "--flavor", "m1.small", "--image", "debian-12", "--project", "games",
		"--idempotency-key", "e2e-web-2"}
	ctl.okJSON(&first, args...)
	ctl.okJSON(&second, args...)
	if first.ID != second.ID {
		t.Errorf("same idempotency key: servers %s and %s, want one", first.ID, second.ID)
	}
	ctl.okJSON(&servers, "server", "list", "--name", "web-2")
	if len(servers) != 1 {
		t.Errorf("after two creates with one key: %d servers called web-2, want 1", len(servers))
	}

	// A reader may read but not create.
	var tok types.TokenCreated
	ctl.okJSON(&tok, "token", "create", "e2e-reader", "--role", "reader", "--expires-in", "1h")
	if tok.Secret == "" || tok.Role != types.RoleReader {
		t.Fatalf("token create: %+v, want a reader token with a secret", tok)
	}
	ctl.okJSON(&servers, "--token", tok.Secret, "server", "list")
	if len(servers) != 2 {
		t.Errorf("reader lists %d servers, want 2", len(servers))
	}
	res := ctl.run("--token", tok.Secret, "server", "create", "web-3", "--flavor", "m1.small", "--image", "debian-12", "--project", "games")
	if res.code != 1 || !strings.HasPrefix(res.stderr, "corralctl: forbidden: ") {
		t.Errorf("reader's server create: exit %d, stderr %q; want 1 and a forbidden error", res.code, res.stderr)
	}
	ctl.okJSON(&servers, "server", "list", "--name", "web-3")
	if len(servers) != 0 {
		t.Errorf("the reader's refused create made %d servers", len(servers))
	}

	// A usage error exits 2 and calls nothing.
	if stderr := ctl.fails(2, "server", "create", "web-4", "--image", "debian-12"); !strings.Contains(stderr, `"flavor"`) {
		t.Errorf("server create without --flavor: stderr %q, want it to name the flag", stderr)
	}

	// Clean up: the servers, then the flavor they used.
	if out := ctl.ok("server", "delete", "web-1", second.ID); out != "deleted server web-1\ndeleted server "+second.ID+"\n" {
		t.Errorf("server delete printed %q", out)
	}
	ctl.okJSON(&servers, "server", "list")
	if len(servers) != 0 {
		t.Errorf("after delete: %d servers, want none", len(servers))
	}
	ctl.ok("flavor", "delete", "m1.small")
	var flavors []types.Flavor
	ctl.okJSON(&flavors, "flavor", "list")
	if len(flavors) != 0 {
		t.Errorf("after delete: flavors %+v, want none", flavors)
	}
}

// keyValues reads the "key: value" lines of show.
func keyValues(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("show: line %q is not key: value", line)
		}
		m[k] = strings.TrimSpace(v)
	}
	return m
}
