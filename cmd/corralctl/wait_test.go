package main

import (
	"strings"
	"testing"
)

func srvJSON(state, desired, extra string) string {
	return `{"id":"srv-1","revision":5,"name":"web-1","kind":"vm","project_id":"prj-1","flavor_id":"flv-1","image_id":"img-1",` +
		`"desired_state":"` + desired + `","state":"` + state + `","addresses":[]` + extra + `}`
}

// TestServerWait: --wait on create, stop and delete returns when the
// server reaches the state, prints each change to stderr, and fails with
// the server's reason when it ends in error.
func TestServerWait(t *testing.T) {
	tests := []struct {
		name     string
		routes   map[string]route
		args     []string
		wantCode int
		stdout   []string // substrings
		stderr   []string
		notOut   string
	}{
		{
			name: "create waits until active",
			routes: map[string]route{
				"POST /v1/servers": reply(201, srvJSON("scheduled", "active", `,"host_id":"hst-1"`)),
				"GET /v1/servers/srv-1": sequence(reply(200, srvJSON("scheduled", "active", `,"host_id":"hst-1"`)),
					reply(200, srvJSON("building", "active", `,"host_id":"hst-1"`)),
					reply(200, srvJSON("active", "active", `,"host_id":"hst-1"`))),
				"GET /v1/hosts": reply(200, `{"items":[{"id":"hst-1","name":"hv-1"}]}`),
			},
			args:   []string{"server", "create", "web-1", "--flavor", "m1", "--image", "tiny", "--wait", "--wait-interval", "10ms"},
			stdout: []string{"state:", "active"},
			stderr: []string{"waiting until active", "server web-1: scheduled (want active), host hv-1 [", "server web-1: building (want active)", "server web-1: active, host hv-1 ["},
		},
		{
			name: "create that ends in error fails with the reason",
			routes: map[string]route{
				"POST /v1/servers": reply(201, srvJSON("scheduled", "active", "")),
				"GET /v1/servers/srv-1": sequence(reply(200, srvJSON("building", "active", "")),
					reply(200, srvJSON("error", "active", `,"fault":"define domain web-1: image unreadable"`))),
			},
			args:     []string{"server", "create", "web-1", "--flavor", "m1", "--image", "tiny", "--wait", "--wait-interval", "10ms"},
			wantCode: exitError,
			stderr:   []string{"corralctl: server web-1 is error: define domain web-1: image unreadable"},
			notOut:   "state:",
		},
		{
			name: "bare-metal create shows the node's provision states",
			routes: map[string]route{
				"POST /v1/servers": reply(201, strings.Replace(srvJSON("building", "active", `,"node_id":"node-1"`), `"vm"`, `"baremetal"`, 1)),
				"GET /v1/servers/srv-1": sequence(
					reply(200, strings.Replace(srvJSON("building", "active", `,"node_id":"node-1"`), `"vm"`, `"baremetal"`, 1)),
					reply(200, strings.Replace(srvJSON("building", "active", `,"node_id":"node-1"`), `"vm"`, `"baremetal"`, 1)),
					reply(200, strings.Replace(srvJSON("active", "active", `,"node_id":"node-1"`), `"vm"`, `"baremetal"`, 1))),
				"GET /v1/nodes/node-1": sequence(reply(200, `{"id":"node-1","name":"bm1","state":"deploying"}`),
					reply(200, `{"id":"node-1","name":"bm1","state":"deploying"}`), reply(200, `{"id":"node-1","name":"bm1","state":"active"}`)),
			},
			args:   []string{"server", "create", "metal-1", "--kind", "baremetal", "--flavor", "metal", "--image", "bm", "--wait", "--wait-interval", "10ms"},
			stdout: []string{"active"},
			stderr: []string{"server web-1: building (want active), node bm1 deploying [", "server web-1: active, node bm1 active ["},
		},
		{
			name: "stop waits until stopped",
			routes: map[string]route{
				"GET /v1/servers":                reply(200, `{"items":[`+srvJSON("active", "active", "")+`]}`),
				"POST /v1/servers/srv-1/actions": reply(202, srvJSON("active", "stopped", "")),
				"GET /v1/servers/srv-1":          sequence(reply(200, srvJSON("active", "stopped", "")), reply(200, srvJSON("stopped", "stopped", ""))),
			},
			args:   []string{"server", "stop", "web-1", "--wait", "--wait-interval", "10ms"},
			stdout: []string{"stopped"},
			stderr: []string{"active (want stopped)", "server web-1: stopped"},
		},
		{
			name: "delete waits until gone",
			routes: map[string]route{
				"GET /v1/servers":          reply(200, `{"items":[`+srvJSON("active", "active", "")+`]}`),
				"DELETE /v1/servers/srv-1": reply(202, srvJSON("deleting", "active", "")),
				"GET /v1/servers/srv-1":    sequence(reply(200, srvJSON("deleting", "active", "")), replyError(404, "not_found", `server "srv-1": not found`, nil)),
			},
			args:   []string{"server", "delete", "web-1", "--wait", "--wait-interval", "10ms"},
			stdout: []string{"deleted server web-1"},
			stderr: []string{"server web-1: deleting", "server web-1: gone"},
		},
		{
			name: "delete answered 204 is done at once",
			routes: map[string]route{
				"GET /v1/servers":          reply(200, `{"items":[`+srvJSON("error", "active", "")+`]}`),
				"DELETE /v1/servers/srv-1": reply(204, ""),
			},
			args:   []string{"server", "delete", "web-1", "--wait", "--wait-interval", "10ms"},
			stdout: []string{"deleted server web-1"},
		},
		{
			name: "a wait that runs out fails",
			routes: map[string]route{
				"POST /v1/servers":      reply(201, srvJSON("scheduled", "active", "")),
				"GET /v1/servers/srv-1": reply(200, srvJSON("building", "active", "")),
			},
			args:     []string{"server", "create", "web-1", "--flavor", "m1", "--image", "tiny", "--wait", "--wait-interval", "10ms", "--wait-timeout", "300ms"},
			wantCode: exitError,
			stderr:   []string{"server srv-1 not active after", "(state building)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code, _ := runFake(t, tt.routes, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if tt.notOut != "" && strings.Contains(stdout, tt.notOut) {
				t.Errorf("stdout has %q:\n%s", tt.notOut, stdout)
			}
		})
	}
}
