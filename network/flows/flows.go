// Package flows computes the OpenFlow rules of a host's integration bridge
// from its desired state. It is pure: no OVS, no clock.
//
// The pipeline:
//
//	table 0  classify      guest port → remember its local VLAN (reg6), go to 10
//	                       tunnel or provider patch port, untagged frames →
//	                       remember its local VLAN, go to 30
//	                       anything else → drop
//	table 10 anti-spoof    IPv4 from the port's own MAC and IP, or from an allowed
//	                       address pair's MAC and CIDR → conntrack in the
//	                       port's zone, then 20; ARP with those MACs and
//	                       addresses → 30; else drop
//	table 20 egress        established/related → 30; new and allowed by an egress
//	                       rule → commit, 30; else drop
//	table 30 forward       IPv4 to a local guest's MAC (or a pair's) on the same local VLAN →
//	                       note the port (reg7), conntrack in its zone, then 40;
//	                       IPv4 broadcast/multicast → drop; anything else → NORMAL
//	table 40 ingress       established/related → output reg7; new and allowed by
//	                       an ingress rule → commit, output; else drop
//
// Each guest port has its own conntrack zone (its OpenFlow port number), so
// its connections are tracked apart from its neighbours'. NORMAL keeps
// doing learning, flooding and VLAN isolation (ports are access ports
// tagged with the local VLAN).
//
// Every flow carries a cookie: 0xc0aa in the top 16 bits marks Corral's
// flows, the next 16 bits are a hash of the port it belongs to (0 for
// flows of the bridge), the low 32 bits a hash of the flow's text. Equal
// flows have equal cookies, so the agent diffs the installed flows against
// the desired ones by cookie and changes only the difference.
package flows

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/corral-cloud/corral/api/types"
)

// Tables of the pipeline.
const (
	TableClassify = 0
	TableSpoof    = 10
	TableEgress   = 20
	TableForward  = 30
	TableIngress  = 40
)

// Cookie layout.
const (
	// CookieMark is in the top 16 bits of every Corral flow's cookie.
	CookieMark uint64 = 0xc0aa << 48
	// CookieMarkMask selects the mark.
	CookieMarkMask uint64 = 0xffff << 48
	// CookiePortMask selects the mark and the port's hash.
	CookiePortMask uint64 = 0xffffffff << 32
)

// Flow is one OpenFlow rule.
type Flow struct {
	Table    int
	Priority int
	// Match is in ovs-ofctl syntax without table and priority; "" matches
	// everything.
	Match string
	// Actions is in ovs-ofctl syntax.
	Actions string
	// Cookie identifies the flow (see the package comment).
	Cookie uint64
}

// String renders the flow for ovs-ofctl add-flow.
func (f Flow) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table=%d,priority=%d,cookie=%#x,", f.Table, f.Priority, f.Cookie)
	if f.Match != "" {
		b.WriteString(f.Match)
		b.WriteByte(',')
	}
	b.WriteString("actions=")
	b.WriteString(f.Actions)
	return b.String()
}

// Port is a guest port present on the bridge.
type Port struct {
	// ID is Corral's port ID (external_ids:iface-id).
	ID string
	// OFPort is its OpenFlow port number; it is also its conntrack zone.
	OFPort int
	// VLAN is the local VLAN of its network.
	VLAN int
	MAC  string
	// IPs are its addresses, without prefix.
	IPs []netip.Addr
	// Pairs are the allowed address pairs: other sources the port may
	// send from.
	Pairs []Pair
	Rules []types.ResolvedRule
}

// Pair is an allowed address pair: a source range and the MAC it is sent
// with.
type Pair struct {
	CIDR netip.Prefix
	MAC  string
}

// Tunnel is a port that leads out of the host: a VXLAN tunnel port, or a
// provider network's patch port to its uplink bridge. Traffic from it has
// passed the sender's anti-spoofing on its own host, or comes from the
// physical network; it goes straight to forwarding, and to a guest only
// through the guest's ingress rules.
type Tunnel struct {
	OFPort int
	VLAN   int
}

// Input is what the flows are computed from.
type Input struct {
	Ports   []Port
	Tunnels []Tunnel
	// DHCP are the host's DHCP servers, one per local VLAN (dhcp.go).
	DHCP []DHCPPort
}

