package server

import (
	"path/filepath"

	"context"
	"encoding/json"
	"fmt"
	"github.com/corral-cloud/corral/api/store"
	"github.com/jmoiron/sqlx"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// TestCRUD drives create, show, list, update and delete of every resource
// over real HTTP.
func TestCRUD(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	var srv types.Server
	e.must(201, "POST", "/v1/servers", c.server("web-1"), &srv)
	for _, tc := range []struct {
		path   string
		id     string
		patch  any
		check  func(t *testing.T, body map[string]any)
		delete bool
	}{
		{"/v1/regions", c.region.ID, map[string]any{"description": "Frankfurt"}, field("description", "Frankfurt"), false},
		{"/v1/zones", c.zone.ID, map[string]any{"description": "row 4"}, field("description", "row 4"), false},
		{"/v1/aggregates", c.agg.ID, map[string]any{"cpu_allocation_ratio": 4.0, "weigher": "pack"}, field("weigher", "pack"), false},
		{"/v1/flavors", c.flavor.ID, map[string]any{"description": "small"}, field("description", "small"), false},
		{"/v1/images", c.image.ID, map[string]any{"min_disk_gib": 1}, field("min_disk_gib", 1.0), false},
		{"/v1/projects", c.project.ID, map[string]any{"description": "brokers"}, field("description", "brokers"), false},
		{"/v1/servers", srv.ID, map[string]any{"desired_state": "stopped"}, field("desired_state", "stopped"), true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			var shown map[string]any
			r := e.must(200, "GET", tc.path+"/"+tc.id, nil, &shown)
			rev, _ := shown["revision"].(float64)
			if r.header.Get("ETag") != fmt.Sprintf(`"%d"`, int(rev)) || rev < 1 {
				t.Errorf("ETag %q revision %v", r.header.Get("ETag"), shown["revision"])
			}
			var list types.List[map[string]any]
			e.must(200, "GET", tc.path, nil, &list)
			if len(list.Items) != 1 || list.Items[0]["id"] != tc.id {
				t.Errorf("list = %v, want just %s", list.Items, tc.id)
			}
			var updated map[string]any
			e.must(200, "PATCH", tc.path+"/"+tc.id, tc.patch, &updated)
			tc.check(t, updated)
			if updated["revision"] != rev+1 {
				t.Errorf("revision after update = %v, want %v", updated["revision"], rev+1)
			}
			// A stale If-Match is refused and changes nothing.
			r = e.call(e.admin, "PATCH", tc.path+"/"+tc.id, tc.patch, "If-Match", fmt.Sprintf(`"%d"`, int(rev)))
			if r.status != 412 || r.apiErr(t).Code != types.CodePreconditionFailed {
				t.Errorf("stale If-Match = %d %s, want 412 precondition_failed", r.status, r.body)
			}
			if tc.delete {
				e.must(204, "DELETE", tc.path+"/"+tc.id, nil, nil)
				if r := e.call(e.admin, "GET", tc.path+"/"+tc.id, nil); r.status != 404 || r.apiErr(t).Code != types.CodeNotFound {
					t.Errorf("get after delete = %d %s", r.status, r.body)
				}
			}
		})
	}
	// With the server gone, the catalogue deletes in dependency order.
	for _, p := range []string{"/v1/flavors/" + c.flavor.ID, "/v1/images/" + c.image.ID, "/v1/projects/" + c.project.ID,
		"/v1/hosts/" + c.host.ID, "/v1/aggregates/" + c.agg.ID, "/v1/zones/" + c.zone.ID, "/v1/regions/" + c.region.ID} {
		e.must(204, "DELETE", p, nil, nil)
	}
	if got := e.counts(); got["regions"]+got["flavors"]+got["servers"] != 0 {
		t.Errorf("objects left after deleting all: %v", got)
	}
}

func field(name string, want any) func(*testing.T, map[string]any) {
	return func(t *testing.T, body map[string]any) {
		t.Helper()
		if body[name] != want {
			t.Errorf("%s = %v, want %v", name, body[name], want)
		}
	}
}

