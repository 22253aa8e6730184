package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// request is what the fake API saw of one call.
type request struct {
	Method, Path, Query string
	Body                string
	IfMatch             string
	IdempotencyKey      string // "<random>" for a key corralctl made up
	ContentType         string
}

// route answers one "METHOD /path" of the fake API. n counts the calls to
// the route so far, from 1.
type route func(w http.ResponseWriter, r *http.Request, n int)

// fakeAPI is a hand-written stand-in for corrald: it answers from its
// routes and records every request. A request without a route fails the
// test.
type fakeAPI struct {
	t      *testing.T
	routes map[string]route
	mu     sync.Mutex
	calls  map[string]int
	got    []request
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key := r.Header.Get("Idempotency-Key")
	if strings.HasPrefix(key, "corralctl-") {
		key = "<random>"
	}
	if r.Header.Get("Authorization") == "" {
		apiError(w, 401, "unauthenticated", "no token: send Authorization: Bearer <token>", nil)
		return
	}
	if r.Header.Get("Authorization") != "Bearer test-token" {
		f.t.Errorf("%s %s: Authorization %q, want the test token", r.Method, r.URL.Path, r.Header.Get("Authorization"))
	}
	f.mu.Lock()
	f.got = append(f.got, request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(body),
		IfMatch: r.Header.Get("If-Match"), IdempotencyKey: key, ContentType: r.Header.Get("Content-Type")})
	name := r.Method + " " + r.URL.Path
	f.calls[name]++
	n := f.calls[name]
	f.mu.Unlock()
	rt, ok := f.routes[name]
	if !ok {
		f.t.Errorf("unexpected request %s", name)
		apiError(w, 404, "not_found", "no route in the fake", nil)
		return
	}
	rt(w, r, n)
}

// reply answers with status and v as JSON.
func reply(status int, v string) route {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, v)
	}
}

// byQuery answers with the reply for the request's raw query.
func byQuery(replies map[string]route) route {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		rt, ok := replies[r.URL.RawQuery]
		if !ok {
			apiError(w, 400, "invalid_argument", "unexpected query "+r.URL.RawQuery, nil)
			return
		}
		rt(w, r, n)
	}
}

// sequence answers the n-th call with the n-th route.
func sequence(rs ...route) route {
	return func(w http.ResponseWriter, r *http.Request, n int) { rs[min(n, len(rs))-1](w, r, n) }
}

func apiError(w http.ResponseWriter, status int, code, msg string, details map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(types.ErrorBody{Error: &types.Error{Code: code, Message: msg, Details: details}})
}

func replyError(status int, code, msg string, details map[string]any) route {
	return func(w http.ResponseWriter, _ *http.Request, _ int) { apiError(w, status, code, msg, details) }
}

const (
	serverJSON = `{"id":"srv-1","revision":5,"name":"web-1","kind":"vm","project_id":"prj-1","flavor_id":"flv-1","image_id":"img-1","desired_state":"stopped","state":"pending","addresses":[]}`
	regionA    = `{"id":"rgn-a","revision":1,"name":"a"}`
	regionB    = `{"id":"rgn-b","revision":1,"name":"b"}`
)

// newFake starts a fake API with routes until the test ends.
func newFake(t *testing.T, routes map[string]route) (*fakeAPI, string) {
	t.Helper()
	f := &fakeAPI{t: t, routes: routes, calls: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

// requests returns what the fake has seen so far.
func (f *fakeAPI) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.got...)
}

