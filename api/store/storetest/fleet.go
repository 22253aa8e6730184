package storetest

import (
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// testFleet: the /metrics read of the fleet gives each host's inventory,
// usage and failsafe figures, each node's BMC state and when its BMC last
// answered, and the oldest unsettled server by kind.
func testFleet(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	empty := must[store.Fleet](t)(s.Fleet(ctx))
	if len(empty.Hosts) != 0 || len(empty.Nodes) != 0 || len(empty.OldestUnsettled) != 0 {
		t.Fatalf("fleet of an empty store = %+v", empty)
	}
	reg := types.HostRegister{Name: "hv1", Inventory: types.Inventory{CPUs: 16, RAMMiB: 65536, DiskGiB: 500,
		Hugepages: map[string]int64{"2048": 1024}}}
	where := store.HostPlacement{RegionID: f.region.ID, ZoneID: f.zone.ID, AggregateIDs: []string{f.agg.ID}}
	h, _ := must2(t)(s.RegisterHost(ctx, reg, where))
	before := must[store.Fleet](t)(s.Fleet(ctx))
	if len(before.Hosts) != 1 || before.Hosts[0].Measured {
		t.Fatalf("host before its first heartbeat = %+v, want unmeasured", before.Hosts)
	}
	beat := time.Now().Add(-10 * time.Second)
	if err := s.Heartbeat(ctx, h.ID, types.Usage{MemFreeMiB: 60000, Load1: 1.5, DiskFreeGiB: 400, Guests: 2,
		HugepagesFree: map[string]int64{"2048": 1000}}, beat); err != nil {
		t.Fatal(err)
	}
	got := must[store.Fleet](t)(s.Fleet(ctx))
	if len(got.Hosts) != 1 {
		t.Fatalf("hosts = %+v", got.Hosts)
	}
	fh := got.Hosts[0]
	if fh.Name != "hv1" || fh.State != types.HostUp || fh.Inventory.CPUs != 16 || fh.Inventory.Hugepages["2048"] != 1024 ||
		fh.Usage.MemFreeMiB != 60000 || fh.Usage.Load1 != 1.5 || fh.Usage.HugepagesFree["2048"] != 1000 ||
		!fh.Measured || fh.FailsafeFreeMiB != 60000 || fh.LastHeartbeat.Sub(beat).Abs() > time.Millisecond {
		t.Errorf("host = %+v", fh)
	}

	n := enrol(t, s, f, "bm1", "52:54:00:00:00:09")
	enrolled := must[store.Fleet](t)(s.Fleet(ctx))
	if len(enrolled.Nodes) != 1 || enrolled.Nodes[0].Name != "bm1" || enrolled.Nodes[0].PowerState != types.PowerUnknown ||
		enrolled.Nodes[0].BMCFault != "" || time.Since(enrolled.Nodes[0].LastAnswer) > time.Minute ||
		time.Since(enrolled.Nodes[0].StateChangedAt) > time.Minute {
		t.Errorf("node never checked = %+v, want its enrolment as last answer", enrolled.Nodes)
	}
	must[store.NodeRow](t)(s.RecordNodePower(ctx, n.ID, types.PowerOn, "", "", "test"))
	answered := must[store.Fleet](t)(s.Fleet(ctx)).Nodes[0]
	must[store.NodeRow](t)(s.RecordNodePower(ctx, n.ID, types.PowerUnknown, "bmc unreachable: timeout", "", "test"))
	faulted := must[store.Fleet](t)(s.Fleet(ctx)).Nodes[0]
	if answered.PowerState != types.PowerOn || faulted.BMCFault == "" || faulted.PowerState != types.PowerUnknown ||
		faulted.LastAnswer.Before(answered.LastAnswer) || time.Since(faulted.LastAnswer) > time.Minute {
		t.Errorf("answered %+v, then faulted %+v", answered, faulted)
	}
}