// TestPaginationAndFilters pages through servers and filters them.
func TestPaginationAndFilters(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	var other types.Project
	e.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "flink"}, &other)
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack2", Region: "dc1"}, nil)
	e.addHost("hv2.dc1", "rack2", 64, 262144)
	var want []string
	for i := 0; i < 23; i++ {
		in := c.server(fmt.Sprintf("s%02d", i))
		if i%3 == 0 {
			in.Project = "flink" // by name
		}
		in.Zone = "rack2"
		if i%2 == 0 {
			in.Zone = "rack1"
		}
		var s types.Server
		e.must(201, "POST", "/v1/servers", in, &s)
		want = append(want, s.ID)
	}
	var got []string
	next, pages := "", 0
	for {
		q := url.Values{"limit": {"5"}}
		if next != "" {
			q.Set("cursor", next)
		}
		var l types.List[types.Server]
		e.must(200, "GET", "/v1/servers?"+q.Encode(), nil, &l)
		pages++
		for _, s := range l.Items {
			got = append(got, s.ID)
		}
		if next = l.NextCursor; next == "" {
			break
		}
	}
	if diff := cmp.Diff(want, got); diff != "" || pages != 5 {
		t.Errorf("paged in %d pages (want 5), IDs (-want +got):\n%s", pages, diff)
	}
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"project=flink", 8},
		{"project=" + c.project.ID, 15},
		{"zone=rack1", 12},
		{"zone=rack2", 11},
		{"region=dc1", 23}, // a zone implies its region
		{"zone=rack1&project=flink", 4},
		{"kind=baremetal", 0},
		{"state=scheduled", 23},
		{"name=s07", 1},
	} {
		var l types.List[types.Server]
		e.must(200, "GET", "/v1/servers?limit=1000&"+tc.query, nil, &l)
		if len(l.Items) != tc.want {
			t.Errorf("?%s gave %d servers, want %d", tc.query, len(l.Items), tc.want)
		}
	}
	for _, tc := range []struct{ query, code string }{
		{"limit=0", types.CodeInvalidArgument},
		{"limit=1001", types.CodeInvalidArgument},
		{"limit=ten", types.CodeInvalidArgument},
		{"cursor=***", types.CodeInvalidArgument},
		{"cursor=bm9wZQ", types.CodeInvalidArgument},
		{"colour=red", types.CodeInvalidArgument},
		{"zone=no-such-rack", types.CodeInvalidReference},
	} {
		r := e.call(e.admin, "GET", "/v1/servers?"+tc.query, nil)
		if r.status != 400 || r.apiErr(t).Code != tc.code {
			t.Errorf("?%s = %d %s, want 400 %s", tc.query, r.status, r.body, tc.code)
		}
	}
}

// TestIdempotency: a retried POST with the same Idempotency-Key gets the
// first answer and creates nothing; a different body with the same key is
// refused.
func TestIdempotency(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	first := e.call(e.admin, "POST", "/v1/servers", c.server("kafka-1"), "Idempotency-Key", "req-42")
	if first.status != 201 {
		t.Fatalf("first create = %d %s", first.status, first.body)
	}
	again := e.call(e.admin, "POST", "/v1/servers", c.server("kafka-1"), "Idempotency-Key", "req-42")
	if again.header.Get("Location") == "" || again.header.Get("Location") != first.header.Get("Location") ||
		again.header.Get("ETag") != first.header.Get("ETag") {
		t.Errorf("replay headers Location %q ETag %q, want the first answer's %q %q", again.header.Get("Location"),
			again.header.Get("ETag"), first.header.Get("Location"), first.header.Get("ETag"))
	}
	if again.status != 201 || string(again.body) != string(first.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay = %d %s (replayed=%q), want the first answer", again.status, again.body, again.header.Get("Idempotent-Replayed"))
	}
	if n := e.counts()["servers"]; n != 1 {
		t.Errorf("servers after replay = %d, want 1", n)
	}
	other := e.call(e.admin, "POST", "/v1/servers", c.server("kafka-2"), "Idempotency-Key", "req-42")
	if other.status != 422 || other.apiErr(t).Code != types.CodeIdempotencyKeyReused {
		t.Errorf("reused key = %d %s, want 422 idempotency_key_reused", other.status, other.body)
	}
	// Concurrent retries of one request create exactly one server.
	var wg sync.WaitGroup
	statuses := make(chan int, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- e.call(e.admin, "POST", "/v1/servers", c.server("kafka-3"), "Idempotency-Key", "req-43").status
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		// The second waits for the first's commit and replays its answer.
		if s != 201 {
			t.Errorf("concurrent retry answered %d, want 201 (the first or its replay)", s)
		}
	}
	var l types.List[types.Server]
	e.must(200, "GET", "/v1/servers?name=kafka-3", nil, &l)
	if len(l.Items) != 1 {
		t.Errorf("concurrent retries created %d servers, want 1", len(l.Items))
	}
	// A failed request is not remembered: after fixing the cause, the same
	// key works. (A 409 may succeed later; the key is released.)
	bad := c.server("kafka-4")
	bad.Image = "not-uploaded"
	var img types.Image
	e.must(201, "POST", "/v1/images", types.ImageCreate{Name: "not-uploaded", DiskFormat: "raw"}, &img)
	if r := e.call(e.admin, "POST", "/v1/servers", bad, "Idempotency-Key", "req-44"); r.status != 409 {
		t.Fatalf("server on queued image = %d %s, want 409", r.status, r.body)
	}
	e.must(200, "PUT", "/v1/images/"+img.ID+"/file", "data", nil)
	if r := e.call(e.admin, "POST", "/v1/servers", bad, "Idempotency-Key", "req-44"); r.status != 201 {
		t.Errorf("retry after the conflict was fixed = %d %s, want 201", r.status, r.body)
	}
}

