package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/corral-cloud/corral/agent"
	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/compute"
)

// The compute driver is the agent's guest driver and console source.
var (
	_ agent.GuestDriver   = (*compute.Driver)(nil)
	_ agent.ConsoleSource = (*compute.Driver)(nil)
	_ agent.ConsoleWriter = (*compute.Driver)(nil)
)

// computeOptions configure the guests this host runs.
type computeOptions struct {
	enabled                  bool
	libvirtURI               string
	domainType               string
	allowTCG                 bool
	probeKernel, probeInitrd string
	cpuModel                 string
	bridge, datapath         string
	instancesDir, imageDir   string
	imageCacheMiB            int64
	diskCache                string
	diskQoS                  string
	stopTimeout              time.Duration
	deletedDiskGrace         time.Duration
	watchWait, resync        time.Duration
	workers                  int
	network                  bool
	tunnelIP                 string
	physnets                 physnetFlag
	dhcp                     bool
	dhcpDir                  string
	underlayMTU              int
	configDrive              string
}

func (c *computeOptions) register(fs *flag.FlagSet) {
	fs.BoolVar(&c.enabled, "compute", true, "run guests on this host through libvirt (false: register and heartbeat only)")
	fs.StringVar(&c.libvirtURI, "libvirt-uri", "qemu:///system", "libvirt connection URI")
	fs.StringVar(&c.domainType, "domain-type", "auto",
		"kvm, qemu (TCG emulation) or auto: boot a probe guest under KVM and use kvm only if it really runs")
	fs.BoolVar(&c.allowTCG, "allow-tcg", false, "under --domain-type auto, fall back to TCG emulation when KVM does not run guests")
	fs.StringVar(&c.probeKernel, "probe-kernel", "/usr/share/corral/guest/vmlinuz", "kernel of the KVM probe guest")
	fs.StringVar(&c.probeInitrd, "probe-initrd", "/usr/share/corral/guest/initrd.gz", "initramfs of the KVM probe guest (prints GUEST-READY)")
	fs.StringVar(&c.cpuModel, "cpu-model", "", "guest CPU model (default: host-model under kvm, qemu64 under qemu)")
	fs.StringVar(&c.bridge, "bridge", "br-int", "Open vSwitch integration bridge for guest NICs (created if missing)")
	fs.StringVar(&c.datapath, "datapath", "auto", "datapath of a bridge the agent creates: system, netdev or auto")
	fs.StringVar(&c.instancesDir, "instances-dir", "", "guests' disk overlays and console logs (default <data-dir>/instances)")
	fs.StringVar(&c.imageDir, "image-cache-dir", "", "cached base images (default <data-dir>/images)")
	fs.Int64Var(&c.imageCacheMiB, "image-cache-mib", 50<<10, "size above which unused cached images are evicted, least recently used first")
	fs.StringVar(&c.diskCache, "disk-cache", "none", "guest disk cache mode (none lets cgroup I/O throttling work)")
	fs.StringVar(&c.diskQoS, "disk-qos", "iotune", "how disk limits are enforced: iotune (libvirt, any cache mode) or cgroup (blkio on v1, io.max on v2)")
	fs.DurationVar(&c.stopTimeout, "stop-timeout", 30*time.Second, "how long a graceful guest stop waits before forcing")
	fs.DurationVar(&c.deletedDiskGrace, "deleted-disk-grace", 24*time.Hour,
		"keep a deleted guest's disk (and domain definition) in <instances-dir>/trash this long, so a mistaken delete can be undone; 0 removes it at once")
	fs.DurationVar(&c.watchWait, "watch-wait", agent.DefaultWatchWait, "how long one watch of desired guests waits for a change")
	fs.DurationVar(&c.resync, "resync", agent.DefaultResync, "how often every guest is re-checked")
	fs.IntVar(&c.workers, "guest-workers", agent.DefaultGuestWorkers, "guests reconciled at once")
	fs.BoolVar(&c.network, "network", true, "run the network loop: ports, VLANs, tunnels and security-group flows on --bridge")
	fs.StringVar(&c.tunnelIP, "tunnel-ip", "", "this host's VXLAN endpoint address, for overlay networks")
	fs.Var(&c.physnets, "physnet", "NAME=BRIDGE, NAME=BRIDGE:INTERFACE or NAME=INTERFACE: the uplink of physical network NAME, "+
		"for provider networks (repeatable)")
	fs.BoolVar(&c.dhcp, "dhcp", true, "serve DHCP to guest ports (dnsmasq per network in a namespace); guests' seeds then say dhcp4")
	fs.StringVar(&c.dhcpDir, "dhcp-dir", "", "the DHCP servers' configurations, leases and logs (default <data-dir>/dhcp)")
	fs.IntVar(&c.underlayMTU, "underlay-mtu", 1500, "MTU of the physical network; guests on VXLAN networks get 50 bytes less")
	fs.StringVar(&c.configDrive, "config-drive", compute.ConfigDriveNoCloud,
		"the cloud-init seed every VM gets as a CD-ROM: nocloud (label cidata), configdrive (OpenStack, config-2) or none")
}

