package server

import (
	"testing"

	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// TestProviderNetworks: flat and VLAN networks on a physical network are
// stored and shown with it, reach the host's state with it, and bad
// combinations are refused naming the field.
func TestProviderNetworks(t *testing.T) {
	e := newNetEnv(t)
	var ext, flat, flat2 types.Network
	e.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "ext", SegmentType: "vlan", SegmentID: 300, Physnet: "datacentre"}, &ext)
	e.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "lan", SegmentType: "flat", Physnet: "datacentre"}, &flat)
	e.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "lan2", SegmentType: "flat", Physnet: "storage"}, &flat2)
	if ext.Physnet != "datacentre" || ext.SegmentID != 300 || flat.SegmentID != 0 || flat.Physnet != "datacentre" || flat2.SegmentID != 0 {
		t.Errorf("provider networks = %+v / %+v / %+v", ext, flat, flat2)
	}
	var got types.Network
	e.must(200, "GET", "/v1/networks/lan", nil, &got)
	if !cmp.Equal(got, flat) {
		t.Errorf("GET flat network:\n%s", cmp.Diff(flat, got))
	}
	var l types.List[types.Network]
	e.must(200, "GET", "/v1/networks?physnet=datacentre", nil, &l)
	if len(l.Items) != 2 {
		t.Errorf("networks on datacentre: %d, want 2", len(l.Items))
	}
	e.must(201, "POST", "/v1/subnets", types.SubnetCreate{Name: "ext-v4", Network: "ext", CIDR: "10.30.0.0/24"}, nil)
	var p types.Port
	e.must(201, "POST", "/v1/ports", types.PortCreate{Network: "ext", Project: "games", Host: "hv1"}, &p)
	var hn types.HostNetwork
	e.must(200, "GET", "/v1/hosts/hv1/network", nil, &hn)
	if len(hn.Ports) != 1 || hn.Ports[0].Physnet != "datacentre" || hn.Ports[0].SegmentID != 300 || hn.Ports[0].SegmentType != "vlan" {
		t.Errorf("host network ports = %+v", hn.Ports)
	}
	// A member may not create networks at all (provider or not).
	member := e.token("member", "games")
	if r := e.call(member, "POST", "/v1/networks", types.NetworkCreate{Name: "m", SegmentType: "flat", Physnet: "x"}); r.status != 403 {
		t.Errorf("member creates a provider network = %d %s, want 403", r.status, r.body)
	}
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"flat without physnet", types.NetworkCreate{Name: "n", SegmentType: "flat"}, 400, types.CodeInvalidArgument, "provider_physnet"},
		{"flat with a segment", types.NetworkCreate{Name: "n", SegmentType: "flat", SegmentID: 5, Physnet: "p"}, 400, types.CodeInvalidArgument, "segment_id"},
		{"vxlan with physnet", types.NetworkCreate{Name: "n", SegmentType: "vxlan", SegmentID: 5, Physnet: "p"}, 400, types.CodeInvalidArgument, "provider_physnet"},
		{"bad physnet", types.NetworkCreate{Name: "n", SegmentType: "vlan", SegmentID: 5, Physnet: "data centre"}, 400, types.CodeInvalidArgument, "provider_physnet"},
		{"physnet with NUL", map[string]any{"name": "n", "segment_type": "vlan", "segment_id": 5, "provider_physnet": "a\x00b"}, 400, types.CodeInvalidInput, "provider_physnet"},
		{"second flat on a physnet", types.NetworkCreate{Name: "n", SegmentType: "flat", Physnet: "datacentre"}, 409, types.CodeSegmentInUse, "segment_id"},
		{"vlan taken on another physnet", types.NetworkCreate{Name: "n", SegmentType: "vlan", SegmentID: 300, Physnet: "storage"}, 409, types.CodeSegmentInUse, "segment_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.netCounts()
			r := e.call(e.admin, "POST", "/v1/networks", tc.body)
			if r.status != tc.status {
				t.Fatalf("= %d %s, want %d", r.status, r.body, tc.status)
			}
			if ae := r.apiErr(t); ae.Code != tc.code || ae.Details["field"] != tc.field {
				t.Errorf("code %s field %v (%s), want %s field %s", ae.Code, ae.Details["field"], ae.Message, tc.code, tc.field)
			}
			if diff := cmp.Diff(before, e.netCounts()); diff != "" {
				t.Errorf("a refused request changed state:\n%s", diff)
			}
		})
	}
}