// TestBadInput: each kind of bad request gets its documented 4xx code and
// changes nothing.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	long := strings.Repeat("a", 64)
	srv := func(mod func(m map[string]any)) map[string]any {
		m := map[string]any{"name": "ok", "kind": "vm", "project": c.project.ID, "flavor": c.flavor.ID, "image": c.image.ID}
		mod(m)
		return m
	}
	for _, tc := range []struct {
		name        string
		path        string
		body        any
		ctype       string
		status      int
		code, field string
	}{
		{"malformed JSON", "/v1/flavors", `{"name": "x",`, "", 400, types.CodeInvalidJSON, ""},
		{"not an object", "/v1/flavors", `[1,2]`, "", 400, types.CodeInvalidJSON, ""},
		{"empty body", "/v1/flavors", ``, "", 400, types.CodeInvalidJSON, ""},
		{"trailing data", "/v1/regions", `{"name":"a"} {"name":"b"}`, "", 400, types.CodeInvalidJSON, ""},
		{"unknown field", "/v1/flavors", `{"name":"x","vcpus":1,"ram_mib":1,"disk_gib":1,"colour":"red"}`, "", 400, types.CodeUnknownField, "colour"},
		{"wrong type", "/v1/flavors", `{"name":"x","vcpus":"two","ram_mib":1,"disk_gib":1}`, "", 400, types.CodeInvalidJSON, "vcpus"},
		{"negative size", "/v1/flavors", types.FlavorCreate{Name: "neg", VCPUs: 1, RAMMiB: -512, DiskGiB: 1}, "", 400, types.CodeInvalidArgument, "ram_mib"},
		{"zero vcpus", "/v1/flavors", types.FlavorCreate{Name: "zero", RAMMiB: 512, DiskGiB: 1}, "", 400, types.CodeInvalidArgument, "vcpus"},
		{"negative qos", "/v1/flavors", types.FlavorCreate{Name: "q", VCPUs: 1, RAMMiB: 1, QoS: types.QoS{DiskIOPS: -1}}, "", 400, types.CodeInvalidArgument, "qos.disk_iops"},
		{"bad kind", "/v1/flavors", types.FlavorCreate{Name: "k", Kind: "container", VCPUs: 1, RAMMiB: 1}, "", 400, types.CodeInvalidArgument, "kind"},
		{"over-long name", "/v1/regions", types.RegionCreate{Name: long}, "", 400, types.CodeInvalidArgument, "name"},
		{"bad name characters", "/v1/regions", types.RegionCreate{Name: "dc 1; drop"}, "", 400, types.CodeInvalidArgument, "name"},
		{"missing name", "/v1/projects", types.ProjectCreate{}, "", 400, types.CodeInvalidArgument, "name"},
		{"duplicate name", "/v1/flavors", types.FlavorCreate{Name: "m1.small", VCPUs: 1, RAMMiB: 1}, "", 409, types.CodeAlreadyExists, ""},
		{"ratio zero", "/v1/aggregates", map[string]any{"name": "a", "cpu_allocation_ratio": 0}, "", 400, types.CodeInvalidArgument, "cpu_allocation_ratio"},
		{"bad trait", "/v1/aggregates", map[string]any{"name": "a", "traits": []string{"NVMe!"}}, "", 400, types.CodeInvalidArgument, "traits"},
		{"zone in missing region", "/v1/zones", types.ZoneCreate{Name: "r9", Region: "nowhere"}, "", 400, types.CodeInvalidReference, "region"},
		{"server missing flavor", "/v1/servers", srv(func(m map[string]any) { m["flavor"] = "m9.huge" }), "", 400, types.CodeInvalidReference, "flavor"},
		{"server missing image", "/v1/servers", srv(func(m map[string]any) { m["image"] = "img-000000000000000000000000" }), "", 400, types.CodeInvalidReference, "image"},
		{"server missing project", "/v1/servers", srv(func(m map[string]any) { delete(m, "project") }), "", 400, types.CodeInvalidArgument, "project"},
		{"server unknown project", "/v1/servers", srv(func(m map[string]any) { m["project"] = "ghost" }), "", 400, types.CodeInvalidReference, "project"},
		{"server wrong kind", "/v1/servers", srv(func(m map[string]any) { m["kind"] = "baremetal" }), "", 400, types.CodeInvalidArgument, "flavor"},
		{"server zone not in region", "/v1/servers", srv(func(m map[string]any) { m["region"] = c.region.ID; m["zone"] = "zone-x" }), "", 400, types.CodeInvalidReference, "zone"},
		{"server bad desired state", "/v1/servers", srv(func(m map[string]any) { m["desired_state"] = "dancing" }), "", 400, types.CodeInvalidArgument, "desired_state"},
		{"body too large", "/v1/regions", `{"name":"big","description":"` + strings.Repeat("x", 70<<10) + `"}`, "", 413, types.CodeBodyTooLarge, ""},
		{"wrong content type", "/v1/regions", `name=dc9`, "application/x-www-form-urlencoded", 415, types.CodeUnsupportedMediaType, ""},
		{"token bad role", "/v1/tokens", types.TokenCreate{Name: "t", Role: "root"}, "", 400, types.CodeInvalidArgument, "role"},
		{"member token without project", "/v1/tokens", types.TokenCreate{Name: "t", Role: "member"}, "", 400, types.CodeInvalidArgument, "project"},
		{"no such endpoint", "/v1/widgets", `{}`, "", 404, types.CodeNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.counts()
			hdr := []string{}
			if tc.ctype != "" {
				hdr = append(hdr, "Content-Type", tc.ctype)
			}
			r := e.call(e.admin, "POST", tc.path, tc.body, hdr...)
			if r.status != tc.status {
				t.Fatalf("status = %d %s, want %d", r.status, r.body, tc.status)
			}
			ae := r.apiErr(t)
			if ae.Code != tc.code || ae.Message == "" {
				t.Errorf("error = %+v, want code %s and a message", ae, tc.code)
			}
			if tc.field != "" && ae.Details["field"] != tc.field {
				t.Errorf("details.field = %v, want %q (error %+v)", ae.Details["field"], tc.field, ae)
			}
			if diff := cmp.Diff(before, e.counts()); diff != "" {
				t.Errorf("refused request changed the database (-before +after):\n%s", diff)
			}
		})
	}
}

