package compute

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// Config configures a Driver.
type Config struct {
	Hypervisor Hypervisor
	Images     *ImageCache
	// QoS applies network limits; nil applies none (and says so).
	QoS NetQoS
	// Dir holds the guests' overlays and consoles (Dir/disks,
	// Dir/console). libvirt's qemu user must be able to traverse it.
	Dir string
	// Bridge is the OVS integration bridge guests plug into.
	Bridge string
	// Host names this host in the domains' metadata: the driver manages
	// only domains of its own host (several test hosts may share one
	// libvirtd; in production the host's name).
	Host string
	// DomainType is "kvm" or "qemu", from the host probe.
	DomainType string
	// CPUModel overrides the guest CPU model ("" = host-model on kvm,
	// qemu64 on qemu).
	CPUModel string
	// Vhost uses vhost-net for guest NICs (only where /dev/vhost-net
	// exists).
	Vhost bool
	// ChecksumOffload leaves checksum offload on for guest NICs; false
	// sets <host csum='off'/>, which the OVS userspace datapath needs.
	ChecksumOffload bool
	// DiskCache is the guests' disk cache mode (default "none").
	DiskCache string
	// DiskQoS enforces disk limits: "iotune" (libvirt, default; any cache
	// mode) or "cgroup" (the qemu process's blkio / io.max cgroup; needs
	// DiskCache "none").
	DiskQoS string
	// StopTimeout is how long a graceful stop waits before forcing
	// (default 30 s).
	StopTimeout time.Duration
	Logger      *slog.Logger
}

// Driver makes a host's guests match their specs.
type Driver struct {
	cfg Config
	log *slog.Logger
}

// NewDriver checks cfg and makes the driver's directories.
func NewDriver(cfg Config) (*Driver, error) {
	if cfg.Hypervisor == nil || cfg.Images == nil || cfg.Dir == "" || cfg.Bridge == "" || cfg.Host == "" {
		return nil, errors.New("compute driver: hypervisor, image cache, directory, bridge and host are required")
	}
	if cfg.DomainType == "" {
		cfg.DomainType = "kvm"
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	switch cfg.DiskQoS {
	case "":
		cfg.DiskQoS = "iotune"
	case "iotune":
	case "cgroup":
		if cfg.DiskCache != "" && cfg.DiskCache != "none" {
			return nil, fmt.Errorf("compute driver: cgroup disk limits need disk cache none, not %q", cfg.DiskCache)
		}
	default:
		return nil, fmt.Errorf("compute driver: disk QoS %q: want iotune or cgroup", cfg.DiskQoS)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "disks"), filepath.Join(cfg.Dir, "console")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("compute driver: %w", err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, fmt.Errorf("compute driver: %w", err)
		}
	}
	if err := traversable(cfg.Dir); err != nil {
		return nil, fmt.Errorf("compute driver: %w", err)
	}
	return &Driver{cfg: cfg, log: cfg.Logger}, nil
}

// traversable checks that every directory above dir lets others pass
// (x bit): libvirt runs qemu as its own user, which must reach the guests'
// disks and consoles.
func traversable(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := abs; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not traversable by others (mode %v): libvirt's qemu user cannot reach guest disks "+
				"below it; chmod o+x it or choose another --instances-dir", p, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// DomainType returns the domain type guests are created with.
func (d *Driver) DomainType() string { return d.cfg.DomainType }

func (d *Driver) diskPath(id string) string { return filepath.Join(d.cfg.Dir, "disks", id+".qcow2") }

// ConsoleLog is where a guest's serial console is logged.
func (d *Driver) ConsoleLog(id string) string {
	return filepath.Join(d.cfg.Dir, "console", id+".log")
}

func (d *Driver) consoleSocket(id string) string {
	return filepath.Join(d.cfg.Dir, "console", id+".sock")
}

// specHash identifies what a domain's definition depends on.
func specHash(g types.GuestSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d/%d/%t/%s", g.VCPUs, g.RAMMiB, g.DiskGiB, g.Hugepages, g.Image.SHA256)
	for _, n := range g.NICs {
		fmt.Fprintf(&b, "/%s,%s,%d,%s,%s", n.PortID, n.MAC, n.VLAN, strings.Join(n.IPs, "+"), n.Gateway)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8])
}

