package server

import (
	"context"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// TestRightsizing (issue 15, acceptance 4): usage fed through the agent's
// own report route flags a synthetic under-used server with the smallest
// flavor that fits its p95 usage with headroom, and not a busy one nor one
// with too short a history; the report is scoped to the caller's project,
// and the history is bounded and purged.
func TestRightsizing(t *testing.T) { testRightsizing(t, newEnv(t)) }

// TestRightsizingPostgres is the same on PostgreSQL (the usage upserts).
func TestRightsizingPostgres(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{PostgresDSN: testenv.PostgresDatabase(t, "corral_console_rs")})
	if err != nil {
		t.Fatal(err)
	}
	testRightsizing(t, newEnvStore(t, st, ""))
}

func testRightsizing(t *testing.T, e *env) {
	c := e.catalogue()
	e.must(200, "PATCH", "/v1/hosts/"+c.host.ID, types.HostUpdate{State: ptr(types.HostMaintenance)}, nil)
	host, agent := e.agentOf("hv9")
	for _, f := range []types.FlavorCreate{
		{Name: "m1.large", VCPUs: 4, RAMMiB: 8192, DiskGiB: 1},
		{Name: "m1.medium", VCPUs: 2, RAMMiB: 4096, DiskGiB: 1},
		{Name: "m1.mid", VCPUs: 1, RAMMiB: 2048, DiskGiB: 1},
		{Name: "m1.mid.bigdisk", VCPUs: 1, RAMMiB: 2048, DiskGiB: 500}, // fits, but larger disk: not smaller
		{Name: "m1.hp", VCPUs: 1, RAMMiB: 2048, DiskGiB: 1, Hugepages: true},
	} {
		e.must(201, "POST", "/v1/flavors", f, nil)
	}
	mk := func(name string) types.Server {
		in := c.server(name)
		in.Flavor = "m1.large"
		var s types.Server
		e.must(201, "POST", "/v1/servers", in, &s)
		if s.HostID != host.ID {
			t.Fatalf("%s on %s, want %s", name, s.HostID, host.ID)
		}
		return s
	}
	idle, busy, young := mk("idle"), mk("busy"), mk("young")

	// 30 hours of reports every 30 minutes, as the agent sends them:
	// idle uses 2 % of its 4 vCPUs and 1,000 MiB, busy 60 % and 6,000 MiB
	// (with one quiet hour, which p95 ignores); young reports only in the
	// last 5 hours, with an idle guest's figures.
	var cpu = map[string]uint64{}
	obs := func(id string, share float64, memMiB uint64, step time.Duration) types.GuestStatus {
		cpu[id] += uint64(share * 4 * float64(step))
		return types.GuestStatus{ServerID: id, State: types.GuestActive, Observed: types.GuestObserved{DomainID: 7,
			Counters: types.GuestCounter{CPUTimeNs: cpu[id], MemoryKiB: 8192 * 1024, MemoryUsedKiB: memMiB * 1024}}}
	}
	const step = 30 * time.Minute
	for i := 0; i <= 60; i++ {
		busyShare := 0.6
		if i == 20 || i == 21 {
			busyShare = 0.01
		}
		st := []types.GuestStatus{obs(idle.ID, 0.02, 1000, step), obs(busy.ID, busyShare, 6000, step)}
		if i >= 50 {
			st = append(st, obs(young.ID, 0.02, 1000, step))
		}
		if r := e.report(agent, host.ID, st...); r.status != 200 {
			t.Fatalf("report %d: %d %s", i, r.status, r.body)
		}
		e.advance(step)
	}

	var rep types.RightsizingReport
	e.must(200, "GET", "/v1/reports/rightsizing", nil, &rep)
	if rep.Window != "168h0m0s" || rep.CPUP95Below != 10 || rep.MemBelow != 30 || rep.MinHours != 24 {
		t.Errorf("defaults: %+v", rep)
	}
	if len(rep.Servers) != 1 {
		t.Fatalf("flagged %d servers, want only idle: %+v", len(rep.Servers), rep.Servers)
	}
	got := rep.Servers[0]
	if got.ServerID != idle.ID || got.Flavor != "m1.large" || got.Hours < 24 {
		t.Errorf("flagged %+v, want idle on m1.large with ≥ 24 hours", got)
	}
	if got.CPUP95 < 1.5 || got.CPUP95 > 2.5 || got.MemP95MiB != 1000 || got.MemP95 < 12 || got.MemP95 > 12.5 {
		t.Errorf("idle's usage: cpu p95 %.2f %%, mem p95 %d MiB (%.2f %%); want about 2 %% and 1000 MiB (12.2 %%)",
			got.CPUP95, got.MemP95MiB, got.MemP95)
	}
	if got.Suggested == nil || got.Suggested.Name != "m1.mid" || got.FreesVCPUs != 3 || got.FreesRAMMiB != 6144 {
		t.Errorf("suggestion %+v, frees %d vCPUs %d MiB; want m1.mid freeing 3 vCPUs and 6144 MiB", got.Suggested, got.FreesVCPUs, got.FreesRAMMiB)
	}
	if d := cmp.Diff([]types.RightsizingRack{{ZoneID: c.zone.ID, Zone: "rack1", Servers: 1, FreesVCPUs: 3, FreesRAMMiB: 6144}}, rep.Racks); d != "" {
		t.Errorf("racks (-want +got):\n%s", d)
	}

	// Thresholds: young is judged once fewer hours suffice; busy stays
	// unflagged even with a generous CPU threshold, as its memory is high.
	rep = types.RightsizingReport{} // decode afresh: omitted fields would keep old values
	e.must(200, "GET", "/v1/reports/rightsizing?min_hours=4&cpu_p95_below=70", nil, &rep)
	var names []string
	for _, s := range rep.Servers {
		names = append(names, s.Name)
	}
	if d := cmp.Diff([]string{"idle", "young"}, names); d != "" {
		t.Errorf("min_hours=4, cpu_p95_below=70 (-want +got):\n%s", d)
	}
	// With a threshold above its memory too, busy is flagged, but no
	// smaller flavor fits it: it is listed with the reason.
	rep = types.RightsizingReport{}
	e.must(200, "GET", "/v1/reports/rightsizing?cpu_p95_below=70&mem_below=80&window=2d", nil, &rep)
	sawBusy := false
	for _, s := range rep.Servers {
		if s.Name == "busy" {
			sawBusy = true
			if s.Suggested != nil || s.Reason == "" || s.CPUP95 < 55 || s.CPUP95 > 65 {
				t.Errorf("busy: %+v, want no suggestion, with a reason, cpu p95 about 60", s)
			}
		}
	}
	if !sawBusy {
		t.Errorf("cpu_p95_below=70&mem_below=80: busy not listed: %+v", rep.Servers)
	}

	// A project's token sees its own servers only.
	e.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "other"}, nil)
	var other types.Project
	e.must(200, "GET", "/v1/projects/other", nil, &other)
	r := e.call(e.token(types.RoleMember, other.ID), "GET", "/v1/reports/rightsizing", nil)
	rep = types.RightsizingReport{}
	r.decode(t, &rep)
	if r.status != 200 || len(rep.Servers) != 0 || len(rep.Racks) != 0 {
		t.Errorf("another project's report: %d %s", r.status, r.body)
	}
	r = e.call(e.token(types.RoleReader, c.project.ID), "GET", "/v1/reports/rightsizing", nil)
	rep = types.RightsizingReport{}
	r.decode(t, &rep)
	if r.status != 200 || len(rep.Servers) != 1 || rep.Servers[0].ServerID != idle.ID {
		t.Errorf("the project's reader: %d %s", r.status, r.body)
	}

	for q, field := range map[string]string{"?window=9d": "window", "?window=x": "window", "?cpu_p95_below=1001": "cpu_p95_below",
		"?mem_below=NaN": "mem_below", "?min_hours=0": "min_hours", "?headroom=0.5": "headroom", "?limit=3": "limit"} {
		if r := e.call(e.admin, "GET", "/v1/reports/rightsizing"+q, nil); r.status != 400 || r.apiErr(t).Details["field"] != field {
			t.Errorf("report%s: %d %s, want 400 naming %s", q, r.status, r.body, field)
		}
	}

	// Bounded: after 9 days, maintenance purges all but the last 8 days.
	e.advance(9 * 24 * time.Hour)
	if r := e.report(agent, host.ID, obs(idle.ID, 0.02, 1000, step)); r.status != 200 {
		t.Fatalf("late report: %d %s", r.status, r.body)
	}
	e.srv.MaintainOnce(context.Background())
	data, err := e.store.Usage(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(data.Hours[idle.ID]); n != 1 || len(data.Hours[busy.ID]) != 0 {
		t.Errorf("after the purge: idle has %d hours, busy %d; want 1 and 0", n, len(data.Hours[busy.ID]))
	}
}
