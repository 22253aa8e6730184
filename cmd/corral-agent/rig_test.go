package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/compute"
)

// A rig is corrald plus a real corral-agent running guests through the
// machine's libvirt and Open vSwitch, on a bridge of its own.

var (
	guestOnce sync.Once
	guestDir  string
	guestErr  error
)

// rigBinaries builds corrald, corral-agent and corralctl once per test run.
func rigBinaries(t testing.TB) string {
	return testenv.Binaries(t, "../corrald", ".", "../corralctl")
}

// guestImage returns the directory of the test guest (vmlinuz, initrd.gz,
// boot.qcow2): CORRAL_TEST_GUEST_IMAGE, or built once with the project's
// script.
func guestImage(t testing.TB) string {
	if d := os.Getenv("CORRAL_TEST_GUEST_IMAGE"); d != "" {
		return d
	}
	guestOnce.Do(func() {
		guestDir, guestErr = os.MkdirTemp("", "corral-guest-")
		if guestErr != nil {
			return
		}
		os.Chmod(guestDir, 0o755)
		out, err := exec.Command("bash", "../../compute/guestimage/build.sh", guestDir).CombinedOutput()
		if err != nil {
			guestErr = fmt.Errorf("build guest image: %v: %s", err, out)
		}
	})
	if guestErr != nil {
		t.Fatal(guestErr)
	}
	return guestDir
}

