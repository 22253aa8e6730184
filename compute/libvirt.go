package compute

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// Domain is what the driver needs to know of one libvirt domain.
type Domain struct {
	Name    string
	UUID    string
	Meta    Metadata
	Running bool
	// State is libvirt's state: "running", "paused", "shutoff", ...
	State string
	// ID is the running domain's ID (0 when not running).
	ID   int
	Type string
	// Taps are the host-side devices of the NICs (running domains only).
	Taps []string
	// Vhost and Hugepages are read back from the domain's live XML.
	Vhost, Hugepages bool
	// IOTune is the disk limit libvirt applies (live).
	IOPS, BytesSec int64
	// StartedAt is when the qemu process started.
	StartedAt time.Time
	Counters  Counters
}

// Counters are a domain's cumulative counters.
type Counters struct {
	CPUTimeNs uint64
	MemoryKiB uint64
	// MemoryUsedKiB is the memory in use (see memoryUsed); 0 if unknown.
	MemoryUsedKiB                        uint64
	DiskRdBytes, DiskWrBytes, DiskWrReqs int64
	NetRxBytes, NetTxBytes               int64
}

// Hypervisor is the part of libvirt the driver uses.
type Hypervisor interface {
	// Domains lists the domains Corral manages (by name prefix).
	Domains() ([]Domain, error)
	// Lookup returns one domain; ok is false when it does not exist.
	Lookup(name string) (d Domain, ok bool, err error)
	Define(dom *libvirtxml.Domain) error
	Start(name string) error
	// Shutdown asks the guest to power off (ACPI); it may ignore it.
	Shutdown(name string) error
	Destroy(name string) error
	Undefine(name string) error
	Reboot(name string) error
	// SetIOTune changes a running domain's disk limits.
	SetIOTune(name, disk string, iops, bytesSec int64) error
	// SetMetadata replaces Corral's metadata, live and in the definition.
	SetMetadata(name string, m Metadata) error
	// XML returns the domain's persistent definition.
	XML(name string) (string, error)
	Close() error
}

// Libvirt is the Hypervisor backed by libvirtd. It reconnects when the
// connection drops (libvirtd restarted); running guests are unaffected by
// that.
type Libvirt struct {
	uri  string
	mu   sync.Mutex
	conn *libvirt.Connect
}

// NewLibvirt connects to uri, e.g. "qemu:///system".
func NewLibvirt(uri string) (*Libvirt, error) {
	l := &Libvirt{uri: uri}
	if _, err := l.connect(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Libvirt) connect() (*libvirt.Connect, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		if alive, err := l.conn.IsAlive(); err == nil && alive {
			return l.conn, nil
		}
		l.conn.Close()
		l.conn = nil
	}
	c, err := libvirt.NewConnect(l.uri)
	if err != nil {
		return nil, fmt.Errorf("connect to libvirt at %s (is libvirtd running?): %w", l.uri, err)
	}
	l.conn = c
	return c, nil
}

// Close closes the connection.
func (l *Libvirt) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		_, err := l.conn.Close()
		l.conn = nil
		return err
	}
	return nil
}

// Version returns libvirt's version as "major.minor.micro".
func (l *Libvirt) Version() (string, error) {
	c, err := l.connect()
	if err != nil {
		return "", err
	}
	v, err := c.GetLibVersion()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000), nil
}

func isNoDomain(err error) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == libvirt.ERR_NO_DOMAIN
}

// withDomain runs f on the named domain.
func (l *Libvirt) withDomain(name string, f func(*libvirt.Domain) error) error {
	c, err := l.connect()
	if err != nil {
		return err
	}
	d, err := c.LookupDomainByName(name)
	if err != nil {
		return err
	}
	defer d.Free()
	return f(d)
}

// Domains lists the domains whose names start with DomainPrefix.
func (l *Libvirt) Domains() ([]Domain, error) {
	c, err := l.connect()
	if err != nil {
		return nil, err
	}
	doms, err := c.ListAllDomains(0)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	var out []Domain
	for i := range doms {
		d := &doms[i]
		name, err := d.GetName()
		if err == nil && strings.HasPrefix(name, DomainPrefix) {
			info, err := describe(d, name)
			if err != nil && !isNoDomain(err) {
				for j := i; j < len(doms); j++ {
					doms[j].Free()
				}
				return nil, err
			}
			if err == nil {
				out = append(out, info)
			}
		}
		d.Free()
	}
	return out, nil
}

