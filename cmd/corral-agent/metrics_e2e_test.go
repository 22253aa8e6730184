package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
)

// documentedSeries reads the "Metrics" table of docs/operations.md: name →
// source ("corrald" or "agent") and type. The test checks the scrapes
// against the document itself, so that the two cannot drift apart.
func documentedSeries(t *testing.T) map[string][2]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "\n### Metrics\n")
	if !ok {
		t.Fatal("docs/operations.md has no ### Metrics section")
	}
	table, _, _ = strings.Cut(table, "\n### ")
	row := regexp.MustCompile("(?m)^\\| `(corral_[a-z0-9_]+)` \\| (corrald|agent) \\| (counter|gauge|histogram) \\|")
	out := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		out[m[1]] = [2]string{m[2], m[3]}
	}
	if len(out) < 40 {
		t.Fatalf("the Metrics table has %d rows: the test no longer reads it", len(out))
	}
	return out
}

// exposition is one scrape: its raw text, the TYPE of each family and the
// value of each sample line (name with labels → value).
type exposition struct {
	raw     []byte
	types   map[string]string
	samples map[string]float64
}

func parseExposition(raw []byte) exposition {
	e := exposition{raw: raw, types: map[string]string{}, samples: map[string]float64{}}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			e.types[f[2]] = f[3]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndex(line, " ")
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			e.samples[line[:i]] = v
		}
	}
	return e
}

// has reports whether the scrape has at least one sample of the family.
func (e exposition) has(name string) bool {
	for s := range e.samples {
		base, _, _ := strings.Cut(s, "{")
		if base == name || base == name+"_bucket" || base == name+"_count" {
			return true
		}
	}
	return false
}

// value sums the samples of name whose labels contain every given one.
func (e exposition) value(name string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	for s, v := range e.samples {
		base, _, _ := strings.Cut(s, "{")
		if base != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(s, l)
		}
		if ok {
			sum += v
			found = true
		}
	}
	return sum, found
}

