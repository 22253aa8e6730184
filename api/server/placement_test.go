package server

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// roomFor40 makes 4 hosts with 10 CPUs each (ratio 1) and a 1-vCPU flavor:
// room for exactly 40 servers.
func roomFor40(e *env) catalogue {
	e.t.Helper()
	var c catalogue
	e.must(201, "POST", "/v1/regions", types.RegionCreate{Name: "dc1"}, &c.region)
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, &c.zone)
	e.must(201, "POST", "/v1/aggregates", map[string]any{"name": "std", "cpu_allocation_ratio": 1.0}, &c.agg)
	e.must(201, "POST", "/v1/flavors", types.FlavorCreate{Name: "c1", VCPUs: 1, RAMMiB: 256, DiskGiB: 1}, &c.flavor)
	e.must(201, "POST", "/v1/images", types.ImageCreate{Name: "tiny", DiskFormat: "qcow2"}, &c.image)
	e.must(200, "PUT", "/v1/images/"+c.image.ID+"/file", qcow2Data(e.t, nil), &c.image)
	e.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "p"}, &c.project)
	for i := 1; i <= 4; i++ {
		e.addHost(fmt.Sprintf("hv%d", i), "rack1", 10, 65536, "std")
	}
	return c
}

// runConcurrentCreates sends 50 creates at once, spread over the given
// APIs, and checks: exactly 40 placed, 10 clear 409s, no host over 10.
func runConcurrentCreates(t *testing.T, c catalogue, apis ...*env) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	var refusals []*types.Error
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			e := apis[i%len(apis)]
			r := e.call(e.admin, "POST", "/v1/servers", c.server(fmt.Sprintf("s%d", i)))
			mu.Lock()
			defer mu.Unlock()
			statuses[r.status]++
			if r.status == 409 {
				refusals = append(refusals, r.apiErr(t))
			}
		}(i)
	}
	wg.Wait()
	if diff := cmp.Diff(map[int]int{201: 40, 409: 10}, statuses); diff != "" {
		t.Fatalf("statuses (-want +got):\n%s", diff)
	}
	for _, ae := range refusals {
		if ae.Code != types.CodeNoValidHost || !strings.Contains(ae.Message, "0/4 hosts fit") || !strings.Contains(ae.Message, "cpu") {
			t.Errorf("refusal = %s: %s, want no_valid_host naming cpu on 0/4 hosts", ae.Code, ae.Message)
		}
	}
	var hosts types.List[types.Host]
	apis[0].must(200, "GET", "/v1/hosts", nil, &hosts)
	total := int64(0)
	for _, h := range hosts.Items {
		if h.Allocated.VCPUs > 10 {
			t.Errorf("host %s over-allocated: %d vCPUs of 10", h.Name, h.Allocated.VCPUs)
		}
		total += h.Allocated.VCPUs
	}
	var servers types.List[types.Server]
	apis[0].must(200, "GET", "/v1/servers?limit=1000", nil, &servers)
	if total != 40 || len(servers.Items) != 40 {
		t.Errorf("allocated %d vCPUs for %d servers, want 40 and 40", total, len(servers.Items))
	}
}

func TestConcurrentPlacementSQLite(t *testing.T) {
	e := newEnv(t)
	runConcurrentCreates(t, roomFor40(e), e)
}

