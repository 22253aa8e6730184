package compute

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
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
	// ConfigDrive is the seed every guest gets as a read-only CD-ROM:
	// "nocloud" (default; label cidata), "configdrive" (OpenStack,
	// label config-2) or "none".
	ConfigDrive string
	// GuestDHCP tells guests (in the seed's network configuration) to
	// take their addresses by DHCP, which the host's network agent
	// answers; false configures them statically.
	GuestDHCP bool
	// UnderlayMTU is the MTU of the host's physical network (default
	// 1500); guests on VXLAN networks get 50 bytes less.
	UnderlayMTU int
	// DiskCache is the guests' disk cache mode (default "none").
	DiskCache string
	// DiskQoS enforces disk limits: "iotune" (libvirt, default; any cache
	// mode) or "cgroup" (the qemu process's blkio / io.max cgroup; needs
	// DiskCache "none").
	DiskQoS string
	// StopTimeout is how long a graceful stop waits before forcing
	// (default 30 s).
	StopTimeout time.Duration
	// DeletedDiskGrace keeps the overlay of an explicitly deleted guest
	// in Dir/trash this long (with its domain definition), so that a
	// mistaken delete can be undone; 0 removes it at once.
	DeletedDiskGrace time.Duration
	Logger           *slog.Logger
}

// Driver makes a host's guests match their specs.
type Driver struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	consoles map[string]*consoleConn // open for input (WriteConsole)
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
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "disks"), filepath.Join(cfg.Dir, "console"), filepath.Join(cfg.Dir, "trash")} {
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

// consoleLinger is how long a console connection the driver opened for
// input stays open after the last input: QEMU's serial port takes input a
// FIFO's worth at a time, as the guest reads it, and drops what it has not
// taken when the connection closes.
const consoleLinger = 5 * time.Second

// consoleConn is an open connection to a guest's console socket, for
// input. Its output is drained (QEMU writes the guest's output to every
// connected client, and a client that does not read stalls the guest's
// console, log included).
type consoleConn struct {
	conn  net.Conn
	timer *time.Timer
}

// WriteConsole types data into the guest's serial port, through the
// console's unix socket (qemu serves it). The connection stays open a few
// seconds after the last input, meanwhile other clients of the socket
// wait. It fails within 2 s when the socket cannot be reached or written
// (the guest is not running, or another client holds the console).
func (d *Driver) WriteConsole(ctx context.Context, id string, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.consoles == nil {
		d.consoles = map[string]*consoleConn{}
	}
	cc, ok := d.consoles[id]
	if !ok {
		conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "unix", d.consoleSocket(id))
		if err != nil {
			return fmt.Errorf("console of %s: %w", id, err)
		}
		go io.Copy(io.Discard, conn) // ends when the connection closes
		cc = &consoleConn{conn: conn}
		cc.timer = time.AfterFunc(consoleLinger, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.consoles[id] == cc {
				delete(d.consoles, id)
			}
			conn.Close()
		})
		d.consoles[id] = cc
	}
	cc.timer.Reset(consoleLinger)
	cc.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := cc.conn.Write(data); err != nil {
		cc.timer.Stop()
		cc.conn.Close()
		delete(d.consoles, id)
		return fmt.Errorf("console of %s: %w", id, err)
	}
	return nil
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
		// Only an explicit deletion gets here: a server being deleted,
		// or a tombstone (the agent never sends absence as a delete).
		if err := d.remove(g.ServerID, g.Revision); err != nil {
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
	if _, err := os.Stat(disk); errors.Is(err, os.ErrNotExist) && d.untrash(g.ServerID) {
		d.log.Warn("guest's disk taken back from the trash: its server was deleted, and now exists again "+
			"(a database restored from a backup?)", "server", g.ServerID, "disk", disk)
	}
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
	if cfg.ConfigDrive, err = d.writeConfigDrive(ctx, g); err != nil {
		return err
	}
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
			SpecHash: hash, RebootSeq: g.RebootSeq, Kind: g.Kind, FlavorID: g.FlavorID, ImageSHA256: g.Image.SHA256,
			VCPUs: g.VCPUs, RAMMiB: g.RAMMiB, DiskGiB: g.DiskGiB, Hugepages: g.Hugepages},
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

