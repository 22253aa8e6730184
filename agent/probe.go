package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/corral-cloud/corral/api/types"
)

// The capabilities the agent reports are the Cap constants of api/types.

// CgroupMode is how the host's cgroup hierarchies are mounted.
type CgroupMode string

// Cgroup modes, as found in the mount table.
const (
	// CgroupUnknown means no cgroup file system is mounted (or the mount
	// table could not be read).
	CgroupUnknown CgroupMode = ""
	// CgroupV1 means only v1 controller hierarchies are mounted.
	CgroupV1 CgroupMode = "v1"
	// CgroupHybrid means v1 controllers plus an empty cgroup2 hierarchy at
	// /sys/fs/cgroup/unified (systemd's hybrid layout).
	CgroupHybrid CgroupMode = "hybrid"
	// CgroupV2 means cgroup2 is mounted at /sys/fs/cgroup.
	CgroupV2 CgroupMode = "v2"
)

// Capability returns the capability that goes with m, or "" for
// CgroupUnknown. A hybrid host reports cgroup_v1: its controllers are v1.
func (m CgroupMode) Capability() string {
	switch m {
	case CgroupV1, CgroupHybrid:
		return types.CapCgroupV1
	case CgroupV2:
		return types.CapCgroupV2
	}
	return ""
}

// DiskSpace is the size of a file system, in bytes.
type DiskSpace struct {
	// Total is the file system's size.
	Total uint64
	// Avail is what an unprivileged user may still write.
	Avail uint64
}

// DiskStater measures the file system that holds a path.
type DiskStater interface {
	// DiskSpace returns the size of the file system holding path.
	DiskSpace(path string) (DiskSpace, error)
}

// Statfs is the DiskStater of the real host, using statfs(2).
type Statfs struct{}

// DiskSpace implements DiskStater.
func (Statfs) DiskSpace(p string) (DiskSpace, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return DiskSpace{}, fmt.Errorf("statfs %s: %w", p, err)
	}
	bs := uint64(st.Bsize)
	return DiskSpace{Total: st.Blocks * bs, Avail: st.Bavail * bs}, nil
}

// GuestCounter counts the guests that run on this host. The compute driver
// implements it; until then NoGuests stands in.
type GuestCounter interface {
	// Guests returns how many guests exist on the host, running or not.
	// It is read-only and safe to call concurrently.
	Guests(ctx context.Context) (int64, error)
}

// NoGuests is the GuestCounter of a host without a compute driver: always 0.
type NoGuests struct{}

// Guests implements GuestCounter.
func (NoGuests) Guests(context.Context) (int64, error) { return 0, nil }

// HostProbe measures the real host: inventory and capabilities once at
// registration, usage with every heartbeat. It reads /proc, /sys and /dev
// through FS, so tests give it a fake tree.
type HostProbe struct {
	// FS is the host's root file system: os.DirFS("/") in production.
	FS fs.FS
	// DataDir is the directory whose file system holds guest disks; its
	// size and free space are reported. It is a real path for Disk.
	DataDir string
	// Disk measures DataDir's file system.
	Disk DiskStater
	// Guests counts guests.
	Guests GuestCounter
	// Extra are capabilities found by other means, such as "kvm" once
	// the compute driver's boot probe has run a KVM guest.
	Extra []string
}

// NewHostProbe returns a probe of the real host that measures the file
// system of dataDir.
func NewHostProbe(dataDir string) *HostProbe {
	return &HostProbe{FS: os.DirFS("/"), DataDir: dataDir, Disk: Statfs{}, Guests: NoGuests{}}
}

var _ Prober = (*HostProbe)(nil)

