package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// Tenant isolation (issue 10, acceptance 6): a member of project alpha
// gets the same answer, status and body, for an object of project beta as
// for one that does not exist, on every route that takes a reference: in
// the path, in the body or in the query. The routes come from echo's route
// table, so a new route fails TestIsolation until it has a case below.

// Kinds of the objects a route names.
const (
	kServer   = "server"
	kGroup    = "group"
	kPort     = "port"
	kSG       = "security group"
	kRule     = "rule"
	kNetwork  = "network"
	kSubnet   = "subnet"
	kProject  = "project"
	kHost     = "host"
	kNode     = "node"
	kToken    = "token"
	kKeypair  = "keypair"
	missingID = "ffffff" // replaces the tail of beta's ID: same shape, no object
	missingNm = "zz-missing"
)

// isoWorld is projects alpha and beta with objects of every kind, and a
// member token of alpha.
type isoWorld struct {
	*env
	member   string
	alpha    types.Project
	beta     types.Project
	a, b     map[string]string // kind → ID of alpha's and beta's object (infrastructure: some object)
	bName    map[string]string // kind → name of beta's object, where it has one
	aServer  types.Server
	bPort    types.Port
	webA     types.SecurityGroup
	dupA     types.Group
	bNetPort types.Port // the port beta's server got on beta's network
}

