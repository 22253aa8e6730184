package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/placement"
)

// restartable is a corrald the test kills with SIGKILL and starts again on
// the same address and database.
type restartable struct {
	t        *testing.T
	bin, dir string
	addr     string
	args     []string
	mu       sync.Mutex
	proc     *testenv.Process
	starts   int
}

func newRestartable(t *testing.T, bin string, extra ...string) *restartable {
	dir := t.TempDir()
	r := &restartable{t: t, bin: bin, dir: dir, addr: testenv.FreeAddr(t)}
	r.args = append([]string{"--listen", r.addr, "--data-dir", filepath.Join(dir, "data"),
		"--bootstrap-token-file", filepath.Join(dir, "data", "admin-token")}, extra...)
	r.start()
	return r
}

func (r *restartable) endpoint() string { return "http://" + r.addr }

func (r *restartable) start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts++
	r.proc = testenv.Start(r.t, filepath.Join(r.dir, fmt.Sprintf("corrald-%d.log", r.starts)), r.bin, r.args...)
	if err := testenv.WaitReady(r.endpoint(), r.proc.Exited, 60*time.Second); err != nil {
		r.t.Fatal(err)
	}
}

// kill9 ends corrald at once, as a crash or an OOM kill would.
func (r *restartable) kill9() {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	p.Cmd.Process.Kill()
	<-p.Exited
}

func (r *restartable) admin() *client.Client {
	r.t.Helper()
	tok, err := os.ReadFile(filepath.Join(r.dir, "data", "admin-token"))
	if err != nil {
		r.t.Fatal(err)
	}
	return client.New(r.endpoint(), strings.TrimSpace(string(tok)), nil)
}

