package placement

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// rack returns n hosts named zone-1 … zone-n in zone of region dc1, each
// passed through the modifiers.
func rack(zone string, n int, mods ...func(*hostBuilder)) []*hostBuilder {
	var out []*hostBuilder
	for k := 1; k <= n; k++ {
		b := newHost(fmt.Sprintf("%s-%d", zone, k)).inZone(zone)
		for _, m := range mods {
			m(b)
		}
		out = append(out, b)
	}
	return out
}

// fleet concatenates racks into hosts.
func fleet(racks ...[]*hostBuilder) []Host {
	var bs []*hostBuilder
	for _, r := range racks {
		bs = append(bs, r...)
	}
	return hosts(bs...)
}

func inRegion(r string) func(*hostBuilder) { return func(b *hostBuilder) { b.inRegion(r) } }
func down(b *hostBuilder)                  { b.withState(StateDown) }

func brokers(n int) GroupRequest {
	return GroupRequest{Role: RoleBroker, Members: n, Flavor: Flavor{VCPUs: 8, MemoryMiB: 32 * gibMiB}, Now: t0}
}

func TestPlaceGroupSpread(t *testing.T) {
	var sixty [][]*hostBuilder
	for k := 0; k < 60; k++ {
		sixty = append(sixty, rack(fmt.Sprintf("r%02d", k), 2))
	}
	tests := []struct {
		name  string
		hosts []Host
		req   GroupRequest
		want  map[string]int
	}{
		{name: "10 over 4 racks is 3/3/2/2",
			hosts: fleet(rack("rack-a", 5), rack("rack-b", 5), rack("rack-c", 5), rack("rack-d", 5)),
			req:   brokers(10), want: map[string]int{"rack-a": 3, "rack-b": 3, "rack-c": 2, "rack-d": 2}},
		{name: "7 over 3 racks is 3/2/2",
			hosts: fleet(rack("rack-a", 5), rack("rack-b", 5), rack("rack-c", 5)),
			req:   brokers(7), want: map[string]int{"rack-a": 3, "rack-b": 2, "rack-c": 2}},
		{name: "extra members go to the racks with most room",
			hosts: fleet(rack("rack-a", 2), rack("rack-b", 5), rack("rack-c", 3)),
			req:   brokers(7), want: map[string]int{"rack-a": 2, "rack-b": 3, "rack-c": 2}},
		{name: "uneven capacity: a rack that cannot take an even share is dropped",
			hosts: fleet(rack("rack-a", 5), rack("rack-b", 5), rack("rack-c", 1)),
			req:   func() GroupRequest { g := brokers(7); g.MinZones = 2; return g }(),
			want:  map[string]int{"rack-a": 4, "rack-b": 3}},
		{name: "emptier racks first with spread",
			hosts: fleet(rack("rack-a", 3, func(b *hostBuilder) { b.used(8, 32*gibMiB) }), rack("rack-b", 3), rack("rack-c", 3)),
			req:   brokers(2), want: map[string]int{"rack-b": 1, "rack-c": 1}},
		{name: "10 over 60 racks is one per rack",
			hosts: fleet(sixty...), req: brokers(10),
			want: map[string]int{"r00": 1, "r01": 1, "r02": 1, "r03": 1, "r04": 1, "r05": 1, "r06": 1, "r07": 1, "r08": 1, "r09": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSnapshot(t, testConfig(), tt.hosts)
			d, err := s.PlaceGroup(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, zoneCounts(d)); diff != "" {
				t.Errorf("members per zone (-want +got):\n%s", diff)
			}
			hs := chosen(d)
			slices.Sort(hs)
			if diff := cmp.Diff(len(hs), len(slices.Compact(hs))); diff != "" {
				t.Errorf("brokers share a host (-want +got):\n%s", diff)
			}
			if err := s.Apply(d); err != nil {
				t.Errorf("Apply: %v", err)
			}
		})
	}
}

func TestPlaceGroupRoundRobinOrder(t *testing.T) {
	s := mustSnapshot(t, testConfig(), fleet(rack("rack-a", 3), rack("rack-b", 3), rack("rack-c", 3)))
	d, err := s.PlaceGroup(brokers(5))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"rack-a", "rack-b", "rack-c", "rack-a", "rack-b"}
	if diff := cmp.Diff(want, zonesOf(d)); diff != "" {
		t.Errorf("member zones (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"rack-a-1", "rack-b-1", "rack-c-1", "rack-a-2", "rack-b-2"}, chosen(d)); diff != "" {
		t.Errorf("member hosts (-want +got):\n%s", diff)
	}
	// No side effect: a dry run gives the same answer.
	again, err := s.PlaceGroup(brokers(5))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, again); diff != "" {
		t.Errorf("second PlaceGroup differs (-first +second):\n%s", diff)
	}
}