func newIsoWorld(t *testing.T, e *env) *isoWorld {
	t.Helper()
	w := &isoWorld{env: e, a: map[string]string{}, b: map[string]string{}, bName: map[string]string{}}
	var region types.Region
	var zone types.Zone
	e.must(201, "POST", "/v1/regions", types.RegionCreate{Name: "dc1"}, &region)
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, &zone)
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack2", Region: "dc1"}, nil)
	e.must(201, "POST", "/v1/flavors", types.FlavorCreate{Name: "m1", VCPUs: 1, RAMMiB: 512, DiskGiB: 1}, nil)
	var img types.Image
	e.must(201, "POST", "/v1/images", types.ImageCreate{Name: "tiny", DiskFormat: "raw"}, &img)
	e.must(200, "PUT", "/v1/images/"+img.ID+"/file", strings.Repeat("\x00", 512), nil)
	// hv1 runs alpha's servers, hv2 beta's: a host where alpha has
	// nothing must look to alpha like no host at all.
	w.a[kHost] = e.addHost("hv1", "rack1", 64, 262144).ID
	w.b[kHost], w.bName[kHost] = e.addHost("hv2", "rack2", 64, 262144).ID, "hv2"
	e.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "alpha"}, &w.alpha)
	e.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "beta"}, &w.beta)
	w.a[kProject] = w.alpha.ID
	w.b[kProject], w.bName[kProject] = w.beta.ID, "beta"

	// Networks: one shared, one private to each project.
	for i, n := range []struct{ name, project, cidr string }{
		{"shared", "", "10.10.0.0/24"}, {"a-net", "alpha", "10.11.0.0/24"}, {"b-net", "beta", "10.12.0.0/24"},
	} {
		var net types.Network
		var sn types.Subnet
		e.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: n.name, Project: n.project, SegmentType: "vlan",
			SegmentID: int64(10 + i)}, &net)
		e.must(201, "POST", "/v1/subnets", types.SubnetCreate{Name: n.name + "-v4", Network: net.ID, CIDR: n.cidr}, &sn)
		switch n.project {
		case "alpha":
			w.a[kNetwork], w.a[kSubnet] = net.ID, sn.ID
		case "beta":
			w.b[kNetwork], w.b[kSubnet] = net.ID, sn.ID
			w.bName[kNetwork], w.bName[kSubnet] = net.Name, sn.Name
		}
	}

	// Servers and groups.
	server := func(name, project, zone string, networks ...string) types.Server {
		var s types.Server
		e.must(201, "POST", "/v1/servers", types.ServerCreate{Name: name, Kind: "vm", Project: project, Flavor: "m1", Image: "tiny",
			Zone: zone, Networks: networks}, &s)
		return s
	}
	w.aServer = server("a-srv", "alpha", "rack1")
	w.a[kServer] = w.aServer.ID
	w.b[kServer], w.bName[kServer] = server("b-srv", "beta", "rack2", "b-net").ID, "b-srv"
	group := func(name, project, zone string) types.Group {
		var g types.Group
		e.must(201, "POST", "/v1/groups", types.GroupCreate{Name: name, Role: types.GroupWorkers, Project: project,
			GroupSpec: types.GroupSpec{Members: 1, Flavor: "m1", Image: "tiny", Zones: []string{zone}}}, &g)
		return g
	}
	w.a[kGroup] = group("agrp", "alpha", "rack1").ID
	w.b[kGroup], w.bName[kGroup] = group("bgrp", "beta", "rack2").ID, "bgrp"
	w.dupA = group("dup", "alpha", "rack1")
	group("dup", "beta", "rack2")

	// Security groups, with a rule each; "web" exists in both projects.
	sg := func(name, project string) types.SecurityGroup {
		var g types.SecurityGroup
		e.must(201, "POST", "/v1/security-groups", types.SecurityGroupCreate{Name: name, Project: project,
			Rules: []types.SecurityGroupRuleCreate{{Direction: "ingress", Protocol: "tcp", PortRangeMin: 22}}}, &g)
		return g
	}
	aweb, bweb := sg("aweb", "alpha"), sg("bweb", "beta")
	w.a[kSG], w.a[kRule] = aweb.ID, aweb.Rules[0].ID
	w.b[kSG], w.b[kRule], w.bName[kSG] = bweb.ID, bweb.Rules[0].ID, "bweb"
	w.webA = sg("web", "alpha")
	sg("web", "beta")

	// Keypairs; "ops" exists in both projects.
	kp := func(name, project string) types.Keypair {
		var k types.Keypair
		e.must(201, "POST", "/v1/keypairs", types.KeypairCreate{Name: name, Project: project, PublicKey: testPublicKey()}, &k)
		return k
	}
	w.a[kKeypair] = kp("akey", "alpha").ID
	w.b[kKeypair], w.bName[kKeypair] = kp("bkey", "beta").ID, "bkey"
	kp("ops", "alpha")
	kp("ops", "beta")

	// Ports: alpha's unbound one, beta's bound to beta's server, both on
	// the shared network.
	var pa types.Port
	e.must(201, "POST", "/v1/ports", types.PortCreate{Name: "a-port", Network: "shared", Project: "alpha"}, &pa)
	w.a[kPort] = pa.ID
	groups := []string{bweb.ID}
	e.must(201, "POST", "/v1/ports", types.PortCreate{Name: "b-port", Network: "shared", Project: "beta", Server: w.b[kServer],
		SecurityGroups: &groups}, &w.bPort)
	w.b[kPort] = w.bPort.ID
	var bNet types.List[types.Port]
	e.must(200, "GET", "/v1/ports?network=b-net", nil, &bNet)
	if len(bNet.Items) != 1 {
		t.Fatalf("beta's server has %d ports on b-net, want 1", len(bNet.Items))
	}
	w.bNetPort = bNet.Items[0]

	// Infrastructure: a node, and tokens.
	n, err := e.store.CreateNode(context.Background(), store.NodeEnrolment{Name: "bm-1", RegionID: region.ID, ZoneID: zone.ID,
		BMCAddress: "10.0.0.9", BMCPort: 623, BMCUsername: "admin", BMCPassword: "sealed", MACs: []string{"52:54:00:99:00:01"},
		Target: types.NodeManageable, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	w.a[kNode], w.b[kNode], w.bName[kNode] = n.ID, n.ID, n.Name
	var ta, tb types.TokenCreated
	e.must(201, "POST", "/v1/tokens", types.TokenCreate{Name: "alpha-member", Role: types.RoleMember, Project: w.alpha.ID}, &ta)
	e.must(201, "POST", "/v1/tokens", types.TokenCreate{Name: "beta-member", Role: types.RoleMember, Project: w.beta.ID}, &tb)
	w.member = ta.Secret
	w.a[kToken], w.b[kToken] = ta.Token.ID, tb.Token.ID
	return w
}

// isoRoute is a route's isolation case.
type isoRoute struct {
	// params maps each path parameter to the kind of object it names.
	params map[string]string
	// body is sent with every probe of the path: a valid request, so
	// that the answer turns on the lookup.
	body any
	// want is the status of the answer when the object does not exist.
	want int
	// refs are references in the body or the query.
	refs []isoRef
	// why, for a route that names nothing a project owns, says so.
	why string
}

// isoRef is one reference in a body or query: req builds the request that
// carries ref.
type isoRef struct {
	name string
	kind string
	want int
	req  func(ref string) (path string, body any)
}

func id(kind string) map[string]string { return map[string]string{"id": kind} }

func list(path, filter, kind string, want int) isoRef {
	return isoRef{name: filter, kind: kind, want: want, req: func(ref string) (string, any) { return path + "?" + filter + "=" + ref, nil }}
}

func body(name, kind string, want int, path string, fn func(ref string) map[string]any) isoRef {
	return isoRef{name: name, kind: kind, want: want, req: func(ref string) (string, any) { return path, fn(ref) }}
}

const (
	catalogueWhy = "catalogue: regions, zones, aggregates, flavors and images belong to no project"
	infra        = "infrastructure: members are refused (403) before any lookup"
)

// isoRoutes gives every route its case.
func (w *isoWorld) isoRoutes() map[string]isoRoute {
	shared := func(m map[string]any) map[string]any { m["network"] = "shared"; return m }
	serverBody := func(m map[string]any) map[string]any {
		m["name"], m["kind"], m["flavor"], m["image"] = "probe", "vm", "m1", "tiny"
		return m
	}
	serverRefs := func(path string) []isoRef {
		return []isoRef{
			body("networks", kNetwork, 400, path, func(r string) map[string]any { return serverBody(map[string]any{"networks": []string{r}}) }),
			body("project", kProject, 403, path, func(r string) map[string]any { return serverBody(map[string]any{"project": r}) }),
			body("key_name", kKeypair, 400, path, func(r string) map[string]any { return serverBody(map[string]any{"key_name": r}) }),
			body("keypairs", kKeypair, 400, path, func(r string) map[string]any { return serverBody(map[string]any{"keypairs": []string{r}}) }),
		}
	}
	rule := map[string]any{"direction": "ingress", "protocol": "tcp", "port_range_min": 80}
	portPath := "/v1/ports/" + w.a[kPort]
	return map[string]isoRoute{
		"GET /healthz":   {why: "unauthenticated health check"},
		"GET /readyz":    {why: "unauthenticated readiness check"},
		"GET /metrics":   {why: "unauthenticated metrics"},
		"GET /":          {why: "redirect to the dashboard; no data"},
		"GET /ui":        {why: "redirect to the dashboard; no data"},
		"GET /ui/*":      {why: "the dashboard's static files; no data, all of it comes from /v1"},
		"GET /v1/alerts": {why: infra},

		"GET /v1/regions":           {why: catalogueWhy},
		"POST /v1/regions":          {why: catalogueWhy},
		"GET /v1/regions/:id":       {why: catalogueWhy},
		"PATCH /v1/regions/:id":     {why: catalogueWhy},
		"DELETE /v1/regions/:id":    {why: catalogueWhy},
		"GET /v1/zones":             {why: catalogueWhy},
		"POST /v1/zones":            {why: catalogueWhy},
		"GET /v1/zones/:id":         {why: catalogueWhy},
		"PATCH /v1/zones/:id":       {why: catalogueWhy},
		"DELETE /v1/zones/:id":      {why: catalogueWhy},
		"GET /v1/aggregates":        {why: catalogueWhy},
		"POST /v1/aggregates":       {why: catalogueWhy},
		"GET /v1/aggregates/:id":    {why: catalogueWhy},
		"PATCH /v1/aggregates/:id":  {why: catalogueWhy},
		"DELETE /v1/aggregates/:id": {why: catalogueWhy},
		"GET /v1/flavors":           {why: catalogueWhy},
		"POST /v1/flavors":          {why: catalogueWhy},
		"GET /v1/flavors/:id":       {why: catalogueWhy},
		"PATCH /v1/flavors/:id":     {why: catalogueWhy},
		"DELETE /v1/flavors/:id":    {why: catalogueWhy},
		"GET /v1/images":            {why: catalogueWhy},
		"POST /v1/images":           {why: catalogueWhy},
		"GET /v1/images/:id":        {why: catalogueWhy},
		"PATCH /v1/images/:id":      {why: catalogueWhy},
		"DELETE /v1/images/:id":     {why: catalogueWhy},
		"GET /v1/images/:id/file":   {why: catalogueWhy},
		"PUT /v1/images/:id/file":   {why: catalogueWhy},

		"GET /v1/projects":        {why: "lists the caller's project only; no filter"},
		"POST /v1/projects":       {why: "admins only; names no object"},
		"GET /v1/projects/:id":    {params: id(kProject), want: 404},
		"PATCH /v1/projects/:id":  {params: id(kProject), want: 403, body: map[string]any{"description": "x"}},
		"DELETE /v1/projects/:id": {params: id(kProject), want: 403},

		"GET /v1/hosts":                           {why: infra},
		"POST /v1/hosts/register":                 {why: "registrars and admins only (403); names only catalogue objects"},
		"GET /v1/hosts/:id":                       {params: id(kHost), want: 403},
		"PATCH /v1/hosts/:id":                     {params: id(kHost), want: 403, body: map[string]any{"state": "maintenance"}},
		"DELETE /v1/hosts/:id":                    {params: id(kHost), want: 403},
		"POST /v1/hosts/:id/heartbeat":            {params: id(kHost), want: 403, body: map[string]any{"usage": map[string]any{}}},
		"GET /v1/hosts/:id/guests":                {params: id(kHost), want: 403},
		"POST /v1/hosts/:id/guests/status":        {params: id(kHost), want: 403, body: map[string]any{"guests": []any{}}},
		"GET /v1/hosts/:id/network":               {params: id(kHost), want: 403},
		"PUT /v1/hosts/:id/network/endpoint":      {params: id(kHost), want: 403, body: map[string]any{"ip": "10.0.0.1"}},
		"GET /v1/hosts/:id/unknown-guests":        {params: id(kHost), want: 403},
		"POST /v1/hosts/:id/guests/console":       {params: id(kHost), want: 403, body: map[string]any{"chunks": []any{}}},
		"POST /v1/hosts/:id/guests/console/input": {params: id(kHost), want: 403, body: map[string]any{}},
		"POST /v1/hosts/:id/unknown-guests/:server_id/adopt": {params: map[string]string{"id": kHost, "server_id": kServer},
			want: 403, body: map[string]any{}},
		"DELETE /v1/hosts/:id/unknown-guests/:server_id": {params: map[string]string{"id": kHost, "server_id": kServer}, want: 403},
		"GET /v1/nodes":                {why: infra},
		"POST /v1/nodes":               {why: infra},
		"GET /v1/nodes/:id":            {params: id(kNode), want: 403},
		"PATCH /v1/nodes/:id":          {params: id(kNode), want: 403, body: map[string]any{"name": "x"}},
		"DELETE /v1/nodes/:id":         {params: id(kNode), want: 403},
		"GET /v1/nodes/:id/events":     {params: id(kNode), want: 403},
		"POST /v1/nodes/:id/provision": {params: id(kNode), want: 403, body: map[string]any{"target": "manage"}},
		"PUT /v1/nodes/:id/power":      {params: id(kNode), want: 403, body: map[string]any{"state": "on"}},
		"GET /v1/tokens": {refs: []isoRef{list("/v1/tokens", "project", kProject, 403), list("/v1/tokens", "host", kHost, 403)},
			why: infra},
		"POST /v1/tokens": {refs: []isoRef{body("project", kProject, 403, "/v1/tokens", func(r string) map[string]any {
			return map[string]any{"name": "x", "role": "member", "project": r}
		})}},
		"GET /v1/tokens/:id":    {params: id(kToken), want: 403},
		"DELETE /v1/tokens/:id": {params: id(kToken), want: 403},
		"GET /v1/audit":         {refs: []isoRef{list("/v1/audit", "resource", kServer, 403)}, why: infra},
		"GET /v1/openapi.json":  {why: "the API description: the same document for every caller, naming no object"},

		"GET /v1/servers": {refs: []isoRef{list("/v1/servers", "project", kProject, 400), list("/v1/servers", "group", kGroup, 400),
			{name: "host", kind: kHost, want: 200, req: func(r string) (string, any) { return "/v1/servers?host=" + r, nil }}}},
		"POST /v1/servers":                            {refs: serverRefs("/v1/servers")},
		"POST /v1/placement/dry-run":                  {refs: serverRefs("/v1/placement/dry-run")},
		"GET /v1/servers/:id":                         {params: id(kServer), want: 404},
		"GET /v1/servers/:id/events":                  {params: id(kServer), want: 404},
		"PATCH /v1/servers/:id":                       {params: id(kServer), want: 404, body: map[string]any{"name": "renamed"}},
		"DELETE /v1/servers/:id":                      {params: id(kServer), want: 404},
		"POST /v1/servers/:id/actions":                {params: id(kServer), want: 404, body: map[string]any{"action": "stop"}},
		"GET /v1/servers/:id/console":                 {params: id(kServer), want: 404},
		"POST /v1/servers/:id/console/input":          {params: id(kServer), want: 404, body: map[string]any{"data": "ls\n"}},
		"GET /v1/reports/rightsizing":                 {why: "reports on the caller's project's servers only; names no object"},
		"GET /v1/groups":                              {refs: []isoRef{list("/v1/groups", "project", kProject, 400)}},
		"GET /v1/groups/:id":                          {params: id(kGroup), want: 404},
		"DELETE /v1/groups/:id":                       {params: id(kGroup), want: 404},
		"POST /v1/groups/:id/scale":                   {params: id(kGroup), want: 404, body: map[string]any{"members": 2}},
		"POST /v1/groups/:id/members/:server/replace": {params: map[string]string{"id": kGroup, "server": kServer}, want: 404},
		"POST /v1/groups": {refs: []isoRef{body("project", kProject, 403, "/v1/groups", func(r string) map[string]any {
			return map[string]any{"name": "probe", "role": "workers", "project": r, "members": 1, "flavor": "m1", "image": "tiny"}
		})}},

		"GET /v1/networks": {refs: []isoRef{list("/v1/networks", "project", kProject, 400)}},
		"POST /v1/networks": {refs: []isoRef{body("project", kProject, 403, "/v1/networks", func(r string) map[string]any {
			return map[string]any{"name": "probe", "segment_type": "vlan", "segment_id": 99, "project": r}
		})}},
		"GET /v1/networks/:id":    {params: id(kNetwork), want: 404},
		"PATCH /v1/networks/:id":  {params: id(kNetwork), want: 403, body: map[string]any{"name": "renamed"}},
		"DELETE /v1/networks/:id": {params: id(kNetwork), want: 403},
		"GET /v1/subnets":         {refs: []isoRef{list("/v1/subnets", "network", kNetwork, 400)}},
		"POST /v1/subnets": {refs: []isoRef{body("network", kNetwork, 403, "/v1/subnets", func(r string) map[string]any {
			return map[string]any{"name": "probe", "network": r, "cidr": "10.99.0.0/24"}
		})}},
		"GET /v1/subnets/:id":    {params: id(kSubnet), want: 404},
		"PATCH /v1/subnets/:id":  {params: id(kSubnet), want: 403, body: map[string]any{"name": "renamed"}},
		"DELETE /v1/subnets/:id": {params: id(kSubnet), want: 403},

		"GET /v1/ports": {refs: []isoRef{list("/v1/ports", "network", kNetwork, 400), list("/v1/ports", "project", kProject, 400),
			{name: "device_id", kind: kServer, want: 200, req: func(r string) (string, any) { return "/v1/ports?device_id=" + r, nil }},
			{name: "host", kind: kHost, want: 200, req: func(r string) (string, any) { return "/v1/ports?host=" + r, nil }}}},
		"POST /v1/ports": {refs: []isoRef{
			body("network", kNetwork, 400, "/v1/ports", func(r string) map[string]any { return map[string]any{"network": r} }),
			body("project", kProject, 403, "/v1/ports", func(r string) map[string]any { return shared(map[string]any{"project": r}) }),
			body("device_id", kServer, 400, "/v1/ports", func(r string) map[string]any { return shared(map[string]any{"device_id": r}) }),
			body("host_id", kHost, 400, "/v1/ports", func(r string) map[string]any { return shared(map[string]any{"host_id": r}) }),
			body("security_groups", kSG, 400, "/v1/ports", func(r string) map[string]any {
				return shared(map[string]any{"security_groups": []string{r}})
			}),
			body("fixed_ips.subnet", kSubnet, 400, "/v1/ports", func(r string) map[string]any {
				return shared(map[string]any{"fixed_ips": []any{map[string]any{"subnet": r}}})
			}),
		}},
		"GET /v1/ports/:id": {params: id(kPort), want: 404},
		"PATCH /v1/ports/:id": {params: id(kPort), want: 404, body: map[string]any{"name": "renamed"}, refs: []isoRef{
			body("device_id", kServer, 400, portPath, func(r string) map[string]any { return map[string]any{"device_id": r} }),
			body("host_id", kHost, 400, portPath, func(r string) map[string]any { return map[string]any{"host_id": r} }),
			body("security_groups", kSG, 400, portPath, func(r string) map[string]any { return map[string]any{"security_groups": []string{r}} }),
		}},
		"DELETE /v1/ports/:id": {params: id(kPort), want: 404},

		"GET /v1/keypairs": {refs: []isoRef{list("/v1/keypairs", "project", kProject, 400),
			{name: "name", kind: kKeypair, want: 200, req: func(r string) (string, any) { return "/v1/keypairs?name=" + r, nil }}}},
		"POST /v1/keypairs": {refs: []isoRef{body("project", kProject, 403, "/v1/keypairs", func(r string) map[string]any {
			return map[string]any{"name": "probe", "project": r, "public_key": testPublicKey()}
		})}},
		"GET /v1/keypairs/:id":    {params: id(kKeypair), want: 404},
		"DELETE /v1/keypairs/:id": {params: id(kKeypair), want: 404},

		"GET /v1/security-groups": {refs: []isoRef{list("/v1/security-groups", "project", kProject, 400),
			{name: "name", kind: kSG, want: 200, req: func(r string) (string, any) { return "/v1/security-groups?name=" + r, nil }}}},
		"POST /v1/security-groups": {refs: []isoRef{
			body("project", kProject, 403, "/v1/security-groups", func(r string) map[string]any { return map[string]any{"name": "probe", "project": r} }),
			body("rules.remote_group_id", kSG, 400, "/v1/security-groups", func(r string) map[string]any {
				return map[string]any{"name": "probe", "rules": []any{map[string]any{"direction": "ingress", "remote_group_id": r}}}
			}),
		}},
		"GET /v1/security-groups/:id":    {params: id(kSG), want: 404},
		"PATCH /v1/security-groups/:id":  {params: id(kSG), want: 404, body: map[string]any{"description": "x"}},
		"DELETE /v1/security-groups/:id": {params: id(kSG), want: 404},
		"POST /v1/security-groups/:id/rules": {params: id(kSG), want: 404, body: rule, refs: []isoRef{
			body("remote_group_id", kSG, 400, "/v1/security-groups/"+w.a[kSG]+"/rules", func(r string) map[string]any {
				return map[string]any{"direction": "ingress", "remote_group_id": r}
			}),
		}},
		"DELETE /v1/security-groups/:id/rules/:rule": {params: map[string]string{"id": kSG, "rule": kRule}, want: 404},
	}
}

// probe is one reference to beta's object and one to nothing.
type probe struct{ beta, missing string }

// probes returns the references of a kind to try: beta's object by ID and,
// where it has one, by name.
func (w *isoWorld) probes(kind string) []probe {
	b := w.b[kind]
	out := []probe{{b, b[:len(b)-len(missingID)] + missingID}}
	if n := w.bName[kind]; n != "" {
		out = append(out, probe{n, missingNm})
	}
	return out
}

// same checks that beta's object and a missing one got the same answer,
// once each reference is replaced by a placeholder, and that the answer
// says nothing of beta.
func (w *isoWorld) same(t *testing.T, what string, p probe, rb, rm resp, want int) {
	t.Helper()
	bb := strings.ReplaceAll(string(rb.body), p.beta, "<ref>")
	mb := strings.ReplaceAll(string(rm.body), p.missing, "<ref>")
	if rm.status != want {
		t.Errorf("%s, missing %q: %d %s, want %d", what, p.missing, rm.status, rm.body, want)
	}
	if rb.status != rm.status || bb != mb {
		t.Errorf("%s: beta's %q and missing %q answer differently:\n  beta:    %d %s\n  missing: %d %s",
			what, p.beta, p.missing, rb.status, rb.body, rm.status, rm.body)
	}
	if d := cmp.Diff(comparable(rm.header), comparable(rb.header)); d != "" {
		t.Errorf("%s: headers differ (-missing +beta):\n%s", what, d)
	}
	for _, leak := range []string{w.beta.ID, "in project", "another project"} {
		if strings.Contains(bb, leak) {
			t.Errorf("%s: the answer to beta's %q mentions %q: %s", what, p.beta, leak, rb.body)
		}
	}
}

// comparable drops the headers that differ between any two answers.
func comparable(h http.Header) http.Header {
	out := h.Clone()
	for _, k := range []string{"Date", "X-Request-Id", "Content-Length"} {
		out.Del(k)
	}
	return out
}

// fill puts objects into a route's path: the probed parameter gets ref,
// the others alpha's object of their kind.
func (w *isoWorld) fill(path string, params map[string]string, probed, ref string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if name, ok := strings.CutPrefix(s, ":"); ok {
			if name == probed {
				segs[i] = ref
			} else {
				segs[i] = w.a[params[name]]
			}
		}
	}
	return strings.Join(segs, "/")
}

