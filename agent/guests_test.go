package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/server"
	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// fakeDriver records what the guest loop asks of it and "runs" guests.
type fakeDriver struct {
	mu      sync.Mutex
	running map[string]types.GuestSpec // the host's managed domains
	ensures int
	sweeps  int
}

func (f *fakeDriver) Building(g types.GuestSpec) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.running[g.ServerID]
	return !ok && g.DesiredState != types.DesiredDeleted
}

func (f *fakeDriver) Ensure(_ context.Context, g types.GuestSpec) types.GuestStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensures++
	if g.DesiredState == types.DesiredDeleted {
		delete(f.running, g.ServerID)
		return types.GuestStatus{ServerID: g.ServerID, State: types.GuestDeleted}
	}
	f.running[g.ServerID] = g
	// Fake counters: a second of CPU per reconcile, a quarter of the
	// memory in use.
	return types.GuestStatus{ServerID: g.ServerID, State: types.GuestActive,
		Observed: types.GuestObserved{Domain: "corral-" + g.ServerID, DomainID: 1, Counters: types.GuestCounter{
			CPUTimeNs: uint64(f.ensures) * 1e9, MemoryKiB: uint64(g.RAMMiB) * 1024, MemoryUsedKiB: uint64(g.RAMMiB) * 256}}}
}

func (f *fakeDriver) Managed(context.Context) ([]types.UnknownGuest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []types.UnknownGuest
	for id, g := range f.running {
		out = append(out, types.UnknownGuest{ServerID: id, Name: g.Name, ProjectID: g.ProjectID, FlavorID: g.FlavorID,
			ImageID: g.Image.ID, Kind: g.Kind, VCPUs: g.VCPUs, RAMMiB: g.RAMMiB, DiskGiB: g.DiskGiB,
			Domain: "corral-" + id, State: "running", DomainID: 1})
	}
	return out, nil
}

func (f *fakeDriver) Sweep([]types.GuestSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sweeps++
	return nil
}

func (f *fakeDriver) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.running[id]
	return ok
}

func (f *fakeDriver) counts() (running, ensures, sweeps int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.running), f.ensures, f.sweeps
}

