package pxe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
)

var ctx = context.Background()

// TestProvisioningHTTP: per-node iPXE scripts, the DHCP hosts file, the
// token-guarded image download and the report's digest check.
func TestProvisioningHTTP(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Config{SQLitePath: filepath.Join(dir, "corral.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, _ := baremetal.NewKeyring(make([]byte, 32))
	for _, d := range []string{"ramdisk", "images"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "ramdisk", "vmlinuz"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "ramdisk", "initrd.gz"), []byte("initrd"), 0o644)
	_, subnet, _ := net.ParseCIDR("10.79.9.0/24")
	svc, err := New(Config{Interface: "br0", Address: net.ParseIP("10.79.9.1"), Subnet: subnet, RamdiskDir: filepath.Join(dir, "ramdisk"),
		ImageDir: filepath.Join(dir, "images"), StateDir: filepath.Join(dir, "pxe")}, st, keys)
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(svc.Handler())
	defer web.Close()
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", web.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	r, _ := st.CreateRegion(ctx, types.RegionCreate{Name: "dc1"})
	z, _ := st.CreateZone(ctx, r.ID, types.ZoneCreate{Name: "rack1"})
	n, err := st.CreateNode(ctx, store.NodeEnrolment{Name: "bm1", RegionID: r.ID, ZoneID: z.ID, MACs: []string{"52:54:00:00:00:01"}, Actor: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	hosts, _ := os.ReadFile(filepath.Join(dir, "pxe", "hosts"))
	if string(hosts) != "52:54:00:00:00:01,10.79.9.10\n" {
		t.Errorf("hosts file = %q", hosts)
	}
	if _, body := get("/ipxe?mac=52:54:00:00:00:99", ""); !strings.Contains(body, "not enrolled") || !strings.Contains(body, "exit") {
		t.Errorf("unknown MAC got %q", body)
	}
	if _, body := get("/ipxe?mac=52-54-00-00-00-01", ""); !strings.Contains(body, "booting from the local disk") {
		t.Errorf("idle node got %q", body)
	}

	// A deploying node waiting for its agent gets the ramdisk with its token.
	image := []byte(strings.Repeat("image", 1000))
	img, _ := st.CreateImage(ctx, types.ImageCreate{Name: "os", DiskFormat: "raw"})
	os.WriteFile(filepath.Join(dir, "images", img.ID), image, 0o644)
	img, _ = st.SetImageData(ctx, img.ID, int64(len(image)), "x")
	if err := svc.PrepareImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	sealed, _ := keys.Seal("tok")
	st.ChangeNode(ctx, n.ID, 0, "t", func(_ *store.Tx, r *store.NodeRow) (string, error) {
		r.State, r.Step, r.AgentToken, r.ImageID = types.NodeDeploying, baremetal.StepWaitAgent, sealed, img.ID
		return "", nil
	})
	if _, body := get("/ipxe?mac=52:54:00:00:00:01", ""); !strings.Contains(body, "corral.token=tok corral.mode=deploy") ||
		!strings.Contains(body, "corral.node="+n.ID) {
		t.Errorf("deploying node got %q", body)
	}
	if code, _ := get("/agent/image?node="+n.ID, "forged"); code != http.StatusForbidden {
		t.Errorf("image with a forged token: %d", code)
	}
	code, body := get("/agent/image?node="+n.ID, "tok")
	if code != 200 || body != string(image) {
		t.Errorf("image: %d, %d bytes", code, len(body))
	}
	// A report whose digest is not the image's is a failure.
	rep, _ := json.Marshal(types.AgentReport{Mode: "deploy", Done: true, OK: true, SHA256: "0000"})
	req, _ := http.NewRequest("POST", web.URL+"/agent/report?node="+n.ID, strings.NewReader(string(rep)))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("report: %v %v", resp, err)
	}
	row, _ := st.GetNodeRow(ctx, n.ID)
	sum := sha256.Sum256(image)
	if row.State != types.NodeError || !strings.Contains(row.LastError, hex.EncodeToString(sum[:])) {
		t.Errorf("after a bad digest: %s %q", row.State, row.LastError)
	}
}