// setup connects to libvirt and the switch and returns the guest driver
// and the capabilities it found. It waits (with backoff) for libvirtd,
// which may start after the agent.
func (c *computeOptions) setup(ctx context.Context, host, dataDir string, api func() *client.Client, log *slog.Logger) (*compute.Driver, []string, error) {
	if c.deletedDiskGrace < 0 {
		return nil, nil, fmt.Errorf("--deleted-disk-grace %s: must not be negative", c.deletedDiskGrace)
	}
	if c.instancesDir == "" {
		c.instancesDir = filepath.Join(dataDir, "instances")
	}
	if c.imageDir == "" {
		c.imageDir = filepath.Join(dataDir, "images")
	}
	if c.dhcpDir == "" {
		c.dhcpDir = filepath.Join(dataDir, "dhcp")
	}
	var hv *compute.Libvirt
	backoff := agent.DefaultBackoff()
	for {
		var err error
		if hv, err = compute.NewLibvirt(c.libvirtURI); err == nil {
			break
		}
		wait := backoff.Next()
		log.Error("libvirtd is not reachable; guests cannot run until it is", "uri", c.libvirtURI, "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	domType, why, err := compute.ChooseDomainType(ctx, c.domainType, c.allowTCG, compute.KVMProbe{
		URI: c.libvirtURI, Kernel: c.probeKernel, Initrd: c.probeInitrd, CacheFile: filepath.Join(dataDir, "kvm-probe.json")})
	if err != nil {
		return nil, nil, err
	}
	log.Info("guest domain type chosen", "type", domType, "why", why)
	caps := []string{types.CapTCG}
	if domType == "kvm" {
		caps = []string{types.CapKVM}
	}
	datapath := c.datapath
	if datapath == "auto" {
		datapath = compute.DatapathType()
	}
	if err := compute.EnsureBridge(c.bridge, datapath); err != nil {
		return nil, nil, err
	}
	vhost := compute.VhostNetAvailable()
	if !vhost {
		log.Warn("/dev/vhost-net is absent: guest NICs use qemu's virtio backend (slower)")
	}
	images, err := compute.NewImageCache(c.imageDir, c.imageCacheMiB<<20, func(ctx context.Context, id string) (io.ReadCloser, error) {
		resp, err := api().DownloadImage(ctx, id)
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	})
	if err != nil {
		return nil, nil, err
	}
	d, err := compute.NewDriver(compute.Config{
		Hypervisor: hv, Images: images, QoS: &compute.OVSQoS{Bridge: c.bridge}, Dir: c.instancesDir, Bridge: c.bridge, Host: host,
		DomainType: domType, CPUModel: c.cpuModel, Vhost: vhost,
		// The userspace datapath forwards partial checksums as they are.
		ChecksumOffload: datapath != "netdev",
		ConfigDrive:     c.configDrive, GuestDHCP: c.network && c.dhcp, UnderlayMTU: c.underlayMTU,
		DiskCache: c.diskCache, DiskQoS: c.diskQoS, StopTimeout: c.stopTimeout, DeletedDiskGrace: c.deletedDiskGrace, Logger: log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("compute: %w", err)
	}
	return d, caps, nil
}
