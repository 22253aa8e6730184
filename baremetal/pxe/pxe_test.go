package pxe

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
)

var ctx = context.Background()

// env is a provisioning service over a SQLite store, served by httptest
// (requests come from 127.0.0.1), with its log captured.
type env struct {
	t    *testing.T
	dir  string
	st   *store.Store
	keys *baremetal.Keyring
	svc  *Service
	web  *httptest.Server
	log  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Config{SQLitePath: filepath.Join(dir, "corral.db")})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := baremetal.NewKeyring(make([]byte, 32))
	for _, d := range []string{"ramdisk", "images"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "ramdisk", "vmlinuz"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "ramdisk", "initrd.gz"), []byte("initrd"), 0o644)
	_, subnet, _ := net.ParseCIDR("10.79.9.0/24")
	log := &syncBuffer{}
	svc, err := New(Config{Interface: "br0", Address: net.ParseIP("10.79.9.1"), Subnet: subnet, RamdiskDir: filepath.Join(dir, "ramdisk"),
		ImageDir: filepath.Join(dir, "images"), StateDir: filepath.Join(dir, "pxe"), Logger: slog.New(slog.NewTextHandler(log, nil))}, st, keys)
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(svc.Handler())
	t.Cleanup(web.Close)
	t.Cleanup(func() { st.Close() })
	return &env{t: t, dir: dir, st: st, keys: keys, svc: svc, web: web, log: log}
}

