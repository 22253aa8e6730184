package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
	"github.com/google/go-cmp/cmp"
	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
)

// edgeEnv is the API with bare metal enrolment wired (a keyring, no
// conductor), over SQLite or PostgreSQL, with a way to read every table.
type edgeEnv struct {
	*env
	// big serves the same API with corrald's header limit.
	big *httptest.Server
	// driver and dsn open the store's database for dumps.
	driver, dsn string
}

func newEdgeEnv(t *testing.T, postgres bool) *edgeEnv {
	t.Helper()
	cfg := store.Config{SQLitePath: filepath.Join(t.TempDir(), "corral.db")}
	ee := &edgeEnv{driver: "sqlite", dsn: "file:" + cfg.SQLitePath}
	if postgres {
		dsn := testenv.PostgresDatabase(t, "corral_edge")
		cfg = store.Config{PostgresDSN: dsn}
		ee.driver, ee.dsn = "pgx", dsn
	}
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := baremetal.NewKeyring([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: st, now: time.Now()}
	e.srv, err = New(Config{Store: st, ImageDir: filepath.Join(t.TempDir(), "images"), MaxBodyBytes: 64 << 10,
		MaxImageBytes: 1 << 20, Now: e.clock, Baremetal: BaremetalConfig{Keyring: keys}})
	if err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(e.srv.Handler())
	// As cmd/corrald serves it.
	ee.big = httptest.NewUnstartedServer(e.srv.Handler())
	ee.big.Config.MaxHeaderBytes = MaxHeaderBytes
	ee.big.Start()
	t.Cleanup(func() { e.http.Close(); ee.big.Close(); st.Close() })
	if _, e.admin, err = st.CreateToken(context.Background(), types.Token{Name: "admin", Role: types.RoleAdmin}, nil); err != nil {
		t.Fatal(err)
	}
	ee.env = e
	return ee
}

// edgeFixture makes one object of every kind a write route can name, and
// returns their IDs by kind.
func (ee *edgeEnv) edgeFixture() map[string]string {
	e := ee.env
	e.t.Helper()
	c := e.catalogue()
	ids := map[string]string{"region": c.region.ID, "zone": c.zone.ID, "aggregate": c.agg.ID, "flavor": c.flavor.ID,
		"image": c.image.ID, "project": c.project.ID, "host": c.host.ID}
	var img types.Image
	e.must(201, "POST", "/v1/images", types.ImageCreate{Name: "pending", DiskFormat: "qcow2"}, &img)
	ids["queued_image"] = img.ID
	var srv types.Server
	e.must(201, "POST", "/v1/servers", c.server("web-1"), &srv)
	ids["server"] = srv.ID
	var g types.Group
	e.must(201, "POST", "/v1/groups", types.GroupCreate{Name: "crew", Role: types.GroupWorkers, Project: c.project.ID,
		Region: "dc1", GroupSpec: types.GroupSpec{Members: 1, Flavor: c.flavor.ID, Image: c.image.ID}}, &g)
	ids["group"], ids["member"] = g.ID, g.Members[0].ServerID
	var tc types.TokenCreated
	e.must(201, "POST", "/v1/tokens", types.TokenCreate{Name: "viewer", Role: types.RoleReader}, &tc)
	ids["token"] = tc.ID
	var nw types.Network
	e.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "blue", SegmentType: "vlan", SegmentID: 100}, &nw)
	ids["network"] = nw.ID
	var sn types.Subnet
	e.must(201, "POST", "/v1/subnets", types.SubnetCreate{Name: "blue-v4", Network: "blue", CIDR: "10.77.0.0/24"}, &sn)
	ids["subnet"] = sn.ID
	var p types.Port
	e.must(201, "POST", "/v1/ports", types.PortCreate{Name: "web", Network: "blue", Project: c.project.ID}, &p)
	ids["port"] = p.ID
	var sg types.SecurityGroup
	e.must(201, "POST", "/v1/security-groups", types.SecurityGroupCreate{Name: "web", Project: c.project.ID,
		Rules: []types.SecurityGroupRuleCreate{{Direction: "ingress", Protocol: "tcp", PortRangeMin: 22, PortRangeMax: 22}}}, &sg)
	ids["security_group"], ids["rule"] = sg.ID, sg.Rules[0].ID
	var kp types.Keypair
	e.must(201, "POST", "/v1/keypairs", types.KeypairCreate{Name: "ops", Project: c.project.ID, PublicKey: testPublicKey()}, &kp)
	ids["keypair"] = kp.ID
	var n types.Node
	e.must(201, "POST", "/v1/nodes", types.NodeCreate{Name: "n01", Region: "dc1", Zone: "rack1",
		BMC:  types.NodeBMCCreate{Address: "127.0.0.1", Port: 9623, Username: "admin", Password: "pw"},
		MACs: []string{"52:54:00:aa:00:01"}}, &n)
	ids["node"] = n.ID
	e.must(204, "PUT", "/v1/hosts/"+c.host.ID+"/network/endpoint", types.TunnelEndpoint{IP: "192.0.2.10"}, nil)
	return ids
}

