package server

import (
	"context"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// TestBaremetalNetworks: a bare-metal server created with networks gets
// ordinary ports on them (auto_delete, bound to no host) carrying its
// node's NIC MACs, on nodes with enough NICs; a port plugged in later
// takes the node's next NIC's MAC; once the server is active its ports
// are fixed (409); its delete removes the implicit ports.
func TestBaremetalNetworks(t *testing.T) {
	ne := newNodeEnv(t)
	var tenant, other types.Network
	ne.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "tenant", Project: "p", SegmentType: "vlan", SegmentID: 210}, &tenant)
	ne.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "other", Project: "p", SegmentType: "vlan", SegmentID: 211}, &other)
	ne.must(201, "POST", "/v1/subnets", types.SubnetCreate{Name: "tenant-v4", Network: "tenant", CIDR: "10.90.0.0/24"}, nil)
	n1 := ne.available("bm01", 9631)
	n2 := ne.available("bm02", 9632)

	two := types.ServerCreate{Name: "m1", Kind: types.KindBaremetal, Project: "p", Flavor: "metal", Image: "os", Networks: []string{"tenant", "other"}}
	if r := ne.call(ne.admin, "POST", "/v1/servers", two); r.status != 409 || !strings.Contains(r.apiErr(t).Message, "2 too few nics") {
		t.Errorf("two networks on one-NIC nodes: %d %s", r.status, r.body)
	}
	var srv types.Server
	one := two
	one.Networks = []string{"tenant"}
	ne.must(201, "POST", "/v1/servers", one, &srv)
	var node types.Node
	ne.must(200, "GET", "/v1/nodes/"+srv.NodeID, nil, &node)
	var ports types.List[types.Port]
	ne.must(200, "GET", "/v1/ports?device_id="+srv.ID, nil, &ports)
	if len(ports.Items) != 1 {
		t.Fatalf("ports of the server: %+v", ports.Items)
	}
	p := ports.Items[0]
	if p.MACAddress != node.MACs[0] || p.HostID != "" || !p.AutoDelete || p.NetworkID != tenant.ID || len(p.FixedIPs) != 1 {
		t.Errorf("port = %+v, want the node's MAC %s, no host, auto_delete, an address on %s", p, node.MACs[0], tenant.ID)
	}
	if len(srv.Addresses) != 1 || srv.Addresses[0].IP != p.FixedIPs[0].IPAddress {
		t.Errorf("server addresses %+v, port %+v", srv.Addresses, p.FixedIPs)
	}

	// An explicit port: the node's NICs all have one.
	if r := ne.call(ne.admin, "POST", "/v1/ports", types.PortCreate{Network: "other", Project: "p", Server: srv.ID}); r.status != 400 ||
		r.apiErr(t).Details["field"] != "device_id" {
		t.Errorf("a second port on a one-NIC node: %d %s", r.status, r.body)
	}
	// The other node's server, made without networks, gets one plugged in:
	// an unbound port takes the NIC's MAC when plugged.
	var srv2 types.Server
	one.Name, one.Networks = "m2", nil
	ne.must(201, "POST", "/v1/servers", one, &srv2)
	var free types.Port
	ne.must(201, "POST", "/v1/ports", types.PortCreate{Network: "tenant", Project: "p"}, &free)
	var plugged types.Port
	ne.must(200, "PATCH", "/v1/ports/"+free.ID, types.PortUpdate{Server: &srv2.ID}, &plugged)
	want := map[string]string{n1.ID: n1.MACs[0], n2.ID: n2.MACs[0]}[srv2.NodeID]
	if plugged.MACAddress != want || plugged.HostID != "" || plugged.DeviceID != srv2.ID {
		t.Errorf("plugged port = %+v, want MAC %s", plugged, want)
	}
	host := "somewhere"
	if r := ne.call(ne.admin, "PATCH", "/v1/ports/"+free.ID, types.PortUpdate{Host: &host}); r.status == 200 {
		t.Errorf("a bare-metal port bound to a host: %d %s", r.status, r.body)
	}

	// Active: the switch ports are set; the ports are fixed.
	if _, err := ne.store.UpdateNodeServer(context.Background(), srv2.NodeID, "test", func(_ *store.Tx, n *store.NodeRow) (string, error) {
		n.State, n.Step = types.NodeActive, ""
		return "test", nil
	}, store.MarkServerActive(nil)); err != nil {
		t.Fatal(err)
	}
	if r := ne.call(ne.admin, "DELETE", "/v1/ports/"+free.ID, nil); r.status != 409 || r.apiErr(t).Code != types.CodeConflict {
		t.Errorf("delete the port of an active bare-metal server: %d %s", r.status, r.body)
	}
	empty := ""
	if r := ne.call(ne.admin, "PATCH", "/v1/ports/"+free.ID, types.PortUpdate{Server: &empty}); r.status != 409 {
		t.Errorf("unplug the port of an active bare-metal server: %d %s", r.status, r.body)
	}

	// Delete: the implicit port goes with the server when the node is
	// torn down.
	ne.must(202, "DELETE", "/v1/servers/"+srv.ID, nil, nil)
	if err := ne.cond.Step(context.Background(), srv.NodeID); err != nil {
		t.Fatal(err)
	}
	if r := ne.call(ne.admin, "GET", "/v1/ports/"+p.ID, nil); r.status != 404 {
		t.Errorf("implicit port after the delete: %d %s", r.status, r.body)
	}
}
