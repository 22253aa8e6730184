package placement

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// placeAndApply places req and applies the decision, as the store would.
func placeAndApply(t *testing.T, s *Snapshot, req Request) (Decision, error) {
	t.Helper()
	d, err := s.Place(req)
	if err != nil {
		return d, err
	}
	if err := s.Apply(d); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return d, nil
}

func fitError(t *testing.T, err error) Explanation {
	t.Helper()
	var fe *FitError
	if !errors.As(err, &fe) || !errors.Is(err, ErrNoValidHost) {
		t.Fatalf("error = %v, want a *FitError matching ErrNoValidHost", err)
	}
	return fe.Explanation
}

func TestRatioExactlyAtLimit(t *testing.T) {
	tests := []struct {
		name    string
		ratio   float64
		cpus    int64
		wantFit int
	}{
		{"ratio 1.0 means no overcommit", 1.0, 8, 8},
		{"ratio 2.0", 2.0, 8, 16},
		{"ratio 1.5 rounds down", 1.5, 7, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Overhead: noOverhead, Aggregates: map[string]AggregatePolicy{"agg": {CPURatio: tt.ratio}}}
			s := mustSnapshot(t, cfg, hosts(newHost("h1").withCPU(tt.cpus).inAggs("agg")))
			for k := 1; k <= tt.wantFit; k++ {
				if _, err := placeAndApply(t, s, vmReq(1, 512)); err != nil {
					t.Fatalf("guest %d of %d: %v", k, tt.wantFit, err)
				}
			}
			_, err := s.Place(vmReq(1, 512))
			e := fitError(t, err)
			want := []ReasonCount{{
				Reason: ReasonCPU, Class: ClassFullNow, Count: 1, SampleHosts: []string{"h1"},
				Dimension: &Dimension{Name: "cpu", Unit: "vcpu", Need: 1, Best: 0},
				Message:   "1 cpu (need 1 vCPU, most free 0 vCPU)",
			}}
			if diff := cmp.Diff(want, e.Reasons); diff != "" {
				t.Errorf("guest %d: reasons (-want +got):\n%s", tt.wantFit+1, diff)
			}
			h, _ := s.Host("h1")
			if diff := cmp.Diff(int64(tt.wantFit), h.Used.VCPUs); diff != "" {
				t.Errorf("used vCPUs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHugepagesNeverOvercommit(t *testing.T) {
	cfg := Config{Overhead: &Overhead{FixedMiB: 256}, Aggregates: map[string]AggregatePolicy{
		"hp": {CPURatio: 16, RAMRatio: 16},
	}}
	// 64 GiB host with a 16 GiB pool of 2 MiB pages: two 8 GiB guests fill it.
	s := mustSnapshot(t, cfg, hosts(newHost("h1").withRAM(64*gibMiB).withHugepages(8192, 0).inAggs("hp")))
	req := vmReq(2, 8*gibMiB)
	req.Flavor.Hugepages = true
	for k := 0; k < 2; k++ {
		d, err := placeAndApply(t, s, req)
		if err != nil {
			t.Fatalf("guest %d: %v", k+1, err)
		}
		want := Resources{VCPUs: 2, MemoryMiB: 256, Hugepages: 4096, Guests: 1}
		if diff := cmp.Diff(want, d.Claims[0].Resources); diff != "" {
			t.Errorf("guest %d: claim (-want +got):\n%s", k+1, diff)
		}
	}
	_, err := s.Place(req)
	e := fitError(t, err)
	if diff := cmp.Diff("0/1 hosts fit: 1 hugepages (need 4096 pages, most free 0 pages)", e.Summary); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	// Normal memory is untouched by hugepage guests beyond their overhead.
	if _, err := s.Place(vmReq(2, 8*gibMiB)); err != nil {
		t.Errorf("normal guest after hugepage pool is full: %v", err)
	}
}

func TestFailsafeRefusesWhatAllocationsAllow(t *testing.T) {
	cfg := Config{Overhead: noOverhead, Aggregates: map[string]AggregatePolicy{"over": {RAMRatio: 1.5}}}
	// Allocations: 60 of 96 GiB (64 GiB at 1.5). Measured: 3277 MiB free, so
	// a 2 GiB guest would leave 1.2 GiB, under the 2 GiB margin.
	s := mustSnapshot(t, cfg, hosts(newHost("h1").withRAM(64*gibMiB).inAggs("over").used(4, 60*gibMiB).measuredFree(3277)))
	d, err := s.Place(vmReq(1, 2*gibMiB))
	e := fitError(t, err)
	if diff := cmp.Diff([]string{}, chosen(d)); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	want := Explanation{
		Hosts: 1, FullNow: 1,
		Reasons: []ReasonCount{{
			Reason: ReasonFailsafe, Class: ClassFullNow, Count: 1, SampleHosts: []string{"h1"},
			Dimension: &Dimension{Name: "memory", Unit: "MiB", Need: 2048, Best: 3277, MarginMiB: 2048},
			Message:   "1 memory failsafe (free 1.2 GiB < margin 2 GiB)",
		}},
		Summary: "0/1 hosts fit: 1 memory failsafe (free 1.2 GiB < margin 2 GiB)",
	}
	if diff := cmp.Diff(want, e); diff != "" {
		t.Errorf("explanation (-want +got):\n%s", diff)
	}
}

func TestOverheadIsAllocated(t *testing.T) {
	// 24 GiB host, DefaultOverhead: an 8 GiB guest takes 8 GiB + 496 MiB, so
	// a 15 GiB guest (+ 706 MiB) no longer fits although 8 + 15 < 24.
	s := mustSnapshot(t, Config{}, hosts(newHost("h1").withRAM(24*gibMiB)))
	d, err := placeAndApply(t, s, vmReq(1, 8*gibMiB))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(int64(8*gibMiB+496), d.Claims[0].Resources.MemoryMiB); diff != "" {
		t.Errorf("claimed memory (-want +got):\n%s", diff)
	}
	_, err = s.Place(vmReq(1, 15*gibMiB))
	e := fitError(t, err)
	if diff := cmp.Diff(map[Reason]int{ReasonMemory: 1}, reasonCounts(e)); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
}

func TestExplanationSummaryAndJSON(t *testing.T) {
	var bs []*hostBuilder
	for k := 1; k <= 120; k++ {
		b := newHost(fmt.Sprintf("h%03d", k))
		switch {
		case k <= 80:
			b.inRegion("dc2")
		case k <= 117:
			b.measuredFree(3277)
		default:
			b.heartbeat(t0.Add(-10 * time.Minute))
		}
		bs = append(bs, b)
	}
	s := mustSnapshot(t, testConfig(), hosts(bs...))
	req := vmReq(2, 2*gibMiB)
	req.Region = "dc1"
	d, err := s.Place(req)
	e := fitError(t, err)
	want := Explanation{
		Hosts: 120, NeverMatch: 80, Unavailable: 3, FullNow: 37,
		Reasons: []ReasonCount{
			{Reason: ReasonWrongRegion, Class: ClassNeverMatch, Count: 80, SampleHosts: []string{"h001", "h002", "h003"},
				Message: "80 wrong region"},
			{Reason: ReasonFailsafe, Class: ClassFullNow, Count: 37, SampleHosts: []string{"h081", "h082", "h083"},
				Dimension: &Dimension{Name: "memory", Unit: "MiB", Need: 2048, Best: 3277, MarginMiB: 2048},
				Message:   "37 memory failsafe (free 1.2 GiB < margin 2 GiB)"},
			{Reason: ReasonStaleHeartbeat, Class: ClassUnavailable, Count: 3, SampleHosts: []string{"h118", "h119", "h120"},
				Message: "3 stale heartbeat"},
		},
		Summary: "0/120 hosts fit: 80 wrong region, 37 memory failsafe (free 1.2 GiB < margin 2 GiB), 3 stale heartbeat",
	}
	if diff := cmp.Diff(want, e); diff != "" {
		t.Errorf("explanation (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(e, d.Explanation); diff != "" {
		t.Errorf("decision and error explain differently (-error +decision):\n%s", diff)
	}

	// The explanation is plain JSON with snake_case names and codes.
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var round Explanation
	if err := json.Unmarshal(b, &round); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if diff := cmp.Diff(e, round); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	var raw map[string]any
	_ = json.Unmarshal(b, &raw)
	first := raw["reasons"].([]any)[1].(map[string]any)
	gotKeys := map[string]any{"reason": first["reason"], "class": first["class"], "margin": first["dimension"].(map[string]any)["margin_mib"]}
	wantKeys := map[string]any{"reason": "memory_failsafe", "class": "full_now", "margin": float64(2048)}
	if diff := cmp.Diff(wantKeys, gotKeys); diff != "" {
		t.Errorf("JSON fields (-want +got):\n%s", diff)
	}
}

func TestUnavailableHosts(t *testing.T) {
	s := mustSnapshot(t, testConfig(), hosts(
		newHost("a").withState(StateMaintenance),
		newHost("b").withState(StateDown),
		newHost("c").heartbeat(t0.Add(-2*time.Minute)),
		newHost("d").withCPU(1),
	))
	_, err := s.Place(vmReq(2, gibMiB))
	e := fitError(t, err)
	got := map[string]any{"never": e.NeverMatch, "unavailable": e.Unavailable, "full": e.FullNow, "summary": e.Summary}
	want := map[string]any{"never": 1, "unavailable": 3, "full": 0,
		"summary": "0/4 hosts fit: 1 host too small: cpu (need 2 vCPU, largest 1 vCPU), 1 maintenance, 1 down, 1 stale heartbeat"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("explanation (-want +got):\n%s", diff)
	}
}

func TestWeighers(t *testing.T) {
	x := &hostIdx{cpuCap: 10, ramCap: 1000, cpuPhys: 10, ramPhys: 1000, disk: 100}
	tests := []struct {
		name string
		got  int64
		want int64
	}{
		{"pack: empty host", weighPack(x, &Resources{}), 0},
		{"pack: half CPU, quarter RAM", weighPack(x, &Resources{VCPUs: 5, MemoryMiB: 250}), 750_000},
		{"pack: full host", weighPack(x, &Resources{VCPUs: 10, MemoryMiB: 1000}), 2_000_000},
		{"spread: is minus pack", weighSpread(x, &Resources{VCPUs: 5, MemoryMiB: 250}), -750_000},
		{"best fit: exact node wastes nothing", weighBestFit(x, &need{cpu: 10, mem: 1000, disk: 100}), 0},
		{"best fit: half node", weighBestFit(x, &need{cpu: 5, mem: 500, disk: 50}), -1_500_000},
		{"zero capacity does not divide by zero", weighPack(&hostIdx{}, &Resources{VCPUs: 1}), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("score (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPackVersusSpread(t *testing.T) {
	fleet := func() []Host {
		return hosts(
			newHost("d").used(16, 64*gibMiB).inAggs("dense"), // half used
			newHost("a").used(16, 64*gibMiB).inAggs("dense"), // half used, same score as d
			newHost("b").used(4, 8*gibMiB).inAggs("dense"),
			newHost("c").inAggs("dense"), // empty
			newHost("e").inAggs("dense").withState(StateDown),
		)
	}
	tests := []struct {
		name string
		cfg  Config
		req  func(r *Request)
		want string
	}{
		{name: "spread by default picks the emptiest", want: "c"},
		{name: "pack picks the fullest, ties to the smallest ID", req: func(r *Request) { r.Weigher = WeighPack }, want: "a"},
		{name: "spread on request", cfg: Config{DefaultWeigher: WeighPack}, req: func(r *Request) { r.Weigher = WeighSpread }, want: "c"},
		{name: "config default", cfg: Config{DefaultWeigher: WeighPack}, want: "a"},
		{name: "aggregate default", cfg: Config{Aggregates: map[string]AggregatePolicy{"dense": {Weigher: WeighPack}}},
			req: func(r *Request) { r.Aggregates = []string{"dense"} }, want: "a"},
		{name: "pack skips a host that is too full", req: func(r *Request) { r.Weigher = WeighPack; r.Flavor.VCPUs = 20 }, want: "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Overhead = noOverhead
			s := mustSnapshot(t, cfg, fleet())
			req := vmReq(2, 2*gibMiB)
			if tt.req != nil {
				tt.req(&req)
			}
			d, err := s.Place(req)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]any{"host": chosen(d), "down": reasonCounts(d.Explanation)[ReasonDown]}
			want := map[string]any{"host": []string{tt.want}, "down": 1}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBareMetal(t *testing.T) {
	fleet := func(inUse ...string) []Host {
		bs := []*hostBuilder{
			newHost("n1").bare().withCPU(64).withRAM(512 * gibMiB).withDisk(2000),
			newHost("n2").bare().withCPU(16).withRAM(64 * gibMiB).withDisk(480),
			newHost("n3").bare().withCPU(16).withRAM(96 * gibMiB).withDisk(960),
			newHost("n4").bare().withCPU(8).withRAM(32 * gibMiB).withDisk(480),
			newHost("vm1"),
		}
		for _, b := range bs {
			for _, id := range inUse {
				if b.h.ID == id {
					b.usedGuests(1)
				}
			}
		}
		return hosts(bs...)
	}
	req := Request{Constraints: Constraints{Kind: KindBareMetal}, Flavor: Flavor{VCPUs: 16, MemoryMiB: 64 * gibMiB, DiskGiB: 400}}
	tests := []struct {
		name    string
		inUse   []string
		want    []string
		reasons map[Reason]int
	}{
		{name: "smallest matching node", want: []string{"n2"},
			reasons: map[Reason]int{ReasonWrongKind: 1, ReasonTooSmallCPU: 1}},
		{name: "next smallest when it is in use", inUse: []string{"n2"}, want: []string{"n3"},
			reasons: map[Reason]int{ReasonWrongKind: 1, ReasonTooSmallCPU: 1, ReasonNodeInUse: 1}},
		{name: "all matching nodes in use", inUse: []string{"n1", "n2", "n3"}, want: []string{},
			reasons: map[Reason]int{ReasonWrongKind: 1, ReasonTooSmallCPU: 1, ReasonNodeInUse: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSnapshot(t, testConfig(), fleet(tt.inUse...))
			d, err := s.Place(req)
			if len(tt.want) == 0 {
				fitError(t, err)
			} else if err != nil {
				t.Fatal(err)
			}
			got := map[string]any{"hosts": chosen(d), "reasons": reasonCounts(d.Explanation)}
			want := map[string]any{"hosts": tt.want, "reasons": tt.reasons}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
	// The claim takes the whole node: a node hosts exactly one server.
	s := mustSnapshot(t, testConfig(), fleet())
	d, err := s.Place(req)
	if err != nil {
		t.Fatal(err)
	}
	want := Resources{VCPUs: 16, MemoryMiB: 64 * gibMiB, DiskGiB: 480, Guests: 1}
	if diff := cmp.Diff(want, d.Claims[0].Resources); diff != "" {
		t.Errorf("claim (-want +got):\n%s", diff)
	}
}

func TestServerGroupPolicies(t *testing.T) {
	fleet := hosts(
		newHost("a1").inZone("rack-a"),
		newHost("a2").inZone("rack-a").used(8, 32*gibMiB),
		newHost("b1").inZone("rack-b"),
		newHost("c1").inZone("rack-c").used(16, 64*gibMiB),
	)
	members := []Member{{ID: "s1", HostID: "a1", Zone: "rack-a"}, {ID: "s2", HostID: "b1", Zone: "rack-b"}}
	tests := []struct {
		name    string
		policy  AffinityPolicy
		members []Member
		want    []string
		reasons map[Reason]int
	}{
		{"same_host stays on the members' host", SameHost, members[:1], []string{"a1"}, map[Reason]int{ReasonAffinitySameHost: 3}},
		{"different_host avoids members", DifferentHost, members, []string{"a2"}, map[Reason]int{ReasonAntiAffinityHost: 2}},
		{"different_rack avoids members' racks", DifferentRack, members, []string{"c1"}, map[Reason]int{ReasonAntiAffinityRack: 3}},
		{"different_rack with every rack taken", DifferentRack, append(members, Member{ID: "s3", HostID: "c1", Zone: "rack-c"}),
			[]string{}, map[Reason]int{ReasonAntiAffinityRack: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSnapshot(t, testConfig(), append([]Host(nil), fleet...))
			req := vmReq(2, 2*gibMiB)
			req.Affinity = &Affinity{Policy: tt.policy, Members: tt.members}
			d, err := s.Place(req)
			if len(tt.want) == 0 {
				e := fitError(t, err)
				if diff := cmp.Diff(4, e.Policy); diff != "" {
					t.Errorf("policy count (-want +got):\n%s", diff)
				}
			}
			got := map[string]any{"hosts": chosen(d), "reasons": reasonCounts(d.Explanation)}
			want := map[string]any{"hosts": tt.want, "reasons": tt.reasons}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClaimConflictAndRetry(t *testing.T) {
	s := mustSnapshot(t, testConfig(), hosts(newHost("h1").withGen(5), newHost("h2").withGen(9).used(8, 8*gibMiB)))
	d, err := s.Place(vmReq(4, 4*gibMiB))
	if err != nil {
		t.Fatal(err)
	}
	want := []Claim{{HostID: "h1", Region: "dc1", Zone: "rack-a", Generation: 5,
		Resources: Resources{VCPUs: 4, MemoryMiB: 4 * gibMiB, Guests: 1}}}
	if diff := cmp.Diff(want, d.Claims); diff != "" {
		t.Fatalf("claims (-want +got):\n%s", diff)
	}
	// Another corrald wins the race on h1.
	if err := s.Apply(d); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(d); !errors.Is(err, ErrConflict) {
		t.Fatalf("second Apply = %v, want ErrConflict", err)
	}
	h, _ := s.Host("h1")
	wantHost := map[string]int64{"gen": 6, "cpu": 4, "mem": 4 * gibMiB, "guests": 1, "free": 124 * gibMiB}
	gotHost := map[string]int64{"gen": h.Generation, "cpu": h.Used.VCPUs, "mem": h.Used.MemoryMiB, "guests": h.Used.Guests, "free": h.Heartbeat.FreeMemoryMiB}
	if diff := cmp.Diff(wantHost, gotHost); diff != "" {
		t.Errorf("host after claim (-want +got):\n%s", diff)
	}
	// The loser re-runs on the refreshed snapshot and gets a fresh generation.
	d2, err := s.Place(vmReq(4, 4*gibMiB))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{6}, []int64{d2.Claims[0].Generation}); diff != "" {
		t.Errorf("generation (-want +got):\n%s", diff)
	}
	// Update replaces a host, e.g. after reading it back from the store.
	h.State = StateMaintenance
	s.Update(h)
	d3, _ := s.Place(vmReq(4, 4*gibMiB))
	if diff := cmp.Diff([]string{"h2"}, chosen(d3)); diff != "" {
		t.Errorf("after Update (-want +got):\n%s", diff)
	}
	// Update adds new hosts and new names.
	s.Update(newHost("h0").inZone("rack-new").withTraits("gpu").build())
	req := vmReq(1, gibMiB)
	req.Traits = []string{"gpu"}
	d4, _ := s.Place(req)
	if diff := cmp.Diff([]string{"h0"}, chosen(d4)); diff != "" {
		t.Errorf("after adding a host (-want +got):\n%s", diff)
	}
	if err := s.Apply(Decision{Claims: []Claim{{HostID: "ghost"}}}); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("Apply on unknown host = %v, want ErrUnknownHost", err)
	}
}

func TestPlaceHasNoSideEffect(t *testing.T) {
	s := mustSnapshot(t, testConfig(), hosts(newHost("h1"), newHost("h2").used(2, gibMiB)))
	before := append([]Host(nil), s.hosts...)
	d1, err1 := s.Place(vmReq(2, gibMiB))
	d2, err2 := s.Place(vmReq(2, gibMiB))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if diff := cmp.Diff(d1, d2); diff != "" {
		t.Errorf("dry run differs (-first +second):\n%s", diff)
	}
	if diff := cmp.Diff(before, s.hosts); diff != "" {
		t.Errorf("snapshot changed (-before +after):\n%s", diff)
	}
}

func TestHostClaims(t *testing.T) {
	d := Decision{Claims: []Claim{
		{HostID: "b", Generation: 3, Resources: Resources{VCPUs: 2, Guests: 1}},
		{HostID: "a", Generation: 7, Resources: Resources{VCPUs: 1, Guests: 1}},
		{HostID: "b", Generation: 3, Resources: Resources{VCPUs: 2, Guests: 1}, Replaces: "m1"},
	}}
	want := []Claim{
		{HostID: "a", Generation: 7, Resources: Resources{VCPUs: 1, Guests: 1}},
		{HostID: "b", Generation: 3, Resources: Resources{VCPUs: 4, Guests: 2}},
	}
	if diff := cmp.Diff(want, d.HostClaims()); diff != "" {
		t.Errorf("HostClaims (-want +got):\n%s", diff)
	}
}

func TestNewSnapshotRejects(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		hosts []Host
	}{
		{"duplicate IDs", Config{}, hosts(newHost("a"), newHost("a"))},
		{"empty ID", Config{}, hosts(newHost(""))},
		{"negative ratio", Config{Aggregates: map[string]AggregatePolicy{"x": {CPURatio: -1}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSnapshot(tt.cfg, tt.hosts)
			if diff := cmp.Diff(true, isInvalid(err)); diff != "" {
				t.Errorf("invalid (-want +got):\n%s", diff)
			}
		})
	}
}
