package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// newLimitedEnv is newEnv with request budgets and, when timeouts are
// given, an http.Server with those read and write timeouts.
func newLimitedEnv(t *testing.T, limits RateLimits, timeouts Timeouts) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), store.Config{SQLitePath: filepath.Join(dir, "corral.db")})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: st, now: time.Now()}
	e.srv, err = New(Config{Store: st, ImageDir: filepath.Join(dir, "images"), MaxBodyBytes: 64 << 10,
		MaxImageBytes: 64 << 20, Now: e.clock, RateLimits: limits, Timeouts: timeouts, WatchRecheck: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewUnstartedServer(e.srv.Handler())
	e.http.Config.ReadTimeout, e.http.Config.WriteTimeout = timeouts.Read, timeouts.Write
	e.http.Start()
	t.Cleanup(func() { e.http.Close(); st.Close() })
	if _, e.admin, err = st.CreateToken(context.Background(), types.Token{Name: "admin", Role: types.RoleAdmin}, nil); err != nil {
		t.Fatal(err)
	}
	return e
}

// rateLimited reads corral_http_rate_limited_total{class} from /metrics.
func (e *env) rateLimited(class string) float64 {
	e.t.Helper()
	r := e.call("", "GET", "/metrics", nil)
	prefix := `corral_http_rate_limited_total{class="` + class + `"} `
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				e.t.Fatal(err)
			}
			return f
		}
	}
	e.t.Fatalf("no %s in /metrics (%d)", prefix, r.status)
	return 0
}

// TestRateLimitTokens: a token over its budget gets 429 rate_limited with
// Retry-After, counted and never audited, while an agent's budget is its
// own; the budget comes back with time.
func TestRateLimitTokens(t *testing.T) {
	e := newLimitedEnv(t, RateLimits{Token: Rate{PerSecond: 1, Burst: 20}, Agent: Rate{PerSecond: 1, Burst: 40}}, Timeouts{})
	e.must(201, "POST", "/v1/regions", types.RegionCreate{Name: "dc1"}, nil)
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, nil)
	var reg types.HostRegistration
	e.must(200, "POST", "/v1/hosts/register", types.HostRegister{Name: "hv1", Region: "dc1", Zone: "rack1",
		Inventory: types.Inventory{CPUs: 4, RAMMiB: 8192, DiskGiB: 10}}, &reg)
	var reader types.TokenCreated
	e.must(201, "POST", "/v1/tokens", types.TokenCreate{Name: "noisy", Role: types.RoleReader}, &reader)
	e.advance(time.Hour) // every budget full again

	heartbeat := func() int {
		return e.call(reg.Token, "POST", "/v1/hosts/"+reg.Host.ID+"/heartbeat", types.Heartbeat{Usage: types.Usage{MemFreeMiB: 4096}}).status
	}
	// The reader's refused writes: 403 until its budget is spent, then 429.
	codes := map[int]int{}
	var limited resp
	for range 30 {
		r := e.call(reader.Secret, "POST", "/v1/regions", types.RegionCreate{Name: "x"})
		codes[r.status]++
		if r.status == http.StatusTooManyRequests {
			limited = r
		}
		if got := heartbeat(); got != http.StatusNoContent {
			t.Fatalf("agent heartbeat while a reader floods = %d, want 204", got)
		}
	}
	if codes[403] != 20 || codes[429] != 10 {
		t.Fatalf("answers = %v, want 20×403 then 10×429", codes)
	}
	if ae := limited.apiErr(t); ae.Code != types.CodeRateLimited || ae.Details["class"] != classToken {
		t.Errorf("429 body = %+v, want rate_limited, class token", ae)
	}
	if ra, err := strconv.Atoi(limited.header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Errorf("Retry-After = %q, want 1 (one request per second)", limited.header.Get("Retry-After"))
	}
	if n := e.rateLimited(classToken); n != 10 {
		t.Errorf("corral_http_rate_limited_total{class=token} = %v, want 10", n)
	}
	// Refused by the budget means no audit row: only the 403s were recorded.
	var audit types.List[types.AuditEntry]
	e.must(200, "GET", "/v1/audit?limit=1000&token="+reader.ID, nil, &audit)
	for _, a := range audit.Items {
		if a.Status == http.StatusTooManyRequests {
			t.Fatalf("a rate-limited request was audited: %+v", a)
		}
	}
	if len(audit.Items) > codes[403] {
		t.Errorf("%d audit rows for %d refused writes", len(audit.Items), codes[403])
	}

	// The agent's own budget: 10 more heartbeats, since the clock stands
	// still, then the agent is limited on its own.
	n := 0
	for heartbeat() == http.StatusNoContent {
		n++
	}
	if n != 10 {
		t.Errorf("agent had %d heartbeats left after 30, want 10 of its burst of 40", n)
	}
	if n := e.rateLimited(classAgent); n != 1 {
		t.Errorf("corral_http_rate_limited_total{class=agent} = %v, want 1", n)
	}
	// Time gives the budgets back.
	e.advance(time.Second)
	if r := e.call(reader.Secret, "GET", "/v1/regions", nil); r.status != 200 {
		t.Errorf("reader after a second = %d, want 200", r.status)
	}
	if got := heartbeat(); got != http.StatusNoContent {
		t.Errorf("agent after a second = %d, want 204", got)
	}
}

