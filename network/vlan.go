package network

import (
	"fmt"
	"sort"

	"github.com/corral-cloud/corral/api/types"
)

// Local VLANs for VXLAN and flat networks are taken from the top of the
// VLAN range down, so they rarely meet the VLAN IDs operators give VLAN
// networks.
const (
	MaxLocalVLAN = 4094
	MinLocalVLAN = 1
)

// LocalVLANs is LocalSegments for hosts without flat networks: it returns
// the VLAN of each network and of each VNI.
func LocalVLANs(ports []types.BoundPort, prev map[int64]int) (vlanOfNetwork map[string]int, vniVLAN map[int64]int, err error) {
	vlanOfNetwork, vniVLAN, _, err = LocalSegments(ports, prev, nil)
	return vlanOfNetwork, vniVLAN, err
}

// LocalSegments assigns each network of the host's ports its local VLAN on
// the integration bridge. VLAN networks use their VLAN ID. VXLAN networks
// (by VNI) and flat networks (by physical network: one flat network per
// physnet) keep the VLAN they had (prevVNI, prevFlat) unless a VLAN
// network now needs that ID, and otherwise get the highest free one,
// VXLAN first. It returns the VLAN of each VNI and of each flat physnet,
// to be saved for the next run.
func LocalSegments(ports []types.BoundPort, prevVNI map[int64]int, prevFlat map[string]int) (vlanOfNetwork map[string]int,
	vniVLAN map[int64]int, flatVLAN map[string]int, err error) {
	vlanOfNetwork = map[string]int{}
	vniVLAN = map[int64]int{}
	flatVLAN = map[string]int{}
	used := map[int]bool{}
	var vnis []int64
	var flats []string
	vniNets := map[int64][]string{}
	flatNets := map[string][]string{}
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
		case types.SegmentFlat:
			if p.Physnet == "" {
				return nil, nil, nil, fmt.Errorf("port %s: flat network %s without a physical network", p.ID, p.NetworkID)
			}
			if _, ok := flatNets[p.Physnet]; !ok {
				flats = append(flats, p.Physnet)
			}
			flatNets[p.Physnet] = append(flatNets[p.Physnet], p.NetworkID)
		default:
			return nil, nil, nil, fmt.Errorf("port %s: unknown segment type %q", p.ID, p.SegmentType)
		}
	}
	sort.Slice(vnis, func(i, j int) bool { return vnis[i] < vnis[j] })
	sort.Strings(flats)
	keep := func(v int, ok bool) bool {
		if ok && !used[v] && v >= MinLocalVLAN && v <= MaxLocalVLAN {
			used[v] = true
			return true
		}
		return false
	}
	var freshVNI []int64
	for _, vni := range vnis {
		if v, ok := prevVNI[vni]; keep(v, ok) {
			vniVLAN[vni] = v
			continue
		}
		freshVNI = append(freshVNI, vni)
	}
	var freshFlat []string
	for _, pn := range flats {
		if v, ok := prevFlat[pn]; keep(v, ok) {
			flatVLAN[pn] = v
			continue
		}
		freshFlat = append(freshFlat, pn)
	}
	next := MaxLocalVLAN
	take := func(what string) (int, error) {
		for next >= MinLocalVLAN && used[next] {
			next--
		}
		if next < MinLocalVLAN {
			return 0, fmt.Errorf("no free local VLAN for %s", what)
		}
		used[next] = true
		return next, nil
	}
	for _, vni := range freshVNI {
		if vniVLAN[vni], err = take(fmt.Sprintf("VNI %d", vni)); err != nil {
			return nil, nil, nil, err
		}
	}
	for _, pn := range freshFlat {
		if flatVLAN[pn], err = take("flat network on " + pn); err != nil {
			return nil, nil, nil, err
		}
	}
	for vni, nets := range vniNets {
		for _, n := range nets {
			vlanOfNetwork[n] = vniVLAN[vni]
		}
	}
	for pn, nets := range flatNets {
		for _, n := range nets {
			vlanOfNetwork[n] = flatVLAN[pn]
		}
	}
	return vlanOfNetwork, vniVLAN, flatVLAN, nil
}
