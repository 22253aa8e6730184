package agent

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Every series the agent exports is listed, with its type, labels and
// meaning, in the "Metrics" table of docs/operations.md; a test scrapes a
// real agent running a real guest and checks that each one is there.

// GuestStats are one guest's cumulative counters as the hypervisor keeps
// them (from the guest's point of view for network counters).
type GuestStats struct {
	// ServerID is the guest's server.
	ServerID string
	// Running is false for a defined guest that is not running; its
	// counters are then zero.
	Running                                            bool
	CPUTimeNs                                          uint64
	MemoryKiB, RSSKiB                                  uint64
	DiskRdBytes, DiskWrBytes, DiskRdReqs, DiskWrReqs   uint64
	NetRxBytes, NetTxBytes, NetRxPackets, NetTxPackets uint64
}

// GuestStater reads the counters of the host's managed guests, all at
// once (one hypervisor call for the host, not one per guest). It only
// reads.
type GuestStater interface {
	GuestStats(ctx context.Context) ([]GuestStats, error)
}

// NICCounters are a host network interface's cumulative counters.
type NICCounters struct {
	RxBytes, TxBytes, RxPackets, TxPackets uint64
}

// NICStater reads the counters of the host's NICs (those its inventory
// lists), by interface name.
type NICStater interface {
	NICCounters() (map[string]NICCounters, error)
}

// statsTimeout bounds the reads of one scrape.
const statsTimeout = 5 * time.Second

// loopMetrics are the guest loop's own counters.
type loopMetrics struct {
	reconcile *prometheus.HistogramVec
	lag       prometheus.Histogram
	wakeups   *prometheus.CounterVec
}

func newLoopMetrics(reg prometheus.Registerer) *loopMetrics {
	m := &loopMetrics{
		reconcile: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corral_agent_reconcile_duration_seconds",
			Help:    "Time one guest's reconcile (Ensure) took, by the state it left the guest in.",
			Buckets: []float64{.005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}}, []string{"state"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "corral_agent_reconcile_lag_seconds",
			Help:    "Time from a guest's desired change reaching the agent to the guest reconciled to it.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}}),
		wakeups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_agent_watch_wakeups_total",
			Help: "Answers to the agent's watch of its desired guests, by result: changed, unchanged (the wait ran out) or error."},
			[]string{"result"}),
	}
	for _, r := range []string{"changed", "unchanged", "error"} {
		m.wakeups.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.reconcile, m.lag, m.wakeups)
	}
	return m
}

// hostCollector exports the host's measurements and its guests' counters,
// read at each scrape (no poller, no cache).
type hostCollector struct {
	a *Agent

	cpus, load1, mem, memFree, huge, hugeFree, disk, diskFree, guests *prometheus.Desc
	nicRxB, nicTxB, nicRxP, nicTxP                                    *prometheus.Desc
	gRunning, gCPU, gMem, gRSS, gRdB, gWrB, gRdOps, gWrOps            *prometheus.Desc
	gRxB, gTxB, gRxP, gTxP                                            *prometheus.Desc
	errors                                                            *prometheus.CounterVec
}

