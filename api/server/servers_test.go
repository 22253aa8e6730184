package server

import (
	"slices"
	"strconv"
	"testing"

	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// TestServerAddressesAndPorts: a VM's addresses are its ports' fixed IPs
// (in the create's answer, on GET and in lists); the ports a create made
// for "networks" go with the server, so the network can then be deleted,
// while a port created explicitly stays, unplugged, with its address.
func TestServerAddressesAndPorts(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	var n types.Network
	e.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "n1", Project: c.project.ID, SegmentType: "vlan", SegmentID: 100}, &n)
	e.must(201, "POST", "/v1/subnets", types.SubnetCreate{Name: "s1", Network: "n1", CIDR: "10.5.0.0/24"}, nil)

	in := c.server("w1")
	in.Networks = []string{"n1"}
	var srv types.Server
	r := e.must(201, "POST", "/v1/servers", in, &srv)
	var made types.List[types.Port]
	e.must(200, "GET", "/v1/ports?device_id="+srv.ID, nil, &made)
	if len(made.Items) != 1 || !made.Items[0].AutoDelete {
		t.Fatalf("ports made by the create: %+v, want one with auto_delete", made.Items)
	}
	auto := made.Items[0]
	want := []types.Address{{Network: n.ID, IP: auto.FixedIPs[0].IPAddress, MAC: auto.MACAddress}}
	if diff := cmp.Diff(want, srv.Addresses); diff != "" {
		t.Errorf("addresses in the create's answer (-want +got):\n%s", diff)
	}
	if r.header.Get("ETag") != strconv.Quote(strconv.FormatInt(srv.Revision, 10)) {
		t.Errorf("create's ETag %s, revision %d", r.header.Get("ETag"), srv.Revision)
	}

	// A port created explicitly and plugged into the server.
	var keep types.Port
	e.must(201, "POST", "/v1/ports", types.PortCreate{Name: "keep", Network: "n1", Project: c.project.ID, Server: srv.ID}, &keep)
	if keep.AutoDelete {
		t.Errorf("explicit port has auto_delete")
	}
	want = append(want, types.Address{Network: n.ID, IP: keep.FixedIPs[0].IPAddress, MAC: keep.MACAddress})
	var got types.Server
	e.must(200, "GET", "/v1/servers/"+srv.ID, nil, &got)
	if diff := cmp.Diff(want, got.Addresses); diff != "" {
		t.Errorf("GET addresses (-want +got):\n%s", diff)
	}
	if got.Revision <= srv.Revision {
		t.Errorf("revision %d after a port was plugged in, was %d: the ETag must change with the addresses", got.Revision, srv.Revision)
	}
	var list types.List[types.Server]
	e.must(200, "GET", "/v1/servers", nil, &list)
	if len(list.Items) != 1 || !cmp.Equal(want, list.Items[0].Addresses) {
		t.Errorf("listed servers: %+v, want addresses %v", list.Items, want)
	}

	// No agent reported on the server: it goes at once, with its ports'
	// fate decided.
	e.must(204, "DELETE", "/v1/servers/"+srv.ID, nil, nil)
	var left types.List[types.Port]
	e.must(200, "GET", "/v1/ports?network=n1", nil, &left)
	if len(left.Items) != 1 || left.Items[0].ID != keep.ID || left.Items[0].DeviceID != "" ||
		!cmp.Equal(left.Items[0].FixedIPs, keep.FixedIPs) {
		t.Fatalf("ports left on n1: %+v, want only %s, unplugged, with its address", left.Items, keep.ID)
	}
	e.must(204, "DELETE", "/v1/ports/"+keep.ID, nil, nil)
	e.must(204, "DELETE", "/v1/subnets/s1", nil, nil)
	e.must(204, "DELETE", "/v1/networks/n1", nil, nil)
}