// TestConcurrentPlacementPostgres runs the same race on PostgreSQL through
// two API replicas, each with its own store connection pool and placement
// snapshot, as two corrald processes would.
func TestConcurrentPlacementPostgres(t *testing.T) {
	db := testenv.PostgresDatabase(t, "corral_api")
	open := func() *store.Store {
		st, err := store.Open(context.Background(), store.Config{PostgresDSN: db})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	a := newEnvStore(t, open(), "")
	b := newEnvStore(t, open(), a.admin)
	c := roomFor40(a)
	// Both replicas have decided once (snapshots loaded) before the race.
	a.must(200, "POST", "/v1/placement/dry-run", c.server("warm"), nil)
	b.must(200, "POST", "/v1/placement/dry-run", c.server("warm"), nil)
	runConcurrentCreates(t, c, a, b)
}

// TestExplanations: a refused create says why, counted per reason, and the
// dry run gives the same answer without claiming.
func TestExplanations(t *testing.T) {
	e := newEnv(t)
	c := roomFor40(e)
	e.must(201, "POST", "/v1/regions", types.RegionCreate{Name: "dc2"}, nil)
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack9", Region: "dc2"}, nil)
	var reg types.HostRegistration
	e.must(200, "POST", "/v1/hosts/register", types.HostRegister{Name: "far", Region: "dc2", Zone: "rack9",
		Inventory: types.Inventory{CPUs: 64, RAMMiB: 65536, DiskGiB: 100}}, &reg)
	// hv1 says it has almost no free memory: allocations fit, the failsafe
	// refuses. hv2 goes into maintenance.
	hosts := map[string]string{}
	var l types.List[types.Host]
	e.must(200, "GET", "/v1/hosts", nil, &l)
	for _, h := range l.Items {
		hosts[h.Name] = h.ID
	}
	e.must(204, "POST", "/v1/hosts/"+hosts["hv1"]+"/heartbeat", types.Heartbeat{Usage: types.Usage{MemFreeMiB: 1500}}, nil)
	e.must(200, "PATCH", "/v1/hosts/hv2", map[string]any{"state": "maintenance"}, nil)
	e.srv.placer.invalidate()

	in := c.server("big")
	in.Region = "dc1"
	var big types.Flavor
	e.must(201, "POST", "/v1/flavors", types.FlavorCreate{Name: "c12", VCPUs: 12, RAMMiB: 1024, DiskGiB: 1}, &big)
	in.Flavor = "c12"
	r := e.call(e.admin, "POST", "/v1/servers", in)
	if r.status != 409 {
		t.Fatalf("create = %d %s, want 409", r.status, r.body)
	}
	ae := r.apiErr(t)
	if ae.Code != types.CodeNoValidHost {
		t.Fatalf("code = %s", ae.Code)
	}
	reasons := reasonCounts(t, ae.Details["explanation"])
	// Hosts that can never match are counted as such before any that are
	// merely unavailable now.
	if diff := cmp.Diff(map[string]float64{"wrong_region": 1, "too_small_cpu": 4}, reasons); diff != "" {
		t.Errorf("reasons (-want +got):\n%s\nmessage: %s", diff, ae.Message)
	}
	// A small server: hv1 is refused by the failsafe, the rest fit.
	in.Flavor = "c1"
	var dry types.DryRun
	e.must(200, "POST", "/v1/placement/dry-run", in, &dry)
	if !dry.Fits || dry.HostID == hosts["hv1"] || dry.HostID == hosts["hv2"] {
		t.Errorf("dry run = %+v, want a fit on hv3 or hv4", dry)
	}
	reasons = reasonCounts(t, dry.Explanation)
	if diff := cmp.Diff(map[string]float64{"wrong_region": 1, "maintenance": 1, "memory_failsafe": 1}, reasons); diff != "" {
		t.Errorf("dry-run reasons (-want +got):\n%s", diff)
	}
	var none types.List[types.Server]
	e.must(200, "GET", "/v1/servers", nil, &none)
	if len(none.Items) != 0 {
		t.Errorf("dry run or refusal created %d servers", len(none.Items))
	}
	var srv types.Server
	e.must(201, "POST", "/v1/servers", in, &srv)
	if srv.HostID != dry.HostID {
		t.Errorf("create landed on %s, dry run said %s", srv.HostID, dry.HostID)
	}
	// Deleting frees the claim.
	e.must(204, "DELETE", "/v1/servers/"+srv.ID, nil, nil)
	var h types.Host
	e.must(200, "GET", "/v1/hosts/"+srv.HostID, nil, &h)
	if h.Allocated != (types.Allocation{}) {
		t.Errorf("allocation after delete = %+v, want zero", h.Allocated)
	}
}

func reasonCounts(t *testing.T, explanation any) map[string]float64 {
	t.Helper()
	m, ok := explanation.(map[string]any)
	if !ok {
		t.Fatalf("explanation = %#v", explanation)
	}
	out := map[string]float64{}
	rs, _ := m["reasons"].([]any)
	for _, r := range rs {
		rm := r.(map[string]any)
		out[rm["reason"].(string)] = rm["count"].(float64)
	}
	return out
}

// brokerFleet makes 4 racks with 3 hosts each in dc1, and 2 racks in dc2.
func brokerFleet(e *env) catalogue {
	e.t.Helper()
	c := roomFor40(e) // rack1 with hv1..hv4 in dc1
	for _, z := range []string{"rack2", "rack3", "rack4"} {
		e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: z, Region: "dc1"}, nil)
		for i := 1; i <= 3; i++ {
			e.addHost(fmt.Sprintf("%s-hv%d", z, i), z, 32, 131072, "std")
		}
	}
	e.must(201, "POST", "/v1/regions", types.RegionCreate{Name: "dc2"}, nil)
	for _, z := range []string{"b1", "b2"} {
		e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: z, Region: "dc2"}, nil)
		for i := 1; i <= 5; i++ {
			var reg types.HostRegistration
			e.must(200, "POST", "/v1/hosts/register", types.HostRegister{Name: fmt.Sprintf("%s-hv%d", z, i), Region: "dc2", Zone: z,
				Aggregates: []string{"std"}, Inventory: types.Inventory{CPUs: 32, RAMMiB: 131072, DiskGiB: 1000}}, &reg)
			e.must(204, "POST", "/v1/hosts/"+reg.Host.ID+"/heartbeat", types.Heartbeat{Usage: types.Usage{MemFreeMiB: 120000}}, nil)
		}
	}
	return c
}