func TestPlaceGroupWithoutZoneSpread(t *testing.T) {
	tests := []struct {
		name string
		req  GroupRequest
		want []string
	}{
		{name: "pack stacks members on the fullest host",
			req:  GroupRequest{Members: 3, Flavor: Flavor{VCPUs: 4, MemoryMiB: 8 * gibMiB}, Constraints: Constraints{Weigher: WeighPack}, Now: t0},
			want: []string{"rack-a-1", "rack-a-1", "rack-a-1"}},
		{name: "spread moves to the emptiest host after each member",
			req:  GroupRequest{Members: 3, Flavor: Flavor{VCPUs: 4, MemoryMiB: 8 * gibMiB}, Now: t0},
			want: []string{"rack-b-1", "rack-b-2", "rack-a-2"}},
		{name: "distinct hosts",
			req:  GroupRequest{Members: 3, DistinctHosts: true, Flavor: Flavor{VCPUs: 4, MemoryMiB: 8 * gibMiB}, Constraints: Constraints{Weigher: WeighPack}, Now: t0},
			want: []string{"rack-a-1", "rack-a-2", "rack-b-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSnapshot(t, testConfig(), fleet(
				rack("rack-a", 2, func(b *hostBuilder) { b.used(2, 4*gibMiB) }), rack("rack-b", 2)))
			h, _ := s.Host("rack-a-1") // the fullest host
			h.Used = Resources{VCPUs: 8, MemoryMiB: 16 * gibMiB, Guests: 2}
			s.Update(h)
			d, err := s.PlaceGroup(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, chosen(d)); diff != "" {
				t.Errorf("member hosts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlaceGroupRefusals(t *testing.T) {
	twoRacks := func() []Host {
		return fleet(rack("rack-a", 3), rack("rack-b", 3), rack("rack-c", 3, down))
	}
	tests := []struct {
		name    string
		hosts   []Host
		req     GroupRequest
		want    GroupRefusal
		summary string
	}{
		{name: "2 racks usable with min_zones 3", hosts: twoRacks(),
			req: func() GroupRequest { g := brokers(6); g.MinZones = 3; return g }(),
			want: GroupRefusal{Reason: GroupTooFewZones, Message: "need 3 zones, 2 usable: rack-a, rack-b", Region: "dc1",
				Wanted: 6, Placeable: 6, ZonesNeeded: 3, UsableZones: []string{"rack-a", "rack-b"}},
			summary: "group refused: need 3 zones, 2 usable: rack-a, rack-b; 6/9 hosts fit one member: 3 down"},
		{name: "replication factor above usable racks", hosts: twoRacks(),
			req: func() GroupRequest { g := brokers(4); g.ReplicationFactor = 3; return g }(),
			want: GroupRefusal{Reason: GroupReplicationFactor, Message: "replication factor 3 needs 3 zones, 2 usable: rack-a, rack-b",
				Region: "dc1", Wanted: 4, Placeable: 4, ZonesNeeded: 3, UsableZones: []string{"rack-a", "rack-b"}},
			summary: "group refused: replication factor 3 needs 3 zones, 2 usable: rack-a, rack-b; 6/9 hosts fit one member: 3 down"},
		{name: "not enough hosts", hosts: twoRacks(), req: brokers(7),
			want: GroupRefusal{Reason: GroupInsufficientCapacity, Message: "7 members wanted, room for 6 in 2 zones",
				Region: "dc1", Wanted: 7, Placeable: 6, UsableZones: []string{"rack-a", "rack-b"}},
			summary: "group refused: 7 members wanted, room for 6 in 2 zones; 6/9 hosts fit one member: 3 down"},
		{name: "dropping a small rack leaves too few racks",
			hosts: fleet(rack("rack-a", 5), rack("rack-b", 5), rack("rack-c", 1)),
			req:   func() GroupRequest { g := brokers(7); g.MinZones = 3; return g }(),
			want: GroupRefusal{Reason: GroupTooFewZones,
				Message: "need 3 zones, 2 usable: rack-a, rack-b (zones with room for an even share of 3)",
				Region:  "dc1", Wanted: 7, Placeable: 7, ZonesNeeded: 3, UsableZones: []string{"rack-a", "rack-b"}},
			summary: "group refused: need 3 zones, 2 usable: rack-a, rack-b (zones with room for an even share of 3); 11/11 hosts fit one member"},
		{name: "no skew-1 spread exists",
			hosts: fleet(rack("rack-a", 3), rack("rack-b", 1)), req: brokers(4),
			want: GroupRefusal{Reason: GroupUnevenSpread,
				Message: "4 members do not fit with a skew of at most 1 in any set of zones: rack-a, rack-b",
				Region:  "dc1", Wanted: 4, UsableZones: []string{"rack-a", "rack-b"}},
			summary: "group refused: 4 members do not fit with a skew of at most 1 in any set of zones: rack-a, rack-b; 4/4 hosts fit one member"},
		{name: "nothing fits at all", hosts: fleet(rack("rack-a", 2, down)), req: brokers(2),
			want: GroupRefusal{Reason: GroupInsufficientCapacity, Message: "2 members wanted, no host fits one",
				Wanted: 2, UsableZones: []string{}},
			summary: "group refused: 2 members wanted, no host fits one; 0/2 hosts fit one member: 2 down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSnapshot(t, testConfig(), tt.hosts)
			d, err := s.PlaceGroup(tt.req)
			e := fitError(t, err)
			if diff := cmp.Diff(&tt.want, e.Group); diff != "" {
				t.Errorf("group refusal (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.summary, e.Summary); diff != "" {
				t.Errorf("summary (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(0, len(d.Claims)); diff != "" {
				t.Errorf("claims in a refused decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlaceGroupStaysInOneRegion(t *testing.T) {
	hs := fleet(
		rack("a1", 3), rack("a2", 3), // dc1: two racks
		rack("b1", 3, inRegion("dc2")), rack("b2", 3, inRegion("dc2")), rack("b3", 3, inRegion("dc2")),
	)
	tests := []struct {
		name       string
		req        GroupRequest
		wantRegion string
		wantZones  map[string]int
	}{
		{name: "first region by name when equal", req: brokers(4), wantRegion: "dc1", wantZones: map[string]int{"a1": 2, "a2": 2}},
		{name: "the region that can hold min_zones",
			req:        func() GroupRequest { g := brokers(6); g.MinZones = 3; return g }(),
			wantRegion: "dc2", wantZones: map[string]int{"b1": 2, "b2": 2, "b3": 2}},
		{name: "required region",
			req:        func() GroupRequest { g := brokers(3); g.Region = "dc2"; return g }(),
			wantRegion: "dc2", wantZones: map[string]int{"b1": 1, "b2": 1, "b3": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSnapshot(t, testConfig(), append([]Host(nil), hs...))
			d, err := s.PlaceGroup(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			regions := map[string]bool{}
			for _, c := range d.Claims {
				regions[c.Region] = true
			}
			got := map[string]any{"region": d.Region, "regions": regions, "zones": zoneCounts(d)}
			want := map[string]any{"region": tt.wantRegion, "regions": map[string]bool{tt.wantRegion: true}, "zones": tt.wantZones}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

// members3322 is a 10-broker group spread 3/3/2/2 over rack-a … rack-d,
// one broker per host on hosts zone-1 … zone-k.
func members3322() []Member {
	var ms []Member
	n := 0
	for _, zc := range []struct {
		zone  string
		count int
	}{{"rack-a", 3}, {"rack-b", 3}, {"rack-c", 2}, {"rack-d", 2}} {
		for k := 1; k <= zc.count; k++ {
			n++
			ms = append(ms, Member{ID: fmt.Sprintf("b%02d", n), HostID: fmt.Sprintf("%s-%d", zc.zone, k), Region: "dc1", Zone: zc.zone})
		}
	}
	return ms
}

func TestScaleUp(t *testing.T) {
	tests := []struct {
		name   string
		hosts  []Host
		add    int
		want   map[string]int
		refuse *GroupRefusal
	}{
		{name: "new members go to the least populated racks",
			hosts: fleet(rack("rack-a", 4), rack("rack-b", 4), rack("rack-c", 4), rack("rack-d", 4)),
			add:   2, want: map[string]int{"rack-c": 1, "rack-d": 1}},
		{name: "then round the racks again",
			hosts: fleet(rack("rack-a", 5), rack("rack-b", 5), rack("rack-c", 5), rack("rack-d", 5)),
			add:   4, want: map[string]int{"rack-a": 1, "rack-b": 1, "rack-c": 1, "rack-d": 1}},
		{name: "a new empty rack is filled first",
			hosts: fleet(rack("rack-a", 4), rack("rack-b", 4), rack("rack-c", 4), rack("rack-d", 4), rack("rack-e", 4)),
			add:   2, want: map[string]int{"rack-e": 2}},
		{name: "refused when only a crowded rack has room",
			hosts: fleet(rack("rack-a", 4), rack("rack-b", 3), rack("rack-c", 2), rack("rack-d", 2)),
			add:   1,
			refuse: &GroupRefusal{Reason: GroupUnevenSpread, Message: "adding 1 members would leave a zone skew of 2",
				Region: "dc1", Wanted: 1, Placeable: 1, UsableZones: []string{"rack-a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSnapshot(t, testConfig(), tt.hosts)
			g := brokers(0)
			g.Existing = members3322()
			d, err := s.ScaleUp(g, tt.add)
			if tt.refuse != nil {
				e := fitError(t, err)
				if diff := cmp.Diff(tt.refuse, e.Group); diff != "" {
					t.Errorf("refusal (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, zoneCounts(d)); diff != "" {
				t.Errorf("new members per zone (-want +got):\n%s", diff)
			}
			for _, c := range d.Claims {
				for _, m := range g.Existing {
					if c.HostID == m.HostID {
						t.Errorf("new broker on %s, which already has %s", c.HostID, m.ID)
					}
				}
			}
		})
	}
}

func TestScaleDown(t *testing.T) {
	tests := []struct {
		name    string
		req     func(g *GroupRequest)
		remove  int
		want    []string
		invalid bool
	}{
		{name: "most crowded racks first", remove: 2, want: []string{"b03", "b06"}},
		{name: "then ties by rack name", remove: 3, want: []string{"b03", "b06", "b02"}},
		{name: "nothing to remove", remove: 0, want: []string{}},
		{name: "would leave fewer racks than the replication factor",
			req: func(g *GroupRequest) { g.ReplicationFactor = 4 }, remove: 7, invalid: true},
		{name: "more than there are", remove: 11, invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := brokers(0)
			g.Existing = members3322()
			if tt.req != nil {
				tt.req(&g)
			}
			removed, err := ScaleDown(g, tt.remove)
			if tt.invalid {
				if diff := cmp.Diff(true, isInvalid(err)); diff != "" {
					t.Errorf("invalid (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []string{}
			for _, m := range removed {
				got = append(got, m.ID)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("removed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReplaceKeepsTheZone(t *testing.T) {
	old := Member{ID: "b04", HostID: "rack-b-1", Region: "dc1", Zone: "rack-b"}
	tests := []struct {
		name    string
		hosts   []Host
		want    []Claim
		refusal *GroupRefusal
		summary string
	}{
		{name: "replacement in the same rack, on a host without a broker",
			hosts: fleet(rack("rack-a", 5), rack("rack-b", 5), rack("rack-c", 5), rack("rack-d", 5)),
			want: []Claim{{HostID: "rack-b-4", Region: "dc1", Zone: "rack-b", Replaces: "b04",
				Resources: Resources{VCPUs: 8, MemoryMiB: 32 * gibMiB, Guests: 1}}}},
		{name: "rack full: refused, never moved to another rack",
			hosts: fleet(rack("rack-a", 5), rack("rack-b", 3), rack("rack-c", 5), rack("rack-d", 5)),
			refusal: &GroupRefusal{Reason: GroupZoneFull, Region: "dc1", Wanted: 1, ZonesNeeded: 1, UsableZones: []string{},
				Message: "no host in zone rack-b can take a replacement for member b04 (a member never changes zone)"},
			summary: "group refused: no host in zone rack-b can take a replacement for member b04 (a member never changes zone); " +
				"0/18 hosts fit one member: 15 wrong zone, 3 anti-affinity: host has a member"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSnapshot(t, testConfig(), tt.hosts)
			g := brokers(0)
			g.Existing = members3322()
			d, err := s.Replace(g, old)
			if tt.refusal != nil {
				e := fitError(t, err)
				if diff := cmp.Diff(tt.refusal, e.Group); diff != "" {
					t.Errorf("refusal (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.summary, e.Summary); diff != "" {
					t.Errorf("summary (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, d.Claims); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStreamSizing(t *testing.T) {
	tests := []struct {
		name string
		z    StreamSizing
		want Flavor
	}{
		{"half a core per slot is raised to one", StreamSizing{SlotsPerWorker: 4, CPUPerSlotMilli: 500, MemoryPerSlotMiB: 2048},
			Flavor{VCPUs: 4, MemoryMiB: 8192, DedicatedCPU: true}},
		{"unset CPU is one core per slot", StreamSizing{SlotsPerWorker: 2, MemoryPerSlotMiB: 4096, DiskGiB: 50},
			Flavor{VCPUs: 2, MemoryMiB: 8192, DiskGiB: 50, DedicatedCPU: true}},
		{"fractional cores round up per worker", StreamSizing{SlotsPerWorker: 3, CPUPerSlotMilli: 1500, MemoryPerSlotMiB: 1024},
			Flavor{VCPUs: 5, MemoryMiB: 3072, DedicatedCPU: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.z.Flavor()); diff != "" {
				t.Errorf("Flavor (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStreamGroupNoCPUOvercommit(t *testing.T) {
	cfg := Config{Overhead: noOverhead, Aggregates: map[string]AggregatePolicy{"stream": {CPURatio: 4}}}
	streamHosts := func(b *hostBuilder) { b.withCPU(16).inAggs("stream") }
	stream := func(n int, mod func(g *GroupRequest)) GroupRequest {
		g := GroupRequest{Role: RoleStream, Members: n, Now: t0,
			Stream:      &StreamSizing{SlotsPerWorker: 4, CPUPerSlotMilli: 250, MemoryPerSlotMiB: 2048},
			Constraints: Constraints{Aggregates: []string{"stream"}, Weigher: WeighPack}}
		if mod != nil {
			mod(&g)
		}
		return g
	}
	tests := []struct {
		name  string
		hosts []Host
		req   GroupRequest
		want  []string
	}{
		{name: "pack: 4 workers of 4 slots fill a 16-thread host despite ratio 4",
			hosts: fleet(rack("rack-a", 2, streamHosts)), req: stream(5, nil),
			want: []string{"rack-a-1", "rack-a-1", "rack-a-1", "rack-a-1", "rack-a-2"}},
		{name: "shared guests within the ratio still block dedicated workers",
			hosts: fleet(rack("rack-a", 2, streamHosts, func(b *hostBuilder) { b.used(14, 0) })), req: stream(1, nil),
			want: []string{}},
		{name: "spread over hosts and racks",
			hosts: fleet(rack("rack-a", 2, streamHosts), rack("rack-b", 2, streamHosts)),
			req:   stream(4, func(g *GroupRequest) { g.SpreadZones, g.DistinctHosts = true, true }),
			want:  []string{"rack-a-1", "rack-b-1", "rack-a-2", "rack-b-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSnapshot(t, cfg, tt.hosts)
			d, err := s.PlaceGroup(tt.req)
			if len(tt.want) == 0 {
				e := fitError(t, err)
				if diff := cmp.Diff(map[Reason]int{ReasonCPU: 2}, reasonCounts(e)); diff != "" {
					t.Errorf("reasons (-want +got):\n%s", diff)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, chosen(d)); diff != "" {
				t.Errorf("member hosts (-want +got):\n%s", diff)
			}
			for _, c := range d.Claims {
				if diff := cmp.Diff(Resources{VCPUs: 4, MemoryMiB: 8192, Guests: 1}, c.Resources); diff != "" {
					t.Errorf("member resources (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestGroupInvalidRequests(t *testing.T) {
	s := mustSnapshot(t, testConfig(), fleet(rack("rack-a", 2)))
	tests := []struct {
		name string
		call func() error
	}{
		{"no members", func() error { _, err := s.PlaceGroup(brokers(0)); return err }},
		{"stream without sizing", func() error {
			_, err := s.PlaceGroup(GroupRequest{Role: RoleStream, Members: 1, Now: t0})
			return err
		}},
		{"unknown role", func() error {
			g := brokers(1)
			g.Role = "zookeeper"
			_, err := s.PlaceGroup(g)
			return err
		}},
		{"more zones than members", func() error {
			g := brokers(2)
			g.MinZones = 3
			_, err := s.PlaceGroup(g)
			return err
		}},
		{"existing members in PlaceGroup", func() error {
			g := brokers(2)
			g.Existing = members3322()
			_, err := s.PlaceGroup(g)
			return err
		}},
		{"members in two regions", func() error {
			g := brokers(0)
			g.Existing = []Member{{ID: "a", Region: "dc1", Zone: "rack-a"}, {ID: "b", Region: "dc2", Zone: "rack-a"}}
			_, err := s.ScaleUp(g, 1)
			return err
		}},
		{"scale up by zero", func() error { _, err := s.ScaleUp(brokers(0), 0); return err }},
		{"replace without zone", func() error { _, err := s.Replace(brokers(0), Member{ID: "x"}); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(true, isInvalid(tt.call())); diff != "" {
				t.Errorf("invalid (-want +got):\n%s", diff)
			}
		})
	}
}
