package storetest

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// RunNetwork runs the networking tests (issue 5) with stores from open:
// static IPAM under concurrency, failsafe deletes, overlap and segment
// checks, and a host's resolved desired state.
func RunNetwork(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, *store.Store)
	}{
		{"ConcurrentAllocation", testConcurrentAllocation},
		{"PoolExhausted", testPoolExhausted},
		{"NetworkInUse", testNetworkInUse},
		{"SubnetRules", testSubnetRules},
		{"HostNetwork", testHostNetwork},
		{"DefaultGroupOnce", testDefaultGroupOnce},
		{"ProjectScope", testProjectScope},
		{"ServerAddresses", testServerAddresses},
		{"AutoDeletePorts", testAutoDeletePorts},
		{"ProviderNetworks", testProviderNetworks},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// netFixture is a project with a VLAN network and one subnet.
type netFixture struct {
	project types.Project
	network types.Network
	subnet  types.Subnet
}

func newNetFixture(t *testing.T, s *store.Store, cidr string, pools ...types.IPRange) netFixture {
	t.Helper()
	var f netFixture
	f.project = must[types.Project](t)(s.CreateProject(ctx, types.ProjectCreate{Name: "netproj"}))
	f.network = must[types.Network](t)(s.CreateNetwork(ctx, types.Network{Name: "net1", ProjectID: f.project.ID,
		SegmentType: types.SegmentVLAN, SegmentID: 100}))
	pfx := netip.MustParsePrefix(cidr)
	gw := pfx.Addr().Next()
	if pools == nil {
		last := pfx.Addr()
		for n := 0; n < (1<<(32-pfx.Bits()))-2; n++ {
			last = last.Next()
		}
		pools = []types.IPRange{{Start: gw.Next().String(), End: last.String()}}
	}
	f.subnet = must[types.Subnet](t)(s.CreateSubnet(ctx, types.Subnet{Name: "sub1", NetworkID: f.network.ID, CIDR: cidr,
		GatewayIP: gw.String(), AllocationPools: pools}))
	return f
}

func (f netFixture) port(name string, groups ...string) store.PortSpec {
	return store.PortSpec{Port: types.Port{Name: name, NetworkID: f.network.ID, ProjectID: f.project.ID, SecurityGroups: groups},
		IPs: []types.FixedIP{{SubnetID: f.subnet.ID}}}
}

// createConcurrently creates n ports at once and returns those made and
// the errors.
func createConcurrently(s *store.Store, f netFixture, n int) ([]types.Port, []error) {
	var mu sync.Mutex
	var ports []types.Port
	var errs []error
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p, err := s.CreatePort(ctx, f.port(fmt.Sprintf("p-%d", i)))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ports = append(ports, p)
		}(i)
	}
	wg.Wait()
	return ports, errs
}