func (e *env) do(method, path, token string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.web.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// lease writes dnsmasq's lease file: mac leased ip (the test's requests
// come from 127.0.0.1).
func (e *env) lease(mac, ip string) {
	e.t.Helper()
	line := fmt.Sprintf("%d %s %s * 01:%s\n", time.Now().Add(time.Hour).Unix(), mac, ip, mac)
	if err := os.WriteFile(filepath.Join(e.dir, "pxe", "leases"), []byte(line), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// claim exchanges a boot token for the agent's work.
func (e *env) claim(nodeID, token string) (int, types.AgentWork) {
	e.t.Helper()
	code, body := e.do("POST", "/agent/claim?node="+nodeID, token)
	var w types.AgentWork
	if code == 200 {
		if err := json.Unmarshal([]byte(body), &w); err != nil {
			e.t.Fatal(err)
		}
	}
	return code, w
}

// tokenOf returns the corral.token of an iPXE script, or "".
func tokenOf(script string) string {
	_, after, ok := strings.Cut(script, "corral.token=")
	if !ok {
		return ""
	}
	return strings.Fields(after)[0]
}

// deploying enrols bm1 and puts it in deploying/wait_agent with a boot
// token issued as the conductor does, expiring after ttl.
func (e *env) deploying(imageID string, ttl time.Duration) types.Node {
	e.t.Helper()
	r, _ := e.st.CreateRegion(ctx, types.RegionCreate{Name: "dc1"})
	z, _ := e.st.CreateZone(ctx, r.ID, types.ZoneCreate{Name: "rack1"})
	n, err := e.st.CreateNode(ctx, store.NodeEnrolment{Name: "bm1", RegionID: r.ID, ZoneID: z.ID, MACs: []string{"52:54:00:00:00:01"}, Actor: "t"})
	if err != nil {
		e.t.Fatal(err)
	}
	_, err = e.st.ChangeNode(ctx, n.ID, 0, "t", func(_ *store.Tx, r *store.NodeRow) (string, error) {
		sealed, err := baremetal.SealToken(e.keys, types.NodeDeploying, 1, "boot-tok")
		r.State, r.Step, r.Attempt, r.AgentToken, r.ImageID = types.NodeDeploying, baremetal.StepWaitAgent, 1, sealed, imageID
		r.AgentTokenExpires = time.Now().Add(ttl).UnixMicro()
		r.SetDeadline(time.Now().Add(time.Hour))
		return "", err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestDeployCredentialsHTTP covers the deploy credentials over HTTP: no
// token in the script of an idle node or for a request from an address
// other than the node's lease; the token once, refused on replay (403) and
// when expired (401), every refusal logged with the node.
func TestDeployCredentialsHTTP(t *testing.T) {
	e := newEnv(t)
	n := e.deploying("", time.Hour)
	const mac = "52:54:00:00:00:01"

	// No lease, or a lease to another address: no credential.
	if _, body := e.do("GET", "/ipxe?mac="+mac, ""); tokenOf(body) != "" || !strings.Contains(body, "exit") {
		t.Errorf("script without a lease: %q", body)
	}
	e.lease(mac, "10.79.9.10")
	if _, body := e.do("GET", "/ipxe?mac="+mac, ""); tokenOf(body) != "" {
		t.Errorf("script for a request not from the lease: %q", body)
	}
	if code, _ := e.claim(n.ID, "boot-tok"); code != http.StatusForbidden {
		t.Errorf("claim not from the lease: %d", code)
	}
	if !strings.Contains(e.log.String(), "deploy credential refused") || !strings.Contains(e.log.String(), "node="+n.ID) {
		t.Errorf("refusal not logged with the node:\n%s", e.log)
	}
	// From the leased address: the token, once.
	e.lease(mac, "127.0.0.1")
	_, body := e.do("GET", "/ipxe?mac="+mac, "")
	if tokenOf(body) != "boot-tok" {
		t.Fatalf("script for the leased address: %q", body)
	}
	code, work := e.claim(n.ID, "boot-tok")
	if code != 200 || work.Mode != types.AgentDeploy || work.Token == "" {
		t.Fatalf("claim: %d %+v", code, work)
	}
	if code, _ := e.claim(n.ID, "boot-tok"); code != http.StatusForbidden {
		t.Errorf("replayed claim: %d, want 403", code)
	}
	if _, body := e.do("GET", "/ipxe?mac="+mac, ""); tokenOf(body) != "" {
		t.Errorf("script after the token was used: %q", body)
	}
	if code, _ := e.do("POST", "/agent/report?node="+n.ID, "boot-tok"); code != http.StatusForbidden {
		t.Errorf("report with the boot token: %d, want 403", code)
	}
	if !strings.Contains(e.log.String(), "used already (replay)") {
		t.Errorf("replay not logged:\n%s", e.log)
	}
	ev, _ := e.st.ListNodeEvents(ctx, n.ID, store.ListOptions{Limit: 100})
	refusals := 0
	for _, x := range ev.Items {
		if x.To == "credential refused" {
			refusals++
		}
	}
	if refusals != 1 {
		t.Errorf("%d refusals in the node's history, want 1 (at most one a minute)", refusals)
	}

	// Expired: 401, and no credential in the script.
	e2 := newEnv(t)
	n2 := e2.deploying("", -time.Second)
	e2.lease(mac, "127.0.0.1")
	if _, body := e2.do("GET", "/ipxe?mac="+mac, ""); tokenOf(body) != "" {
		t.Errorf("script with an expired token: %q", body)
	}
	if code, _ := e2.claim(n2.ID, "boot-tok"); code != http.StatusUnauthorized {
		t.Errorf("claim with an expired token: %d, want 401", code)
	}
	if !strings.Contains(e2.log.String(), "deploy token expired") {
		t.Errorf("expiry not logged:\n%s", e2.log)
	}
}

// TestLeaseFile reads dnsmasq's lease file format.
func TestLeaseFile(t *testing.T) {
	now := time.Unix(1000, 0)
	file := "2000 52:54:00:00:00:01 10.0.0.5 host 01:52:54:00:00:00:01\n" +
		"500 52:54:00:00:00:02 10.0.0.6 * *\n" +
		"0 52:54:00:00:00:03 10.0.0.7 * *\n" +
		"junk\n"
	for mac, want := range map[string]string{"52:54:00:00:00:01": "10.0.0.5", "52-54-00-00-00-01": "10.0.0.5",
		"52:54:00:00:00:02": "", "52:54:00:00:00:03": "10.0.0.7", "52:54:00:00:00:09": "", "bad": ""} {
		if got := leaseIP(file, mac, now); got != want {
			t.Errorf("lease of %s = %q, want %q", mac, got, want)
		}
	}
}

// TestProvisioningHTTP: per-node iPXE scripts, the DHCP hosts file, the
// token-guarded image download and the report's digest check.
func TestProvisioningHTTP(t *testing.T) {
	e := newEnv(t)
	dir, st, keys, svc := e.dir, e.st, e.keys, e.svc
	get := func(path, token string) (int, string) { return e.do("GET", path, token) }

	web := e.web
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
	sealed, _ := baremetal.SealToken(keys, types.NodeDeploying, 1, "tok")
	st.ChangeNode(ctx, n.ID, 0, "t", func(_ *store.Tx, r *store.NodeRow) (string, error) {
		r.State, r.Step, r.Attempt, r.AgentToken, r.ImageID = types.NodeDeploying, baremetal.StepWaitAgent, 1, sealed, img.ID
		r.AgentTokenExpires = time.Now().Add(time.Hour).UnixMicro()
		return "", nil
	})
	e.lease("52:54:00:00:00:01", "127.0.0.1")
	if _, body := get("/ipxe?mac=52:54:00:00:00:01", ""); !strings.Contains(body, "corral.token=tok corral.mode=deploy") ||
		!strings.Contains(body, "corral.node="+n.ID) {
		t.Errorf("deploying node got %q", body)
	}
	if code, _ := get("/agent/image?node="+n.ID, "forged"); code != http.StatusForbidden {
		t.Errorf("image with a forged token: %d", code)
	}
	if code, _ := get("/agent/image?node="+n.ID, "tok"); code != http.StatusForbidden {
		t.Errorf("image with the boot token: %d", code)
	}
	_, work := e.claim(n.ID, "tok")
	code, body := get("/agent/image?node="+n.ID, work.Token)
	if code != 200 || body != string(image) {
		t.Errorf("image: %d, %d bytes", code, len(body))
	}
	// A report whose digest is not the image's is a failure.
	rep, _ := json.Marshal(types.AgentReport{Mode: "deploy", Done: true, OK: true, SHA256: "0000"})
	req, _ := http.NewRequest("POST", web.URL+"/agent/report?node="+n.ID, strings.NewReader(string(rep)))
	req.Header.Set("Authorization", "Bearer "+work.Token)
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