// Building tells whether Ensure would have to create the guest's domain,
// so that the caller can report "building" first.
func (d *Driver) Building(g types.GuestSpec) bool {
	if g.DesiredState == types.DesiredDeleted {
		return false
	}
	_, ok, err := d.cfg.Hypervisor.Lookup(DomainName(g.ServerID))
	return err == nil && !ok
}

// Ensure makes one guest match its spec and returns what it observes. It
// changes only what differs: a running guest that matches is not touched.
func (d *Driver) Ensure(ctx context.Context, g types.GuestSpec) types.GuestStatus {
	st := types.GuestStatus{ServerID: g.ServerID}
	fail := func(err error) types.GuestStatus {
		st.State, st.Fault = types.GuestError, err.Error()
		d.log.Error("guest failed", "server", g.ServerID, "error", err)
		return st
	}
	name := DomainName(g.ServerID)
	if g.DesiredState == types.DesiredDeleted {
		if err := d.remove(g.ServerID); err != nil {
			return fail(err)
		}
		st.State = types.GuestDeleted
		return st
	}
	dom, exists, err := d.cfg.Hypervisor.Lookup(name)
	if err != nil {
		return fail(fmt.Errorf("look up domain %s: %w", name, err))
	}
	hash := specHash(g)
	if !exists || (!dom.Running && dom.Meta.SpecHash != hash) {
		// New, or stopped and resized: (re)define.
		if err := d.define(ctx, g, hash, exists); err != nil {
			return fail(err)
		}
	} else if dom.Running && dom.Meta.SpecHash != hash {
		d.log.Info("guest's spec changed; it takes effect at its next stop and start", "server", g.ServerID)
	}
	switch g.DesiredState {
	case types.DesiredActive:
		if dom, _, err = d.cfg.Hypervisor.Lookup(name); err != nil {
			return fail(err)
		}
		if !dom.Running {
			if err := d.cfg.Hypervisor.Start(name); err != nil {
				return fail(fmt.Errorf("start domain %s: %w", name, err))
			}
			d.log.Info("guest started", "server", g.ServerID, "domain", name)
		} else if dom.Meta.RebootSeq < g.RebootSeq {
			if err := d.cfg.Hypervisor.Reboot(name); err != nil {
				return fail(fmt.Errorf("reboot domain %s: %w", name, err))
			}
			d.log.Info("guest rebooted", "server", g.ServerID, "reboot_seq", g.RebootSeq)
		}
		if dom.Meta.RebootSeq != g.RebootSeq && dom.Meta.ServerID != "" {
			m := dom.Meta
			m.RebootSeq = g.RebootSeq
			if err := d.cfg.Hypervisor.SetMetadata(name, m); err != nil {
				return fail(err)
			}
		}
		st.State = types.GuestActive
	case types.DesiredStopped:
		if dom.Running {
			if err := d.stop(ctx, name); err != nil {
				return fail(err)
			}
		}
		st.State = types.GuestStopped
	default:
		return fail(fmt.Errorf("unknown desired state %q", g.DesiredState))
	}
	obs, err := d.observe(g)
	st.Observed = obs
	if err != nil {
		return fail(err)
	}
	if g.DesiredState == types.DesiredActive && obs.DomainID == 0 {
		return fail(fmt.Errorf("domain %s is not running after start", name))
	}
	return st
}