// TestFailsafeDeletes: deleting what is in use is refused with 409 naming
// the users, and nothing is deleted.
func TestFailsafeDeletes(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	var srv types.Server
	in := c.server("broker-7")
	in.Zone, in.Aggregate = "rack1", "gen10"
	e.must(201, "POST", "/v1/servers", in, &srv)
	if srv.HostID != c.host.ID || srv.State != types.ServerScheduled {
		t.Fatalf("server placed on %q in state %s, want %s scheduled", srv.HostID, srv.State, c.host.ID)
	}
	// The host cannot move to another rack under its server.
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack2", Region: "dc1"}, nil)
	if r := e.call(e.admin, "POST", "/v1/hosts/register", types.HostRegister{Name: "hv1.dc1", Region: "dc1", Zone: "rack2",
		Inventory: types.Inventory{CPUs: 64, RAMMiB: 262144}}); r.status != 409 || r.apiErr(t).Code != types.CodeHostHasServers {
		t.Errorf("moving a host with servers = %d %s, want 409 host_has_servers", r.status, r.body)
	}
	e.must(204, "DELETE", "/v1/zones/rack2", nil, nil)
	for _, tc := range []struct {
		path, code string
		users      []string
	}{
		{"/v1/flavors/" + c.flavor.ID, types.CodeFlavorInUse, []string{"server broker-7"}},
		{"/v1/images/" + c.image.ID, types.CodeImageInUse, []string{"server broker-7"}},
		{"/v1/zones/" + c.zone.ID, types.CodeZoneInUse, []string{"host hv1.dc1", "server broker-7"}},
		{"/v1/aggregates/" + c.agg.ID, types.CodeAggregateInUse, []string{"host hv1.dc1", "server broker-7"}},
		{"/v1/hosts/" + c.host.ID, types.CodeHostHasServers, []string{"server broker-7"}},
		{"/v1/projects/" + c.project.ID, types.CodeProjectInUse, []string{"server broker-7"}},
		{"/v1/regions/" + c.region.ID, types.CodeRegionInUse, []string{"zone rack1", "host hv1.dc1", "server broker-7"}},
	} {
		t.Run(tc.code, func(t *testing.T) {
			before := e.counts()
			r := e.call(e.admin, "DELETE", tc.path, nil)
			if r.status != 409 {
				t.Fatalf("delete = %d %s, want 409", r.status, r.body)
			}
			ae := r.apiErr(t)
			if ae.Code != tc.code {
				t.Errorf("code = %s, want %s", ae.Code, tc.code)
			}
			var users []string
			for _, u := range ae.Details["used_by"].([]any) {
				m := u.(map[string]any)
				users = append(users, fmt.Sprint(m["kind"], " ", m["name"]))
			}
			if diff := cmp.Diff(tc.users, users); diff != "" {
				t.Errorf("used_by (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, e.counts()); diff != "" {
				t.Errorf("refused delete changed the database:\n%s", diff)
			}
		})
	}
}

// TestAuth: tokens, roles and project scoping.
func TestAuth(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	var other types.Project
	e.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "flink"}, &other)
	member := e.token(types.RoleMember, c.project.ID)
	otherMember := e.token(types.RoleMember, other.ID)
	reader := e.token(types.RoleReader, "")
	projectReader := e.token(types.RoleReader, c.project.ID)
	var mine, theirs types.Server
	if r := e.call(member, "POST", "/v1/servers", c.server("mine")); r.status != 201 {
		t.Fatalf("member create = %d %s", r.status, r.body)
	} else {
		r.decode(t, &mine)
	}
	in := c.server("theirs")
	in.Project = ""
	if r := e.call(otherMember, "POST", "/v1/servers", in); r.status != 201 {
		t.Fatalf("other member create = %d %s", r.status, r.body)
	} else {
		r.decode(t, &theirs)
	}
	if theirs.ProjectID != other.ID {
		t.Errorf("member's server went to project %s, want its own %s", theirs.ProjectID, other.ID)
	}
	var tc types.TokenCreated
	e.must(201, "POST", "/v1/tokens", types.TokenCreate{Name: "short", Role: "reader", ExpiresInSeconds: 60}, &tc)
	short := tc.Secret
	for _, tt := range []struct {
		name, token, method, path string
		body                      any
		status                    int
		code                      string
	}{
		{"no token", "", "GET", "/v1/servers", nil, 401, types.CodeUnauthenticated},
		{"garbage token", "corral_tok-1.nope", "GET", "/v1/servers", nil, 401, types.CodeUnauthenticated},
		{"reader cannot create", reader, "POST", "/v1/servers", c.server("r"), 403, types.CodeForbidden},
		{"reader cannot delete", reader, "DELETE", "/v1/servers/" + mine.ID, nil, 403, types.CodeForbidden},
		{"member cannot create flavors", member, "POST", "/v1/flavors", types.FlavorCreate{Name: "x", VCPUs: 1, RAMMiB: 1}, 403, types.CodeForbidden},
		{"member cannot see hosts", member, "GET", "/v1/hosts", nil, 403, types.CodeForbidden},
		{"member cannot make tokens", member, "POST", "/v1/tokens", types.TokenCreate{Name: "x", Role: "admin"}, 403, types.CodeForbidden},
		{"member cannot see other project's server", member, "GET", "/v1/servers/" + theirs.ID, nil, 404, types.CodeNotFound},
		{"member cannot delete other project's server", member, "DELETE", "/v1/servers/" + theirs.ID, nil, 404, types.CodeNotFound},
		{"member cannot create in other project", member, "POST", "/v1/servers", func() any { s := c.server("x"); s.Project = "flink"; return s }(), 403, types.CodeForbidden},
		{"member cannot see other project", member, "GET", "/v1/projects/" + other.ID, nil, 404, types.CodeNotFound},
		{"member reads own server", member, "GET", "/v1/servers/" + mine.ID, nil, 200, ""},
		{"member reads flavors", member, "GET", "/v1/flavors", nil, 200, ""},
		{"member filters its servers by host name", member, "GET", "/v1/servers?host=hv1.dc1", nil, 200, ""},
		{"reader reads all servers", reader, "GET", "/v1/servers/" + theirs.ID, nil, 200, ""},
		{"reader reads hosts", reader, "GET", "/v1/hosts", nil, 200, ""},
		{"project reader cannot read hosts", projectReader, "GET", "/v1/hosts", nil, 403, types.CodeForbidden},
		{"project reader cannot read the audit log", projectReader, "GET", "/v1/audit", nil, 403, types.CodeForbidden},
		{"project reader cannot see other project's server", projectReader, "GET", "/v1/servers/" + theirs.ID, nil, 404, types.CodeNotFound},
		{"short token works now", short, "GET", "/v1/servers", nil, 200, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := e.call(tt.token, tt.method, tt.path, tt.body)
			if r.status != tt.status {
				t.Fatalf("= %d %s, want %d", r.status, r.body, tt.status)
			}
			if tt.code != "" && r.apiErr(t).Code != tt.code {
				t.Errorf("code = %s, want %s", r.apiErr(t).Code, tt.code)
			}
		})
	}
	// A member lists only its project's servers.
	var l types.List[types.Server]
	e.call(member, "GET", "/v1/servers", nil).decode(t, &l)
	for _, s := range l.Items {
		if s.ProjectID != c.project.ID {
			t.Errorf("member list shows %s of project %s", s.Name, s.ProjectID)
		}
	}
	// Asking for another project's is answered as for a project that
	// does not exist (isolation_test.go checks every such reference).
	if r := e.call(member, "GET", "/v1/servers?project=flink", nil); r.status != 400 || r.apiErr(t).Code != types.CodeInvalidReference ||
		r.apiErr(t).Message != `project: project "flink": not found` {
		t.Errorf("member list of another project = %d %s, want 400 invalid_reference", r.status, r.body)
	}
	// Two minutes later the short token has expired: 401 token_expired.
	e.advance(2 * time.Minute)
	r := e.call(short, "GET", "/v1/servers", nil)
	if r.status != 401 || r.apiErr(t).Code != types.CodeTokenExpired {
		t.Errorf("expired token = %d %s, want 401 token_expired", r.status, r.body)
	}
	// The purge (grace 0 here) removes it; others stay.
	e.srv.MaintainOnce(context.Background())
	var toks types.List[types.Token]
	e.must(200, "GET", "/v1/tokens?limit=1000", nil, &toks)
	for _, tok := range toks.Items {
		if tok.Name == "short" {
			t.Errorf("expired token %s not purged", tok.ID)
		}
	}
	if len(toks.Items) != 6 {
		t.Errorf("tokens after purge = %d, want 6 (admin, 2 members, 2 readers, hv1's agent)", len(toks.Items))
	}
	if r := e.call(short, "GET", "/v1/servers", nil); r.status != 401 {
		t.Errorf("purged token = %d, want 401", r.status)
	}
	// Every mutating call, refused ones included, is in the audit log.
	var audit types.List[types.AuditEntry]
	e.must(200, "GET", "/v1/audit?limit=1000&method=DELETE", nil, &audit)
	var refused int
	for _, a := range audit.Items {
		if a.Status == 403 || a.Status == 404 {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("audit has %d refused DELETEs, want 2: %+v", refused, audit.Items)
	}
}

