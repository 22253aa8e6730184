package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

const (
	regToken = "registrar-secret"
	interval = 5 * time.Second
)

// request is one call the fake corrald received.
type request struct {
	Method, Path, Token string
	// Proof is the X-Corral-Agent-Token of a registration.
	Proof string
}

func (r request) String() string { return r.Method + " " + r.Path + " " + r.Token }

// fakeCorrald implements the two host endpoints of corrald, records every
// request, and has switches that make it fail.
type fakeCorrald struct {
	t    *testing.T
	addr string

	mu         sync.Mutex
	srv        *http.Server
	requests   []request
	registered []types.HostRegister
	usages     []types.Usage
	hosts      map[string]string // name → ID
	tokens     map[string]string // agent token → host ID
	nTokens    int
	// unavailable answers that many requests with 503.
	unavailable int
	// drop closes that many connections without an answer.
	drop int
	// rejectRegister and rejectHeartbeat answer with this error.
	rejectRegister, rejectHeartbeat *types.Error
}

func newFakeCorrald(t *testing.T) *fakeCorrald {
	f := &fakeCorrald{t: t, hosts: map[string]string{}, tokens: map[string]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.serve(ln)
	t.Cleanup(f.stop)
	return f
}

func (f *fakeCorrald) endpoint() string { return "http://" + f.addr }

func (f *fakeCorrald) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(f.handle)}
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	go srv.Serve(ln)
}

// stop closes the listener and every connection: connections are refused
// until start.
func (f *fakeCorrald) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// start listens again on the same address, as a restarted corrald would.
func (f *fakeCorrald) start() {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatalf("listen again on %s: %v", f.addr, err)
	}
	f.serve(ln)
}

// revokeAgentTokens forgets every agent token, as an operator revoking them
// (or a lost database) would.
func (f *fakeCorrald) revokeAgentTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = map[string]string{}
}

func (f *fakeCorrald) set(fn func(f *fakeCorrald)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeCorrald) log() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}

func (f *fakeCorrald) registrations() []types.HostRegister {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]types.HostRegister(nil), f.registered...)
}

func (f *fakeCorrald) handle(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, request{Method: r.Method, Path: r.URL.Path, Token: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "),
		Proof: r.Header.Get(types.HeaderAgentToken)})
	token := f.requests[len(f.requests)-1].Token
	switch {
	case f.drop > 0:
		f.drop--
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			f.t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
		return
	case f.unavailable > 0:
		f.unavailable--
		writeError(w, types.Errorf(types.CodeUnavailable, "store unreachable"))
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/hosts/register":
		if token != regToken {
			writeError(w, types.Errorf(types.CodeUnauthenticated, "unknown or revoked token"))
			return
		}
		if f.rejectRegister != nil {
			writeError(w, f.rejectRegister)
			return
		}
		var in types.HostRegister
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			writeError(w, types.Errorf(types.CodeInvalidJSON, "%v", err))
			return
		}
		f.registered = append(f.registered, in)
		id, ok := f.hosts[in.Name]
		if !ok {
			id = fmt.Sprintf("host-%d", len(f.hosts)+1)
			f.hosts[in.Name] = id
		}
		for tok, h := range f.tokens { // registration revokes the old credential
			if h == id {
				delete(f.tokens, tok)
			}
		}
		f.nTokens++
		tok := fmt.Sprintf("agent-token-%d", f.nTokens)
		f.tokens[tok] = id
		writeJSON(w, http.StatusOK, types.HostRegistration{Token: tok,
			Host: types.Host{Meta: types.Meta{ID: id}, Name: in.Name, State: types.HostUp, Inventory: in.Inventory}})
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/hosts/") && strings.HasSuffix(r.URL.Path, "/heartbeat"):
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/hosts/"), "/heartbeat")
		owner, ok := f.tokens[token]
		switch {
		case !ok:
			writeError(w, types.Errorf(types.CodeUnauthenticated, "unknown or revoked token"))
			return
		case owner != id:
			writeError(w, types.Errorf(types.CodeForbidden, "an agent may only send heartbeats for its own host"))
			return
		case f.rejectHeartbeat != nil:
			writeError(w, f.rejectHeartbeat)
			return
		}
		var in types.Heartbeat
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			writeError(w, types.Errorf(types.CodeInvalidJSON, "%v", err))
			return
		}
		f.usages = append(f.usages, in.Usage)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, types.Errorf(types.CodeNotFound, "no route %s %s", r.Method, r.URL.Path))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *types.Error) {
	writeJSON(w, types.Status(e.Code), types.ErrorBody{Error: e})
}

