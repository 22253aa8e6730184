package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
)

// raiseFDLimit raises the soft limit on open files to at least n (the
// corrald the test starts inherits it).
func raiseFDLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Fatalf("open files: hard limit %d, the test needs %d", lim.Max, n)
	}
	old := lim.Cur
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Cur = old; syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
}

// Slow-client kinds, each closed by one of corrald's timeouts.
const (
	silent      = "silent"       // connects and sends nothing: --read-header-timeout
	slowHeaders = "slow-headers" // one header line at a time, never done: --read-header-timeout
	idleKeep    = "keep-alive"   // one request, then idles: --idle-timeout
	slowBody    = "slow-body"    // headers, then a byte of the body at a time: --read-timeout
)

// slowClient holds one connection open its way until corrald closes it,
// and reports how long that took (or that it never did, within hold).
type slowClient struct {
	kind   string
	closed time.Duration // from the first byte sent (dial for silent)
	err    error         // why it is not known to be closed by the server
}

func runSlowClient(addr, kind, token string, hold time.Duration) slowClient {
	out := slowClient{kind: kind}
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		out.err = fmt.Errorf("dial: %w", err)
		return out
	}
	defer conn.Close()
	start := time.Now()
	conn.SetDeadline(start.Add(hold))
	stop := make(chan struct{})
	defer close(stop)
	trickle := func(first string, next func(i int) string) {
		if _, err := io.WriteString(conn, first); err != nil {
			return
		}
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
				if _, err := io.WriteString(conn, next(i)); err != nil {
					return // closed: the reader below sees it
				}
			}
		}()
	}
	rd := bufio.NewReader(conn)
	switch kind {
	case slowHeaders:
		trickle("GET /healthz HTTP/1.1\r\nHost: corrald\r\n", func(i int) string { return fmt.Sprintf("X-Slow-%d: y\r\n", i) })
	case idleKeep:
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: corrald\r\n\r\n"); err != nil {
			out.err = err
			return out
		}
		res, err := http.ReadResponse(rd, nil)
		if err != nil {
			out.err = fmt.Errorf("keep-alive request: %w", err)
			return out
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			out.err = fmt.Errorf("keep-alive request: %s", res.Status)
			return out
		}
		start = time.Now() // idle from here
	case slowBody:
		// A member's server create, which decodes its body: the handler
		// itself waits for the bytes.
		trickle("POST /v1/servers HTTP/1.1\r\nHost: corrald\r\nAuthorization: Bearer "+token+
			"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", func(int) string { return " " })
	}
	_, err = io.Copy(io.Discard, rd) // whatever corrald answers, until it closes
	out.closed = time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		out.err = fmt.Errorf("still open after %s", out.closed.Round(time.Millisecond))
	}
	return out
}

