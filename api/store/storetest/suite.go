// Package storetest is the store's conformance suite. The same tests run
// against SQLite and PostgreSQL, so both dialects behave alike.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// Opener returns a new, empty, migrated store for one test.
type Opener func(t *testing.T) *store.Store

// Run runs every test of the suite with stores from open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, *store.Store)
	}{
		{"Catalogue", testCatalogue},
		{"UniqueNames", testUniqueNames},
		{"Pagination", testPagination},
		{"Filters", testFilters},
		{"InUse", testInUse},
		{"IfMatch", testIfMatch},
		{"Hosts", testHosts},
		{"Tokens", testTokens},
		{"Idempotency", testIdempotency},
		{"Audit", testAudit},
		{"ConcurrentWrites", testConcurrentWrites},
		{"Guests", testGuests},
		{"GuestTombstones", testGuestTombstones},
		{"UnknownGuests", testUnknownGuests},
		{"MachineIdentity", testMachineIdentity},
		{"Fleet", testFleet},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

var ctx = context.Background()

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// fixture is a small inventory: a region, a zone, an aggregate, a flavor,
// an active image and a project.
type fixture struct {
	region  types.Region
	zone    types.Zone
	agg     types.Aggregate
	flavor  types.Flavor
	image   types.Image
	project types.Project
}

func newFixture(t *testing.T, s *store.Store) fixture {
	t.Helper()
	var f fixture
	f.region = must[types.Region](t)(s.CreateRegion(ctx, types.RegionCreate{Name: "dc1"}))
	f.zone = must[types.Zone](t)(s.CreateZone(ctx, f.region.ID, types.ZoneCreate{Name: "rack1"}))
	f.agg = must[types.Aggregate](t)(s.CreateAggregate(ctx, types.Aggregate{Name: "gen10", Traits: []string{"nvme"},
		CPUAllocationRatio: 4, RAMAllocationRatio: 1, Weigher: "pack"}))
	f.flavor = must[types.Flavor](t)(s.CreateFlavor(ctx, types.FlavorCreate{Name: "m1.small", Kind: "vm", VCPUs: 1, RAMMiB: 512, DiskGiB: 1,
		QoS: types.QoS{NetInKbps: 10000}}))
	img := must[types.Image](t)(s.CreateImage(ctx, types.ImageCreate{Name: "tiny", DiskFormat: "qcow2"}))
	f.image = must[types.Image](t)(s.SetImageData(ctx, img.ID, 42, "abc"))
	f.project = must[types.Project](t)(s.CreateProject(ctx, types.ProjectCreate{Name: "kafka"}))
	return f
}

func (f fixture) server(name string) types.Server {
	return types.Server{Name: name, Kind: "vm", ProjectID: f.project.ID, FlavorID: f.flavor.ID, ImageID: f.image.ID,
		RegionID: f.region.ID, ZoneID: f.zone.ID, AggregateID: f.agg.ID, DesiredState: "active"}
}

func testCatalogue(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	got := must[types.Flavor](t)(s.GetFlavor(ctx, "m1.small"))
	if diff := cmp.Diff(f.flavor, got); diff != "" {
		t.Errorf("flavor by name (-created +got):\n%s", diff)
	}
	agg := must[types.Aggregate](t)(s.GetAggregate(ctx, f.agg.ID))
	if diff := cmp.Diff([]string{"nvme"}, agg.Traits); diff != "" {
		t.Errorf("traits: %s", diff)
	}
	// Only one upload at a time writes an image's data.
	img2 := must[types.Image](t)(s.CreateImage(ctx, types.ImageCreate{Name: "racing", DiskFormat: "raw"}))
	must0(t, s.BeginImageUpload(ctx, img2.ID, time.Hour))
	if err := s.BeginImageUpload(ctx, img2.ID, time.Hour); !errors.Is(err, store.ErrStale) {
		t.Errorf("second concurrent upload: %v, want ErrStale", err)
	}
	must0(t, s.AbortImageUpload(ctx, img2.ID, img2.UpdatedAt))
	// A failed upload leaves the image as it was: queued, with the
	// revision a client may hold for If-Match.
	if got := must[types.Image](t)(s.GetImage(ctx, img2.ID)); !cmp.Equal(got, img2) {
		t.Errorf("image after an aborted upload:\n%s", cmp.Diff(img2, got))
	}
	must0(t, s.BeginImageUpload(ctx, img2.ID, time.Hour))
	if err := s.BeginImageUpload(ctx, f.image.ID, time.Hour); !errors.Is(err, store.ErrStale) {
		t.Errorf("upload to an active image: %v, want ErrStale", err)
	}
	if f.image.Status != types.ImageActive || f.image.SHA256 != "abc" || f.image.SizeBytes != 42 {
		t.Errorf("image after upload = %+v", f.image)
	}
	name := "dc-one"
	r := must[types.Region](t)(s.UpdateRegion(ctx, f.region.ID, 0, types.RegionUpdate{Name: &name}))
	if r.Name != name || r.Revision != 2 || !r.UpdatedAt.After(r.CreatedAt) && !r.UpdatedAt.Equal(r.CreatedAt) {
		t.Errorf("updated region = %+v", r)
	}
	srv := must[types.Server](t)(s.CreateServer(ctx, f.server("web-1")))
	if srv.State != types.ServerPending {
		t.Errorf("new server state = %q, want pending", srv.State)
	}
	got2 := must[types.Server](t)(s.GetServer(ctx, srv.ID))
	if diff := cmp.Diff(srv, got2); diff != "" {
		t.Errorf("server round trip (-created +got):\n%s", diff)
	}
	must[types.Server](t)(s.DeleteServer(ctx, srv.ID, 0))
	if _, err := s.GetServer(ctx, srv.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get deleted server: %v, want ErrNotFound", err)
	}
	if err := s.DeleteFlavor(ctx, f.flavor.ID, 0); err != nil {
		t.Errorf("delete unused flavor: %v", err)
	}
}

func testUniqueNames(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	if _, err := s.CreateFlavor(ctx, types.FlavorCreate{Name: "m1.small", Kind: "vm", VCPUs: 1, RAMMiB: 1, DiskGiB: 1}); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate flavor: %v, want ErrExists", err)
	}
	// Zone names are unique per region, so the same rack name in two
	// regions is allowed but ambiguous by name.
	r2 := must[types.Region](t)(s.CreateRegion(ctx, types.RegionCreate{Name: "dc2"}))
	must[types.Zone](t)(s.CreateZone(ctx, r2.ID, types.ZoneCreate{Name: "rack1"}))
	if _, err := s.GetZone(ctx, "rack1"); !errors.Is(err, store.ErrAmbiguous) {
		t.Errorf("ambiguous zone name: %v, want ErrAmbiguous", err)
	}
	if _, err := s.GetZone(ctx, f.zone.ID); err != nil {
		t.Errorf("zone by ID: %v", err)
	}
}