// PortCookie returns the cookie bits (mark and port hash) shared by all
// flows of a port; with CookiePortMask it selects them on the bridge.
func PortCookie(portID string) uint64 {
	h := fnv.New32a()
	h.Write([]byte(portID))
	v := uint64(h.Sum32()>>16) ^ uint64(h.Sum32()&0xffff)
	if v == 0 {
		v = 1 // 0 is the bridge's own flows
	}
	return CookieMark | v<<32
}

// builder collects flows and assigns cookies.
type builder struct {
	out  []Flow
	base uint64
}

func (b *builder) add(table, priority int, match, actions string) {
	h := fnv.New32a()
	fmt.Fprintf(h, "%d|%d|%s|%s", table, priority, match, actions)
	b.out = append(b.out, Flow{Table: table, Priority: priority, Match: match, Actions: actions, Cookie: b.base | uint64(h.Sum32())})
}

// Compute returns the desired flows of the bridge, sorted by table,
// priority (highest first) and text. The same input always gives the same
// flows and cookies.
func Compute(in Input) []Flow {
	b := &builder{base: CookieMark}
	// The bridge's own flows.
	b.add(TableClassify, 0, "", "drop")
	b.add(TableSpoof, 0, "", "drop")
	for _, t := range []struct {
		table int
		next  string
	}{
		{TableEgress, "resubmit(,30)"}, {TableIngress, "output:NXM_NX_REG7[0..15]"},
	} {
		b.add(t.table, 200, "ct_state=-new+est-inv+trk", t.next)
		b.add(t.table, 200, "ct_state=-new+rel-inv+trk", t.next)
		b.add(t.table, 190, "ct_state=+inv+trk", "drop")
		b.add(t.table, 0, "", "drop")
	}
	b.add(TableForward, 50, "ip,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00", "drop")
	b.add(TableForward, 0, "", "NORMAL")
	for _, t := range in.Tunnels {
		// Only untagged frames: a tagged one from outside would otherwise
		// reach a guest's port by output:, past NORMAL's VLAN isolation.
		b.add(TableClassify, 100, fmt.Sprintf("in_port=%d,vlan_tci=0x0000/0x1fff", t.OFPort), fmt.Sprintf("load:%d->NXM_NX_REG6[0..11],resubmit(,30)", t.VLAN))
	}
	for _, p := range in.Ports {
		b.base = PortCookie(p.ID)
		portFlows(b, p)
	}
	dhcpFlows(b, in)
	sort.SliceStable(b.out, func(i, j int) bool {
		x, y := b.out[i], b.out[j]
		if x.Table != y.Table {
			return x.Table < y.Table
		}
		if x.Priority != y.Priority {
			return x.Priority > y.Priority
		}
		if x.Match != y.Match {
			return x.Match < y.Match
		}
		return x.Actions < y.Actions
	})
	return b.out
}