// define creates the overlay (once) and defines the domain.
func (d *Driver) define(ctx context.Context, g types.GuestSpec, hash string, redefine bool) error {
	base, err := d.cfg.Images.Ensure(ctx, g.Image)
	if err != nil {
		return err
	}
	disk := d.diskPath(g.ServerID)
	if _, err := os.Stat(disk); errors.Is(err, os.ErrNotExist) {
		if err := createOverlay(ctx, base, g.Image.Format, disk, g.DiskGiB); err != nil {
			return err
		}
	} else if err == nil && g.DiskGiB > 0 {
		// A resize grows the disk; shrinking would lose data.
		out, err := exec.CommandContext(ctx, "qemu-img", "resize", disk, fmt.Sprintf("%dG", g.DiskGiB)).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "shrink") {
			return fmt.Errorf("resize disk of %s: %v: %s", g.ServerID, err, strings.TrimSpace(string(out)))
		}
	}
	cfg := d.domainConfig(g, disk, hash)
	dom, err := BuildDomain(cfg)
	if err != nil {
		return err
	}
	if err := d.cfg.Hypervisor.Define(dom); err != nil {
		return err
	}
	if redefine {
		d.log.Info("guest redefined", "server", g.ServerID, "vcpus", g.VCPUs, "ram_mib", g.RAMMiB)
	}
	return nil
}

// domainConfig maps a spec to the domain's configuration.
func (d *Driver) domainConfig(g types.GuestSpec, disk, hash string) DomainConfig {
	cfg := DomainConfig{
		Name: DomainName(g.ServerID), UUID: DomainUUID(g.ServerID), Type: d.cfg.DomainType, CPUModel: d.cfg.CPUModel,
		VCPUs: g.VCPUs, RAMMiB: g.RAMMiB, Hugepages: g.Hugepages,
		Disk: disk, DiskCache: d.cfg.DiskCache,
		Vhost: d.cfg.Vhost, ChecksumOffload: d.cfg.ChecksumOffload,
		ConsoleSocket: d.consoleSocket(g.ServerID), ConsoleLog: d.ConsoleLog(g.ServerID),
		OEMStrings: []string{"corral.hostname=" + g.Name, "corral.server-id=" + g.ServerID},
		Metadata: Metadata{ServerID: g.ServerID, Name: g.Name, Project: g.ProjectID, ImageID: g.Image.ID, Host: d.cfg.Host,
			SpecHash: hash, RebootSeq: g.RebootSeq},
	}
	if d.cfg.DiskQoS == "iotune" {
		cfg.DiskIOPS, cfg.DiskBytesSec = g.QoS.DiskIOPS, g.QoS.DiskBytesSec
	}
	for i, n := range g.NICs {
		cfg.NICs = append(cfg.NICs, NIC{MAC: n.MAC, PortID: n.PortID, Bridge: d.cfg.Bridge, VLAN: n.VLAN})
		if i == 0 && len(n.IPs) > 0 {
			cfg.OEMStrings = append(cfg.OEMStrings, "corral.ip="+n.IPs[0])
			if n.Gateway != "" {
				cfg.OEMStrings = append(cfg.OEMStrings, "corral.gw="+n.Gateway)
			}
		}
	}
	return cfg
}

// createOverlay makes a qcow2 overlay of base, whose format is baseFormat
// ("qcow2" or "raw", as corrald checked it on upload), growing the virtual
// disk to sizeGiB when larger. The base's format is always given, never
// probed: probing a raw image that starts with a qcow2 header would open
// whatever backing file that header names.
func createOverlay(ctx context.Context, base, baseFormat, disk string, sizeGiB int64) error {
	args, err := overlayArgs(base, baseFormat, disk+".tmp", sizeGiB)
	if err != nil {
		return err
	}
	tmp := disk + ".tmp"
	if out, err := exec.CommandContext(ctx, "qemu-img", args...).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create overlay %s: %v: %s", disk, err, strings.TrimSpace(string(out)))
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, disk)
}