// writeCase is a request that a write route would accept: its concrete
// path and body (nil: the route reads no body; []byte: raw data).
type writeCase struct {
	path string
	body any
}

// writeCases has one case per write route. A route added to the API
// without a case here fails TestBadInputEveryWriteRoute.
func writeCases(id map[string]string) map[string]writeCase {
	desc := map[string]any{"name": "renamed", "description": "a description"}
	return map[string]writeCase{
		"POST /v1/regions":       {"/v1/regions", map[string]any{"name": "dc9", "description": "new"}},
		"PATCH /v1/regions/:id":  {"/v1/regions/" + id["region"], desc},
		"DELETE /v1/regions/:id": {"/v1/regions/" + id["region"], nil},
		"POST /v1/zones":         {"/v1/zones", map[string]any{"name": "rack9", "region": "dc1", "description": "new"}},
		"PATCH /v1/zones/:id":    {"/v1/zones/" + id["zone"], desc},
		"DELETE /v1/zones/:id":   {"/v1/zones/" + id["zone"], nil},
		"POST /v1/aggregates": {"/v1/aggregates", map[string]any{"name": "gen11", "traits": []any{"ssd"}, "weigher": "spread",
			"description": "new"}},
		"PATCH /v1/aggregates/:id":  {"/v1/aggregates/" + id["aggregate"], map[string]any{"name": "gen12", "weigher": "pack", "traits": []any{"ssd"}}},
		"DELETE /v1/aggregates/:id": {"/v1/aggregates/" + id["aggregate"], nil},
		"POST /v1/flavors": {"/v1/flavors", map[string]any{"name": "m1.big", "kind": "vm", "vcpus": 2, "ram_mib": 1024,
			"disk_gib": 1, "description": "new"}},
		"PATCH /v1/flavors/:id":   {"/v1/flavors/" + id["flavor"], desc},
		"DELETE /v1/flavors/:id":  {"/v1/flavors/" + id["flavor"], nil},
		"POST /v1/images":         {"/v1/images", map[string]any{"name": "debian", "disk_format": "raw", "description": "new"}},
		"PATCH /v1/images/:id":    {"/v1/images/" + id["image"], desc},
		"DELETE /v1/images/:id":   {"/v1/images/" + id["queued_image"], nil},
		"PUT /v1/images/:id/file": {"/v1/images/" + id["queued_image"] + "/file", []byte("data")},
		"POST /v1/projects":       {"/v1/projects", map[string]any{"name": "other", "description": "new"}},
		"PATCH /v1/projects/:id":  {"/v1/projects/" + id["project"], desc},
		"DELETE /v1/projects/:id": {"/v1/projects/" + id["project"], nil},
		"POST /v1/servers": {"/v1/servers", map[string]any{"name": "web-2", "kind": "vm", "project": id["project"],
			"flavor": "m1.small", "image": "tiny", "region": "dc1"}},
		"PATCH /v1/servers/:id":        {"/v1/servers/" + id["server"], map[string]any{"name": "web-9", "desired_state": "stopped"}},
		"DELETE /v1/servers/:id":       {"/v1/servers/" + id["server"], nil},
		"POST /v1/servers/:id/actions": {"/v1/servers/" + id["server"] + "/actions", map[string]any{"action": "stop"}},
		"POST /v1/placement/dry-run": {"/v1/placement/dry-run", map[string]any{"name": "probe", "kind": "vm",
			"project": id["project"], "flavor": "m1.small", "image": "tiny"}},
		"POST /v1/groups": {"/v1/groups", map[string]any{"name": "crew2", "role": "workers", "project": id["project"],
			"region": "dc1", "members": 1, "flavor": "m1.small", "image": "tiny"}},
		"DELETE /v1/groups/:id":                       {"/v1/groups/" + id["group"], nil},
		"POST /v1/groups/:id/scale":                   {"/v1/groups/" + id["group"] + "/scale", map[string]any{"members": 2}},
		"POST /v1/groups/:id/members/:server/replace": {"/v1/groups/" + id["group"] + "/members/" + id["member"] + "/replace", nil},
		"POST /v1/hosts/register": {"/v1/hosts/register", map[string]any{"name": "hv2", "region": "dc1", "zone": "rack1",
			"inventory": map[string]any{"cpus": 8, "ram_mib": 16384, "disk_gib": 100}}},
		"POST /v1/hosts/:id/heartbeat": {"/v1/hosts/" + id["host"] + "/heartbeat",
			map[string]any{"usage": map[string]any{"mem_free_mib": 1000, "hugepages_free": map[string]any{"2048": 0}}}},
		"PATCH /v1/hosts/:id":  {"/v1/hosts/" + id["host"], map[string]any{"state": "maintenance", "aggregates": []any{"gen10"}}},
		"DELETE /v1/hosts/:id": {"/v1/hosts/" + id["host"], nil},
		"POST /v1/hosts/:id/guests/status": {"/v1/hosts/" + id["host"] + "/guests/status",
			map[string]any{"guests": []any{map[string]any{"server_id": id["server"], "state": "active"}}}},
		"POST /v1/hosts/:id/guests/console": {"/v1/hosts/" + id["host"] + "/guests/console",
			map[string]any{"chunks": []any{map[string]any{"server_id": id["server"], "offset": 0, "data": "aGVsbG8K"}}}},
		"POST /v1/hosts/:id/guests/console/input": {"/v1/hosts/" + id["host"] + "/guests/console/input", map[string]any{}},
		"POST /v1/servers/:id/console/input":      {"/v1/servers/" + id["server"] + "/console/input", map[string]any{"data": "uptime\n"}},
		"PUT /v1/hosts/:id/network/endpoint":      {"/v1/hosts/" + id["host"] + "/network/endpoint", map[string]any{"ip": "192.0.2.11"}},
		"POST /v1/hosts/:id/unknown-guests/:server_id/adopt": {"/v1/hosts/" + id["host"] + "/unknown-guests/srv-0000000000000000000000aa/adopt",
			map[string]any{"project": "p", "flavor": "m1", "image": "tiny", "name": "adopted"}},
		"DELETE /v1/hosts/:id/unknown-guests/:server_id": {"/v1/hosts/" + id["host"] + "/unknown-guests/srv-0000000000000000000000aa", nil},
		"POST /v1/tokens":       {"/v1/tokens", map[string]any{"name": "ci", "role": "reader"}},
		"DELETE /v1/tokens/:id": {"/v1/tokens/" + id["token"], nil},
		"POST /v1/networks": {"/v1/networks", map[string]any{"name": "green", "segment_type": "vlan", "segment_id": 101,
			"provider_physnet": "datacentre", "description": "new"}},
		"PATCH /v1/networks/:id":  {"/v1/networks/" + id["network"], desc},
		"DELETE /v1/networks/:id": {"/v1/networks/" + id["network"], nil},
		"POST /v1/subnets": {"/v1/subnets", map[string]any{"name": "blue-b", "network": "blue", "cidr": "10.78.0.0/24",
			"dns_servers": []any{"10.78.0.53"}}},
		"PATCH /v1/subnets/:id":  {"/v1/subnets/" + id["subnet"], map[string]any{"name": "blue-c", "dns_servers": []any{"10.77.0.53"}}},
		"DELETE /v1/subnets/:id": {"/v1/subnets/" + id["subnet"], nil},
		"POST /v1/ports": {"/v1/ports", map[string]any{"name": "db", "network": "blue", "project": id["project"],
			"mac_address": "52:54:00:00:00:99", "host_id": id["host"],
			"allowed_address_pairs": []any{map[string]any{"ip_address": "10.77.0.200", "mac_address": "02:00:00:00:00:99"}}}},
		"PATCH /v1/ports/:id": {"/v1/ports/" + id["port"], map[string]any{"name": "web2", "host_id": id["host"],
			"allowed_address_pairs": []any{map[string]any{"ip_address": "10.77.0.0/28"}}}},
		"DELETE /v1/ports/:id": {"/v1/ports/" + id["port"], nil},
		"POST /v1/security-groups": {"/v1/security-groups", map[string]any{"name": "db", "project": id["project"],
			"rules": []any{map[string]any{"direction": "ingress", "protocol": "tcp", "remote_cidr": "10.0.0.0/8"}}}},
		"PATCH /v1/security-groups/:id":  {"/v1/security-groups/" + id["security_group"], desc},
		"DELETE /v1/security-groups/:id": {"/v1/security-groups/" + id["security_group"], nil},
		"POST /v1/security-groups/:id/rules": {"/v1/security-groups/" + id["security_group"] + "/rules",
			map[string]any{"direction": "egress", "protocol": "udp", "remote_cidr": "0.0.0.0/0"}},
		"DELETE /v1/security-groups/:id/rules/:rule": {"/v1/security-groups/" + id["security_group"] + "/rules/" + id["rule"], nil},
		"POST /v1/keypairs": {"/v1/keypairs", map[string]any{"name": "ops2", "project": id["project"],
			"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDMIaw9qcWoi7l9OXjlHJMYz0Xseav2GiXTxX3GpFcRm edge"}},
		"DELETE /v1/keypairs/:id": {"/v1/keypairs/" + id["keypair"], nil},
		"POST /v1/nodes": {"/v1/nodes", map[string]any{"name": "n02", "region": "dc1", "zone": "rack1",
			"bmc":  map[string]any{"address": "127.0.0.1", "port": 9624, "username": "admin", "password": "pw"},
			"macs": []any{"52:54:00:aa:00:02"}}},
		"PATCH /v1/nodes/:id": {"/v1/nodes/" + id["node"], map[string]any{"name": "n03",
			"bmc": map[string]any{"address": "127.0.0.2", "username": "root", "password": "pw2"}}},
		"DELETE /v1/nodes/:id":         {"/v1/nodes/" + id["node"], nil},
		"POST /v1/nodes/:id/provision": {"/v1/nodes/" + id["node"] + "/provision", map[string]any{"target": "manage"}},
		"PUT /v1/nodes/:id/power":      {"/v1/nodes/" + id["node"] + "/power", map[string]any{"state": "on"}},
	}
}