// TestAgents: registration gives a host-scoped token that can heartbeat
// its own host only; a stale host goes down and comes back.
func TestAgents(t *testing.T) {
	e := newEnv(t)
	e.catalogue()
	registrar := e.token(types.RoleRegistrar, "")
	reg := types.HostRegister{Name: "hv1", Region: "dc1", Zone: "rack1", Aggregates: []string{"gen10"},
		Inventory:    types.Inventory{CPUs: 32, RAMMiB: 262144, DiskGiB: 2000, Hugepages: map[string]int64{"2048": 4096}},
		Capabilities: []string{"kvm", "hugepages"}}
	var out types.HostRegistration
	if r := e.call(registrar, "POST", "/v1/hosts/register", reg); r.status != 200 {
		t.Fatalf("register = %d %s", r.status, r.body)
	} else {
		r.decode(t, &out)
	}
	// hv1 is up: another registrar call is a takeover, refused; its own
	// agent, proving itself with its token, may register again.
	if r := e.call(registrar, "POST", "/v1/hosts/register", reg); r.status != 409 || r.apiErr(t).Code != types.CodeConflict {
		t.Errorf("registrar re-registering a live host = %d %s, want 409 conflict", r.status, r.body)
	}
	if r := e.call(registrar, "POST", "/v1/hosts/register", reg, types.HeaderAgentToken, "corral_tok-x.forged"); r.status != 409 {
		t.Errorf("re-registration with a forged proof = %d, want 409", r.status)
	}
	if r := e.call(registrar, "POST", "/v1/hosts/register", reg, types.HeaderAgentToken, out.Token); r.status != 200 {
		t.Fatalf("the host's own agent re-registering = %d %s, want 200", r.status, r.body)
	} else {
		r.decode(t, &out)
	}
	var h2 types.HostRegistration
	reg2 := reg
	reg2.Name = "hv2"
	e.must(200, "POST", "/v1/hosts/register", reg2, &h2)
	agent := out.Token
	if r := e.call(agent, "POST", "/v1/hosts/"+out.Host.ID+"/heartbeat", types.Heartbeat{Usage: types.Usage{MemFreeMiB: 200000, Guests: 2}}); r.status != 204 {
		t.Errorf("heartbeat = %d %s", r.status, r.body)
	}
	if r := e.call(agent, "POST", "/v1/hosts/"+h2.Host.ID+"/heartbeat", types.Heartbeat{}); r.status != 403 {
		t.Errorf("heartbeat for another host = %d, want 403", r.status)
	}
	if r := e.call(agent, "GET", "/v1/servers", nil); r.status != 403 {
		t.Errorf("agent listing servers = %d, want 403", r.status)
	}
	if r := e.call(agent, "GET", "/v1/hosts/"+h2.Host.ID, nil); r.status != 404 {
		t.Errorf("agent reading another host = %d, want 404", r.status)
	}
	if r := e.call(registrar, "GET", "/v1/hosts", nil); r.status != 403 {
		t.Errorf("registrar listing hosts = %d, want 403", r.status)
	}
	var h types.Host
	e.must(200, "GET", "/v1/hosts/hv1", nil, &h)
	if h.Usage.MemFreeMiB != 200000 || h.Inventory.Hugepages["2048"] != 4096 || h.State != "up" {
		t.Errorf("host = %+v", h)
	}
	e.advance(time.Minute)
	e.srv.MaintainOnce(context.Background())
	// Its agent silent, hv2 may be registered again by a registrar (a
	// reinstalled host).
	if r := e.call(registrar, "POST", "/v1/hosts/register", reg2); r.status != 200 {
		t.Errorf("registrar re-registering a silent host = %d %s, want 200", r.status, r.body)
	}
	e.advance(time.Minute)
	e.srv.MaintainOnce(context.Background())
	var l types.List[types.Host]
	e.must(200, "GET", "/v1/hosts?state=down", nil, &l)
	if len(l.Items) != 3 {
		t.Errorf("down hosts after a silent minute = %d, want 3", len(l.Items))
	}
	e.must(204, "POST", "/v1/hosts/"+out.Host.ID+"/heartbeat", types.Heartbeat{}, nil)
	e.must(200, "GET", "/v1/hosts?state=up", nil, &l)
	if len(l.Items) != 1 || l.Items[0].ID != out.Host.ID {
		t.Errorf("up hosts after heartbeat = %+v", l.Items)
	}
	var audit types.List[types.AuditEntry]
	e.must(200, "GET", "/v1/audit?limit=1000", nil, &audit)
	for _, a := range audit.Items {
		if strings.HasSuffix(a.Path, "/heartbeat") {
			t.Errorf("heartbeat audited: %+v", a)
		}
	}
	if len(audit.Items) == 0 {
		t.Error("registrations were not audited")
	}
	// Rack names repeat across datacenters: "rack1" of dc2 is found by name.
	var dc2 types.Zone
	e.must(201, "POST", "/v1/regions", types.RegionCreate{Name: "dc2"}, nil)
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc2"}, &dc2)
	var h3 types.HostRegistration
	reg3 := reg
	reg3.Name, reg3.Region, reg3.Aggregates = "hv3", "dc2", nil
	e.must(200, "POST", "/v1/hosts/register", reg3, &h3)
	if h3.Host.ZoneID != dc2.ID {
		t.Errorf("hv3 in zone %s, want dc2's rack1 %s", h3.Host.ZoneID, dc2.ID)
	}
	e.must(200, "PATCH", "/v1/hosts/hv2", map[string]any{"state": "maintenance"}, &h)
	if h.State != "maintenance" {
		t.Errorf("state after PATCH = %s", h.State)
	}
	if r := e.call(e.admin, "PATCH", "/v1/hosts/hv2", map[string]any{"state": "down"}); r.status != 400 {
		t.Errorf("setting state down by hand = %d, want 400", r.status)
	}
}

