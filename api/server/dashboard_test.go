package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
)

// TestDashboardChromium (issue 15, acceptance 1): Debian's headless
// Chromium, driven through the DevTools protocol, logs into the dashboard
// of a real corrald API and store with a token, filters the servers by
// rack and finds a VM and a bare-metal server side by side (with the BMC
// alert of the node under the latter), then sees a VM's state change made
// through the API appear without a reload, and opens the rack view and the
// server page. Screenshots go to $CORRAL_TEST_ARTIFACTS/dashboard (or a
// temporary directory) and their path is logged.
func TestDashboardChromium(t *testing.T) {
	chromium := testenv.Require(t, "CORRAL_TEST_CHROMIUM", "headless Chromium (Debian's chromium package)")
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("CORRAL_TEST_CHROMIUM=%s: %v", chromium, err)
	}
	artifacts := os.Getenv("CORRAL_TEST_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	artifacts = filepath.Join(artifacts, "dashboard")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard screenshots in %s", artifacts)

	// The fleet: rack1 has host hv1 (aggregate gen10) and node bm01, rack2
	// has host hv2. vm-1 and metal-1 run in rack1, vm-2 in rack2.
	ne := newNodeEnv(t)
	e := ne.env
	var rack1, rack2 types.Zone
	e.must(200, "GET", "/v1/zones/rack1", nil, &rack1)
	e.must(200, "GET", "/v1/zones/rack2", nil, &rack2)
	e.must(201, "POST", "/v1/aggregates", map[string]any{"name": "gen10"}, nil)
	e.must(201, "POST", "/v1/flavors", types.FlavorCreate{Name: "m1", VCPUs: 2, RAMMiB: 2048, DiskGiB: 10}, nil)
	hv1 := e.addHost("hv1", "rack1", 32, 131072, "gen10")
	e.addHost("hv2", "rack2", 32, 131072)
	node := ne.available("bm01", 9701)
	vm := func(name, zone string) types.Server {
		var s types.Server
		e.must(201, "POST", "/v1/servers", types.ServerCreate{Name: name, Kind: types.KindVM, Project: "p", Flavor: "m1", Image: "os", Zone: zone}, &s)
		return s
	}
	vm1, vm2 := vm("vm-1", "rack1"), vm("vm-2", "rack2")
	var metal types.Server
	e.must(201, "POST", "/v1/servers", types.ServerCreate{Name: "metal-1", Kind: types.KindBaremetal, Project: "p", Flavor: "metal", Image: "os",
		Zone: "rack1"}, &metal)
	var grp types.Group
	e.must(201, "POST", "/v1/groups", types.GroupCreate{Name: "kafka", Role: types.GroupBroker, Project: "p",
		GroupSpec: types.GroupSpec{Members: 1, Flavor: "m1", Image: "os", Zones: []string{"rack1"}}}, &grp)
	// The node's BMC stops answering: its server shows the alert.
	if _, err := e.store.RecordNodePower(context.Background(), node.ID, types.PowerUnknown, "no answer after 3 tries", "test", "test"); err != nil {
		t.Fatal(err)
	}
	report := func(state string) {
		e.must(200, "POST", "/v1/hosts/"+hv1.ID+"/guests/status", types.GuestReport{Guests: []types.GuestStatus{
			{ServerID: vm1.ID, State: state, Observed: types.GuestObserved{Domain: "corral-" + vm1.ID, DomainType: "qemu"}}}}, nil)
	}
	report(types.GuestActive)

	// The browser: one per test, in a profile of its own, removed at the
	// end without failing the test if a dying child process still writes
	// there (t.TempDir would).
	profile, err := os.MkdirTemp("", "corral-dash-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(profile) })
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox, // as root
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1500, 1000),
		chromedp.WSURLReadTimeout(2*time.Minute), // a loaded two-core machine
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	var mu sync.Mutex
	var problems []string
	messages := chromedp.Console(ctx) // subscribes now: nothing the page says is lost
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 90*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			shot(t, ctx, artifacts, "failed.png")
			t.Fatalf("%s: %v", what, err)
		}
	}
	step("open the dashboard", chromedp.Navigate(e.http.URL+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	if url, err := chromedp.Run(ctx, chromedp.Location()); err != nil || url != e.http.URL+"/ui/" {
		t.Errorf("/ led to %q (%v), want %s/ui/", url, err, e.http.URL)
	}
	shot(t, ctx, artifacts, "1-login.png")
	step("log in", chromedp.SendKeys(chromedp.ID("token"), e.admin), chromedp.Click(chromedp.ID("login-btn")),
		chromedp.WaitVisible(chromedp.CSS(`#servers tbody tr[data-kind="baremetal"]`)))
	// A mark that a reload would wipe.
	step("mark the page", chromedp.Evaluate[chromedp.Void](`window.corralTestMark = 42`))
	if rs := rowsOf(t, ctx); len(rs) != 4 {
		t.Errorf("all servers: %+v, want vm-1, vm-2, metal-1 and the broker", rs)
	}
	shot(t, ctx, artifacts, "2-servers.png")

	step("filter by rack1", chromedp.SetValue(chromedp.ID("filter-rack"), rack1.ID),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('filter-rack').dispatchEvent(new Event('change'))`))
	rs := waitRows(t, ctx, artifacts, "rack1 holds vm-1 (active), metal-1 and the broker, not vm-2", func(rs []dashRow) bool {
		return len(rs) == 3 && find(rs, "vm-1").State == "active" && find(rs, "metal-1").Kind == "baremetal"
	})
	shot(t, ctx, artifacts, "3-rack1.png")
	v, m := find(rs, "vm-1"), find(rs, "metal-1")
	if v.Kind != "vm" || v.Rack != "rack1" || v.Aggregate != "gen10" || v.RunsOn != "hv1" {
		t.Errorf("vm-1 row = %+v", v)
	}
	if m.Rack != "rack1" || m.RunsOn != "bm01" || !slices.Contains(m.Alerts, types.AlertBMCUnreachable) {
		t.Errorf("metal-1 row = %+v, want on bm01 in rack1 with the BMC alert", m)
	}
	if b := find(rs, grp.Members[0].Name); b.Group != "broker: kafka" {
		t.Errorf("broker row = %+v, want group broker: kafka", b)
	}
	if r := find(rs, vm2.Name); r.Name != "" {
		t.Errorf("vm-2 of rack2 is shown under rack1: %+v", r)
	}

	// A change made through the API shows without a reload.
	e.must(200, "PATCH", "/v1/servers/"+vm1.ID, map[string]any{"desired_state": "stopped"}, nil)
	report(types.GuestStopped)
	waitRows(t, ctx, artifacts, "vm-1 shows stopped", func(rs []dashRow) bool { return find(rs, "vm-1").State == "stopped" })
	if mark, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.corralTestMark || 0`)); err != nil || mark != 42 {
		t.Errorf("the page was reloaded (mark %d, %v)", mark, err)
	}
	shot(t, ctx, artifacts, "4-rack1-stopped.png")
	// The polls are cheap: with nothing changing, the next poll of the
	// list is a bodiless 304.
	for deadline := time.Now().Add(60 * time.Second); requestCount(t, e, "/v1/servers", "304") == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no GET /v1/servers was answered 304 within 60 s: the page does not poll with If-None-Match")
		}
	}

	step("rack view", chromedp.Click(chromedp.ID("nav-racks")),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#racks .rack-card[data-id=%q] tr[data-id=%q]`, rack1.ID, node.ID))))
	text, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(fmt.Sprintf(`.rack-card[data-id=%q]`, rack1.ID))))
	if err != nil || !strings.Contains(text, "hv1") || !strings.Contains(text, "bm01") || strings.Contains(text, "hv2") {
		t.Errorf("rack1 view = %q (%v), want hv1 and bm01 only", text, err)
	}
	shot(t, ctx, artifacts, "5-racks.png")

	step("server page", chromedp.Navigate(e.http.URL+"/ui/#server/"+vm1.ID),
		chromedp.Poll[chromedp.Void](`document.getElementById('console').textContent !== '' && `+
			`document.querySelectorAll('#server-events tbody tr').length >= 2`))
	details, _ := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("server-details")))
	events, _ := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("server-events")))
	console, _ := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("console")))
	if !strings.Contains(details, vm1.ID) || !strings.Contains(details, "stopped") || !strings.Contains(events, "PATCH /v1/servers/"+vm1.ID) {
		t.Errorf("server page: details %q, events %q", details, events)
	}
	if console == "" {
		t.Errorf("server page: empty console box")
	}
	shot(t, ctx, artifacts, "6-server.png")

	step("log out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("token")))
	if tok, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem('corral.token') || ''`)); err != nil || tok != "" {
		t.Errorf("token kept after log out: %q %v", tok, err)
	}
	// A member sees its project's servers; hosts, nodes and alerts are
	// refused to it (403), and the page says so instead of failing.
	member := e.token(types.RoleMember, "p")
	step("log in as a member", chromedp.Navigate(e.http.URL+"/ui/#servers"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), member), chromedp.Click(chromedp.ID("login-btn")),
		chromedp.WaitVisible(chromedp.ID("infra-note")), chromedp.SetValue(chromedp.ID("filter-rack"), ""),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('filter-rack').dispatchEvent(new Event('change'))`))
	waitRows(t, ctx, artifacts, "the member sees its four servers", func(rs []dashRow) bool { return len(rs) == 4 })
	status, _ := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("status")))
	if !strings.HasPrefix(status, "updated") {
		t.Errorf("member's status line = %q, want updated", status)
	}
	shot(t, ctx, artifacts, "7-member.png")

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("browser console: %s", p)
	}
}