// badRequest is one refused request and what its answer must say.
type badRequest struct {
	name    string
	method  string
	path    string // with the query
	header  map[string]string
	body    []byte // nil: no body
	status  int    // 0: 400
	code    string
	field   string
	noShape bool // net/http answers before corrald (431): no error body
}

// badRequests derives the bad variants of a route's good request.
func badRequests(method, template string, wc writeCase) []badRequest {
	var out []badRequest
	add := func(b badRequest) {
		b.method = method
		if b.path == "" {
			b.path = wc.path
		}
		out = append(out, b)
	}
	// A bad path parameter, one at a time.
	tsegs, psegs := strings.Split(template, "/"), strings.Split(wc.path, "/")
	for i, s := range tsegs {
		param, ok := strings.CutPrefix(s, ":")
		if !ok {
			continue
		}
		for _, bad := range []struct{ name, esc string }{{"NUL", "%00"}, {"invalid UTF-8", "%FF"}, {"NUL inside", "abc%00def"}} {
			p := append([]string(nil), psegs...)
			p[i] = bad.esc
			add(badRequest{name: bad.name + " in path parameter " + param, path: strings.Join(p, "/"),
				code: types.CodeInvalidInput, field: param})
		}
	}
	// Query strings.
	for _, q := range []struct{ name, query, field string }{
		{"';' in query", "limit=0;x", "query"},
		{"';' in a filter", "state=down;x", "query"},
		{"malformed query", "a=%zz", "query"},
		{"NUL in a query value", "limit=%00", "limit"},
		{"invalid UTF-8 in a query value", "name=%FF", "name"},
		{"NUL in a query key", "%00=1", "query"},
	} {
		add(badRequest{name: q.name, path: wc.path + "?" + q.query, code: types.CodeInvalidInput, field: q.field})
	}
	// Headers that reach the store.
	for _, h := range []struct{ name, value string }{
		{"Idempotency-Key", "k\xff"},
		{"If-Match", "\"1\xff\""},
		{"Authorization", "Bearer corral_tok-\xff.secret"},
		{types.HeaderAgentToken, "corral_tok-\xfe.secret"},
	} {
		add(badRequest{name: "invalid UTF-8 in " + h.name, header: map[string]string{h.name: h.value},
			code: types.CodeInvalidInput, field: h.name})
	}
	add(badRequest{name: "oversized header", header: map[string]string{"X-Padding": strings.Repeat("p", 2*MaxHeaderBytes)},
		status: http.StatusRequestHeaderFieldsTooLarge, noShape: true})
	switch body := wc.body.(type) {
	case nil:
	case []byte:
		// Image data: the upload checks it with qemu-img. The image is
		// declared qcow2 and has no data yet.
		add(badRequest{name: "null image data", body: []byte("null"), code: types.CodeInvalidArgument, field: "disk_format"})
		add(badRequest{name: "empty image data", body: []byte{}, code: types.CodeInvalidArgument, field: "body"})
	default:
		for _, b := range []string{"null", "", " ", "[]", "\"x\""} {
			add(badRequest{name: fmt.Sprintf("body %q", b), body: []byte(b), code: types.CodeInvalidJSON, field: "body"})
		}
		good, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		add(badRequest{name: "NUL in a key", body: append([]byte(`{"x\u0000":1,`), good[1:]...),
			code: types.CodeInvalidInput, field: "x\uFFFD"})
		for _, leaf := range stringLeaves(body) {
			for _, bad := range []struct{ name, raw string }{{"NUL", `a\u0000b`}, {"invalid UTF-8", "a\xffb"}, {"NUL alone", `\u0000`}} {
				add(badRequest{name: bad.name + " in " + leaf, body: withLeaf(body, leaf, bad.raw),
					code: types.CodeInvalidInput, field: leaf})
			}
		}
	}
	return out
}