// scrapeURL reads a /metrics endpoint, with a bearer token if given.
func scrapeURL(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// missing returns the documented series of source absent from e, or
// exported with another type than documented.
func missing(doc map[string][2]string, source string, e exposition) []string {
	var out []string
	for name, d := range doc {
		if d[0] != source {
			continue
		}
		switch {
		case !e.has(name):
			out = append(out, name)
		case e.types[name] != d[1]:
			out = append(out, fmt.Sprintf("%s (type %s, documented %s)", name, e.types[name], d[1]))
		}
	}
	sort.Strings(out)
	return out
}

// TestMetricsEndToEnd scrapes a real corrald and a real agent running a
// real guest under libvirt and finds every series docs/operations.md
// lists, with its documented type; promtool check metrics accepts both
// scrapes. The agent's /metrics answers 401 without its token. Also on
// the scrapes: a refused placement counted by reason, a bare-metal node
// whose BMC does not answer, the agents' watches timed as long polls, and
// the same host figures from corrald and from the agent.
func TestMetricsEndToEnd(t *testing.T) {
	promtool := testenv.Require(t, "CORRAL_TEST_PROMTOOL", "promtool (Debian package prometheus)")
	doc := documentedSeries(t)
	metricsAddr := testenv.FreeAddr(t)
	tokenFile := filepath.Join(t.TempDir(), "metrics-token")
	const token = "hm-metrics-token-0123"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A BMC that never answers fails fast.
	r := newRigFull(t, false, []string{"--bmc-timeout", "300ms", "--bmc-attempts", "1", "--conductor-poll", "200ms"},
		"--metrics-listen", metricsAddr, "--metrics-token-file", tokenFile)
	ctx := t.Context()
	r.flavor("small", types.FlavorCreate{VCPUs: 1, RAMMiB: 128, DiskGiB: 1})
	srv := r.create("hm-metrics-1", "small")
	srv = r.waitActive(srv.ID)
	r.waitMarker(srv.ID, "hm-metrics-1", 3*time.Minute)

	// A refused placement: no host has 4 TiB.
	r.flavor("huge", types.FlavorCreate{VCPUs: 1, RAMMiB: 4 << 20, DiskGiB: 1})
	_, err := client.Create[types.Server](ctx, r.api, "/v1/servers",
		types.ServerCreate{Name: "hm-metrics-huge", Kind: types.KindVM, Project: "p1", Flavor: "huge", Image: "tiny"}, "")
	if client.Code(err) != types.CodeNoValidHost {
		t.Fatalf("a 4 TiB server: %v, want no_valid_host", err)
	}
	// A bare-metal node whose BMC does not answer (nothing listens there).
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bmcPort := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	node, err := client.Create[types.Node](ctx, r.api, "/v1/nodes", types.NodeCreate{Name: r.host + "-bm", Region: "dc1",
		Zone: "rack1", BMC: types.NodeBMCCreate{Address: "127.0.0.1", Port: bmcPort, Username: "admin", Password: "secret"},
		MACs: []string{"52:54:00:7e:10:01"}}, "")
	if err != nil {
		t.Fatal(err)
	}

	agentURL := "http://" + metricsAddr + "/metrics"
	for _, auth := range []string{"", "wrong"} {
		if code, _ := scrapeURL(t, agentURL, auth); code != http.StatusUnauthorized {
			t.Errorf("agent /metrics with token %q: %d, want 401", auth, code)
		}
	}

	// Wait until both scrapes have every documented series and the events
	// above show in them.
	var cd, ag exposition
	hostL, guestL := `host="`+r.host+`"`, `server="`+srv.ID+`"`
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, raw := scrapeURL(t, r.cd.Endpoint+"/metrics", "")
		cd = parseExposition(raw)
		code, raw := scrapeURL(t, agentURL, token)
		ag = parseExposition(raw)
		unreachable, _ := cd.value("corral_bmc_commands_total", `result="unreachable"`)
		cpu, _ := ag.value("corral_guest_cpu_seconds_total", guestL)
		guests, _ := cd.value("corral_host_guests", hostL)
		long, _ := cd.value("corral_http_long_poll_duration_seconds_count", `route="/v1/hosts/:id/guests"`)
		mc, ma := missing(doc, "corrald", cd), missing(doc, "agent", ag)
		if len(mc) == 0 && len(ma) == 0 && code == 200 && unreachable > 0 && cpu > 0 && guests >= 1 && long > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes: corrald lacks %v; the agent (%d) lacks %v; BMC unreachable %v, guest CPU %v s, "+
				"host guests %v, long polls %v", mc, code, ma, unreachable, cpu, guests, long)
		}
		time.Sleep(500 * time.Millisecond)
	}

	for name, e := range map[string]exposition{"corrald": cd, "agent": ag} {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(e.raw)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on the %s scrape: %v\n%s", name, err, out)
		}
	}

	// What the scrapes say.
	check := func(what string, got float64, ok bool, want func(float64) bool) {
		t.Helper()
		if !ok || !want(got) {
			t.Errorf("%s = %v (present %v)", what, got, ok)
		}
	}
	positive := func(v float64) bool { return v > 0 }
	if v, ok := ag.value("corral_guest_running", guestL); !ok || v != 1 {
		t.Errorf("corral_guest_running{%s} = %v (present %v), want 1", guestL, v, ok)
	}
	mem, ok := ag.value("corral_guest_memory_bytes", guestL)
	check("guest memory bytes (128 MiB flavor)", mem, ok, func(v float64) bool { return v >= 64<<20 && v <= 256<<20 })
	v, ok := ag.value("corral_guest_disk_read_bytes_total", guestL)
	check("guest disk read bytes (it booted from its disk)", v, ok, positive)
	v, ok = ag.value("corral_guest_disk_read_ops_total", guestL)
	check("guest disk read ops", v, ok, positive)
	cpus, _ := ag.value("corral_agent_host_cpus")
	v, ok = cd.value("corral_host_cpus", hostL)
	check("corrald's corral_host_cpus equals the agent's", v, ok, func(v float64) bool { return v == cpus && v > 0 })
	v, ok = cd.value("corral_host_allocated_vcpus", hostL)
	check("vCPUs allocated on the host", v, ok, func(v float64) bool { return v >= 1 })
	v, ok = cd.value("corral_host_state", hostL, `state="up"`)
	check("host up", v, ok, func(v float64) bool { return v == 1 })
	v, ok = cd.value("corral_host_heartbeat_age_seconds", hostL)
	check("heartbeat age (1 s heartbeats)", v, ok, func(v float64) bool { return v < 30 })
	v, ok = cd.value("corral_placement_refusals_total", `reason="too_small_memory"`)
	check("refusals for too_small_memory", v, ok, positive)
	v, ok = cd.value("corral_placement_decision_duration_seconds_count", `outcome="placed"`)
	check("placed decisions", v, ok, positive)
	nodeL := `node="` + node.Name + `"`
	v, ok = cd.value("corral_bmc_errors_total", `bmc="127.0.0.1:`+strconv.Itoa(bmcPort)+`"`)
	check("errors of the silent BMC", v, ok, positive)
	v, ok = cd.value("corral_node_provision_state", nodeL)
	check("the node's provisioning state", v, ok, func(v float64) bool { return v == 1 })
	v, ok = ag.value("corral_agent_watch_wakeups_total", `result="changed"`)
	check("agent watch answers with a change", v, ok, positive)
	v, ok = ag.value("corral_agent_reconcile_lag_seconds_count")
	check("guests reconciled after a change", v, ok, positive)
	// Watches are long polls, never in the request-latency histogram.
	for s := range cd.samples {
		if strings.HasPrefix(s, "corral_http_request_duration_seconds") && strings.Contains(s, `route="/v1/hosts/:id/guests"`) &&
			strings.Contains(s, `method="GET"`) {
			t.Errorf("a watch is in the request-latency histogram: %s", s)
			break
		}
	}
}