// dashRow is one row of the dashboard's server list.
type dashRow struct {
	Name, Kind, Group, Aggregate, Rack, RunsOn, State string
	Alerts                                            []string
}

const rowsJS = `Array.from(document.querySelectorAll('#servers tbody tr')).map((tr) => ({
	Name: tr.querySelector('.name').textContent, Kind: tr.dataset.kind, Group: tr.querySelector('.group').textContent,
	Aggregate: tr.querySelector('.aggregate').textContent, Rack: tr.querySelector('.rack').textContent,
	RunsOn: tr.querySelector('.runs-on').textContent, State: tr.querySelector('.state').textContent,
	Alerts: Array.from(tr.querySelectorAll('.alert')).map((a) => a.dataset.kind)}))`

func rowsOf(t *testing.T, ctx context.Context) []dashRow {
	t.Helper()
	rs, err := chromedp.Run(ctx, chromedp.Evaluate[[]dashRow](rowsJS))
	if err != nil {
		t.Fatalf("read the server list: %v", err)
	}
	return rs
}

// waitRows waits (generously: a loaded machine) until the server list
// satisfies ok, and returns it.
func waitRows(t *testing.T, ctx context.Context, artifacts, what string, ok func([]dashRow) bool) []dashRow {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		rs := rowsOf(t, ctx)
		if ok(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			shot(t, ctx, artifacts, "failed.png")
			b, _ := json.Marshal(rs)
			t.Fatalf("%s: not within 90 s; the list shows %s", what, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func find(rs []dashRow, name string) dashRow {
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	return dashRow{}
}

// shot writes a screenshot of the whole page into dir.
func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name), png, 0o644)
	}
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
	}
}

// requestCount reads corral_http_requests_total for GETs of route answered
// with status.
func requestCount(t *testing.T, e *env, route, status string) float64 {
	t.Helper()
	mfs, err := e.srv.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "corral_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["method"] == "GET" && l["route"] == route && l["status"] == status {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
