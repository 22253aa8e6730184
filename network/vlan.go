package network

import (
	"fmt"
	"sort"

	"github.com/corral-cloud/corral/api/types"
)

// Local VLANs for VXLAN networks are taken from the top of the VLAN range
// down, so they rarely meet the VLAN IDs operators give VLAN networks.
const (
	MaxLocalVLAN = 4094
	MinLocalVLAN = 1
)

// LocalVLANs assigns each network of the host's ports its local VLAN on the
// integration bridge. VLAN networks use their VLAN ID. VXLAN networks keep
// the VLAN they had (prev, by VNI) unless a VLAN network now needs that ID,
// and otherwise get the highest free one. It returns the VLAN of each VNI,
// to be saved for the next run.
func LocalVLANs(ports []types.BoundPort, prev map[int64]int) (vlanOfNetwork map[string]int, vniVLAN map[int64]int, err error) {
	vlanOfNetwork = map[string]int{}
	vniVLAN = map[int64]int{}
	used := map[int]bool{}
	var vnis []int64
	vniNets := map[int64][]string{}
	for _, p := range ports {
		switch p.SegmentType {
		case types.SegmentVLAN:
			vlanOfNetwork[p.NetworkID] = int(p.SegmentID)
			used[int(p.SegmentID)] = true
		case types.SegmentVXLAN:
			if _, ok := vniNets[p.SegmentID]; !ok {
				vnis = append(vnis, p.SegmentID)
			}
			vniNets[p.SegmentID] = append(vniNets[p.SegmentID], p.NetworkID)
		default:
			return nil, nil, fmt.Errorf("port %s: unknown segment type %q", p.ID, p.SegmentType)
		}
	}
	sort.Slice(vnis, func(i, j int) bool { return vnis[i] < vnis[j] })
	var fresh []int64
	for _, vni := range vnis {
		if v, ok := prev[vni]; ok && !used[v] && v >= MinLocalVLAN && v <= MaxLocalVLAN {
			vniVLAN[vni] = v
			used[v] = true
			continue
		}
		fresh = append(fresh, vni)
	}
	next := MaxLocalVLAN
	for _, vni := range fresh {
		for next >= MinLocalVLAN && used[next] {
			next--
		}
		if next < MinLocalVLAN {
			return nil, nil, fmt.Errorf("no free local VLAN for VNI %d", vni)
		}
		vniVLAN[vni] = next
		used[next] = true
	}
	for vni, nets := range vniNets {
		for _, n := range nets {
			vlanOfNetwork[n] = vniVLAN[vni]
		}
	}
	return vlanOfNetwork, vniVLAN, nil
}