// TestImages: upload streams, sums and sizes; download returns the bytes;
// an active image is immutable; an oversized upload leaves nothing.
func TestImages(t *testing.T) {
	e := newEnv(t)
	var img types.Image
	e.must(201, "POST", "/v1/images", types.ImageCreate{Name: "cirros", DiskFormat: "raw"}, &img)
	if r := e.call(e.admin, "GET", "/v1/images/"+img.ID+"/file", nil); r.status != 409 || r.apiErr(t).Code != types.CodeImageNotActive {
		t.Errorf("download before upload = %d %s", r.status, r.body)
	}
	data := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	e.must(200, "PUT", "/v1/images/"+img.ID+"/file", data, &img)
	if img.Status != "active" || img.SizeBytes != int64(len(data)) ||
		img.SHA256 != "d2d4ba4eb2b5cb8d96ebe10e0b5e15c6a9fff4ba43b3d8d86c1d21efd1fb7b0a" && len(img.SHA256) != 64 {
		t.Errorf("image after upload = %+v", img)
	}
	r := e.call(e.admin, "GET", "/v1/images/"+img.ID+"/file", nil)
	if r.status != 200 || string(r.body) != data || r.header.Get("X-Checksum-Sha256") != img.SHA256 {
		t.Errorf("download = %d, %d bytes, sum %q", r.status, len(r.body), r.header.Get("X-Checksum-Sha256"))
	}
	if r := e.call(e.admin, "PUT", "/v1/images/"+img.ID+"/file", "other"); r.status != 409 {
		t.Errorf("second upload = %d, want 409", r.status)
	}
	var big types.Image
	e.must(201, "POST", "/v1/images", types.ImageCreate{Name: "big", DiskFormat: "raw"}, &big)
	if r := e.call(e.admin, "PUT", "/v1/images/"+big.ID+"/file", strings.Repeat("x", 2<<20)); r.status != 413 {
		t.Errorf("oversized upload = %d %s, want 413", r.status, r.body)
	}
	e.must(200, "GET", "/v1/images/"+big.ID, nil, &big)
	if big.Status != "queued" {
		t.Errorf("image after failed upload = %s, want queued", big.Status)
	}
	if entries, _ := os.ReadDir(e.srv.images.dir); len(entries) != 1 {
		t.Errorf("image store holds %d files after one good and one failed upload, want 1", len(entries))
	}
	// Data missing from this corrald's image store (another replica took the
	// upload, without a shared --image-dir): 503 that says so, not a 404.
	os.Rename(filepath.Join(e.srv.images.dir, img.ID), filepath.Join(t.TempDir(), "moved"))
	if r := e.call(e.admin, "GET", "/v1/images/"+img.ID+"/file", nil); r.status != 503 || r.apiErr(t).Code != types.CodeUnavailable {
		t.Errorf("download with the data elsewhere = %d %s, want 503 unavailable", r.status, r.body)
	}
	// After the failure the image takes a good upload.
	e.must(200, "PUT", "/v1/images/"+big.ID+"/file", "small enough", &big)
	if big.Status != "active" {
		t.Errorf("retry after failed upload: status %s", big.Status)
	}
}

