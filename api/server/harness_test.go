package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// env is a real corrald API on a real SQLite store, served over HTTP.
type env struct {
	t     *testing.T
	srv   *Server
	store *store.Store
	http  *httptest.Server
	admin string
	// dbPath is the SQLite file, when the store is SQLite.
	dbPath string

	mu  sync.Mutex
	now time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "corral.db")
	st, err := store.Open(context.Background(), store.Config{SQLitePath: path})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvStore(t, st, "")
	e.dbPath = path
	return e
}

// newEnvStore serves an API over st; admin reuses an admin token (for a
// second replica over the same database) or, if empty, makes one.
func newEnvStore(t *testing.T, st *store.Store, admin string) *env {
	t.Helper()
	dir := t.TempDir()
	var err error
	e := &env{t: t, store: st, now: time.Now(), admin: admin}
	e.srv, err = New(Config{Store: st, ImageDir: filepath.Join(dir, "images"), MaxBodyBytes: 64 << 10,
		MaxImageBytes: 1 << 20, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(e.srv.Handler())
	t.Cleanup(func() { e.http.Close(); st.Close() })
	if e.admin == "" {
		_, e.admin, err = st.CreateToken(context.Background(), types.Token{Name: "admin", Role: types.RoleAdmin}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// resp is an answer: status, headers and raw body.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// apiErr returns the error body of an error answer.
func (r resp) apiErr(t *testing.T) *types.Error {
	t.Helper()
	var eb types.ErrorBody
	r.decode(t, &eb)
	if eb.Error == nil {
		t.Fatalf("no error in %d answer %s", r.status, r.body)
	}
	return eb.Error
}

// call sends body (a string is sent as is, anything else as JSON).
func (e *env) call(token, method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	r, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{status: r.StatusCode, header: r.Header, body: b}
}

// must sends a request as admin and fails the test unless it answers want.
func (e *env) must(want int, method, path string, body any, out any) resp {
	e.t.Helper()
	r := e.call(e.admin, method, path, body)
	if r.status != want {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, r.status, r.body, want)
	}
	if out != nil {
		r.decode(e.t, out)
	}
	return r
}

// catalogue is the minimum a server needs.
type catalogue struct {
	region  types.Region
	zone    types.Zone
	agg     types.Aggregate
	flavor  types.Flavor
	image   types.Image
	project types.Project
	host    types.Host
}

// addHost registers a compute host as its agent would, and heartbeats
// plenty of free memory.
func (e *env) addHost(name, zone string, cpus, ramMiB int64, aggregates ...string) types.Host {
	e.t.Helper()
	var reg types.HostRegistration
	e.must(200, "POST", "/v1/hosts/register", types.HostRegister{Name: name, Region: "dc1", Zone: zone, Aggregates: aggregates,
		Inventory: types.Inventory{CPUs: cpus, RAMMiB: ramMiB, DiskGiB: 1000}}, &reg)
	e.must(204, "POST", "/v1/hosts/"+reg.Host.ID+"/heartbeat", types.Heartbeat{Usage: types.Usage{MemFreeMiB: ramMiB - 1024}}, nil)
	return reg.Host
}

func (e *env) catalogue() catalogue {
	e.t.Helper()
	var c catalogue
	e.must(201, "POST", "/v1/regions", types.RegionCreate{Name: "dc1"}, &c.region)
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, &c.zone)
	e.must(201, "POST", "/v1/aggregates", map[string]any{"name": "gen10", "traits": []string{"nvme"}}, &c.agg)
	e.must(201, "POST", "/v1/flavors", types.FlavorCreate{Name: "m1.small", VCPUs: 1, RAMMiB: 512, DiskGiB: 1}, &c.flavor)
	e.must(201, "POST", "/v1/images", types.ImageCreate{Name: "tiny", DiskFormat: "qcow2"}, &c.image)
	e.must(200, "PUT", "/v1/images/"+c.image.ID+"/file", qcow2Data(e.t, nil), &c.image)
	e.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "kafka"}, &c.project)
	c.host = e.addHost("hv1.dc1", "rack1", 64, 262144, "gen10")
	return c
}

func (c catalogue) server(name string) types.ServerCreate {
	return types.ServerCreate{Name: name, Kind: "vm", Project: c.project.ID, Flavor: c.flavor.ID, Image: c.image.ID}
}

// qcow2Data returns a small qcow2 image made by qemu-img, with the extra
// qemu-img create arguments (such as "-b", base, "-F", "raw").
func qcow2Data(t *testing.T, extra []string) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	args := append(append([]string{"create", "-q", "-f", "qcow2"}, extra...), p, "1M")
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v: %s", args, err, out)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// token creates a token with role (and project) and returns its secret.
func (e *env) token(role, project string) string {
	e.t.Helper()
	var tc types.TokenCreated
	e.must(201, "POST", "/v1/tokens", types.TokenCreate{Name: role + "-tok", Role: role, Project: project}, &tc)
	return tc.Secret
}

// counts returns how many objects of each kind exist, to prove a refused
// request changed nothing.
func (e *env) counts() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	for _, p := range []string{"regions", "zones", "aggregates", "flavors", "images", "projects", "servers", "hosts", "tokens"} {
		var l types.List[json.RawMessage]
		e.must(200, "GET", "/v1/"+p+"?limit=1000", nil, &l)
		out[p] = len(l.Items)
	}
	return out
}