func portFlows(b *builder, p Port) {
	n := p.OFPort
	mac := strings.ToLower(p.MAC)
	b.add(TableClassify, 100, fmt.Sprintf("in_port=%d", n), fmt.Sprintf("load:%d->NXM_NX_REG6[0..11],resubmit(,10)", p.VLAN))
	for _, ip := range p.IPs {
		b.add(TableSpoof, 100, fmt.Sprintf("ip,in_port=%d,dl_src=%s,nw_src=%s", n, mac, ip), fmt.Sprintf("ct(table=20,zone=%d)", n))
		b.add(TableSpoof, 100, fmt.Sprintf("arp,in_port=%d,dl_src=%s,arp_spa=%s,arp_sha=%s", n, mac, ip, mac), "resubmit(,30)")
	}
	macs := []string{mac}
	for _, pr := range p.Pairs {
		pm := strings.ToLower(pr.MAC)
		if pm == "" {
			pm = mac
		}
		src := pr.CIDR.Masked().String()
		if pr.CIDR.Bits() == 32 {
			src = pr.CIDR.Addr().String()
		}
		// A pair's flows sit below the port's own (priority 90): the own
		// address never depends on a pair.
		b.add(TableSpoof, 90, fmt.Sprintf("ip,in_port=%d,dl_src=%s,nw_src=%s", n, pm, src), fmt.Sprintf("ct(table=20,zone=%d)", n))
		b.add(TableSpoof, 90, fmt.Sprintf("arp,in_port=%d,dl_src=%s,arp_spa=%s,arp_sha=%s", n, pm, src, pm), "resubmit(,30)")
		if !slices.Contains(macs, pm) {
			macs = append(macs, pm)
		}
	}
	// IPv4 to any of the port's MACs goes through its ingress rules; a
	// pair's MAC without this flow would reach the port by NORMAL alone.
	for _, m := range macs {
		b.add(TableForward, 100, fmt.Sprintf("ip,reg6=%d,dl_dst=%s", p.VLAN, m), fmt.Sprintf("load:%d->NXM_NX_REG7[],ct(table=40,zone=%d)", n, n))
	}
	for _, r := range p.Rules {
		for _, m := range ruleMatches(r) {
			if r.Direction == types.DirectionEgress {
				b.add(TableEgress, 100, fmt.Sprintf("ct_state=+new-inv+trk,in_port=%d,%s", n, m), fmt.Sprintf("ct(commit,zone=%d),resubmit(,30)", n))
			} else {
				b.add(TableIngress, 100, fmt.Sprintf("ct_state=+new-inv+trk,reg7=%d,%s", n, m), fmt.Sprintf("ct(commit,zone=%d),output:%d", n, n))
			}
		}
	}
}

// ruleMatches returns the matches of a rule without its direction: one per
// peer CIDR and port mask. A rule whose remote group has no members
// matches nothing.
func ruleMatches(r types.ResolvedRule) []string {
	proto := "ip"
	switch r.Protocol {
	case types.ProtocolTCP, types.ProtocolUDP, types.ProtocolICMP:
		proto = r.Protocol
	}
	peer := "nw_src"
	if r.Direction == types.DirectionEgress {
		peer = "nw_dst"
	}
	ports := []string{""}
	if (proto == "tcp" || proto == "udp") && r.PortRangeMin > 0 {
		ports = nil
		for _, m := range PortMasks(int(r.PortRangeMin), int(r.PortRangeMax)) {
			ports = append(ports, ",tp_dst="+m)
		}
	}
	var out []string
	for _, c := range r.RemoteCIDRs {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			continue // the API validated it; never widen a rule on a bad value
		}
		cidr := ""
		switch {
		case pfx.Bits() == 0:
		case pfx.Bits() == 32:
			cidr = fmt.Sprintf(",%s=%s", peer, pfx.Addr())
		default:
			cidr = fmt.Sprintf(",%s=%s", peer, pfx.Masked())
		}
		for _, p := range ports {
			out = append(out, proto+cidr+p)
		}
	}
	return out
}

// PortMasks covers the port range lo–hi (inclusive) with value/mask
// matches, as OpenFlow has no range match: 22 → "22", 1024–2047 →
// "0x400/0xfc00".
func PortMasks(lo, hi int) []string {
	if hi < lo {
		lo, hi = hi, lo
	}
	var out []string
	for lo <= hi {
		// The largest aligned block starting at lo that fits in the range.
		size := 1
		for lo%(size*2) == 0 && lo+size*2-1 <= hi && size < 1<<16 {
			size *= 2
		}
		if size == 1 {
			out = append(out, fmt.Sprint(lo))
		} else {
			out = append(out, fmt.Sprintf("%#x/%#x", lo, 0xffff&^(size-1)))
		}
		lo += size
	}
	return out
}

// Diff returns the flows to add (desired, not installed) and the cookies to
// delete (installed, not desired).
func Diff(desired []Flow, installed []uint64) (add []Flow, del []uint64) {
	have := make(map[uint64]bool, len(installed))
	for _, c := range installed {
		have[c] = true
	}
	want := make(map[uint64]bool, len(desired))
	for _, f := range desired {
		want[f.Cookie] = true
		if !have[f.Cookie] {
			add = append(add, f)
		}
	}
	seen := map[uint64]bool{}
	for _, c := range installed {
		if !want[c] && !seen[c] {
			del = append(del, c)
			seen[c] = true
		}
	}
	return add, del
}