// remove destroys and undefines the guest's domain, moves its overlay to
// the trash (or removes it when DeletedDiskGrace is 0) with the domain's
// definition beside it, and removes its console files. It is called only
// for an explicit deletion recorded by corrald (generation is that
// deletion's), and is idempotent.
func (d *Driver) remove(id string, generation int64) error {
	name := DomainName(id)
	stamp := fmt.Sprintf("%s.deleted-%d", id, time.Now().Unix())
	if _, ok, err := d.cfg.Hypervisor.Lookup(name); err != nil {
		return err
	} else if ok {
		if raw, err := d.cfg.Hypervisor.XML(name); err == nil {
			// Kept with the disk: what an operator needs to define the
			// guest again.
			if err := os.WriteFile(filepath.Join(d.trashDir(), stamp+".xml"), []byte(raw), 0o600); err != nil {
				return fmt.Errorf("keep the definition of %s: %w", name, err)
			}
		}
		if err := d.cfg.Hypervisor.Destroy(name); err != nil {
			return fmt.Errorf("destroy domain %s: %w", name, err)
		}
		if err := d.cfg.Hypervisor.Undefine(name); err != nil {
			return fmt.Errorf("undefine domain %s: %w", name, err)
		}
		d.log.Info("guest removed", "server", id, "domain", name, "generation", generation)
	}
	disk := d.diskPath(id)
	if _, err := os.Stat(disk); err == nil {
		if d.cfg.DeletedDiskGrace > 0 {
			dst := filepath.Join(d.trashDir(), stamp+".qcow2")
			if err := os.Rename(disk, dst); err != nil {
				return fmt.Errorf("move the disk of %s to the trash: %w", id, err)
			}
			d.log.Info("deleted guest's disk kept in the trash", "server", id, "disk", dst, "until",
				time.Now().Add(d.cfg.DeletedDiskGrace).UTC().Format(time.RFC3339))
		} else if err := os.Remove(disk); err != nil {
			return err
		}
	}
	for _, p := range []string{disk + ".tmp", d.ConsoleLog(id), d.consoleSocket(id), d.configDrivePath(id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (d *Driver) trashDir() string { return filepath.Join(d.cfg.Dir, "trash") }

// trashed is one file in the trash: a deleted guest's overlay or domain
// definition.
type trashed struct {
	path, serverID string
	deleted        time.Time
}

// trash lists the trash, newest first.
func (d *Driver) trash() []trashed {
	entries, err := os.ReadDir(d.trashDir())
	if err != nil {
		return nil
	}
	var out []trashed
	for _, e := range entries {
		id, rest, ok := strings.Cut(e.Name(), ".deleted-")
		if !ok {
			continue
		}
		secs, _, _ := strings.Cut(rest, ".")
		n, err := strconv.ParseInt(secs, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, trashed{path: filepath.Join(d.trashDir(), e.Name()), serverID: id, deleted: time.Unix(n, 0)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].deleted.After(out[j].deleted) })
	return out
}

// untrash moves the newest trashed overlay of a server back in place, for
// a server that exists again after its delete. It reports whether it did.
func (d *Driver) untrash(id string) bool {
	for _, t := range d.trash() {
		if t.serverID == id && strings.HasSuffix(t.path, ".qcow2") {
			return os.Rename(t.path, d.diskPath(id)) == nil
		}
	}
	return false
}

// purgeTrash removes what deleted guests left in the trash longer than
// DeletedDiskGrace ago, and returns the base images their overlays still
// need.
func (d *Driver) purgeTrash(now time.Time) []string {
	var bases []string
	for _, t := range d.trash() {
		if now.Sub(t.deleted) > d.cfg.DeletedDiskGrace {
			if err := os.Remove(t.path); err == nil {
				d.log.Info("deleted guest's file removed from the trash", "server", t.serverID, "file", t.path)
			}
			continue
		}
		if strings.HasSuffix(t.path, ".xml") {
			if raw, err := os.ReadFile(t.path); err == nil {
				// libvirt may print the element with a namespace prefix.
				if _, after, ok := strings.Cut(string(raw), "image-sha256>"); ok {
					if sha, _, ok := strings.Cut(after, "<"); ok {
						bases = append(bases, sha)
					}
				}
			}
		}
	}
	return bases
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
	obs.Counters = types.GuestCounter{CPUTimeNs: c.CPUTimeNs, MemoryKiB: c.MemoryKiB, MemoryUsedKiB: c.MemoryUsedKiB, DiskRdBytes: c.DiskRdBytes,
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

// Managed lists this host's managed domains (those whose metadata names
// this host), described as an unknown guest would be. It only reads: the
// agent reports the ones corrald does not know and never removes them.
func (d *Driver) Managed(context.Context) ([]types.UnknownGuest, error) {
	doms, err := d.domains()
	if err != nil {
		return nil, err
	}
	out := make([]types.UnknownGuest, 0, len(doms))
	for _, dom := range doms {
		m := dom.Meta
		out = append(out, types.UnknownGuest{ServerID: m.ServerID, Name: m.Name, ProjectID: m.Project, FlavorID: m.FlavorID,
			ImageID: m.ImageID, Kind: m.Kind, VCPUs: m.VCPUs, RAMMiB: m.RAMMiB, DiskGiB: m.DiskGiB, Hugepages: m.Hugepages,
			Domain: dom.Name, DomainUUID: dom.UUID, State: dom.State, DomainID: dom.ID})
	}
	return out, nil
}

// Sweep removes what needs no explicit deletion: network policing of taps
// no managed domain has any more, and trashed disks older than
// DeletedDiskGrace. It tells the image cache which images are in use: those
// of specs, of every managed domain (known or not) and of trashed disks.
// It never removes a domain or a guest's disk.
func (d *Driver) Sweep(specs []types.GuestSpec) error {
	doms, err := d.domains()
	if err != nil {
		return err
	}
	var taps, shas []string
	for _, dom := range doms {
		taps = append(taps, dom.Taps...)
		if dom.Meta.ImageSHA256 != "" {
			shas = append(shas, dom.Meta.ImageSHA256)
		}
	}
	for _, g := range specs {
		shas = append(shas, g.Image.SHA256)
	}
	shas = append(shas, d.purgeTrash(time.Now())...)
	d.cfg.Images.SetInUse(shas)
	if d.cfg.QoS != nil {
		return d.cfg.QoS.Sweep(taps)
	}
	return nil
}

// Guests counts the managed domains, running or not (agent.GuestCounter).
func (d *Driver) Guests(context.Context) (int64, error) {
	doms, err := d.domains()
	return int64(len(doms)), err
}