func zoneSpread(g types.Group) []int {
	per := map[string]int{}
	for _, m := range g.Members {
		per[m.ZoneID]++
	}
	var out []int
	for _, n := range per {
		out = append(out, n)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(out)))
	return out
}

// TestBrokerGroup: 10 brokers over 4 racks land 3/3/2/2 on distinct hosts;
// with only 2 racks and min_zones 3 the group is refused whole, explained,
// with nothing claimed; scaling and replacing keep the spread and the rack.
func TestBrokerGroup(t *testing.T) {
	e := newEnv(t)
	c := brokerFleet(e)
	var g types.Group
	e.must(201, "POST", "/v1/groups", types.GroupCreate{Name: "kafka-a", Role: "broker", Project: "p", Region: "dc1",
		GroupSpec: types.GroupSpec{Members: 10, Flavor: "c1", Image: "tiny", ReplicationFactor: 3}}, &g)
	if diff := cmp.Diff([]int{3, 3, 2, 2}, zoneSpread(g)); diff != "" {
		t.Errorf("brokers per rack (-want +got):\n%s", diff)
	}
	hosts := map[string]bool{}
	for _, m := range g.Members {
		if hosts[m.HostID] {
			t.Errorf("two brokers on host %s", m.HostID)
		}
		hosts[m.HostID] = true
		if m.ZoneID == "" || m.State != types.ServerScheduled {
			t.Errorf("member %+v has no rack or is not scheduled", m)
		}
	}

	before := e.counts()
	var allocBefore types.List[types.Host]
	e.must(200, "GET", "/v1/hosts?region=dc2", nil, &allocBefore)
	r := e.call(e.admin, "POST", "/v1/groups", types.GroupCreate{Name: "kafka-b", Role: "broker", Project: "p", Region: "dc2",
		GroupSpec: types.GroupSpec{Members: 10, Flavor: "c1", Image: "tiny", MinZones: 3}})
	if r.status != 409 {
		t.Fatalf("group over 2 racks with min_zones 3 = %d %s, want 409", r.status, r.body)
	}
	ae := r.apiErr(t)
	if ae.Code != types.CodeNoValidHost || !strings.Contains(ae.Message, "zone") {
		t.Errorf("refusal = %s %q, want no_valid_host about zones", ae.Code, ae.Message)
	}
	if diff := cmp.Diff(before, e.counts()); diff != "" {
		t.Errorf("refused group changed the database:\n%s", diff)
	}
	var allocAfter types.List[types.Host]
	e.must(200, "GET", "/v1/hosts?region=dc2", nil, &allocAfter)
	if diff := cmp.Diff(allocBefore, allocAfter); diff != "" {
		t.Errorf("refused group claimed resources:\n%s", diff)
	}
	// Replication factor above the racks available: refused.
	r = e.call(e.admin, "POST", "/v1/groups", types.GroupCreate{Name: "kafka-c", Role: "broker", Project: "p", Region: "dc2",
		GroupSpec: types.GroupSpec{Members: 4, Flavor: "c1", Image: "tiny", ReplicationFactor: 3}})
	if r.status != 409 || !strings.Contains(strings.ToLower(r.apiErr(t).Message), "replication") {
		t.Errorf("RF 3 over 2 racks = %d %s, want 409 about the replication factor", r.status, r.body)
	}

	// A member is not deleted behind its group's back, and the project
	// cannot go while the group exists.
	if r := e.call(e.admin, "DELETE", "/v1/servers/"+g.Members[0].ServerID, nil); r.status != 409 || r.apiErr(t).Code != types.CodeConflict {
		t.Errorf("deleting a member directly = %d %s, want 409 conflict", r.status, r.body)
	}
	if r := e.call(e.admin, "DELETE", "/v1/projects/p", nil); r.status != 409 || r.apiErr(t).Code != types.CodeProjectInUse ||
		!strings.Contains(string(r.body), `"kind":"group"`) {
		t.Errorf("deleting the group's project = %d %s, want 409 project_in_use naming the group", r.status, r.body)
	}
	var byGroup types.List[types.Server]
	e.must(200, "GET", "/v1/servers?group=kafka-a&limit=100", nil, &byGroup)
	if len(byGroup.Items) != 10 {
		t.Errorf("servers?group=kafka-a = %d, want 10", len(byGroup.Items))
	}

	// Scale up to 12: still max skew 1 (3/3/3/3).
	e.must(200, "POST", "/v1/groups/kafka-a/scale", types.GroupScale{Members: 12}, &g)
	if diff := cmp.Diff([]int{3, 3, 3, 3}, zoneSpread(g)); diff != "" || len(g.Members) != 12 {
		t.Errorf("after scale-up to 12 (-want +got):\n%s", diff)
	}
	// Scale down to 9: 3/2/2/2.
	e.must(200, "POST", "/v1/groups/kafka-a/scale", types.GroupScale{Members: 9}, &g)
	if diff := cmp.Diff([]int{3, 2, 2, 2}, zoneSpread(g)); diff != "" {
		t.Errorf("after scale-down to 9 (-want +got):\n%s", diff)
	}
	// Replace a member: the new one is in the same rack.
	old := g.Members[0]
	var repl types.Server
	e.must(201, "POST", "/v1/groups/kafka-a/members/"+old.ServerID+"/replace", nil, &repl)
	if repl.ZoneID != old.ZoneID || repl.ID == old.ServerID || repl.Name != old.Name {
		t.Errorf("replacement %+v, want a new server named %s in rack %s", repl, old.Name, old.ZoneID)
	}
	e.must(200, "GET", "/v1/groups/kafka-a", nil, &g)
	if len(g.Members) != 9 {
		t.Errorf("members after replace = %d, want 9", len(g.Members))
	}
	// Deleting the group frees everything.
	e.must(204, "DELETE", "/v1/groups/kafka-a", nil, nil)
	var hl types.List[types.Host]
	e.must(200, "GET", "/v1/hosts?limit=100", nil, &hl)
	for _, h := range hl.Items {
		if h.Allocated != (types.Allocation{}) {
			t.Errorf("host %s still has %+v after the group was deleted", h.Name, h.Allocated)
		}
	}
	_ = c
}

// TestStreamGroup: stream workers are sized by slots with a whole core per
// slot.
func TestStreamGroup(t *testing.T) {
	e := newEnv(t)
	brokerFleet(e)
	var g types.Group
	e.must(201, "POST", "/v1/groups", types.GroupCreate{Name: "flink", Role: "stream", Project: "p", Region: "dc1",
		GroupSpec: types.GroupSpec{Members: 4, Image: "tiny", Stream: &types.StreamSizing{SlotsPerWorker: 4, CPUPerSlot: 0.5,
			MemoryMiBPerSlot: 2048, DiskGiB: 50}}}, &g)
	var srv types.Server
	e.must(200, "GET", "/v1/servers/"+g.Members[0].ServerID, nil, &srv)
	var f types.Flavor
	e.must(200, "GET", "/v1/flavors/"+srv.FlavorID, nil, &f)
	if f.VCPUs != 4 || f.RAMMiB != 8192 || f.DiskGiB != 50 {
		t.Errorf("stream worker flavor = %d vCPUs %d MiB %d GiB, want 4 (one core per slot), 8192 and 50", f.VCPUs, f.RAMMiB, f.DiskGiB)
	}
}