const leafMarker = "@@BAD-LEAF@@"

// stringLeaves lists the paths ("a.b[1].c") of the strings in a body.
func stringLeaves(v any) []string {
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case string:
			out = append(out, prefix)
		case map[string]any:
			for k, c := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, c)
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s[%d]", prefix, i), c)
			}
		}
	}
	walk("", v)
	sort.Strings(out)
	return out
}

// withLeaf returns the body as JSON with the string at path replaced by
// raw, written into the JSON text as is (an escape or raw bytes).
func withLeaf(body any, path, raw string) []byte {
	var set func(prefix string, v any) any
	set = func(prefix string, v any) any {
		switch x := v.(type) {
		case string:
			if prefix == path {
				return leafMarker
			}
			return x
		case map[string]any:
			m := map[string]any{}
			for k, c := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				m[k] = set(p, c)
			}
			return m
		case []any:
			l := make([]any, len(x))
			for i, c := range x {
				l[i] = set(fmt.Sprintf("%s[%d]", prefix, i), c)
			}
			return l
		}
		return v
	}
	b, err := json.Marshal(set("", body))
	if err != nil {
		panic(err)
	}
	return bytes.Replace(b, []byte(leafMarker), []byte(raw), 1)
}

// send sends a bad request as admin (unless it brings its own
// Authorization) to srv.
func (ee *edgeEnv) send(srv *httptest.Server, b badRequest) resp {
	ee.t.Helper()
	var rd *bytes.Reader
	if b.body != nil {
		rd = bytes.NewReader(b.body)
	}
	u := srv.URL + b.path
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequest(b.method, u, rd)
	} else {
		req, err = http.NewRequest(b.method, u, nil)
	}
	if err != nil {
		ee.t.Fatalf("%s: %v", b.name, err)
	}
	req.Header.Set("Authorization", "Bearer "+ee.admin)
	if b.body != nil {
		req.Header.Set("Content-Type", "application/json")
		if b.method == http.MethodPut && strings.HasSuffix(b.path, "/file") {
			req.Header.Set("Content-Type", "application/octet-stream")
		}
	}
	for k, v := range b.header {
		req.Header.Set(k, v)
	}
	r, err := srv.Client().Do(req)
	if err != nil {
		ee.t.Fatalf("%s %s: %s: %v", b.method, b.path, b.name, err)
	}
	defer r.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(r.Body)
	return resp{status: r.StatusCode, header: r.Header, body: buf.Bytes()}
}