// testConcurrentAllocation: 200 concurrent creates on a /24 get 200
// distinct addresses inside the pool, and deleting them leaks nothing.
func testConcurrentAllocation(t *testing.T, s *store.Store) {
	f := newNetFixture(t, s, "10.20.0.0/24")
	ports, errs := createConcurrently(s, f, 200)
	for _, err := range errs {
		t.Errorf("create: %v", err)
	}
	if len(ports) != 200 {
		t.Fatalf("created %d ports, want 200", len(ports))
	}
	pool := f.subnet.AllocationPools[0]
	lo, hi := netip.MustParseAddr(pool.Start), netip.MustParseAddr(pool.End)
	seen := map[string]string{}
	macs := map[string]bool{}
	for _, p := range ports {
		if len(p.FixedIPs) != 1 {
			t.Fatalf("port %s has %d addresses", p.ID, len(p.FixedIPs))
		}
		ip := p.FixedIPs[0].IPAddress
		if other, dup := seen[ip]; dup {
			t.Errorf("address %s given to %s and %s", ip, other, p.ID)
		}
		seen[ip] = p.ID
		a := netip.MustParseAddr(ip)
		if a.Compare(lo) < 0 || a.Compare(hi) > 0 {
			t.Errorf("address %s outside the pool %s-%s", ip, pool.Start, pool.End)
		}
		if macs[p.MACAddress] {
			t.Errorf("MAC %s given twice", p.MACAddress)
		}
		macs[p.MACAddress] = true
	}
	got := must[[]string](t)(s.AllocatedAddresses(ctx, f.subnet.ID))
	if len(got) != 200 {
		t.Errorf("allocations in the store = %d, want 200", len(got))
	}
	// The subnet refuses deletion while addresses are allocated.
	var inUse *store.InUseError
	if err := s.DeleteSubnet(ctx, f.subnet.ID, 0); !errors.As(err, &inUse) || inUse.Count != 200 || inUse.Kind != "subnet" {
		t.Errorf("delete subnet with 200 allocations: %v, want InUseError counting 200", err)
	}
	var wg sync.WaitGroup
	for _, p := range ports {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			if _, err := s.DeletePort(ctx, id, 0); err != nil {
				t.Errorf("delete %s: %v", id, err)
			}
		}(p.ID)
	}
	wg.Wait()
	if got := must[[]string](t)(s.AllocatedAddresses(ctx, f.subnet.ID)); len(got) != 0 {
		t.Errorf("allocations left after deleting every port: %v", got)
	}
	must0(t, s.DeleteSubnet(ctx, f.subnet.ID, 0))
}

// testPoolExhausted: a pool of 13 addresses serves 13 of 20 concurrent
// creates; the other 7 fail cleanly with ErrPoolExhausted, and a released
// address is handed out again.
func testPoolExhausted(t *testing.T, s *store.Store) {
	f := newNetFixture(t, s, "10.30.0.0/28")
	ports, errs := createConcurrently(s, f, 20)
	if len(ports) != 13 || len(errs) != 7 {
		t.Fatalf("created %d, failed %d; want 13 and 7", len(ports), len(errs))
	}
	for _, err := range errs {
		if !errors.Is(err, store.ErrPoolExhausted) {
			t.Errorf("error = %v, want ErrPoolExhausted", err)
		}
	}
	gone := must[types.Port](t)(s.DeletePort(ctx, ports[4].ID, 0))
	again := must[types.Port](t)(s.CreatePort(ctx, f.port("again")))
	if again.FixedIPs[0].IPAddress != gone.FixedIPs[0].IPAddress {
		t.Errorf("released %s, next create got %s", gone.FixedIPs[0].IPAddress, again.FixedIPs[0].IPAddress)
	}
	// A fixed address already taken is refused, not duplicated.
	spec := f.port("dup")
	spec.IPs[0].IPAddress = again.FixedIPs[0].IPAddress
	if _, err := s.CreatePort(ctx, spec); !errors.Is(err, store.ErrAddressInUse) {
		t.Errorf("create with a taken address: %v, want ErrAddressInUse", err)
	}
}

// testNetworkInUse: a network with ports cannot be deleted; without them
// it goes with its subnets.
func testNetworkInUse(t *testing.T, s *store.Store) {
	f := newNetFixture(t, s, "10.40.0.0/24")
	p := must[types.Port](t)(s.CreatePort(ctx, f.port("web")))
	var inUse *store.InUseError
	err := s.DeleteNetwork(ctx, f.network.ID, 0)
	if !errors.As(err, &inUse) {
		t.Fatalf("delete network with a port: %v, want InUseError", err)
	}
	if diff := cmp.Diff([]types.Ref{{Kind: "port", ID: p.ID, Name: "web"}}, inUse.Users); diff != "" {
		t.Errorf("used_by (-want +got):\n%s", diff)
	}
	must[types.Port](t)(s.DeletePort(ctx, p.ID, 0))
	must0(t, s.DeleteNetwork(ctx, f.network.ID, 0))
	if _, err := s.GetSubnet(ctx, f.subnet.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("subnet after its network's delete: %v, want ErrNotFound", err)
	}
}

