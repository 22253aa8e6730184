package server

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/placement"
	"github.com/prometheus/client_golang/prometheus"
)

// Every series corrald exports is listed, with its type, labels and
// meaning, in the "Metrics" table of docs/operations.md; a test scrapes
// a running corrald and checks that each one is there.

// longPollKey marks a request as a long poll (holdFor sets it).
const longPollKey = "corral.long_poll"

// metrics are corrald's own counters and histograms. What describes the
// fleet is read from the store at each scrape (fleetCollector), so that
// every replica answers the same.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// longPolls times the agents' watches apart from latency: a watch
	// that waits for a change is no slow request.
	longPolls *prometheus.HistogramVec
	// decisions times placement decisions on the snapshot; refusals
	// counts refused placements by reason.
	decisions *prometheus.HistogramVec
	refusals  *prometheus.CounterVec
	// wakeups counts why a waiting watch looked again.
	wakeups *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corral_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"method", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "corral_http_request_duration_seconds", Help: "HTTP request latency by route and method, long polls excluded.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"method", "route"}),
		longPolls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "corral_http_long_poll_duration_seconds", Help: "Duration of the agents' long polls (watches) by route.",
			Buckets: []float64{.01, .1, .5, 1, 2.5, 5, 10, 20, 30, 45, 60},
		}, []string{"route"}),
		decisions: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "corral_placement_decision_duration_seconds",
			Help:    "Time placement takes to decide on its snapshot, by outcome (placed, refused, error) and mode (claim, dry_run).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"outcome", "mode"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corral_placement_refusals_total",
			Help: "Placements refused (no valid host), once per reason a refusal gave (dry runs excluded).",
		}, []string{"reason"}),
		wakeups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corral_watch_wakeups_total",
			Help: "Waiting watches woken to look again, by watch (guests, network) and cause (notify: a change through this replica; recheck: the periodic re-read).",
		}, []string{"watch", "cause"}),
	}
	for _, w := range []string{"guests", "network"} {
		for _, c := range []string{"notify", "recheck"} {
			m.wakeups.WithLabelValues(w, c) // present at 0 from the start
		}
	}
	reg.MustRegister(m.requests, m.latency, m.longPolls, m.decisions, m.refusals, m.wakeups)
	return m
}

// observeDecision records one placement decision: its time, and for a
// refusal of a real (not dry-run) placement, each reason it gave.
func (m *metrics) observeDecision(took time.Duration, dryRun bool, err error) {
	mode := "claim"
	if dryRun {
		mode = "dry_run"
	}
	var fe *placement.FitError
	switch {
	case err == nil:
		m.decisions.WithLabelValues("placed", mode).Observe(took.Seconds())
	case errors.As(err, &fe):
		m.decisions.WithLabelValues("refused", mode).Observe(took.Seconds())
		if dryRun {
			return
		}
		for _, r := range refusalReasons(fe.Explanation) {
			m.refusals.WithLabelValues(r).Inc()
		}
	default:
		m.decisions.WithLabelValues("error", mode).Observe(took.Seconds())
	}
}

