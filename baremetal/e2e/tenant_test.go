package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal/sim"
	netagent "github.com/corral-cloud/corral/network/agent"
	"github.com/corral-cloud/corral/network/ovs"
)

// tenantVLAN is the VLAN tenant network the bare-metal server shares with
// a VM in the acceptance test.
const tenantVLAN = 210

// tenant is a hypervisor host's network next to the rig's simulated
// top-of-rack switch: a registered host whose integration bridge is wired
// by the real network reconcile loop (corral-agent's), and an uplink that
// carries the tenant VLAN between that bridge and the top-of-rack switch
// (the provisioning bridge), as a host's uplink to its rack switch does.
type tenant struct {
	r       *rig
	bridge  string // the host's integration bridge
	hostID  string
	subnet  string // e.g. 10.81.7.0/24
	network types.Network
}

// newTenant registers a host, creates the VLAN network "tenant" (with a
// subnet) in project p, makes the host's bridge, cables the uplink and
// runs the network reconcile loop until the test ends.
func newTenant(t *testing.T, r *rig) *tenant {
	t.Helper()
	x := strings.TrimPrefix(strings.TrimSuffix(r.net.HostIP, ".1"), "10.79.") // the rig's X of 10.79.X.0/24
	tn := &tenant{r: r, bridge: r.prefix + "int", subnet: "10.81." + x + ".0/24"}
	reg, err := r.admin.RegisterHost(ctx, types.HostRegister{Name: "hv-" + r.prefix, Region: "dc1", Zone: "rack1",
		Inventory: types.Inventory{CPUs: 2, RAMMiB: 2048, DiskGiB: 10}}, "")
	if err != nil {
		t.Fatal(err)
	}
	tn.hostID = reg.Host.ID
	if _, err := r.admin.Do(ctx, client.Request{Method: "POST", Path: "/v1/networks",
		Body: types.NetworkCreate{Name: "tenant", Project: "p", SegmentType: types.SegmentVLAN, SegmentID: tenantVLAN}}, &tn.network); err != nil {
		t.Fatal(err)
	}
	if _, err := r.admin.Do(ctx, client.Request{Method: "POST", Path: "/v1/subnets",
		Body: types.SubnetCreate{Name: "tenant-v4", Network: "tenant", CIDR: tn.subnet}}, nil); err != nil {
		t.Fatal(err)
	}
	drv := ovs.New(tn.bridge)
	t.Cleanup(func() { exec.Command("ovs-vsctl", "--timeout=10", "--if-exists", "del-br", tn.bridge).Run() })
	if _, _, err := drv.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	// The uplink: a patch pair, an access port of the tenant VLAN at both
	// ends (only that VLAN crosses: never the provisioning or parking
	// one). The host's classify flow for it stands in for the provider
	// uplink's (a cookie outside Corral's, which the agent leaves alone):
	// traffic from the rack enters the pipeline on the network's VLAN.
	tor, host := r.prefix+"pt", r.prefix+"pi"
	sh(t, "ovs-vsctl --timeout=10 add-port %s %s tag=%d -- set interface %s type=patch options:peer=%s"+
		" -- add-port %s %s tag=%d -- set interface %s type=patch options:peer=%s",
		r.net.Bridge, tor, tenantVLAN, tor, host, tn.bridge, host, tenantVLAN, host, tor)
	ofport := strings.TrimSpace(sh(t, "ovs-vsctl --timeout=10 get interface %s ofport", host))
	sh(t, "ovs-ofctl -O OpenFlow14 add-flow %s 'table=0,priority=100,cookie=0x1,in_port=%s,actions=load:%d->NXM_NX_REG6[0..11],resubmit(,30)'",
		tn.bridge, ofport, tenantVLAN)
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	rec := &netagent.Reconciler{Source: r.admin.WithToken(reg.Token), Switch: drv, HostID: tn.hostID, Wait: 5 * time.Second}
	go func() { rec.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return tn
}

// endpoint is a network namespace plugged into a bridge: a VM's port on
// the host's integration bridge (by its iface-id), or a probe on the
// top-of-rack switch.
type endpoint struct {
	ns, ip string
}

// vm creates a port on the tenant network bound to the host, through the
// API, and plugs a namespace with the port's MAC and address into the
// host's bridge, as a VM's NIC is plugged: the network agent wires it.
func (tn *tenant) vm(t *testing.T, name string) (*endpoint, types.Port) {
	t.Helper()
	var p types.Port
	if _, err := tn.r.admin.Do(ctx, client.Request{Method: "POST", Path: "/v1/ports",
		Body: types.PortCreate{Name: name, Network: "tenant", Project: "p", Host: tn.hostID}}, &p); err != nil {
		t.Fatal(err)
	}
	bits := tn.subnet[strings.Index(tn.subnet, "/"):]
	ep := plug(t, tn.r.prefix+name, tn.bridge, p.MACAddress, p.FixedIPs[0].IPAddress+bits,
		"-- set interface "+tn.r.prefix+name+"o external_ids:iface-id="+p.ID)
	return ep, p
}

// plug makes a namespace with a veth whose outer end is added to bridge
// with extra ovs-vsctl arguments, and gives it mac and cidr.
func plug(t *testing.T, name, bridge, mac, cidr, extra string) *endpoint {
	t.Helper()
	ep := &endpoint{ns: name, ip: strings.Split(cidr, "/")[0]}
	outer, inner := name+"o", name+"i"
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", ep.ns).Run()
		exec.Command("ovs-vsctl", "--timeout=10", "--if-exists", "del-port", outer).Run()
		exec.Command("ip", "link", "del", outer).Run()
	})
	sh(t, "ip netns add %s", ep.ns)
	sh(t, "ip link add %s type veth peer name %s", outer, inner)
	sh(t, "ip link set %s netns %s", inner, ep.ns)
	sh(t, "ip netns exec %s ip link set %s address %s", ep.ns, inner, mac)
	sh(t, "ovs-vsctl --timeout=10 add-port %s %s %s", bridge, outer, extra)
	sh(t, "ip link set %s up", outer)
	sh(t, "ip netns exec %s sh -c 'ip link set lo up; ip link set %s up; ip addr add %s dev %s'", ep.ns, inner, cidr, inner)
	// The userspace datapath does not complete offloaded checksums.
	sh(t, "ip netns exec %s ethtool -K %s tx off", ep.ns, inner)
	return ep
}