// sendRaw writes a request line and headers as given (net/http's client
// refuses a NUL in a header) and returns the answer's status.
func sendRaw(t *testing.T, srv *httptest.Server, method, path, header string) int {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", method, path, u.Host, header)
	r, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("raw %s %s: %v", method, path, err)
	}
	r.Body.Close()
	return r.StatusCode
}

// dump reads every table but the audit log and the idempotency keys, each
// row as text, sorted: what a refused request must leave as it was.
func (ee *edgeEnv) dump() map[string][]string {
	t := ee.t
	t.Helper()
	db, err := sqlx.Open(ee.driver, ee.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
	if ee.driver == "pgx" {
		q = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
	}
	var tables []string
	if err := db.Select(&tables, q); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, tbl := range tables {
		switch tbl {
		case "audit_log", "idempotency_keys":
			continue
		}
		rows, err := db.Queryx("SELECT * FROM " + tbl)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals, err := rows.SliceScan()
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for i, v := range vals {
				if i > 0 {
					b.WriteString(" | ")
				}
				if bs, ok := v.([]byte); ok {
					v = string(bs)
				}
				fmt.Fprint(&b, v)
			}
			out[tbl] = append(out[tbl], b.String())
		}
		rows.Close()
		sort.Strings(out[tbl])
	}
	// And the image store.
	entries, _ := os.ReadDir(ee.srv.images.dir)
	for _, en := range entries {
		out["image files"] = append(out["image files"], en.Name())
	}
	if len(out["tokens"]) == 0 || len(out["servers"]) == 0 {
		t.Fatalf("the dump read nothing: %v", out)
	}
	return out
}

