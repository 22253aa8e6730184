// Package e2e runs corrald and corralctl against simulated bare-metal
// nodes: libvirt guests whose BMCs are ipmi_sim over real IPMI lanplus,
// on a provisioning bridge served by corrald's dnsmasq and HTTP server.
package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
	"github.com/corral-cloud/corral/baremetal/sim"
	"github.com/jmoiron/sqlx"
	"golang.org/x/crypto/ssh"
	_ "modernc.org/sqlite" // reads corrald's database
)

var ctx = context.Background()

// tokenTTL is the boot tokens' time to live in the rig: long enough for a
// loaded machine to PXE-boot the ramdisk (at a load average of 20 on two
// cores that took over two minutes), short enough to watch one expire.
const tokenTTL = 4 * time.Minute

var (
	buildOnce                  sync.Once
	binDir, ramdiskDir, imgDir string
	buildErr                   error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "corral-bm-e2e-")
	if err != nil {
		panic(err)
	}
	binDir, ramdiskDir, imgDir = filepath.Join(dir, "bin"), filepath.Join(dir, "ramdisk"), filepath.Join(dir, "image")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// artefacts builds corrald, corralctl, the deploy ramdisk and the test
// image once per test run.
func artefacts(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() {
		testenv.Build(t, binDir, "../../cmd/corrald", "../../cmd/corralctl")
		for _, c := range [][]string{{filepath.Join(sim.Dir(), "../ramdisk/build.sh"), ramdiskDir}, {filepath.Join(sim.Dir(), "image.sh"), imgDir}} {
			if out, err := exec.Command("bash", c...).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("%s: %v\n%s", c[0], err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// rig is one provisioning network with a corrald on it.
type rig struct {
	t      testing.TB
	prefix string
	dir    string
	net    *sim.Network
	port   int // provisioning HTTP port
	data   string
	args   []string
	c      *testenv.Corrald
	admin  *client.Client
}

func newRig(t testing.TB, pxe bool) *rig {
	t.Helper()
	testenv.Require(t, "CORRAL_TEST_IPMI", "ipmi_sim")
	testenv.Require(t, "CORRAL_TEST_LIBVIRT", "libvirt")
	artefacts(t)
	r := &rig{t: t, prefix: sim.Prefix()}
	r.dir = sim.WorkDir(t, r.prefix)
	r.net = sim.NewNetwork(t, r.prefix)
	r.data = filepath.Join(t.TempDir(), "data")
	r.args = []string{"--data-dir", r.data, "--conductor-poll", "500ms", "--power-sync-interval", "2s",
		"--bmc-timeout", "30s", "--bmc-attempts", "2", "--bmc-backoff", "500ms", "--bmc-min-interval", "200ms",
		"--conductor-lease", "5s", "--deploy-timeout", "5m", "--clean-timeout", "5m", "--inspect-timeout", "5m"}
	if pxe {
		ln, err := net.Listen("tcp", r.net.HostIP+":0")
		if err != nil {
			t.Fatal(err)
		}
		r.port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		r.args = append(r.args, "--pxe-interface", r.net.Bridge, "--pxe-address", r.net.HostIP+"/24",
			"--pxe-http-port", fmt.Sprint(r.port), "--pxe-ramdisk-dir", ramdiskDir,
			"--switch", "ovs", "--switch-provisioning-vlan", fmt.Sprint(sim.ProvisioningVLAN),
			"--switch-parking-vlan", fmt.Sprint(sim.ParkingVLAN), "--deploy-token-ttl", tokenTTL.String())
	}
	r.start()
	r.catalogue()
	return r
}

// start runs corrald on the rig's data directory (again, after a kill).
func (r *rig) start() {
	r.t.Helper()
	addr := testenv.FreeAddr(r.t)
	args := append([]string{"--listen", addr, "--bootstrap-token-file", filepath.Join(r.data, "admin-token")}, r.args...)
	p := testenv.Start(r.t, filepath.Join(r.t.TempDir(), "corrald.log"), filepath.Join(binDir, "corrald"), args...)
	if err := testenv.WaitReady("http://"+addr, p.Exited, 30*time.Second); err != nil {
		r.t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(r.data, "admin-token"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.c = &testenv.Corrald{Process: p, Endpoint: "http://" + addr, DataDir: r.data}
	r.admin = client.New(r.c.Endpoint, strings.TrimSpace(string(token)), nil)
}

// ctl runs corralctl as the admin and returns its output.
func (r *rig) ctl(args ...string) string {
	r.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "corralctl"), append([]string{"--endpoint", r.c.Endpoint,
		"--token-file", filepath.Join(r.data, "admin-token"), "-o", "json"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("corralctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (r *rig) catalogue() {
	r.ctl("region", "create", "dc1")
	r.ctl("zone", "create", "rack1", "--region", "dc1")
	r.ctl("flavor", "create", "metal", "--kind", "baremetal", "--vcpus", "1", "--ram-mib", "128", "--disk-gib", "1")
	r.ctl("project", "create", "p")
	if _, err := os.Stat(filepath.Join(imgDir, "baremetal.qcow2")); err == nil {
		r.ctl("image", "create", "bm-image", "--disk-format", "qcow2", "--file", filepath.Join(imgDir, "baremetal.qcow2"))
	}
}

// node creates a simulated node and enrols it.
func (r *rig) node(name, mac, password string, extra ...string) (*sim.Node, types.Node) {
	r.t.Helper()
	n := sim.NewNode(r.t, r.dir, r.prefix+name, mac, r.net.Bridge)
	pwFile := r.passwordFile(name, password)
	r.ctl(append([]string{"node", "create", name, "--region", "dc1", "--zone", "rack1", "--bmc-address", "127.0.0.1",
		"--bmc-port", fmt.Sprint(n.Port), "--bmc-username", n.User, "--bmc-password-file", pwFile, "--mac", mac}, extra...)...)
	return n, r.get(name)
}

// uniqueMAC is a MAC of this rig's own, from its random prefix: corrald
// finds a node's switch port by MAC across the machine's Open vSwitch,
// which other test runs share.
func (r *rig) uniqueMAC() string {
	p := r.prefix[len(r.prefix)-6:]
	return "52:54:00:" + p[0:2] + ":" + p[2:4] + ":" + p[4:6]
}

// passwordFile writes a node's BMC password to a private file for
// corralctl's --bmc-password-file (passwords never go on command lines).
func (r *rig) passwordFile(name, password string) string {
	r.t.Helper()
	pwFile := filepath.Join(r.dir, name+".bmc-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		r.t.Fatal(err)
	}
	return pwFile
}

func (r *rig) get(name string) types.Node {
	r.t.Helper()
	n, err := client.Get[types.Node](ctx, r.admin, "/v1/nodes/"+name)
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// wait polls the node until ok or the timeout, and returns it.
func (r *rig) wait(name string, timeout time.Duration, what string, ok func(types.Node) bool) types.Node {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := r.get(name)
		if ok(n) {
			return n
		}
		if time.Now().After(deadline) {
			ev, _ := client.ListAll[types.NodeEvent](ctx, r.admin, "/v1/nodes/"+name+"/events", nil)
			r.t.Fatalf("node %s: not %s within %s: %+v\nevents: %+v", name, what, timeout, n, ev)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (r *rig) events(name string) []types.NodeEvent {
	r.t.Helper()
	ev, err := client.ListAll[types.NodeEvent](ctx, r.admin, "/v1/nodes/"+name+"/events", nil)
	if err != nil {
		r.t.Fatal(err)
	}
	return ev
}

// TestBaremetalPowerAndBMC covers acceptance 1–3 over real IPMI: wrong
// credentials stay out of available with a reason, right ones become
// manageable; power operations through the API change the guest; an
// out-of-band change is noticed by the sync; a killed BMC gives a bounded
// 503 and a flag that clears when it returns.
func TestBaremetalPowerAndBMC(t *testing.T) {
	r := newRig(t, false)
	_, bad := r.node("bad", "52:54:00:7b:00:01", "wrong")
	sn, good := r.node("good", "52:54:00:7b:00:02", "secret")
	r.wait(bad.Name, 2*time.Minute, "refused", func(n types.Node) bool { return n.LastError != "" })
	r.wait(good.Name, 2*time.Minute, "manageable", func(n types.Node) bool { return n.State == types.NodeManageable })
	if n := r.get(bad.Name); n.State != types.NodeEnroll || !strings.Contains(n.LastError, "credentials rejected") {
		t.Errorf("wrong credentials: %s %q", n.State, n.LastError)
	}

	for _, op := range []struct{ op, want, power string }{{"on", "running", "on"}, {"cycle", "running", "on"}, {"off", "off", "off"}} {
		out := r.ctl("node", "power", good.Name, op.op)
		if !strings.Contains(out, `"power_state": "`+op.power+`"`) {
			t.Errorf("power %s answered %s", op.op, out)
		}
		if got := sn.DomState(); got != op.want {
			t.Errorf("after power %s the guest is %q, want %q", op.op, got, op.want)
		}
	}
	// Out of band: someone starts the guest behind corrald's back.
	r.ctl("node", "power", good.Name, "on")
	if _, err := sim.Virsh("destroy", sn.Name); err != nil {
		t.Fatal(err)
	}
	r.wait(good.Name, time.Minute, "seen off by the sync", func(n types.Node) bool { return n.PowerState == types.PowerOff })
	found := false
	for _, e := range r.events(good.Name) {
		found = found || strings.HasPrefix(e.Actor, "sync:") && strings.Contains(e.Reason, "out of band")
	}
	if !found {
		t.Errorf("no out-of-band event in %+v", r.events(good.Name))
	}

	// The BMC dies: bounded 503, the node flagged; it comes back: cleared.
	sn.KillBMC(t)
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	_, err := r.admin.Do(cctx, client.Request{Method: "PUT", Path: "/v1/nodes/" + good.Name + "/power", Body: types.NodePower{State: "on"}}, nil)
	if client.Code(err) != types.CodeUnavailable {
		t.Errorf("power on with a dead BMC: %v, want unavailable", err)
	}
	r.wait(good.Name, 2*time.Minute, "flagged", func(n types.Node) bool { return n.BMCFault != "" && n.PowerState == types.PowerUnknown })
	if _, err := client.Get[types.Node](ctx, r.admin, "/v1/nodes/"+good.Name); err != nil {
		t.Errorf("API stuck while the BMC is dead: %v", err)
	}
	sn.StartBMC(t)
	r.wait(good.Name, 2*time.Minute, "recovered", func(n types.Node) bool { return n.BMCFault == "" && n.PowerState == types.PowerOff })
}

// TestBaremetalEndToEnd covers acceptance 4 of issue 10 and 5 of issue
// 11 with one deploy: a node is inspected by the deploy ramdisk;
// "corralctl server create --kind baremetal --network tenant" PXE-boots
// it, writes the image and its config drive, and boots it from disk onto
// the VLAN tenant network it shares with a VM (a namespace plugged as a
// VM's port on a host's bridge, wired by the real network agent, the
// host's uplink trunking the VLAN to the simulated top-of-rack switch).
// The deployed OS takes its hostname, IPAM address, the keypair's key
// and the user data from the config drive; the node and the VM ping each other by their IPAM addresses; the
// node is not reachable from the provisioning network. Deleting the
// server cleans the node back to available, on the provisioning network
// and off the tenant network.
func TestBaremetalEndToEnd(t *testing.T) {
	r := newRig(t, true)
	tn := newTenant(t, r)
	mac := r.uniqueMAC()
	sn, n := r.node("bm1", mac, "secret", "--provide")
	vm, vmPort := tn.vm(t, "vm1")
	n = r.wait(n.Name, 5*time.Minute, "available", func(n types.Node) bool { return n.State == types.NodeAvailable || n.State == types.NodeError })
	if n.State != types.NodeAvailable || n.Hardware.CPUs < 1 || n.Hardware.RAMMiB < 128 || n.Hardware.DiskGiB() < 1 {
		t.Fatalf("after inspection: %s %q hardware %+v", n.State, n.LastError, n.Hardware)
	}
	// corralctl --wait returns once the node is deployed (issue 15), with
	// the node's provision states as progress on stderr.
	// With a keypair and user data, as a VM is created (issue 11).
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshKey, _ := ssh.NewPublicKey(pub)
	comment := r.prefix + "@e2e"
	r.ctl("keypair", "create", "ops", "--project", "p", "--public-key",
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshKey)))+" "+comment)
	userData := []byte("#!/bin/sh\necho BM-USERDATA\n")
	udFile := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(udFile, userData, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out := r.ctl("server", "create", "metal-1", "--kind", "baremetal", "--flavor", "metal", "--image", "bm-image", "--project", "p",
		"--network", "tenant", "--key-name", "ops", "--user-data-file", udFile, "--wait", "--wait-timeout", "8m")
	if !strings.Contains(out, n.ID) {
		t.Fatalf("server not placed on the node: %s", out)
	}
	l, err := client.ListAll[types.Server](ctx, r.admin, "/v1/servers", nil)
	if err != nil || len(l) != 1 {
		t.Fatalf("servers = %+v, %v", l, err)
	}
	srv := l[0]
	if srv.State != types.ServerActive {
		t.Fatalf("corralctl --wait returned with server %s %s %q; node %+v\n%s", srv.ID, srv.State, srv.Fault, r.get(n.Name), out)
	}
	if !strings.Contains(out, "node bm1 deploying") {
		t.Errorf("create --wait showed no deploy progress:\n%s", out)
	}
	t.Logf("create → active in %s", time.Since(start).Round(time.Second))
	n = r.get(n.Name)
	ports, err := client.ListAll[types.Port](ctx, r.admin, "/v1/ports", url.Values{"device_id": {srv.ID}})
	if err != nil || len(ports) != 1 || ports[0].MACAddress != mac || ports[0].HostID != "" || ports[0].NetworkID != tn.network.ID {
		t.Fatalf("the server's ports: %+v, %v; want one on %s with the node's MAC %s", ports, err, tn.network.ID, mac)
	}
	bmIP := ports[0].FixedIPs[0].IPAddress
	if len(srv.Addresses) != 1 || srv.Addresses[0].IP != bmIP || n.ProvisionIP == "" {
		t.Errorf("server addresses %+v, want its port's %s only (not the provisioning address %s)", srv.Addresses, bmIP, n.ProvisionIP)
	}
	// The switch port is on the tenant VLAN, and the deployed OS took its
	// name and address from the config drive.
	if got := sn.PortVLAN(t); got != tenantVLAN {
		t.Errorf("active node's switch port on VLAN %d, want the tenant network's %d", got, tenantVLAN)
	}
	line := sn.WaitSerial(t, "GUEST-READY metal-1", 4*time.Minute)
	if !strings.Contains(line, "addr="+bmIP+"/") {
		t.Errorf("the deployed OS did not configure its IPAM address %s: %q (%q)", bmIP, line, sn.SerialLine("CONFIG-DRIVE"))
	}
	// The config drive carries the keypair's key and the user data.
	if cd, want := sn.SerialLine("CONFIG-DRIVE"), fmt.Sprintf("keys=1 key1=%s user-data=%d", comment, len(userData)); !strings.Contains(cd, want) {
		t.Errorf("the deployed OS's config drive: %q, want %q", cd, want)
	}
	if !strings.Contains(sn.SerialLine("corral-deploy: written and read back"), "sha256") {
		t.Error("the agent never reported writing and reading back the image")
	}
	if !strings.Contains(sn.SerialLine("corral-deploy: config drive"), "cidata") {
		t.Error("the agent never reported writing the config drive")
	}
	// The VM and the node reach each other by their IPAM addresses.
	if !eventually(90*time.Second, func() bool { return vm.ping(bmIP) }) {
		t.Errorf("the VM (%s) cannot ping the node at %s", vm.ip, bmIP)
	} else if !nodePing(t, sn, vmPort.FixedIPs[0].IPAddress) {
		t.Errorf("the node cannot ping the VM at %s", vm.ip)
	}
	// Not on the provisioning network: its provisioning address is gone,
	// and a probe on the provisioning VLAN with an address of the tenant
	// subnet does not reach it.
	if pingable(n.ProvisionIP) {
		t.Errorf("active node answers ping at %s on the provisioning network", n.ProvisionIP)
	}
	probe := plug(t, r.prefix+"pr", r.net.Bridge, "02:00:00:7c:00:99", strings.TrimSuffix(tn.subnet, "0/24")+"250/24",
		fmt.Sprintf("tag=%d", sim.ProvisioningVLAN))
	if probe.ping(bmIP) {
		t.Errorf("the node at %s answers on the provisioning VLAN", bmIP)
	}

	out = r.ctl("server", "delete", srv.ID, "--wait", "--wait-timeout", "5m")
	if _, err := client.Get[types.Server](ctx, r.admin, "/v1/servers/"+srv.ID); client.Code(err) != types.CodeNotFound {
		t.Errorf("after delete --wait the server answers %v, want not_found\n%s", err, out)
	}
	r.wait(n.Name, 5*time.Minute, "cleaned", func(n types.Node) bool { return n.State == types.NodeAvailable || n.State == types.NodeError })
	if n = r.get(n.Name); n.State != types.NodeAvailable || n.ServerID != "" {
		t.Fatalf("after delete: %s %q", n.State, n.LastError)
	}
	if sn.SerialLine("erased /dev/vda end to end") == "" {
		t.Error("cleaning never erased the disk")
	}
	// Back on the provisioning network, off the tenant one; the implicit
	// port went with the server.
	if got := sn.PortVLAN(t); got != sim.ProvisioningVLAN {
		t.Errorf("cleaned node's switch port on VLAN %d, want the provisioning VLAN %d", got, sim.ProvisioningVLAN)
	}
	if vm.ping(bmIP) {
		t.Errorf("the VM still reaches %s after the delete", bmIP)
	}
	if l, err := client.ListAll[types.Port](ctx, r.admin, "/v1/ports", url.Values{"network": {tn.network.ID}}); err != nil || len(l) != 1 {
		t.Errorf("ports on the tenant network after the delete: %+v, %v; want the VM's only", l, err)
	}
	var states, moves []string
	for _, e := range r.events(n.Name) {
		if !strings.Contains(e.To, " ") {
			states = append(states, e.To)
		} else if strings.Contains(e.To, "network") {
			moves = append(moves, e.To)
		}
	}
	want := "enroll verifying manageable inspecting available deploying active deleting cleaning available"
	if got := strings.Join(states, " "); got != want {
		t.Errorf("history %s, want %s", got, want)
	}
	wantMoves := []string{"on the provisioning network", // inspection
		"on the provisioning network", "on network " + tn.network.ID, // deploy
		"off the tenant networks", "on the provisioning network"} // delete, clean
	if strings.Join(moves, "|") != strings.Join(wantMoves, "|") {
		t.Errorf("switch moves %q, want %q", moves, wantMoves)
	}
}

// TestBaremetalRestartMidDeploy covers acceptance 5: corrald is killed
// while the node runs the deploy ramdisk; the restarted corrald takes the
// node over when the lease expires, and the deploy ends active (or
// cleanly in error), never stuck and never on two nodes.
func TestBaremetalRestartMidDeploy(t *testing.T) {
	r := newRig(t, true)
	sn, n := r.node("bm1", "52:54:00:7d:00:01", "secret", "--provide", "--cpus", "1", "--ram-mib", "200", "--disk-gib", "1")
	r.wait(n.Name, 2*time.Minute, "available", func(n types.Node) bool { return n.State == types.NodeAvailable })
	r.ctl("server", "create", "metal-1", "--kind", "baremetal", "--flavor", "metal", "--image", "bm-image", "--project", "p")
	r.wait(n.Name, 3*time.Minute, "waiting for the agent", func(n types.Node) bool { return n.Step == "wait_agent" })
	// The ramdisk has started; kill corrald in the middle of the deploy.
	r.c.Cmd.Process.Kill()
	<-r.c.Exited
	time.Sleep(3 * time.Second)
	r.start()
	var srv types.Server
	deadline := time.Now().Add(8 * time.Minute)
	for {
		l, err := client.ListAll[types.Server](ctx, r.admin, "/v1/servers", nil)
		if err != nil || len(l) != 1 {
			t.Fatalf("servers after restart = %+v, %v", l, err)
		}
		srv = l[0]
		if srv.State == types.ServerActive || srv.State == types.ServerError {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stuck after the restart: server %s, node %+v", srv.State, r.get(n.Name))
		}
		time.Sleep(500 * time.Millisecond)
	}
	n = r.get(n.Name)
	t.Logf("after the restart: server %s %q, node %s %q", srv.State, srv.Fault, n.State, n.LastError)
	if srv.NodeID != n.ID || n.ServerID != srv.ID {
		t.Errorf("server on %s, node holds %s", srv.NodeID, n.ServerID)
	}
	switch srv.State {
	case types.ServerActive:
		if n.State != types.NodeActive {
			t.Errorf("server active, node %s", n.State)
		}
		sn.WaitSerial(t, "GUEST-READY metal-1", 3*time.Minute)
	case types.ServerError:
		if n.State != types.NodeError || n.LastError == "" || srv.Fault == "" {
			t.Errorf("error without a reason: node %s %q, server %q", n.State, n.LastError, srv.Fault)
		}
	}
	deploys := 0
	for _, e := range r.events(n.Name) {
		if e.To == types.NodeDeploying {
			deploys++
		}
	}
	if deploys != 1 {
		t.Errorf("the node entered deploying %d times", deploys)
	}
}

// pxeURL is the rig's provisioning HTTP server.
func (r *rig) pxeURL() string { return fmt.Sprintf("http://%s:%d", r.net.HostIP, r.port) }

// ipxe asks for a node's iPXE script from the test's own address (the
// provisioning bridge's, not the node's lease), as an attacker on the
// provisioning network would.
func (r *rig) ipxe(mac string) string {
	r.t.Helper()
	resp, err := http.Get(r.pxeURL() + "/ipxe?mac=" + mac)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// claim replays a boot token as the deploy agent's first request does.
func (r *rig) claim(nodeID, token string) (int, string) {
	r.t.Helper()
	req, _ := http.NewRequest("POST", r.pxeURL()+"/agent/claim?node="+nodeID, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// bootToken reads a node's boot token from corrald's database, opened
// with its key (what an attacker who sniffed the iPXE script would hold),
// with its expiry and whether the agent used it.
func (r *rig) bootToken(nodeID string) (token string, expires time.Time, used bool) {
	r.t.Helper()
	keys, _, err := baremetal.LoadKeyFile(filepath.Join(r.data, "bmc.key"), false)
	if err != nil {
		r.t.Fatal(err)
	}
	db, err := sqlx.Open("sqlite", "file:"+filepath.Join(r.data, "corral.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		r.t.Fatal(err)
	}
	defer db.Close()
	var row store.NodeRow
	if err := db.Get(&row, "SELECT state, step, attempt, agent_token, agent_token_expires, agent_token_used_at FROM nodes WHERE id = ?", nodeID); err != nil {
		r.t.Fatal(err)
	}
	if row.AgentToken == "" {
		return "", time.Time{}, false
	}
	token, err = baremetal.OpenToken(row, keys, row.AgentToken)
	if err != nil {
		r.t.Fatalf("open the boot token of %s: %v", nodeID, err)
	}
	return token, time.UnixMicro(row.AgentTokenExpires), row.AgentTokenUsedAt != 0
}

// pingable reports whether ip answers ping from the provisioning side.
func pingable(ip string) bool {
	return exec.Command("ping", "-c", "3", "-i", "0.5", "-W", "1", ip).Run() == nil
}

// TestBaremetalDeployCredentials covers acceptance 7 of issue 10: the
// iPXE script of a node that is not deploying, or asked for from an
// address other than the node's DHCP lease, carries no credential; a
// replayed boot token and an expired one are refused; an active node is
// off the provisioning network (its switch port parked, its OS without a
// provisioning address, no answer to ping); after delete and cleaning
// (the whole disk by default) it is back on it.
func TestBaremetalDeployCredentials(t *testing.T) {
	r := newRig(t, true)
	mac := "52:54:00:7e:00:01"
	sn, n := r.node("bm1", mac, "secret", "--provide", "--cpus", "1", "--ram-mib", "200", "--disk-gib", "1")
	n = r.wait(n.Name, 2*time.Minute, "available", func(n types.Node) bool { return n.State == types.NodeAvailable })
	if script := r.ipxe(mac); strings.Contains(script, "corral.token") || !strings.Contains(script, "exit") {
		t.Errorf("script of an available node carries a credential: %q", script)
	}

	// A second node, cabled to a switch with no DHCP, is inspected: its
	// ramdisk never starts, so its boot token is never used and expires.
	other := sim.NewNetwork(t, r.prefix+"x")
	lateMAC := "52:54:00:7e:00:02"
	late := sim.NewNode(t, r.dir, r.prefix+"late", lateMAC, other.Bridge)
	r.ctl("node", "create", "late", "--region", "dc1", "--zone", "rack1", "--bmc-address", "127.0.0.1",
		"--bmc-port", fmt.Sprint(late.Port), "--bmc-username", late.User, "--bmc-password-file", r.passwordFile("late", "secret"), "--mac", lateMAC)
	lateNode := r.wait("late", 2*time.Minute, "manageable", func(n types.Node) bool { return n.State == types.NodeManageable })
	r.ctl("node", "provision", "late", "inspect")
	r.wait("late", 2*time.Minute, "waiting for its agent", func(n types.Node) bool { return n.Step == "wait_agent" })
	lateToken, lateExpires, _ := r.bootToken(lateNode.ID)
	if lateToken == "" {
		t.Fatal("no boot token for the inspected node")
	}
	sim.Virsh("destroy", late.Name) // it would only retry DHCP

	r.ctl("server", "create", "metal-1", "--kind", "baremetal", "--flavor", "metal", "--image", "bm-image", "--project", "p")
	r.wait(n.Name, 3*time.Minute, "booting the ramdisk", func(n types.Node) bool { return n.State == types.NodeDeploying && n.Step == "wait_agent" })
	if script := r.ipxe(mac); strings.Contains(script, "corral.token") {
		t.Errorf("script of a deploying node, asked from outside its lease, carries a credential: %q", script)
	}
	// The agent exchanges the boot token; a replay is refused.
	var token string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		tok, _, used := r.bootToken(n.ID)
		if tok != "" {
			token = tok
		}
		if used || (token != "" && r.get(n.Name).State != types.NodeDeploying) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deploy agent never claimed its work: %+v", r.get(n.Name))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, body := r.claim(n.ID, token); code != http.StatusForbidden {
		t.Errorf("replayed boot token: %d %q, want 403", code, body)
	}
	if script := r.ipxe(mac); strings.Contains(script, "corral.token") {
		t.Errorf("script after the token was used carries a credential: %q", script)
	}

	var srv types.Server
	deadline = time.Now().Add(8 * time.Minute)
	for {
		l, err := client.ListAll[types.Server](ctx, r.admin, "/v1/servers", nil)
		if err != nil || len(l) != 1 {
			t.Fatalf("servers = %+v, %v", l, err)
		}
		srv = l[0]
		if srv.State == types.ServerActive || srv.State == types.ServerError || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if srv.State != types.ServerActive {
		t.Fatalf("server %s: %s %q; node %+v", srv.ID, srv.State, srv.Fault, r.get(n.Name))
	}
	n = r.get(n.Name)
	// Active: off the provisioning network. The image's OS asks for DHCP,
	// which corrald's dnsmasq would answer for this MAC; it gets no
	// address, and nothing answers at the node's provisioning address.
	if got := sn.PortVLAN(t); got != sim.ParkingVLAN {
		t.Errorf("active node's switch port on VLAN %d, want the parking VLAN %d", got, sim.ParkingVLAN)
	}
	acks := r.dhcpAcks(mac)
	line := sn.WaitSerial(t, "GUEST-READY metal-1", 4*time.Minute)
	if strings.Contains(line, n.ProvisionIP) {
		t.Errorf("the deployed OS got the provisioning address: %q", line)
	}
	if got := r.dhcpAcks(mac); got != acks {
		t.Errorf("corrald's DHCP answered the active node %d times", got-acks)
	}
	if pingable(n.ProvisionIP) {
		t.Errorf("active node answers ping at %s on the provisioning network", n.ProvisionIP)
	}
	if len(srv.Addresses) != 0 {
		t.Errorf("server addresses %+v: an active node has no provisioning address", srv.Addresses)
	}

	// The inspected node's token is expired by now (or soon): refused.
	if wait := time.Until(lateExpires.Add(time.Second)); wait > 0 {
		t.Logf("waiting %s for the boot token to expire", wait.Round(time.Second))
		time.Sleep(wait)
	}
	if code, body := r.claim(lateNode.ID, lateToken); code != http.StatusUnauthorized {
		t.Errorf("expired boot token: %d %q, want 401 (node %+v)", code, body, r.get("late"))
	}
	if script := r.ipxe(lateMAC); strings.Contains(script, "corral.token") {
		t.Errorf("script with an expired token: %q", script)
	}
	logText, _ := os.ReadFile(r.c.LogPath)
	for _, want := range []string{"used already (replay)", "deploy token expired"} {
		if !strings.Contains(string(logText), want) || !strings.Contains(string(logText), "deploy credential refused") {
			t.Errorf("corrald's log has no refusal %q", want)
		}
	}
	refused := map[string]bool{}
	for _, id := range []string{n.Name, "late"} {
		for _, e := range r.events(id) {
			if e.To == "credential refused" {
				refused[id] = true
			}
		}
	}
	if !refused[n.Name] || !refused["late"] {
		t.Errorf("refusals in the nodes' histories: %v", refused)
	}

	// Delete: the node comes back to the provisioning network to be
	// cleaned, the whole disk by default, and stays there.
	r.ctl("server", "delete", srv.ID)
	r.wait(n.Name, 8*time.Minute, "cleaned", func(n types.Node) bool { return n.State == types.NodeAvailable || n.State == types.NodeError })
	if n = r.get(n.Name); n.State != types.NodeAvailable {
		t.Fatalf("after delete: %s %q", n.State, n.LastError)
	}
	if got := sn.PortVLAN(t); got != sim.ProvisioningVLAN {
		t.Errorf("cleaned node's switch port on VLAN %d, want the provisioning VLAN %d", got, sim.ProvisioningVLAN)
	}
	if sn.SerialLine("erased /dev/vda end to end") == "" {
		t.Error("cleaning did not erase the whole disk")
	}
	// Back on the provisioning network: powered on, it network-boots and
	// corrald's DHCP answers it again.
	acks = r.dhcpAcks(mac)
	r.ctl("node", "power", n.Name, "on")
	deadline = time.Now().Add(2 * time.Minute)
	for r.dhcpAcks(mac) == acks {
		if time.Now().After(deadline) {
			t.Fatalf("the cleaned node never got its lease on the provisioning network")
		}
		time.Sleep(time.Second)
	}
	r.ctl("node", "power", n.Name, "off")
}

// dhcpAcks counts the DHCP acknowledgements corrald's dnsmasq sent a MAC.
func (r *rig) dhcpAcks(mac string) int {
	b, _ := os.ReadFile(filepath.Join(r.data, "pxe", "dnsmasq.log"))
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "DHCPACK") && strings.Contains(l, mac) {
			n++
		}
	}
	return n
}
