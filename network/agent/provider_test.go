package agent

import (
	"testing"

	"github.com/corral-cloud/corral/network"
	"github.com/google/go-cmp/cmp"
)

func TestParsePhysnet(t *testing.T) {
	for _, tc := range []struct {
		in   string
		name string
		up   Uplink
		bad  bool
	}{
		{in: "datacentre=br-ex", name: "datacentre", up: Uplink{Bridge: "br-ex"}},
		{in: "storage=br-st:eth1", name: "storage", up: Uplink{Bridge: "br-st", Interface: "eth1"}},
		{in: "datacentre=eth1", name: "datacentre", up: Uplink{Bridge: "eth1"}},
		{in: "datacentre", bad: true},
		{in: "=br-ex", bad: true},
		{in: "data centre=br-ex", bad: true},
		{in: "datacentre=", bad: true},
		{in: "datacentre=a-bridge-name-too-long", bad: true},
		{in: "datacentre=br-ex:", up: Uplink{Bridge: "br-ex"}, name: "datacentre"},
	} {
		name, up, err := ParsePhysnet(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("ParsePhysnet(%q) error %v, want error %v", tc.in, err, tc.bad)
			continue
		}
		if !tc.bad && (name != tc.name || up != tc.up) {
			t.Errorf("ParsePhysnet(%q) = %s %+v, want %s %+v", tc.in, name, up, tc.name, tc.up)
		}
	}
}

// fakeUplinker knows some bridges.
type fakeUplinker struct{ bridges map[string]bool }

func (f fakeUplinker) BridgeExists(n string) (bool, error) { return f.bridges[n], nil }
func (f fakeUplinker) EnsureUplink(string, string) error   { return nil }
func (f fakeUplinker) EnsurePatch(network.PatchSpec) error { return nil }
func (f fakeUplinker) DeletePatch(name, peer string) error { return nil }

func TestResolveUplink(t *testing.T) {
	u := fakeUplinker{bridges: map[string]bool{"br-ex": true}}
	isIface := func(n string) bool { return n == "eth1" || n == "br-ex" }
	for _, tc := range []struct{ in, want Uplink }{
		{Uplink{Bridge: "br-ex"}, Uplink{Bridge: "br-ex"}},                                     // an OVS bridge, even if also a device
		{Uplink{Bridge: "eth1"}, Uplink{Bridge: "cpb-eth1", Interface: "eth1"}},                // an interface: the agent's bridge
		{Uplink{Bridge: "br-new"}, Uplink{Bridge: "br-new"}},                                   // neither: a bridge to create
		{Uplink{Bridge: "br-x", Interface: "eth2"}, Uplink{Bridge: "br-x", Interface: "eth2"}}, // explicit
	} {
		got, err := ResolveUplink(u, tc.in, isIface)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ResolveUplink(%+v) (-want +got):\n%s", tc.in, diff)
		}
	}
	// Names stay within 15 characters and are stable.
	a, b := PatchNames("datacentre", "vlan", 300)
	a2, b2 := PatchNames("datacentre", "vlan", 300)
	if len(a) > 15 || len(b) > 15 || a != a2 || b != b2 || a[3:] != b[3:] {
		t.Errorf("PatchNames = %s %s / %s %s", a, b, a2, b2)
	}
}