// Inventory implements Prober. It fails only when a figure the API requires
// (CPUs, RAM, disk) cannot be read; optional ones (NUMA, hugepages, NICs)
// are left empty when their files are missing.
func (p *HostProbe) Inventory(ctx context.Context) (types.Inventory, []string, error) {
	var inv types.Inventory
	var err error
	if inv.CPUModel, inv.CPUs, err = probeCPU(p.FS); err != nil {
		return inv, nil, err
	}
	if inv.NUMANodes, err = probeNUMANodes(p.FS); err != nil {
		return inv, nil, err
	}
	mem, err := probeMeminfo(p.FS)
	if err != nil {
		return inv, nil, err
	}
	inv.RAMMiB = mem.TotalKiB / 1024
	disk, err := p.Disk.DiskSpace(p.DataDir)
	if err != nil {
		return inv, nil, err
	}
	inv.DiskGiB = int64(disk.Total >> 30)
	hp, err := probeHugepages(p.FS)
	if err != nil {
		return inv, nil, err
	}
	inv.Hugepages = hp.total()
	if inv.NICs, err = probeNICs(p.FS); err != nil {
		return inv, nil, err
	}
	cg, err := probeCgroup(p.FS)
	if err != nil {
		return inv, nil, err
	}
	caps := capabilities(p.FS, cg, hp)
	for _, c := range p.Extra {
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	slices.Sort(caps)
	return inv, caps, nil
}

// Usage implements Prober. It measures what it can and returns the first
// error with it, so that a heartbeat still goes out when one figure fails.
func (p *HostProbe) Usage(ctx context.Context) (types.Usage, error) {
	var u types.Usage
	var errs []error
	if mem, err := probeMeminfo(p.FS); err != nil {
		errs = append(errs, err)
	} else {
		u.MemFreeMiB = mem.AvailableKiB / 1024
	}
	if l, err := probeLoad1(p.FS); err != nil {
		errs = append(errs, err)
	} else {
		u.Load1 = l
	}
	if d, err := p.Disk.DiskSpace(p.DataDir); err != nil {
		errs = append(errs, err)
	} else {
		u.DiskFreeGiB = int64(d.Avail >> 30)
	}
	if hp, err := probeHugepages(p.FS); err != nil {
		errs = append(errs, err)
	} else {
		u.HugepagesFree = hp.free()
	}
	if n, err := p.Guests.Guests(ctx); err != nil {
		errs = append(errs, fmt.Errorf("count guests: %w", err))
	} else {
		u.Guests = n
	}
	return u, errors.Join(errs...)
}

// probeCPU reads the CPU model and the number of logical CPUs from
// /proc/cpuinfo.
func probeCPU(fsys fs.FS) (model string, cpus int64, err error) {
	data, err := fs.ReadFile(fsys, "proc/cpuinfo")
	if err != nil {
		return "", 0, fmt.Errorf("read cpuinfo: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "processor":
			cpus++
		case "model name", "cpu model": // x86; MIPS
			if model == "" {
				model = val
			}
		}
	}
	if cpus == 0 {
		return "", 0, errors.New("read cpuinfo: no processor entries")
	}
	return model, cpus, nil
}

var nodeDir = regexp.MustCompile(`^node[0-9]+$`)

// probeNUMANodes counts /sys/devices/system/node/nodeN. A kernel without
// NUMA support has no such directory; its host is one node.
func probeNUMANodes(fsys fs.FS) (int64, error) {
	ents, err := fs.ReadDir(fsys, "sys/devices/system/node")
	if errors.Is(err, fs.ErrNotExist) {
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("list NUMA nodes: %w", err)
	}
	var n int64
	for _, e := range ents {
		if nodeDir.MatchString(e.Name()) {
			n++
		}
	}
	return max(n, 1), nil
}

// meminfo holds the /proc/meminfo figures the agent uses, in KiB.
type meminfo struct {
	TotalKiB, AvailableKiB int64
}

// probeMeminfo reads MemTotal and MemAvailable from /proc/meminfo. Kernels
// before 3.14 have no MemAvailable; MemFree stands in.
func probeMeminfo(fsys fs.FS) (meminfo, error) {
	data, err := fs.ReadFile(fsys, "proc/meminfo")
	if err != nil {
		return meminfo{}, fmt.Errorf("read meminfo: %w", err)
	}
	vals := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return meminfo{}, fmt.Errorf("read meminfo: %s: %w", key, err)
		}
		vals[key] = n
	}
	total, ok := vals["MemTotal"]
	if !ok {
		return meminfo{}, errors.New("read meminfo: no MemTotal")
	}
	avail, ok := vals["MemAvailable"]
	if !ok {
		avail = vals["MemFree"]
	}
	return meminfo{TotalKiB: total, AvailableKiB: avail}, nil
}

// probeLoad1 reads the one-minute load average from /proc/loadavg.
func probeLoad1(fsys fs.FS) (float64, error) {
	data, err := fs.ReadFile(fsys, "proc/loadavg")
	if err != nil {
		return 0, fmt.Errorf("read loadavg: %w", err)
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0, errors.New("read loadavg: empty")
	}
	l, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("read loadavg: %w", err)
	}
	return l, nil
}

// hugepages holds, by page size in KiB ("2048"), the configured and the
// free pages of each size the kernel supports.
type hugepages map[string]struct{ Total, Free int64 }

// total returns the configured pages of each size that has any, or nil.
func (h hugepages) total() map[string]int64 {
	var m map[string]int64
	for size, c := range h {
		if c.Total > 0 {
			if m == nil {
				m = map[string]int64{}
			}
			m[size] = c.Total
		}
	}
	return m
}

// free returns the free pages of each size that has any configured, or nil.
func (h hugepages) free() map[string]int64 {
	var m map[string]int64
	for size, c := range h {
		if c.Total > 0 {
			if m == nil {
				m = map[string]int64{}
			}
			m[size] = c.Free
		}
	}
	return m
}

var hugepageDir = regexp.MustCompile(`^hugepages-([0-9]+)kB$`)