// TestRateLimitSource: requests without a valid token spend their
// address's budget; once it is spent the address is refused before any
// token lookup, while authenticated requests never spend it.
func TestRateLimitSource(t *testing.T) {
	e := newLimitedEnv(t, RateLimits{Source: Rate{PerSecond: 1, Burst: 3}}, Timeouts{})
	for range 10 {
		e.must(200, "GET", "/v1/regions", nil, nil) // authenticated: free
	}
	for i := range 3 {
		if r := e.call("guess-"+strconv.Itoa(i), "GET", "/v1/regions", nil); r.status != 401 {
			t.Fatalf("guess %d = %d, want 401", i, r.status)
		}
	}
	r := e.call("guess-4", "GET", "/v1/regions", nil)
	if r.status != 429 || r.apiErr(t).Details["class"] != classSource || r.header.Get("Retry-After") != "1" {
		t.Fatalf("fourth guess = %d %s Retry-After %q, want 429 class source, Retry-After 1", r.status, r.body, r.header.Get("Retry-After"))
	}
	if r := e.call(e.admin, "GET", "/v1/regions", nil); r.status != 429 {
		t.Errorf("valid token from a spent address = %d, want 429 (refused before the token is looked up)", r.status)
	}
	if r := e.call("", "GET", "/healthz", nil); r.status != 429 {
		t.Errorf("/healthz from a spent address = %d, want 429", r.status)
	}
	e.advance(time.Second)
	e.must(200, "GET", "/v1/regions", nil, nil)
	if r := e.call("", "GET", "/healthz", nil); r.status != 200 {
		t.Errorf("/healthz after a second = %d, want 200", r.status)
	}
	if r := e.call("", "GET", "/readyz", nil); r.status != 429 {
		t.Errorf("/readyz right after = %d, want 429 (health spends the address's budget)", r.status)
	}
}

// TestLimiterTableBounded: many sources never grow a table past its bound;
// buckets still being spent are kept, refilled ones dropped.
func TestLimiterTableBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	set := newLimiterSet(Rate{PerSecond: 1, Burst: 2}, 100)
	spent := set.get("keep", now)
	spent.AllowN(now, 2)
	for i := range 10000 {
		lim := set.get(fmt.Sprintf("10.%d.%d.1", i/256, i%256), now)
		lim.AllowN(now, 1)
		if n := set.size(); n > 100 {
			t.Fatalf("table holds %d buckets, bound 100", n)
		}
	}
	if set.get("keep", now) != spent {
		t.Error("a spent bucket was dropped: dropping it would forgive its caller")
	}
	if set.get("new", now) != set.overflow {
		t.Error("a new key while the table is full should share the overflow bucket")
	}
	// A second later the half-spent buckets are full again and go at the
	// next sweep; "keep" (spent fully) is not yet full.
	later := now.Add(1500 * time.Millisecond)
	if set.get("fresh", later) == set.overflow {
		t.Error("a new key after a sweep should get its own bucket")
	}
	if n := set.size(); n != 2 {
		t.Errorf("after the sweep the table holds %d buckets, want 2 (keep, fresh)", n)
	}
}

