package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// fakeStats returns fixed counters, or fails when err is set.
type fakeStats struct {
	stats []GuestStats
	err   error
}

func (f *fakeStats) GuestStats(context.Context) ([]GuestStats, error) { return f.stats, f.err }

// proberWithNICs is a fakeProber that also reads NIC counters.
type proberWithNICs struct{ *fakeProber }

func (proberWithNICs) NICCounters() (map[string]NICCounters, error) {
	return map[string]NICCounters{"eth0": {RxBytes: 1000, TxBytes: 2000, RxPackets: 10, TxPackets: 20}}, nil
}

// scrape returns the exposition of reg, as a Prometheus server reads it.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	out := map[string]string{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndex(line, " ")
		out[line[:i]] = line[i+1:]
	}
	return out
}

// TestAgentMetrics: the host's measurements and each guest's counters are
// read at the scrape, in the units their names give; a failed guest read
// is counted and leaves the host series in place.
func TestAgentMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	stats := &fakeStats{stats: []GuestStats{{ServerID: "srv-1", Running: true, CPUTimeNs: 12_500_000_000, MemoryKiB: 131072,
		RSSKiB: 65536, DiskRdBytes: 4096, DiskWrBytes: 8192, DiskRdReqs: 3, DiskWrReqs: 5, NetRxBytes: 100, NetTxBytes: 200,
		NetRxPackets: 7, NetTxPackets: 9}}}
	prober := newFakeProber()
	prober.inv.Hugepages = map[string]int64{"2048": 512}
	prober.usage.HugepagesFree = map[string]int64{"2048": 500}
	prober.usage.Guests = 1
	_, err := New(Config{Endpoint: "http://127.0.0.1:1", RegistrationTokenFile: "/nonexistent", Name: "hv1", Region: "dc1",
		Zone: "rack1", StateDir: filepath.Join(t.TempDir(), "state"), Prober: proberWithNICs{prober}, Stats: stats,
		Registry: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"corral_agent_host_cpus":                                       "8",
		"corral_agent_host_load1":                                      "0.5",
		"corral_agent_host_memory_mib":                                 "16384",
		"corral_agent_host_memory_free_mib":                            "12000",
		`corral_agent_host_hugepages{size_kib="2048"}`:                 "512",
		`corral_agent_host_hugepages_free{size_kib="2048"}`:            "500",
		"corral_agent_host_disk_gib":                                   "200",
		"corral_agent_host_disk_free_gib":                              "150",
		"corral_agent_host_guests":                                     "1",
		`corral_agent_host_network_receive_bytes_total{nic="eth0"}`:    "1000",
		`corral_agent_host_network_transmit_packets_total{nic="eth0"}`: "20",
		`corral_guest_running{server="srv-1"}`:                         "1",
		`corral_guest_cpu_seconds_total{server="srv-1"}`:               "12.5",
		`corral_guest_memory_bytes{server="srv-1"}`:                    "1.34217728e+08",
		`corral_guest_memory_rss_bytes{server="srv-1"}`:                "6.7108864e+07",
		`corral_guest_disk_read_bytes_total{server="srv-1"}`:           "4096",
		`corral_guest_disk_write_bytes_total{server="srv-1"}`:          "8192",
		`corral_guest_disk_read_ops_total{server="srv-1"}`:             "3",
		`corral_guest_disk_write_ops_total{server="srv-1"}`:            "5",
		`corral_guest_network_receive_bytes_total{server="srv-1"}`:     "100",
		`corral_guest_network_transmit_bytes_total{server="srv-1"}`:    "200",
		`corral_guest_network_receive_packets_total{server="srv-1"}`:   "7",
		`corral_guest_network_transmit_packets_total{server="srv-1"}`:  "9",
		`corral_agent_watch_wakeups_total{result="changed"}`:           "0",
		`corral_agent_metrics_errors_total{source="guests"}`:           "0",
	}
	got := scrape(t, reg)
	for series, v := range want {
		if got[series] != v {
			t.Errorf("%s = %q, want %q", series, got[series], v)
		}
	}

	stats.err = errors.New("libvirt is down")
	got = scrape(t, reg)
	if got[`corral_agent_metrics_errors_total{source="guests"}`] != "1" {
		t.Errorf("a failed guest read is not counted: %q", got[`corral_agent_metrics_errors_total{source="guests"}`])
	}
	if _, ok := got[`corral_guest_cpu_seconds_total{server="srv-1"}`]; ok {
		t.Error("guest series exported from a failed read")
	}
	if got["corral_agent_host_cpus"] != "8" {
		t.Errorf("host series missing after a failed guest read: %q", got["corral_agent_host_cpus"])
	}
}
