package storetest

import (
	"errors"
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// testProviderNetworks: flat networks are one per physical network (the
// partial unique index and the internal segment discriminator work on both
// databases), show segment ID 0, and reach the host's state with their
// physnet; allowed address pairs are stored, replaced and resolved.
func testProviderNetworks(t *testing.T, s *store.Store) {
	f := newFixture(t, s)
	h1 := must[types.Host](t)(hostOf(s, f, "hv1"))
	nf := newNetFixture(t, s, "10.62.0.0/24")
	flat1 := must[types.Network](t)(s.CreateNetwork(ctx, types.Network{Name: "lan", SegmentType: types.SegmentFlat, Physnet: "datacentre"}))
	flat2 := must[types.Network](t)(s.CreateNetwork(ctx, types.Network{Name: "lan2", SegmentType: types.SegmentFlat, Physnet: "storage"}))
	if flat1.SegmentID != 0 || flat2.SegmentID != 0 || flat1.Physnet != "datacentre" {
		t.Errorf("flat networks = %+v, %+v", flat1, flat2)
	}
	if _, err := s.CreateNetwork(ctx, types.Network{Name: "lan3", SegmentType: types.SegmentFlat, Physnet: "datacentre"}); !errors.Is(err, store.ErrSegmentInUse) {
		t.Errorf("second flat network on datacentre: %v, want ErrSegmentInUse", err)
	}
	got := must[types.Network](t)(s.GetNetwork(ctx, "lan2"))
	if got.SegmentID != 0 || got.Physnet != "storage" {
		t.Errorf("GetNetwork(lan2) = %+v", got)
	}
	l := must[types.List[types.Network]](t)(s.ListNetworks(ctx, store.ListOptions{Limit: 10, Filters: map[string]string{"physnet": "storage"}}))
	if len(l.Items) != 1 || l.Items[0].ID != flat2.ID {
		t.Errorf("networks on storage: %+v", l.Items)
	}
	sub := must[types.Subnet](t)(s.CreateSubnet(ctx, types.Subnet{Name: "lan-v4", NetworkID: flat1.ID, CIDR: "10.63.0.0/24",
		AllocationPools: []types.IPRange{{Start: "10.63.0.10", End: "10.63.0.20"}}}))
	fp := must[types.Port](t)(s.CreatePort(ctx, store.PortSpec{Port: types.Port{NetworkID: flat1.ID, ProjectID: nf.project.ID, HostID: h1.ID},
		IPs: []types.FixedIP{{SubnetID: sub.ID}}}))

	spec := nf.port("lb")
	spec.Port.HostID = h1.ID
	spec.Port.AllowedAddressPairs = []types.AddressPair{{IPAddress: "10.62.0.100"}, {IPAddress: "10.62.1.0/24", MACAddress: "02:aa:00:00:00:01"}}
	lb := must[types.Port](t)(s.CreatePort(ctx, spec))
	if diff := cmp.Diff(spec.Port.AllowedAddressPairs, lb.AllowedAddressPairs); diff != "" {
		t.Errorf("created pairs (-want +got):\n%s", diff)
	}
	hn := must[types.HostNetwork](t)(s.HostNetwork(ctx, h1.ID))
	byID := map[string]types.BoundPort{}
	for _, p := range hn.Ports {
		byID[p.ID] = p
	}
	if b := byID[fp.ID]; b.SegmentType != types.SegmentFlat || b.SegmentID != 0 || b.Physnet != "datacentre" {
		t.Errorf("flat port in the host's state = %+v", b)
	}
	want := []types.AddressPair{{IPAddress: "10.62.0.100/32", MACAddress: lb.MACAddress}, {IPAddress: "10.62.1.0/24", MACAddress: "02:aa:00:00:00:01"}}
	if diff := cmp.Diff(want, byID[lb.ID].AllowedAddressPairs); diff != "" {
		t.Errorf("bound pairs (-want +got):\n%s", diff)
	}
	none := []types.AddressPair{}
	lb = must[types.Port](t)(s.UpdatePort(ctx, lb.ID, 0, store.PortChange{AllowedAddressPairs: &none}))
	if len(lb.AllowedAddressPairs) != 0 {
		t.Errorf("pairs after clearing = %+v", lb.AllowedAddressPairs)
	}
}
