package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// TestDHCPNetworks groups bound ports by network with their first address,
// the first port's subnet options, and the MTU of the segment.
func TestDHCPNetworks(t *testing.T) {
	ports := []types.BoundPort{
		{ID: "p2", NetworkID: "n1", SegmentType: "vxlan", MACAddress: "02:00:00:00:00:0B", IPs: []string{"10.0.0.6/24", "10.9.0.6/24"},
			Gateway: "10.0.0.1", DNSServers: []string{"10.0.0.53"}},
		{ID: "p1", NetworkID: "n1", SegmentType: "vxlan", MACAddress: "02:00:00:00:00:0a", IPs: []string{"10.0.0.5/24"}, Gateway: "10.0.0.1"},
		{ID: "p3", NetworkID: "n2", SegmentType: "vlan", MACAddress: "02:00:00:00:00:0c"},                               // no address
		{ID: "p4", NetworkID: "n3", SegmentType: "vlan", MACAddress: "02:00:00:00:00:0d", IPs: []string{"10.3.0.5/24"}}, // no local VLAN
	}
	got := DHCPNetworks(ports, map[string]int{"n1": 4094, "n2": 100}, 1500)
	if len(got) != 1 {
		t.Fatalf("networks %+v, want n1 only", got)
	}
	n := got[0]
	if n.NetworkID != "n1" || n.VLAN != 4094 || n.MTU != 1450 || len(n.Subnets) != 1 || n.Subnets[0].Prefix.String() != "10.0.0.0/24" ||
		n.Subnets[0].DNSServers[0] != "10.0.0.53" {
		t.Errorf("network %+v", n)
	}
	var hosts []string
	for _, h := range n.Hosts {
		hosts = append(hosts, h.MAC+"="+h.IP.String())
	}
	if diff := cmp.Diff([]string{"02:00:00:00:00:0a=10.0.0.5", "02:00:00:00:00:0b=10.0.0.6"}, hosts); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
}

// TestDnsmasqConfig: static entries only, unknown MACs ignored, the
// subnet's options, and option 121 carrying the default route too.
func TestDnsmasqConfig(t *testing.T) {
	ports := []types.BoundPort{{ID: "p1", NetworkID: "n1", SegmentType: "vlan", MACAddress: "02:00:00:00:00:0a", IPs: []string{"10.0.0.5/24"},
		Gateway: "10.0.0.1", DNSServers: []string{"10.0.0.53", "10.0.0.54"},
		HostRoutes: []types.HostRoute{{Destination: "172.16.0.0/12", NextHop: "10.0.0.254"}}}}
	conf, hosts := DnsmasqConfig(DHCPNetworks(ports, map[string]int{"n1": 100}, 0)[0], "/d", "cdnx", time.Hour)
	for _, want := range []string{
		"port=0\n", "interface=cdnx\n", "bind-interfaces\n", "dhcp-ignore=tag:!known\n", "dhcp-hostsfile=/d/hosts\n",
		"dhcp-range=set:s0,10.0.0.0,static,255.255.255.0,3600s\n", "shared-network=cdnx,10.0.0.0\n",
		"dhcp-option=tag:s0,option:router,10.0.0.1\n", "dhcp-option=tag:s0,option:dns-server,10.0.0.53,10.0.0.54\n",
		"dhcp-option=tag:s0,option:mtu,1500\n",
		"dhcp-option=tag:s0,option:classless-static-route,172.16.0.0/12,10.0.0.254,0.0.0.0/0,10.0.0.1\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("configuration lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "dhcp-range=") && strings.Contains(conf, ",dynamic") {
		t.Error("a dynamic range")
	}
	if hosts != "02:00:00:00:00:0a,10.0.0.5\n" {
		t.Errorf("hosts = %q", hosts)
	}
	// No gateway and no DNS servers: the options are sent empty (dnsmasq
	// would otherwise offer itself).
	ports[0].Gateway, ports[0].DNSServers, ports[0].HostRoutes = "", nil, nil
	conf, _ = DnsmasqConfig(DHCPNetworks(ports, map[string]int{"n1": 100}, 0)[0], "/d", "cdnx", time.Hour)
	for _, want := range []string{"dhcp-option=tag:s0,option:router\n", "dhcp-option=tag:s0,option:dns-server\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("configuration lacks %q:\n%s", want, conf)
		}
	}
}

func TestDHCPNames(t *testing.T) {
	a, b := namesFor("br-int", "net-1"), namesFor("br-test", "net-1")
	if a == b {
		t.Error("two bridges share the names of a network's DHCP server")
	}
	for _, n := range []string{a.outer, a.inner} {
		if len(n) > 15 {
			t.Errorf("interface name %q is longer than 15 characters", n)
		}
	}
	if a != namesFor("br-int", "net-1") {
		t.Error("names are not stable")
	}
}