// TestAllowedAddressPairs: pairs are validated, stored in canonical form,
// replaced by PATCH, resolved into the host's state (with the port's MAC
// when none is given) and count as remote group members' addresses.
func TestAllowedAddressPairs(t *testing.T) {
	e := newNetEnv(t)
	var a, b types.Port
	e.must(201, "POST", "/v1/ports", map[string]any{"network": "blue", "project": "games", "host_id": "hv1",
		"allowed_address_pairs": []map[string]any{{"ip_address": "10.77.0.100"}, {"ip_address": "10.77.0.128/30", "mac_address": "02:AA:00:00:00:01"}}}, &a)
	want := []types.AddressPair{{IPAddress: "10.77.0.100"}, {IPAddress: "10.77.0.128/30", MACAddress: "02:aa:00:00:00:01"}}
	if diff := cmp.Diff(want, a.AllowedAddressPairs); diff != "" {
		t.Errorf("stored pairs (-want +got):\n%s", diff)
	}
	e.must(201, "POST", "/v1/ports", types.PortCreate{Network: "blue", Project: "games", Host: "hv1"}, &b)
	if b.AllowedAddressPairs == nil || len(b.AllowedAddressPairs) != 0 {
		t.Errorf("a port without pairs shows %#v, want []", b.AllowedAddressPairs)
	}
	var hn types.HostNetwork
	e.must(200, "GET", "/v1/hosts/hv1/network", nil, &hn)
	var bp types.BoundPort
	var rules []types.ResolvedRule
	for _, p := range hn.Ports {
		if p.ID == a.ID {
			bp = p
		}
		if p.ID == b.ID {
			rules = p.Rules
		}
	}
	wantBound := []types.AddressPair{{IPAddress: "10.77.0.100/32", MACAddress: a.MACAddress}, {IPAddress: "10.77.0.128/30", MACAddress: "02:aa:00:00:00:01"}}
	if diff := cmp.Diff(wantBound, bp.AllowedAddressPairs); diff != "" {
		t.Errorf("bound pairs (-want +got):\n%s", diff)
	}
	// b's default group allows ingress from its members: a's VIP is one.
	found := false
	for _, r := range rules {
		for _, c := range r.RemoteCIDRs {
			found = found || c == "10.77.0.100/32"
		}
	}
	if !found {
		t.Errorf("b's rules %+v do not name a's VIP 10.77.0.100/32 as a member address", rules)
	}
	// PATCH replaces; [] removes.
	var moved types.Port
	e.must(200, "PATCH", "/v1/ports/"+b.ID, map[string]any{"allowed_address_pairs": []map[string]any{{"ip_address": "10.77.0.100"}}}, &moved)
	if len(moved.AllowedAddressPairs) != 1 || moved.AllowedAddressPairs[0].IPAddress != "10.77.0.100" {
		t.Errorf("patched pairs = %+v", moved.AllowedAddressPairs)
	}
	e.must(200, "PATCH", "/v1/ports/"+a.ID, map[string]any{"allowed_address_pairs": []any{}}, &moved)
	if len(moved.AllowedAddressPairs) != 0 {
		t.Errorf("pairs after PATCH [] = %+v", moved.AllowedAddressPairs)
	}
	// A name-only PATCH keeps them.
	e.must(200, "PATCH", "/v1/ports/"+b.ID, map[string]any{"name": "lb2"}, &moved)
	if len(moved.AllowedAddressPairs) != 1 {
		t.Errorf("a name PATCH dropped the pairs: %+v", moved.AllowedAddressPairs)
	}

	eleven := make([]map[string]any, 11)
	for i := range eleven {
		eleven[i] = map[string]any{"ip_address": "10.77.1." + string(rune('1'+i%9)) + "0"}
	}
	member := e.token("member", "games")
	pairs := func(p ...map[string]any) map[string]any {
		return map[string]any{"network": "blue", "project": "games", "allowed_address_pairs": p}
	}
	for _, tc := range []struct {
		name, token string
		body        any
		field       string
		code        string
	}{
		{"too many", e.admin, pairs(eleven...), "allowed_address_pairs", ""},
		{"no address", e.admin, pairs(map[string]any{"mac_address": "02:00:00:00:00:01"}), "allowed_address_pairs[0].ip_address", ""},
		{"garbage address", e.admin, pairs(map[string]any{"ip_address": "ten"}), "allowed_address_pairs[0].ip_address", ""},
		{"ipv6", e.admin, pairs(map[string]any{"ip_address": "fd00::1"}), "allowed_address_pairs[0].ip_address", ""},
		{"multicast", e.admin, pairs(map[string]any{"ip_address": "224.0.0.5"}), "allowed_address_pairs[0].ip_address", ""},
		{"cidr with host bits", e.admin, pairs(map[string]any{"ip_address": "10.77.0.5/24"}), "allowed_address_pairs[0].ip_address", ""},
		{"multicast mac", e.admin, pairs(map[string]any{"ip_address": "10.77.0.9", "mac_address": "01:00:5e:00:00:01"}), "allowed_address_pairs[0].mac_address", ""},
		{"member with a vendor mac", member, pairs(map[string]any{"ip_address": "10.77.0.9", "mac_address": "00:11:22:33:44:55"}), "allowed_address_pairs[0].mac_address", ""},
		{"twice", e.admin, pairs(map[string]any{"ip_address": "10.77.0.9"}, map[string]any{"ip_address": "10.77.0.9"}), "allowed_address_pairs[1]", ""},
		{"null pair", e.admin, map[string]any{"network": "blue", "project": "games", "allowed_address_pairs": []any{nil}}, "allowed_address_pairs[0].ip_address", ""},
		{"NUL byte", e.admin, pairs(map[string]any{"ip_address": "10.77.0.9\x00"}), "allowed_address_pairs[0].ip_address", types.CodeInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.netCounts()
			r := e.call(tc.token, "POST", "/v1/ports", tc.body)
			if r.status != 400 {
				t.Fatalf("= %d %s, want 400", r.status, r.body)
			}
			if tc.code == "" {
				tc.code = types.CodeInvalidArgument
			}
			if ae := r.apiErr(t); ae.Code != tc.code || ae.Details["field"] != tc.field {
				t.Errorf("code %s field %v (%s), want %s field %s", ae.Code, ae.Details["field"], ae.Message, tc.code, tc.field)
			}
			if diff := cmp.Diff(before, e.netCounts()); diff != "" {
				t.Errorf("a refused request changed state:\n%s", diff)
			}
			// The same on PATCH, and the port keeps its pairs.
			body := tc.body.(map[string]any)
			r = e.call(tc.token, "PATCH", "/v1/ports/"+b.ID, map[string]any{"allowed_address_pairs": body["allowed_address_pairs"]})
			if r.status != 400 || r.apiErr(t).Details["field"] != tc.field {
				t.Errorf("PATCH = %d %s, want 400 naming %s", r.status, r.body, tc.field)
			}
		})
	}
	var still types.Port
	e.must(200, "GET", "/v1/ports/"+b.ID, nil, &still)
	if len(still.AllowedAddressPairs) != 1 {
		t.Errorf("refused PATCHes changed the pairs: %+v", still.AllowedAddressPairs)
	}
}
