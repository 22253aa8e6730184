package flows

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

func TestPortMasks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi int
		want   []string
	}{
		{22, 22, []string{"22"}},
		{1024, 2047, []string{"0x400/0xfc00"}},
		{80, 81, []string{"0x50/0xfffe"}},
		{1, 65535, []string{"1", "0x2/0xfffe", "0x4/0xfffc", "0x8/0xfff8", "0x10/0xfff0", "0x20/0xffe0", "0x40/0xffc0",
			"0x80/0xff80", "0x100/0xff00", "0x200/0xfe00", "0x400/0xfc00", "0x800/0xf800", "0x1000/0xf000", "0x2000/0xe000",
			"0x4000/0xc000", "0x8000/0x8000"}},
		{8000, 8010, []string{"0x1f40/0xfff8", "0x1f48/0xfffe", "8010"}},
	} {
		got := PortMasks(tc.lo, tc.hi)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("PortMasks(%d, %d) (-want +got):\n%s", tc.lo, tc.hi, diff)
		}
		// Every port of the range, and none outside it, matches a mask.
		for p := max(0, tc.lo-3); p <= min(65535, tc.hi+3); p++ {
			in := p >= tc.lo && p <= tc.hi
			if covered(got, p) != in {
				t.Fatalf("PortMasks(%d, %d): port %d covered=%v", tc.lo, tc.hi, p, !in)
			}
		}
	}
}

func covered(masks []string, port int) bool {
	for _, m := range masks {
		v, mask, ok := strings.Cut(m, "/")
		val, _ := strconv.ParseInt(v, 0, 32)
		mk := int64(0xffff)
		if ok {
			mk, _ = strconv.ParseInt(mask, 0, 32)
		}
		if int64(port)&mk == val {
			return true
		}
	}
	return false
}

// portBuilder builds a test port.
type portBuilder struct{ p Port }

func aPort(id string, ofport, vlan int) *portBuilder {
	return &portBuilder{Port{ID: id, OFPort: ofport, VLAN: vlan, MAC: "02:C0:00:00:00:0" + strconv.Itoa(ofport),
		IPs: []netip.Addr{netip.MustParseAddr("10.0.0." + strconv.Itoa(ofport))}}}
}

func (b *portBuilder) rule(dir, proto string, lo, hi int64, cidrs ...string) *portBuilder {
	b.p.Rules = append(b.p.Rules, types.ResolvedRule{Direction: dir, Protocol: proto, PortRangeMin: lo, PortRangeMax: hi, RemoteCIDRs: cidrs})
	return b
}

func texts(fs []Flow) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		s := f.String()
		out[i] = s[:strings.Index(s, ",cookie=")] + s[strings.Index(s, ",cookie=")+len(",cookie=0xc0aa000000000000"):]
	}
	return out
}

func TestComputePort(t *testing.T) {
	p := aPort("port-a", 3, 100).rule("ingress", "tcp", 22, 22, "192.0.2.0/24").rule("egress", "any", 0, 0, "0.0.0.0/0").
		rule("ingress", "tcp", 80, 80 /* empty remote group */).p
	got := texts(Compute(Input{Ports: []Port{p}, Tunnels: []Tunnel{{OFPort: 9, VLAN: 4094}}}))
	want := []string{
		"table=0,priority=100,in_port=3,actions=load:100->NXM_NX_REG6[0..11],resubmit(,10)",
		"table=0,priority=100,in_port=9,vlan_tci=0x0000/0x1fff,actions=load:4094->NXM_NX_REG6[0..11],resubmit(,30)",
		"table=0,priority=0,actions=drop",
		"table=10,priority=100,arp,in_port=3,dl_src=02:c0:00:00:00:03,arp_spa=10.0.0.3,arp_sha=02:c0:00:00:00:03,actions=resubmit(,30)",
		"table=10,priority=100,ip,in_port=3,dl_src=02:c0:00:00:00:03,nw_src=10.0.0.3,actions=ct(table=20,zone=3)",
		"table=10,priority=0,actions=drop",
		"table=20,priority=200,ct_state=-new+est-inv+trk,actions=resubmit(,30)",
		"table=20,priority=200,ct_state=-new+rel-inv+trk,actions=resubmit(,30)",
		"table=20,priority=190,ct_state=+inv+trk,actions=drop",
		"table=20,priority=100,ct_state=+new-inv+trk,in_port=3,ip,actions=ct(commit,zone=3),resubmit(,30)",
		"table=20,priority=0,actions=drop",
		"table=30,priority=100,ip,reg6=100,dl_dst=02:c0:00:00:00:03,actions=load:3->NXM_NX_REG7[],ct(table=40,zone=3)",
		"table=30,priority=50,ip,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=drop",
		"table=30,priority=0,actions=NORMAL",
		"table=40,priority=200,ct_state=-new+est-inv+trk,actions=output:NXM_NX_REG7[0..15]",
		"table=40,priority=200,ct_state=-new+rel-inv+trk,actions=output:NXM_NX_REG7[0..15]",
		"table=40,priority=190,ct_state=+inv+trk,actions=drop",
		"table=40,priority=100,ct_state=+new-inv+trk,reg7=3,tcp,nw_src=192.0.2.0/24,tp_dst=22,actions=ct(commit,zone=3),output:3",
		"table=40,priority=0,actions=drop",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("flows (-want +got):\n%s", diff)
	}
}