// TestBadInputEveryWriteRouteSQLite is acceptance item 5 on SQLite.
func TestBadInputEveryWriteRouteSQLite(t *testing.T) { testBadInputEveryWriteRoute(t, false) }

// TestBadInputEveryWriteRoutePostgres is acceptance item 5 on PostgreSQL,
// which answered 500 to NUL bytes and invalid UTF-8.
func TestBadInputEveryWriteRoutePostgres(t *testing.T) { testBadInputEveryWriteRoute(t, true) }

// testBadInputEveryWriteRoute sends every write route of the API (read
// from echo's route table, so a new route without a case fails) NUL bytes
// and invalid UTF-8 in its path parameters, query, stored headers and
// every string of its body; null, empty and non-object bodies; ';' in the
// query; an oversized header. Every answer is a 4xx with the error shape,
// the code and the field named, and no table changed.
func testBadInputEveryWriteRoute(t *testing.T, postgres bool) {
	ee := newEdgeEnv(t, postgres)
	ids := ee.edgeFixture()
	cases := writeCases(ids)
	before := ee.dump()
	seen := map[string]bool{}
	n := 0
	for _, rt := range ee.srv.echo.Routes() {
		switch rt.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		default:
			continue
		}
		key := rt.Method + " " + rt.Path
		if seen[key] {
			continue
		}
		seen[key] = true
		wc, ok := cases[key]
		if !ok {
			t.Errorf("write route %s has no case in writeCases: add one", key)
			continue
		}
		for _, b := range badRequests(rt.Method, rt.Path, wc) {
			n++
			srv := ee.http
			if b.noShape {
				srv = ee.big
			}
			r := ee.send(srv, b)
			want := b.status
			if want == 0 {
				want = http.StatusBadRequest
			}
			if r.status != want {
				t.Errorf("%s %q: %s = %d %s, want %d", b.method, b.path, b.name, r.status, r.body, want)
				continue
			}
			if b.noShape {
				continue
			}
			var eb types.ErrorBody
			if err := json.Unmarshal(r.body, &eb); err != nil || eb.Error == nil {
				t.Errorf("%s %q: %s: answer %s is not the error shape", b.method, b.path, b.name, r.body)
				continue
			}
			if eb.Error.Code != b.code || eb.Error.Details["field"] != b.field {
				t.Errorf("%s %q: %s = %s field %q (%s), want %s field %q", b.method, b.path, b.name,
					eb.Error.Code, eb.Error.Details["field"], eb.Error.Message, b.code, b.field)
			}
		}
		// A NUL in a header never reaches corrald: net/http refuses it.
		if st := sendRaw(t, ee.http, rt.Method, wc.path, "Idempotency-Key: a\x00b"); st != http.StatusBadRequest {
			t.Errorf("%s: NUL in a header = %d, want 400", key, st)
		}
	}
	for key := range cases {
		if !seen[key] {
			t.Errorf("writeCases has %s, which is not a route", key)
		}
	}
	if diff := cmp.Diff(before, ee.dump()); diff != "" {
		t.Errorf("bad requests changed the store (-before +after):\n%s", diff)
	}
	t.Logf("%d write routes, %d bad requests, every one refused", len(seen), n)
}

// TestRequestIDBoundedSQLite and …Postgres: a client's X-Request-Id is
// kept only if it is 1 to 128 printable ASCII characters; anything else is
// replaced, the change and its audit entry both commit (on PostgreSQL a
// non-UTF-8 ID used to fail the audit insert while the change committed).
func TestRequestIDBoundedSQLite(t *testing.T)   { testRequestIDBounded(t, false) }
func TestRequestIDBoundedPostgres(t *testing.T) { testRequestIDBounded(t, true) }