// twoReplicas starts two corrald processes on one new PostgreSQL
// database; both Admin clients use the bootstrap admin token a wrote.
func twoReplicas(t *testing.T, dbPrefix string) (a, b *testenv.Corrald) {
	t.Helper()
	db := testenv.PostgresDatabase(t, dbPrefix)
	bin := filepath.Join(testenv.Binaries(t, "."), "corrald")
	a = testenv.StartCorrald(t, bin, "--postgres-dsn", db)
	b = testenv.StartCorrald(t, bin, "--postgres-dsn", db)
	tok, err := os.ReadFile(a.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	b.Admin = client.New(b.Endpoint, strings.TrimSpace(string(tok)), nil)
	return a, b
}

// catalogue makes what a VM create needs: region dc1 with zones
// rack1..rackN, flavor c1 (1 vCPU, 256 MiB), project p and an image.
func catalogue(t *testing.T, c *client.Client, racks int) {
	t.Helper()
	ctx := context.Background()
	mustCreate := func(path string, in any) {
		t.Helper()
		if _, err := client.Create[map[string]any](ctx, c, path, in, ""); err != nil {
			t.Fatalf("create %s: %v", path, err)
		}
	}
	mustCreate("/v1/regions", types.RegionCreate{Name: "dc1"})
	for i := 1; i <= racks; i++ {
		mustCreate("/v1/zones", types.ZoneCreate{Name: fmt.Sprintf("rack%d", i), Region: "dc1"})
	}
	mustCreate("/v1/flavors", types.FlavorCreate{Name: "c1", VCPUs: 1, RAMMiB: 256, DiskGiB: 1})
	mustCreate("/v1/projects", types.ProjectCreate{Name: "p"})
	img, err := client.Create[types.Image](ctx, c, "/v1/images", types.ImageCreate{Name: "tiny", DiskFormat: "raw"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadImage(ctx, img.ID, strings.NewReader("bytes")); err != nil {
		t.Fatal(err)
	}
}

// fakeHost is a registered host whose heartbeats the test sends.
type fakeHost struct {
	id, token string
	usage     types.Usage
}

func registerHosts(t *testing.T, c *client.Client, n, racks int, inv types.Inventory, u types.Usage) []*fakeHost {
	t.Helper()
	var out []*fakeHost
	for i := 1; i <= n; i++ {
		reg, err := c.RegisterHost(context.Background(), types.HostRegister{Name: fmt.Sprintf("hv%d", i), Region: "dc1",
			Zone: fmt.Sprintf("rack%d", 1+(i-1)%racks), Inventory: inv}, "")
		if err != nil {
			t.Fatal(err)
		}
		h := &fakeHost{id: reg.Host.ID, token: reg.Token, usage: u}
		if err := c.WithToken(h.token).Heartbeat(context.Background(), h.id, u); err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
	return out
}

// heartbeats keeps the hosts alive (every 2 s, errors ignored: corrald
// may be down) until ctx ends.
func heartbeats(ctx context.Context, endpoints []string, hosts []*fakeHost) {
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			for _, h := range hosts {
				c := client.New(endpoints[i%len(endpoints)], h.token, nil)
				hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				c.Heartbeat(hctx, h.id, h.usage)
				cancel()
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
}

// TestCrashExactlyOnceSQLite and TestCrashExactlyOncePostgres: 8 clients
// send creates with distinct idempotency keys while corrald is killed with
// SIGKILL (at least 3 times) and restarted; every client retries its key
// until it gets a final answer. Afterwards every key maps to exactly one
// server (named after the key, with the ID its answer gave), every server
// has exactly one audit entry for its create, and the hosts' allocations
// equal the sum of the servers'.
func TestCrashExactlyOnceSQLite(t *testing.T) { crashExactlyOnce(t) }

func TestCrashExactlyOncePostgres(t *testing.T) {
	crashExactlyOnce(t, "--postgres-dsn", testenv.PostgresDatabase(t, "corral_crash"))
}

func crashExactlyOnce(t *testing.T, extra ...string) {
	r := newRestartable(t, filepath.Join(testenv.Binaries(t, "."), "corrald"), extra...)
	admin := r.admin()
	catalogue(t, admin, 1)
	hosts := registerHosts(t, admin, 4, 1, types.Inventory{CPUs: 200, RAMMiB: 1 << 20, DiskGiB: 1000},
		types.Usage{MemFreeMiB: 1 << 20})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	heartbeats(ctx, []string{r.endpoint()}, hosts)

	const clients, perClient, kills = 8, 30, 3
	var done atomic.Int64
	var mu sync.Mutex
	answered := map[string]string{} // key -> server ID of its final answer
	replays := 0
	var wg sync.WaitGroup
	for ci := 0; ci < clients; ci++ {
		wg.Add(1)
		go func(ci int) {
			defer wg.Done()
			c := r.admin()
			for k := 0; k < perClient; k++ {
				key := fmt.Sprintf("c%d-k%d", ci, k)
				deadline := time.Now().Add(3 * time.Minute)
				for {
					var srv types.Server
					h, err := c.Do(ctx, client.Request{Method: "POST", Path: "/v1/servers",
						Header: map[string][]string{"Idempotency-Key": {key}},
						Body:   types.ServerCreate{Name: key, Kind: "vm", Project: "p", Flavor: "c1", Image: "tiny"}}, &srv)
					if err == nil {
						mu.Lock()
						answered[key] = srv.ID
						if h.Get("Idempotent-Replayed") == "true" {
							replays++
						}
						mu.Unlock()
						done.Add(1)
						break
					}
					var ae *client.Error
					if errors.As(err, &ae) && ae.Status != 503 && ae.Status != 429 {
						t.Errorf("key %s: final error %v", key, err)
						done.Add(1)
						break
					}
					if time.Now().After(deadline) || ctx.Err() != nil {
						t.Errorf("key %s: no final answer within 3 minutes: %v", key, err)
						return
					}
					time.Sleep(20 * time.Millisecond) // a retry's pause, not a wait for a condition
				}
			}
		}(ci)
	}
	// Kill corrald mid-burst: each time a further part of the creates has
	// been answered, and not after the burst is over.
	total := int64(clients * perClient)
	for i := 1; i <= kills; i++ {
		target := total * int64(i) / int64(kills+2)
		for done.Load() < target {
			time.Sleep(5 * time.Millisecond)
		}
		r.kill9()
		r.start()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if done.Load() != total {
		t.Fatalf("%d of %d keys answered", done.Load(), total)
	}
	admin = r.admin()
	servers, err := client.ListAll[types.Server](context.Background(), admin, "/v1/servers", nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]types.Server{}
	for _, s := range servers {
		byName[s.Name] = append(byName[s.Name], s)
	}
	if len(servers) != int(total) {
		t.Errorf("%d servers for %d keys", len(servers), total)
	}
	for key, id := range answered {
		got := byName[key]
		if len(got) != 1 || got[0].ID != id {
			t.Errorf("key %s answered %s; servers with its name: %v", key, id, got)
		}
	}
	// Every committed create has its audit entry, exactly one.
	audit, err := client.ListAll[types.AuditEntry](context.Background(), admin, "/v1/audit", url.Values{"method": {"POST"}})
	if err != nil {
		t.Fatal(err)
	}
	creates := map[string]int{}
	for _, e := range audit {
		if e.Path == "/v1/servers" && e.Status == 201 {
			creates[e.ResourceID]++
		}
	}
	for _, s := range servers {
		if creates[s.ID] != 1 {
			t.Errorf("server %s (%s) has %d audit entries for its create, want 1", s.ID, s.Name, creates[s.ID])
		}
	}
	// Host allocations equal the sum of the servers' claims.
	hs, err := client.ListAll[types.Host](context.Background(), admin, "/v1/hosts", nil)
	if err != nil {
		t.Fatal(err)
	}
	perHost := map[string]int64{}
	for _, s := range servers {
		perHost[s.HostID]++
	}
	for _, h := range hs {
		if h.Allocated.VCPUs != perHost[h.ID] || h.Allocated.Guests != perHost[h.ID] {
			t.Errorf("host %s: allocated %d vCPUs, %d guests; its servers claim %d", h.Name, h.Allocated.VCPUs,
				h.Allocated.Guests, perHost[h.ID])
		}
	}
	t.Logf("%d keys over %d corrald starts: %d servers, %d answers were replays", total, r.starts, len(servers), replays)
}

// TestFailsafeAcrossReplicas: two corrald replicas on one PostgreSQL place
// guests on hosts whose measured free memory admits exactly K guests each
// above the failsafe margin. Creates go to both replicas, in waves spread
// over several snapshot rebuilds, and heartbeats keep repeating the same
// measurement (the guests have not started yet): at most K land per host.
func TestFailsafeAcrossReplicas(t *testing.T) {
	a, b := twoReplicas(t, "corral_failsafe")
	ctx := context.Background()
	ca, cb := a.Admin, b.Admin
	catalogue(t, ca, 1)
	const K, nhosts = 3, 3
	need := 256 + placement.DefaultOverhead.For(256)
	zero := int64(0)
	// Plenty of allocatable memory: only the failsafe can refuse.
	hosts := registerHosts(t, ca, nhosts, 1, types.Inventory{CPUs: 100, RAMMiB: 1 << 20, DiskGiB: 1000},
		types.Usage{MemFreeMiB: placement.DefaultFailsafeMarginMiB + K*need, GuestClaimRAMMiB: &zero})
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	heartbeats(hctx, []string{a.Endpoint, b.Endpoint}, hosts)

	var mu sync.Mutex
	outcomes := map[string]int{}
	for wave := 0; wave < 3; wave++ {
		var wg sync.WaitGroup
		for i := 0; i < 2*K*nhosts/3+2; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				c := []*client.Client{ca, cb}[i%2]
				_, err := client.Create[types.Server](ctx, c, "/v1/servers", types.ServerCreate{Name: fmt.Sprintf("w%d-s%d", wave, i),
					Kind: "vm", Project: "p", Flavor: "c1", Image: "tiny"}, "")
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					outcomes["created"]++
				} else {
					outcomes[client.Code(err)]++
				}
			}(i)
		}
		wg.Wait()
		// Let both replicas rebuild their snapshots (every 2 s) and the
		// hosts heartbeat again before the next wave.
		time.Sleep(2500 * time.Millisecond)
	}
	if outcomes["created"] != K*nhosts || len(outcomes) != 2 || outcomes[types.CodeNoValidHost] == 0 {
		t.Errorf("outcomes = %v, want %d created and the rest no_valid_host", outcomes, K*nhosts)
	}
	hs, err := client.ListAll[types.Host](ctx, ca, "/v1/hosts", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.Allocated.Guests > K {
			t.Errorf("host %s has %d guests, its measured free memory admits %d", h.Name, h.Allocated.Guests, K)
		}
		if h.FailsafeFreeMiB < placement.DefaultFailsafeMarginMiB {
			t.Errorf("host %s: failsafe free %d MiB below the margin", h.Name, h.FailsafeFreeMiB)
		}
	}
}

// TestGroupScaleUpRace: two clients, each on its own replica, scale one
// broker group up at the same time, again and again. Members stay on
// distinct hosts and the rack skew stays at most 1.
func TestGroupScaleUpRace(t *testing.T) {
	a, b := twoReplicas(t, "corral_groups")
	ctx := context.Background()
	ca, cb := a.Admin, b.Admin
	const racks = 3
	catalogue(t, ca, racks)
	hosts := registerHosts(t, ca, 12, racks, types.Inventory{CPUs: 16, RAMMiB: 65536, DiskGiB: 500},
		types.Usage{MemFreeMiB: 60000})
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	heartbeats(hctx, []string{a.Endpoint, b.Endpoint}, hosts)
	grp, err := client.Create[types.Group](ctx, ca, "/v1/groups", types.GroupCreate{Name: "kafka", Role: types.GroupBroker,
		Project: "p", GroupSpec: types.GroupSpec{Members: 3, Flavor: "c1", Image: "tiny", DistinctHosts: true, SpreadZones: true}}, "")
	if err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 4; round++ {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, c := range []*client.Client{ca, cb} {
			wg.Add(1)
			go func(i int, c *client.Client) {
				defer wg.Done()
				// Both ask for the same size: one grows the group, the
				// other finds it grown (or grows it further).
				_, errs[i] = client.Create[types.Group](ctx, c, "/v1/groups/"+grp.ID+"/scale",
					types.GroupScale{Members: 3 + 2*round + i}, "")
			}(i, c)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil && client.Code(err) != types.CodeNoValidHost {
				t.Errorf("round %d: scale: %v", round, err)
			}
		}
		g, err := client.Get[types.Group](ctx, ca, "/v1/groups/"+grp.ID)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]string{}
		perRack := map[string]int{}
		for _, m := range g.Members {
			if other, ok := seen[m.HostID]; ok {
				t.Errorf("round %d: members %s and %s share host %s", round, other, m.Name, m.HostID)
			}
			seen[m.HostID] = m.Name
			perRack[m.ZoneID]++
		}
		lo, hi := len(g.Members), 0
		for _, z := range []string{"rack1", "rack2", "rack3"} {
			zone, err := client.Get[types.Zone](ctx, ca, "/v1/zones/"+z)
			if err != nil {
				t.Fatal(err)
			}
			lo, hi = min(lo, perRack[zone.ID]), max(hi, perRack[zone.ID])
		}
		if hi-lo > 1 {
			t.Errorf("round %d: %d members, per rack %v: skew %d > 1", round, len(g.Members), perRack, hi-lo)
		}
		t.Logf("round %d: %d members, per rack %v", round, len(g.Members), perRack)
	}
}