// TestIfNoneMatch: a GET of one object with its current ETag in
// If-None-Match is answered 304 with the ETag and no body; any other ETag,
// or another method, gets the object.
func TestIfNoneMatch(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	var srv types.Server
	e.must(201, "POST", "/v1/servers", c.server("w1"), &srv)
	cur := strconv.Quote(strconv.FormatInt(srv.Revision, 10))
	stale := strconv.Quote(strconv.FormatInt(srv.Revision+1, 10))
	for _, tc := range []struct {
		name, path, header string
		want               int
	}{
		{"server, current", "/v1/servers/" + srv.ID, cur, 304},
		{"server, weak", "/v1/servers/" + srv.ID, "W/" + cur, 304},
		{"server, in a list", "/v1/servers/" + srv.ID, stale + ", " + cur, 304},
		{"server, any", "/v1/servers/" + srv.ID, "*", 304},
		{"server, other", "/v1/servers/" + srv.ID, stale, 200},
		{"flavor, current", "/v1/flavors/" + c.flavor.ID, strconv.Quote(strconv.FormatInt(c.flavor.Revision, 10)), 304},
		{"flavor, other", "/v1/flavors/" + c.flavor.ID, `"999"`, 200},
		{"host, current", "/v1/hosts/" + c.host.ID, `"` + strconv.FormatInt(getHost(e, c.host.ID).Revision, 10) + `"`, 304},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.call(e.admin, "GET", tc.path, nil, "If-None-Match", tc.header)
			if r.status != tc.want {
				t.Fatalf("GET with If-None-Match %s = %d %s, want %d", tc.header, r.status, r.body, tc.want)
			}
			if r.header.Get("ETag") == "" {
				t.Errorf("no ETag in the %d answer", r.status)
			}
			if tc.want == 304 && len(r.body) != 0 {
				t.Errorf("304 with a body: %q", r.body)
			}
		})
	}
	// A change moves the ETag on: the old one no longer matches.
	e.must(200, "PATCH", "/v1/servers/"+srv.ID, map[string]any{"name": "w1-renamed"}, nil)
	if r := e.call(e.admin, "GET", "/v1/servers/"+srv.ID, nil, "If-None-Match", cur); r.status != 200 {
		t.Errorf("GET after a change with the old ETag = %d, want 200", r.status)
	}
	// Only GET: a PATCH with If-None-Match is not answered 304.
	if r := e.call(e.admin, "PATCH", "/v1/servers/"+srv.ID, map[string]any{"name": "w1"}, "If-None-Match", "*"); r.status != 200 {
		t.Errorf("PATCH with If-None-Match = %d %s, want 200", r.status, r.body)
	}
}

// TestAllowedSorted: the lists in error details come sorted, the same on
// every call (a map's order would change from call to call).
func TestAllowedSorted(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	registrar := e.token(types.RoleRegistrar, "")
	bad := c.server("w1")
	bad.Kind = "container"
	for _, tc := range []struct {
		name, token, method, path string
		body                      any
		key                       string
	}{
		{"unknown filter", e.admin, "GET", "/v1/servers?bogus=1", nil, "allowed"},
		{"unknown flavor filter", e.admin, "GET", "/v1/flavors?bogus=1", nil, "allowed"},
		{"one of", e.admin, "POST", "/v1/servers", bad, "allowed"},
		{"roles", registrar, "GET", "/v1/flavors", nil, "allowed_roles"}, // admin, member, reader, agent in the code
	} {
		t.Run(tc.name, func(t *testing.T) {
			var first []any
			for i := 0; i < 20; i++ {
				r := e.call(tc.token, tc.method, tc.path, tc.body)
				got, _ := r.apiErr(t).Details[tc.key].([]any)
				if len(got) < 2 {
					t.Fatalf("details.%s = %v in %s", tc.key, got, r.body)
				}
				s := make([]string, len(got))
				for j, v := range got {
					s[j] = v.(string)
				}
				if !slices.IsSorted(s) {
					t.Fatalf("details.%s = %v, not sorted", tc.key, s)
				}
				if first == nil {
					first = got
				} else if !cmp.Equal(first, got) {
					t.Fatalf("details.%s changed between calls: %v then %v", tc.key, first, got)
				}
			}
		})
	}
}