// TestComputePairs: an allowed address pair lets its CIDR out of the port
// with its MAC (the port's own when none is given), IPv4 and ARP, below
// the port's own flows; a pair's own MAC also leads to the port's ingress
// rules.
func TestComputePairs(t *testing.T) {
	p := aPort("port-a", 3, 100).p
	p.Pairs = []Pair{{CIDR: netip.MustParsePrefix("10.0.0.100/32"), MAC: "02:C0:00:00:00:03"},
		{CIDR: netip.MustParsePrefix("10.0.9.0/24"), MAC: "02:aa:00:00:00:01"}}
	var got []string
	for _, f := range texts(Compute(Input{Ports: []Port{p}})) {
		if strings.Contains(f, "table=10,") || strings.Contains(f, "table=30,priority=100") {
			got = append(got, f)
		}
	}
	want := []string{
		"table=10,priority=100,arp,in_port=3,dl_src=02:c0:00:00:00:03,arp_spa=10.0.0.3,arp_sha=02:c0:00:00:00:03,actions=resubmit(,30)",
		"table=10,priority=100,ip,in_port=3,dl_src=02:c0:00:00:00:03,nw_src=10.0.0.3,actions=ct(table=20,zone=3)",
		"table=10,priority=90,arp,in_port=3,dl_src=02:aa:00:00:00:01,arp_spa=10.0.9.0/24,arp_sha=02:aa:00:00:00:01,actions=resubmit(,30)",
		"table=10,priority=90,arp,in_port=3,dl_src=02:c0:00:00:00:03,arp_spa=10.0.0.100,arp_sha=02:c0:00:00:00:03,actions=resubmit(,30)",
		"table=10,priority=90,ip,in_port=3,dl_src=02:aa:00:00:00:01,nw_src=10.0.9.0/24,actions=ct(table=20,zone=3)",
		"table=10,priority=90,ip,in_port=3,dl_src=02:c0:00:00:00:03,nw_src=10.0.0.100,actions=ct(table=20,zone=3)",
		"table=10,priority=0,actions=drop",
		"table=30,priority=100,ip,reg6=100,dl_dst=02:aa:00:00:00:01,actions=load:3->NXM_NX_REG7[],ct(table=40,zone=3)",
		"table=30,priority=100,ip,reg6=100,dl_dst=02:c0:00:00:00:03,actions=load:3->NXM_NX_REG7[],ct(table=40,zone=3)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("flows (-want +got):\n%s", diff)
	}
	// Without pairs, none of the pair flows is left.
	for _, f := range texts(Compute(Input{Ports: []Port{aPort("port-a", 3, 100).p}})) {
		if strings.Contains(f, "10.0.0.100") || strings.Contains(f, "02:aa") {
			t.Errorf("flow %s outlives the pairs", f)
		}
	}
}

func TestCookies(t *testing.T) {
	a := aPort("port-a", 3, 100).rule("ingress", "icmp", 0, 0, "0.0.0.0/0").p
	b := aPort("port-b", 4, 100).p
	first := Compute(Input{Ports: []Port{a, b}})
	again := Compute(Input{Ports: []Port{b, a}})
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("same input, different flows:\n%s", diff)
	}
	seen := map[uint64]string{}
	for _, f := range first {
		if f.Cookie&CookieMarkMask != CookieMark {
			t.Errorf("flow %s lacks Corral's mark", f)
		}
		if o, dup := seen[f.Cookie]; dup {
			t.Errorf("cookie %#x on %s and %s", f.Cookie, o, f)
		}
		seen[f.Cookie] = f.String()
		if strings.Contains(f.Match, "in_port=3") && f.Cookie&CookiePortMask != PortCookie("port-a") {
			t.Errorf("port a's flow %s has cookie %#x, want port bits %#x", f, f.Cookie, PortCookie("port-a"))
		}
	}
	// A rule change changes only that port's flows.
	a2 := aPort("port-a", 3, 100).rule("ingress", "tcp", 22, 22, "0.0.0.0/0").p
	add, del := Diff(Compute(Input{Ports: []Port{a2, b}}), cookies(first))
	if len(add) != 1 || len(del) != 1 || add[0].Cookie&CookiePortMask != PortCookie("port-a") {
		t.Errorf("diff after a rule change: add %v delete %x", add, del)
	}
	if add, del := Diff(first, cookies(again)); len(add)+len(del) != 0 {
		t.Errorf("diff of equal states: add %v delete %x", add, del)
	}
}

func cookies(fs []Flow) []uint64 {
	out := make([]uint64, len(fs))
	for i, f := range fs {
		out[i] = f.Cookie
	}
	return out
}