func TestSourceKey(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"10.0.0.1:5000", "10.0.0.1"},
		{"[::ffff:10.0.0.1]:5000", "10.0.0.1"},
		{"[2001:db8:1:2::1]:5000", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::9]:1", "2001:db8:1:2::/64"},
		{"[2001:db8:1:3::1]:5000", "2001:db8:1:3::/64"},
	} {
		if got := sourceKey(&http.Request{RemoteAddr: tt.addr}); got != tt.want {
			t.Errorf("sourceKey(%s) = %s, want %s", tt.addr, got, tt.want)
		}
	}
}

// TestLongPollOutlastsTimeouts: with read and write timeouts of 1 s on the
// server, an agent's guest watch and network watch of 3 s still answer,
// because they extend their own deadlines, while the same timeouts close a
// connection that sends half a request.
func TestLongPollOutlastsTimeouts(t *testing.T) {
	e := newLimitedEnv(t, RateLimits{}, Timeouts{Read: time.Second, Write: time.Second})
	e.must(201, "POST", "/v1/regions", types.RegionCreate{Name: "dc1"}, nil)
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, nil)
	var reg types.HostRegistration
	e.must(200, "POST", "/v1/hosts/register", types.HostRegister{Name: "hv1", Region: "dc1", Zone: "rack1",
		Inventory: types.Inventory{CPUs: 4, RAMMiB: 8192, DiskGiB: 10}}, &reg)
	var hg types.HostGuests
	e.call(reg.Token, "GET", "/v1/hosts/"+reg.Host.ID+"/guests", nil).decode(t, &hg)
	var hn types.HostNetwork
	e.call(reg.Token, "GET", "/v1/hosts/"+reg.Host.ID+"/network", nil).decode(t, &hn)
	for _, path := range []string{
		"/v1/hosts/" + reg.Host.ID + "/guests?wait=3s&version=" + hg.Version,
		"/v1/hosts/" + reg.Host.ID + "/network?wait=3s&version=" + hn.Version,
	} {
		start := time.Now()
		r := e.call(reg.Token, "GET", path, nil)
		if r.status != 200 {
			t.Errorf("GET %s = %d %s, want 200 after the wait", path, r.status, r.body)
		}
		if d := time.Since(start); d < 2500*time.Millisecond {
			t.Errorf("GET %s answered after %s: it did not wait", path, d)
		}
	}
	// The same server cuts off a body that never comes.
	conn, err := net.Dial("tcp", e.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/regions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", e.admin)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := conn.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("a half-sent body held its connection for 30 s despite a 1 s read timeout")
			}
			break
		}
	}
}

// pacedReader yields size bytes in chunks of step, pausing before each: a
// slow but steady uploader.
type pacedReader struct {
	left, step int
	pause      time.Duration
	chunk      []byte
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if len(p.chunk) == 0 {
		time.Sleep(p.pause)
		p.chunk = make([]byte, min(p.step, p.left))
	}
	n := copy(b, p.chunk)
	p.chunk, p.left = p.chunk[n:], p.left-n
	return n, nil
}

// TestImageTransferOutlastsTimeouts: an image upload and a download that
// take several times the server's 1 s read and write timeouts succeed
// while they keep moving, since every MiB buys another timeout.
func TestImageTransferOutlastsTimeouts(t *testing.T) {
	e := newLimitedEnv(t, RateLimits{}, Timeouts{Read: time.Second, Write: time.Second})
	var img types.Image
	e.must(201, "POST", "/v1/images", types.ImageCreate{Name: "big", DiskFormat: "raw"}, &img)
	const size = 16 << 20
	start := time.Now()
	req, err := http.NewRequest("PUT", e.http.URL+"/v1/images/"+img.ID+"/file",
		&pacedReader{left: size, step: 2 << 20, pause: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.admin)
	res, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatalf("slow upload: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("slow upload = %d %s", res.StatusCode, body)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("upload took %s: too fast to prove anything", d)
	}

	req, _ = http.NewRequest("GET", e.http.URL+"/v1/images/"+img.ID+"/file", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	start = time.Now()
	res, err = e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	got, buf := 0, make([]byte, 2<<20)
	for {
		n, err := io.ReadFull(res.Body, buf)
		got += n
		if err != nil {
			break
		}
		time.Sleep(400 * time.Millisecond) // a slow but steady reader
	}
	if got != size {
		t.Fatalf("slow download got %d of %d bytes after %s", got, size, time.Since(start))
	}
}
