package compute

import (
	"context"
	"fmt"
	"strings"

	"libvirt.org/go/libvirt"
)

// DomainStats are one domain's cumulative counters, from libvirt's bulk
// statistics (virConnectGetAllDomainStats). Network counters are from the
// guest's point of view, as libvirt reports them.
type DomainStats struct {
	Name    string
	Meta    Metadata
	Running bool
	// CPUTimeNs is the CPU time used, in nanoseconds.
	CPUTimeNs uint64
	// MemoryKiB is the balloon's current size; RSSKiB the resident size
	// of the qemu process.
	MemoryKiB, RSSKiB                                uint64
	DiskRdBytes, DiskWrBytes, DiskRdReqs, DiskWrReqs uint64
	NetRxBytes, NetTxBytes, NetRxPkts, NetTxPkts     uint64
}

// StatsReader reads every managed domain's counters in one call. The
// Libvirt hypervisor implements it; a Hypervisor that does not leaves the
// driver without guest statistics (GuestStats answers an error).
type StatsReader interface {
	DomainStats() ([]DomainStats, error)
}

var _ StatsReader = (*Libvirt)(nil)

// DomainStats implements StatsReader with one bulk call for all domains
// whose names start with DomainPrefix (plus one metadata read each).
func (l *Libvirt) DomainStats() ([]DomainStats, error) {
	c, err := l.connect()
	if err != nil {
		return nil, err
	}
	all, err := c.GetAllDomainStats(nil, libvirt.DOMAIN_STATS_STATE|libvirt.DOMAIN_STATS_CPU_TOTAL|
		libvirt.DOMAIN_STATS_BALLOON|libvirt.DOMAIN_STATS_INTERFACE|libvirt.DOMAIN_STATS_BLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("domain statistics: %w", err)
	}
	var out []DomainStats
	for _, s := range all {
		d := s.Domain
		name, err := d.GetName()
		if err != nil || !strings.HasPrefix(name, DomainPrefix) {
			d.Free()
			continue
		}
		st := DomainStats{Name: name}
		if m, err := d.GetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, MetadataURI, 0); err == nil {
			st.Meta, _ = ParseMetadata(m)
		}
		d.Free()
		if s.State != nil && s.State.StateSet {
			switch s.State.State {
			case libvirt.DOMAIN_RUNNING, libvirt.DOMAIN_BLOCKED, libvirt.DOMAIN_PAUSED:
				st.Running = true
			}
		}
		if s.Cpu != nil && s.Cpu.TimeSet {
			st.CPUTimeNs = s.Cpu.Time
		}
		if b := s.Balloon; b != nil {
			st.MemoryKiB, st.RSSKiB = b.Current, b.Rss
		}
		for _, b := range s.Block {
			st.DiskRdBytes += b.RdBytes
			st.DiskWrBytes += b.WrBytes
			st.DiskRdReqs += b.RdReqs
			st.DiskWrReqs += b.WrReqs
		}
		for _, n := range s.Net {
			st.NetRxBytes += n.RxBytes
			st.NetTxBytes += n.TxBytes
			st.NetRxPkts += n.RxPkts
			st.NetTxPkts += n.TxPkts
		}
		out = append(out, st)
	}
	return out, nil
}

// GuestStats returns the counters of this host's managed domains (those
// whose metadata names this host), known to corrald or not. It only reads.
func (d *Driver) GuestStats(context.Context) ([]DomainStats, error) {
	sr, ok := d.cfg.Hypervisor.(StatsReader)
	if !ok {
		return nil, fmt.Errorf("the hypervisor driver %T reads no statistics", d.cfg.Hypervisor)
	}
	all, err := sr.DomainStats()
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, s := range all {
		if s.Meta.Host == d.cfg.Host && s.Meta.ServerID != "" {
			out = append(out, s)
		}
	}
	return out, nil
}