// overlayArgs are the qemu-img arguments that create an overlay.
func overlayArgs(base, baseFormat, overlay string, sizeGiB int64) ([]string, error) {
	switch baseFormat {
	case "qcow2", "raw":
	default:
		return nil, fmt.Errorf("create overlay of %s: unsupported image format %q (want qcow2 or raw)", base, baseFormat)
	}
	args := []string{"create", "-q", "-f", "qcow2", "-b", base, "-F", baseFormat, overlay}
	if sizeGiB > 0 {
		args = append(args, fmt.Sprintf("%dG", sizeGiB))
	}
	return args, nil
}

// stop asks the guest to power off, and forces it after StopTimeout.
func (d *Driver) stop(ctx context.Context, name string) error {
	if err := d.cfg.Hypervisor.Shutdown(name); err != nil {
		d.log.Warn("graceful shutdown refused; forcing", "domain", name, "error", err)
	} else {
		deadline := time.Now().Add(d.cfg.StopTimeout)
		for time.Now().Before(deadline) {
			dom, ok, err := d.cfg.Hypervisor.Lookup(name)
			if err == nil && (!ok || !dom.Running) {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
		d.log.Info("guest did not power off in time; forcing", "domain", name, "timeout", d.cfg.StopTimeout)
	}
	if err := d.cfg.Hypervisor.Destroy(name); err != nil {
		return fmt.Errorf("stop domain %s: %w", name, err)
	}
	return nil
}

// remove destroys and undefines the guest's domain and removes its
// overlay and console files. It is idempotent.
func (d *Driver) remove(id string) error {
	name := DomainName(id)
	if _, ok, err := d.cfg.Hypervisor.Lookup(name); err != nil {
		return err
	} else if ok {
		if err := d.cfg.Hypervisor.Destroy(name); err != nil {
			return fmt.Errorf("destroy domain %s: %w", name, err)
		}
		if err := d.cfg.Hypervisor.Undefine(name); err != nil {
			return fmt.Errorf("undefine domain %s: %w", name, err)
		}
		d.log.Info("guest removed", "server", id, "domain", name)
	}
	for _, p := range []string{d.diskPath(id), d.diskPath(id) + ".tmp", d.ConsoleLog(id), d.consoleSocket(id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// observe reads the guest back from libvirt and (re)applies its QoS where
// it differs.
func (d *Driver) observe(g types.GuestSpec) (types.GuestObserved, error) {
	name := DomainName(g.ServerID)
	dom, ok, err := d.cfg.Hypervisor.Lookup(name)
	obs := types.GuestObserved{Domain: name, ConsoleLog: d.ConsoleLog(g.ServerID), UpdatedAt: time.Now().UTC()}
	if err != nil || !ok {
		return obs, err
	}
	obs.DomainUUID, obs.DomainType, obs.Vhost, obs.Hugepages = dom.UUID, dom.Type, dom.Vhost, dom.Hugepages
	obs.RebootSeq = g.RebootSeq
	if !dom.Running {
		return obs, nil
	}
	obs.DomainID, obs.Taps = dom.ID, dom.Taps
	if !dom.StartedAt.IsZero() {
		t := dom.StartedAt.UTC()
		obs.StartedAt = &t
	}
	c := dom.Counters
	obs.Counters = types.GuestCounter{CPUTimeNs: c.CPUTimeNs, MemoryKiB: c.MemoryKiB, DiskRdBytes: c.DiskRdBytes,
		DiskWrBytes: c.DiskWrBytes, DiskWrReqs: c.DiskWrReqs, NetRxBytes: c.NetRxBytes, NetTxBytes: c.NetTxBytes}
	// Disk limits: libvirt iotune, set live when they differ, or the qemu
	// process's cgroup (rewritten each time: the cgroup is new at every
	// start, and writing the same limit again changes nothing).
	disk := []types.AppliedQoS{}
	add := func(mech string) {
		if g.QoS.DiskIOPS > 0 {
			disk = append(disk, types.AppliedQoS{Limit: "disk_iops", Value: g.QoS.DiskIOPS, Mechanism: mech})
		}
		if g.QoS.DiskBytesSec > 0 {
			disk = append(disk, types.AppliedQoS{Limit: "disk_bytes_sec", Value: g.QoS.DiskBytesSec, Mechanism: mech})
		}
	}
	if d.cfg.DiskQoS == "cgroup" {
		mech, err := CgroupDiskLimiter{}.Apply(name, d.diskPath(g.ServerID), g.QoS.DiskIOPS, g.QoS.DiskBytesSec)
		if err != nil {
			return obs, fmt.Errorf("set disk limits of %s: %w", name, err)
		}
		add(mech)
	} else {
		if dom.IOPS != g.QoS.DiskIOPS || dom.BytesSec != g.QoS.DiskBytesSec {
			if err := d.cfg.Hypervisor.SetIOTune(name, "vda", g.QoS.DiskIOPS, g.QoS.DiskBytesSec); err != nil {
				return obs, fmt.Errorf("set disk limits of %s: %w", name, err)
			}
		}
		add("libvirt-iotune vda")
	}
	obs.QoS = append(obs.QoS, disk...)
	if d.cfg.QoS != nil {
		for i, tap := range dom.Taps {
			if i < len(g.NICs) {
				if err := d.cfg.QoS.Bind(tap, g.NICs[i].PortID); err != nil {
					return obs, fmt.Errorf("bind port of %s: %w", name, err)
				}
			}
			applied, err := d.cfg.QoS.Apply(tap, g.QoS.NetInKbps, g.QoS.NetOutKbps)
			obs.QoS = append(obs.QoS, applied...)
			if err != nil {
				return obs, fmt.Errorf("network limits of %s: %w", name, err)
			}
		}
	}
	return obs, nil
}

// domains lists this host's managed domains.
func (d *Driver) domains() ([]Domain, error) {
	all, err := d.cfg.Hypervisor.Domains()
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, dom := range all {
		if dom.Meta.Host == d.cfg.Host && dom.Meta.ServerID != "" {
			out = append(out, dom)
		}
	}
	return out, nil
}

// Orphans returns this host's managed domains whose servers are not in
// specs.
func (d *Driver) Orphans(specs []types.GuestSpec) ([]Domain, error) {
	want := map[string]bool{}
	for _, g := range specs {
		want[DomainName(g.ServerID)] = true
	}
	doms, err := d.domains()
	if err != nil {
		return nil, err
	}
	var out []Domain
	for _, dom := range doms {
		if !want[dom.Name] {
			out = append(out, dom)
		}
	}
	return out, nil
}

// Reap removes an orphan domain and what it left on the host.
func (d *Driver) Reap(dom Domain) error {
	return d.remove(dom.Meta.ServerID)
}

// Sweep removes network policing left by guests that are gone, and tells
// the image cache which images are in use.
func (d *Driver) Sweep(specs []types.GuestSpec) error {
	doms, err := d.domains()
	if err != nil {
		return err
	}
	var taps []string
	for _, dom := range doms {
		taps = append(taps, dom.Taps...)
	}
	var shas []string
	for _, g := range specs {
		shas = append(shas, g.Image.SHA256)
	}
	d.cfg.Images.SetInUse(shas)
	if d.cfg.QoS != nil {
		return d.cfg.QoS.Sweep(taps)
	}
	return nil
}

// Cleanup removes managed domains whose servers are not in specs, then
// sweeps what gone guests left behind. specs must be a complete desired
// set, as the watch answers it.
func (d *Driver) Cleanup(specs []types.GuestSpec) ([]string, error) {
	orphans, err := d.Orphans(specs)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, o := range orphans {
		if err := d.Reap(o); err != nil {
			return removed, fmt.Errorf("remove orphan %s: %w", o.Name, err)
		}
		removed = append(removed, o.Name)
	}
	return removed, d.Sweep(specs)
}

// Guests counts the managed domains, running or not (agent.GuestCounter).
func (d *Driver) Guests(context.Context) (int64, error) {
	doms, err := d.domains()
	return int64(len(doms)), err
}
