package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/network/agent"
	"github.com/corral-cloud/corral/network/ovs"
)

// The integration tests run against the machine's Open vSwitch (started by
// .ci/services), the real corrald binary, and network namespaces attached
// to a bridge of their own by veth pairs as endpoints. Every resource is
// named with a random prefix and removed when the test ends.

// TestMain lets the test binary double as a TCP listener and dialer inside
// network namespaces (ip netns exec <ns> <test binary>).
func TestMain(m *testing.M) {
	switch {
	case os.Getenv("CORRAL_NETTEST_LISTEN") != "":
		listen(os.Getenv("CORRAL_NETTEST_LISTEN"))
		return
	case os.Getenv("CORRAL_NETTEST_DIAL") != "":
		if err := dial(os.Getenv("CORRAL_NETTEST_DIAL")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

// listen accepts connections on the comma-separated ports and answers "ok".
// It prints "listening" on stdout once every port listens.
func listen(ports string) {
	for _, p := range strings.Split(ports, ",") {
		ln, err := net.Listen("tcp", ":"+p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("ok"))
				c.Close()
			}
		}()
	}
	fmt.Println("listening")
	select {}
}

// dial connects to addr and expects "ok" within a second.
func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	b := make([]byte, 2)
	if _, err := c.Read(b); err != nil || string(b) != "ok" {
		return fmt.Errorf("read from %s: %q %v", addr, b, err)
	}
	return nil
}

// binaries builds corrald and the test agent once per test binary.
func binaries(t testing.TB) string {
	return testenv.Binaries(t, "../../cmd/corrald", "./internal/testagent")
}

// rig is corrald, a registered host, its bridge and endpoints.
type rig struct {
	t      testing.TB
	prefix string
	bridge string
	api    *client.Client // admin
	agent  *client.Client // the host's agent token
	c      *testenv.Corrald
	hostID string
	token  string
	bins   string
	driver *ovs.Driver
}

