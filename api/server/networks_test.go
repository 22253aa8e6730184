package server

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// netEnv is a project with a VLAN network and a /24 subnet, and a
// registered host with its agent token.
type netEnv struct {
	*env
	project types.Project
	network types.Network
	subnet  types.Subnet
	host    types.Host
	agent   string
}

func newNetEnv(t *testing.T) netEnv {
	t.Helper()
	return netEnvOn(newEnv(t))
}

func netEnvOn(e *env) netEnv {
	e.t.Helper()
	n := netEnv{env: e}
	e.must(201, "POST", "/v1/regions", types.RegionCreate{Name: "dc1"}, nil)
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, nil)
	e.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "games"}, &n.project)
	e.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "blue", SegmentType: "vlan", SegmentID: 100}, &n.network)
	e.must(201, "POST", "/v1/subnets", types.SubnetCreate{Name: "blue-v4", Network: "blue", CIDR: "10.77.0.0/24",
		DNSServers: []string{"10.77.0.53"}}, &n.subnet)
	var reg types.HostRegistration
	e.must(200, "POST", "/v1/hosts/register", types.HostRegister{Name: "hv1", Region: "dc1", Zone: "rack1",
		Inventory: types.Inventory{CPUs: 8, RAMMiB: 16384, DiskGiB: 100}}, &reg)
	n.host, n.agent = reg.Host, reg.Token
	return n
}

// TestNetworkResources covers the defaults, a port's life (bound, moved,
// unbound) and the failsafe deletes of networks, subnets and groups.
func TestNetworkResources(t *testing.T) {
	e := newNetEnv(t)
	wantPools := []types.IPRange{{Start: "10.77.0.2", End: "10.77.0.254"}}
	if e.subnet.GatewayIP != "10.77.0.1" || !cmp.Equal(e.subnet.AllocationPools, wantPools) {
		t.Errorf("subnet defaults: gateway %s pools %v, want 10.77.0.1 and %v", e.subnet.GatewayIP, e.subnet.AllocationPools, wantPools)
	}
	var p types.Port
	r := e.must(201, "POST", "/v1/ports", types.PortCreate{Name: "web", Network: "blue", Project: "games", Host: "hv1"}, &p)
	if r.header.Get("Location") != "/v1/ports/"+p.ID || r.header.Get("ETag") != `"1"` {
		t.Errorf("Location %q ETag %q", r.header.Get("Location"), r.header.Get("ETag"))
	}
	if len(p.FixedIPs) != 1 || p.FixedIPs[0].IPAddress != "10.77.0.2" || p.HostID != e.host.ID || len(p.SecurityGroups) != 1 {
		t.Fatalf("port = %+v; want 10.77.0.2 on hv1 in the default group", p)
	}
	var def types.SecurityGroup
	e.must(200, "GET", "/v1/security-groups/"+p.SecurityGroups[0], nil, &def)
	if def.Name != types.DefaultSecurityGroup || def.ProjectID != e.project.ID || len(def.Rules) != 2 {
		t.Errorf("default group = %+v", def)
	}
	// Moving the port to another host keeps its MAC and address.
	var reg types.HostRegistration
	e.must(200, "POST", "/v1/hosts/register", types.HostRegister{Name: "bm7", Region: "dc1", Zone: "rack1",
		Inventory: types.Inventory{CPUs: 8, RAMMiB: 16384}}, &reg)
	var moved types.Port
	e.must(200, "PATCH", "/v1/ports/"+p.ID, map[string]any{"host_id": "bm7"}, &moved)
	if moved.HostID != reg.Host.ID || moved.MACAddress != p.MACAddress || !cmp.Equal(moved.FixedIPs, p.FixedIPs) || moved.Revision != 2 {
		t.Errorf("moved port = %+v, was %+v", moved, p)
	}
	if r := e.call(e.admin, "PATCH", "/v1/ports/"+p.ID, map[string]any{"host_id": ""}, "If-Match", `"1"`); r.status != 412 {
		t.Errorf("stale If-Match on a port = %d %s", r.status, r.body)
	}
	// Failsafe deletes name what is in the way.
	for _, tc := range []struct{ path, code string }{
		{"/v1/networks/" + e.network.ID, types.CodeNetworkInUse},
		{"/v1/subnets/" + e.subnet.ID, types.CodeSubnetInUse},
		{"/v1/security-groups/" + def.ID, types.CodeSecurityGroupInUse},
	} {
		r := e.call(e.admin, "DELETE", tc.path, nil)
		if r.status != 409 {
			t.Fatalf("DELETE %s = %d %s, want 409", tc.path, r.status, r.body)
		}
		ae := r.apiErr(t)
		users, _ := ae.Details["used_by"].([]any)
		if ae.Code != tc.code || len(users) != 1 || users[0].(map[string]any)["id"] != p.ID {
			t.Errorf("DELETE %s: %s %v, want %s used_by port %s", tc.path, ae.Code, ae.Details, tc.code, p.ID)
		}
	}
	e.must(204, "DELETE", "/v1/ports/"+p.ID, nil, nil)
	var left []string
	left, _ = e.store.AllocatedAddresses(context.Background(), e.subnet.ID)
	if len(left) != 0 {
		t.Errorf("addresses left after the port's delete: %v", left)
	}
	e.must(204, "DELETE", "/v1/security-groups/"+def.ID, nil, nil)
	e.must(204, "DELETE", "/v1/subnets/"+e.subnet.ID, nil, nil)
	e.must(204, "DELETE", "/v1/networks/"+e.network.ID, nil, nil)
}