// testSubnetRules: overlapping subnets of one network are refused (in
// another network they are fine), and so is a second network on a segment.
func testSubnetRules(t *testing.T, s *store.Store) {
	f := newNetFixture(t, s, "10.50.0.0/24")
	var ov *store.SubnetOverlapError
	_, err := s.CreateSubnet(ctx, types.Subnet{Name: "inner", NetworkID: f.network.ID, CIDR: "10.50.0.128/25"})
	if !errors.As(err, &ov) || ov.OtherID != f.subnet.ID {
		t.Errorf("overlapping subnet: %v, want SubnetOverlapError naming %s", err, f.subnet.ID)
	}
	must[types.Subnet](t)(s.CreateSubnet(ctx, types.Subnet{Name: "beside", NetworkID: f.network.ID, CIDR: "10.51.0.0/24"}))
	if _, err := s.CreateNetwork(ctx, types.Network{Name: "twin", SegmentType: types.SegmentVLAN, SegmentID: 100}); !errors.Is(err, store.ErrSegmentInUse) {
		t.Errorf("second network on VLAN 100: %v, want ErrSegmentInUse", err)
	}
	other := must[types.Network](t)(s.CreateNetwork(ctx, types.Network{Name: "other", SegmentType: types.SegmentVXLAN, SegmentID: 100}))
	must[types.Subnet](t)(s.CreateSubnet(ctx, types.Subnet{Name: "same-cidr", NetworkID: other.ID, CIDR: "10.50.0.0/24"}))
	gen1 := must[int64](t)(s.NetworkGeneration(ctx))
	must[types.Port](t)(s.CreatePort(ctx, f.port("bump")))
	if gen2 := must[int64](t)(s.NetworkGeneration(ctx)); gen2 <= gen1 {
		t.Errorf("generation %d after a port create, was %d", gen2, gen1)
	}
}

