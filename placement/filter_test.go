package placement

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// verdict is what check returns for one host.
type verdict struct {
	Reason      Reason
	Avail, Need int64
}

func TestFilters(t *testing.T) {
	gpuAgg := Config{Overhead: noOverhead, Aggregates: map[string]AggregatePolicy{"gpu-a100": {}}}
	tests := []struct {
		name string
		cfg  Config
		host *hostBuilder
		req  func(r *Request)
		want verdict
	}{
		{name: "fits", host: newHost("h"), want: verdict{}},
		// never match
		{name: "kind: vm request on a node", host: newHost("h").bare(), want: verdict{Reason: ReasonWrongKind}},
		{name: "kind: bare-metal request on a compute host", host: newHost("h"),
			req: func(r *Request) { r.Kind = KindBareMetal }, want: verdict{Reason: ReasonWrongKind}},
		{name: "region", host: newHost("h").inRegion("dc2"),
			req: func(r *Request) { r.Region = "dc1" }, want: verdict{Reason: ReasonWrongRegion}},
		{name: "region unknown to the snapshot", host: newHost("h"),
			req: func(r *Request) { r.Region = "mars" }, want: verdict{Reason: ReasonWrongRegion}},
		{name: "zone not in set", host: newHost("h").inZone("rack-c"),
			req: func(r *Request) { r.Zones = []string{"rack-a", "rack-b"} }, want: verdict{Reason: ReasonWrongZone}},
		{name: "zone in set", host: newHost("h").inZone("rack-b"),
			req: func(r *Request) { r.Zones = []string{"rack-a", "rack-b"} }, want: verdict{}},
		{name: "aggregate missing", cfg: gpuAgg, host: newHost("h").inAggs("general"),
			req: func(r *Request) { r.Aggregates = []string{"gpu-a100"} }, want: verdict{Reason: ReasonMissingAggregate}},
		{name: "aggregate unknown", host: newHost("h").inAggs("general"),
			req: func(r *Request) { r.Aggregates = []string{"nope"} }, want: verdict{Reason: ReasonMissingAggregate}},
		{name: "aggregate present among several", host: newHost("h").inAggs("general", "gpu-a100"),
			req: func(r *Request) { r.Aggregates = []string{"gpu-a100"} }, want: verdict{}},
		{name: "trait missing", host: newHost("h").withTraits("nvme"),
			req: func(r *Request) { r.Traits = []string{"nvme", "sriov"} }, want: verdict{Reason: ReasonMissingTrait}},
		{name: "trait unknown", host: newHost("h").withTraits("nvme"),
			req: func(r *Request) { r.Traits = []string{"gpu"} }, want: verdict{Reason: ReasonMissingTrait}},
		{name: "traits all present", host: newHost("h").withTraits("sriov", "nvme", "gpu"),
			req: func(r *Request) { r.Traits = []string{"nvme", "sriov"} }, want: verdict{}},
		{name: "hugepages: host has no pool", host: newHost("h"),
			req: func(r *Request) { r.Flavor.Hugepages = true }, want: verdict{Reason: ReasonNoHugepages}},
		{name: "hugepages: wrong page size", host: newHost("h").withHugepages(16, 1024*1024),
			req: func(r *Request) { r.Flavor.Hugepages, r.Flavor.HugepageSizeKiB = true, 2048 }, want: verdict{Reason: ReasonNoHugepages}},
		{name: "too small: cpu", host: newHost("h").withCPU(4),
			req: func(r *Request) { r.Flavor.VCPUs = 8 }, want: verdict{ReasonTooSmallCPU, 4, 8}},
		{name: "too small: cpu after reservation", host: newHost("h").withCPU(8).withReserved(2, 0),
			req: func(r *Request) { r.Flavor.VCPUs = 8 }, want: verdict{ReasonTooSmallCPU, 6, 8}},
		{name: "too small: memory (total minus margin)", host: newHost("h").withRAM(16 * gibMiB),
			req: func(r *Request) { r.Flavor.MemoryMiB = 15 * gibMiB }, want: verdict{ReasonTooSmallMemory, 14 * gibMiB, 15 * gibMiB}},
		{name: "too small: disk", host: newHost("h").withDisk(100),
			req: func(r *Request) { r.Flavor.DiskGiB = 200 }, want: verdict{ReasonTooSmallDisk, 100, 200}},
		{name: "too small: hugepage pool", host: newHost("h").withHugepages(1024, 0),
			req: func(r *Request) { r.Flavor.Hugepages, r.Flavor.MemoryMiB = true, 4*gibMiB }, want: verdict{ReasonTooSmallHugepages, 1024, 2048}},
		// unavailable
		{name: "maintenance", host: newHost("h").withState(StateMaintenance), want: verdict{Reason: ReasonMaintenance}},
		{name: "down", host: newHost("h").withState(StateDown), want: verdict{Reason: ReasonDown}},
		{name: "unknown state is down", host: newHost("h").withState("rebooting"), want: verdict{Reason: ReasonDown}},
		{name: "empty state is up", host: newHost("h").withState(""), want: verdict{}},
		{name: "heartbeat stale", host: newHost("h").heartbeat(t0.Add(-61 * time.Second)), want: verdict{Reason: ReasonStaleHeartbeat}},
		{name: "heartbeat exactly at max age", host: newHost("h").heartbeat(t0.Add(-60 * time.Second)), want: verdict{}},
		{name: "heartbeat missing", host: newHost("h").heartbeat(time.Time{}), want: verdict{Reason: ReasonStaleHeartbeat}},
		{name: "heartbeat max age from config", cfg: Config{Overhead: noOverhead, HeartbeatMaxAge: 5 * time.Minute},
			host: newHost("h").heartbeat(t0.Add(-4 * time.Minute)), want: verdict{}},
		{name: "more permanent reason wins: down host in wrong region", host: newHost("h").inRegion("dc2").withState(StateDown),
			req: func(r *Request) { r.Region = "dc1" }, want: verdict{Reason: ReasonWrongRegion}},
		// policy
		{name: "same_host: other host", host: newHost("h"),
			req: func(r *Request) {
				r.Affinity = &Affinity{Policy: SameHost, Members: []Member{{ID: "s1", HostID: "other"}}}
			}, want: verdict{Reason: ReasonAffinitySameHost}},
		{name: "same_host: member's host", host: newHost("h"),
			req:  func(r *Request) { r.Affinity = &Affinity{Policy: SameHost, Members: []Member{{ID: "s1", HostID: "h"}}} },
			want: verdict{}},
		{name: "same_host: first member goes anywhere", host: newHost("h"),
			req: func(r *Request) { r.Affinity = &Affinity{Policy: SameHost} }, want: verdict{}},
		{name: "different_host: member's host", host: newHost("h"),
			req: func(r *Request) {
				r.Affinity = &Affinity{Policy: DifferentHost, Members: []Member{{ID: "s1", HostID: "h", Zone: "rack-a"}}}
			}, want: verdict{Reason: ReasonAntiAffinityHost}},
		{name: "different_rack: member's rack", host: newHost("h").inZone("rack-a"),
			req: func(r *Request) {
				r.Affinity = &Affinity{Policy: DifferentRack, Members: []Member{{ID: "s1", HostID: "x", Zone: "rack-a"}}}
			}, want: verdict{Reason: ReasonAntiAffinityRack}},
		{name: "different_rack: other rack", host: newHost("h").inZone("rack-b"),
			req: func(r *Request) {
				r.Affinity = &Affinity{Policy: DifferentRack, Members: []Member{{ID: "s1", HostID: "x", Zone: "rack-a"}}}
			}, want: verdict{}},
		// full now
		{name: "cpu", host: newHost("h").withCPU(8).used(7, 0),
			req: func(r *Request) { r.Flavor.VCPUs = 2 }, want: verdict{ReasonCPU, 1, 2}},
		{name: "memory", host: newHost("h").withRAM(64*gibMiB).used(1, 60*gibMiB),
			req: func(r *Request) { r.Flavor.MemoryMiB = 8 * gibMiB }, want: verdict{ReasonMemory, 4 * gibMiB, 8 * gibMiB}},
		{name: "memory honours reservation", host: newHost("h").withRAM(64*gibMiB).withReserved(0, 8*gibMiB).used(1, 50*gibMiB),
			req: func(r *Request) { r.Flavor.MemoryMiB = 8 * gibMiB }, want: verdict{ReasonMemory, 6 * gibMiB, 8 * gibMiB}},
		{name: "hugepages", host: newHost("h").withHugepages(8192, 0).usedPages(7000),
			req: func(r *Request) { r.Flavor.Hugepages, r.Flavor.MemoryMiB = true, 4*gibMiB }, want: verdict{ReasonHugepages, 1192, 2048}},
		{name: "disk", host: newHost("h").withDisk(100).usedDisk(90),
			req: func(r *Request) { r.Flavor.DiskGiB = 20 }, want: verdict{ReasonDisk, 10, 20}},
		{name: "failsafe: allocations fit, measured free does not", host: newHost("h").measuredFree(5 * gibMiB),
			req: func(r *Request) { r.Flavor.MemoryMiB = 4 * gibMiB }, want: verdict{ReasonFailsafe, 5 * gibMiB, 4 * gibMiB}},
		{name: "failsafe: exactly at margin fits", host: newHost("h").measuredFree(6 * gibMiB),
			req: func(r *Request) { r.Flavor.MemoryMiB = 4 * gibMiB }, want: verdict{}},
		{name: "failsafe counts overhead", cfg: Config{Overhead: &Overhead{FixedMiB: 512}}, host: newHost("h").measuredFree(6 * gibMiB),
			req: func(r *Request) { r.Flavor.MemoryMiB = 4 * gibMiB }, want: verdict{ReasonFailsafe, 6 * gibMiB, 4*gibMiB + 512}},
		{name: "failsafe margin from config", cfg: Config{Overhead: noOverhead, FailsafeMarginMiB: 512}, host: newHost("h").measuredFree(5 * gibMiB),
			req: func(r *Request) { r.Flavor.MemoryMiB = 4 * gibMiB }, want: verdict{}},
		// bare metal
		{name: "node matches hardware", host: newHost("n").bare().withCPU(16).withRAM(64 * gibMiB).withDisk(480),
			req: func(r *Request) {
				r.Kind, r.Flavor = KindBareMetal, Flavor{VCPUs: 16, MemoryMiB: 64 * gibMiB, DiskGiB: 480}
			}, want: verdict{}},
		{name: "node has too little RAM", host: newHost("n").bare().withCPU(16).withRAM(32 * gibMiB),
			req:  func(r *Request) { r.Kind, r.Flavor = KindBareMetal, Flavor{VCPUs: 16, MemoryMiB: 64 * gibMiB} },
			want: verdict{ReasonTooSmallMemory, 32 * gibMiB, 64 * gibMiB}},
		{name: "node in use", host: newHost("n").bare().usedGuests(1),
			req: func(r *Request) { r.Kind = KindBareMetal }, want: verdict{ReasonNodeInUse, 0, 1}},
		{name: "node ignores heartbeat", host: newHost("n").bare().heartbeat(time.Time{}),
			req: func(r *Request) { r.Kind = KindBareMetal }, want: verdict{}},
		{name: "node in maintenance", host: newHost("n").bare().withState(StateMaintenance),
			req: func(r *Request) { r.Kind = KindBareMetal }, want: verdict{Reason: ReasonMaintenance}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.Overhead == nil {
				cfg.Overhead = noOverhead
			}
			// A second host in another region, zone and aggregate makes sure
			// the names in the request are known to the snapshot.
			other := newHost("zz").inRegion("dc1").inZone("rack-b").inAggs("gpu-a100").withTraits("sriov")
			s := mustSnapshot(t, cfg, hosts(tt.host, other))
			req := vmReq(2, 2*gibMiB)
			if tt.req != nil {
				tt.req(&req)
			}
			c, err := s.compile(req.Constraints, req.Flavor, req.Affinity, req.Now)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			i := s.byID[tt.host.h.ID]
			h := &s.hosts[i]
			var got verdict
			got.Reason, got.Avail, got.Need = s.check(&c, i, &h.Used, h.Heartbeat.FreeMemoryMiB)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("check (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompileRejectsInvalidRequests(t *testing.T) {
	s := mustSnapshot(t, testConfig(), hosts(newHost("h")))
	tests := []struct {
		name string
		req  func(r *Request)
	}{
		{"no vcpu", func(r *Request) { r.Flavor.VCPUs = 0 }},
		{"no memory", func(r *Request) { r.Flavor.MemoryMiB = 0 }},
		{"unknown kind", func(r *Request) { r.Kind = "container" }},
		{"unknown weigher", func(r *Request) { r.Weigher = "random" }},
		{"best_fit cannot be requested", func(r *Request) { r.Weigher = WeighBestFit }},
		{"unknown policy", func(r *Request) { r.Affinity = &Affinity{Policy: "soft"} }},
		{"no time for a vm", func(r *Request) { r.Now = time.Time{} }},
		{"hugepages on bare metal", func(r *Request) { r.Kind, r.Flavor.Hugepages = KindBareMetal, true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := vmReq(1, 1024)
			tt.req(&req)
			_, err := s.Place(req)
			if diff := cmp.Diff(true, isInvalid(err)); diff != "" {
				t.Errorf("ErrInvalidRequest (-want +got):\n%s\nerr: %v", diff, err)
			}
		})
	}
}

func TestOverheadFor(t *testing.T) {
	tests := []struct {
		name  string
		o     Overhead
		guest int64
		want  int64
	}{
		{"default, 8 GiB guest", DefaultOverhead, 8 * gibMiB, 256 + 240},
		{"default, 512 MiB guest rounds up", DefaultOverhead, 512, 256 + 15},
		{"default, 64 GiB guest", DefaultOverhead, 64 * gibMiB, 256 + 1920},
		{"fixed only", Overhead{FixedMiB: 512}, 16 * gibMiB, 512},
		{"none", Overhead{}, 16 * gibMiB, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.o.For(tt.guest)); diff != "" {
				t.Errorf("For (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRatios(t *testing.T) {
	cfg := Config{Overhead: noOverhead, Aggregates: map[string]AggregatePolicy{
		"general": {CPURatio: 4, RAMRatio: 1.5},
		"strict":  {CPURatio: 1},
		"odd":     {CPURatio: 1.15},
	}, DefaultCPURatio: 2}
	tests := []struct {
		name           string
		host           *hostBuilder
		cpuCap, ramCap int64
	}{
		{"no aggregate takes defaults", newHost("h").withCPU(10).withRAM(10 * gibMiB), 20, 10 * gibMiB},
		{"one aggregate", newHost("h").withCPU(10).withRAM(10 * gibMiB).inAggs("general"), 40, 15 * gibMiB},
		{"several aggregates take the minimum", newHost("h").withCPU(10).withRAM(10*gibMiB).inAggs("general", "strict"), 10, 15 * gibMiB},
		{"ratio without float error", newHost("h").withCPU(20).inAggs("odd"), 23, 128 * gibMiB},
		{"reservations before the ratio", newHost("h").withCPU(10).withReserved(2, gibMiB).withRAM(10 * gibMiB).inAggs("general"), 32, 13824},
		{"hugepage pool is not normal memory", newHost("h").withRAM(64*gibMiB).withHugepages(8192, 0).inAggs("strict"), 32, 48 * gibMiB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSnapshot(t, cfg, hosts(tt.host))
			got := [2]int64{s.idx[0].cpuCap, s.idx[0].ramCap}
			if diff := cmp.Diff([2]int64{tt.cpuCap, tt.ramCap}, got); diff != "" {
				t.Errorf("caps (-want +got):\n%s", diff)
			}
		})
	}
}
