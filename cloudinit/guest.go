package cloudinit

import "github.com/corral-cloud/corral/api/types"

// VXLANOverhead is what VXLAN over IPv4 adds to a frame: the guest's MTU
// on a VXLAN network is the underlay's less this.
const VXLANOverhead = 50

// GuestMTU is the MTU of a guest NIC on a network of segmentType over an
// underlay of underlayMTU (default 1500).
func GuestMTU(segmentType string, underlayMTU int) int {
	if underlayMTU <= 0 {
		underlayMTU = 1500
	}
	if segmentType == types.SegmentVXLAN {
		return underlayMTU - VXLANOverhead
	}
	return underlayMTU
}

// Guest maps a guest spec to what cloud-init reads: its name, keys, user
// data and NICs; with dhcp the NICs ask DHCP (which the host's DHCP server
// answers with the same addresses), else they are configured statically.
// VMs (compute) and bare-metal nodes (baremetal.CloudInit) both go
// through it, so both kinds learn the same things the same way.
func Guest(g types.GuestSpec, dhcp bool, underlayMTU int) Instance {
	in := Instance{ID: g.ServerID, Hostname: g.Name}
	if b := g.Bootstrap; b != nil {
		if b.Hostname != "" {
			in.Hostname = b.Hostname
		}
		in.PublicKeys, in.UserData = b.PublicKeys, b.UserData
	}
	for _, n := range g.NICs {
		nic := NIC{MAC: n.MAC, DHCP: dhcp && len(n.IPs) > 0, Addresses: n.IPs, Gateway: n.Gateway,
			DNSServers: n.DNSServers, MTU: GuestMTU(n.SegmentType, underlayMTU)}
		for _, r := range n.HostRoutes {
			nic.Routes = append(nic.Routes, Route{To: r.Destination, Via: r.NextHop})
		}
		in.NICs = append(in.NICs, nic)
	}
	return in
}
