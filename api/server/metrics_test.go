package server

import (
	"strconv"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/types"
)

// metricValue returns the value of one series (name with its labels, in
// the exposition's order: sorted by label name), and whether it is there.
func (e *env) metricValue(series string) (float64, bool) {
	e.t.Helper()
	line := e.metricLine(series)
	if line == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
	if err != nil {
		e.t.Fatalf("series %s: %v", line, err)
	}
	return v, true
}

// TestFleetMetrics: the host series come from the store (inventory,
// claims, the last heartbeat's measurements, the failsafe's free memory),
// and follow a placement at the next scrape.
func TestFleetMetrics(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	h := `{host="hv1.dc1"}`
	want := map[string]float64{
		"corral_host_cpus" + h:                         64,
		"corral_host_memory_mib" + h:                   262144,
		"corral_host_disk_gib" + h:                     1000,
		"corral_host_memory_free_mib" + h:              262144 - 1024,
		"corral_host_failsafe_free_memory_mib" + h:     262144 - 1024,
		"corral_host_allocated_vcpus" + h:              0,
		`corral_host_state{host="hv1.dc1",state="up"}`: 1,
		"corral_placement_failsafe_margin_mib":         2048,
		`corral_reconcile_lag_seconds{kind="vm"}`:      0,
	}
	check := func(want map[string]float64) {
		t.Helper()
		for series, v := range want {
			got, ok := e.metricValue(series)
			if !ok || got != v {
				t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
			}
		}
	}
	check(want)
	e.must(201, "POST", "/v1/servers", c.server("web-1"), nil)
	var after types.Host
	e.must(200, "GET", "/v1/hosts/hv1.dc1", nil, &after)
	claim := after.Allocated
	if claim.VCPUs == 0 || claim.RAMMiB == 0 {
		t.Fatalf("no claim on the host after a placement: %+v", claim)
	}
	check(map[string]float64{
		"corral_host_allocated_vcpus" + h:      float64(claim.VCPUs),
		"corral_host_allocated_memory_mib" + h: float64(claim.RAMMiB),
		"corral_host_allocated_guests" + h:     1,
		// The claim made since the heartbeat counts against the failsafe.
		"corral_host_failsafe_free_memory_mib" + h: float64(262144 - 1024 - claim.RAMMiB),
	})
	// The new server waits for its agent: it is converging.
	e.advance(90 * 1e9)
	if lag, _ := e.metricValue(`corral_reconcile_lag_seconds{kind="vm"}`); lag < 80 {
		t.Errorf("reconcile lag %v s after 90 s, want at least 80 (rows are stamped by the real clock)", lag)
	}
	if age, _ := e.metricValue("corral_host_heartbeat_age_seconds" + h); age < 90 {
		t.Errorf("heartbeat age %v s after 90 s, want at least 90", age)
	}
}

// TestPlacementMetrics: a decision is timed by outcome; a refused create
// counts each reason its explanation gave, a refused dry run none.
func TestPlacementMetrics(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	e.must(201, "POST", "/v1/servers", c.server("web-1"), nil)
	if n, _ := e.metricValue(`corral_placement_decision_duration_seconds_count{mode="claim",outcome="placed"}`); n != 1 {
		t.Errorf("placed decisions = %v, want 1", n)
	}
	e.must(201, "POST", "/v1/flavors", types.FlavorCreate{Name: "huge", VCPUs: 1, RAMMiB: 4 << 20, DiskGiB: 1}, nil)
	big := c.server("big")
	big.Flavor = "huge"
	e.must(409, "POST", "/v1/servers", big, nil)
	e.must(200, "POST", "/v1/placement/dry-run", big, nil)
	if n, _ := e.metricValue(`corral_placement_refusals_total{reason="too_small_memory"}`); n != 1 {
		t.Errorf("too_small_memory refusals = %v, want 1 (the dry run is not counted)\n%s", n, e.call("", "GET", "/metrics", nil).body)
	}
	if n, _ := e.metricValue(`corral_placement_decision_duration_seconds_count{mode="dry_run",outcome="refused"}`); n != 1 {
		t.Errorf("refused dry runs = %v, want 1", n)
	}
}

// TestRequestMetricsLongPollAndNames: an agent's watch is timed as a long
// poll, not as a request; a lookup by name that resolves counts as a 200,
// never as a 404.
func TestRequestMetricsLongPollAndNames(t *testing.T) {
	e := newEnv(t)
	e.catalogue()
	host, agent := e.agentOf("hv9")
	_, r := e.watch(agent, host.ID, "", "0s")
	if r.status != 200 {
		t.Fatalf("watch = %d %s", r.status, r.body)
	}
	hg, _ := e.watch(agent, host.ID, "", "0s")
	e.watch(agent, host.ID, hg.Version, "50ms") // waits, then answers the same
	route := `route="/v1/hosts/:id/guests"`
	if n, _ := e.metricValue(`corral_http_long_poll_duration_seconds_count{` + route + `}`); n != 3 {
		t.Errorf("long polls timed = %v, want 3", n)
	}
	if line := e.metricLine(`corral_http_request_duration_seconds_count{method="GET",` + route + `}`); line != "" {
		t.Errorf("a watch is in the request-latency histogram: %s", line)
	}
	if n, _ := e.metricValue(`corral_http_requests_total{method="GET",` + route + `,status="200"}`); n != 3 {
		t.Errorf("watches counted = %v, want 3", n)
	}

	// By name and by ID, every route that takes either.
	for _, p := range []string{"/v1/hosts/hv9", "/v1/regions/dc1", "/v1/flavors/m1.small", "/v1/projects/kafka", "/v1/images/tiny"} {
		e.must(200, "GET", p, nil, nil)
	}
	body := string(e.call("", "GET", "/metrics", nil).body)
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "corral_http_requests_total{") && strings.Contains(line, `status="404"`) {
			t.Errorf("a lookup by name counted as a 404: %s", line)
		}
	}
	if n, _ := e.metricValue(`corral_http_requests_total{method="GET",route="/v1/hosts/:id",status="200"}`); n != 1 {
		t.Errorf("GET /v1/hosts/hv9 counted %v times as 200, want 1", n)
	}
}
