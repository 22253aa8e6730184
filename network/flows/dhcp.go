package flows

import (
	"fmt"
	"sort"
	"strings"
)

// DHCPPort is the port of a host's DHCP server for one local VLAN (a veth
// into the server's network namespace).
type DHCPPort struct {
	OFPort int
	VLAN   int
	// MAC is the server's MAC (the namespace side of the veth): requests
	// are delivered to it whatever their destination MAC, so that a
	// renewal sent through the guest's gateway still arrives.
	MAC string
}

// dhcpFlows lets DHCP between a VLAN's guest ports and its DHCP server,
// and nothing else of the server's:
//
//	table 0  from the server: DHCP answers to a local guest's MAC (or
//	         broadcast) → output to that guest (those guests) only, never
//	         NORMAL, so an answer cannot leave the host (an uplink, a
//	         tunnel); ARP → the VLAN's local guests; anything else drops
//	table 10 from a guest: DHCP requests (UDP 68 → 67) from its own MAC,
//	         whatever its source address (0.0.0.0 before it has one) →
//	         the server, with the server's MAC as destination
//	table 30 to the server's MAC on its VLAN (ARP replies) → the server
func dhcpFlows(b *builder, in Input) {
	byVLAN := map[int][]Port{}
	for _, p := range in.Ports {
		byVLAN[p.VLAN] = append(byVLAN[p.VLAN], p)
	}
	for _, d := range in.DHCP {
		ports := byVLAN[d.VLAN]
		if len(ports) == 0 {
			continue
		}
		sort.Slice(ports, func(i, j int) bool { return ports[i].OFPort < ports[j].OFPort })
		b.base = PortCookie(fmt.Sprintf("dhcp|%d", d.VLAN))
		mac := strings.ToLower(d.MAC)
		var all []string
		for _, p := range ports {
			all = append(all, fmt.Sprintf("output:%d", p.OFPort))
			pm := strings.ToLower(p.MAC)
			b.add(TableClassify, 110, fmt.Sprintf("udp,in_port=%d,dl_dst=%s,tp_src=67,tp_dst=68", d.OFPort, pm), fmt.Sprintf("output:%d", p.OFPort))
			b.add(TableSpoof, 110, fmt.Sprintf("udp,in_port=%d,dl_src=%s,tp_src=68,tp_dst=67", p.OFPort, pm),
				fmt.Sprintf("mod_dl_dst:%s,output:%d", mac, d.OFPort))
		}
		b.add(TableClassify, 110, fmt.Sprintf("udp,in_port=%d,dl_dst=ff:ff:ff:ff:ff:ff,tp_src=67,tp_dst=68", d.OFPort), strings.Join(all, ","))
		b.add(TableClassify, 100, fmt.Sprintf("arp,in_port=%d", d.OFPort), strings.Join(all, ","))
		b.add(TableForward, 100, fmt.Sprintf("reg6=%d,dl_dst=%s", d.VLAN, mac), fmt.Sprintf("output:%d", d.OFPort))
	}
}
