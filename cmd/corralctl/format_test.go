package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestOutputFormats: -o yaml prints the API's fields as YAML, -o wide adds
// columns, and tables name projects, flavors, hosts and racks with one
// list of each per invocation (a kind that cannot be listed shows IDs).
func TestOutputFormats(t *testing.T) {
	srvA := `{"id":"srv-1","revision":2,"created_at":"2026-01-02T03:04:05Z","name":"web-1","kind":"vm","project_id":"prj-1","flavor_id":"flv-1",` +
		`"image_id":"img-1","region_id":"rgn-1","zone_id":"zone-1","host_id":"hst-1","desired_state":"active","state":"active",` +
		`"addresses":[{"network":"net-1","ip":"10.0.0.5"}]}`
	srvB := `{"id":"srv-2","revision":1,"created_at":"2026-01-02T03:04:06Z","name":"db-1","kind":"baremetal","project_id":"prj-1","flavor_id":"flv-2",` +
		`"image_id":"img-1","region_id":"rgn-1","zone_id":"zone-1","node_id":"node-1","desired_state":"active","state":"error","fault":"deploy failed","addresses":[]}`
	list := func(items ...string) route { return reply(200, `{"items":[`+strings.Join(items, ",")+`]}`) }
	named := map[string]route{
		"GET /v1/servers":  list(srvA, srvB),
		"GET /v1/projects": list(`{"id":"prj-1","name":"games"}`),
		"GET /v1/flavors":  list(`{"id":"flv-1","name":"m1"}`, `{"id":"flv-2","name":"bm-large"}`),
		"GET /v1/hosts":    replyError(403, "forbidden", "role member may not get /v1/hosts", nil),
		"GET /v1/nodes":    replyError(403, "forbidden", "role member may not get /v1/nodes", nil),
		"GET /v1/images":   list(`{"id":"img-1","name":"debian-12"}`),
		"GET /v1/regions":  list(`{"id":"rgn-1","name":"dc1"}`),
		"GET /v1/zones":    list(`{"id":"zone-1","name":"rack-7"}`),
	}

	t.Run("table names, one list per kind", func(t *testing.T) {
		stdout, stderr, code, got := runFake(t, named, "server", "list")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		want := "ID     NAME   KIND       STATE   PROJECT  FLAVOR    HOST\n" +
			"srv-1  web-1  vm         active  games    m1        hst-1\n" +
			"srv-2  db-1   baremetal  error   games    bm-large  node-1\n"
		if diff := cmp.Diff(want, stdout); diff != "" {
			t.Errorf("stdout (-want +got):\n%s", diff)
		}
		calls := map[string]int{}
		for _, r := range got {
			calls[r.Method+" "+r.Path]++
		}
		for _, p := range []string{"GET /v1/projects", "GET /v1/flavors", "GET /v1/hosts", "GET /v1/nodes"} {
			if calls[p] != 1 {
				t.Errorf("%s called %d times, want once", p, calls[p])
			}
		}
	})

	t.Run("wide", func(t *testing.T) {
		stdout, stderr, code, _ := runFake(t, named, "server", "list", "-o", "wide")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if diff := cmp.Diff([]string{"ID", "NAME", "KIND", "STATE", "PROJECT", "FLAVOR", "HOST", "DESIRED", "IMAGE", "REGION", "RACK", "ADDRESSES", "FAULT", "CREATED"},
			strings.Fields(lines[0])); diff != "" {
			t.Errorf("wide header (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"srv-1", "web-1", "vm", "active", "games", "m1", "hst-1", "active", "debian-12", "dc1", "rack-7", "10.0.0.5", "-", "2026-01-02T03:04:05Z"},
			strings.Fields(lines[1])); diff != "" {
			t.Errorf("wide row (-want +got):\n%s", diff)
		}
		if !strings.Contains(lines[2], "deploy failed") {
			t.Errorf("wide row lacks the fault: %s", lines[2])
		}
	})

	t.Run("yaml list and object", func(t *testing.T) {
		stdout, stderr, code, got := runFake(t, map[string]route{"GET /v1/regions": list(`{"id":"rgn-1","revision":1,"name":"dc1","description":"first: hall A"}`)},
			"region", "list", "-o", "yaml")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		want := "- description: 'first: hall A'\n  id: rgn-1\n  name: dc1\n  revision: 1\n"
		if diff := cmp.Diff(want, stdout); diff != "" {
			t.Errorf("region list -o yaml (-want +got):\n%s", diff)
		}
		if len(got) != 1 {
			t.Errorf("requests %+v, want one list (YAML needs no names)", got)
		}
		stdout, _, code, _ = runFake(t, map[string]route{"GET /v1/servers/srv-1": reply(200, srvA)}, "server", "show", "srv-1", "-o", "yaml")
		if code != 0 || !strings.Contains(stdout, "addresses:\n- ip: 10.0.0.5\n  network: net-1\n") || !strings.Contains(stdout, "state: active\n") {
			t.Errorf("server show -o yaml: exit %d\n%s", code, stdout)
		}
		stdout, _, code, _ = runFake(t, map[string]route{"GET /v1/regions": list()}, "region", "list", "-o", "yaml")
		if code != 0 || stdout != "[]\n" {
			t.Errorf("empty list -o yaml: exit %d %q, want []", code, stdout)
		}
	})
}