// snapshot is every project-owned object as the admin sees it.
func (w *isoWorld) snapshot() map[string]string {
	out := map[string]string{}
	for _, p := range []string{"servers", "groups", "ports", "security-groups", "networks", "subnets", "projects", "hosts", "nodes", "keypairs"} {
		out[p] = string(w.must(200, "GET", "/v1/"+p+"?limit=1000", nil, nil).body)
	}
	return out
}

func TestIsolation(t *testing.T) {
	testIsolation(t, newEnv(t))
}

func TestIsolationPostgres(t *testing.T) {
	db := testenv.PostgresDatabase(t, "corral_iso")
	st, err := store.Open(context.Background(), store.Config{PostgresDSN: db})
	if err != nil {
		t.Fatal(err)
	}
	testIsolation(t, newEnvStore(t, st, ""))
}

func testIsolation(t *testing.T, e *env) {
	w := newIsoWorld(t, e)
	cases := w.isoRoutes()
	var routes []string
	for _, r := range e.srv.echo.Routes() {
		routes = append(routes, r.Method+" "+r.Path)
	}
	for _, r := range routes {
		if _, ok := cases[r]; !ok {
			t.Errorf("route %s has no isolation case: add one to isoRoutes", r)
		}
	}
	for r := range cases {
		if !slices.Contains(routes, r) {
			t.Errorf("isolation case for %s, which is not a route", r)
		}
	}
	// Reads first, deletes last: a broken check must not hide others by
	// deleting beta's objects early.
	order := map[string]int{"GET": 0, "PATCH": 1, "PUT": 1, "POST": 1, "DELETE": 2}
	sort.Slice(routes, func(i, j int) bool {
		mi, mj := strings.Fields(routes[i])[0], strings.Fields(routes[j])[0]
		if order[mi] != order[mj] {
			return order[mi] < order[mj]
		}
		return routes[i] < routes[j]
	})
	before := w.snapshot()
	probed := 0
	for _, r := range routes {
		c := cases[r]
		method, path, _ := strings.Cut(r, " ")
		if c.why == "" && len(c.params) == 0 && len(c.refs) == 0 {
			t.Errorf("%s: a case needs params, refs or a reason", r)
		}
		for param, kind := range c.params {
			for _, p := range w.probes(kind) {
				rb := w.call(w.member, method, w.fill(path, c.params, param, p.beta), c.body)
				rm := w.call(w.member, method, w.fill(path, c.params, param, p.missing), c.body)
				w.same(t, fmt.Sprintf("%s (:%s = %s)", r, param, kind), p, rb, rm, c.want)
				probed++
			}
		}
		for _, ref := range c.refs {
			for _, p := range w.probes(ref.kind) {
				pb, bb := ref.req(p.beta)
				pm, bm := ref.req(p.missing)
				rb, rm := w.call(w.member, method, pb, bb), w.call(w.member, method, pm, bm)
				w.same(t, fmt.Sprintf("%s (%s = %s)", r, ref.name, ref.kind), p, rb, rm, ref.want)
				probed++
			}
		}
	}
	if d := cmp.Diff(before, w.snapshot()); d != "" {
		t.Errorf("the probes changed objects (-before +after):\n%s", d)
	}
	t.Logf("%d routes, %d probes", len(routes), probed)

	t.Run("names resolve in the caller's project", func(t *testing.T) {
		var g types.Group
		w.call(w.member, "GET", "/v1/groups/dup", nil).decode(t, &g)
		if g.ID != w.dupA.ID {
			t.Errorf("member's group dup = %s, want alpha's %s", g.ID, w.dupA.ID)
		}
		var l types.List[types.Server]
		if r := w.call(w.member, "GET", "/v1/servers?group=dup", nil); r.status != 200 {
			t.Errorf("member's servers of group dup = %d %s", r.status, r.body)
		} else if r.decode(t, &l); len(l.Items) != 1 || l.Items[0].GroupID != w.dupA.ID {
			t.Errorf("member's servers of group dup = %+v, want alpha's member", l.Items)
		}
		if r := w.call(w.admin, "GET", "/v1/groups/dup", nil); r.status != 400 || !strings.Contains(string(r.body), "several") {
			t.Errorf("admin's group dup = %d %s, want 400: the name is ambiguous", r.status, r.body)
		}
		groups := []string{"web"}
		var p types.Port
		if r := w.call(w.member, "POST", "/v1/ports", types.PortCreate{Network: "shared", SecurityGroups: &groups}); r.status != 201 {
			t.Fatalf("member's port in group web = %d %s", r.status, r.body)
		} else if r.decode(t, &p); !cmp.Equal(p.SecurityGroups, []string{w.webA.ID}) {
			t.Errorf("member's port in group web has groups %v, want alpha's %s", p.SecurityGroups, w.webA.ID)
		}
	})

	t.Run("networks and subnets listed: shared and own", func(t *testing.T) {
		for _, tc := range []struct {
			path, token string
			want        []string
		}{
			{"/v1/networks", w.member, []string{"a-net", "shared"}},
			{"/v1/subnets", w.member, []string{"a-net-v4", "shared-v4"}},
			{"/v1/networks", w.admin, []string{"a-net", "b-net", "shared"}},
			{"/v1/subnets", w.admin, []string{"a-net-v4", "b-net-v4", "shared-v4"}},
		} {
			var l types.List[struct {
				Name string `json:"name"`
			}]
			w.call(tc.token, "GET", tc.path, nil).decode(t, &l)
			var got []string
			for _, it := range l.Items {
				got = append(got, it.Name)
			}
			sort.Strings(got)
			if !cmp.Equal(got, tc.want) {
				t.Errorf("%s as %s = %v, want %v", tc.path, map[bool]string{true: "member", false: "admin"}[tc.token == w.member], got, tc.want)
			}
		}
	})

	t.Run("only admins bind ports to hosts", func(t *testing.T) {
		// A member binds through its server: the port follows it.
		var p types.Port
		w.call(w.member, "POST", "/v1/ports", types.PortCreate{Network: "a-net", Server: w.aServer.ID}).decode(t, &p)
		if p.HostID != w.aServer.HostID || p.DeviceID != w.aServer.ID {
			t.Errorf("member's port on its server = %+v, want host %s", p, w.aServer.HostID)
		}
		// Naming the host, even its own server's, is refused like a
		// host that does not exist.
		r := w.call(w.member, "POST", "/v1/ports", types.PortCreate{Network: "a-net", Host: w.aServer.HostID})
		if r.status != 400 || r.apiErr(t).Code != types.CodeInvalidReference {
			t.Errorf("member's port on host %s = %d %s, want 400 invalid_reference", w.aServer.HostID, r.status, r.body)
		}
		w.must(201, "POST", "/v1/ports", types.PortCreate{Network: "a-net", Host: "hv1"}, nil)
	})

	t.Run("MAC addresses", func(t *testing.T) {
		for _, tc := range []struct {
			name, token, network, mac string
			status                    int
			code                      string
		}{
			{"another project's port's MAC on the shared network", w.member, "shared", w.bPort.MACAddress, 409, types.CodeMACAddressInUse},
			{"upper case is the same MAC", w.member, "shared", strings.ToUpper(w.bPort.MACAddress), 409, types.CodeMACAddressInUse},
			{"beta's private network's MAC on alpha's network", w.member, "a-net", w.bNetPort.MACAddress, 201, ""},
			{"multicast", w.member, "a-net", "03:00:00:00:00:01", 400, types.CodeInvalidArgument},
			{"broadcast", w.member, "a-net", "ff:ff:ff:ff:ff:ff", 400, types.CodeInvalidArgument},
			{"zero", w.member, "a-net", "00:00:00:00:00:00", 400, types.CodeInvalidArgument},
			{"a vendor's MAC, as a gateway router has", w.member, "shared", "00:1b:21:aa:bb:cc", 400, types.CodeInvalidArgument},
			{"an admin may give a vendor's MAC", w.admin, "shared", "00:1b:21:aa:bb:cc", 201, ""},
			{"but not twice on one network", w.admin, "shared", "00:1b:21:aa:bb:cc", 409, types.CodeMACAddressInUse},
		} {
			t.Run(tc.name, func(t *testing.T) {
				in := types.PortCreate{Network: tc.network, MACAddress: tc.mac}
				if tc.token == w.admin {
					in.Project = "alpha"
				}
				r := w.call(tc.token, "POST", "/v1/ports", in)
				if r.status != tc.status || (tc.code != "" && r.apiErr(t).Code != tc.code) {
					t.Fatalf("= %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
				}
				if tc.code == "" {
					return
				}
				e := r.apiErr(t)
				if e.Details["field"] != "mac_address" {
					t.Errorf("details.field = %v, want mac_address", e.Details["field"])
				}
				for _, leak := range []string{w.beta.ID, w.bPort.ID, w.b[kServer]} {
					if strings.Contains(string(r.body), leak) {
						t.Errorf("the answer mentions beta's %s: %s", leak, r.body)
					}
				}
			})
		}
	})
}
