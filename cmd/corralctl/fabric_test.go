package main

import (
	"testing"
)

// TestFabricCommands: provider network and allowed address pair flags
// become the API's fields.
func TestFabricCommands(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		routes map[string]route
		method string
		path   string
		body   string
	}{
		{"provider vlan network in other clouds' words",
			[]string{"network", "create", "ext", "--provider-physnet", "datacentre", "--provider-type", "vlan", "--segment", "300"},
			map[string]route{"POST /v1/networks": reply(201, `{"id":"net-1","name":"ext"}`)},
			"POST", "/v1/networks", `{"name":"ext","segment_type":"vlan","segment_id":300,"provider_physnet":"datacentre"}`},
		{"flat network",
			[]string{"network", "create", "lan", "--segment-type", "flat", "--provider-physnet", "datacentre"},
			map[string]route{"POST /v1/networks": reply(201, `{"id":"net-2","name":"lan"}`)},
			"POST", "/v1/networks", `{"name":"lan","segment_type":"flat","segment_id":0,"provider_physnet":"datacentre"}`},
		{"port with a VIP and a range with its MAC",
			[]string{"port", "create", "lb-1", "--network", "blue", "--allowed-address-pair", "10.0.0.100",
				"--allowed-address-pair", "10.0.9.0/24=02:aa:00:00:00:01"},
			map[string]route{"POST /v1/ports": reply(201, `{"id":"port-1"}`)},
			"POST", "/v1/ports", `{"name":"lb-1","network":"blue","allowed_address_pairs":[{"ip_address":"10.0.0.100"},{"ip_address":"10.0.9.0/24","mac_address":"02:aa:00:00:00:01"}]}`},
		{"port update replaces the pairs",
			[]string{"port", "update", "port-1", "--allowed-address-pair", "10.0.0.101"},
			map[string]route{"GET /v1/ports/port-1": reply(200, `{"id":"port-1","revision":1}`), "PATCH /v1/ports/port-1": reply(200, `{"id":"port-1"}`)},
			"PATCH", "/v1/ports/port-1", `{"allowed_address_pairs":[{"ip_address":"10.0.0.101"}]}`},
		{"port update removes the pairs",
			[]string{"port", "update", "port-1", "--no-allowed-address-pairs"},
			map[string]route{"GET /v1/ports/port-1": reply(200, `{"id":"port-1","revision":1}`), "PATCH /v1/ports/port-1": reply(200, `{"id":"port-1"}`)},
			"PATCH", "/v1/ports/port-1", `{"allowed_address_pairs":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code, got := runFake(t, tc.routes, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			last := got[len(got)-1]
			if last.Method != tc.method || last.Path != tc.path || last.Body != tc.body {
				t.Errorf("request %s %s %s\nwant    %s %s %s", last.Method, last.Path, last.Body, tc.method, tc.path, tc.body)
			}
		})
	}
	if _, stderr, code, _ := runFake(t, nil, "port", "update", "port-1", "--no-allowed-address-pairs", "--allowed-address-pair", "10.0.0.1"); code == 0 {
		t.Errorf("both pair flags accepted: %s", stderr)
	}
}