type rig struct {
	t        testing.TB
	bins     string
	dir      string // world-traversable: libvirt's qemu reads guest files here
	cd       *testenv.Corrald
	api      *client.Client
	bridge   string
	host     string
	agent    *testenv.Process
	agentN   int
	imageID  string
	mu       sync.Mutex
	servers  []string
	extraArg []string
	// network runs the agent's network loop: guests then reach only
	// what their ports and security groups allow.
	network bool
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newRig(t testing.TB, agentArgs ...string) *rig {
	t.Helper()
	return newRigWith(t, false, agentArgs...)
}

// newRigWith makes a rig whose agent runs its network loop if network.
func newRigWith(t testing.TB, network bool, agentArgs ...string) *rig {
	t.Helper()
	return newRigFull(t, network, nil, agentArgs...)
}

// newRigFull makes a rig whose corrald also gets corraldArgs.
func newRigFull(t testing.TB, network bool, corraldArgs []string, agentArgs ...string) *rig {
	t.Helper()
	testenv.Require(t, "CORRAL_TEST_LIBVIRT", "libvirt (libvirtd and virtlogd running)")
	testenv.Require(t, "CORRAL_TEST_OVS", "Open vSwitch (ovs-vswitchd running)")
	r := &rig{t: t, bins: rigBinaries(t), extraArg: agentArgs, network: network}
	var err error
	if r.dir, err = os.MkdirTemp("", "corral-rig-"); err != nil {
		t.Fatal(err)
	}
	os.Chmod(r.dir, 0o755)
	id := randHex(3)
	r.bridge, r.host = "brc"+id, "rig-"+id
	r.cd = testenv.StartCorrald(t, filepath.Join(r.bins, "corrald"), corraldArgs...)
	r.api = r.cd.Admin
	t.Cleanup(r.cleanup)

	ctx := t.Context()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ratio := 16.0
	must(client.Create[types.Region](ctx, r.api, "/v1/regions", types.RegionCreate{Name: "dc1"}, ""))
	must(client.Create[types.Zone](ctx, r.api, "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, ""))
	must(client.Create[types.Aggregate](ctx, r.api, "/v1/aggregates", types.AggregateCreate{Name: "rig", CPUAllocationRatio: &ratio}, ""))
	must(client.Create[types.Project](ctx, r.api, "/v1/projects", types.ProjectCreate{Name: "p1"}, ""))
	img, err := client.Create[types.Image](ctx, r.api, "/v1/images", types.ImageCreate{Name: "tiny", DiskFormat: "qcow2"}, "")
	must(img, err)
	f, err := os.Open(filepath.Join(guestImage(t), "boot.qcow2"))
	must(f, err)
	defer f.Close()
	must(r.api.UploadImage(ctx, img.ID, f))
	r.imageID = img.ID
	r.startAgent()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		h, err := client.Get[types.Host](ctx, r.api, "/v1/hosts/"+r.host)
		if err == nil && h.State == types.HostUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s did not come up: %v", r.host, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return r
}

// startAgent starts (another) corral-agent process for the rig's host.
func (r *rig) startAgent() {
	r.agentN++
	state := filepath.Join(r.dir, "agent")
	args := append([]string{"--endpoint", r.cd.Endpoint, "--registration-token-file", r.cd.TokenFile,
		"--name", r.host, "--region", "dc1", "--zone", "rack1", "--aggregates", "rig", "--state-dir", state,
		"--domain-type", "qemu", "--bridge", r.bridge, "--stop-timeout", "3s", "--heartbeat-interval", "1s",
		"--log-level", "debug", "--network=" + fmt.Sprint(r.network)}, r.extraArg...)
	r.agent = testenv.Start(r.t, filepath.Join(r.dir, fmt.Sprintf("agent-%d.log", r.agentN)), filepath.Join(r.bins, "corral-agent"), args...)
}

// killAgent kills the agent with SIGKILL and waits for it to be gone.
func (r *rig) killAgent() {
	r.agent.Cmd.Process.Kill()
	<-r.agent.Exited
}

func (r *rig) cleanup() {
	if r.t.Failed() {
		for i := 1; i <= r.agentN; i++ {
			b, _ := os.ReadFile(filepath.Join(r.dir, fmt.Sprintf("agent-%d.log", i)))
			r.t.Logf("agent-%d log (tail):\n%s", i, tail(string(b), 60))
		}
	}
	if r.agent != nil {
		r.agent.Cmd.Process.Kill()
		<-r.agent.Exited
	}
	r.mu.Lock()
	ids := append([]string(nil), r.servers...)
	r.mu.Unlock()
	for _, id := range ids {
		name := compute.DomainName(id)
		exec.Command("virsh", "-q", "destroy", name).Run()
		exec.Command("virsh", "-q", "undefine", name).Run()
	}
	exec.Command("ovs-vsctl", "--if-exists", "del-br", r.bridge).Run()
	r.cleanupDHCP()
	os.RemoveAll(r.dir)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (r *rig) flavor(name string, in types.FlavorCreate) {
	r.t.Helper()
	in.Name = name
	if in.VCPUs == 0 {
		in.VCPUs, in.RAMMiB, in.DiskGiB = 1, 128, 1
	}
	if _, err := client.Create[types.Flavor](r.t.Context(), r.api, "/v1/flavors", in, ""); err != nil {
		r.t.Fatal(err)
	}
}

// create creates a VM through the API and tracks it for cleanup.
func (r *rig) create(name, flavor string) types.Server {
	r.t.Helper()
	in := types.ServerCreate{Name: name, Kind: types.KindVM, Project: "p1", Flavor: flavor, Image: "tiny"}
	r.waitPlaceable(in)
	srv, err := client.Create[types.Server](r.t.Context(), r.api, "/v1/servers", in, "")
	if err != nil {
		r.t.Fatal(err)
	}
	r.track(srv.ID)
	return srv
}

// waitPlaceable waits until placement would put in on a host. A host is
// up once registered, but placement admits it only once its first
// heartbeat's measured memory has reached the placement snapshot (rebuilt
// every few seconds): a create before then fails the memory failsafe.
func (r *rig) waitPlaceable(in types.ServerCreate) {
	r.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		d, err := client.Create[types.DryRun](r.t.Context(), r.api, "/v1/placement/dry-run", in, "")
		if err == nil && d.Fits {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("server %s would not be placed after 2 minutes: %+v (error %v)", in.Name, d.Explanation, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *rig) track(id string) {
	r.mu.Lock()
	r.servers = append(r.servers, id)
	r.mu.Unlock()
}

// waitServer polls a server until ok accepts it.
func (r *rig) waitServer(id string, timeout time.Duration, what string, ok func(types.Server) bool) types.Server {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		srv, err := client.Get[types.Server](r.t.Context(), r.api, "/v1/servers/"+id)
		if err == nil && ok(srv) {
			return srv
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("server %s not %s after %s: %+v (error %v)", id, what, timeout, srv, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *rig) waitActive(id string) types.Server {
	r.t.Helper()
	return r.waitServer(id, 3*time.Minute, "active", func(s types.Server) bool {
		if s.State == types.ServerError {
			r.t.Fatalf("server %s failed: %s", id, s.Fault)
		}
		return s.State == types.ServerActive && s.Observed != nil && s.Observed.DomainID > 0
	})
}

// consoleLog is where the agent logs a server's serial console.
func (r *rig) consoleLog(id string) string {
	return filepath.Join(r.dir, "agent", "instances", "console", id+".log")
}

// waitMarker waits for the guest's readiness marker on its console and
// returns the marker line.
func (r *rig) waitMarker(id, name string, timeout time.Duration) string {
	r.t.Helper()
	line, err := waitForMarker(r.consoleLog(id), "GUEST-READY "+name, timeout)
	if err != nil {
		r.t.Fatal(err)
	}
	return line
}

func waitForMarker(path, marker string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(path); err == nil {
			// The serial console arrives a byte at a time: a marker line
			// counts once it is whole (its newline written), or the rest
			// of it (the guest's address) may still be on its way.
			if i := bytes.Index(b, []byte(marker)); i >= 0 {
				if line, _, whole := bytes.Cut(b[i:], []byte("\n")); whole {
					return strings.TrimSpace(string(line)), nil
				}
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(path)
			return "", fmt.Errorf("no %q on %s within %s; console:\n%s", marker, path, timeout, tail(string(b), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// guestRun runs a shell command on the guest's serial console and returns
// its output and exit code.
func (r *rig) guestRun(id, cmd string, timeout time.Duration) (string, int) {
	r.t.Helper()
	out, code, _ := r.guestTimed(id, cmd, timeout)
	return out, code
}

// Console deadlines. They are generous: under TCG on a loaded machine a
// guest's shell can take many seconds to answer.
const (
	// shellWait bounds the wait for a shell that reads the console.
	shellWait = 3 * time.Minute
	// probeEvery is how long a probe is given before it is sent again.
	probeEvery = 15 * time.Second
)

// guestTimed runs a shell command on the guest's serial console and
// returns its output, its exit code and how long it ran, as the guest's
// clock measured it (so the host's scheduling does not count).
//
// The guest's shell starts only after its readiness marker, and a line
// sent while no shell reads is lost, or half read. So guestTimed first
// makes sure a shell reads: it sends Ctrl-C (dropping any half-read line)
// and a probe that prints a fresh marker, and sends them again only while
// the marker has not appeared. Then it sends the command once, between a
// start and an end marker, and waits for the end marker, within timeout.
// The command is never sent twice: a dd run twice would spoil what the
// test measures. Markers are printed with printf from their parts, so the
// console's echo of the typed line never looks like the output.
func (r *rig) guestTimed(id, cmd string, timeout time.Duration) (string, int, time.Duration) {
	r.t.Helper()
	sock := filepath.Join(r.dir, "agent", "instances", "console", id+".sock")
	conn, err := net.Dial("unix", sock)
	if err != nil {
		r.t.Fatalf("console of %s: %v", id, err)
	}
	defer conn.Close()
	// Read what the guest prints, although the log has it too: QEMU's serial
	// port writes one byte per socket message, a reader that does not drain
	// them fills the socket's buffer within a few hundred bytes, and then
	// the guest's output stalls, on the socket and in the log alike.
	go io.Copy(io.Discard, conn)
	console := func() string {
		b, _ := os.ReadFile(r.consoleLog(id))
		return strings.ReplaceAll(string(b), "\r", "")
	}
	// Only what the console prints from now on counts.
	offset := len(console())
	since := func() string {
		c := console()
		if len(c) < offset { // the log was rewritten: the guest restarted
			offset = 0
		}
		return c[offset:]
	}
	send := func(line string) {
		if _, err := fmt.Fprint(conn, line); err != nil {
			r.t.Fatalf("write to the console of %s: %v", id, err)
		}
	}

	probe := randHex(4)
	deadline := time.Now().Add(shellWait)
	var sent time.Time // zero: send at once
	for ; !strings.Contains(since(), "\nR"+probe+"\n"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatalf("no shell answered on the console of %s within %s; console:\n%s", id, shellWait, tail(console(), 15))
		}
		if time.Since(sent) > probeEvery {
			send("\x03")
			send(fmt.Sprintf("printf 'R%%s\\n' %s\r", probe))
			sent = time.Now()
		}
	}

	mark := randHex(4)
	send(fmt.Sprintf("printf 'S%%s\\n' %s; t0=$(cut -d' ' -f1 /proc/uptime); %s; rc=$?; "+
		"printf 'E%%s %%d %%s %%s\\n' %s $rc $t0 $(cut -d' ' -f1 /proc/uptime)\r", mark, cmd, mark))
	deadline = time.Now().Add(timeout)
	for {
		text := since()
		if i := strings.Index(text, "\nS"+mark+"\n"); i >= 0 {
			rest := text[i+len(mark)+2:] // from the newline that ends the start marker
			if j := strings.Index(rest, "\nE"+mark+" "); j >= 0 {
				var code int
				var t0, t1 float64
				if _, err := fmt.Sscanf(rest[j+len(mark)+3:], "%d %g %g", &code, &t0, &t1); err != nil {
					r.t.Fatalf("end marker of %q on %s: %v; console:\n%s", cmd, id, err, tail(console(), 15))
				}
				// /proc/uptime counts hundredths of a second.
				return rest[1 : j+1], code, time.Duration(math.Round((t1-t0)*100)) * 10 * time.Millisecond
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("command %q on %s did not finish within %s; console:\n%s", cmd, id, timeout, tail(console(), 15))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// virsh runs virsh and returns its output.
func virsh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("virsh", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// metric reads one counter of corrald's /metrics (summing label sets that
// contain all of the given label matches).
func (r *rig) metric(name string, labels ...string) float64 {
	r.t.Helper()
	out, err := exec.Command("curl", "-fsS", r.cd.Endpoint+"/metrics").Output()
	if err != nil {
		r.t.Fatal(err)
	}
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if ok {
			var v float64
			fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v)
			sum += v
		}
	}
	return sum
}

var _ = context.Background

// TestMain removes the binaries the rigs built.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	if guestDir != "" {
		os.RemoveAll(guestDir)
	}
	os.Exit(code)
}
