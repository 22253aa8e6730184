package server

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// BenchmarkCreateServer measures server creates through real HTTP on
// loopback against SQLite with 8 concurrent clients: auth, validation of
// every reference, the insert, and the audit entry. Target: ≥ 2,000/s on
// 2 cores.
//
//	go test ./api/server -run '^$' -bench CreateServer -benchtime 5000x
func BenchmarkCreateServer(b *testing.B) {
	e := newEnv(&testing.T{})
	defer e.http.Close()
	c := e.benchCatalogue(b)
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
