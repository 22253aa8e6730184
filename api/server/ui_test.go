package server

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// TestDashboardFiles: the embedded dashboard is served with fixed content
// types and its security headers, / leads to it (no longer a JSON 404),
// its HTML runs no inline script and loads nothing from elsewhere, and its
// script never writes HTML from data.
func TestDashboardFiles(t *testing.T) {
	e := newEnv(t)
	e.http.Client().CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, p := range []string{"/", "/ui"} {
		r := e.call("", "GET", p, nil)
		if r.status != http.StatusFound || r.header.Get("Location") != "/ui/" {
			t.Errorf("GET %s = %d Location %q %s, want 302 to /ui/", p, r.status, r.header.Get("Location"), r.body)
		}
	}
	for _, tc := range []struct{ path, ctype, has string }{
		{"/ui/", "text/html; charset=utf-8", `<script src="app.js" defer></script>`},
		{"/ui/index.html", "text/html; charset=utf-8", `id="filter-rack"`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "'Bearer '"},
		{"/ui/app.css", "text/css; charset=utf-8", ".alert"},
	} {
		r := e.call("", "GET", tc.path, nil)
		got := map[string]string{"status": http.StatusText(r.status), "Content-Type": r.header.Get("Content-Type"),
			"Content-Security-Policy": r.header.Get("Content-Security-Policy"), "X-Content-Type-Options": r.header.Get("X-Content-Type-Options"),
			"X-Frame-Options": r.header.Get("X-Frame-Options"), "Cache-Control": r.header.Get("Cache-Control")}
		want := map[string]string{"status": "OK", "Content-Type": tc.ctype, "Content-Security-Policy": uiCSP,
			"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GET %s (-want +got):\n%s", tc.path, diff)
		}
		if !strings.Contains(string(r.body), tc.has) {
			t.Errorf("GET %s lacks %q", tc.path, tc.has)
		}
		if etag := r.header.Get("ETag"); etag == "" {
			t.Errorf("GET %s has no ETag", tc.path)
		} else if r2 := e.call("", "GET", tc.path, nil, "If-None-Match", etag); r2.status != http.StatusNotModified || len(r2.body) != 0 {
			t.Errorf("GET %s with If-None-Match %s = %d (%d bytes), want 304", tc.path, etag, r2.status, len(r2.body))
		}
	}
	for _, want := range []string{"script-src 'self'", "connect-src 'self'", "default-src 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(uiCSP, want) {
			t.Errorf("CSP %q lacks %q", uiCSP, want)
		}
	}
	if strings.Contains(uiCSP, "unsafe-inline") || strings.Contains(uiCSP, "unsafe-eval") {
		t.Errorf("CSP %q allows inline or eval'd script", uiCSP)
	}
	if r := e.call("", "GET", "/ui/nope.js", nil); r.status != http.StatusNotFound || r.apiErr(t).Code != types.CodeNotFound {
		t.Errorf("GET /ui/nope.js = %d %s, want 404", r.status, r.body)
	}
	assets := loadUI()
	html := string(assets["index.html"].body)
	if m := regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]+</script>|\son[a-z]+=|style=`).FindString(html); m != "" {
		t.Errorf("index.html has inline script or style: %q", m)
	}
	for name, a := range assets {
		if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/`).FindString(string(a.body)); m != "" {
			t.Errorf("%s loads something from elsewhere: %q", name, m)
		}
	}
	js := string(assets["app.js"].body)
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "localStorage", "?token=", "&token="} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}

// TestListETag: a list answers with a weak ETag of its contents, and 304
// to If-None-Match until it changes: the dashboard's polls cost no body.
func TestListETag(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	r := e.must(200, "GET", "/v1/servers", nil, nil)
	etag := r.header.Get("ETag")
	if !strings.HasPrefix(etag, `W/"`) {
		t.Fatalf("list ETag = %q, want a weak one", etag)
	}
	if r := e.call(e.admin, "GET", "/v1/servers", nil, "If-None-Match", etag); r.status != http.StatusNotModified || len(r.body) != 0 {
		t.Errorf("unchanged list with If-None-Match = %d %s, want 304", r.status, r.body)
	}
	e.must(201, "POST", "/v1/servers", c.server("web-1"), nil)
	r = e.call(e.admin, "GET", "/v1/servers", nil, "If-None-Match", etag)
	if r.status != http.StatusOK || r.header.Get("ETag") == etag || !strings.Contains(string(r.body), "web-1") {
		t.Errorf("changed list with the old ETag = %d ETag %s %s, want 200 with the new server", r.status, r.header.Get("ETag"), r.body)
	}
}