// Lookup describes one domain.
func (l *Libvirt) Lookup(name string) (Domain, bool, error) {
	var out Domain
	err := l.withDomain(name, func(d *libvirt.Domain) error {
		var err error
		out, err = describe(d, name)
		return err
	})
	if isNoDomain(err) {
		return Domain{}, false, nil
	}
	return out, err == nil, err
}

var stateNames = map[libvirt.DomainState]string{
	libvirt.DOMAIN_NOSTATE: "nostate", libvirt.DOMAIN_RUNNING: "running", libvirt.DOMAIN_BLOCKED: "blocked",
	libvirt.DOMAIN_PAUSED: "paused", libvirt.DOMAIN_SHUTDOWN: "shutdown", libvirt.DOMAIN_SHUTOFF: "shutoff",
	libvirt.DOMAIN_CRASHED: "crashed", libvirt.DOMAIN_PMSUSPENDED: "pmsuspended",
}

func describe(d *libvirt.Domain, name string) (Domain, error) {
	out := Domain{Name: name}
	st, _, err := d.GetState()
	if err != nil {
		return out, err
	}
	out.State = stateNames[st]
	out.Running = st == libvirt.DOMAIN_RUNNING || st == libvirt.DOMAIN_BLOCKED || st == libvirt.DOMAIN_PAUSED
	if out.UUID, err = d.GetUUIDString(); err != nil {
		return out, err
	}
	if m, err := d.GetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, MetadataURI, 0); err == nil {
		out.Meta, _ = ParseMetadata(m)
	}
	raw, err := d.GetXMLDesc(0)
	if err != nil {
		return out, err
	}
	var x libvirtxml.Domain
	if err := x.Unmarshal(raw); err != nil {
		return out, fmt.Errorf("parse XML of %s: %w", name, err)
	}
	out.Type = x.Type
	out.Hugepages = x.MemoryBacking != nil && x.MemoryBacking.MemoryHugePages != nil
	if x.Devices != nil {
		for _, iface := range x.Devices.Interfaces {
			if iface.Driver != nil && iface.Driver.Name == "vhost" {
				out.Vhost = true
			}
			if out.Running && iface.Target != nil && iface.Target.Dev != "" {
				out.Taps = append(out.Taps, iface.Target.Dev)
			}
		}
		for _, disk := range x.Devices.Disks {
			if disk.IOTune != nil {
				out.IOPS, out.BytesSec = int64(disk.IOTune.TotalIopsSec), int64(disk.IOTune.TotalBytesSec)
			}
		}
	}
	if !out.Running {
		return out, nil
	}
	if id, err := d.GetID(); err == nil {
		out.ID = int(id)
	}
	out.StartedAt = qemuStart(name)
	if info, err := d.GetInfo(); err == nil {
		out.Counters.CPUTimeNs, out.Counters.MemoryKiB = info.CpuTime, info.Memory
	}
	if ms, err := d.MemoryStats(uint32(libvirt.DOMAIN_MEMORY_STAT_NR), 0); err == nil {
		stats := make(map[libvirt.DomainMemoryStatTags]uint64, len(ms))
		for _, m := range ms {
			stats[libvirt.DomainMemoryStatTags(m.Tag)] = m.Val
		}
		out.Counters.MemoryUsedKiB = memoryUsed(stats, out.Counters.MemoryKiB)
	}
	if bs, err := d.BlockStats("vda"); err == nil {
		out.Counters.DiskRdBytes, out.Counters.DiskWrBytes, out.Counters.DiskWrReqs = bs.RdBytes, bs.WrBytes, bs.WrReq
	}
	for _, tap := range out.Taps {
		if is, err := d.InterfaceStats(tap); err == nil {
			// libvirt counts from the guest's side.
			out.Counters.NetRxBytes += is.RxBytes
			out.Counters.NetTxBytes += is.TxBytes
		}
	}
	return out, nil
}

// qemuStart returns when the domain's qemu process started, from its PID
// file and /proc; zero when unknown.
func qemuStart(name string) time.Time {
	b, err := os.ReadFile("/run/libvirt/qemu/" + name + ".pid")
	if err != nil {
		return time.Time{}
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}
	}
	return processStart(pid)
}

