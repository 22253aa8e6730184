package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/openapi"
	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"
)

// undocumented compares echo's route table with the OpenAPI route table:
// it returns the routes that have no description and the descriptions
// of routes that do not exist, each as "METHOD /path", sorted.
func undocumented(routes []*echo.Route, docs []openapi.Route) (missing, extra []string) {
	have := map[string]bool{}
	for _, r := range routes {
		have[r.Method+" "+r.Path] = true
	}
	described := map[string]bool{}
	for _, d := range docs {
		described[d.Method+" "+d.Path] = true
	}
	for k := range have {
		if !described[k] {
			missing = append(missing, k)
		}
	}
	for k := range described {
		if !have[k] {
			extra = append(extra, k)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return missing, extra
}

// TestOpenAPICoversEveryRoute is acceptance item 5 of issue 15: a route
// registered in echo without a description in openapi.Routes fails it,
// naming the route; so does a description of a route that does not
// exist, or one described twice.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	e := newEnv(t)
	missing, extra := undocumented(e.srv.echo.Routes(), openapi.Routes)
	for _, r := range missing {
		method, path, _ := strings.Cut(r, " ")
		t.Errorf("route %s has no description in the OpenAPI document: add {Method: %q, Path: %q, Summary: …, Roles: …, Body: …, Out: …} to Routes in api/openapi/routes.go",
			r, method, path)
	}
	for _, r := range extra {
		t.Errorf("api/openapi/routes.go describes %s, which is not a route of corrald: remove it or fix its method or path", r)
	}
	seen := map[string]bool{}
	for _, d := range openapi.Routes {
		k := d.Method + " " + d.Path
		if seen[k] {
			t.Errorf("api/openapi/routes.go describes %s twice", k)
		}
		seen[k] = true
		if d.Summary == "" {
			t.Errorf("%s has an empty summary", k)
		}
	}
	if len(openapi.Routes) < 90 {
		t.Fatalf("only %d routes described: the table lost entries", len(openapi.Routes))
	}
}

// TestOpenAPICheckCatchesANewRoute: the comparison above reports a route
// added without a description, and only that one.
func TestOpenAPICheckCatchesANewRoute(t *testing.T) {
	e := newEnv(t)
	e.srv.echo.GET("/v1/undocumented-probe", func(c echo.Context) error { return nil })
	e.srv.echo.POST("/v1/servers/:id/undocumented", func(c echo.Context) error { return nil })
	missing, extra := undocumented(e.srv.echo.Routes(), openapi.Routes)
	if diff := cmp.Diff([]string{"GET /v1/undocumented-probe", "POST /v1/servers/:id/undocumented"}, missing); diff != "" {
		t.Errorf("missing (-want +got):\n%s", diff)
	}
	if len(extra) != 0 {
		t.Errorf("extra = %v, want none", extra)
	}
	docs := append(slices.Clone(openapi.Routes), openapi.Route{Method: http.MethodGet, Path: "/v1/no-such-route", Summary: "x"})
	_, extra = undocumented(e.srv.echo.Routes(), docs)
	if diff := cmp.Diff([]string{"GET /v1/no-such-route"}, extra); diff != "" {
		t.Errorf("extra (-want +got):\n%s", diff)
	}
}

// fetchOpenAPI gets the served document with a token, and checks that
// it needs one.
func fetchOpenAPI(t *testing.T, e *env) []byte {
	t.Helper()
	if r := e.call("", http.MethodGet, "/v1/openapi.json", nil); r.status != http.StatusUnauthorized {
		t.Errorf("GET /v1/openapi.json without a token = %d, want 401", r.status)
	}
	r := e.call(e.token("reader", ""), http.MethodGet, "/v1/openapi.json", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/openapi.json = %d %s", r.status, r.body)
	}
	return r.body
}

// TestOpenAPIDocumentValid: the served document loads and validates with
// kin-openapi, and lists every route under its OpenAPI path.
func TestOpenAPIDocumentValid(t *testing.T) {
	e := newEnv(t)
	raw := fetchOpenAPI(t, e)
	v, err := openapi.NewValidator(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range e.srv.echo.Routes() {
		item := v.Doc().Paths.Find(openapi.OpenAPIPathOf(r.Path))
		if item == nil || item.GetOperation(r.Method) == nil {
			t.Errorf("the served document lacks %s %s", r.Method, openapi.OpenAPIPathOf(r.Path))
		}
	}
}

// apiExample is one example request.
type apiExample struct {
	name, method, path, body string
	header                   []string
	// invalid: the document must refuse it (naming this text).
	invalid string
	// send: corrald must accept it too (with this status), on an empty
	// store with the admin token.
	send int
}

// TestOpenAPIExamples validates example requests against the served
// document: the valid ones pass (and those that need no fixture are
// sent to corrald, which accepts them), the broken ones are refused with
// the reason, so the validation is known to bite.
func TestOpenAPIExamples(t *testing.T) {
	e := newEnv(t)
	v, err := openapi.NewValidator(context.Background(), fetchOpenAPI(t, e))
	if err != nil {
		t.Fatal(err)
	}
	examples := []apiExample{
		{name: "region create", method: "POST", path: "/v1/regions", body: `{"name":"dc1","description":"first"}`, send: 201},
		{name: "project create", method: "POST", path: "/v1/projects", body: `{"name":"games"}`, send: 201},
		{name: "flavor create", method: "POST", path: "/v1/flavors", body: `{"name":"m1","vcpus":1,"ram_mib":256,"disk_gib":1,"qos":{"disk_iops":100}}`, send: 201},
		{name: "zone create", method: "POST", path: "/v1/zones", body: `{"name":"rack-1","region":"dc1"}`, send: 201},
		{name: "region patch", method: "PATCH", path: "/v1/regions/dc1", body: `{"description":"renamed"}`, header: []string{"If-Match", `"1"`}, send: 200},
		{name: "server list", method: "GET", path: "/v1/servers?project=games&state=active&limit=50", send: 200},
		{name: "server create", method: "POST", path: "/v1/servers", body: `{"name":"web-1","kind":"vm","flavor":"m1","image":"debian-12","networks":["net1"]}`,
			header: []string{"Idempotency-Key", "deploy-42"}},
		{name: "server stop", method: "PATCH", path: "/v1/servers/web-1", body: `{"desired_state":"stopped"}`},
		{name: "server action", method: "POST", path: "/v1/servers/web-1/actions", body: `{"action":"reboot"}`},
		{name: "server delete", method: "DELETE", path: "/v1/servers/web-1?force=true"},
		{name: "node provision", method: "POST", path: "/v1/nodes/bm-1/provision", body: `{"target":"provide"}`},
		{name: "node power", method: "PUT", path: "/v1/nodes/bm-1/power", body: `{"state":"on"}`},
		{name: "heartbeat", method: "POST", path: "/v1/hosts/h1/heartbeat", body: `{"usage":{"load1":0.5,"mem_free_mib":2048,"guests":1}}`},
		{name: "security group rule", method: "POST", path: "/v1/security-groups/sg1/rules", body: `{"direction":"ingress","protocol":"tcp","port_range_min":80}`},
		{name: "openapi", method: "GET", path: "/v1/openapi.json", send: 200},

		{name: "unknown field", method: "POST", path: "/v1/regions", body: `{"name":"dc2","colour":"red"}`, invalid: "colour"},
		{name: "wrong type", method: "POST", path: "/v1/flavors", body: `{"name":"m2","vcpus":"two","ram_mib":256}`, invalid: "vcpus"},
		{name: "nested wrong type", method: "POST", path: "/v1/servers", body: `{"name":"x","flavor":"m1","image":"i","networks":"net1"}`, invalid: "networks"},
		{name: "no such route", method: "POST", path: "/v1/regions/dc1/explode", body: `{}`, invalid: "no matching operation"},
		{name: "wrong method", method: "PUT", path: "/v1/servers/web-1", body: `{}`, invalid: "no matching operation"},
		{name: "no token", method: "GET", path: "/v1/servers", header: []string{"Authorization", ""}, invalid: "security requirement"},
	}
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			req := httptest.NewRequest(ex.method, "http://corral.example"+ex.path, strings.NewReader(ex.body))
			req.Header.Set("Authorization", "Bearer x")
			if ex.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			for i := 0; i+1 < len(ex.header); i += 2 {
				if ex.header[i+1] == "" {
					req.Header.Del(ex.header[i])
				} else {
					req.Header.Set(ex.header[i], ex.header[i+1])
				}
			}
			err := v.Validate(context.Background(), req)
			switch {
			case ex.invalid == "" && err != nil:
				t.Fatalf("valid example refused: %v", err)
			case ex.invalid != "" && err == nil:
				t.Fatalf("broken example accepted by the document")
			case ex.invalid != "" && !strings.Contains(err.Error(), ex.invalid):
				t.Fatalf("refused for %v, want a reason naming %q", err, ex.invalid)
			}
			if ex.send == 0 {
				return
			}
			var body any
			if ex.body != "" {
				body = json.RawMessage(ex.body)
			}
			if r := e.call(e.admin, ex.method, ex.path, body, ex.header...); r.status != ex.send {
				t.Errorf("corrald answered %d %s, want %d", r.status, bytes.TrimSpace(r.body), ex.send)
			}
		})
	}
}