// stepClock runs the agent one sleep at a time: every Sleep is handed to
// the test, and the agent stays asleep until the test lets it go on.
type stepClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps chan time.Duration
	wake   chan struct{}
}

func newStepClock() *stepClock {
	return &stepClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), sleeps: make(chan time.Duration), wake: make(chan struct{})}
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) Sleep(ctx context.Context, d time.Duration) error {
	select {
	case c.sleeps <- d:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-c.wake:
		c.mu.Lock()
		c.now = c.now.Add(d)
		c.mu.Unlock()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fakeProber reports fixed figures.
type fakeProber struct {
	mu    sync.Mutex
	inv   types.Inventory
	caps  []string
	usage types.Usage
}

func newFakeProber() *fakeProber {
	return &fakeProber{
		inv:   types.Inventory{CPUModel: "Test CPU", CPUs: 8, NUMANodes: 1, RAMMiB: 16384, DiskGiB: 200, NICs: []string{"eth0"}},
		caps:  []string{types.CapCgroupV1, types.CapKVMDevice},
		usage: types.Usage{MemFreeMiB: 12000, Load1: 0.5, DiskFreeGiB: 150},
	}
}

func (p *fakeProber) Inventory(context.Context) (types.Inventory, []string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inv, p.caps, nil
}

func (p *fakeProber) Usage(context.Context) (types.Usage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.usage, nil
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// running is one agent run under test.
type running struct {
	t      *testing.T
	agent  *Agent
	clock  *stepClock
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
	asleep bool
}

// testMachineID is the machine ID the tests' agents read.
const testMachineID = "4f1e0c2a9b8d4e7f a1b2c3d4e5f60718"

// agentConfig returns the configuration the tests start from, with a
// registration token file that holds the registrar token.
func agentConfig(t *testing.T, endpoint, stateDir string, prober Prober) Config {
	t.Helper()
	tokenFile := filepath.Join(filepath.Dir(stateDir), "registration-token")
	if err := os.WriteFile(tokenFile, []byte(regToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	machineIDFile := filepath.Join(filepath.Dir(stateDir), "machine-id")
	if err := os.WriteFile(machineIDFile, []byte(testMachineID+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Config{
		Endpoint:              endpoint,
		RegistrationTokenFile: tokenFile,
		Name:                  "cmp-1",
		Region:                "dc1",
		Zone:                  "rack1",
		Aggregates:            []string{"general", "fast-disk"},
		StateDir:              stateDir,
		MachineIDFile:         machineIDFile,
		HeartbeatInterval:     interval,
		Backoff:               &Backoff{Initial: time.Second, Max: 30 * time.Second}, // no jitter: exact waits
		Version:               "test",
		Prober:                prober,
	}
}

// startAgent runs an agent with a step clock until the test ends.
func startAgent(t *testing.T, cfg Config) *running {
	t.Helper()
	r := &running{t: t, clock: newStepClock(), logs: &syncBuffer{}, done: make(chan error, 1)}
	cfg.Clock = r.clock
	cfg.Logger = slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("agent log:\n%s", r.logs)
		}
	})
	return r
}

// sleep wakes the agent if it sleeps, and returns the length of its next
// sleep; the agent stays asleep until the next call.
func (r *running) sleep() time.Duration {
	r.t.Helper()
	if r.asleep {
		r.clock.wake <- struct{}{}
	}
	select {
	case d := <-r.clock.sleeps:
		r.asleep = true
		return d
	case err := <-r.done:
		r.t.Fatalf("Run returned %v while the agent should keep going", err)
	case <-time.After(10 * time.Second):
		r.t.Fatal("the agent did not sleep within 10 s")
	}
	return 0
}

// sleeps returns the agent's next n sleeps.
func (r *running) sleeps(n int) []time.Duration {
	r.t.Helper()
	var ds []time.Duration
	for range n {
		ds = append(ds, r.sleep())
	}
	return ds
}

// stop cancels the agent and checks that Run returns nil promptly.
func (r *running) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		r.t.Error("Run did not return within 10 s of cancel")
	}
}

func registerReq() request {
	return request{Method: "POST", Path: "/v1/hosts/register", Token: regToken}
}
func heartbeatReq(host, token string) request {
	return request{Method: "POST", Path: "/v1/hosts/" + host + "/heartbeat", Token: token}
}

// repeat returns n copies of v.
func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func readState(t *testing.T, dir string) State {
	t.Helper()
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestAgentRegistersOnceThenHeartbeats(t *testing.T) {
	fake := newFakeCorrald(t)
	prober := newFakeProber()
	stateDir := filepath.Join(t.TempDir(), "state")
	r := startAgent(t, agentConfig(t, fake.endpoint(), stateDir, prober))

	if diff := cmp.Diff(repeat(interval, 4), r.sleeps(4)); diff != "" {
		t.Errorf("sleeps (-want +got):\n%s", diff)
	}
	want := append([]request{registerReq()}, repeat(heartbeatReq("host-1", "agent-token-1"), 4)...)
	if diff := cmp.Diff(want, fake.log()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	wantReg := types.HostRegister{Name: "cmp-1", Region: "dc1", Zone: "rack1", Aggregates: []string{"general", "fast-disk"},
		Inventory: prober.inv, Capabilities: prober.caps, AgentVersion: "test", MachineID: machineIdentity(testMachineID, stateDir)}
	if diff := cmp.Diff([]types.HostRegister{wantReg}, fake.registrations()); diff != "" {
		t.Errorf("registrations (-want +got):\n%s", diff)
	}
	fake.set(func(f *fakeCorrald) {
		if diff := cmp.Diff(repeat(prober.usage, 4), f.usages); diff != "" {
			t.Errorf("heartbeat usages (-want +got):\n%s", diff)
		}
	})
	if got := r.agent.HostID(); got != "host-1" {
		t.Errorf("HostID() = %q, want host-1", got)
	}

	fi, err := os.Stat(filepath.Join(stateDir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("state file mode %v, want 0600: it holds a credential", mode)
	}
	st := readState(t, stateDir)
	wantState := State{HostID: "host-1", Name: "cmp-1", Token: "agent-token-1", Registration: registrationDigest(wantReg),
		RegisteredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if diff := cmp.Diff(wantState, st); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
}

func TestAgentReregistersAfter401(t *testing.T) {
	fake := newFakeCorrald(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	r := startAgent(t, agentConfig(t, fake.endpoint(), stateDir, newFakeProber()))
	r.sleeps(2)

	fake.revokeAgentTokens()
	if d := r.sleep(); d != time.Second {
		t.Errorf("sleep after the 401: %v, want the first backoff (1s)", d)
	}
	if diff := cmp.Diff(repeat(interval, 2), r.sleeps(2)); diff != "" {
		t.Errorf("sleeps after registering again (-want +got):\n%s", diff)
	}
	want := []request{
		registerReq(),
		heartbeatReq("host-1", "agent-token-1"),
		heartbeatReq("host-1", "agent-token-1"),
		heartbeatReq("host-1", "agent-token-1"), // 401
		registerReq(),
		heartbeatReq("host-1", "agent-token-2"),
		heartbeatReq("host-1", "agent-token-2"),
	}
	if diff := cmp.Diff(want, fake.log()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if st := readState(t, stateDir); st.HostID != "host-1" || st.Token != "agent-token-2" {
		t.Errorf("state after registering again: %+v, want host-1 with agent-token-2", st)
	}
	if logs := r.logs.String(); !strings.Contains(logs, "no longer accepts the agent credential") ||
		!strings.Contains(logs, "unknown or revoked token") {
		t.Errorf("log does not explain the re-registration:\n%s", logs)
	}
}

func TestAgentKeepsRetryingWhileCorraldIsDown(t *testing.T) {
	const failures = 8
	// Exponential from 1 s, capped at 30 s (the test backoff has no jitter).
	wantBackoff := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	tests := []struct {
		name      string
		breakIt   func(f *fakeCorrald)
		restoreIt func(f *fakeCorrald)
	}{
		{name: "503 answers",
			breakIt:   func(f *fakeCorrald) { f.set(func(f *fakeCorrald) { f.unavailable = failures }) },
			restoreIt: func(*fakeCorrald) {}},
		{name: "connections dropped",
			breakIt:   func(f *fakeCorrald) { f.set(func(f *fakeCorrald) { f.drop = failures }) },
			restoreIt: func(*fakeCorrald) {}},
		{name: "connections refused",
			breakIt:   (*fakeCorrald).stop,
			restoreIt: (*fakeCorrald).start},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeCorrald(t)
			r := startAgent(t, agentConfig(t, fake.endpoint(), filepath.Join(t.TempDir(), "state"), newFakeProber()))
			r.sleeps(2)

			tt.breakIt(fake)
			if diff := cmp.Diff(wantBackoff, r.sleeps(failures)); diff != "" {
				t.Errorf("sleeps while down (-want +got):\n%s", diff)
			}
			tt.restoreIt(fake)
			if diff := cmp.Diff(repeat(interval, 3), r.sleeps(3)); diff != "" {
				t.Errorf("sleeps once back (-want +got):\n%s", diff)
			}
			// A new outage starts again from the first wait.
			fake.set(func(f *fakeCorrald) { f.unavailable = 1 })
			if diff := cmp.Diff([]time.Duration{time.Second, interval}, r.sleeps(2)); diff != "" {
				t.Errorf("sleeps in a second outage (-want +got):\n%s", diff)
			}

			log := fake.log()
			if regs := countRequests(log, registerReq()); regs != 1 {
				t.Errorf("%d registrations, want 1: an outage must not re-register\n%v", regs, log)
			}
			last := log[len(log)-1]
			if diff := cmp.Diff(heartbeatReq("host-1", "agent-token-1"), last); diff != "" {
				t.Errorf("last request (-want +got):\n%s", diff)
			}
			if !strings.Contains(r.logs.String(), "heartbeats resumed") {
				t.Errorf("log does not say heartbeats resumed:\n%s", r.logs)
			}
		})
	}
}

func countRequests(log []request, r request) int {
	n := 0
	for _, l := range log {
		if l == r {
			n++
		}
	}
	return n
}

func TestAgentRetriesWhenCorraldIsDownAtStart(t *testing.T) {
	fake := newFakeCorrald(t)
	fake.stop()
	r := startAgent(t, agentConfig(t, fake.endpoint(), filepath.Join(t.TempDir(), "state"), newFakeProber()))
	if diff := cmp.Diff([]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, r.sleeps(3)); diff != "" {
		t.Errorf("sleeps while corrald is down (-want +got):\n%s", diff)
	}
	fake.start()
	if diff := cmp.Diff(repeat(interval, 2), r.sleeps(2)); diff != "" {
		t.Errorf("sleeps once corrald is up (-want +got):\n%s", diff)
	}
	want := []request{registerReq(), heartbeatReq("host-1", "agent-token-1"), heartbeatReq("host-1", "agent-token-1")}
	if diff := cmp.Diff(want, fake.log()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestAgentReportsRefusals(t *testing.T) {
	tests := []struct {
		name string
		// refuse makes the fake refuse; the agent must log wantLog at
		// level=ERROR and retry after wantSleeps, and work once fixed.
		refuse     func(f *fakeCorrald, tokenFile string)
		wantLog    []string
		wantSleeps []time.Duration
	}{
		{name: "400 unknown region",
			refuse: func(f *fakeCorrald, _ string) {
				f.rejectRegister = types.Errorf(types.CodeInvalidReference, "region: no region dc1").WithDetail("field", "region")
			},
			wantLog:    []string{"corrald refused the registration", "code=invalid_reference", `message="region: no region dc1"`, "field=region"},
			wantSleeps: []time.Duration{time.Second, 2 * time.Second}},
		{name: "403 token may not register",
			refuse: func(f *fakeCorrald, _ string) {
				f.rejectRegister = types.Errorf(types.CodeForbidden, "role reader may not do this")
			},
			wantLog:    []string{"may not register hosts", "status=403", `message="role reader may not do this"`},
			wantSleeps: []time.Duration{time.Second, 2 * time.Second}},
		{name: "401 bad registration token",
			refuse: func(_ *fakeCorrald, tokenFile string) {
				os.WriteFile(tokenFile, []byte("stale-token\n"), 0o600)
			},
			wantLog:    []string{"rejected the registration token", "status=401", `message="unknown or revoked token"`},
			wantSleeps: []time.Duration{time.Second, 2 * time.Second}},
		{name: "no registration token file",
			refuse: func(_ *fakeCorrald, tokenFile string) {
				os.Remove(tokenFile)
			},
			wantLog:    []string{"read registration token", "no such file"},
			wantSleeps: []time.Duration{time.Second, 2 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeCorrald(t)
			cfg := agentConfig(t, fake.endpoint(), filepath.Join(t.TempDir(), "state"), newFakeProber())
			fake.set(func(f *fakeCorrald) { tt.refuse(f, cfg.RegistrationTokenFile) })
			r := startAgent(t, cfg)
			if diff := cmp.Diff(tt.wantSleeps, r.sleeps(len(tt.wantSleeps))); diff != "" {
				t.Errorf("sleeps while refused (-want +got):\n%s", diff)
			}
			logs := r.logs.String()
			for _, w := range append(tt.wantLog, "level=ERROR") {
				if !strings.Contains(logs, w) {
					t.Errorf("log lacks %q:\n%s", w, logs)
				}
			}
			// The operator fixes it; the agent needs no restart.
			fake.set(func(f *fakeCorrald) { f.rejectRegister = nil })
			os.WriteFile(cfg.RegistrationTokenFile, []byte(regToken+"\n"), 0o600)
			if d := r.sleep(); d != interval {
				t.Errorf("sleep once fixed: %v, want %v", d, interval)
			}
			if got := r.agent.HostID(); got != "host-1" {
				t.Errorf("HostID() = %q once fixed, want host-1", got)
			}
		})
	}
}

func TestAgentHeartbeatRejected(t *testing.T) {
	fake := newFakeCorrald(t)
	r := startAgent(t, agentConfig(t, fake.endpoint(), filepath.Join(t.TempDir(), "state"), newFakeProber()))
	r.sleep()
	fake.set(func(f *fakeCorrald) {
		f.rejectHeartbeat = types.FieldError("usage", "counters must not be negative")
	})
	// A 400 is logged and retried at the normal pace, without registering.
	if diff := cmp.Diff(repeat(interval, 2), r.sleeps(2)); diff != "" {
		t.Errorf("sleeps (-want +got):\n%s", diff)
	}
	if n := countRequests(fake.log(), registerReq()); n != 1 {
		t.Errorf("%d registrations, want 1", n)
	}
	for _, w := range []string{"level=ERROR", "corrald rejected the heartbeat", "code=invalid_argument", "counters must not be negative"} {
		if !strings.Contains(r.logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, r.logs)
		}
	}
}

func TestAgentHeartbeatForbiddenReregisters(t *testing.T) {
	fake := newFakeCorrald(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	// A state file whose token belongs to another host.
	fake.set(func(f *fakeCorrald) { f.tokens["other-host-token"] = "host-9" })
	prober := newFakeProber()
	cfg := agentConfig(t, fake.endpoint(), stateDir, prober)
	reg, _ := (&Agent{cfg: cfg}).registration(t.Context())
	os.MkdirAll(stateDir, 0o700)
	if err := saveState(stateDir, State{HostID: "host-1", Name: "cmp-1", Token: "other-host-token", Registration: registrationDigest(reg)}); err != nil {
		t.Fatal(err)
	}
	r := startAgent(t, cfg)
	if diff := cmp.Diff([]time.Duration{time.Second, interval}, r.sleeps(2)); diff != "" {
		t.Errorf("sleeps (-want +got):\n%s", diff)
	}
	want := []request{heartbeatReq("host-1", "other-host-token"), registerReq(), heartbeatReq("host-1", "agent-token-1")}
	if diff := cmp.Diff(want, fake.log()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if !strings.Contains(r.logs.String(), "an agent may only send heartbeats for its own host") {
		t.Errorf("log lacks corrald's message:\n%s", r.logs)
	}
}

func TestAgentRestartReusesState(t *testing.T) {
	fake := newFakeCorrald(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	prober := newFakeProber()
	cfg := agentConfig(t, fake.endpoint(), stateDir, prober)

	first := startAgent(t, cfg)
	first.sleeps(2)
	first.stop()
	want := []request{registerReq(), heartbeatReq("host-1", "agent-token-1"), heartbeatReq("host-1", "agent-token-1")}
	if diff := cmp.Diff(want, fake.log()); diff != "" {
		t.Fatalf("requests of the first run (-want +got):\n%s", diff)
	}

	t.Run("unchanged host resumes without registering", func(t *testing.T) {
		// Without a registration token file, too: it is only needed to register.
		cfg := cfg
		cfg.RegistrationTokenFile = ""
		n := len(fake.log())
		r := startAgent(t, cfg)
		r.sleeps(2)
		r.stop()
		want := repeat(heartbeatReq("host-1", "agent-token-1"), 2)
		if diff := cmp.Diff(want, fake.log()[n:]); diff != "" {
			t.Errorf("requests after the restart (-want +got):\n%s", diff)
		}
		if !strings.Contains(r.logs.String(), "resuming with the saved credential") {
			t.Errorf("log lacks the resume:\n%s", r.logs)
		}
	})

	t.Run("changed inventory registers again under the same ID", func(t *testing.T) {
		prober.mu.Lock()
		prober.inv.RAMMiB *= 2
		prober.mu.Unlock()
		n := len(fake.log())
		r := startAgent(t, cfg)
		r.sleeps(1)
		r.stop()
		// The saved agent token proves to corrald that this is the host's
		// own agent, not a takeover of a host that is still up.
		reg := registerReq()
		reg.Proof = "agent-token-1"
		want := []request{reg, heartbeatReq("host-1", "agent-token-2")}
		if diff := cmp.Diff(want, fake.log()[n:]); diff != "" {
			t.Errorf("requests after the restart (-want +got):\n%s", diff)
		}
		regs := fake.registrations()
		if got := regs[len(regs)-1].Inventory.RAMMiB; got != 32768 {
			t.Errorf("registered ram_mib %d, want 32768", got)
		}
	})

	t.Run("corrupt state registers again under the same ID", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(stateDir, StateFile), []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
		n := len(fake.log())
		r := startAgent(t, cfg)
		r.sleeps(1)
		r.stop()
		want := []request{registerReq(), heartbeatReq("host-1", "agent-token-3")}
		if diff := cmp.Diff(want, fake.log()[n:]); diff != "" {
			t.Errorf("requests after the restart (-want +got):\n%s", diff)
		}
		if st := readState(t, stateDir); st.Token != "agent-token-3" {
			t.Errorf("state not rewritten: %+v", st)
		}
	})
}

func TestAgentStopsPromptlyWithRealClock(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String()
	ln.Close() // nothing listens: connections are refused
	stateDir := filepath.Join(t.TempDir(), "state")
	cfg := agentConfig(t, endpoint, stateDir, newFakeProber())
	cfg.Backoff = nil // the default, with jitter
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "cannot reach corrald") {
		if time.Now().After(deadline) {
			t.Fatalf("no retry logged:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of cancel")
	}
}

func TestNewChecksConfig(t *testing.T) {
	dir := t.TempDir()
	valid := func() Config {
		return agentConfig(t, "http://127.0.0.1:1", filepath.Join(dir, "state"), newFakeProber())
	}
	tests := []struct {
		name    string
		mutate  func(c *Config)
		wantErr string
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "missing fields", mutate: func(c *Config) { c.Endpoint, c.Zone = "", " " }, wantErr: "missing endpoint, zone"},
		{name: "no credential and no registration token",
			mutate: func(c *Config) { c.RegistrationTokenFile = ""; c.StateDir = filepath.Join(dir, "empty") }, wantErr: "cannot register"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.mutate(&cfg)
			_, err := New(cfg)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tt.wantErr == "") != (got == "") || !strings.Contains(got, tt.wantErr) {
				t.Errorf("New() error = %q, want one containing %q", got, tt.wantErr)
			}
		})
	}
}

// TestAgentMachineID: the machine identity sent at registration depends on
// the machine's ID and the state directory's path only, so an agent whose
// state was wiped is still the same machine, and two agents on one machine
// (different state directories) are not; without a machine ID none is sent.
func TestAgentMachineID(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	cfg := agentConfig(t, "http://127.0.0.1:9", stateDir, newFakeProber())
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	first := a.machineID()
	if first == "" || first != machineIdentity(testMachineID, stateDir) {
		t.Fatalf("machine ID %q", first)
	}
	// Wipe the state directory: the same machine.
	if err := os.RemoveAll(stateDir); err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.machineID(); got != first {
		t.Errorf("after wiping the state: %q, want %q", got, first)
	}
	other := cfg
	other.StateDir = filepath.Join(dir, "state2")
	c, err := New(other)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.machineID(); got == first || got == "" {
		t.Errorf("another state directory on the machine: %q, want another identity than %q", got, first)
	}
	none := cfg
	none.MachineIDFile = filepath.Join(dir, "missing")
	d, err := New(none)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.machineID(); got != "" {
		t.Errorf("without a machine ID file: %q, want none", got)
	}
}
