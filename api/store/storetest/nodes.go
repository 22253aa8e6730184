package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// RunNodes runs the bare-metal node tests with stores from open.
func RunNodes(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, *store.Store)
	}{
		{"Enrol", testNodeEnrol},
		{"Transitions", testNodeTransitions},
		{"Lease", testNodeLease},
		{"ClaimRace", testNodeClaimRace},
		{"DeleteCycle", testNodeDeleteCycle},
		{"Power", testNodePower},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func enrol(t *testing.T, s *store.Store, f fixture, name, mac string) types.Node {
	t.Helper()
	return must[types.Node](t)(s.CreateNode(ctx, store.NodeEnrolment{Name: name, RegionID: f.region.ID, ZoneID: f.zone.ID,
		AggregateID: f.agg.ID, BMCAddress: "127.0.0.1", BMCPort: 9631, BMCUsername: "admin", BMCPassword: "sealed:x",
		MACs: []string{mac}, Hardware: types.NodeHardware{CPUs: 2, RAMMiB: 1024, Disks: []types.NodeDisk{{Name: "vda", SizeBytes: 8 << 30}}},
		Target: types.NodeManageable, Actor: "test"}))
}

// moveTo forces a node into state (as the conductor would, step by step).
func moveTo(t *testing.T, s *store.Store, id, state string) {
	t.Helper()
	must[store.NodeRow](t)(s.ChangeNode(ctx, id, 0, "test", func(_ *store.Tx, r *store.NodeRow) (string, error) {
		r.State = state
		return "test", nil
	}))
}

func testNodeEnrol(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	n := enrol(t, s, f, "bm1", "52:54:00:00:00:01")
	if n.State != types.NodeEnroll || n.PowerState != types.PowerUnknown || n.Revision != 1 {
		t.Errorf("new node = %+v", n)
	}
	got := must[types.Node](t)(s.GetNode(ctx, "bm1"))
	if diff := cmp.Diff(n, got); diff != "" {
		t.Errorf("node by name (-created +got):\n%s", diff)
	}
	row := must[store.NodeRow](t)(s.GetNodeRow(ctx, n.ID))
	if row.BMCPassword != "sealed:x" {
		t.Errorf("stored password = %q", row.BMCPassword)
	}
	byMAC := must[store.NodeRow](t)(s.NodeByMAC(ctx, "52:54:00:00:00:01"))
	if byMAC.ID != n.ID {
		t.Errorf("node by MAC = %s, want %s", byMAC.ID, n.ID)
	}
	// A MAC belongs to one node.
	_, err := s.CreateNode(ctx, store.NodeEnrolment{Name: "bm2", RegionID: f.region.ID, ZoneID: f.zone.ID, MACs: []string{"52:54:00:00:00:01"}})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("second node with the same MAC: %v, want ErrExists", err)
	}
	if _, err := s.GetNode(ctx, "bm2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused node was stored: %v", err)
	}
	l := must[types.List[types.Node]](t)(s.ListNodes(ctx, store.ListOptions{Filters: map[string]string{"state": types.NodeEnroll}}))
	if len(l.Items) != 1 {
		t.Errorf("nodes in enroll = %d, want 1", len(l.Items))
	}
	ev := must[types.List[types.NodeEvent]](t)(s.ListNodeEvents(ctx, n.ID, store.ListOptions{}))
	if len(ev.Items) != 1 || ev.Items[0].To != types.NodeEnroll || ev.Items[0].Actor != "test" {
		t.Errorf("events = %+v", ev.Items)
	}
	must[types.Node](t)(s.DeleteNode(ctx, n.ID, 0))
	if _, err := s.NodeByMAC(ctx, "52:54:00:00:00:01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MAC survived its node: %v", err)
	}
}