// TestGuestLoop runs the agent against a real in-process corrald: a
// created server is built and reported active; while corrald fails, the
// loop touches no guest; afterwards a delete is carried out and confirmed.
func TestGuestLoop(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(t.Context(), store.Config{SQLitePath: filepath.Join(dir, "c.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := server.New(server.Config{Store: st, ImageDir: filepath.Join(dir, "images"), WatchRecheck: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var failing atomic.Bool
	var refused atomic.Int64 // guest requests answered 503
	h := srv.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() && strings.Contains(r.URL.Path, "/guests") {
			refused.Add(1)
			http.Error(w, `{"error":{"code":"unavailable","message":"down for the test"}}`, http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer hs.Close()
	_, admin, err := st.CreateToken(t.Context(), types.Token{Name: "admin", Role: types.RoleAdmin}, nil)
	if err != nil {
		t.Fatal(err)
	}
	api := client.New(hs.URL, admin, nil)
	ctx := t.Context()
	mustDo := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustDo(client.Create[types.Region](ctx, api, "/v1/regions", types.RegionCreate{Name: "dc1"}, ""))
	mustDo(client.Create[types.Zone](ctx, api, "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, ""))
	mustDo(client.Create[types.Project](ctx, api, "/v1/projects", types.ProjectCreate{Name: "p"}, ""))
	mustDo(client.Create[types.Flavor](ctx, api, "/v1/flavors", types.FlavorCreate{Name: "f", VCPUs: 1, RAMMiB: 128, DiskGiB: 1}, ""))
	img, err := client.Create[types.Image](ctx, api, "/v1/images", types.ImageCreate{Name: "i", DiskFormat: "raw"}, "")
	mustDo(img, err)
	mustDo(api.UploadImage(ctx, img.ID, strings.NewReader("image bytes")))
	tokenFile := filepath.Join(dir, "admin")
	os.WriteFile(tokenFile, []byte(admin), 0o600)

	drv := &fakeDriver{running: map[string]types.GuestSpec{}}
	prober := newFakeProber()
	actx, cancel := context.WithCancel(ctx)
	a, err := New(Config{Endpoint: hs.URL, RegistrationTokenFile: tokenFile, Name: "hv1", Region: "dc1", Zone: "rack1",
		StateDir: filepath.Join(dir, "state"), Prober: prober, Guests: drv, WatchWait: 200 * time.Millisecond,
		HeartbeatInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Resync: time.Hour, Backoff: &Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { a.Run(actx); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the host", func() bool { return a.HostID() != "" })
	// Placement sees the host's measured memory once its snapshot
	// refreshes after the first heartbeat.
	var s1 types.Server
	waitFor("s1 placed", func() bool {
		s1, err = client.Create[types.Server](ctx, api, "/v1/servers", types.ServerCreate{Name: "s1", Kind: "vm", Project: "p", Flavor: "f", Image: "i"}, "")
		return err == nil
	})
	waitFor("s1 active", func() bool {
		s, err := client.Get[types.Server](ctx, api, "/v1/servers/"+s1.ID)
		return err == nil && s.State == types.ServerActive && s.Observed != nil && s.Observed.DomainID == 1
	})
	// Its heartbeats now say that their measurement includes s1's claim,
	// so the failsafe does not count it a second time.
	waitFor("heartbeat with s1's claim measured", func() bool {
		h, err := client.Get[types.Host](ctx, api, "/v1/hosts/"+a.HostID())
		return err == nil && h.Allocated.RAMMiB > 128 && h.Usage.GuestClaimRAMMiB != nil &&
			*h.Usage.GuestClaimRAMMiB == h.Allocated.RAMMiB && h.FailsafeFreeMiB == h.Usage.MemFreeMiB
	})

	// corrald fails the guest endpoints: nothing is touched.
	failing.Store(true)
	_, ensures, sweeps := drv.counts()
	// The agent has tried (and been refused) several times over.
	refused0 := refused.Load()
	waitFor("the agent retrying against the failing corrald", func() bool { return refused.Load() >= refused0+3 })
	if r, e, c := drv.counts(); r != 1 || e != ensures || c != sweeps {
		t.Errorf("while corrald failed: running %d, ensures %d→%d, sweeps %d→%d; want nothing touched", r, ensures, e, sweeps, c)
	}
	failing.Store(false)

	// Delete: the agent removes the guest and confirms; the server goes.
	if _, err := client.Get[types.Server](ctx, api, "/v1/servers/"+s1.ID); err != nil {
		t.Fatal(err)
	}
	if err := api.Delete(ctx, "/v1/servers/"+s1.ID); err != nil {
		t.Fatal(err)
	}
	waitFor("s1 gone", func() bool {
		_, err := client.Get[types.Server](ctx, api, "/v1/servers/"+s1.ID)
		return client.Code(err) == types.CodeNotFound
	})
	if r, _, _ := drv.counts(); r != 0 {
		t.Errorf("%d guests still run after the delete", r)
	}
}

// TestGuestLoopRemovesOnlyExplicitDeletions: the agent never removes a
// guest because it is absent from the desired set. A managed guest
// corrald does not know (a database restored from an older backup) keeps
// running and is reported as unknown; a desired set emptied by a bug (or
// a wrong host ID) removes nothing; only a recorded deletion (a tombstone,
// or a server being deleted) removes a guest, and the agent confirms it.
func TestGuestLoopRemovesOnlyExplicitDeletions(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(t.Context(), store.Config{SQLitePath: filepath.Join(dir, "c.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := server.New(server.Config{Store: st, ImageDir: filepath.Join(dir, "images"), WatchRecheck: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// emptyWatch answers every watch with an empty desired set, as a bug
	// or a restored database would.
	var emptyWatch atomic.Bool
	h := srv.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if emptyWatch.Load() && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/guests") {
			parts := strings.Split(r.URL.Path, "/")
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"host_id":%q,"version":"empty","guests":[],"tombstones":[]}`, parts[len(parts)-2])
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer hs.Close()
	_, admin, err := st.CreateToken(t.Context(), types.Token{Name: "admin", Role: types.RoleAdmin}, nil)
	if err != nil {
		t.Fatal(err)
	}
	api := client.New(hs.URL, admin, nil)
	ctx := t.Context()
	mustDo := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustDo(client.Create[types.Region](ctx, api, "/v1/regions", types.RegionCreate{Name: "dc1"}, ""))
	mustDo(client.Create[types.Zone](ctx, api, "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, ""))
	mustDo(client.Create[types.Project](ctx, api, "/v1/projects", types.ProjectCreate{Name: "p"}, ""))
	mustDo(client.Create[types.Flavor](ctx, api, "/v1/flavors", types.FlavorCreate{Name: "f", VCPUs: 1, RAMMiB: 128, DiskGiB: 1}, ""))
	img, err := client.Create[types.Image](ctx, api, "/v1/images", types.ImageCreate{Name: "i", DiskFormat: "raw"}, "")
	mustDo(img, err)
	mustDo(api.UploadImage(ctx, img.ID, strings.NewReader("image bytes")))
	tokenFile := filepath.Join(dir, "admin")
	os.WriteFile(tokenFile, []byte(admin), 0o600)

	// The host already runs a guest corrald has never heard of.
	ghost := "srv-ghost1"
	drv := &fakeDriver{running: map[string]types.GuestSpec{ghost: {ServerID: ghost, Name: "ghost", VCPUs: 1, RAMMiB: 128}}}
	actx, cancel := context.WithCancel(ctx)
	a, err := New(Config{Endpoint: hs.URL, RegistrationTokenFile: tokenFile, Name: "hv1", Region: "dc1", Zone: "rack1",
		StateDir: filepath.Join(dir, "state"), Prober: newFakeProber(), Guests: drv, WatchWait: 200 * time.Millisecond,
		HeartbeatInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Resync: 100 * time.Millisecond,
		Backoff: &Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}, MachineIDFile: filepath.Join(dir, "none")})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { a.Run(actx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the host", func() bool { return a.HostID() != "" })
	hostID := a.HostID()
	var unknown []types.UnknownGuest
	waitFor("the ghost reported as unknown", func() bool {
		unknown, err = api.UnknownGuests(ctx, hostID)
		return err == nil && len(unknown) == 1
	})
	if g := unknown[0]; g.ServerID != ghost || g.Name != "ghost" || g.State != "running" || g.HostID != hostID {
		t.Errorf("unknown guest %+v", g)
	}

	var s1 types.Server
	waitFor("s1 placed", func() bool {
		s1, err = client.Create[types.Server](ctx, api, "/v1/servers", types.ServerCreate{Name: "s1", Kind: "vm", Project: "p", Flavor: "f", Image: "i"}, "")
		return err == nil
	})
	waitFor("s1 active", func() bool {
		s, err := client.Get[types.Server](ctx, api, "/v1/servers/"+s1.ID)
		return err == nil && s.State == types.ServerActive
	})

	// An empty desired set, answered many times over resyncs: nothing goes.
	emptyWatch.Store(true)
	_, _, sweeps := drv.counts()
	waitFor("several resyncs on the empty set", func() bool { _, _, n := drv.counts(); return n >= sweeps+5 })
	if !drv.has(ghost) || !drv.has(s1.ID) {
		t.Fatalf("an empty desired set removed guests: ghost %v, s1 %v", drv.has(ghost), drv.has(s1.ID))
	}
	emptyWatch.Store(false)

	// An admin deletes the unknown guest: a tombstone, which the agent
	// carries out and confirms.
	ts, err := api.DeleteUnknownGuest(ctx, hostID, ghost)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Generation < 1 || ts.Confirmed {
		t.Errorf("tombstone %+v", ts)
	}
	waitFor("the ghost removed", func() bool { return !drv.has(ghost) })
	waitFor("the deletion confirmed", func() bool {
		tombs, err := st.HostTombstones(ctx, hostID)
		return err == nil && len(tombs) == 1 && tombs[0].ServerID == ghost && tombs[0].Confirmed
	})
	if !drv.has(s1.ID) {
		t.Fatal("deleting the unknown guest removed s1")
	}
	if l, err := api.UnknownGuests(ctx, hostID); err != nil || len(l) != 0 {
		t.Errorf("unknown guests after the delete: %+v %v", l, err)
	}

	// A forced delete removes the record at once; its tombstone removes
	// the guest.
	if err := api.Delete(ctx, "/v1/servers/"+s1.ID+"?force=true"); err != nil {
		t.Fatal(err)
	}
	waitFor("s1's guest removed", func() bool { return !drv.has(s1.ID) })
	waitFor("s1's deletion confirmed", func() bool {
		tombs, _ := st.HostTombstones(ctx, hostID)
		for _, tb := range tombs {
			if tb.ServerID == s1.ID {
				return tb.Confirmed && tb.Reason == types.TombstoneForceDeleted
			}
		}
		return false
	})
}
