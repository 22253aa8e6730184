package network

import (
	"testing"

	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

func TestLocalVLANs(t *testing.T) {
	port := func(net, typ string, seg int64) types.BoundPort {
		return types.BoundPort{ID: "p-" + net, NetworkID: net, SegmentType: typ, SegmentID: seg}
	}
	for _, tc := range []struct {
		name    string
		ports   []types.BoundPort
		prev    map[int64]int
		wantNet map[string]int
		wantVNI map[int64]int
	}{
		{"vlan networks use their ID", []types.BoundPort{port("a", "vlan", 100), port("b", "vlan", 200)}, nil,
			map[string]int{"a": 100, "b": 200}, map[int64]int{}},
		{"vxlan from the top", []types.BoundPort{port("x", "vxlan", 5001), port("y", "vxlan", 5000)}, nil,
			map[string]int{"x": 4093, "y": 4094}, map[int64]int{5000: 4094, 5001: 4093}},
		{"kept across restarts", []types.BoundPort{port("x", "vxlan", 5001), port("z", "vxlan", 4000)}, map[int64]int{5001: 4094},
			map[string]int{"x": 4094, "z": 4093}, map[int64]int{5001: 4094, 4000: 4093}},
		{"a vlan network takes its ID back", []types.BoundPort{port("a", "vlan", 4094), port("x", "vxlan", 5001)}, map[int64]int{5001: 4094},
			map[string]int{"a": 4094, "x": 4093}, map[int64]int{5001: 4093}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotNet, gotVNI, err := LocalVLANs(tc.ports, tc.prev)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantNet, gotNet); diff != "" {
				t.Errorf("networks (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantVNI, gotVNI); diff != "" {
				t.Errorf("VNIs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLocalSegmentsFlat(t *testing.T) {
	ports := []types.BoundPort{
		{ID: "p1", NetworkID: "lan", SegmentType: "flat", Physnet: "datacentre"},
		{ID: "p2", NetworkID: "x", SegmentType: "vxlan", SegmentID: 7},
		{ID: "p3", NetworkID: "st", SegmentType: "flat", Physnet: "storage"},
		{ID: "p4", NetworkID: "ext", SegmentType: "vlan", SegmentID: 300, Physnet: "datacentre"},
	}
	nets, vnis, flats, err := LocalSegments(ports, nil, map[string]int{"storage": 4000})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"lan": 4093, "x": 4094, "st": 4000, "ext": 300}, nets); diff != "" {
		t.Errorf("networks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[int64]int{7: 4094}, vnis); diff != "" {
		t.Errorf("VNIs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"datacentre": 4093, "storage": 4000}, flats); diff != "" {
		t.Errorf("flat (-want +got):\n%s", diff)
	}
	if _, _, _, err := LocalSegments([]types.BoundPort{{ID: "p", NetworkID: "n", SegmentType: "flat"}}, nil, nil); err == nil {
		t.Error("a flat port without a physnet was accepted")
	}
}