func newHostCollector(a *Agent) *hostCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	srv := []string{"server"}
	c := &hostCollector{a: a,
		cpus:     d("corral_agent_host_cpus", "Logical CPUs of the host."),
		load1:    d("corral_agent_host_load1", "1-minute load average of the host."),
		mem:      d("corral_agent_host_memory_mib", "RAM of the host in MiB."),
		memFree:  d("corral_agent_host_memory_free_mib", "Available memory of the host in MiB (MemAvailable)."),
		huge:     d("corral_agent_host_hugepages", "Hugepages of the host by page size in KiB.", "size_kib"),
		hugeFree: d("corral_agent_host_hugepages_free", "Hugepages free for a new guest by page size in KiB.", "size_kib"),
		disk:     d("corral_agent_host_disk_gib", "Size of the file system holding guest disks, in GiB."),
		diskFree: d("corral_agent_host_disk_free_gib", "Free space of the file system holding guest disks, in GiB."),
		guests:   d("corral_agent_host_guests", "Managed guests on the host, running or not."),
		nicRxB:   d("corral_agent_host_network_receive_bytes_total", "Bytes received by a host NIC.", "nic"),
		nicTxB:   d("corral_agent_host_network_transmit_bytes_total", "Bytes sent by a host NIC.", "nic"),
		nicRxP:   d("corral_agent_host_network_receive_packets_total", "Packets received by a host NIC.", "nic"),
		nicTxP:   d("corral_agent_host_network_transmit_packets_total", "Packets sent by a host NIC.", "nic"),
		gRunning: d("corral_guest_running", "1 when the guest runs, 0 when it is defined but not running.", srv...),
		gCPU:     d("corral_guest_cpu_seconds_total", "CPU time the guest has used.", srv...),
		gMem:     d("corral_guest_memory_bytes", "Memory assigned to the guest (its balloon's current size).", srv...),
		gRSS:     d("corral_guest_memory_rss_bytes", "Resident memory of the guest's process on the host.", srv...),
		gRdB:     d("corral_guest_disk_read_bytes_total", "Bytes the guest read from its disks.", srv...),
		gWrB:     d("corral_guest_disk_write_bytes_total", "Bytes the guest wrote to its disks.", srv...),
		gRdOps:   d("corral_guest_disk_read_ops_total", "Read requests of the guest's disks.", srv...),
		gWrOps:   d("corral_guest_disk_write_ops_total", "Write requests of the guest's disks.", srv...),
		gRxB:     d("corral_guest_network_receive_bytes_total", "Bytes the guest's NICs received.", srv...),
		gTxB:     d("corral_guest_network_transmit_bytes_total", "Bytes the guest's NICs sent.", srv...),
		gRxP:     d("corral_guest_network_receive_packets_total", "Packets the guest's NICs received.", srv...),
		gTxP:     d("corral_guest_network_transmit_packets_total", "Packets the guest's NICs sent.", srv...),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_agent_metrics_errors_total",
			Help: "Scrapes in which a source could not be read (its series are missing from that scrape), by source: inventory, usage, nics, guests."},
			[]string{"source"}),
	}
	for _, s := range []string{"inventory", "usage", "nics", "guests"} {
		c.errors.WithLabelValues(s)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *hostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpus, c.load1, c.mem, c.memFree, c.huge, c.hugeFree, c.disk, c.diskFree,
		c.guests, c.nicRxB, c.nicTxB, c.nicRxP, c.nicTxP, c.gRunning, c.gCPU, c.gMem, c.gRSS, c.gRdB, c.gWrB,
		c.gRdOps, c.gWrOps, c.gRxB, c.gTxB, c.gRxP, c.gTxP} {
		ch <- d
	}
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *hostCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.errors.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if inv, _, err := c.a.cfg.Prober.Inventory(ctx); err != nil {
		c.errors.WithLabelValues("inventory").Inc()
		c.a.log.Warn("metrics: cannot read the host's inventory", "error", err)
	} else {
		gauge(c.cpus, float64(inv.CPUs))
		gauge(c.mem, float64(inv.RAMMiB))
		gauge(c.disk, float64(inv.DiskGiB))
		for size, n := range inv.Hugepages {
			gauge(c.huge, float64(n), size)
		}
	}
	u, err := c.a.cfg.Prober.Usage(ctx)
	if err != nil {
		c.errors.WithLabelValues("usage").Inc()
		c.a.log.Warn("metrics: cannot measure part of the host's usage", "error", err)
	}
	gauge(c.load1, u.Load1)
	gauge(c.memFree, float64(u.MemFreeMiB))
	gauge(c.diskFree, float64(u.DiskFreeGiB))
	gauge(c.guests, float64(u.Guests))
	for size, n := range u.HugepagesFree {
		gauge(c.hugeFree, float64(n), size)
	}
	if ns, ok := c.a.cfg.Prober.(NICStater); ok {
		nics, err := ns.NICCounters()
		if err != nil {
			c.errors.WithLabelValues("nics").Inc()
			c.a.log.Warn("metrics: cannot read the NICs' counters", "error", err)
		}
		for name, n := range nics {
			counter(c.nicRxB, float64(n.RxBytes), name)
			counter(c.nicTxB, float64(n.TxBytes), name)
			counter(c.nicRxP, float64(n.RxPackets), name)
			counter(c.nicTxP, float64(n.TxPackets), name)
		}
	}
	if c.a.cfg.Stats == nil {
		return
	}
	stats, err := c.a.cfg.Stats.GuestStats(ctx)
	if err != nil {
		c.errors.WithLabelValues("guests").Inc()
		c.a.log.Warn("metrics: cannot read the guests' counters", "error", err)
		return
	}
	for _, g := range stats {
		id := g.ServerID
		running := 0.0
		if g.Running {
			running = 1
		}
		gauge(c.gRunning, running, id)
		counter(c.gCPU, float64(g.CPUTimeNs)/1e9, id)
		gauge(c.gMem, float64(g.MemoryKiB)*1024, id)
		gauge(c.gRSS, float64(g.RSSKiB)*1024, id)
		counter(c.gRdB, float64(g.DiskRdBytes), id)
		counter(c.gWrB, float64(g.DiskWrBytes), id)
		counter(c.gRdOps, float64(g.DiskRdReqs), id)
		counter(c.gWrOps, float64(g.DiskWrReqs), id)
		counter(c.gRxB, float64(g.NetRxBytes), id)
		counter(c.gTxB, float64(g.NetTxBytes), id)
		counter(c.gRxP, float64(g.NetRxPackets), id)
		counter(c.gTxP, float64(g.NetTxPackets), id)
	}
}

var _ prometheus.Collector = (*hostCollector)(nil)
