package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/compute"
)

// corralctl runs the corralctl binary against the rig's corrald as admin
// and returns its stdout, stderr and exit status.
func (r *rig) corralctl(args ...string) (string, string, int) {
	r.t.Helper()
	home := r.t.TempDir()
	cmd := exec.Command(filepath.Join(r.bins, "corralctl"), args...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CORRAL_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"CORRAL_ENDPOINT="+r.cd.Endpoint, "CORRAL_TOKEN_FILE="+r.cd.TokenFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		r.t.Fatalf("corralctl %s: %v", strings.Join(args, " "), err)
	}
	return stdout.String(), stderr.String(), code
}

// byName finds a server by name.
func (r *rig) byName(name string) (types.Server, error) {
	l, err := r.api.Servers().List(r.t.Context(), url.Values{"name": {name}})
	if err != nil {
		return types.Server{}, err
	}
	if len(l.Items) != 1 {
		return types.Server{}, fmt.Errorf("%d servers called %s", len(l.Items), name)
	}
	return l.Items[0], nil
}

// TestCorralctlWait is acceptance item 6 of issue 15 (the --wait half):
// "corralctl server create … --wait" against a real corrald, a real agent
// and a real libvirt guest returns only when the guest is active, its
// domain running and its console showing the readiness marker; stop and
// delete with --wait return when the guest is stopped and gone; and a
// create whose guest fails on the host (its image's data rotted in
// corrald's image store, so the agent's checksum refuses it) makes
// --wait exit 1 with the server's reason.
func TestCorralctlWait(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.flavor("wt1", types.FlavorCreate{})
	name := "wt-" + randHex(3)
	r.waitPlaceable(types.ServerCreate{Name: name, Kind: types.KindVM, Project: "p1", Flavor: "wt1", Image: "tiny"})

	start := time.Now()
	stdout, stderr, code := r.corralctl("server", "create", name, "--flavor", "wt1", "--image", "tiny", "--project", "p1",
		"--wait", "--wait-timeout", "4m", "-o", "json")
	took := time.Since(start)
	// Look at once: --wait must not have returned before the guest ran.
	srv, err := r.byName(name)
	if err == nil {
		r.track(srv.ID)
	}
	if code != 0 {
		t.Fatalf("server create --wait: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if srv.State != types.ServerActive || srv.Observed == nil || srv.Observed.DomainID <= 0 {
		t.Fatalf("corralctl returned after %s with the server %s (observed %+v), want active with a running domain", took, srv.State, srv.Observed)
	}
	if st := strings.TrimSpace(virsh(t, "domstate", compute.DomainName(srv.ID))); st != "running" {
		t.Errorf("domain of %s is %q when --wait returned, want running", name, st)
	}
	for _, want := range []string{"server " + name + ": active"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(stderr, "scheduled") && !strings.Contains(stderr, "building") {
		t.Errorf("stderr shows no state before active:\n%s", stderr)
	}
	if !strings.Contains(stdout, `"state": "active"`) {
		t.Errorf("stdout is not the active server:\n%s", stdout)
	}
	t.Logf("create --wait returned after %s; progress:\n%s", took, stderr)
	r.waitMarker(srv.ID, name, 3*time.Minute)

	stdout, stderr, code = r.corralctl("server", "stop", name, "--wait", "--wait-timeout", "3m")
	if code != 0 {
		t.Fatalf("server stop --wait: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if s, err := r.api.Servers().Get(ctx, srv.ID); err != nil || s.State != types.ServerStopped {
		t.Fatalf("after stop --wait: %s (error %v), want stopped", s.State, err)
	}
	if st := strings.TrimSpace(virsh(t, "domstate", compute.DomainName(srv.ID))); st != "shut off" {
		t.Errorf("domain is %q after stop --wait, want shut off", st)
	}

	stdout, stderr, code = r.corralctl("server", "delete", name, "--wait", "--wait-timeout", "3m")
	if code != 0 {
		t.Fatalf("server delete --wait: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if _, err := r.api.Servers().Get(ctx, srv.ID); client.Code(err) != types.CodeNotFound {
		t.Fatalf("after delete --wait the server answers %v, want not_found", err)
	}
	if !strings.Contains(stderr, "server "+name+": gone") {
		t.Errorf("stderr lacks the end of the deletion:\n%s", stderr)
	}
	if out, err := exec.Command("virsh", "-q", "domstate", compute.DomainName(srv.ID)).CombinedOutput(); err == nil {
		t.Errorf("domain of %s still defined after delete --wait: %s", name, out)
	}

	// A create that ends in error: upload an image, then rot its data in
	// corrald's store (same size, other bytes), as a failing disk would.
	img, err := r.api.Images().Create(ctx, types.ImageCreate{Name: "rotten", DiskFormat: "qcow2"}, "")
	if err != nil {
		t.Fatal(err)
	}
	// Data of its own (the agent caches images by checksum): an empty disk.
	file := filepath.Join(t.TempDir(), "rotten.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", file, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.api.UploadImage(ctx, img.ID, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	stored := filepath.Join(r.cd.DataDir, "images", img.ID)
	data, err := os.ReadFile(stored)
	if err != nil {
		t.Fatalf("the image's data in corrald's store: %v", err)
	}
	for i := len(data) - 4096; i < len(data); i++ {
		data[i] ^= 0xff
	}
	if err := os.WriteFile(stored, data, 0o640); err != nil {
		t.Fatal(err)
	}
	bad := "wt-bad-" + randHex(3)
	r.waitPlaceable(types.ServerCreate{Name: bad, Kind: types.KindVM, Project: "p1", Flavor: "wt1", Image: "rotten"})
	stdout, stderr, code = r.corralctl("server", "create", bad, "--flavor", "wt1", "--image", "rotten", "--project", "p1",
		"--wait", "--wait-timeout", "3m")
	if s, err := r.byName(bad); err == nil {
		r.track(s.ID)
		if s.State != types.ServerError {
			t.Errorf("server %s is %s after a failed --wait, want error", bad, s.State)
		}
	}
	if code != 1 {
		t.Fatalf("server create --wait of a guest that fails: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"corralctl: server " + bad + " is error:", "checksum mismatch"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	t.Logf("failed create --wait:\n%s", stderr)
}
