package agent_test

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/network/agent"
)

// runReconcilerWith runs the reconcile loop with physical networks until
// the test ends or stop is called; results receives every reconcile's
// result (dropped when nobody reads).
func (r *rig) runReconcilerWith(physnets map[string]agent.Uplink) (stop func(), results chan agent.Result) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	results = make(chan agent.Result, 1)
	rec := &agent.Reconciler{Source: r.agent, Switch: r.driver, HostID: r.hostID, Wait: 5 * time.Second, Physnets: physnets,
		OnReconcile: func(res agent.Result) {
			select {
			case results <- res:
			default:
			}
		}}
	go func() { rec.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	r.t.Cleanup(stop)
	return stop, results
}

// ok runs a command and reports whether it succeeded.
func ok(name string, args ...string) bool { return exec.Command(name, args...).Run() == nil }

// TestProviderVLAN (issue 11, acceptance 3): a guest on a provider VLAN
// network reaches a "router" behind the host's uplink. The uplink is a
// bridge the agent makes from --physnet datacentre=BRIDGE:IFACE, with
// IFACE a veth whose other end is a trunk port of a "top-of-rack" bridge;
// the router is an access port of VLAN 300 on that switch (the kernel has
// no 802.1Q devices). The switch learns the guest's MAC on VLAN 300, so
// the frames crossed the trunk tagged. A guest on a tenant VLAN network
// with an address of the same subnet does not reach the router. A flat
// network on the same physical network reaches a second router on the
// switch's untagged VLAN. When the last provider port goes, the patch pair
// goes too.
func TestProviderVLAN(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	uplink, trunk, tor := r.prefix+"ex", r.prefix+"upl", r.prefix+"tor"
	rtr := &endpoint{ns: r.prefix + "rtr", inner: r.prefix + "rti", outer: r.prefix + "rto", ip: "10.95.0.1"}
	flatRtr := &endpoint{ns: r.prefix + "frt", inner: r.prefix + "fri", outer: r.prefix + "fro", ip: "10.94.0.1"}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", rtr.ns).Run()
		exec.Command("ip", "netns", "del", flatRtr.ns).Run()
		exec.Command("ovs-vsctl", "--if-exists", "del-br", tor).Run()
		exec.Command("ovs-vsctl", "--if-exists", "del-br", uplink).Run()
		exec.Command("ip", "link", "del", trunk).Run()
	})
	// The switch and the router: the router's port is an access port of
	// VLAN 300, the trunk carries all VLANs.
	r.sh("ip link add %s type veth peer name %st", trunk, r.prefix)
	r.sh("ip link set %s up && ip link set %st up", trunk, r.prefix)
	r.sh("ovs-vsctl add-br %s -- set bridge %s datapath_type=netdev fail_mode=standalone -- add-port %s %st", tor, tor, tor, r.prefix)
	r.sh("ip netns add %s && ip link add %s type veth peer name %s && ip link set %s netns %s", rtr.ns, rtr.outer, rtr.inner, rtr.inner, rtr.ns)
	r.sh("ovs-vsctl add-port %s %s tag=300 && ip link set %s up", tor, rtr.outer, rtr.outer)
	r.sh("ip netns exec %s sh -c 'ip link set lo up; ip link set %s up; ip addr add 10.95.0.1/24 dev %s; ethtool -K %s tx off'",
		rtr.ns, rtr.inner, rtr.inner, rtr.inner)
	// The untagged side of the physical network: an access port of VLAN 0.
	r.sh("ip netns add %s && ip link add %s type veth peer name %s && ip link set %s netns %s", flatRtr.ns, flatRtr.outer, flatRtr.inner,
		flatRtr.inner, flatRtr.ns)
	r.sh("ovs-vsctl add-port %s %s tag=0 && ip link set %s up", tor, flatRtr.outer, flatRtr.outer)
	r.sh("ip netns exec %s sh -c 'ip link set lo up; ip link set %s up; ip addr add 10.94.0.1/24 dev %s; ethtool -K %s tx off'",
		flatRtr.ns, flatRtr.inner, flatRtr.inner, flatRtr.inner)
	must(t, create(ctx, r.api, "/v1/networks", types.NetworkCreate{Name: "lan", SegmentType: "flat", Physnet: "datacentre"}, nil))
	must(t, create(ctx, r.api, "/v1/subnets", types.SubnetCreate{Name: "lan-v4", Network: "lan", CIDR: "10.94.0.0/24"}, nil))

	must(t, create(ctx, r.api, "/v1/networks", types.NetworkCreate{Name: "ext", SegmentType: "vlan", SegmentID: 300, Physnet: "datacentre"}, nil))
	must(t, create(ctx, r.api, "/v1/subnets", types.SubnetCreate{Name: "ext-v4", Network: "ext", CIDR: "10.95.0.0/24"}, nil))
	// Same subnet on a tenant VLAN that stays inside the host.
	r.network("blue", 301, "10.95.0.0/24", types.IPRange{Start: "10.95.0.100", End: "10.95.0.200"})
	g := r.endpoint("g", "ext")
	h := r.endpoint("h", "blue")
	f := r.endpoint("f", "lan")
	physnets := map[string]agent.Uplink{"datacentre": {Bridge: uplink, Interface: trunk}}
	stop, _ := r.runReconcilerWith(physnets)

	took := eventually(t, 30*time.Second, "guest on the provider network pings the router", func() bool { return r.ping(g, rtr.ip, 1) })
	t.Logf("guest reached the router %s after the reconciler started", took)
	if !r.ping(g, rtr.ip, 3) {
		t.Fatal("guest on provider VLAN 300 does not reliably reach the router")
	}
	// The router reaches the guest too (ingress from outside the group
	// is not allowed by the default group, but replies to the guest's
	// pings were; a new connection from the router is refused).
	if r.ping(rtr, g.ip, 2) {
		t.Error("the router's new pings passed the guest's default group (ingress only from members)")
	}
	fdb := r.sh("ovs-appctl fdb/show %s", tor)
	if !fdbHas(fdb, 300, g.port.MACAddress) {
		t.Errorf("the top-of-rack switch did not learn the guest's MAC %s on VLAN 300:\n%s", g.port.MACAddress, fdb)
	}
	if r.ping(h, rtr.ip, 2) {
		t.Error("a guest on tenant VLAN 301 reaches the provider network's router")
	}
	eventually(t, 20*time.Second, "guest on the flat network pings the untagged router", func() bool { return r.ping(f, flatRtr.ip, 1) })
	if fdb := r.sh("ovs-appctl fdb/show %s", tor); !fdbHas(fdb, 0, f.port.MACAddress) || fdbHas(fdb, 300, f.port.MACAddress) {
		t.Errorf("the switch did not learn the flat guest's MAC %s untagged (VLAN 0) only:\n%s", f.port.MACAddress, fdb)
	}
	if r.ping(f, rtr.ip, 2) || r.ping(g, flatRtr.ip, 2) {
		t.Error("the flat network and VLAN 300 reach each other's routers")
	}
	ports := r.sh("ovs-vsctl list-ports %s", uplink)
	if !strings.Contains(ports, trunk) || !strings.Contains(ports, "cpo") {
		t.Errorf("uplink %s ports: %s, want the trunk and a patch", uplink, ports)
	}
	var tags []string
	for _, p := range strings.Fields(ports) {
		if strings.HasPrefix(p, "cpo") {
			tags = append(tags, strings.TrimSpace(r.sh("ovs-vsctl get port %s tag", p)))
		}
	}
	if sort.Strings(tags); strings.Join(tags, ",") != "0,300" {
		t.Errorf("uplink patch port tags %v, want 0 (flat) and 300", tags)
	}

	// A restarted agent changes no flow and drops no packet to the router.
	pinger := exec.Command("ip", "netns", "exec", g.ns, "ping", "-i", "0.05", "-c", "60", "-W", "1", rtr.ip)
	var pingOut strings.Builder
	pinger.Stdout = &pingOut
	must(t, pinger.Start())
	time.Sleep(500 * time.Millisecond)
	stop()
	_, results := r.runReconcilerWith(physnets)
	select {
	case res := <-results:
		if res.Err != nil || res.Added+res.Deleted+res.Retagged+res.Tunnels != 0 {
			t.Errorf("first reconcile after a restart: %+v, want no flow, tag or tunnel change", res)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no reconcile after the restart")
	}
	pinger.Wait()
	if m := pingSummary.FindStringSubmatch(pingOut.String()); m == nil || m[1] != "60" || m[2] != "60" {
		t.Errorf("pings to the router across an agent restart: %q, want 60 of 60", pingSummary.FindString(pingOut.String()))
	}

	// The last provider ports go: the patch pairs go, the trunk stays.
	must(t, r.api.Delete(ctx, "/v1/ports/"+g.port.ID))
	must(t, r.api.Delete(ctx, "/v1/ports/"+f.port.ID))
	eventually(t, 20*time.Second, "patch ports removed", func() bool {
		return !strings.Contains(r.sh("ovs-vsctl list-ports %s; ovs-vsctl list-ports %s", uplink, r.bridge), "cp")
	})
	if !strings.Contains(r.sh("ovs-vsctl list-ports %s", uplink), trunk) {
		t.Error("the uplink's own interface was removed with the patch")
	}
}

