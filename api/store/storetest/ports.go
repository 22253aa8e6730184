package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// serverWithPorts places a VM on a new host and plugs into it one port
// made for it (auto_delete, as a server create makes) and one made
// explicitly, both on f's network.
func serverWithPorts(t *testing.T, s *store.Store, f fixture, nf netFixture, name string) (srv types.Server, auto, explicit types.Port) {
	t.Helper()
	h, _ := must2(t)(s.RegisterHost(ctx, types.HostRegister{Name: "hv-" + name, Inventory: types.Inventory{CPUs: 8, RAMMiB: 16384, DiskGiB: 100}},
		store.HostPlacement{RegionID: f.region.ID, ZoneID: f.zone.ID}))
	in := f.server(name)
	in.HostID = h.ID
	in.ProjectID = nf.project.ID
	claim := store.Allocation{VCPUs: 1, RAMMiB: 512, DiskGiB: 1, Guests: 1}
	srv = must[[]types.Server](t)(s.ClaimAndCreate(ctx, []store.HostClaim{{HostID: h.ID, Generation: h.Generation, Delta: claim}},
		[]store.PlacedServer{{Server: in, Claim: claim}}, nil))[0]
	spec := nf.port("")
	spec.Port.DeviceID, spec.Port.HostID, spec.Port.AutoDelete = srv.ID, h.ID, true
	auto = must[types.Port](t)(s.CreatePort(ctx, spec))
	spec = nf.port(name + "-explicit")
	spec.Port.DeviceID, spec.Port.HostID = srv.ID, h.ID
	explicit = must[types.Port](t)(s.CreatePort(ctx, spec))
	if !auto.AutoDelete || explicit.AutoDelete {
		t.Fatalf("auto_delete: made for the server %v, explicit %v", auto.AutoDelete, explicit.AutoDelete)
	}
	return srv, auto, explicit
}

// addresses returns what a server's addresses should be: its ports'.
func addresses(network string, ports ...types.Port) []types.Address {
	out := []types.Address{}
	for _, p := range ports {
		for _, ip := range p.FixedIPs {
			out = append(out, types.Address{Network: network, IP: ip.IPAddress, MAC: p.MACAddress})
		}
	}
	return out
}

// testServerAddresses: a VM's addresses are its ports' fixed IPs, on GET
// and in lists (each server its own, oldest port first); plugging or
// unplugging a port moves the server's revision on, so its ETag changes
// with its addresses.
func testServerAddresses(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	nf := newNetFixture(t, s, "10.30.0.0/24")
	srv, auto, explicit := serverWithPorts(t, s, f, nf, "web-1")
	other, oauto, oexplicit := serverWithPorts(t, s, f, nf, "web-2")
	bare := must[types.Server](t)(s.CreateServer(ctx, f.server("no-ports")))

	got := must[types.Server](t)(s.GetServer(ctx, srv.ID))
	if diff := cmp.Diff(addresses(nf.network.ID, auto, explicit), got.Addresses); diff != "" {
		t.Errorf("GET addresses (-want +got):\n%s", diff)
	}
	if got.Revision <= srv.Revision {
		t.Errorf("revision after two ports plugged = %d, want more than %d", got.Revision, srv.Revision)
	}
	list := must[types.List[types.Server]](t)(s.ListServers(ctx, store.ListOptions{}))
	want := map[string][]types.Address{
		srv.ID: addresses(nf.network.ID, auto, explicit), other.ID: addresses(nf.network.ID, oauto, oexplicit), bare.ID: {},
	}
	for _, item := range list.Items {
		if diff := cmp.Diff(want[item.ID], item.Addresses); diff != "" {
			t.Errorf("listed %s addresses (-want +got):\n%s", item.Name, diff)
		}
		delete(want, item.ID)
	}
	if len(want) != 0 {
		t.Errorf("servers missing from the list: %v", want)
	}

	// Unplugging a port takes its address off the server and moves the
	// server's revision on.
	empty := ""
	must[types.Port](t)(s.UpdatePort(ctx, explicit.ID, 0, store.PortChange{DeviceID: &empty, HostID: &empty}))
	after := must[types.Server](t)(s.GetServer(ctx, srv.ID))
	if diff := cmp.Diff(addresses(nf.network.ID, auto), after.Addresses); diff != "" {
		t.Errorf("addresses after unplugging (-want +got):\n%s", diff)
	}
	if after.Revision != got.Revision+1 {
		t.Errorf("revision after unplugging = %d, want %d", after.Revision, got.Revision+1)
	}
}

