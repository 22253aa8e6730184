package flows

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDHCPFlows checks that a VLAN's DHCP server gets its guests' requests
// and answers only them: requests from a guest's own MAC go to the server
// (VLAN 100's, never VLAN 200's), answers and ARP go to the VLAN's local
// guests by explicit output (never NORMAL: nothing leaves on an uplink or a
// tunnel), and a VLAN without local guests gets no DHCP flows.
func TestDHCPFlows(t *testing.T) {
	in := Input{
		Ports: []Port{aPort("p1", 5, 100).p, aPort("p2", 6, 100).p, aPort("p3", 7, 200).p},
		DHCP:  []DHCPPort{{OFPort: 9, VLAN: 100, MAC: "02:CA:00:00:00:01"}, {OFPort: 10, VLAN: 300, MAC: "02:ca:00:00:00:03"}},
	}
	var got []string
	for _, f := range Compute(in) {
		if strings.Contains(f.Match, "tp_dst=67") || strings.Contains(f.Match, "tp_src=67") ||
			strings.Contains(f.Match, "in_port=9") || strings.Contains(f.Match, "in_port=10") || strings.Contains(f.Actions, "output:9") {
			got = append(got, f.String()[strings.Index(f.String(), ",cookie="):][len(",cookie="):])
		}
	}
	for i, g := range got { // drop the cookie
		got[i] = g[strings.Index(g, ",")+1:]
	}
	want := []string{
		"udp,in_port=9,dl_dst=02:c0:00:00:00:05,tp_src=67,tp_dst=68,actions=output:5",
		"udp,in_port=9,dl_dst=02:c0:00:00:00:06,tp_src=67,tp_dst=68,actions=output:6",
		"udp,in_port=9,dl_dst=ff:ff:ff:ff:ff:ff,tp_src=67,tp_dst=68,actions=output:5,output:6",
		"arp,in_port=9,actions=output:5,output:6",
		"udp,in_port=5,dl_src=02:c0:00:00:00:05,tp_src=68,tp_dst=67,actions=mod_dl_dst:02:ca:00:00:00:01,output:9",
		"udp,in_port=6,dl_src=02:c0:00:00:00:06,tp_src=68,tp_dst=67,actions=mod_dl_dst:02:ca:00:00:00:01,output:9",
		"reg6=100,dl_dst=02:ca:00:00:00:01,actions=output:9",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DHCP flows (-want +got):\n%s", diff)
	}
	// Stable: the same input gives the same cookies.
	if diff := cmp.Diff(Compute(in), Compute(in)); diff != "" {
		t.Error(diff)
	}
}