// TestNetworkBadInput: invalid networks, subnets, ports and rules are
// refused with 400 (or 409 for a taken segment), the code and the field at
// fault.
func TestNetworkBadInput(t *testing.T) {
	e := newNetEnv(t)
	var sg types.SecurityGroup
	e.must(201, "POST", "/v1/security-groups", types.SecurityGroupCreate{Name: "web", Project: "games"}, &sg)
	rules := "/v1/security-groups/" + sg.ID + "/rules"
	subnet := func(cidr, gw string, pools ...types.IPRange) types.SubnetCreate {
		return types.SubnetCreate{Name: "s", Network: "blue", CIDR: cidr, GatewayIP: gw, AllocationPools: pools}
	}
	for _, tc := range []struct {
		name, path string
		body       any
		status     int
		code       string
		field      string
	}{
		{"overlapping subnet", "/v1/subnets", subnet("10.77.0.128/25", ""), 400, types.CodeInvalidArgument, "cidr"},
		{"overlapping supernet", "/v1/subnets", subnet("10.76.0.0/15", ""), 400, types.CodeInvalidArgument, "cidr"},
		{"gateway outside the cidr", "/v1/subnets", subnet("10.88.0.0/24", "10.89.0.1"), 400, types.CodeInvalidArgument, "gateway_ip"},
		{"gateway is the broadcast", "/v1/subnets", subnet("10.88.0.0/24", "10.88.0.255"), 400, types.CodeInvalidArgument, "gateway_ip"},
		{"cidr not a cidr", "/v1/subnets", subnet("10.88.0.0/33", ""), 400, types.CodeInvalidArgument, "cidr"},
		{"cidr garbage", "/v1/subnets", subnet("ten.88/24", ""), 400, types.CodeInvalidArgument, "cidr"},
		{"cidr with host bits", "/v1/subnets", subnet("10.88.0.7/24", ""), 400, types.CodeInvalidArgument, "cidr"},
		{"cidr ipv6", "/v1/subnets", subnet("fd00::/64", ""), 400, types.CodeInvalidArgument, "cidr"},
		{"cidr too small", "/v1/subnets", subnet("10.88.0.0/31", ""), 400, types.CodeInvalidArgument, "cidr"},
		{"pool outside the cidr", "/v1/subnets", subnet("10.88.0.0/24", "", types.IPRange{Start: "10.88.0.10", End: "10.88.1.10"}),
			400, types.CodeInvalidArgument, "allocation_pools[0].end"},
		{"pool reversed", "/v1/subnets", subnet("10.88.0.0/24", "", types.IPRange{Start: "10.88.0.20", End: "10.88.0.10"}),
			400, types.CodeInvalidArgument, "allocation_pools[0]"},
		{"pool holds the gateway", "/v1/subnets", subnet("10.88.0.0/24", "", types.IPRange{Start: "10.88.0.1", End: "10.88.0.10"}),
			400, types.CodeInvalidArgument, "allocation_pools[0]"},
		{"pools overlap", "/v1/subnets", subnet("10.88.0.0/24", "", types.IPRange{Start: "10.88.0.10", End: "10.88.0.20"},
			types.IPRange{Start: "10.88.0.15", End: "10.88.0.30"}), 400, types.CodeInvalidArgument, "allocation_pools[1]"},
		{"unknown network", "/v1/subnets", types.SubnetCreate{Name: "s", Network: "nope", CIDR: "10.88.0.0/24"}, 400, types.CodeInvalidReference, "network"},
		{"bad dns", "/v1/subnets", types.SubnetCreate{Name: "s", Network: "blue", CIDR: "10.88.0.0/24", DNSServers: []string{"dns"}},
			400, types.CodeInvalidArgument, "dns_servers"},
		{"vlan out of range", "/v1/networks", types.NetworkCreate{Name: "n", SegmentType: "vlan", SegmentID: 4095}, 400, types.CodeInvalidArgument, "segment_id"},
		{"vni out of range", "/v1/networks", types.NetworkCreate{Name: "n", SegmentType: "vxlan", SegmentID: 1 << 24}, 400, types.CodeInvalidArgument, "segment_id"},
		{"unknown segment type", "/v1/networks", types.NetworkCreate{Name: "n", SegmentType: "gre", SegmentID: 5}, 400, types.CodeInvalidArgument, "segment_type"},
		{"segment taken", "/v1/networks", types.NetworkCreate{Name: "n", SegmentType: "vlan", SegmentID: 100}, 409, types.CodeSegmentInUse, "segment_id"},
		{"port address outside the subnet", "/v1/ports", types.PortCreate{Network: "blue", Project: "games",
			FixedIPs: []types.FixedIPRequest{{Subnet: "blue-v4", IPAddress: "10.99.0.5"}}}, 400, types.CodeInvalidArgument, "fixed_ips[0].ip_address"},
		{"port address is the gateway", "/v1/ports", types.PortCreate{Network: "blue", Project: "games",
			FixedIPs: []types.FixedIPRequest{{Subnet: "blue-v4", IPAddress: "10.77.0.1"}}}, 400, types.CodeInvalidArgument, "fixed_ips[0].ip_address"},
		{"port bad mac", "/v1/ports", types.PortCreate{Network: "blue", Project: "games", MACAddress: "01:00:5e:00:00:01"},
			400, types.CodeInvalidArgument, "mac_address"},
		{"port unknown host", "/v1/ports", types.PortCreate{Network: "blue", Project: "games", Host: "nowhere"}, 400, types.CodeInvalidReference, "host_id"},
		{"port unknown group", "/v1/ports", map[string]any{"network": "blue", "project": "games", "security_groups": []string{"nope"}},
			400, types.CodeInvalidReference, "security_groups"},
		{"rule port range reversed", rules, types.SecurityGroupRuleCreate{Direction: "ingress", Protocol: "tcp", PortRangeMin: 80, PortRangeMax: 22},
			400, types.CodeInvalidArgument, "port_range_max"},
		{"rule port above 65535", rules, types.SecurityGroupRuleCreate{Direction: "ingress", Protocol: "udp", PortRangeMin: 1, PortRangeMax: 70000},
			400, types.CodeInvalidArgument, "port_range_max"},
		{"rule port 0 with a max", rules, types.SecurityGroupRuleCreate{Direction: "ingress", Protocol: "tcp", PortRangeMin: 0, PortRangeMax: 22},
			400, types.CodeInvalidArgument, "port_range_min"},
		{"rule ports on icmp", rules, types.SecurityGroupRuleCreate{Direction: "ingress", Protocol: "icmp", PortRangeMin: 8},
			400, types.CodeInvalidArgument, "port_range_min"},
		{"rule bad direction", rules, types.SecurityGroupRuleCreate{Direction: "inbound"}, 400, types.CodeInvalidArgument, "direction"},
		{"rule bad protocol", rules, types.SecurityGroupRuleCreate{Direction: "ingress", Protocol: "sctp"}, 400, types.CodeInvalidArgument, "protocol"},
		{"rule bad cidr", rules, types.SecurityGroupRuleCreate{Direction: "ingress", RemoteCIDR: "10.0.0.300/24"}, 400, types.CodeInvalidArgument, "remote_cidr"},
		{"rule cidr and group", rules, types.SecurityGroupRuleCreate{Direction: "ingress", RemoteCIDR: "10.0.0.0/24", RemoteGroup: "web"},
			400, types.CodeInvalidArgument, "remote_group_id"},
		{"rule in a create", "/v1/security-groups", types.SecurityGroupCreate{Name: "x", Project: "games",
			Rules: []types.SecurityGroupRuleCreate{{Direction: "egress", Protocol: "tcp", PortRangeMin: 9, PortRangeMax: 8}}},
			400, types.CodeInvalidArgument, "rules[0].port_range_max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.netCounts()
			r := e.call(e.admin, "POST", tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("= %d %s, want %d", r.status, r.body, tc.status)
			}
			ae := r.apiErr(t)
			if ae.Code != tc.code || ae.Details["field"] != tc.field {
				t.Errorf("code %s field %v (%s), want %s field %s", ae.Code, ae.Details["field"], ae.Message, tc.code, tc.field)
			}
			if diff := cmp.Diff(before, e.netCounts()); diff != "" {
				t.Errorf("a refused request changed state:\n%s", diff)
			}
		})
	}
}

