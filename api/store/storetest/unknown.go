package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// placedVM records a VM on host h with claim, as placement would.
func placedVM(t *testing.T, s *store.Store, f fixture, h types.Host, name string, claim store.Allocation) types.Server {
	t.Helper()
	h = must[types.Host](t)(s.GetHost(ctx, h.ID))
	srv := f.server(name)
	srv.HostID = h.ID
	made := must[[]types.Server](t)(s.ClaimAndCreate(ctx, []store.HostClaim{{HostID: h.ID, Generation: h.Generation, Delta: claim}},
		[]store.PlacedServer{{Server: srv, Claim: claim}}, nil))
	return made[0]
}

func tombstoneOf(t *testing.T, s *store.Store, hostID, serverID string) (types.GuestTombstone, bool) {
	t.Helper()
	for _, ts := range must[[]types.GuestTombstone](t)(s.HostTombstones(ctx, hostID)) {
		if ts.ServerID == serverID {
			return ts, true
		}
	}
	return types.GuestTombstone{}, false
}

// testGuestTombstones: every delete of a placed VM is recorded as a
// tombstone naming the server with a generation: a built guest's delete
// (pending until its agent confirms, then kept confirmed), a delete of a
// server no agent reported on yet, a forced delete. A "deleted" report for
// a tombstone without a server confirms it; confirmed ones are purged after
// their retention, pending ones never.
func testGuestTombstones(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	h, _ := must2(t)(s.RegisterHost(ctx, types.HostRegister{Name: "hv1", Inventory: types.Inventory{CPUs: 8, RAMMiB: 16384, DiskGiB: 100}},
		store.HostPlacement{RegionID: f.region.ID, ZoneID: f.zone.ID}))
	claim := store.Allocation{VCPUs: 1, RAMMiB: 800, DiskGiB: 1, Guests: 1}

	built := placedVM(t, s, f, h, "built", claim)
	must[store.GuestReportResult](t)(s.ReportGuests(ctx, h.ID, []types.GuestStatus{{ServerID: built.ID, State: types.GuestActive}}, time.Now()))
	del := must[types.Server](t)(s.DeleteServer(ctx, built.ID, 0))
	ts, ok := tombstoneOf(t, s, h.ID, built.ID)
	if !ok || ts.Confirmed || ts.Generation != del.Revision || ts.Reason != types.TombstoneServerDeleted {
		t.Fatalf("tombstone of a deleting server: %+v (found %v), server revision %d", ts, ok, del.Revision)
	}
	specs := must[[]types.GuestSpec](t)(s.HostGuests(ctx, h.ID))
	if len(specs) != 1 || specs[0].DesiredState != types.DesiredDeleted || specs[0].Revision != ts.Generation {
		t.Fatalf("spec of a deleting server: %+v, want desired deleted at generation %d", specs, ts.Generation)
	}
	res := must[store.GuestReportResult](t)(s.ReportGuests(ctx, h.ID, []types.GuestStatus{{ServerID: built.ID, State: types.GuestDeleted}}, time.Now()))
	if len(res.Removed) != 1 {
		t.Fatalf("confirm: %+v", res)
	}
	if ts, _ := tombstoneOf(t, s, h.ID, built.ID); !ts.Confirmed || ts.ConfirmedAt == nil {
		t.Errorf("tombstone after the agent confirmed: %+v", ts)
	}

	// Deleted before any report: gone at once, tombstone pending.
	fresh := placedVM(t, s, f, h, "fresh", claim)
	must[types.Server](t)(s.DeleteServer(ctx, fresh.ID, 0))
	if _, err := s.GetServer(ctx, fresh.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unbuilt server after delete: %v", err)
	}
	if ts, ok := tombstoneOf(t, s, h.ID, fresh.ID); !ok || ts.Confirmed {
		t.Fatalf("tombstone of an unbuilt server: %+v %v", ts, ok)
	}
	// Forced delete.
	forced := placedVM(t, s, f, h, "forced", claim)
	must[types.Server](t)(s.ForceDeleteServer(ctx, forced.ID))
	if ts, ok := tombstoneOf(t, s, h.ID, forced.ID); !ok || ts.Confirmed || ts.Reason != types.TombstoneForceDeleted {
		t.Fatalf("tombstone of a forced delete: %+v %v", ts, ok)
	}
	// The agent confirms both; a report for an ID without tombstone or
	// server stays unknown; another host cannot confirm.
	res = must[store.GuestReportResult](t)(s.ReportGuests(ctx, "host-other", []types.GuestStatus{{ServerID: fresh.ID, State: types.GuestDeleted}}, time.Now()))
	if len(res.Confirmed) != 0 || len(res.Unknown) != 1 {
		t.Errorf("another host confirmed: %+v", res)
	}
	res = must[store.GuestReportResult](t)(s.ReportGuests(ctx, h.ID, []types.GuestStatus{
		{ServerID: fresh.ID, State: types.GuestDeleted}, {ServerID: forced.ID, State: types.GuestDeleted},
		{ServerID: "srv-nobody", State: types.GuestDeleted}}, time.Now()))
	if len(res.Confirmed) != 2 || len(res.Unknown) != 1 || res.Unknown[0] != "srv-nobody" {
		t.Errorf("confirmations: %+v", res)
	}
	if hh := must[types.Host](t)(s.GetHost(ctx, h.ID)); hh.Allocated != (types.Allocation{}) {
		t.Errorf("claims not given back: %+v", hh.Allocated)
	}

	// A pending tombstone survives purges; confirmed ones go after their
	// retention.
	pending := placedVM(t, s, f, h, "pending", claim)
	must[types.Server](t)(s.DeleteServer(ctx, pending.ID, 0))
	if n := must[int64](t)(s.PurgeTombstones(ctx, time.Now().Add(-time.Hour))); n != 0 {
		t.Errorf("purged %d fresh confirmed tombstones", n)
	}
	if n := must[int64](t)(s.PurgeTombstones(ctx, time.Now().Add(time.Hour))); n != 3 {
		t.Errorf("purged %d confirmed tombstones, want 3", n)
	}
	all := must[[]types.GuestTombstone](t)(s.HostTombstones(ctx, h.ID))
	if len(all) != 1 || all[0].ServerID != pending.ID || all[0].Confirmed {
		t.Errorf("tombstones after the purge: %+v, want only the pending one", all)
	}
}