// fdbHas reports whether ovs-appctl fdb/show lists mac on vlan.
func fdbHas(fdb string, vlan int, mac string) bool {
	for _, l := range strings.Split(fdb, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[1] == fmt.Sprint(vlan) && strings.EqualFold(f[2], mac) {
			return true
		}
	}
	return false
}

// TestAllowedAddressPair (issue 11, acceptance 4): a VIP shared by two
// guests. Without the pair, the VIP's traffic is dropped (its ARP replies
// and its IPv4 packets); with the pair on both ports, first one guest and
// then the other sends from it, and a third guest reaches the VIP at
// whichever holds it; when the pair is removed again, the holder's VIP
// traffic is dropped.
func TestAllowedAddressPair(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.network("blue", 501, "10.96.0.0/24")
	a := r.endpoint("a", "blue")
	b := r.endpoint("b", "blue")
	c := r.endpoint("c", "blue")
	const vip = "10.96.0.100"
	r.runReconciler()
	eventually(t, 20*time.Second, "c pings a", func() bool { return r.ping(c, a.ip, 1) })

	ns := func(e *endpoint, format string, args ...any) string {
		return r.sh("ip netns exec %s sh -c '%s'", e.ns, fmt.Sprintf(format, args...))
	}
	fromVIP := func(e *endpoint, n int) bool {
		return ok("ip", "netns", "exec", e.ns, "ping", "-c", fmt.Sprint(n), "-i", "0.2", "-W", "1", "-q", "-I", vip, c.ip)
	}
	setPairs := func(e *endpoint, pairs []types.AddressPair) {
		t.Helper()
		var p types.Port
		_, err := r.api.Do(ctx, client.Request{Method: "PATCH", Path: "/v1/ports/" + e.port.ID,
			Body: types.PortUpdate{AllowedAddressPairs: &pairs}}, &p)
		must(t, err)
	}

	// a takes the VIP without a pair: nobody reaches it, nothing from it
	// passes.
	ns(a, "ip addr add %s/24 dev %s", vip, a.inner)
	if r.ping(c, vip, 2) {
		t.Fatal("c reaches the VIP on a without an allowed address pair")
	}
	if fromVIP(a, 2) {
		t.Fatal("a's pings from the VIP pass without an allowed address pair")
	}

	// The pair on both ports: a holds the VIP.
	pair := []types.AddressPair{{IPAddress: vip}}
	setPairs(a, pair)
	setPairs(b, pair)
	took := eventually(t, 20*time.Second, "c reaches the VIP on a", func() bool { return r.ping(c, vip, 1) })
	t.Logf("the VIP answered %s after the pairs were set", took)
	if !fromVIP(a, 3) {
		t.Error("a cannot send from the VIP with the pair")
	}
	if got := ns(c, "ip neigh show %s", vip); !strings.Contains(got, a.port.MACAddress) {
		t.Errorf("c's neighbour entry for the VIP: %q, want a's MAC %s", got, a.port.MACAddress)
	}

	// The VIP moves to b (as keepalived does): b announces itself by
	// sending from the VIP; c's neighbour entry follows, and c reaches b.
	ns(a, "ip addr del %s/24 dev %s", vip, a.inner)
	ns(b, "ip addr add %s/24 dev %s; ip neigh flush dev %s", vip, b.inner, b.inner)
	if !fromVIP(b, 3) {
		t.Fatal("b cannot send from the VIP with the pair")
	}
	eventually(t, 10*time.Second, "c's neighbour entry for the VIP moves to b", func() bool {
		return strings.Contains(ns(c, "ip neigh show %s", vip), b.port.MACAddress)
	})
	if !r.ping(c, vip, 3) {
		t.Error("c does not reach the VIP on b")
	}

	// Without the pair, b's VIP traffic is dropped again. Static
	// neighbours take ARP out of the picture: only the IP source decides.
	setPairs(b, []types.AddressPair{})
	ns(b, "ip neigh replace %s lladdr %s dev %s", c.ip, c.port.MACAddress, b.inner)
	eventually(t, 20*time.Second, "b's VIP traffic dropped after the pair's removal", func() bool { return !fromVIP(b, 1) })
	if fromVIP(b, 3) {
		t.Error("b still sends from the VIP after its pair was removed")
	}
	if !r.ping(b, c.ip, 2) {
		t.Error("b's own address stopped working")
	}
}