// Define defines (or redefines) a persistent domain.
func (l *Libvirt) Define(dom *libvirtxml.Domain) error {
	raw, err := dom.Marshal()
	if err != nil {
		return fmt.Errorf("encode domain %s: %w", dom.Name, err)
	}
	c, err := l.connect()
	if err != nil {
		return err
	}
	d, err := c.DomainDefineXML(raw)
	if err != nil {
		return fmt.Errorf("define domain %s: %w", dom.Name, err)
	}
	return d.Free()
}

// Start starts a defined domain.
func (l *Libvirt) Start(name string) error {
	return l.withDomain(name, func(d *libvirt.Domain) error { return d.Create() })
}

// Shutdown asks the guest to power off.
func (l *Libvirt) Shutdown(name string) error {
	return l.withDomain(name, func(d *libvirt.Domain) error { return d.Shutdown() })
}

// Destroy stops a domain at once. A domain that is not running is left.
func (l *Libvirt) Destroy(name string) error {
	return l.withDomain(name, func(d *libvirt.Domain) error {
		if active, err := d.IsActive(); err != nil || !active {
			return err
		}
		return d.Destroy()
	})
}

// Undefine removes a domain's definition.
func (l *Libvirt) Undefine(name string) error {
	err := l.withDomain(name, func(d *libvirt.Domain) error { return d.UndefineFlags(libvirt.DOMAIN_UNDEFINE_NVRAM) })
	if isNoDomain(err) {
		return nil
	}
	return err
}

// Reboot resets the guest; busybox guests have no ACPI handler, so a
// hard reset is what works everywhere.
func (l *Libvirt) Reboot(name string) error {
	return l.withDomain(name, func(d *libvirt.Domain) error { return d.Reset(0) })
}

// SetIOTune sets the running domain's total IOPS and bytes per second on
// disk (0 lifts a limit).
func (l *Libvirt) SetIOTune(name, disk string, iops, bytesSec int64) error {
	return l.withDomain(name, func(d *libvirt.Domain) error {
		return d.SetBlockIoTune(disk, &libvirt.DomainBlockIoTuneParameters{
			TotalIopsSecSet: true, TotalIopsSec: uint64(iops), TotalBytesSecSet: true, TotalBytesSec: uint64(bytesSec),
		}, libvirt.DOMAIN_AFFECT_LIVE|libvirt.DOMAIN_AFFECT_CONFIG)
	})
}

// SetMetadata replaces Corral's metadata element.
func (l *Libvirt) SetMetadata(name string, m Metadata) error {
	raw, err := marshalMetadata(m)
	if err != nil {
		return err
	}
	return l.withDomain(name, func(d *libvirt.Domain) error {
		flags := libvirt.DOMAIN_AFFECT_CONFIG
		if active, _ := d.IsActive(); active {
			flags |= libvirt.DOMAIN_AFFECT_LIVE
		}
		return d.SetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, raw, "corral", MetadataURI, flags)
	})
}

// XML returns the domain's persistent (inactive) definition.
func (l *Libvirt) XML(name string) (string, error) {
	var out string
	err := l.withDomain(name, func(d *libvirt.Domain) error {
		var err error
		out, err = d.GetXMLDesc(libvirt.DOMAIN_XML_INACTIVE)
		return err
	})
	return out, err
}

// memoryUsed is a guest's memory in use, in KiB, from libvirt's memory
// statistics: as the guest sees it when its balloon driver reports
// (available minus usable, else minus unused), otherwise the resident size
// of its qemu process, at most the guest's memory (qemu's own overhead is
// not the guest's use). 0 when neither is known.
func memoryUsed(stats map[libvirt.DomainMemoryStatTags]uint64, memKiB uint64) uint64 {
	if avail, ok := stats[libvirt.DOMAIN_MEMORY_STAT_AVAILABLE]; ok && avail > 0 {
		if free, ok := stats[libvirt.DOMAIN_MEMORY_STAT_USABLE]; ok && free <= avail {
			return avail - free
		}
		if free, ok := stats[libvirt.DOMAIN_MEMORY_STAT_UNUSED]; ok && free <= avail {
			return avail - free
		}
	}
	rss := stats[libvirt.DOMAIN_MEMORY_STAT_RSS]
	if memKiB > 0 && rss > memKiB {
		return memKiB
	}
	return rss
}