func newRig(t testing.TB) *rig {
	t.Helper()
	testenv.Require(t, "CORRAL_TEST_OVS", "Open vSwitch")
	if out, err := exec.Command("bash", "../../.ci/services").CombinedOutput(); err != nil {
		t.Fatalf(".ci/services: %v\n%s", err, out)
	}
	var b [2]byte
	rand.Read(b[:])
	r := &rig{t: t, prefix: "cn" + hex.EncodeToString(b[:]), bins: binaries(t)}
	r.bridge = r.prefix + "br"
	t.Cleanup(func() { exec.Command("ovs-vsctl", "--if-exists", "del-br", r.bridge).Run() })
	r.c = testenv.StartCorrald(t, filepath.Join(r.bins, "corrald"))
	r.api = r.c.Admin
	ctx := context.Background()
	must(t, create(ctx, r.api, "/v1/regions", types.RegionCreate{Name: "dc1"}, nil))
	must(t, create(ctx, r.api, "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, nil))
	must(t, create(ctx, r.api, "/v1/projects", types.ProjectCreate{Name: "games"}, nil))
	reg, err := r.api.RegisterHost(ctx, types.HostRegister{Name: "hv-" + r.prefix, Region: "dc1", Zone: "rack1",
		Inventory: types.Inventory{CPUs: 4, RAMMiB: 8192, DiskGiB: 10}}, "")
	must(t, err)
	r.hostID, r.token = reg.Host.ID, reg.Token
	r.agent = r.api.WithToken(reg.Token)
	r.driver = ovs.New(r.bridge)
	// The agent makes the bridge (guests are plugged into it afterwards);
	// a bridge that exists is never re-created.
	if _, dp, err := r.driver.EnsureBridge(); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("bridge %s, datapath_type %s", r.bridge, dp)
	}
	return r
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func create(ctx context.Context, c *client.Client, path string, in, out any) error {
	if out == nil {
		var discard map[string]any
		out = &discard
	}
	_, err := c.Do(ctx, client.Request{Method: "POST", Path: path, Body: in}, out)
	return err
}

// network creates a network with one subnet.
func (r *rig) network(name string, vlan int64, cidr string, pools ...types.IPRange) {
	r.t.Helper()
	ctx := context.Background()
	must(r.t, create(ctx, r.api, "/v1/networks", types.NetworkCreate{Name: name, SegmentType: "vlan", SegmentID: vlan}, nil))
	must(r.t, create(ctx, r.api, "/v1/subnets", types.SubnetCreate{Name: name + "-v4", Network: name, CIDR: cidr, AllocationPools: pools}, nil))
}

// endpoint is a network namespace plugged into the bridge like a guest:
// a veth whose outer end carries external_ids:iface-id = the port's ID.
type endpoint struct {
	ns, inner, outer string
	port             types.Port
	ip               string
}

// endpoint creates a port on network through the API, bound to the host,
// and plugs a namespace with the port's MAC and address.
func (r *rig) endpoint(name, network string, groups ...string) *endpoint {
	r.t.Helper()
	in := types.PortCreate{Name: name, Network: network, Project: "games", Host: r.hostID}
	if groups != nil {
		in.SecurityGroups = &groups
	}
	var p types.Port
	must(r.t, create(context.Background(), r.api, "/v1/ports", in, &p))
	var sn types.Subnet
	_, err := r.api.Do(context.Background(), client.Request{Method: "GET", Path: "/v1/subnets/" + p.FixedIPs[0].SubnetID}, &sn)
	must(r.t, err)
	bits := sn.CIDR[strings.Index(sn.CIDR, "/"):]
	ep := &endpoint{ns: r.prefix + name, inner: r.prefix + name + "i", outer: r.prefix + name + "o", port: p, ip: p.FixedIPs[0].IPAddress}
	r.t.Cleanup(func() {
		exec.Command("ip", "netns", "del", ep.ns).Run()
		exec.Command("ip", "link", "del", ep.outer).Run()
	})
	r.sh("ip netns add %s", ep.ns)
	r.sh("ip link add %s type veth peer name %s", ep.outer, ep.inner)
	r.sh("ip link set %s netns %s", ep.inner, ep.ns)
	r.sh("ip netns exec %s ip link set %s address %s", ep.ns, ep.inner, p.MACAddress)
	r.sh("ovs-vsctl add-port %s %s -- set Interface %s external_ids:iface-id=%s", r.bridge, ep.outer, ep.outer, p.ID)
	r.sh("ip link set %s up", ep.outer)
	r.sh("ip netns exec %s sh -c 'ip link set lo up; ip link set %s up; ip addr add %s%s dev %s'", ep.ns, ep.inner, ep.ip, bits, ep.inner)
	// The userspace datapath does not complete offloaded checksums.
	r.sh("ip netns exec %s ethtool -K %s tx off", ep.ns, ep.inner)
	return ep
}

// sh runs a shell command and fails the test if it fails.
func (r *rig) sh(format string, args ...any) string {
	r.t.Helper()
	cmd := fmt.Sprintf(format, args...)
	out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
	if err != nil {
		r.t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return string(out)
}

// ping sends n pings from a to ip and reports whether all came back.
func (r *rig) ping(a *endpoint, ip string, n int) bool {
	err := exec.Command("ip", "netns", "exec", a.ns, "ping", "-c", fmt.Sprint(n), "-i", "0.2", "-W", "1", "-q", ip).Run()
	return err == nil
}

// tcp reports whether a connects to ip:port and reads the listener's "ok".
func (r *rig) tcp(a *endpoint, ip string, port int) bool {
	cmd := exec.Command("ip", "netns", "exec", a.ns, os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("CORRAL_NETTEST_DIAL=%s:%d", ip, port))
	return cmd.Run() == nil
}

// listen starts TCP listeners in the endpoint's namespace.
func (r *rig) listen(e *endpoint, ports ...int) {
	r.t.Helper()
	var ps []string
	for _, p := range ports {
		ps = append(ps, fmt.Sprint(p))
	}
	cmd := exec.Command("ip", "netns", "exec", e.ns, os.Args[0])
	cmd.Env = append(os.Environ(), "CORRAL_NETTEST_LISTEN="+strings.Join(ps, ","))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	must(r.t, err)
	must(r.t, cmd.Start())
	r.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait for the listeners, not for a guess at how long they take.
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		if strings.TrimSpace(line) == "listening" {
			ready <- true
			io.Copy(io.Discard, out)
			return
		}
		io.Copy(io.Discard, out) // to EOF: the child has exited
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			r.t.Fatalf("listeners on %v in %s did not start: %s", ports, e.ns, stderr.String())
		}
	case <-time.After(time.Minute):
		r.t.Fatalf("listeners on %v in %s not up within a minute", ports, e.ns)
	}
}

// eventually polls cond every 100 ms until it holds or timeout passes, and
// returns how long it took.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not after %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// runReconciler runs the reconcile loop in-process until the test ends;
// onReconcile, if given, sees every reconcile's result.
func (r *rig) runReconciler(onReconcile ...func(agent.Result)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	rec := &agent.Reconciler{Source: r.agent, Switch: r.driver, HostID: r.hostID, Wait: 5 * time.Second}
	if len(onReconcile) > 0 {
		rec.OnReconcile = onReconcile[0]
	}
	go func() { rec.Run(ctx); close(done) }()
	r.t.Cleanup(func() { cancel(); <-done })
}

// flowTable is the bridge's flows without counters and ages, sorted.
func (r *rig) flowTable() string {
	r.t.Helper()
	out := r.sh("ovs-ofctl -O OpenFlow14 --no-stats --no-names dump-flows %s | grep -v '^OFPST_FLOW' | sort", r.bridge)
	return regexp.MustCompile(`(duration|idle_age|hard_age)=[^,]*, ?`).ReplaceAllString(out, "")
}

// startAgentProcess runs the test agent binary and returns it with a
// channel of its reconcile lines.
func (r *rig) startAgentProcess() (*exec.Cmd, chan string) {
	r.t.Helper()
	cmd := exec.Command(filepath.Join(r.bins, "testagent"), "--endpoint", r.c.Endpoint, "--token", r.token, "--host", r.hostID,
		"--bridge", r.bridge)
	out, err := cmd.StdoutPipe()
	must(r.t, err)
	logf, err := os.OpenFile(filepath.Join(r.t.TempDir(), "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	must(r.t, err)
	cmd.Stderr = logf
	must(r.t, cmd.Start())
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "RECONCILED") {
				lines <- sc.Text()
			}
		}
		close(lines)
		logf.Close()
	}()
	r.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, lines
}