// testUnknownGuests: an agent's report of unknown guests replaces the
// host's list (first seen kept), leaving out servers corrald knows and
// guests whose deletion is pending. Adopting one rebuilds its server with
// the same ID and takes its claim on the host in one transaction;
// deleting one records a pending tombstone. Both need the guest to be
// unknown on that host.
func testUnknownGuests(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	h, _ := must2(t)(s.RegisterHost(ctx, types.HostRegister{Name: "hv1", Inventory: types.Inventory{CPUs: 8, RAMMiB: 16384, DiskGiB: 100}},
		store.HostPlacement{RegionID: f.region.ID, ZoneID: f.zone.ID}))
	h2, _ := must2(t)(s.RegisterHost(ctx, types.HostRegister{Name: "hv2", Inventory: types.Inventory{CPUs: 8, RAMMiB: 16384, DiskGiB: 100}},
		store.HostPlacement{RegionID: f.region.ID, ZoneID: f.zone.ID}))
	claim := store.Allocation{VCPUs: 1, RAMMiB: 800, DiskGiB: 1, Guests: 1}
	known := placedVM(t, s, f, h, "known", claim)
	deleting := placedVM(t, s, f, h, "deleting", claim)
	must[types.Server](t)(s.DeleteServer(ctx, deleting.ID, 0)) // unbuilt: pending tombstone

	ghost := types.UnknownGuest{ServerID: "srv-ghost", Name: "ghost", ProjectID: f.project.ID, FlavorID: f.flavor.ID,
		ImageID: f.image.ID, Kind: "vm", VCPUs: 1, RAMMiB: 512, DiskGiB: 1, State: "running", DomainID: 7}
	other := types.UnknownGuest{ServerID: "srv-other", Name: "other", State: "shut off"}
	t0 := time.Now().Add(-time.Minute)
	got := must[[]types.UnknownGuest](t)(s.SetUnknownGuests(ctx, h.ID, []types.UnknownGuest{ghost, other,
		{ServerID: known.ID}, {ServerID: deleting.ID}}, t0))
	if len(got) != 2 || got[0].ServerID != "srv-ghost" || got[1].ServerID != "srv-other" || got[0].HostID != h.ID ||
		got[0].DomainID != 7 || got[0].FlavorID != f.flavor.ID {
		t.Fatalf("unknown guests: %+v", got)
	}
	got = must[[]types.UnknownGuest](t)(s.SetUnknownGuests(ctx, h.ID, []types.UnknownGuest{ghost}, time.Now()))
	if len(got) != 1 || !got[0].FirstSeen.Equal(time.UnixMicro(t0.UnixMicro()).UTC()) || !got[0].LastSeen.After(got[0].FirstSeen) {
		t.Fatalf("after a second report: %+v (first seen %v)", got, t0)
	}
	if l := must[[]types.UnknownGuest](t)(s.UnknownGuests(ctx, h2.ID)); len(l) != 0 {
		t.Errorf("another host's unknown guests: %+v", l)
	}
	counts := must[map[string]int](t)(s.UnknownGuestCounts(ctx))
	if counts["hv1"] != 1 || counts["hv2"] != 0 {
		t.Errorf("counts %v", counts)
	}

	// Adopt: only on its own host.
	in := store.AdoptedServer{Server: types.Server{Name: "ghost", ProjectID: f.project.ID, FlavorID: f.flavor.ID, ImageID: f.image.ID,
		DesiredState: types.DesiredActive, State: types.ServerActive}, Claim: claim}
	if _, err := s.AdoptGuest(ctx, h2.ID, "srv-ghost", in); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("adopt on another host: %v, want not found", err)
	}
	before := must[types.Host](t)(s.GetHost(ctx, h.ID))
	srv := must[types.Server](t)(s.AdoptGuest(ctx, h.ID, "srv-ghost", in))
	if srv.ID != "srv-ghost" || srv.HostID != h.ID || srv.State != types.ServerActive || srv.ZoneID != h.ZoneID {
		t.Errorf("adopted server %+v", srv)
	}
	after := must[types.Host](t)(s.GetHost(ctx, h.ID))
	if after.Allocated.Guests != before.Allocated.Guests+1 || after.Allocated.RAMMiB != before.Allocated.RAMMiB+claim.RAMMiB ||
		after.Generation == before.Generation {
		t.Errorf("allocation %+v → %+v, want the claim %+v added", before.Allocated, after.Allocated, claim)
	}
	if specs := must[[]types.GuestSpec](t)(s.HostGuests(ctx, h.ID)); len(specs) != 2 || specs[1].ServerID != "srv-ghost" ||
		specs[1].RAMMiB != 512 || specs[1].DesiredState != types.DesiredActive {
		t.Errorf("desired guests after adoption: %+v, want the known one and the adopted one", specs)
	}
	if l := must[[]types.UnknownGuest](t)(s.UnknownGuests(ctx, h.ID)); len(l) != 0 {
		t.Errorf("unknown after adoption: %+v", l)
	}
	if _, err := s.AdoptGuest(ctx, h.ID, "srv-ghost", in); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second adoption: %v, want not found", err)
	}

	// Delete: a pending tombstone; the guest leaves the list and a later
	// report of it (the agent has not removed it yet) does not bring it
	// back.
	must[[]types.UnknownGuest](t)(s.SetUnknownGuests(ctx, h.ID, []types.UnknownGuest{other}, time.Now()))
	if _, err := s.DeleteUnknownGuest(ctx, h2.ID, "srv-other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete on another host: %v", err)
	}
	ts := must[types.GuestTombstone](t)(s.DeleteUnknownGuest(ctx, h.ID, "srv-other"))
	if ts.Generation != 1 || ts.Reason != types.TombstoneUnknownDeleted {
		t.Errorf("tombstone %+v", ts)
	}
	if l := must[[]types.UnknownGuest](t)(s.SetUnknownGuests(ctx, h.ID, []types.UnknownGuest{other}, time.Now())); len(l) != 0 {
		t.Errorf("a guest being deleted is listed as unknown: %+v", l)
	}
	if _, err := s.DeleteUnknownGuest(ctx, h.ID, "srv-other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

// testMachineIdentity: a registration under a new name from a known
// machine gets that machine's host back (renamed), keeping its ID and
// allocations; a name that exists wins over the machine.
func testMachineIdentity(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	where := store.HostPlacement{RegionID: f.region.ID, ZoneID: f.zone.ID}
	inv := types.Inventory{CPUs: 8, RAMMiB: 16384, DiskGiB: 100}
	h, _ := must2(t)(s.RegisterHost(ctx, types.HostRegister{Name: "hv1", Inventory: inv, MachineID: "m-1"}, where))
	if h.MachineID != "m-1" {
		t.Fatalf("machine ID %q", h.MachineID)
	}
	placedVM(t, s, f, h, "vm1", store.Allocation{VCPUs: 1, RAMMiB: 800, Guests: 1})
	if got := must[types.Host](t)(s.RegistrationTarget(ctx, "hv1-renamed", "m-1")); got.ID != h.ID {
		t.Errorf("registration target of a renamed machine: %s, want %s", got.ID, h.ID)
	}
	if _, err := s.RegistrationTarget(ctx, "hv9", "m-9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("registration target of a new machine: %v", err)
	}
	again, _ := must2(t)(s.RegisterHost(ctx, types.HostRegister{Name: "hv1-renamed", Inventory: inv, MachineID: "m-1"}, where))
	if again.ID != h.ID || again.Name != "hv1-renamed" || again.Allocated.Guests != 1 {
		t.Errorf("re-registration from the same machine: %+v, want host %s back", again, h.ID)
	}
	// Without a machine ID, or from another machine: a new host.
	other, _ := must2(t)(s.RegisterHost(ctx, types.HostRegister{Name: "hv2", Inventory: inv, MachineID: "m-2"}, where))
	if other.ID == h.ID {
		t.Error("another machine got the host")
	}
	// An existing name keeps its host, and records the new machine.
	named, _ := must2(t)(s.RegisterHost(ctx, types.HostRegister{Name: "hv2", Inventory: inv, MachineID: "m-3"}, where))
	if named.ID != other.ID || named.MachineID != "m-3" {
		t.Errorf("registration by name: %+v", named)
	}
}