func testRequestIDBounded(t *testing.T, postgres bool) {
	ee := newEdgeEnv(t, postgres)
	e := ee.env
	long := strings.Repeat("r", maxRequestIDLen)
	for i, tc := range []struct {
		name, sent string
		kept       bool
	}{
		{"ordinary", "req-42 from ci", true},
		{"128 characters", long, true},
		{"129 characters", long + "r", false},
		{"invalid UTF-8", "req-\xff\xfe", false},
		{"valid UTF-8, not ASCII", "req-é", false},
		{"control character", "req-\tx", false},
		{"absent", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.sent != "" {
				hdr = []string{echo.HeaderXRequestID, tc.sent}
			}
			name := fmt.Sprintf("rid%d", i)
			r := e.call(e.admin, "POST", "/v1/regions", types.RegionCreate{Name: name}, hdr...)
			if r.status != 201 {
				t.Fatalf("create = %d %s", r.status, r.body)
			}
			var rg types.Region
			r.decode(t, &rg)
			got := r.header.Get(echo.HeaderXRequestID)
			switch {
			case tc.kept && got != tc.sent:
				t.Errorf("X-Request-Id = %q, want the client's %q", got, tc.sent)
			case !tc.kept && (got == tc.sent || !validRequestID(got)):
				t.Errorf("X-Request-Id = %q, want a new one", got)
			}
			var audit types.List[types.AuditEntry]
			e.must(200, "GET", "/v1/audit?resource="+rg.ID, nil, &audit)
			if len(audit.Items) != 1 || audit.Items[0].RequestID != got || audit.Items[0].Status != 201 {
				t.Errorf("audit of the create = %+v, want one entry with request ID %q", audit.Items, got)
			}
		})
	}
}

// TestHeartbeatAndReportChecks: a null or negative heartbeat and a report
// for a host that does not exist are refused, and the host's recorded
// usage stays as it was.
func TestHeartbeatAndReportChecks(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	hb := "/v1/hosts/" + c.host.ID + "/heartbeat"
	var before types.Host
	e.must(200, "GET", "/v1/hosts/"+c.host.ID, nil, &before)
	for _, tc := range []struct {
		name  string
		body  any
		code  string
		field string
	}{
		{"null", "null", types.CodeInvalidJSON, "body"},
		{"empty", "", types.CodeInvalidJSON, "body"},
		{"negative hugepages_free", map[string]any{"usage": map[string]any{"mem_free_mib": 1, "hugepages_free": map[string]any{"2048": -1}}},
			types.CodeInvalidArgument, "usage.hugepages_free"},
		{"negative memory", map[string]any{"usage": map[string]any{"mem_free_mib": -5}}, types.CodeInvalidArgument, "usage.mem_free_mib"},
		{"negative disk", map[string]any{"usage": map[string]any{"disk_free_gib": -1}}, types.CodeInvalidArgument, "usage.disk_free_gib"},
		{"negative guests", map[string]any{"usage": map[string]any{"guests": -1}}, types.CodeInvalidArgument, "usage.guests"},
		{"negative load", map[string]any{"usage": map[string]any{"load1": -0.5}}, types.CodeInvalidArgument, "usage.load1"},
	} {
		r := e.call(e.admin, "POST", hb, tc.body)
		if r.status != 400 {
			t.Errorf("%s: heartbeat = %d %s, want 400", tc.name, r.status, r.body)
			continue
		}
		if ae := r.apiErr(t); ae.Code != tc.code || ae.Details["field"] != tc.field {
			t.Errorf("%s: %s field %v, want %s field %s", tc.name, ae.Code, ae.Details["field"], tc.code, tc.field)
		}
	}
	var after types.Host
	e.must(200, "GET", "/v1/hosts/"+c.host.ID, nil, &after)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("refused heartbeats changed the host (-before +after):\n%s", diff)
	}
	report := types.GuestReport{Guests: []types.GuestStatus{{ServerID: "srv-000000000000000000000000", State: types.GuestActive}}}
	if r := e.call(e.admin, "POST", "/v1/hosts/host-000000000000000000000000/guests/status", report); r.status != 404 ||
		r.apiErr(t).Code != types.CodeNotFound {
		t.Errorf("report for a host that does not exist = %d %s, want 404", r.status, r.body)
	}
	// The host's name works for an admin, as in every other host route.
	e.must(200, "POST", "/v1/hosts/"+c.host.Name+"/guests/status", report, nil)
}

// TestUnicastMACs: nodes and ports take only unicast Ethernet MACs.
func TestUnicastMACs(t *testing.T) {
	ee := newEdgeEnv(t, false)
	e := ee.env
	ids := ee.edgeFixture()
	for _, mac := range []string{"01:00:5e:00:00:01", "33:33:00:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00",
		"52:54:00:aa:bb", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "nonsense"} {
		node := map[string]any{"name": "bad", "region": "dc1", "zone": "rack1", "macs": []string{"52:54:00:aa:00:07", mac},
			"bmc": map[string]any{"address": "127.0.0.1", "username": "admin", "password": "pw"}}
		if r := e.call(e.admin, "POST", "/v1/nodes", node); r.status != 400 || r.apiErr(t).Details["field"] != "macs" {
			t.Errorf("node with MAC %s = %d %s, want 400 naming macs", mac, r.status, r.body)
		}
		port := map[string]any{"network": "blue", "project": ids["project"], "mac_address": mac}
		if r := e.call(e.admin, "POST", "/v1/ports", port); r.status != 400 || r.apiErr(t).Details["field"] != "mac_address" {
			t.Errorf("port with MAC %s = %d %s, want 400 naming mac_address", mac, r.status, r.body)
		}
	}
	// A locally administered unicast MAC is fine, written in lower case.
	var n types.Node
	e.must(201, "POST", "/v1/nodes", map[string]any{"name": "good", "region": "dc1", "zone": "rack1", "macs": []string{"02:AA:BB:CC:DD:EE"},
		"bmc": map[string]any{"address": "127.0.0.1", "username": "admin", "password": "pw"}}, &n)
	if !cmp.Equal(n.MACs, []string{"02:aa:bb:cc:dd:ee"}) {
		t.Errorf("node MACs = %v", n.MACs)
	}
}

