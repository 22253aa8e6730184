package client

import (
	"net/http"
	"testing"

	"github.com/corral-cloud/corral/api/openapi"
)

// TestResourcesAreRoutes: every collection of the typed client, and the
// calls on its objects, are routes the OpenAPI document describes, so a
// client method cannot drift from the API.
func TestResourcesAreRoutes(t *testing.T) {
	c := New("http://corral.example", "", nil)
	routes := map[string]bool{}
	for _, r := range openapi.Routes {
		routes[r.Method+" "+r.Path] = true
	}
	need := func(method, path string) {
		t.Helper()
		if !routes[method+" "+path] {
			t.Errorf("the client calls %s %s, which the API does not describe", method, path)
		}
	}
	for _, col := range []Collection{c.Regions().Collection, c.Zones().Collection, c.Aggregates().Collection,
		c.Flavors().Collection, c.Projects().Collection, c.Networks().Collection, c.Subnets().Collection,
		c.Ports().Collection, c.Hosts().Collection, c.Groups().Collection, c.Tokens().Collection,
		c.SecurityGroups().Collection, c.Images().Collection, c.Nodes().Collection, c.Servers().Collection} {
		need(http.MethodGet, col.Path())
		need(http.MethodGet, col.Path()+"/:id")
		need(http.MethodDelete, col.Path()+"/:id")
	}
	need(http.MethodGet, c.Audit().Path())
	need(http.MethodPost, "/v1/servers/:id/actions")
	need(http.MethodPost, "/v1/nodes/:id/provision")
	need(http.MethodPut, "/v1/nodes/:id/power")
	need(http.MethodGet, "/v1/nodes/:id/events")
	need(http.MethodPut, "/v1/images/:id/file")
	need(http.MethodPost, "/v1/security-groups/:id/rules")
	need(http.MethodDelete, "/v1/security-groups/:id/rules/:rule")
	if got := c.SecurityGroups().Sub("sg 1", "rules").Path(); got != "/v1/security-groups/sg%201/rules" {
		t.Errorf("Sub path = %q", got)
	}
}