// TestSlowClients is acceptance item 8 against the real corrald: 500
// connections that are silent, send their headers or body a byte at a
// time, or idle after one request are all closed by corrald within its
// configured timeouts (plus a generous margin) while an admin's requests
// and an agent's heartbeats keep being answered; a token over its rate
// gets 429 rate_limited with Retry-After, and is not audited, while the
// agent's heartbeats, in their own budget, go on.
func TestSlowClients(t *testing.T) {
	raiseFDLimit(t, 4096)
	bin := filepath.Join(testenv.Binaries(t, "."), "corrald")
	timeouts := map[string]time.Duration{silent: 2 * time.Second, slowHeaders: 2 * time.Second,
		idleKeep: 2 * time.Second, slowBody: 3 * time.Second}
	const margin = 20 * time.Second // generous: the machine is loaded
	const hold = 60 * time.Second   // how long a slow client would go on
	c := testenv.StartCorrald(t, bin, "--read-header-timeout", "2s", "--read-timeout", "3s", "--write-timeout", "10s",
		"--idle-timeout", "2s", "--max-connections", "2000",
		"--rate-limit-token", "5", "--rate-limit-token-burst", "30",
		"--rate-limit-agent", "10", "--rate-limit-agent-burst", "30",
		"--rate-limit-source", "50", "--rate-limit-source-burst", "1000")
	ctx := context.Background()
	admin := c.Admin
	addr := strings.TrimPrefix(c.Endpoint, "http://")
	for _, step := range []struct {
		path string
		in   any
	}{{"/v1/regions", types.RegionCreate{Name: "dc1"}}, {"/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}},
		{"/v1/projects", types.ProjectCreate{Name: "p"}}} {
		if _, err := client.Create[map[string]any](ctx, admin, step.path, step.in, ""); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := admin.RegisterHost(ctx, types.HostRegister{Name: "hv1", Region: "dc1", Zone: "rack1",
		Inventory: types.Inventory{CPUs: 4, RAMMiB: 8192, DiskGiB: 10}}, "")
	if err != nil {
		t.Fatal(err)
	}
	agent := admin.WithToken(reg.Token)
	token := func(name, role, project string) types.TokenCreated {
		tc, err := client.Create[types.TokenCreated](ctx, admin, "/v1/tokens", types.TokenCreate{Name: name, Role: role, Project: project}, "")
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	// Four members share the slow bodies, 25 each, within their bursts.
	var slowTokens []string
	for i := range 4 {
		slowTokens = append(slowTokens, token(fmt.Sprintf("slow-%d", i), types.RoleMember, "p").Secret)
	}
	noisy := token("noisy", types.RoleReader, "")

	// Normal clients: an admin listing regions and the agent heartbeating,
	// every 300 ms, until told to stop; every call must succeed.
	type tally struct {
		mu   sync.Mutex
		ok   int
		errs []string
	}
	keepCalling := func(name string, call func() error, stop <-chan struct{}, done *sync.WaitGroup) *tally {
		var tl tally
		done.Add(1)
		go func() {
			defer done.Done()
			for {
				err := call()
				tl.mu.Lock()
				if err != nil {
					tl.errs = append(tl.errs, fmt.Sprintf("%s at %s: %v", name, time.Now().Format("15:04:05.000"), err))
				} else {
					tl.ok++
				}
				tl.mu.Unlock()
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
			}
		}()
		return &tl
	}
	heartbeat := func() error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return agent.Heartbeat(cctx, reg.Host.ID, types.Usage{MemFreeMiB: 4096})
	}
	listRegions := func() error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := client.List[types.Region](cctx, admin, "/v1/regions", nil)
		return err
	}

	// The attack: 500 connections.
	kinds := map[string]int{silent: 300, slowHeaders: 50, idleKeep: 50, slowBody: 100}
	stop := make(chan struct{})
	var normal sync.WaitGroup
	admins := keepCalling("admin list", listRegions, stop, &normal)
	beats := keepCalling("agent heartbeat", heartbeat, stop, &normal)
	results := make(chan slowClient, 500)
	started := time.Now()
	n := 0
	for kind, count := range kinds {
		for range count {
			go func(kind, token string) { results <- runSlowClient(addr, kind, token, hold) }(kind, slowTokens[n%4])
			n++
		}
	}
	worst := map[string]time.Duration{}
	var failures []string
	for range n {
		r := <-results
		if r.err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", r.kind, r.err))
			continue
		}
		if r.closed > timeouts[r.kind]+margin {
			failures = append(failures, fmt.Sprintf("%s: closed after %s, timeout %s", r.kind, r.closed, timeouts[r.kind]))
		}
		worst[r.kind] = max(worst[r.kind], r.closed)
	}
	close(stop)
	normal.Wait()
	t.Logf("500 slow connections closed within %s; slowest per kind %v", time.Since(started).Round(time.Millisecond), worst)
	if len(failures) > 0 {
		t.Errorf("%d of 500 slow connections not closed by corrald in time, e.g. %v", len(failures), failures[:min(5, len(failures))])
	}
	for name, tl := range map[string]*tally{"admin": admins, "agent": beats} {
		if len(tl.errs) > 0 || tl.ok < 3 {
			t.Errorf("%s during the attack: %d answered, failures %v", name, tl.ok, tl.errs)
		}
	}

	// A token over its rate: the reader's refused writes turn into 429
	// with Retry-After, while the agent heartbeats on.
	stop = make(chan struct{})
	beats = keepCalling("agent heartbeat", heartbeat, stop, &normal)
	hc := &http.Client{Timeout: 10 * time.Second}
	codes := map[int]int{}
	var retryAfter, code string
	for range 100 {
		req, _ := http.NewRequest("POST", c.Endpoint+"/v1/regions", strings.NewReader(`{"name":"x"}`))
		req.Header.Set("Authorization", "Bearer "+noisy.Secret)
		req.Header.Set("Content-Type", "application/json")
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		codes[res.StatusCode]++
		if res.StatusCode == http.StatusTooManyRequests {
			retryAfter, code = res.Header.Get("Retry-After"), string(body)
		}
	}
	close(stop)
	normal.Wait()
	if codes[http.StatusTooManyRequests] == 0 || codes[http.StatusForbidden] == 0 {
		t.Fatalf("100 quick writes of a reader at 5/s, burst 30: %v, want 403 then 429", codes)
	}
	if ra, err := strconv.Atoi(retryAfter); err != nil || ra < 1 || !strings.Contains(code, `"rate_limited"`) {
		t.Errorf("429: Retry-After %q, body %s; want whole seconds and rate_limited", retryAfter, code)
	}
	if len(beats.errs) > 0 || beats.ok < 1 {
		t.Errorf("agent while a reader was rate-limited: %d answered, failures %v", beats.ok, beats.errs)
	}
	audit, err := client.ListAll[types.AuditEntry](ctx, admin, "/v1/audit", map[string][]string{"token": {noisy.ID}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range audit {
		if a.Status == http.StatusTooManyRequests {
			t.Fatalf("a rate-limited request was audited: %+v", a)
		}
	}
	if len(audit) > codes[http.StatusForbidden] {
		t.Errorf("%d audit rows for %d refused writes (and %d rate-limited ones)", len(audit), codes[403], codes[429])
	}
	res, err := http.Get(c.Endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var counted float64 = -1
	for _, line := range strings.Split(string(metrics), "\n") {
		if v, ok := strings.CutPrefix(line, `corral_http_rate_limited_total{class="token"} `); ok {
			counted, _ = strconv.ParseFloat(v, 64)
		}
	}
	if counted < float64(codes[http.StatusTooManyRequests]) {
		t.Errorf("corral_http_rate_limited_total{class=\"token\"} = %v, want at least the %d answers seen", counted, codes[429])
	}
}

// TestConnectionCap: past --max-connections a new connection is not
// served until one of the held ones goes.
func TestConnectionCap(t *testing.T) {
	bin := filepath.Join(testenv.Binaries(t, "."), "corrald")
	c := testenv.StartCorrald(t, bin, "--max-connections", "10", "--read-header-timeout", "2m")
	addr := strings.TrimPrefix(c.Endpoint, "http://")
	probe := func(timeout time.Duration) error {
		hc := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		res, err := hc.Get(c.Endpoint + "/healthz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			return errors.New(res.Status)
		}
		return nil
	}
	if err := probe(10 * time.Second); err != nil {
		t.Fatalf("before the cap is reached: %v", err)
	}
	var held []net.Conn
	for range 10 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, conn)
	}
	if err := probe(1500 * time.Millisecond); err == nil {
		t.Fatal("an 11th connection was served with 10 held and --max-connections 10")
	}
	for _, conn := range held {
		conn.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := probe(5 * time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not served 30 s after the held connections closed: %v", err)
		}
	}
}