// runEnv runs corralctl in-process with the CORRAL_ variables set as in
// env (unset ones empty) and a home without a configuration file.
func runEnv(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	for _, k := range []string{envEndpoint, envToken, envTokenFile, envConfig} {
		t.Setenv(k, env[k])
	}
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// runFake runs corralctl in-process against a fake API named by the
// environment and returns its outputs, exit status and the requests the
// fake saw.
func runFake(t *testing.T, routes map[string]route, args ...string) (stdout, stderr string, code int, got []request) {
	t.Helper()
	f, url := newFake(t, routes)
	stdout, stderr, code = runEnv(t, map[string]string{envEndpoint: url, envToken: "test-token"}, args...)
	return stdout, stderr, code, f.requests()
}

func TestCommands(t *testing.T) {
	imgFile := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(imgFile, []byte("raw disk bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	pubFile, userDataFile := filepath.Join(t.TempDir(), "id.pub"), filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(pubFile, []byte("ssh-ed25519 AAAAC3Nza ops@laptop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(userDataFile, []byte("#cloud-config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		routes     map[string]route
		wantCode   int
		wantStdout string
		wantStderr string
		want       []request
	}{
		{
			name: "server update sends only the fields given, with If-Match",
			args: []string{"server", "update", "srv-1", "--desired-state", "stopped", "--if-match", "4", "-o", "json"},
			routes: map[string]route{
				"GET /v1/servers/srv-1":   reply(200, serverJSON),
				"PATCH /v1/servers/srv-1": reply(200, `{"id":"srv-1","desired_state":"stopped"}`),
			},
			wantStdout: "{\n  \"id\": \"srv-1\",\n  \"desired_state\": \"stopped\"\n}\n",
			want: []request{
				{Method: "GET", Path: "/v1/servers/srv-1"},
				{Method: "PATCH", Path: "/v1/servers/srv-1", Body: `{"desired_state":"stopped"}`, IfMatch: `"4"`, ContentType: "application/json"},
			},
		},
		{
			name:       "a catalogue object is updated by name, and an empty value is sent when given",
			args:       []string{"flavor", "update", "m1", "--description", ""},
			routes:     map[string]route{"PATCH /v1/flavors/m1": reply(200, `{"id":"flv-1","name":"m1"}`)},
			wantStdout: "id:   flv-1\nname: m1\n",
			want:       []request{{Method: "PATCH", Path: "/v1/flavors/m1", Body: `{"description":""}`, ContentType: "application/json"}},
		},
		{
			name: "host update --aggregates '' clears the list",
			args: []string{"host", "update", "hv-1", "--aggregates", "", "--state", "maintenance"},
			routes: map[string]route{
				"PATCH /v1/hosts/hv-1": reply(200, `{"id":"host-1","state":"maintenance","aggregate_ids":[]}`),
			},
			wantStdout: "id:            host-1\nstate:         maintenance\naggregate_ids: -\n",
			want: []request{{Method: "PATCH", Path: "/v1/hosts/hv-1", Body: `{"state":"maintenance","aggregates":[]}`,
				ContentType: "application/json"}},
		},
		{
			name: "host unknown-guests lists what the agent reported",
			args: []string{"host", "unknown-guests", "hv-1"},
			routes: map[string]route{
				"GET /v1/hosts/hv-1/unknown-guests": reply(200, `{"items":[{"server_id":"srv-9","name":"web","project_id":"prj-1",`+
					`"flavor_id":"flv-1","vcpus":2,"ram_mib":4096,"state":"running","first_seen":"2026-01-02T03:04:05Z"}]}`),
			},
			wantStdout: "SERVER-ID  NAME  PROJECT  FLAVOR  VCPUS  RAM-MIB  STATE    FIRST-SEEN            DELETED\n" +
				"srv-9      web   prj-1    flv-1   2      4096     running  2026-01-02T03:04:05Z  -\n",
			want: []request{{Method: "GET", Path: "/v1/hosts/hv-1/unknown-guests"}},
		},
		{
			name: "host adopt sends the references given, nothing else",
			args: []string{"host", "adopt", "hv-1", "srv-9", "--flavor", "m1"},
			routes: map[string]route{
				"POST /v1/hosts/hv-1/unknown-guests/srv-9/adopt": reply(201, `{"id":"srv-9","state":"active"}`),
			},
			wantStdout: "id:    srv-9\nstate: active\n",
			want: []request{{Method: "POST", Path: "/v1/hosts/hv-1/unknown-guests/srv-9/adopt", Body: `{"flavor":"m1"}`,
				ContentType: "application/json"}},
		},
		{
			name: "host adopt without flags sends an empty object",
			args: []string{"host", "adopt", "hv-1", "srv-9"},
			routes: map[string]route{
				"POST /v1/hosts/hv-1/unknown-guests/srv-9/adopt": reply(201, `{"id":"srv-9"}`),
			},
			wantStdout: "id: srv-9\n",
			want: []request{{Method: "POST", Path: "/v1/hosts/hv-1/unknown-guests/srv-9/adopt", Body: "{}",
				ContentType: "application/json"}},
		},
		{
			name: "host delete-guest records the deletion",
			args: []string{"host", "delete-guest", "hv-1", "srv-9"},
			routes: map[string]route{
				"DELETE /v1/hosts/hv-1/unknown-guests/srv-9": reply(202, `{"server_id":"srv-9","generation":1}`),
			},
			wantStdout: "server_id:  srv-9\ngeneration: 1\n",
			want:       []request{{Method: "DELETE", Path: "/v1/hosts/hv-1/unknown-guests/srv-9"}},
		},
		{
			name: "a create retried after a 503 keeps its idempotency key",
			args: []string{"project", "create", "games", "-o", "json"},
			routes: map[string]route{"POST /v1/projects": sequence(
				replyError(503, "unavailable", "store unreachable", nil),
				reply(201, `{"id":"prj-1","name":"games"}`),
			)},
			wantStdout: "{\n  \"id\": \"prj-1\",\n  \"name\": \"games\"\n}\n",
			want: []request{
				{Method: "POST", Path: "/v1/projects", Body: `{"name":"games"}`, IdempotencyKey: "<random>", ContentType: "application/json"},
				{Method: "POST", Path: "/v1/projects", Body: `{"name":"games"}`, IdempotencyKey: "<random>", ContentType: "application/json"},
			},
		},
		{
			name: "server create sends every field given and --idempotency-key as is",
			args: []string{"server", "create", "web-1", "--flavor", "m1", "--image", "deb", "--project", "games",
				"--zone", "rack1", "--desired-state", "stopped", "--idempotency-key", "run-42", "-o", "json"},
			routes:     map[string]route{"POST /v1/servers": reply(201, serverJSON)},
			wantStdout: indent(t, serverJSON),
			want: []request{{Method: "POST", Path: "/v1/servers", IdempotencyKey: "run-42", ContentType: "application/json",
				Body: `{"name":"web-1","kind":"vm","project":"games","flavor":"m1","image":"deb","zone":"rack1","desired_state":"stopped"}`}},
		},
		{
			name: "server create with keypairs and a user data file sends the data base64-encoded",
			args: []string{"server", "create", "web-1", "--flavor", "m1", "--image", "deb", "--key-name", "ops,dev",
				"--user-data-file", userDataFile, "--idempotency-key", "k1", "-o", "json"},
			routes:     map[string]route{"POST /v1/servers": reply(201, serverJSON)},
			wantStdout: indent(t, serverJSON),
			want: []request{{Method: "POST", Path: "/v1/servers", IdempotencyKey: "k1", ContentType: "application/json",
				Body: `{"name":"web-1","kind":"vm","flavor":"m1","image":"deb","keypairs":["ops","dev"],"user_data":"I2Nsb3VkLWNvbmZpZwo="}`}},
		},
		{
			name:       "keypair create reads the public key file",
			args:       []string{"keypair", "create", "ops", "--public-key-file", pubFile, "--project", "games", "--idempotency-key", "k2", "-o", "json"},
			routes:     map[string]route{"POST /v1/keypairs": reply(201, `{"id":"kp-1"}`)},
			wantStdout: "{\n  \"id\": \"kp-1\"\n}\n",
			want: []request{{Method: "POST", Path: "/v1/keypairs", IdempotencyKey: "k2", ContentType: "application/json",
				Body: `{"name":"ops","project":"games","public_key":"ssh-ed25519 AAAAC3Nza ops@laptop\n"}`}},
		},
		{
			name: "aggregate create sends ratios only when given",
			args: []string{"aggregate", "create", "gpu", "--traits", "gpu,ssd", "--ram-allocation-ratio", "1.5", "-o", "json"},
			routes: map[string]route{
				"POST /v1/aggregates": reply(201, `{"id":"agg-1"}`),
			},
			wantStdout: "{\n  \"id\": \"agg-1\"\n}\n",
			want: []request{{Method: "POST", Path: "/v1/aggregates", IdempotencyKey: "<random>", ContentType: "application/json",
				Body: `{"name":"gpu","traits":["gpu","ssd"],"ram_allocation_ratio":1.5}`}},
		},
		{
			name: "a forbidden create is not retried and exits 1",
			args: []string{"server", "create", "web-1", "--flavor", "m1", "--image", "deb"},
			routes: map[string]route{"POST /v1/servers": replyError(403, "forbidden", "role reader may not post /v1/servers",
				map[string]any{"role": "reader"})},
			wantCode:   1,
			wantStderr: "corralctl: forbidden: role reader may not post /v1/servers\n  role: reader\n",
			want: []request{{Method: "POST", Path: "/v1/servers", IdempotencyKey: "<random>", ContentType: "application/json",
				Body: `{"name":"web-1","kind":"vm","flavor":"m1","image":"deb"}`}},
		},
		{
			name: "token create sends no idempotency key and converts --expires-in",
			args: []string{"token", "create", "ci", "--role", "member", "--project", "games", "--expires-in", "720h"},
			routes: map[string]route{
				"POST /v1/tokens": reply(201, `{"id":"tok-1","name":"ci","role":"member","secret":"s3cret"}`),
			},
			wantStdout: "id:     tok-1\nname:   ci\nrole:   member\nsecret: s3cret\n",
			wantStderr: "corralctl: store the secret now: it is not shown again\n",
			want: []request{{Method: "POST", Path: "/v1/tokens", ContentType: "application/json",
				Body: `{"name":"ci","role":"member","project":"games","expires_in_seconds":2592000}`}},
		},
		{
			name: "image create --file creates the record, then streams the file",
			args: []string{"image", "create", "deb", "--disk-format", "raw", "--file", imgFile, "-o", "json"},
			routes: map[string]route{
				"POST /v1/images":           reply(201, `{"id":"img-1","status":"queued"}`),
				"PUT /v1/images/img-1/file": reply(200, `{"id":"img-1","status":"active"}`),
			},
			wantStdout: "{\n  \"id\": \"img-1\",\n  \"status\": \"active\"\n}\n",
			want: []request{
				{Method: "POST", Path: "/v1/images", Body: `{"name":"deb","disk_format":"raw"}`, IdempotencyKey: "<random>", ContentType: "application/json"},
				{Method: "PUT", Path: "/v1/images/img-1/file", Body: "raw disk bytes", ContentType: "application/octet-stream"},
			},
		},
		{
			name: "a failed upload says how to finish",
			args: []string{"image", "create", "deb", "--disk-format", "raw", "--file", imgFile},
			routes: map[string]route{
				"POST /v1/images":           reply(201, `{"id":"img-1","status":"queued"}`),
				"PUT /v1/images/img-1/file": replyError(413, "body_too_large", "image is over the 1-byte limit", nil),
			},
			wantCode: 1,
			wantStderr: "corralctl: body_too_large: image is over the 1-byte limit\n" +
				"  hint: image img-1 was created without data; retry with: corralctl image upload img-1 " + imgFile + "\n",
			want: []request{
				{Method: "POST", Path: "/v1/images", Body: `{"name":"deb","disk_format":"raw"}`, IdempotencyKey: "<random>", ContentType: "application/json"},
				{Method: "PUT", Path: "/v1/images/img-1/file", Body: "raw disk bytes", ContentType: "application/octet-stream"},
			},
		},
		{
			name: "list --all follows cursors; JSON is one array",
			args: []string{"region", "list", "--all", "--limit", "1", "-o", "json"},
			routes: map[string]route{"GET /v1/regions": byQuery(map[string]route{
				"limit=1":           reply(200, `{"items":[`+regionA+`],"next_cursor":"c2"}`),
				"cursor=c2&limit=1": reply(200, `{"items":[`+regionB+`]}`),
			})},
			wantStdout: indent(t, "["+regionA+","+regionB+"]"),
			want: []request{
				{Method: "GET", Path: "/v1/regions", Query: "limit=1"},
				{Method: "GET", Path: "/v1/regions", Query: "cursor=c2&limit=1"},
			},
		},
		{
			name:   "list without --all prints one page and says how to go on",
			args:   []string{"region", "list", "--limit", "1"},
			routes: map[string]route{"GET /v1/regions": reply(200, `{"items":[`+regionA+`],"next_cursor":"c2"}`)},
			wantStdout: "ID     NAME  DESCRIPTION\n" +
				"rgn-a  a     -\n",
			wantStderr: "corralctl: more regions: add --cursor c2 for the next page, or --all\n",
			want:       []request{{Method: "GET", Path: "/v1/regions", Query: "limit=1"}},
		},
		{
			// corrald resolves the host name; corralctl does not look the host
			// up itself (members may not read hosts).
			name: "server list filters, with a host name passed through",
			args: []string{"server", "list", "--host", "hv-1", "--project", "games", "--state", "active"},
			// The table names the project and flavor: one list of each.
			routes: map[string]route{
				"GET /v1/servers":  reply(200, `{"items":[`+serverJSON+`]}`),
				"GET /v1/projects": reply(200, `{"items":[{"id":"prj-1","name":"games"},{"id":"prj-2","name":"other"}]}`),
				"GET /v1/flavors":  reply(200, `{"items":[{"id":"flv-1","name":"m1"}]}`),
			},
			wantStdout: "ID     NAME   KIND  STATE    PROJECT  FLAVOR  HOST\n" +
				"srv-1  web-1  vm    pending  games    m1      -\n",
			want: []request{
				{Method: "GET", Path: "/v1/servers", Query: "host=hv-1&project=games&state=active"},
				{Method: "GET", Path: "/v1/projects", Query: "limit=1000"},
				{Method: "GET", Path: "/v1/flavors", Query: "limit=1000"},
			},
		},
		{
			// A name is looked up by name at once: asking for it by ID would
			// count a 404 in corrald's error rate.
			name: "server show NAME finds the server with the name filter",
			args: []string{"server", "show", "web-1"},
			routes: map[string]route{
				"GET /v1/servers/web-1": replyError(404, "not_found", `server "web-1": not found`, nil),
				"GET /v1/servers":       reply(200, `{"items":[`+serverJSON+`]}`),
				"GET /v1/servers/srv-1": reply(200, serverJSON),
			},
			wantStdout: "id:            srv-1\nname:          web-1\nrevision:      5\nkind:          vm\nproject_id:    prj-1\n" +
				"flavor_id:     flv-1\nimage_id:      img-1\ndesired_state: stopped\nstate:         pending\naddresses:     -\n",
			want: []request{
				{Method: "GET", Path: "/v1/servers", Query: "name=web-1"},
				{Method: "GET", Path: "/v1/servers/srv-1"},
			},
		},
		{
			name: "a server name shared by two servers is an error listing their IDs",
			args: []string{"server", "delete", "web"},
			routes: map[string]route{
				"GET /v1/servers/web": replyError(404, "not_found", `server "web": not found`, nil),
				"GET /v1/servers":     reply(200, `{"items":[{"id":"srv-1","name":"web"},{"id":"srv-2","name":"web"}]}`),
			},
			wantCode:   1,
			wantStderr: "corralctl: invalid_argument: 2 servers are called \"web\"; name one by its ID\n  ids: srv-1, srv-2\n",
			want: []request{
				{Method: "GET", Path: "/v1/servers", Query: "name=web"},
			},
		},
		{
			name: "an unknown server name is not_found",
			args: []string{"server", "show", "nope"},
			routes: map[string]route{
				"GET /v1/servers/nope": replyError(404, "not_found", `server "nope": not found`, nil),
				"GET /v1/servers":      reply(200, `{"items":[]}`),
			},
			wantCode:   1,
			wantStderr: "corralctl: not_found: server \"nope\": not found\n",
			want: []request{
				{Method: "GET", Path: "/v1/servers", Query: "name=nope"},
				{Method: "GET", Path: "/v1/servers/nope"},
			},
		},
		{
			name: "token show NAME scans the token list",
			args: []string{"token", "show", "ci"},
			routes: map[string]route{
				"GET /v1/tokens/ci":    replyError(404, "not_found", `token "ci": not found`, nil),
				"GET /v1/tokens":       reply(200, `{"items":[{"id":"tok-0","name":"admin"},{"id":"tok-1","name":"ci","role":"member"}]}`),
				"GET /v1/tokens/tok-1": reply(200, `{"id":"tok-1","name":"ci","role":"member"}`),
			},
			wantStdout: "id:   tok-1\nname: ci\nrole: member\n",
			want: []request{
				{Method: "GET", Path: "/v1/tokens"},
				{Method: "GET", Path: "/v1/tokens/tok-1"},
			},
		},
		{
			name: "delete goes on after a failure and exits 1",
			args: []string{"region", "delete", "a", "b", "c"},
			routes: map[string]route{
				"DELETE /v1/regions/a": reply(204, ""),
				"DELETE /v1/regions/b": replyError(409, "region_in_use", "region rgn-b is in use by 1 object",
					map[string]any{"count": 1, "used_by": []types.Ref{{Kind: "zone", ID: "zone-1", Name: "rack1"}}}),
				"DELETE /v1/regions/c": reply(204, ""),
			},
			wantCode:   1,
			wantStdout: "deleted region a\ndeleted region c\n",
			wantStderr: "corralctl: region_in_use: region rgn-b is in use by 1 object\n  count: 1\n  used by: zone zone-1 (rack1)\n",
			want: []request{
				{Method: "DELETE", Path: "/v1/regions/a"},
				{Method: "DELETE", Path: "/v1/regions/b"},
				{Method: "DELETE", Path: "/v1/regions/c"},
			},
		},
		{
			name:     "a conditional delete sends If-Match",
			args:     []string{"flavor", "delete", "m1", "--if-match", "2", "-o", "json"},
			routes:   map[string]route{"DELETE /v1/flavors/m1": reply(204, "")},
			wantCode: 0,
			want:     []request{{Method: "DELETE", Path: "/v1/flavors/m1", IfMatch: `"2"`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code, got := runFake(t, tt.routes, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if diff := cmp.Diff(tt.wantStdout, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantStderr, stderr); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

// indent is the JSON as corralctl prints it.
func indent(t *testing.T, s string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := writeJSON(&buf, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"no command", nil,
			"corralctl: corralctl needs a command: aggregate, audit, completion, flavor, host, image, keypair, network, node, port, project, region, report, security-group, server, subnet, token, version, zone\nRun 'corralctl --help' for usage.\n"},
		{"unknown command, with a suggestion", []string{"servr", "list"},
			"corralctl: unknown command \"servr\" for \"corralctl\"; did you mean server?\nRun 'corralctl --help' for usage.\n"},
		{"unknown subcommand", []string{"server", "frob"},
			"corralctl: unknown command \"frob\" for \"corralctl server\"\nRun 'corralctl server --help' for usage.\n"},
		{"group without a subcommand", []string{"audit"},
			"corralctl: corralctl audit needs a command: list\nRun 'corralctl audit --help' for usage.\n"},
		{"missing argument", []string{"server", "show"},
			"corralctl: accepts 1 arg(s), received 0\nRun 'corralctl server show --help' for usage.\n"},
		{"unknown flag", []string{"region", "list", "--colour"},
			"corralctl: unknown flag: --colour\nRun 'corralctl region list --help' for usage.\n"},
		{"bad flag value", []string{"flavor", "create", "m1", "--vcpus", "two", "--ram-mib", "1"},
			"corralctl: invalid argument \"two\" for \"--vcpus\" flag: strconv.ParseInt: parsing \"two\": invalid syntax\nRun 'corralctl flavor create --help' for usage.\n"},
		{"missing required flag", []string{"image", "create", "deb"},
			"corralctl: required flag(s) \"disk-format\" not set\nRun 'corralctl image create --help' for usage.\n"},
		{"bad output format", []string{"-o", "xml", "region", "list"},
			"corralctl: --output \"xml\": want one of table, wide, json, yaml\nRun 'corralctl region list --help' for usage.\n"},
		{"token and token file", []string{"--token", "x", "--token-file", "y", "region", "list"},
			"corralctl: --token and --token-file exclude each other\nRun 'corralctl region list --help' for usage.\n"},
		{"update without fields", []string{"region", "update", "dc1"},
			"corralctl: nothing to update: give at least one of --description, --name\nRun 'corralctl region update --help' for usage.\n"},
		{"limit below 1", []string{"server", "list", "--limit", "0"},
			"corralctl: --limit 0: must be at least 1\nRun 'corralctl server list --help' for usage.\n"},
		{"if-match with several objects", []string{"server", "delete", "a", "b", "--if-match", "3"},
			"corralctl: --if-match applies to one object, not 2\nRun 'corralctl server delete --help' for usage.\n"},
		{"fractional expiry", []string{"token", "create", "t", "--role", "reader", "--expires-in", "1.5s"},
			"corralctl: --expires-in 1.5s: want a whole number of seconds, such as 720h\nRun 'corralctl token create --help' for usage.\n"},
		{"bad host state", []string{"host", "update", "hv-1", "--state", "down"},
			"corralctl: --state \"down\": want maintenance or up\nRun 'corralctl host update --help' for usage.\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code, got := runFake(t, nil, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if diff := cmp.Diff(tt.wantStderr, stderr); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
			if len(got) != 0 {
				t.Errorf("a usage error called the API: %+v", got)
			}
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	stdout, stderr, code, _ := runFake(t, nil, "server", "create", "--help")
	if code != exitOK || stderr != "" {
		t.Errorf("exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	if !strings.Contains(stdout, "--idempotency-key") {
		t.Errorf("help does not mention --idempotency-key:\n%s", stdout)
	}
}

func TestConnectionSettings(t *testing.T) {
	routes := map[string]route{"GET /v1/projects": reply(200, `{"items":[]}`)}
	_, fake := newFake(t, routes)
	const dead = "http://127.0.0.1:1" // nothing answers there
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("test-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeConfig := func(name string, s source) string {
		raw, _ := json.Marshal(s)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fromFile := writeConfig("fake.json", source{Endpoint: fake, TokenFile: "token"}) // relative to dir
	deadFile := writeConfig("dead.json", source{Endpoint: dead, Token: "wrong"})
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
	}{
		{"the configuration file alone, with a relative token file", nil, []string{"--config", fromFile}, 0},
		{"CORRAL_CONFIG names the file", map[string]string{envConfig: fromFile}, nil, 0},
		{"the environment beats the file", map[string]string{envEndpoint: fake, envToken: "test-token"}, []string{"--config", deadFile}, 0},
		{"flags beat the environment", map[string]string{envEndpoint: dead, envToken: "wrong"},
			[]string{"--endpoint", fake, "--token-file", filepath.Join(dir, "token")}, 0},
		{"the file is used when nothing else is set", nil, []string{"--config", deadFile, "--timeout", "2s"}, 1},
		{"a missing --config file is an error", nil, []string{"--config", filepath.Join(dir, "missing.json")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runEnv(t, tt.env, append(tt.args, "project", "list", "-o", "json")...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if code == 0 && stdout != "[]\n" {
				t.Errorf("stdout %q, want the fake's empty list", stdout)
			}
		})
	}
}

func TestNoTokenHint(t *testing.T) {
	_, url := newFake(t, nil)
	_, stderr, code := runEnv(t, map[string]string{envEndpoint: url}, "server", "list")
	want := "corralctl: unauthenticated: no token: send Authorization: Bearer <token>\n" +
		"  hint: no token configured: use --token, --token-file, CORRAL_TOKEN, CORRAL_TOKEN_FILE or the configuration file\n"
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	if diff := cmp.Diff(want, stderr); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
}

// TestVersionAndHelpText: "corralctl version" prints build information
// without an endpoint or token; "server create --help" says where a new
// server starts (scheduled, not pending) and that --network ports go with
// the server.
func TestVersionAndHelpText(t *testing.T) {
	stdout, stderr, code := runEnv(t, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "corralctl ") || !strings.Contains(stdout, "revision: ") ||
		!strings.Contains(stdout, "go:       go1.") {
		t.Errorf("corralctl version: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	stdout, _, code = runEnv(t, nil, "server", "create", "--help")
	if code != 0 || strings.Contains(stdout, "pending") || !strings.Contains(stdout, `"scheduled"`) ||
		!strings.Contains(stdout, "deleted with the server") {
		t.Errorf("server create --help: exit %d\n%s", code, stdout)
	}
}