// netCounts counts networking objects, to prove a refusal changed nothing.
func (e netEnv) netCounts() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	for _, p := range []string{"networks", "subnets", "ports", "security-groups"} {
		var l types.List[map[string]any]
		e.must(200, "GET", "/v1/"+p+"?limit=1000", nil, &l)
		out[p] = len(l.Items)
		if p == "security-groups" {
			for _, g := range l.Items {
				out["rules"] += len(g["rules"].([]any))
			}
		}
	}
	return out
}

// TestPortsConcurrentHTTP: 200 concurrent creates over HTTP on a /24 get
// 200 distinct addresses from the pool; a full /28 answers 409
// ip_pool_exhausted; deleting every port releases every address.
func TestPortsConcurrentHTTP(t *testing.T) {
	e := newNetEnv(t)
	var mu sync.Mutex
	addrs := map[string]bool{}
	var ids []string
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := e.call(e.admin, "POST", "/v1/ports", types.PortCreate{Name: fmt.Sprintf("p%d", i), Network: "blue", Project: "games"})
			if r.status != 201 {
				t.Errorf("create %d = %d %s", i, r.status, r.body)
				return
			}
			var p types.Port
			r.decode(t, &p)
			mu.Lock()
			defer mu.Unlock()
			ip := p.FixedIPs[0].IPAddress
			if addrs[ip] {
				t.Errorf("address %s given twice", ip)
			}
			addrs[ip] = true
			ids = append(ids, p.ID)
		}(i)
	}
	wg.Wait()
	pool := netip.MustParsePrefix("10.77.0.0/24")
	for ip := range addrs {
		if a := netip.MustParseAddr(ip); !pool.Contains(a) || ip == "10.77.0.1" || ip == "10.77.0.0" || ip == "10.77.0.255" {
			t.Errorf("address %s outside the pool", ip)
		}
	}
	if len(addrs) != 200 {
		t.Fatalf("%d distinct addresses, want 200", len(addrs))
	}
	// A small subnet runs out with a clean 409.
	e.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "tiny", SegmentType: "vxlan", SegmentID: 7}, nil)
	e.must(201, "POST", "/v1/subnets", types.SubnetCreate{Name: "tiny-v4", Network: "tiny", CIDR: "10.78.0.0/30"}, nil)
	e.must(201, "POST", "/v1/ports", types.PortCreate{Network: "tiny", Project: "games"}, nil)
	r := e.call(e.admin, "POST", "/v1/ports", types.PortCreate{Network: "tiny", Project: "games"})
	if r.status != 409 || r.apiErr(t).Code != types.CodeIPPoolExhausted {
		t.Errorf("create on a full subnet = %d %s, want 409 ip_pool_exhausted", r.status, r.body)
	}
	for _, id := range ids {
		e.must(204, "DELETE", "/v1/ports/"+id, nil, nil)
	}
	if left, _ := e.store.AllocatedAddresses(context.Background(), e.subnet.ID); len(left) != 0 {
		t.Errorf("%d addresses leaked", len(left))
	}
}