// TestImageUploadChecksFormat: qemu-img checks uploaded data before it is
// accepted. Random bytes declared qcow2, a qcow2 declared raw and a qcow2
// with a backing file are refused, and the image stays queued with no
// data; raw data declared raw and a standalone qcow2 are accepted.
func TestImageUploadChecksFormat(t *testing.T) {
	e := newEnv(t)
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(i*7919 + i>>8)
	}
	backing := filepath.Join(t.TempDir(), "base.raw")
	if err := os.WriteFile(backing, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, format string
		data         []byte
		status       int
		field        string
	}{
		{"random bytes declared qcow2", "qcow2", random, 400, "disk_format"},
		{"null declared qcow2", "qcow2", []byte("null"), 400, "disk_format"},
		{"empty", "raw", []byte{}, 400, "body"},
		{"qcow2 declared raw", "raw", qcow2Data(t, nil), 400, "disk_format"},
		{"qcow2 with a backing file", "qcow2", qcow2Data(t, []string{"-b", backing, "-F", "raw"}), 400, "file"},
		{"qcow2 with a data file", "qcow2", qcow2Data(t, []string{"-o", "data_file=" + filepath.Join(t.TempDir(), "data")}), 400, "file"},
		{"corrupt qcow2 header", "qcow2", append([]byte("QFI\xfb\x00\x00\x00\x63"), random[:4096]...), 400, "file"},
		{"raw declared raw", "raw", random, 200, ""},
		{"standalone qcow2", "qcow2", qcow2Data(t, nil), 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var img types.Image
			e.must(201, "POST", "/v1/images", types.ImageCreate{Name: "img", DiskFormat: tc.format}, &img)
			r := e.call(e.admin, "PUT", "/v1/images/"+img.ID+"/file", tc.data)
			if r.status != tc.status {
				t.Fatalf("upload = %d %s, want %d", r.status, r.body, tc.status)
			}
			var after types.Image
			e.must(200, "GET", "/v1/images/"+img.ID, nil, &after)
			_, statErr := os.Stat(filepath.Join(e.srv.images.dir, img.ID))
			if tc.status == 200 {
				if after.Status != types.ImageActive || statErr != nil {
					t.Errorf("accepted upload: status %s, data file: %v", after.Status, statErr)
				}
				return
			}
			if ae := r.apiErr(t); ae.Code != types.CodeInvalidArgument || ae.Details["field"] != tc.field {
				t.Errorf("refusal = %s field %v (%s), want field %s", ae.Code, ae.Details["field"], ae.Message, tc.field)
			}
			if diff := cmp.Diff(img, after); diff != "" {
				t.Errorf("a refused upload changed the image (-before +after):\n%s", diff)
			}
			if !os.IsNotExist(statErr) {
				t.Errorf("a refused upload left data behind: %v", statErr)
			}
		})
	}
	if entries, _ := os.ReadDir(e.srv.images.dir); len(entries) != 2 {
		t.Errorf("image store holds %d files, want the 2 accepted", len(entries))
	}
}

// TestQueryStrictness: ';' and malformed query strings no longer slip past
// a list's strict filters.
func TestQueryStrictness(t *testing.T) {
	e := newEnv(t)
	e.catalogue()
	for _, q := range []string{"state=down;x", "limit=0;x", "limit=1&%zz", "state=%00"} {
		r := e.call(e.admin, "GET", "/v1/hosts?"+q, nil)
		if r.status != 400 || r.apiErr(t).Code != types.CodeInvalidInput {
			t.Errorf("GET /v1/hosts?%s = %d %s, want 400 invalid_input", q, r.status, r.body)
		}
	}
	var l types.List[types.Host]
	e.must(200, "GET", "/v1/hosts?state=up&limit=5", nil, &l)
	if len(l.Items) != 1 {
		t.Errorf("a good query lists %d hosts, want 1", len(l.Items))
	}
}
