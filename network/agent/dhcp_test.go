package agent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/network/agent"
)

// dhcpEndpoint is like endpoint, without an address: the namespace asks
// DHCP for one. mac, when set, replaces the port's MAC in the namespace
// (a guest spoofing another MAC).
func (r *rig) dhcpEndpoint(name, network, mac string) *endpoint {
	r.t.Helper()
	var p types.Port
	must(r.t, create(context.Background(), r.api, "/v1/ports", types.PortCreate{Name: name, Network: network, Project: "games",
		Host: r.hostID}, &p))
	if mac == "" {
		mac = p.MACAddress
	}
	ep := &endpoint{ns: r.prefix + name, inner: r.prefix + name + "i", outer: r.prefix + name + "o", port: p, ip: p.FixedIPs[0].IPAddress}
	r.t.Cleanup(func() {
		exec.Command("ip", "netns", "del", ep.ns).Run()
		exec.Command("ip", "link", "del", ep.outer).Run()
	})
	r.sh("ip netns add %s", ep.ns)
	r.sh("ip link add %s type veth peer name %s", ep.outer, ep.inner)
	r.sh("ip link set %s netns %s", ep.inner, ep.ns)
	r.sh("ip netns exec %s ip link set %s address %s", ep.ns, ep.inner, mac)
	r.sh("ovs-vsctl add-port %s %s -- set Interface %s external_ids:iface-id=%s", r.bridge, ep.outer, ep.outer, p.ID)
	r.sh("ip link set %s up", ep.outer)
	r.sh("ip netns exec %s sh -c 'ip link set lo up; ip link set %s up; ethtool -K %s tx off >/dev/null'", ep.ns, ep.inner, ep.inner)
	return ep
}

// udhcpc runs one DHCP exchange (busybox udhcpc, 3 tries a second apart)
// in e's namespace and returns the lease's variables, or nil if nothing
// answered.
func (r *rig) udhcpc(e *endpoint) map[string]string {
	r.t.Helper()
	dir := r.t.TempDir()
	script := filepath.Join(dir, "script")
	must(r.t, os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env > "+dir+"/lease\nexit 0\n"), 0o755))
	cmd := exec.Command("ip", "netns", "exec", e.ns, "busybox", "udhcpc", "-i", e.inner, "-q", "-n", "-f", "-t", "3", "-T", "1",
		"-s", script, "-O", "mtu", "-O", "staticroutes")
	cmd.Run()
	b, err := os.ReadFile(filepath.Join(dir, "lease"))
	if err != nil {
		return nil
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	return env
}

func (r *rig) runReconcilerDHCP() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	dhcpDir := filepath.Join(os.TempDir(), r.prefix+"-dhcp")
	rec := &agent.Reconciler{Source: r.agent, Switch: r.driver, HostID: r.hostID, Wait: 5 * time.Second,
		DHCP: &agent.DHCP{Dir: dhcpDir, Switch: r.driver, Bridge: r.bridge}}
	go func() { rec.Run(ctx); close(done) }()
	r.t.Cleanup(func() {
		cancel()
		<-done
		// The servers outlive the agent on purpose; the test removes its own.
		out, _ := exec.Command("sh", "-c", "cat "+dhcpDir+"/*/pid 2>/dev/null").Output()
		for _, pid := range strings.Fields(string(out)) {
			exec.Command("kill", pid).Run()
		}
		entries, _ := os.ReadDir(dhcpDir)
		for _, e := range entries {
			exec.Command("ip", "netns", "del", "cdhcp-"+e.Name()).Run()
			exec.Command("ip", "link", "del", "cdh"+e.Name()).Run()
		}
		os.RemoveAll(dhcpDir)
	})
}

// TestDHCPAnswersOwnPortsOnly: a namespace plugged in as a port's guest
// gets exactly the port's IPAM address, the gateway, DNS servers, MTU and
// host routes (option 121, default route included) from the host's DHCP
// server; one that sends from a MAC no port has gets no answer; and after
// the last port of the network leaves the host, its server is gone.
func TestDHCPAnswersOwnPortsOnly(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	must(t, create(ctx, r.api, "/v1/networks", types.NetworkCreate{Name: "blue", SegmentType: "vlan", SegmentID: 211}, nil))
	must(t, create(ctx, r.api, "/v1/subnets", types.SubnetCreate{Name: "blue-v4", Network: "blue", CIDR: "10.61.0.0/24",
		DNSServers: []string{"10.61.0.53", "10.61.0.54"}, HostRoutes: []types.HostRoute{{Destination: "172.20.0.0/16", NextHop: "10.61.0.254"}}}, nil))
	r.runReconcilerDHCP()
	a := r.dhcpEndpoint("a", "blue", "")
	var lease map[string]string
	took := eventually(t, 90*time.Second, "a DHCP answer for "+a.ip, func() bool { lease = r.udhcpc(a); return lease != nil })
	t.Logf("first answer after %s (server set up on demand)", took)
	want := map[string]string{"ip": a.ip, "mask": "24", "router": "10.61.0.1", "dns": "10.61.0.53 10.61.0.54", "mtu": "1500",
		"staticroutes": "172.20.0.0/16 10.61.0.254 0.0.0.0/0 10.61.0.1", "serverid": agent.DHCPServerIP}
	for k, v := range want {
		if lease[k] != v {
			t.Errorf("lease %s = %q, want %q (lease %v)", k, lease[k], v, lease)
		}
	}
	start := time.Now()
	if r.udhcpc(a) == nil {
		t.Fatal("a second exchange got no answer")
	}
	t.Logf("DHCP exchange (discover, offer, request, ack, with udhcpc's start): %s", time.Since(start))

	// A guest sending from a MAC that is not its port's is not answered
	// (and dnsmasq would not know the MAC either).
	spoof := r.dhcpEndpoint("s", "blue", "52:54:00:de:ad:01")
	if l := r.udhcpc(spoof); l != nil {
		t.Errorf("a spoofed MAC got a lease: %v", l)
	}

	// The server goes with the network's last port on the host.
	for _, p := range []string{a.port.ID, spoof.port.ID} {
		_, err := r.api.Do(ctx, client.Request{Method: "DELETE", Path: "/v1/ports/" + p}, nil)
		must(t, err)
	}
	eventually(t, 60*time.Second, "the DHCP server's port removed", func() bool {
		out := r.sh("ovs-vsctl list-ports %s", r.bridge)
		return !strings.Contains(out, "cdh")
	})
}

// BenchmarkDHCPAnswer measures one DHCP exchange through the flows and the
// host's dnsmasq, from a namespace plugged in as a guest (busybox udhcpc
// start included).
func BenchmarkDHCPAnswer(b *testing.B) {
	r := newRig(b)
	ctx := context.Background()
	must(b, create(ctx, r.api, "/v1/networks", types.NetworkCreate{Name: "blue", SegmentType: "vlan", SegmentID: 212}, nil))
	must(b, create(ctx, r.api, "/v1/subnets", types.SubnetCreate{Name: "blue-v4", Network: "blue", CIDR: "10.62.0.0/24"}, nil))
	r.runReconcilerDHCP()
	a := r.dhcpEndpoint("a", "blue", "")
	eventually(b, 90*time.Second, "a DHCP answer", func() bool { return r.udhcpc(a) != nil })
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r.udhcpc(a) == nil {
			b.Fatal("no answer")
		}
	}
}