// TestHostNetworkWatch: an agent reads only its own host's network; a watch
// with the current version waits and wakes on a change made through this
// replica or through another one sharing the database; a timeout answers
// the same version.
func TestHostNetworkWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corral.db")
	st, err := store.Open(context.Background(), store.Config{SQLitePath: path})
	if err != nil {
		t.Fatal(err)
	}
	e := netEnvOn(newEnvStore(t, st, ""))
	url := "/v1/hosts/" + e.host.ID + "/network"
	if r := e.call(e.agent, "GET", url, nil); r.status != 200 {
		t.Fatalf("agent reads own network = %d %s", r.status, r.body)
	}
	var other types.HostRegistration
	e.must(200, "POST", "/v1/hosts/register", types.HostRegister{Name: "hv2", Region: "dc1", Zone: "rack1",
		Inventory: types.Inventory{CPUs: 8, RAMMiB: 16384}}, &other)
	if r := e.call(e.agent, "GET", "/v1/hosts/"+other.Host.ID+"/network", nil); r.status != 403 {
		t.Errorf("agent reads another host's network = %d, want 403", r.status)
	}
	if r := e.call(e.admin, "GET", url+"?wait=1h", nil); r.status != 400 || r.apiErr(t).Details["field"] != "wait" {
		t.Errorf("wait=1h = %d %s", r.status, r.body)
	}
	var empty types.HostNetwork
	e.must(200, "GET", url, nil, &empty)
	if len(empty.Ports) != 0 || empty.Version == "" {
		t.Fatalf("empty host state = %+v", empty)
	}
	// A timeout answers the same version.
	var same types.HostNetwork
	e.must(200, "GET", url+"?wait=200ms&version="+empty.Version, nil, &same)
	if same.Version != empty.Version {
		t.Errorf("version after a quiet wait = %s, want %s", same.Version, empty.Version)
	}
	// A change through this replica wakes the watch.
	watch := func(version string) chan types.HostNetwork {
		ch := make(chan types.HostNetwork, 1)
		go func() {
			var hn types.HostNetwork
			r := e.call(e.agent, "GET", url+"?wait=20s&version="+version, nil)
			r.decode(t, &hn)
			ch <- hn
		}()
		time.Sleep(100 * time.Millisecond)
		return ch
	}
	ch := watch(empty.Version)
	var p types.Port
	e.must(201, "POST", "/v1/ports", types.PortCreate{Network: "blue", Project: "games", Host: e.host.ID}, &p)
	got := <-ch
	if got.Version == empty.Version || len(got.Ports) != 1 || got.Ports[0].ID != p.ID || got.Ports[0].SegmentID != 100 ||
		got.Ports[0].IPs[0] != "10.77.0.2/24" || got.Ports[0].Gateway != "10.77.0.1" || len(got.Ports[0].Rules) != 2 {
		t.Fatalf("state after a port bound = %+v", got)
	}
	// A rule added through a second replica (same database) is seen.
	st2, err := store.Open(context.Background(), store.Config{SQLitePath: path})
	if err != nil {
		t.Fatal(err)
	}
	e2 := newEnvStore(t, st2, e.admin)
	ch = watch(got.Version)
	e2.must(201, "POST", "/v1/security-groups/"+p.SecurityGroups[0]+"/rules",
		types.SecurityGroupRuleCreate{Direction: "ingress", Protocol: "tcp", PortRangeMin: 22, RemoteCIDR: "192.0.2.0/24"}, nil)
	next := <-ch
	if next.Version == got.Version || len(next.Ports[0].Rules) != 3 {
		t.Errorf("state after a rule added through another replica = %+v", next)
	}
	// The tunnel endpoint is the agent's own to set.
	e.must(204, "PUT", url+"/endpoint", types.TunnelEndpoint{IP: "192.0.2.10"}, nil)
	if r := e.call(e.agent, "PUT", "/v1/hosts/"+other.Host.ID+"/network/endpoint", types.TunnelEndpoint{IP: "192.0.2.11"}); r.status != 403 {
		t.Errorf("agent sets another host's endpoint = %d", r.status)
	}
}