// refusalReasons are the distinct reasons of an explanation: the engine's
// reason codes (a bounded set), "group" when a group's policy refused it,
// "no_hosts" when there was no host at all.
func refusalReasons(e placement.Explanation) []string {
	seen := map[string]bool{}
	for _, r := range e.Reasons {
		seen[r.Reason.String()] = true
	}
	if e.Group != nil {
		seen["group"] = true
	}
	if len(seen) == 0 {
		seen["no_hosts"] = true
	}
	out := make([]string, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// fleetCollector exports the hosts and nodes as the store has them, read
// at each scrape with one bounded query per table: one source of truth,
// no poller, the same answer from every replica.
type fleetCollector struct {
	s *Server

	hostCPUs, hostAllocVCPUs, hostLoad1                      *prometheus.Desc
	hostMem, hostAllocMem, hostMemFree, failsafeFree, margin *prometheus.Desc
	hostHuge, hostHugeFree, hostAllocHuge                    *prometheus.Desc
	hostDisk, hostAllocDisk, hostDiskFree                    *prometheus.Desc
	hostGuests, hostAllocGuests, heartbeatAge, hostState     *prometheus.Desc
	nodeProvision, nodePower, bmcUp, bmcAnswerAge, reconcile *prometheus.Desc
	nodeStateAge                                             *prometheus.Desc
	scrapeErrors                                             prometheus.Counter
}

// fleetTimeout bounds a scrape's store queries (Prometheus times a scrape
// out after 10 s by default).
const fleetTimeout = 5 * time.Second

func newFleetCollector(s *Server) *fleetCollector {
	host := []string{"host"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &fleetCollector{s: s,
		hostCPUs:        d("corral_host_cpus", "Logical CPUs of the host (inventory).", host...),
		hostAllocVCPUs:  d("corral_host_allocated_vcpus", "vCPUs placement has claimed on the host.", host...),
		hostLoad1:       d("corral_host_load1", "The host's 1-minute load average, as its agent last measured it (measured CPU).", host...),
		hostMem:         d("corral_host_memory_mib", "RAM of the host in MiB (inventory).", host...),
		hostAllocMem:    d("corral_host_allocated_memory_mib", "RAM placement has claimed on the host in MiB, hypervisor overhead included.", host...),
		hostMemFree:     d("corral_host_memory_free_mib", "Available memory the host's agent last measured, in MiB.", host...),
		failsafeFree:    d("corral_host_failsafe_free_memory_mib", "Free memory the memory failsafe compares with its margin: the last measurement less what was claimed since, in MiB.", host...),
		margin:          d("corral_placement_failsafe_margin_mib", "The memory failsafe's margin: free memory a host must keep after a placement, in MiB."),
		hostHuge:        d("corral_host_hugepages", "Hugepages of the host by page size in KiB (inventory).", "host", "size_kib"),
		hostHugeFree:    d("corral_host_hugepages_free", "Hugepages free for a new guest, by page size in KiB, as the agent last measured.", "host", "size_kib"),
		hostAllocHuge:   d("corral_host_allocated_hugepages", "2 MiB hugepages placement has claimed on the host.", host...),
		hostDisk:        d("corral_host_disk_gib", "Guest disk space of the host in GiB (inventory).", host...),
		hostAllocDisk:   d("corral_host_allocated_disk_gib", "Disk placement has claimed on the host in GiB.", host...),
		hostDiskFree:    d("corral_host_disk_free_gib", "Free guest disk space the agent last measured, in GiB.", host...),
		hostGuests:      d("corral_host_guests", "Managed guests the host's agent last counted.", host...),
		hostAllocGuests: d("corral_host_allocated_guests", "Guests placement has claimed on the host.", host...),
		heartbeatAge:    d("corral_host_heartbeat_age_seconds", "Seconds since the host's last heartbeat.", host...),
		hostState:       d("corral_host_state", "1 for the host's state (up, down, maintenance).", "host", "state"),
		nodeProvision:   d("corral_node_provision_state", "1 for the bare-metal node's provisioning state.", "node", "state"),
		nodeStateAge:    d("corral_node_state_age_seconds", "Seconds the node has been in its provisioning state: how long a deploy, inspection or cleaning has been running.", "node"),
		nodePower:       d("corral_node_power_state", "1 for the node's power state as its BMC last reported it (on, off, unknown).", "node", "state"),
		bmcUp:           d("corral_bmc_up", "1 when the node's BMC answered its last command, 0 while it has a fault.", "node"),
		bmcAnswerAge:    d("corral_bmc_last_answer_age_seconds", "Seconds since the node's BMC last answered (since the node was enrolled if it never has).", "node"),
		reconcile:       d("corral_reconcile_lag_seconds", "Age of the oldest server still converging to its desired state (pending, scheduled, building, deleting, or stopped/active against it), by kind; 0 when all are settled.", "kind"),
		scrapeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_metrics_store_errors_total",
			Help: "Scrapes whose store read failed (the fleet series are then missing from that scrape)."}),
	}
}

// Describe implements prometheus.Collector.
func (f *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{f.hostCPUs, f.hostAllocVCPUs, f.hostLoad1, f.hostMem, f.hostAllocMem,
		f.hostMemFree, f.failsafeFree, f.margin, f.hostHuge, f.hostHugeFree, f.hostAllocHuge, f.hostDisk,
		f.hostAllocDisk, f.hostDiskFree, f.hostGuests, f.hostAllocGuests, f.heartbeatAge, f.hostState,
		f.nodeProvision, f.nodePower, f.bmcUp, f.bmcAnswerAge, f.reconcile, f.nodeStateAge} {
		ch <- d
	}
	f.scrapeErrors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (f *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	defer f.scrapeErrors.Collect(ch)
	margin := f.s.cfg.Placement.FailsafeMarginMiB
	switch {
	case margin == 0:
		margin = placement.DefaultFailsafeMarginMiB
	case margin < 0:
		margin = 0
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(f.margin, float64(margin))
	ctx, cancel := context.WithTimeout(context.Background(), fleetTimeout)
	defer cancel()
	fleet, err := f.s.store.Fleet(ctx)
	if err != nil {
		f.scrapeErrors.Inc()
		f.s.log.Error("read the fleet for /metrics", "error", err)
		return
	}
	now := f.s.now()
	for _, h := range fleet.Hosts {
		n := h.Name
		gauge(f.hostCPUs, float64(h.Inventory.CPUs), n)
		gauge(f.hostAllocVCPUs, float64(h.Allocated.VCPUs), n)
		gauge(f.hostLoad1, h.Usage.Load1, n)
		gauge(f.hostMem, float64(h.Inventory.RAMMiB), n)
		gauge(f.hostAllocMem, float64(h.Allocated.RAMMiB), n)
		gauge(f.hostMemFree, float64(h.Usage.MemFreeMiB), n)
		if h.Measured {
			gauge(f.failsafeFree, float64(h.FailsafeFreeMiB), n)
		}
		for size, pages := range h.Inventory.Hugepages {
			gauge(f.hostHuge, float64(pages), n, size)
			gauge(f.hostHugeFree, float64(h.Usage.HugepagesFree[size]), n, size)
		}
		gauge(f.hostAllocHuge, float64(h.Allocated.Hugepages), n)
		gauge(f.hostDisk, float64(h.Inventory.DiskGiB), n)
		gauge(f.hostAllocDisk, float64(h.Allocated.DiskGiB), n)
		gauge(f.hostDiskFree, float64(h.Usage.DiskFreeGiB), n)
		gauge(f.hostGuests, float64(h.Usage.Guests), n)
		gauge(f.hostAllocGuests, float64(h.Allocated.Guests), n)
		gauge(f.heartbeatAge, max(0, now.Sub(h.LastHeartbeat).Seconds()), n)
		gauge(f.hostState, 1, n, h.State)
	}
	for _, nd := range fleet.Nodes {
		gauge(f.nodeProvision, 1, nd.Name, nd.State)
		gauge(f.nodeStateAge, max(0, now.Sub(nd.StateChangedAt).Seconds()), nd.Name)
		power := nd.PowerState
		if power == "" {
			power = types.PowerUnknown
		}
		gauge(f.nodePower, 1, nd.Name, power)
		up := 1.0
		if nd.BMCFault != "" {
			up = 0
		}
		gauge(f.bmcUp, up, nd.Name)
		gauge(f.bmcAnswerAge, max(0, now.Sub(nd.LastAnswer).Seconds()), nd.Name)
	}
	for _, kind := range []string{types.KindVM, types.KindBaremetal} {
		lag := 0.0
		if t, ok := fleet.OldestUnsettled[kind]; ok {
			lag = max(0, now.Sub(t).Seconds())
		}
		gauge(f.reconcile, lag, kind)
	}
}

var _ prometheus.Collector = (*fleetCollector)(nil)
