package agent

import (
	"context"
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
	mu       sync.Mutex
	running  map[string]types.GuestSpec
	ensures  int
	cleanups int
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
	return types.GuestStatus{ServerID: g.ServerID, State: types.GuestActive,
		Observed: types.GuestObserved{Domain: "corral-" + g.ServerID, DomainID: 1}}
}

func (f *fakeDriver) Cleanup(specs []types.GuestSpec) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups++
	want := map[string]bool{}
	for _, g := range specs {
		want[g.ServerID] = true
	}
	var removed []string
	for id := range f.running {
		if !want[id] {
			delete(f.running, id)
			removed = append(removed, id)
		}
	}
	return removed, nil
}

func (f *fakeDriver) counts() (running, ensures, cleanups int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.running), f.ensures, f.cleanups
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
	img, err := client.Create[types.Image](ctx, api, "/v1/images", types.ImageCreate{Name: "i", DiskFormat: "qcow2"}, "")
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

	// corrald fails the guest endpoints: nothing is touched.
	failing.Store(true)
	_, ensures, cleanups := drv.counts()
	// The agent has tried (and been refused) several times over.
	refused0 := refused.Load()
	waitFor("the agent retrying against the failing corrald", func() bool { return refused.Load() >= refused0+3 })
	if r, e, c := drv.counts(); r != 1 || e != ensures || c != cleanups {
		t.Errorf("while corrald failed: running %d, ensures %d→%d, cleanups %d→%d; want nothing touched", r, ensures, e, cleanups, c)
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
