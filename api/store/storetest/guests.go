package storetest

import (
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// testGuests: a host's desired guests carry their flavor and image; agent
// reports record state and observation; a confirmed delete removes the
// server and gives its claim back in one transaction; reports for servers
// on other hosts are ignored.
func testGuests(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	h, _ := must2(t)(s.RegisterHost(ctx, types.HostRegister{Name: "hv1", Inventory: types.Inventory{CPUs: 8, RAMMiB: 16384, DiskGiB: 100}},
		store.HostPlacement{RegionID: f.region.ID, ZoneID: f.zone.ID}))
	srv := f.server("g1")
	srv.HostID = h.ID
	claim := store.Allocation{VCPUs: 1, RAMMiB: 800, DiskGiB: 1, Guests: 1}
	made := must[[]types.Server](t)(s.ClaimAndCreate(ctx, []store.HostClaim{{HostID: h.ID, Generation: h.Generation, Delta: claim}},
		[]store.PlacedServer{{Server: srv, Claim: claim}}, nil))
	id := made[0].ID

	specs := must[[]types.GuestSpec](t)(s.HostGuests(ctx, h.ID))
	if len(specs) != 1 || specs[0].ServerID != id || specs[0].RAMMiB != 512 || specs[0].QoS.NetInKbps != 10000 ||
		specs[0].Image.SHA256 != "abc" || specs[0].DesiredState != types.DesiredActive {
		t.Fatalf("specs %+v", specs)
	}
	if other := must[[]types.GuestSpec](t)(s.HostGuests(ctx, "host-other")); len(other) != 0 {
		t.Errorf("another host's guests: %+v", other)
	}

	obs := types.GuestObserved{Domain: "corral-" + id, DomainID: 3}
	res := must[store.GuestReportResult](t)(s.ReportGuests(ctx, h.ID, []types.GuestStatus{{ServerID: id, State: types.GuestActive, Observed: obs}}, time.Now()))
	if len(res.Changed) != 1 || res.Changed[0].State != types.ServerActive || res.Changed[0].LaunchedAt == nil {
		t.Fatalf("report: %+v", res)
	}
	// The same report again changes nothing (no revision churn).
	res = must[store.GuestReportResult](t)(s.ReportGuests(ctx, h.ID, []types.GuestStatus{{ServerID: id, State: types.GuestActive, Observed: obs}}, time.Now()))
	if len(res.Changed) != 0 {
		t.Errorf("an identical report changed %+v", res.Changed)
	}
	// Another host cannot report on it.
	res = must[store.GuestReportResult](t)(s.ReportGuests(ctx, "host-other", []types.GuestStatus{{ServerID: id, State: types.GuestError}}, time.Now()))
	if len(res.Unknown) != 1 {
		t.Errorf("report from another host: %+v", res)
	}

	del := must[types.Server](t)(s.DeleteServer(ctx, id, 0))
	if del.State != types.ServerDeleting {
		t.Fatalf("delete of a built guest: state %s, want deleting", del.State)
	}
	if hh := must[types.Host](t)(s.GetHost(ctx, h.ID)); hh.Allocated.Guests != 1 {
		t.Errorf("claim released before the agent confirmed: %+v", hh.Allocated)
	}
	specs = must[[]types.GuestSpec](t)(s.HostGuests(ctx, h.ID))
	if len(specs) != 1 || specs[0].DesiredState != types.DesiredDeleted {
		t.Fatalf("specs while deleting: %+v", specs)
	}
	res = must[store.GuestReportResult](t)(s.ReportGuests(ctx, h.ID, []types.GuestStatus{{ServerID: id, State: types.GuestDeleted}}, time.Now()))
	if len(res.Removed) != 1 {
		t.Fatalf("confirmed delete: %+v", res)
	}
	if _, err := s.GetServer(ctx, id); err == nil {
		t.Error("server still there after the confirmed delete")
	}
	if hh := must[types.Host](t)(s.GetHost(ctx, h.ID)); hh.Allocated != (types.Allocation{}) {
		t.Errorf("claim not released: %+v", hh.Allocated)
	}
}