// TestServerEvents: a server's events are its audit entries, readable by
// its project's members; another project's server is a 404.
func TestServerEvents(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	var srv types.Server
	e.must(201, "POST", "/v1/servers", c.server("web-1"), &srv)
	e.must(200, "PATCH", "/v1/servers/"+srv.ID, map[string]any{"desired_state": "stopped"}, nil)
	member := e.token(types.RoleMember, c.project.ID)
	var l types.List[types.AuditEntry]
	r := e.call(member, "GET", "/v1/servers/"+srv.ID+"/events", nil)
	if r.status != 200 {
		t.Fatalf("member reads its server's events: %d %s", r.status, r.body)
	}
	r.decode(t, &l)
	var got []string
	for _, a := range l.Items {
		if a.ResourceID != srv.ID {
			t.Errorf("event of another object: %+v", a)
		}
		got = append(got, a.Method+" "+a.Path)
	}
	if diff := cmp.Diff([]string{"POST /v1/servers", "PATCH /v1/servers/" + srv.ID}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	e.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "other"}, nil)
	outsider := e.token(types.RoleMember, "other")
	theirs := e.call(outsider, "GET", "/v1/servers/"+srv.ID+"/events", nil)
	missing := e.call(outsider, "GET", "/v1/servers/"+srv.ID[:len(srv.ID)-6]+"ffffff/events", nil)
	if theirs.status != 404 || missing.status != 404 || theirs.apiErr(t).Code != missing.apiErr(t).Code {
		t.Errorf("another project's server = %d %s, a missing one = %d %s; want the same 404", theirs.status, theirs.body, missing.status, missing.body)
	}
}

// TestAlerts: stale heartbeats, the failsafe margin and unknown guests are
// reported per host with corrald's own limits; members may not read them.
func TestAlerts(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue() // hv1.dc1: plenty of free memory
	low := e.addHost("hv2.dc1", "rack1", 8, 4096)
	e.must(204, "POST", "/v1/hosts/"+low.ID+"/heartbeat", types.Heartbeat{Usage: types.Usage{MemFreeMiB: 1000}}, nil)
	e.must(200, "POST", "/v1/hosts/"+c.host.ID+"/guests/status", types.GuestReport{Guests: []types.GuestStatus{},
		Unknown: &[]types.UnknownGuest{{ServerID: "srv-gone", Name: "ghost", VCPUs: 1, RAMMiB: 256}}}, nil)
	kinds := func() []string {
		var l types.AlertList
		e.must(200, "GET", "/v1/alerts", nil, &l)
		var out []string
		for _, a := range l.Items {
			out = append(out, a.Name+" "+a.Kind)
		}
		return out
	}
	if diff := cmp.Diff([]string{"hv1.dc1 unknown_guests", "hv2.dc1 failsafe_margin"}, kinds()); diff != "" {
		t.Errorf("alerts (-want +got):\n%s", diff)
	}
	e.advance(31 * time.Second)
	if diff := cmp.Diff([]string{"hv1.dc1 host_stale", "hv1.dc1 unknown_guests", "hv2.dc1 host_stale", "hv2.dc1 failsafe_margin"}, kinds()); diff != "" {
		t.Errorf("alerts after 31 s without heartbeats (-want +got):\n%s", diff)
	}
	if r := e.call(e.token(types.RoleMember, c.project.ID), "GET", "/v1/alerts", nil); r.status != 403 {
		t.Errorf("member reads alerts: %d %s", r.status, r.body)
	}
}
