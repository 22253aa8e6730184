package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
)

// TestTwoReplicasOnePostgres starts two real corrald processes on one
// PostgreSQL database and sends 50 concurrent creates, split between them,
// at hosts with room for exactly 40: exactly 40 are placed, 10 get a clear
// 409, and no host is over its limit.
func TestTwoReplicasOnePostgres(t *testing.T) {
	dsn := testenv.Require(t, "CORRAL_TEST_PG_DSN", "a PostgreSQL server")
	db := freshDatabase(t, dsn)
	dir := t.TempDir()
	bin := filepath.Join(dir, "corrald")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build corrald: %v\n%s", err, out)
	}
	start := func(name string) string {
		addr := freeAddr(t)
		cmd := exec.Command(bin, "--listen", addr, "--data-dir", filepath.Join(dir, name), "--postgres-dsn", db,
			"--bootstrap-token-file", filepath.Join(dir, "admin-token"))
		log, _ := os.Create(filepath.Join(dir, name+".log"))
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitReady(t, "http://"+addr)
		return "http://" + addr
	}
	a := start("a") // writes the bootstrap admin token
	b := start("b") // finds an admin and writes none
	tok, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ca := client.New(a, strings.TrimSpace(string(tok)), nil)
	cb := client.New(b, strings.TrimSpace(string(tok)), nil)
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
			Inventory: types.Inventory{CPUs: 10, RAMMiB: 65536, DiskGiB: 100}})
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

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitReady(t *testing.T, url string) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get(url + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("corrald at %s not ready", url)
}

func freshDatabase(t *testing.T, dsn string) string {
	admin, err := sqlx.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var b [6]byte
	rand.Read(b[:])
	name := "corral_replicas_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP DATABASE " + name + " WITH (FORCE)") })
	base, query, _ := strings.Cut(dsn, "?")
	out := base[:strings.LastIndex(base, "/")+1] + name
	if query != "" {
		out += "?" + query
	}
	return out
}