// ping reports whether ip answers two pings from the endpoint.
func (e *endpoint) ping(ip string) bool {
	return exec.Command("ip", "netns", "exec", e.ns, "ping", "-c", "2", "-i", "0.3", "-W", "1", "-q", ip).Run() == nil
}

func sh(t *testing.T, format string, args ...any) string {
	t.Helper()
	cmd := fmt.Sprintf(format, args...)
	out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return string(out)
}

// eventually polls cond every 500 ms until it holds or timeout passes.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(500 * time.Millisecond)
	}
	return true
}

// nodePing runs ping on the node's serial console (its deployed OS's root
// shell) and reports whether ip answered. The result marker is computed
// by the shell, so the echoed command line never matches it. The
// connection stays open, drained, until the answer: QEMU drops what a
// closed connection had not yet fed the serial port, and a reader that
// does not drain stalls the guest's output. A line sent while no shell
// reads is lost, so it is sent again (after Ctrl-C) until answered: a
// ping may run twice.
func nodePing(t *testing.T, sn *sim.Node, ip string) bool {
	t.Helper()
	c, err := net.DialTimeout("unix", filepath.Join(sn.Dir, sn.Name+".sock"), 10*time.Second)
	if err != nil {
		t.Fatalf("serial console of %s: %v", sn.Name, err)
	}
	defer c.Close()
	go io.Copy(io.Discard, c)
	k := rand.IntN(1 << 30)
	ok, fail := fmt.Sprintf("BMPING-%d-ok", k+1), fmt.Sprintf("BMPING-%d-fail", k+1)
	cmd := fmt.Sprintf("ping -c 3 -W 2 %s >/dev/null 2>&1 && echo BMPING-$((%d+1))-ok || echo BMPING-$((%d+1))-fail\r", ip, k, k)
	for try := 0; try < 4; try++ {
		if _, err := fmt.Fprint(c, "\x03"+cmd); err != nil {
			t.Fatalf("write to the console of %s: %v", sn.Name, err)
		}
		var line string
		eventually(30*time.Second, func() bool {
			line = sn.SerialLine(ok) + sn.SerialLine(fail)
			return line != ""
		})
		if line != "" {
			return strings.Contains(line, ok)
		}
	}
	t.Fatalf("no answer from the console of %s to %q", sn.Name, cmd)
	return false
}