// probeHugepages reads nr_hugepages, free_hugepages and resv_hugepages of
// every size under /sys/kernel/mm/hugepages, and counts as free the pages a
// new guest can still get: free minus reserved (pages that a mapping has
// claimed but not touched yet are still counted free by the kernel). A
// kernel without hugetlbfs has none.
func probeHugepages(fsys fs.FS) (hugepages, error) {
	const dir = "sys/kernel/mm/hugepages"
	ents, err := fs.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return hugepages{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list hugepage sizes: %w", err)
	}
	hp := hugepages{}
	for _, e := range ents {
		m := hugepageDir.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		total, err := readInt(fsys, path.Join(dir, e.Name(), "nr_hugepages"))
		if err != nil {
			return nil, err
		}
		free, err := readInt(fsys, path.Join(dir, e.Name(), "free_hugepages"))
		if err != nil {
			return nil, err
		}
		resv, err := readInt(fsys, path.Join(dir, e.Name(), "resv_hugepages"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		free = max(free-resv, 0)
		hp[m[1]] = struct{ Total, Free int64 }{total, free}
	}
	return hp, nil
}

func readInt(fsys fs.FS, name string) (int64, error) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return 0, fmt.Errorf("read /%s: %w", name, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read /%s: %w", name, err)
	}
	return n, nil
}

// probeNICs lists the host's network interfaces that can carry guest
// traffic out of the host: physical ones (they have a device link in
// /sys/class/net/NAME) and bonds. Loopback, bridges, OVS ports, veth, tap
// and vnet devices, ifb and the like are virtual and left out, whatever
// their names.
func probeNICs(fsys fs.FS) ([]string, error) {
	const dir = "sys/class/net"
	ents, err := fs.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var nics []string
	for _, e := range ents {
		name := e.Name()
		if name == "lo" {
			continue
		}
		if exists(fsys, path.Join(dir, name, "device")) || exists(fsys, path.Join(dir, name, "bonding")) {
			nics = append(nics, name)
		}
	}
	slices.Sort(nics)
	return nics, nil
}

// probeCgroup reads the mount table to tell how cgroups are mounted.
// cgroup2 at /sys/fs/cgroup is v2; otherwise v1 hierarchies make v1, or
// hybrid when /sys/fs/cgroup/unified is cgroup2.
func probeCgroup(fsys fs.FS) (CgroupMode, error) {
	data, err := fs.ReadFile(fsys, "proc/self/mounts")
	if err != nil {
		return CgroupUnknown, fmt.Errorf("read mount table: %w", err)
	}
	var v1, unified bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		mountPoint, fsType := f[1], f[2]
		switch {
		case fsType == "cgroup2" && mountPoint == "/sys/fs/cgroup":
			return CgroupV2, nil
		case fsType == "cgroup2" && mountPoint == "/sys/fs/cgroup/unified":
			unified = true
		case fsType == "cgroup":
			v1 = true
		}
	}
	switch {
	case v1 && unified:
		return CgroupHybrid, nil
	case v1:
		return CgroupV1, nil
	}
	return CgroupUnknown, nil
}

// capabilities returns the sorted capabilities of a host with cgroup mode
// cg and hugepages hp, checking device nodes in fsys.
func capabilities(fsys fs.FS, cg CgroupMode, hp hugepages) []string {
	caps := []string{}
	if c := cg.Capability(); c != "" {
		caps = append(caps, c)
	}
	if len(hp.total()) > 0 {
		caps = append(caps, types.CapHugepages)
	}
	if exists(fsys, "dev/vhost-net") {
		caps = append(caps, types.CapVhostNet)
	}
	if exists(fsys, "dev/kvm") {
		caps = append(caps, types.CapKVMDevice)
	}
	slices.Sort(caps)
	return caps
}

func exists(fsys fs.FS, name string) bool {
	_, err := fs.Stat(fsys, name)
	return err == nil
}

var _ NICStater = (*HostProbe)(nil)

// NICCounters implements NICStater: the counters of the NICs the
// inventory lists, from /sys/class/net/NAME/statistics. A NIC whose
// counters cannot be read is left out and its error returned.
func (p *HostProbe) NICCounters() (map[string]NICCounters, error) {
	nics, err := probeNICs(p.FS)
	if err != nil {
		return nil, err
	}
	out := make(map[string]NICCounters, len(nics))
	var errs []error
	for _, nic := range nics {
		var c NICCounters
		var nerr error
		for _, f := range []struct {
			file string
			v    *uint64
		}{{"rx_bytes", &c.RxBytes}, {"tx_bytes", &c.TxBytes}, {"rx_packets", &c.RxPackets}, {"tx_packets", &c.TxPackets}} {
			n, err := readInt(p.FS, path.Join("sys/class/net", nic, "statistics", f.file))
			if err != nil {
				nerr = err
				break
			}
			*f.v = uint64(n)
		}
		if nerr != nil {
			errs = append(errs, fmt.Errorf("counters of %s: %w", nic, nerr))
			continue
		}
		out[nic] = c
	}
	return out, errors.Join(errs...)
}