func testNodeTransitions(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	n := enrol(t, s, f, "bm1", "52:54:00:00:00:01")
	toVerify := func(_ *store.Tx, r *store.NodeRow) (string, error) {
		if err := store.RequireState(r, types.NodeEnroll); err != nil {
			return "", err
		}
		r.State = types.NodeVerifying
		return "checking BMC credentials", nil
	}
	row := must[store.NodeRow](t)(s.ChangeNode(ctx, n.ID, 0, "conductor:a", toVerify))
	if row.State != types.NodeVerifying || row.Revision != 2 {
		t.Errorf("after transition: %s rev %d", row.State, row.Revision)
	}
	// The compare-and-swap on the state: a second identical transition fails
	// and writes nothing.
	_, err := s.ChangeNode(ctx, n.ID, 0, "conductor:b", toVerify)
	var se *store.NodeStateError
	if !errors.As(err, &se) || !errors.Is(err, store.ErrNodeState) || se.State != types.NodeVerifying {
		t.Fatalf("second transition: %v, want a NodeStateError", err)
	}
	// If-Match.
	if _, err := s.ChangeNode(ctx, n.ID, 1, "x", func(*store.Tx, *store.NodeRow) (string, error) { return "", nil }); !errors.Is(err, store.ErrStale) {
		t.Errorf("stale If-Match: %v", err)
	}
	ev := must[types.List[types.NodeEvent]](t)(s.ListNodeEvents(ctx, n.ID, store.ListOptions{}))
	want := []types.NodeEvent{{From: "", To: "enroll", Reason: "enrolled", Actor: "test"},
		{From: "enroll", To: "verifying", Reason: "checking BMC credentials", Actor: "conductor:a"}}
	if diff := cmp.Diff(want, ev.Items, cmpEvent); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// A busy node cannot be deleted.
	if _, err := s.DeleteNode(ctx, n.ID, 0); !errors.Is(err, store.ErrNodeState) {
		t.Errorf("delete of a verifying node: %v", err)
	}
}

var cmpEvent = cmp.Transformer("event", func(e types.NodeEvent) types.NodeEvent {
	return types.NodeEvent{From: e.From, To: e.To, Reason: e.Reason, Actor: e.Actor}
})

func testNodeLease(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	n := enrol(t, s, f, "bm1", "52:54:00:00:00:01")
	must[store.NodeRow](t)(s.AcquireNodeLease(ctx, n.ID, "a", time.Hour))
	if _, err := s.AcquireNodeLease(ctx, n.ID, "b", time.Hour); !errors.Is(err, store.ErrLeased) {
		t.Errorf("second owner: %v, want ErrLeased", err)
	}
	must[store.NodeRow](t)(s.AcquireNodeLease(ctx, n.ID, "a", time.Hour)) // renewal
	if got := must[types.Node](t)(s.GetNode(ctx, n.ID)); got.Conductor != "a" {
		t.Errorf("conductor = %q, want a", got.Conductor)
	}
	must0(t, s.ReleaseNodeLease(ctx, n.ID, "b")) // not b's: no effect
	if _, err := s.AcquireNodeLease(ctx, n.ID, "b", time.Hour); !errors.Is(err, store.ErrLeased) {
		t.Errorf("release by a non-owner freed the lease: %v", err)
	}
	must0(t, s.ReleaseNodeLease(ctx, n.ID, "a"))
	must[store.NodeRow](t)(s.AcquireNodeLease(ctx, n.ID, "b", time.Millisecond))
	time.Sleep(5 * time.Millisecond)
	// b's lease expired (its replica died): a takes over.
	must[store.NodeRow](t)(s.AcquireNodeLease(ctx, n.ID, "a", time.Hour))
}

func testNodeClaimRace(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	n := enrol(t, s, f, "bm1", "52:54:00:00:00:01")
	moveTo(t, s, n.ID, types.NodeAvailable)
	srv := f.server("metal")
	srv.Kind = types.KindBaremetal
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.ClaimNodeAndCreateServer(ctx, n.ID, srv, nil, "test")
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrNodeState):
			t.Errorf("losing claim: %v, want ErrNodeState", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d claims won the node, want exactly 1", won)
	}
	servers := must[types.List[types.Server]](t)(s.ListServers(ctx, store.ListOptions{}))
	if len(servers.Items) != 1 || servers.Items[0].NodeID != n.ID || servers.Items[0].State != types.ServerBuilding {
		t.Errorf("servers after the race = %+v", servers.Items)
	}
	row := must[store.NodeRow](t)(s.GetNodeRow(ctx, n.ID))
	if row.State != types.NodeDeploying || row.ServerID != servers.Items[0].ID || row.ImageID != f.image.ID {
		t.Errorf("claimed node: state %s server %s image %s", row.State, row.ServerID, row.ImageID)
	}
}