func testPagination(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	var want []string
	for i := 0; i < 25; i++ {
		want = append(want, must[types.Server](t)(s.CreateServer(ctx, f.server(fmt.Sprintf("s-%02d", i)))).ID)
	}
	var got []string
	after := ""
	pages := 0
	for {
		p := must[types.List[types.Server]](t)(s.ListServers(ctx, store.ListOptions{Limit: 10, After: after}))
		pages++
		for _, it := range p.Items {
			got = append(got, it.ID)
		}
		if p.NextCursor == "" {
			break
		}
		after = p.NextCursor
	}
	if pages != 3 {
		t.Errorf("25 servers at 10 per page took %d pages, want 3", pages)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged IDs (-want +got):\n%s", diff)
	}
}

func testFilters(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	other := must[types.Project](t)(s.CreateProject(ctx, types.ProjectCreate{Name: "flink"}))
	a := must[types.Server](t)(s.CreateServer(ctx, f.server("a")))
	b := f.server("b")
	b.ProjectID, b.Kind = other.ID, "baremetal"
	bs := must[types.Server](t)(s.CreateServer(ctx, b))
	for _, tc := range []struct {
		name    string
		filters map[string]string
		want    []string
	}{
		{"project", map[string]string{"project": f.project.ID}, []string{a.ID}},
		{"kind", map[string]string{"kind": "baremetal"}, []string{bs.ID}},
		{"state", map[string]string{"state": "pending"}, []string{a.ID, bs.ID}},
		{"region and project", map[string]string{"region": f.region.ID, "project": other.ID}, []string{bs.ID}},
		{"no match", map[string]string{"zone": "zone-none"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := must[types.List[types.Server]](t)(s.ListServers(ctx, store.ListOptions{Filters: tc.filters}))
			var got []string
			for _, it := range p.Items {
				got = append(got, it.ID)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := s.ListServers(ctx, store.ListOptions{Filters: map[string]string{"colour": "red"}}); err == nil {
		t.Error("unknown filter accepted")
	}
}

func testInUse(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	srv := must[types.Server](t)(s.CreateServer(ctx, f.server("broker-1")))
	host, _ := must2(t)(s.RegisterHost(ctx, types.HostRegister{Name: "hv1", Inventory: types.Inventory{CPUs: 8, RAMMiB: 1024}},
		store.HostPlacement{RegionID: f.region.ID, ZoneID: f.zone.ID, AggregateIDs: []string{f.agg.ID}}))
	wantUser := []types.Ref{{Kind: "server", ID: srv.ID, Name: "broker-1"}}
	for _, tc := range []struct {
		name  string
		del   func() error
		users []types.Ref
		count int
	}{
		{"flavor", func() error { return s.DeleteFlavor(ctx, f.flavor.ID, 0) }, wantUser, 1},
		{"image", func() error { _, err := s.DeleteImage(ctx, f.image.ID, 0); return err }, wantUser, 1},
		{"project", func() error { return s.DeleteProject(ctx, f.project.ID, 0) }, wantUser, 1},
		{"zone", func() error { return s.DeleteZone(ctx, f.zone.ID, 0) },
			[]types.Ref{{Kind: "host", ID: host.ID, Name: "hv1"}, {Kind: "server", ID: srv.ID, Name: "broker-1"}}, 2},
		{"aggregate", func() error { return s.DeleteAggregate(ctx, f.agg.ID, 0) },
			[]types.Ref{{Kind: "host", ID: host.ID, Name: "hv1"}, {Kind: "server", ID: srv.ID, Name: "broker-1"}}, 2},
		{"region", func() error { return s.DeleteRegion(ctx, f.region.ID, 0) },
			[]types.Ref{{Kind: "zone", ID: f.zone.ID, Name: "rack1"}, {Kind: "host", ID: host.ID, Name: "hv1"},
				{Kind: "server", ID: srv.ID, Name: "broker-1"}}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.del()
			var inUse *store.InUseError
			if !errors.As(err, &inUse) {
				t.Fatalf("delete in-use %s: %v, want InUseError", tc.name, err)
			}
			if diff := cmp.Diff(tc.users, inUse.Users); diff != "" {
				t.Errorf("users (-want +got):\n%s", diff)
			}
			if inUse.Count != tc.count {
				t.Errorf("count = %d, want %d", inUse.Count, tc.count)
			}
		})
	}
	// A host with servers: the server is placed on it.
	if _, err := s.UpdateHost(ctx, host.ID, 0, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SetServerLocation(ctx, srv.ID, host.ID, ""); err != nil {
		t.Fatal(err)
	}
	var inUse *store.InUseError
	if err := s.DeleteHost(ctx, host.ID, 0); !errors.As(err, &inUse) || inUse.Users[0].ID != srv.ID {
		t.Errorf("delete host with a server: %v, want InUseError naming %s", err, srv.ID)
	}
	// Everything still exists.
	if _, err := s.GetFlavor(ctx, f.flavor.ID); err != nil {
		t.Errorf("flavor gone after refused delete: %v", err)
	}
	if _, err := s.GetHost(ctx, host.ID); err != nil {
		t.Errorf("host gone after refused delete: %v", err)
	}
}

func must2(t *testing.T) func(types.Host, string, error) (types.Host, string) {
	return func(h types.Host, tok string, err error) (types.Host, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return h, tok
	}
}

func testIfMatch(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	d := "x"
	if _, err := s.UpdateProject(ctx, f.project.ID, 7, types.ProjectUpdate{Description: &d}); !errors.Is(err, store.ErrStale) {
		t.Errorf("update at wrong revision: %v, want ErrStale", err)
	}
	p := must[types.Project](t)(s.UpdateProject(ctx, f.project.ID, 1, types.ProjectUpdate{Description: &d}))
	if p.Revision != 2 {
		t.Errorf("revision after update = %d, want 2", p.Revision)
	}
	if err := s.DeleteProject(ctx, f.project.ID, 1); !errors.Is(err, store.ErrStale) {
		t.Errorf("delete at old revision: %v, want ErrStale", err)
	}
}

func testHosts(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	reg := types.HostRegister{Name: "hv1", Inventory: types.Inventory{CPUs: 16, RAMMiB: 65536, DiskGiB: 500,
		Hugepages: map[string]int64{"2048": 1024}}, Capabilities: []string{"kvm", "hugepages"}}
	where := store.HostPlacement{RegionID: f.region.ID, ZoneID: f.zone.ID, AggregateIDs: []string{f.agg.ID}}
	h, tok1 := must2(t)(s.RegisterHost(ctx, reg, where))
	if h.State != types.HostUp || h.Inventory.Hugepages["2048"] != 1024 || len(h.AggregateIDs) != 1 {
		t.Errorf("registered host = %+v", h)
	}
	// Registering again (agent restart) keeps the ID and revokes the old
	// agent token.
	h2, tok2 := must2(t)(s.RegisterHost(ctx, reg, where))
	if h2.ID != h.ID {
		t.Errorf("re-registration made a new host %s, want %s", h2.ID, h.ID)
	}
	if _, err := s.Authenticate(ctx, tok1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old agent token still works: %v", err)
	}
	row, err := s.Authenticate(ctx, tok2)
	if err != nil || row.Role != types.RoleAgent || row.HostID != h.ID {
		t.Errorf("new agent token = %+v, %v", row, err)
	}
	if err := s.Heartbeat(ctx, h.ID, types.Usage{MemFreeMiB: 1234, Guests: 3}, time.Now()); err != nil {
		t.Fatal(err)
	}
	got := must[types.Host](t)(s.GetHost(ctx, "hv1"))
	if got.Usage.MemFreeMiB != 1234 || got.Usage.Guests != 3 {
		t.Errorf("usage after heartbeat = %+v", got.Usage)
	}
	n, err := s.MarkStaleHostsDown(ctx, time.Now().Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("mark stale: %d, %v", n, err)
	}
	if got := must[types.Host](t)(s.GetHost(ctx, h.ID)); got.State != types.HostDown {
		t.Errorf("stale host state = %q, want down", got.State)
	}
	must0(t, s.Heartbeat(ctx, h.ID, types.Usage{}, time.Now()))
	if got := must[types.Host](t)(s.GetHost(ctx, h.ID)); got.State != types.HostUp {
		t.Errorf("host after heartbeat = %q, want up", got.State)
	}
	mnt := types.HostMaintenance
	must[types.Host](t)(s.UpdateHost(ctx, h.ID, 0, &mnt, &[]string{}))
	must0(t, s.Heartbeat(ctx, h.ID, types.Usage{}, time.Now()))
	got = must[types.Host](t)(s.GetHost(ctx, h.ID))
	if got.State != types.HostMaintenance || len(got.AggregateIDs) != 0 {
		t.Errorf("host in maintenance after heartbeat = %q %v", got.State, got.AggregateIDs)
	}
	list := must[types.List[types.Host]](t)(s.ListHosts(ctx, store.ListOptions{Filters: map[string]string{"state": "maintenance"}}))
	if len(list.Items) != 1 {
		t.Errorf("hosts in maintenance = %d, want 1", len(list.Items))
	}
	must0(t, s.DeleteHost(ctx, h.ID, 0))
	if _, err := s.Authenticate(ctx, tok2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("agent token of a deleted host still works: %v", err)
	}
}

func must0(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testTokens(t *testing.T, s *store.Store) {
	past := time.Now().Add(-time.Hour)
	future := time.Now().Add(time.Hour)
	_, expired, err := s.CreateToken(ctx, types.Token{Name: "old", Role: types.RoleReader}, &past)
	must0(t, err)
	_, live, err := s.CreateToken(ctx, types.Token{Name: "new", Role: types.RoleReader}, &future)
	must0(t, err)
	row, err := s.Authenticate(ctx, expired)
	if err != nil || !row.Expired(time.Now()) {
		t.Errorf("expired token: %+v %v, want found and expired", row, err)
	}
	for _, bad := range []string{"", "corral_", "corral_tok-x.y", live + "x", "Bearer " + live} {
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Authenticate(%q) = %v, want ErrNotFound", bad, err)
		}
	}
	// Replicas starting together make exactly one bootstrap admin token.
	var wg sync.WaitGroup
	var mu sync.Mutex
	made := 0
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			secret, err := s.BootstrapAdmin(ctx)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			if secret != "" {
				made++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if made != 1 {
		t.Errorf("bootstrap admin tokens made = %d, want 1", made)
	}
	n, err := s.PurgeExpiredTokens(ctx, time.Now())
	if err != nil || n != 1 {
		t.Errorf("purge = %d, %v; want 1", n, err)
	}
	if _, err := s.Authenticate(ctx, expired); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("purged token: %v", err)
	}
	if _, err := s.Authenticate(ctx, live); err != nil {
		t.Errorf("live token after purge: %v", err)
	}
}

func testIdempotency(t *testing.T, s *store.Store) {
	take := func(principal, key, hash string) (context.Context, *store.RequestTx, *store.IdempotencyRecord) {
		t.Helper()
		tctx, tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		rec, err := s.TakeIdempotencyKey(tctx, principal, key, hash)
		if err != nil {
			tx.Rollback()
			t.Fatalf("take %s/%s: %v", principal, key, err)
		}
		return tctx, tx, rec
	}
	if _, err := s.TakeIdempotencyKey(ctx, "tok-1", "k0", "h0"); err == nil {
		t.Errorf("a key taken outside a request transaction was accepted")
	}
	// A key whose request rolled back is not held.
	_, tx, rec := take("tok-1", "k1", "h1")
	if rec != nil {
		t.Fatalf("first take = %+v, want nil", rec)
	}
	must0(t, tx.Rollback())
	tctx, tx, rec := take("tok-1", "k1", "h1")
	if rec != nil {
		t.Fatalf("take after rollback = %+v, want nil (the key is free)", rec)
	}
	// The answer, the change and the audit entry commit together.
	reg, err := s.CreateRegion(tctx, types.RegionCreate{Name: "idem-region"})
	must0(t, err)
	must0(t, s.AppendAudit(tctx, []types.AuditEntry{{At: time.Now(), TokenID: "tok-1", Role: "admin", Method: "POST",
		Path: "/v1/regions", Status: 201, ResourceID: reg.ID}}))
	must0(t, s.CompleteIdempotencyKey(tctx, "tok-1", "k1", 201, "application/json", map[string]string{"Location": "/v1/x/1"},
		[]byte(`{"id":"x"}`)))
	// A second request with the same key waits for the first to commit,
	// then finds its answer.
	got := make(chan *store.IdempotencyRecord, 1)
	go func() {
		_, tx2, rec2 := take("tok-1", "k1", "h1")
		tx2.Rollback()
		got <- rec2
	}()
	select {
	case r := <-got:
		t.Fatalf("second take returned %+v before the first committed", r)
	case <-time.After(100 * time.Millisecond):
	}
	must0(t, tx.Commit())
	select {
	case rec = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("second take still waiting 30 s after the first committed")
	}
	if rec == nil || rec.Status != 201 || rec.Body != `{"id":"x"}` || rec.Headers != `{"Location":"/v1/x/1"}` {
		t.Errorf("replayed record = %+v", rec)
	}
	if _, err := s.GetRegion(ctx, "idem-region"); err != nil {
		t.Errorf("committed region: %v", err)
	}
	a := must[types.List[types.AuditEntry]](t)(s.ListAudit(ctx, store.ListOptions{Filters: map[string]string{"resource": reg.ID}}))
	if len(a.Items) != 1 {
		t.Errorf("audit entries of the committed create = %d, want 1", len(a.Items))
	}
	// A rolled-back request leaves neither its change nor its audit entry.
	tctx, tx, _ = take("tok-1", "k2", "h2")
	gone, err := s.CreateRegion(tctx, types.RegionCreate{Name: "idem-gone"})
	must0(t, err)
	must0(t, s.AppendAudit(tctx, []types.AuditEntry{{At: time.Now(), TokenID: "tok-1", Method: "POST", Path: "/v1/regions",
		Status: 201, ResourceID: gone.ID}}))
	must0(t, tx.Rollback())
	if _, err := s.GetRegion(ctx, "idem-gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rolled-back region: %v, want not found", err)
	}
	a = must[types.List[types.AuditEntry]](t)(s.ListAudit(ctx, store.ListOptions{Filters: map[string]string{"resource": gone.ID}}))
	if len(a.Items) != 0 {
		t.Errorf("audit entries of a rolled-back create = %d, want 0", len(a.Items))
	}
	// Another principal's key is separate.
	_, tx, rec = take("tok-2", "k1", "h2")
	if rec != nil {
		t.Errorf("key shared across principals: %+v", rec)
	}
	must0(t, tx.Commit())
	// A failed step inside a request rolls back to its savepoint only.
	tctx, tx, _ = take("tok-3", "k1", "h3")
	if _, err := s.CreateRegion(tctx, types.RegionCreate{Name: "idem-region"}); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate region in a request: %v, want exists", err)
	}
	tx.Rollback()
	if n, err := s.PurgeIdempotencyKeys(ctx, time.Now().Add(time.Second)); err != nil || n != 2 {
		t.Errorf("purge keys = %d, %v; want 2", n, err)
	}
	must0(t, s.DeleteRegion(ctx, reg.ID, 0))
}

func testAudit(t *testing.T, s *store.Store) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	entries := []types.AuditEntry{
		{At: now, TokenID: "tok-a", Role: "admin", Method: "POST", Path: "/v1/flavors", Status: 201, ResourceID: "flv-1"},
		{At: now, TokenID: "tok-b", Role: "member", Method: "DELETE", Path: "/v1/servers/srv-1", Status: 409},
	}
	must0(t, s.AppendAudit(ctx, entries))
	p := must[types.List[types.AuditEntry]](t)(s.ListAudit(ctx, store.ListOptions{Filters: map[string]string{"token": "tok-b"}}))
	if len(p.Items) != 1 || p.Items[0].Status != 409 || !p.Items[0].At.Equal(now) {
		t.Errorf("audit for tok-b = %+v", p.Items)
	}
	must0(t, s.AppendAudit(ctx, []types.AuditEntry{{At: now.Add(-100 * 24 * time.Hour), TokenID: "tok-old", Method: "POST", Path: "/v1/x"}}))
	if n, err := s.PurgeAudit(ctx, now.Add(-90*24*time.Hour)); err != nil || n != 1 {
		t.Errorf("purge audit = %d, %v; want 1", n, err)
	}
	if p := must[types.List[types.AuditEntry]](t)(s.ListAudit(ctx, store.ListOptions{})); len(p.Items) != 2 {
		t.Errorf("audit entries after purge = %d, want 2", len(p.Items))
	}
}

func testConcurrentWrites(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := s.CreateServer(ctx, f.server(fmt.Sprintf("c-%d", i))); err != nil {
				errs <- err
			}
			// Everyone renames the same project: updates retry, none is lost.
			d := fmt.Sprint(i)
			if _, err := s.UpdateProject(ctx, f.project.ID, 0, types.ProjectUpdate{Description: &d}); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p := must[types.List[types.Server]](t)(s.ListServers(ctx, store.ListOptions{Limit: 1000}))
	if len(p.Items) != 64 {
		t.Errorf("servers = %d, want 64", len(p.Items))
	}
	if pr := must[types.Project](t)(s.GetProject(ctx, f.project.ID)); pr.Revision != 65 {
		t.Errorf("project revision = %d after 64 updates, want 65", pr.Revision)
	}
}