// testHostNetwork: a host's state has its bound ports with prefixes, the
// gateway, rules with remote groups expanded to member addresses, and the
// tunnel endpoints of other hosts on its VXLAN networks.
func testHostNetwork(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	h1 := must[types.Host](t)(hostOf(s, f, "hv1"))
	h2 := must[types.Host](t)(hostOf(s, f, "hv2"))
	nf := newNetFixture(t, s, "10.60.0.0/24")
	vx := must[types.Network](t)(s.CreateNetwork(ctx, types.Network{Name: "overlay", SegmentType: types.SegmentVXLAN, SegmentID: 5001}))
	vsub := must[types.Subnet](t)(s.CreateSubnet(ctx, types.Subnet{Name: "vsub", NetworkID: vx.ID, CIDR: "10.61.0.0/24",
		AllocationPools: []types.IPRange{{Start: "10.61.0.10", End: "10.61.0.20"}}}))
	web := must[types.SecurityGroup](t)(s.CreateSecurityGroup(ctx, types.SecurityGroup{Name: "web", ProjectID: nf.project.ID}))
	ssh := must[types.SecurityGroup](t)(s.CreateSecurityGroup(ctx, types.SecurityGroup{Name: "ssh", ProjectID: nf.project.ID,
		Rules: []types.SecurityGroupRule{
			{Direction: types.DirectionIngress, Protocol: types.ProtocolTCP, PortRangeMin: 22, PortRangeMax: 22, RemoteCIDR: "192.0.2.0/24"},
			{Direction: types.DirectionIngress, Protocol: types.ProtocolTCP, PortRangeMin: 80, PortRangeMax: 80, RemoteGroupID: web.ID},
		}}))
	spec := nf.port("a", ssh.ID)
	spec.Port.HostID = h1.ID
	a := must[types.Port](t)(s.CreatePort(ctx, spec))
	w := nf.port("w", web.ID)
	w.Port.HostID = h2.ID
	wp := must[types.Port](t)(s.CreatePort(ctx, w))
	vspec := store.PortSpec{Port: types.Port{NetworkID: vx.ID, ProjectID: nf.project.ID, HostID: h1.ID}, IPs: []types.FixedIP{{SubnetID: vsub.ID}}}
	v1 := must[types.Port](t)(s.CreatePort(ctx, vspec))
	vspec.Port.HostID = h2.ID
	must[types.Port](t)(s.CreatePort(ctx, vspec))
	must0(t, s.SetTunnelEndpoint(ctx, h2.ID, "192.0.2.2"))
	must0(t, s.SetTunnelEndpoint(ctx, h1.ID, "192.0.2.1"))

	got := must[types.HostNetwork](t)(s.HostNetwork(ctx, h1.ID))
	want := types.HostNetwork{HostID: h1.ID, Ports: []types.BoundPort{
		{ID: a.ID, NetworkID: nf.network.ID, SegmentType: "vlan", SegmentID: 100, MACAddress: a.MACAddress,
			IPs: []string{a.FixedIPs[0].IPAddress + "/24"}, Gateway: "10.60.0.1", Rules: []types.ResolvedRule{
				{Direction: "ingress", Protocol: "tcp", PortRangeMin: 22, PortRangeMax: 22, RemoteCIDRs: []string{"192.0.2.0/24"}},
				{Direction: "ingress", Protocol: "tcp", PortRangeMin: 80, PortRangeMax: 80, RemoteCIDRs: []string{wp.FixedIPs[0].IPAddress + "/32"}},
			}},
		{ID: v1.ID, NetworkID: vx.ID, SegmentType: "vxlan", SegmentID: 5001, MACAddress: v1.MACAddress,
			IPs: []string{"10.61.0.10/24"}, Rules: []types.ResolvedRule{}},
	}, Tunnels: []types.Tunnel{{HostID: h2.ID, IP: "192.0.2.2", VNIs: []int64{5001}}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("host network (-want +got):\n%s", diff)
	}
	// Moving the web port off its group empties the remote group.
	none := []string{}
	must[types.Port](t)(s.UpdatePort(ctx, wp.ID, 0, store.PortChange{SecurityGroups: &none}))
	got = must[types.HostNetwork](t)(s.HostNetwork(ctx, h1.ID))
	if r := got.Ports[0].Rules[1]; len(r.RemoteCIDRs) != 0 {
		t.Errorf("remote group without members resolves to %v, want none", r.RemoteCIDRs)
	}
	// A group in use is not deleted.
	var inUse *store.InUseError
	if err := s.DeleteSecurityGroup(ctx, web.ID, 0); !errors.As(err, &inUse) || inUse.Users[0].ID != ssh.ID {
		t.Errorf("delete a group other rules name: %v", err)
	}
}

func hostOf(s *store.Store, f fixture, name string) (types.Host, error) {
	h, _, err := s.RegisterHost(ctx, types.HostRegister{Name: name, Inventory: types.Inventory{CPUs: 8, RAMMiB: 8192}},
		store.HostPlacement{RegionID: f.region.ID, ZoneID: f.zone.ID})
	return h, err
}

// testDefaultGroupOnce: concurrent first ports of a project agree on one
// default group.
func testDefaultGroupOnce(t *testing.T, s *store.Store) {
	p := must[types.Project](t)(s.CreateProject(ctx, types.ProjectCreate{Name: "fresh"}))
	ids := make([]string, 16)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			g, err := s.EnsureDefaultSecurityGroup(ctx, p.ID)
			if err != nil {
				t.Error(err)
			}
			ids[i] = g.ID
		}(i)
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("default groups %v, want one", ids)
		}
	}
	g := must[types.SecurityGroup](t)(s.GetSecurityGroup(ctx, ids[0]))
	if len(g.Rules) != 2 || g.Rules[1].RemoteGroupID != g.ID && g.Rules[0].RemoteGroupID != g.ID {
		t.Errorf("default group rules = %+v, want egress all and ingress from itself", g.Rules)
	}
}
