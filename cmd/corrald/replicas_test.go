package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
)

// TestTwoReplicasOnePostgres starts two real corrald processes on one
// PostgreSQL database and sends 50 concurrent creates, split between them,
// at hosts with room for exactly 40: exactly 40 are placed, 10 get a clear
// 409, and no host is over its limit.
func TestTwoReplicasOnePostgres(t *testing.T) {
	db := testenv.PostgresDatabase(t, "corral_replicas")
	dir := t.TempDir()
	testenv.Build(t, dir, ".")
	bin := filepath.Join(dir, "corrald")
	// a writes the bootstrap admin token; b finds an admin and writes none.
	a := testenv.StartCorrald(t, bin, "--postgres-dsn", db)
	b := testenv.StartCorrald(t, bin, "--postgres-dsn", db)
	tok, err := os.ReadFile(a.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ca := client.New(a.Endpoint, strings.TrimSpace(string(tok)), nil)
	cb := client.New(b.Endpoint, strings.TrimSpace(string(tok)), nil)
	mustCreate := func(path string, in any) {
		if _, err := client.Create[map[string]any](ctx, ca, path, in, ""); err != nil {
			t.Fatalf("create %s: %v", path, err)
		}
	}
	mustCreate("/v1/regions", types.RegionCreate{Name: "dc1"})
	mustCreate("/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"})
	mustCreate("/v1/flavors", types.FlavorCreate{Name: "c1", VCPUs: 1, RAMMiB: 256, DiskGiB: 1})
	mustCreate("/v1/projects", types.ProjectCreate{Name: "p"})
	img, err := client.Create[types.Image](ctx, ca, "/v1/images", types.ImageCreate{Name: "tiny", DiskFormat: "raw"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.UploadImage(ctx, img.ID, strings.NewReader("bytes")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		reg, err := ca.RegisterHost(ctx, types.HostRegister{Name: fmt.Sprintf("hv%d", i), Region: "dc1", Zone: "rack1",
			Inventory: types.Inventory{CPUs: 10, RAMMiB: 65536, DiskGiB: 100}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := ca.WithToken(reg.Token).Heartbeat(ctx, reg.Host.ID, types.Usage{MemFreeMiB: 60000}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := []*client.Client{ca, cb}[i%2]
			_, err := client.Create[types.Server](ctx, c, "/v1/servers", types.ServerCreate{Name: fmt.Sprintf("s%d", i), Kind: "vm",
				Project: "p", Flavor: "c1", Image: "tiny"}, "")
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				codes["created"]++
			} else {
				codes[client.Code(err)]++
			}
		}(i)
	}
	wg.Wait()
	if codes["created"] != 40 || codes[types.CodeNoValidHost] != 10 {
		t.Fatalf("outcomes = %v, want 40 created and 10 no_valid_host", codes)
	}
	hosts, err := client.ListAll[types.Host](ctx, ca, "/v1/hosts", nil)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, h := range hosts {
		if h.Allocated.VCPUs > 10 {
			t.Errorf("host %s over-allocated: %d of 10 vCPUs", h.Name, h.Allocated.VCPUs)
		}
		total += h.Allocated.VCPUs
	}
	if total != 40 {
		t.Errorf("allocated %d vCPUs, want 40", total)
	}
}