// TestHealth: liveness, readiness and metrics need no token.
func TestHealth(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := e.call("", "GET", p, nil); r.status != 200 {
			t.Errorf("%s = %d %s", p, r.status, r.body)
		}
	}
	e.call("", "GET", "/v1/flavors", nil)
	r := e.call("", "GET", "/metrics", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `corral_http_requests_total{method="GET",route="/v1/flavors",status="401"} 1`) {
		t.Errorf("metrics = %d, missing the request count:\n%s", r.status, r.body)
	}
	// Mid rolling upgrade a newer replica has migrated: this one still
	// serves, and says an upgrade is pending.
	db, err := sqlx.Open("sqlite", "file:"+e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)", store.LatestVersion+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if r := e.call("", "GET", "/readyz", nil); r.status != 200 || !strings.Contains(string(r.body), `"upgrade_pending":true`) {
		t.Errorf("readyz on a newer schema = %d %s, want 200 with upgrade_pending", r.status, r.body)
	}
	e.store.Close()
	if r := e.call("", "GET", "/readyz", nil); r.status != http.StatusServiceUnavailable {
		t.Errorf("readyz with the store closed = %d, want 503", r.status)
	}
}

// TestDecodeErrors pins the decoder's answers, including the unknown-field
// text that encoding/json gives only as a message.
func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ in, code, field string }{
		{`{"name":1}`, types.CodeInvalidJSON, "name"},
		{`{"nmae":"x"}`, types.CodeUnknownField, "nmae"},
		{`{"name":"x"`, types.CodeInvalidJSON, ""},
		{`"x"`, types.CodeInvalidJSON, "body"},
		{`null`, types.CodeInvalidJSON, "body"},
		{` null `, types.CodeInvalidJSON, "body"},
		{`[]`, types.CodeInvalidJSON, "body"},
		{``, types.CodeInvalidJSON, "body"},
		{`{"name":"ok","description":"\u0000"}`, types.CodeInvalidInput, "description"},
		{"{\"name\":\"a\xffb\"}", types.CodeInvalidInput, "name"},
		{"{\"na\xffme\":\"x\"}", types.CodeInvalidInput, "na\uFFFDme"},
		{`{"x":{"y":[1,{"z":"\u0000"}]}}`, types.CodeInvalidInput, "x.y[1].z"},
		{"{\"a\":[\"ok\",\"\xc3\x28\"]}", types.CodeInvalidInput, "a[1]"},
		{`{"name":"caf\u00e9 \ud83d\ude00"}`, "", ""},
		{`{"name":"x"}`, "", ""},
	} {
		var v types.RegionCreate
		err := decodeBytes([]byte(tc.in), &v)
		if tc.code == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.in, err)
			}
			continue
		}
		ae, ok := err.(*types.Error)
		if !ok || ae.Code != tc.code || (tc.field != "" && ae.Details["field"] != tc.field) {
			t.Errorf("%s: %#v, want %s field %q", tc.in, err, tc.code, tc.field)
		}
	}
}

// FuzzDecode: no input makes decoding panic, and every failure is a 4xx
// API error.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"name":"web-1","kind":"vm","flavor":"m1","image":"i"}`, `{"name":`, `[]`, `{"qos":{"disk_iops":-1}}`,
		`{"name":"x","vcpus":1e99}`, "\x00", `{"a":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range []any{&types.ServerCreate{}, &types.FlavorCreate{}, &types.AggregateCreate{}, &types.HostRegister{}} {
			err := decodeBytes(data, v)
			if err == nil {
				continue
			}
			ae, ok := err.(*types.Error)
			if !ok {
				t.Fatalf("decode %q: non-API error %v", data, err)
			}
			if s := types.Status(ae.Code); s < 400 || s > 499 {
				t.Fatalf("decode %q: status %d for %v", data, s, ae)
			}
		}
		var fc types.FlavorCreate
		if decodeBytes(data, &fc) == nil {
			_ = checkFlavor(fc) // validation never panics either
		}
	})
}

var _ = json.Marshal
