package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// benchSizes are the fleet sizes every benchmark runs at.
var benchSizes = []int{1_000, 10_000, 50_000}

// benchConfig is a realistic configuration: three hardware types with
// different ratios and default weighers.
func benchConfig() Config {
	return Config{Aggregates: map[string]AggregatePolicy{
		"general": {CPURatio: 4, RAMRatio: 1.0},
		"highmem": {CPURatio: 2, RAMRatio: 1.2, Weigher: WeighPack},
		"stream":  {CPURatio: 1},
	}}
}

// benchFleet builds n hosts in 4 regions and 60 racks (15 per region) with
// mixed hardware and mixed free capacity: 0–90 % allocated, measured free
// memory a little under what allocations say, 1 % in maintenance, 0.5 %
// down and 1 % with a stale heartbeat. The same seed gives the same fleet.
func benchFleet(n int) []Host {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	hs := make([]Host, n)
	for i := range hs {
		rk := i % 60
		h := Host{
			ID:     fmt.Sprintf("host-%06d", i),
			Region: fmt.Sprintf("dc%d", rk/15+1),
			Zone:   fmt.Sprintf("dc%d-rack%02d", rk/15+1, rk%15),
			Kind:   KindVM, State: StateUp,
			Heartbeat: Heartbeat{At: t0.Add(-time.Duration(r.IntN(30)) * time.Second)},
			Reserved:  Resources{VCPUs: 2, MemoryMiB: 4 * gibMiB},
		}
		switch k := r.IntN(10); {
		case k < 6:
			h.Aggregates = []string{"general"}
			h.VCPUs, h.MemoryMiB, h.DiskGiB = 64, 256*gibMiB, 2000
			h.Traits = []string{"sriov"}
		case k < 8:
			h.Aggregates = []string{"highmem"}
			h.VCPUs, h.MemoryMiB, h.DiskGiB = 96, 768*gibMiB, 4000
			h.Traits = []string{"nvme", "sriov"}
			h.HugepagesTotal = 65536 // 128 GiB of 2 MiB pages
		default:
			h.Aggregates = []string{"stream", "general"}
			h.VCPUs, h.MemoryMiB, h.DiskGiB = 48, 192*gibMiB, 1000
			h.Traits = []string{"nvme"}
		}
		normal := h.MemoryMiB - h.HugepagesTotal*2 - h.Reserved.MemoryMiB
		fill := r.Float64() * 0.9
		h.Used = Resources{
			VCPUs:     int64(float64(h.VCPUs-2) * fill * 2),
			MemoryMiB: int64(float64(normal) * fill),
			DiskGiB:   int64(float64(h.DiskGiB) * fill),
			Guests:    int64(fill * 40),
		}
		h.Heartbeat.FreeMemoryMiB = normal - h.Used.MemoryMiB - int64(r.IntN(8*gibMiB))
		switch p := r.IntN(1000); {
		case p < 10:
			h.State = StateMaintenance
		case p < 15:
			h.State = StateDown
		case p < 25:
			h.Heartbeat.At = t0.Add(-10 * time.Minute)
		}
		hs[i] = h
	}
	return hs
}

// benchRequests is a mix of typical requests, cycled through.
func benchRequests() []Request {
	small := vmReq(2, 4*gibMiB)
	regional := vmReq(8, 32*gibMiB)
	regional.Region = "dc2"
	big := vmReq(16, 128*gibMiB)
	big.Aggregates = []string{"highmem"}
	big.Traits = []string{"nvme"}
	zoned := vmReq(4, 16*gibMiB)
	zoned.Zones = []string{"dc3-rack01", "dc3-rack02", "dc3-rack03"}
	zoned.Weigher = WeighPack
	huge := vmReq(8, 32*gibMiB)
	huge.Flavor.Hugepages = true
	return []Request{small, regional, big, zoned, huge}
}

func mustBenchSnapshot(b *testing.B, n int) *Snapshot {
	b.Helper()
	s, err := NewSnapshot(benchConfig(), benchFleet(n))
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkPlace measures one decision (filter, weigh, select, explain) on
// an unchanging snapshot.
func BenchmarkPlace(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			s := mustBenchSnapshot(b, n)
			reqs := benchRequests()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := s.Place(reqs[i%len(reqs)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPlaceLatency runs b.N single decisions, each applied to the
// snapshot as a won claim, and reports the p50, p99 and max latency of one
// decision. Run it with -benchtime=2000x for 2,000 decisions.
func BenchmarkPlaceLatency(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			s := mustBenchSnapshot(b, n)
			reqs := benchRequests()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				d, err := s.Place(reqs[i%len(reqs)])
				lat = append(lat, time.Since(start))
				if err != nil {
					continue // a full fleet explains instead; still a decision
				}
				if err := s.Apply(d); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) }
			b.ReportMetric(pct(0.50), "p50-ns")
			b.ReportMetric(pct(0.99), "p99-ns")
			b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
		})
	}
}

// BenchmarkGangBrokers places 60 Kafka broker groups of 10 members each
// (600 members) one after the other, applying each decision, on a fresh
// snapshot per iteration. ns/op is the time for all 600 members.
func BenchmarkGangBrokers(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			fleet := benchFleet(n)
			g := GroupRequest{Role: RoleBroker, Members: 10, MinZones: 3, ReplicationFactor: 3,
				Flavor: Flavor{VCPUs: 8, MemoryMiB: 32 * gibMiB, DiskGiB: 500}, Now: t0}
			b.ReportAllocs()
			placed := 0
			for b.Loop() {
				b.StopTimer()
				s, err := NewSnapshot(benchConfig(), slices.Clone(fleet))
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				placed = 0
				for range 60 {
					d, err := s.PlaceGroup(g)
					if err != nil {
						b.Fatalf("group %d: %v", placed/10, err)
					}
					if err := s.Apply(d); err != nil {
						b.Fatal(err)
					}
					placed += len(d.Claims)
				}
			}
			b.ReportMetric(float64(placed), "members")
		})
	}
}

// BenchmarkNewSnapshot measures indexing a fleet, paid once per snapshot.
func BenchmarkNewSnapshot(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			fleet := benchFleet(n)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				hs := slices.Clone(fleet)
				b.StartTimer()
				if _, err := NewSnapshot(benchConfig(), hs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
