package server

import (
	"io"
	"net/http"

	"context"
	"fmt"
	"github.com/corral-cloud/corral/api/store"
	"net/url"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// BenchmarkCreateServer measures server creates through real HTTP on
// loopback against SQLite with 8 concurrent clients: auth, validation of
// every reference, placement over 100 hosts, the claim and insert in one
// transaction, and the audit entry. Target: ≥ 2,000/s on 2 cores.
//
//	go test ./api/server -run '^$' -bench CreateServer -benchtime 5000x
func BenchmarkCreateServer(b *testing.B) {
	e := newEnv(&testing.T{})
	defer e.http.Close()
	c := e.benchCatalogue(b)
	benchHosts(b, e, 100, 64)
	cl := e.http.Client()
	var n atomic.Int64
	b.SetParallelism(8 / max(1, runtimeProcs()))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := fmt.Sprintf(`{"name":"b-%d","kind":"vm","project":%q,"flavor":%q,"image":%q}`,
				n.Add(1), c.project.ID, c.flavor.ID, c.image.ID)
			req := e.request("POST", "/v1/servers", body)
			resp, err := cl.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			drain(resp)
			if resp.StatusCode != 201 {
				b.Fatalf("create = %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "creates/s")
}

// BenchmarkListServersPage pages through 10,000 servers 100 at a time and
// reports the p50 and p99 page latency. Target: p99 ≤ 20 ms.
//
//	go test ./api/server -run '^$' -bench ListServersPage -benchtime 3x
func BenchmarkListServersPage(b *testing.B) {
	e := newEnv(&testing.T{})
	defer e.http.Close()
	c := e.benchCatalogue(b)
	ctx := context.Background()
	for i := 0; i < 10000; i++ {
		if _, err := e.store.CreateServer(ctx, types.Server{Name: fmt.Sprintf("s-%05d", i), Kind: "vm", ProjectID: c.project.ID,
			FlavorID: c.flavor.ID, ImageID: c.image.ID, DesiredState: "active"}); err != nil {
			b.Fatal(err)
		}
	}
	cl := e.http.Client()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cursor, pages := "", 0
		for {
			q := url.Values{"limit": {"100"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			t0 := time.Now()
			resp, err := cl.Do(e.request("GET", "/v1/servers?"+q.Encode(), ""))
			if err != nil {
				b.Fatal(err)
			}
			var l types.List[types.Server]
			decodeResp(b, resp, &l)
			lat = append(lat, time.Since(t0))
			pages++
			if cursor = l.NextCursor; cursor == "" {
				break
			}
		}
		if pages != 100 {
			b.Fatalf("pages = %d, want 100", pages)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms/page")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms/page")
}

// BenchmarkPlacedCreate measures server creates that are placed and
// claimed, through real HTTP on SQLite, with 16 concurrent clients over
// 1,000 hosts in 20 racks. Target: ≥ 1,000/s.
//
//	go test ./api/server -run '^$' -bench PlacedCreate -benchtime 4000x
func BenchmarkPlacedCreate(b *testing.B) {
	for _, hosts := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) {
			e := newEnv(&testing.T{})
			defer e.http.Close()
			c := e.benchCatalogue(b)
			benchHosts(b, e, hosts, 64)
			cl := e.http.Client()
			cl.Transport.(*http.Transport).MaxIdleConnsPerHost = 32
			var n atomic.Int64
			b.SetParallelism(16 / max(1, runtimeProcs()))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					body := fmt.Sprintf(`{"name":"p-%d","kind":"vm","project":%q,"flavor":%q,"image":%q}`,
						n.Add(1), c.project.ID, c.flavor.ID, c.image.ID)
					resp, err := cl.Do(e.request("POST", "/v1/servers", body))
					if err != nil {
						b.Fatal(err)
					}
					drain(resp)
					if resp.StatusCode != 201 {
						b.Fatalf("create = %d", resp.StatusCode)
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "creates/s")
		})
	}
}

// benchHosts registers n hosts with cpus CPUs and 256 GiB each over 20
// racks, heartbeating plenty of free memory.
func benchHosts(b *testing.B, e *env, n int, cpus int64) {
	ctx := b.Context()
	region, _ := e.store.CreateRegion(ctx, types.RegionCreate{Name: "dc1"})
	agg, _ := e.store.CreateAggregate(ctx, types.Aggregate{Name: "std", Traits: []string{}, CPUAllocationRatio: 4,
		RAMAllocationRatio: 1, Weigher: "spread"})
	var zones []types.Zone
	for z := 0; z < 20; z++ {
		zone, _ := e.store.CreateZone(ctx, region.ID, types.ZoneCreate{Name: fmt.Sprintf("rack%d", z)})
		zones = append(zones, zone)
	}
	for i := 0; i < n; i++ {
		z := zones[i%len(zones)]
		h, _, err := e.store.RegisterHost(ctx, types.HostRegister{Name: fmt.Sprintf("hv%d", i),
			Inventory: types.Inventory{CPUs: cpus, RAMMiB: 262144, DiskGiB: 4000}},
			store.HostPlacement{RegionID: region.ID, ZoneID: z.ID, AggregateIDs: []string{agg.ID}})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.store.Heartbeat(ctx, h.ID, types.Usage{MemFreeMiB: 250000}, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScrapeFleet measures a /metrics scrape with 10,000 hosts on
// SQLite: the fleet series are read with one query per table at each
// scrape, so its cost grows with the fleet but not with a query per host.
// Measured on a loaded 2-core machine: 7.2 MB of exposition (about 200,000
// series), 0.8 s of CPU per scrape, 3.6-4.7 s of wall time.
//
//	go test ./api/server -run '^$' -bench ScrapeFleet -benchtime 5x
func BenchmarkScrapeFleet(b *testing.B) {
	e := newEnv(&testing.T{})
	defer e.http.Close()
	benchHosts(b, e, 10000, 64)
	cl := e.http.Client()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := cl.Get(e.http.URL + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("scrape = %d", resp.StatusCode)
		}
		b.ReportMetric(float64(n), "bytes/scrape")
	}
}