func testNodeDeleteCycle(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	n := enrol(t, s, f, "bm1", "52:54:00:00:00:01")
	moveTo(t, s, n.ID, types.NodeAvailable)
	srv := f.server("metal")
	srv.Kind = types.KindBaremetal
	made := must[types.Server](t)(s.ClaimNodeAndCreateServer(ctx, n.ID, srv, nil, "test"))
	if _, err := s.DeleteNode(ctx, n.ID, 0); err == nil {
		t.Fatal("deleted a node with a server")
	}
	addrs := []types.Address{{IP: "10.79.0.11", MAC: "52:54:00:00:00:01", Network: "provisioning"}}
	must[store.NodeRow](t)(s.UpdateNodeServer(ctx, n.ID, "test", func(_ *store.Tx, r *store.NodeRow) (string, error) {
		r.State = types.NodeActive
		return "deployed", nil
	}, store.MarkServerActive(addrs)))
	got := must[types.Server](t)(s.GetServer(ctx, made.ID))
	if got.State != types.ServerActive || got.LaunchedAt == nil || !cmp.Equal(got.Addresses, addrs) {
		t.Errorf("active server = %+v", got)
	}
	del := must[types.Server](t)(s.BeginBaremetalDelete(ctx, made.ID, 0, "test"))
	if del.State != types.ServerDeleting {
		t.Errorf("server after delete = %s", del.State)
	}
	if row := must[store.NodeRow](t)(s.GetNodeRow(ctx, n.ID)); row.State != types.NodeDeleting {
		t.Errorf("node after delete = %s", row.State)
	}
	row := must[store.NodeRow](t)(s.DetachNodeServer(ctx, n.ID, "test"))
	if row.State != types.NodeCleaning || row.ServerID != "" {
		t.Errorf("node after detach = %s server %q", row.State, row.ServerID)
	}
	if _, err := s.GetServer(ctx, made.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("server after detach: %v", err)
	}
}

func testNodePower(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	n := enrol(t, s, f, "bm1", "52:54:00:00:00:01")
	must[store.NodeRow](t)(s.RecordNodePower(ctx, n.ID, types.PowerOn, "", "verified", "sync:a"))
	must[store.NodeRow](t)(s.RecordNodePower(ctx, n.ID, types.PowerOn, "", "", "sync:a")) // no change, no event
	must[store.NodeRow](t)(s.RecordNodePower(ctx, n.ID, types.PowerUnknown, "bmc unreachable", "", "sync:a"))
	row := must[store.NodeRow](t)(s.RecordNodePower(ctx, n.ID, types.PowerOff, "", "changed out of band", "sync:a"))
	if row.PowerState != types.PowerOff || row.BMCFault != "" || row.Revision != 1 {
		t.Errorf("power row = %s fault %q rev %d", row.PowerState, row.BMCFault, row.Revision)
	}
	ev := must[types.List[types.NodeEvent]](t)(s.ListNodeEvents(ctx, n.ID, store.ListOptions{}))
	want := []types.NodeEvent{
		{To: "enroll", Reason: "enrolled", Actor: "test"},
		{From: "power unknown", To: "power on", Reason: "verified", Actor: "sync:a"},
		{From: "power on", To: "power unknown", Actor: "sync:a"},
		{From: "bmc ok", To: "bmc fault", Reason: "bmc unreachable", Actor: "sync:a"},
		{From: "power unknown", To: "power off", Reason: "changed out of band", Actor: "sync:a"},
		{From: "bmc fault", To: "bmc ok", Reason: "the BMC answers again", Actor: "sync:a"},
	}
	if diff := cmp.Diff(want, ev.Items, cmpEvent); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