// testAutoDeletePorts: the ports a server create made go with the server
// when its delete completes (at once for a server no agent reported on,
// on the agent's confirmation for one it built), releasing their
// addresses, so the network can then be deleted; ports created explicitly
// are only unplugged and keep their addresses; a port rebound by a user is
// no longer deleted with a server.
func testAutoDeletePorts(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	nf := newNetFixture(t, s, "10.31.0.0/24")

	// Deleted at once: no agent has reported on the server.
	srv, auto, explicit := serverWithPorts(t, s, f, nf, "quick")
	must[types.Server](t)(s.DeleteServer(ctx, srv.ID, 0))
	if _, err := s.GetPort(ctx, auto.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("port made by the create after its server's delete: %v, want not found", err)
	}
	kept := must[types.Port](t)(s.GetPort(ctx, explicit.ID))
	if kept.DeviceID != "" || kept.HostID != "" || !cmp.Equal(kept.FixedIPs, explicit.FixedIPs) {
		t.Errorf("explicit port after its server's delete: %+v, want unplugged with its addresses %v", kept, explicit.FixedIPs)
	}
	if got := must[[]string](t)(s.AllocatedAddresses(ctx, nf.subnet.ID)); !cmp.Equal(got, []string{explicit.FixedIPs[0].IPAddress}) {
		t.Errorf("allocated addresses = %v, want only the explicit port's", got)
	}

	// Deleted by its agent: the ports stay while the server is deleting
	// and go when the agent confirms.
	built, bauto, bexplicit := serverWithPorts(t, s, f, nf, "built")
	must[store.GuestReportResult](t)(s.ReportGuests(ctx, built.HostID, []types.GuestStatus{{ServerID: built.ID, State: types.GuestActive}}, time.Now()))
	if del := must[types.Server](t)(s.DeleteServer(ctx, built.ID, 0)); del.State != types.ServerDeleting {
		t.Fatalf("delete of a built guest: state %s, want deleting", del.State)
	}
	if p := must[types.Port](t)(s.GetPort(ctx, bauto.ID)); p.DeviceID != built.ID {
		t.Errorf("port of a deleting server: %+v, want still plugged", p)
	}
	must[store.GuestReportResult](t)(s.ReportGuests(ctx, built.HostID, []types.GuestStatus{{ServerID: built.ID, State: types.GuestDeleted}}, time.Now()))
	if _, err := s.GetPort(ctx, bauto.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("port made by the create after the agent confirmed: %v, want not found", err)
	}
	if p := must[types.Port](t)(s.GetPort(ctx, bexplicit.ID)); p.DeviceID != "" {
		t.Errorf("explicit port after the agent confirmed: %+v, want unplugged", p)
	}

	// A port moved to another server by a user is the user's now.
	moved, mauto, mexplicit := serverWithPorts(t, s, f, nf, "moved")
	target := must[types.Server](t)(s.CreateServer(ctx, f.server("target")))
	p := must[types.Port](t)(s.UpdatePort(ctx, mauto.ID, 0, store.PortChange{DeviceID: &target.ID}))
	if p.AutoDelete {
		t.Errorf("rebound port still auto_delete")
	}
	must[types.Server](t)(s.DeleteServer(ctx, target.ID, 0))
	must[types.Server](t)(s.DeleteServer(ctx, moved.ID, 0))
	if p := must[types.Port](t)(s.GetPort(ctx, mauto.ID)); p.DeviceID != "" {
		t.Errorf("rebound port after both servers' deletes: %+v, want kept, unplugged", p)
	}

	// Once the ports created or taken over explicitly are deleted, nothing
	// holds the network: the ports the creates made did not outlive
	// their servers.
	for _, id := range []string{explicit.ID, bexplicit.ID, mexplicit.ID, mauto.ID} {
		must[types.Port](t)(s.DeletePort(ctx, id, 0))
	}
	must0(t, s.DeleteSubnet(ctx, nf.subnet.ID, 0))
	must0(t, s.DeleteNetwork(ctx, nf.network.ID, 0))
}
