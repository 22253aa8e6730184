package ovs_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/baremetal"
	"github.com/corral-cloud/corral/baremetal/ovs"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fakeOVS answers ovs-vsctl like a bridge with the given ports (name →
// attached MAC, bridge) and records the commands.
type fakeOVS struct {
	ports map[string][2]string
	tags  map[string]string
	cmds  []string
}

func (f *fakeOVS) exec(_ context.Context, args ...string) ([]byte, error) {
	f.cmds = append(f.cmds, "ovs-vsctl "+strings.Join(args, " "))
	args = args[1:] // --timeout
	switch {
	case args[0] == "--bare" && args[2] == "find":
		var out []string
		for name, p := range f.ports {
			if args[4] == `external_ids:attached-mac="`+p[0]+`"` {
				out = append(out, name)
			}
		}
		return []byte(strings.Join(out, "\n") + "\n"), nil
	case args[0] == "port-to-br":
		return []byte(f.ports[args[1]][1] + "\n"), nil
	case args[0] == "set":
		f.tags[args[2]] = strings.TrimPrefix(args[3], "tag=")
		return nil, nil
	case args[0] == "get":
		if t, ok := f.tags[args[2]]; ok {
			return []byte(t + "\n"), nil
		}
		return []byte("[]\n"), nil
	}
	return nil, errors.New("unexpected command")
}

func TestSetProvisioning(t *testing.T) {
	f := &fakeOVS{ports: map[string][2]string{
		"bm1-tap":  {"52:54:00:00:00:01", "br-prov"},
		"other":    {"52:54:00:00:00:02", "br-other"},
		"dup-a":    {"52:54:00:00:00:03", "br-prov"},
		"dup-b":    {"52:54:00:00:00:03", "br-prov"},
		"unrelate": {"52:54:00:00:00:09", "br-prov"},
	}, tags: map[string]string{}}
	sw, err := ovs.New(ovs.Config{Bridge: "br-prov", ProvisioningVLAN: 100, ParkingVLAN: 4094, Exec: f.exec})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	nic := baremetal.NodeNIC{NodeID: "node-1", Name: "bm1", MAC: "52:54:00:00:00:01"}
	if err := sw.SetProvisioning(ctx, nic, false); err != nil {
		t.Fatal(err)
	}
	if tag, _ := sw.Tag(ctx, nic.MAC); tag != 4094 {
		t.Errorf("off the provisioning network: tag %d, want 4094", tag)
	}
	if err := sw.SetProvisioning(ctx, nic, true); err != nil {
		t.Fatal(err)
	}
	if tag, _ := sw.Tag(ctx, nic.MAC); tag != 100 {
		t.Errorf("on the provisioning network: tag %d, want 100", tag)
	}
	for _, c := range []struct{ name, mac string }{{"unknown MAC", "52:54:00:00:00:99"}, {"other bridge", "52:54:00:00:00:02"},
		{"two ports", "52:54:00:00:00:03"}} {
		if err := sw.SetProvisioning(ctx, baremetal.NodeNIC{Name: "x", MAC: c.mac}, true); !errors.Is(err, baremetal.ErrNoPort) {
			t.Errorf("%s: %v, want ErrNoPort", c.name, err)
		}
	}
	golden := filepath.Join("testdata", "commands.txt")
	got := strings.Join(f.cmds, "\n") + "\n"
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, _ := os.ReadFile(golden)
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	for _, bad := range []ovs.Config{{ProvisioningVLAN: 0, ParkingVLAN: 5}, {ProvisioningVLAN: 5, ParkingVLAN: 5}, {ProvisioningVLAN: 5, ParkingVLAN: 4095}} {
		if _, err := ovs.New(bad); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}

// TestSetTenant: a VLAN network's port is an access port of its VLAN;
// VXLAN networks and VLANs the switch keeps for itself are refused with
// ErrSegmentUnsupported, leaving the port where it was.
func TestSetTenant(t *testing.T) {
	f := &fakeOVS{ports: map[string][2]string{"bm1-tap": {"52:54:00:00:00:01", "br-prov"}}, tags: map[string]string{}}
	sw, err := ovs.New(ovs.Config{Bridge: "br-prov", ProvisioningVLAN: 100, ParkingVLAN: 4094, Exec: f.exec})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	nic := baremetal.NodeNIC{NodeID: "node-1", Name: "bm1", MAC: "52:54:00:00:00:01"}
	for range 2 { // idempotent
		if err := sw.SetTenant(ctx, nic, baremetal.Segment{NetworkID: "net-a", Type: "vlan", ID: 210}); err != nil {
			t.Fatal(err)
		}
		if tag, _ := sw.Tag(ctx, nic.MAC); tag != 210 {
			t.Errorf("on the tenant network: tag %d, want 210", tag)
		}
	}
	for _, seg := range []baremetal.Segment{{Type: "vxlan", ID: 5000}, {Type: "vlan", ID: 100}, {Type: "vlan", ID: 4094}, {Type: "vlan", ID: 5000}} {
		err := sw.SetTenant(ctx, nic, seg)
		if !errors.Is(err, baremetal.ErrSegmentUnsupported) {
			t.Errorf("%+v: %v, want ErrSegmentUnsupported", seg, err)
		}
		if tag, _ := sw.Tag(ctx, nic.MAC); tag != 210 {
			t.Errorf("%+v moved the port to %d", seg, tag)
		}
	}
	if err := sw.SetTenant(ctx, baremetal.NodeNIC{Name: "x", MAC: "52:54:00:00:00:99"}, baremetal.Segment{Type: "vlan", ID: 210}); !errors.Is(err, baremetal.ErrNoPort) {
		t.Errorf("unknown MAC: %v, want ErrNoPort", err)
	}
	if want := "ovs-vsctl --timeout=10 set port bm1-tap tag=210 trunks=[] vlan_mode=access"; !strings.Contains(strings.Join(f.cmds, "\n"), want) {
		t.Errorf("commands %q lack %q", f.cmds, want)
	}
}
