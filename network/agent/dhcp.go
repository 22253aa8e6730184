package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/network"
	"github.com/corral-cloud/corral/network/flows"
	"github.com/corral-cloud/corral/network/ovs"
)

// DHCP serves DHCP to the guest ports of a host: one dnsmasq per network
// with ports here, in a network namespace of its own, attached to the
// integration bridge by a veth whose bridge end is an access port of the
// network's local VLAN (external_ids:corral-dhcp=<network ID>).
//
// dnsmasq answers only the MACs of the network's ports on this host, each
// with exactly its IPAM address (dhcp-host entries, no dynamic range,
// unknown MACs ignored), the subnet's gateway, DNS servers, host routes
// (option 121, with the default route added, as clients that get 121
// ignore option 3) and the MTU (the underlay's, 50 bytes less on VXLAN).
// The server has no address in the subnets it serves: it speaks from
// 169.254.169.253 (dnsmasq's shared-network), so it takes no IPAM address
// and is the same on every host; the flows (flows.DHCPPort) carry requests
// to it and its answers only to local guests.
//
// The dnsmasq processes outlive the agent (a restarted agent finds them by
// their pid files and leaves them serving); a server is removed only when
// its network has no port with an address on this host any more, and only
// servers the agent made (marked on the bridge) are removed.
type DHCP struct {
	// Dir holds one directory per network: dnsmasq's configuration, host
	// entries, leases, log and pid file.
	Dir string
	// Switch is the integration bridge.
	Switch DHCPSwitch
	// Bridge is the bridge's name; it seeds the names of the namespaces
	// and veths, so that several agents on one machine do not collide.
	Bridge string
	// UnderlayMTU is the physical network's MTU (default 1500).
	UnderlayMTU int
	// LeaseTime is the leases' length (default 24 h).
	LeaseTime time.Duration
	// Logger receives messages (default slog.Default()).
	Logger *slog.Logger

	mu sync.Mutex // one Sync at a time
}

// DHCPSwitch is what DHCP needs of the bridge; *ovs.Driver is one.
type DHCPSwitch interface {
	// EnsureAccessPort adds (or re-tags) a port; idempotent.
	EnsureAccessPort(name string, vlan int, externalIDs map[string]string) error
	DeletePort(name string) error
}

var _ DHCPSwitch = (*ovs.Driver)(nil)

// DHCPServerIP is the address every DHCP server speaks from.
const DHCPServerIP = "169.254.169.253"

// dhcpMark is the interface external_ids key of a DHCP server's port.
const dhcpMark = "corral-dhcp"

// DHCPSubnet is one subnet a network's server answers for.
type DHCPSubnet struct {
	Prefix     netip.Prefix
	Gateway    string
	DNSServers []string
	HostRoutes []types.HostRoute
}

// DHCPHost is one port's entry.
type DHCPHost struct {
	MAC string
	IP  netip.Addr
}

// DHCPNetwork is what one network's server serves.
type DHCPNetwork struct {
	NetworkID string
	VLAN      int
	MTU       int
	Subnets   []DHCPSubnet
	Hosts     []DHCPHost
}

// DHCPNetworks groups the ports bound here by network: each port's first
// address, with its subnet's options. Ports without an address are left
// out, as are networks without a local VLAN.
func DHCPNetworks(ports []types.BoundPort, vlanOf map[string]int, underlayMTU int) []DHCPNetwork {
	if underlayMTU <= 0 {
		underlayMTU = 1500
	}
	byNet := map[string]*DHCPNetwork{}
	for _, p := range ports {
		if len(p.IPs) == 0 || vlanOf[p.NetworkID] == 0 {
			continue
		}
		pfx, err := netip.ParsePrefix(p.IPs[0])
		if err != nil || !pfx.Addr().Is4() {
			continue
		}
		n := byNet[p.NetworkID]
		if n == nil {
			mtu := underlayMTU
			if p.SegmentType == types.SegmentVXLAN {
				mtu -= 50
			}
			n = &DHCPNetwork{NetworkID: p.NetworkID, VLAN: vlanOf[p.NetworkID], MTU: mtu}
			byNet[p.NetworkID] = n
		}
		n.Hosts = append(n.Hosts, DHCPHost{MAC: strings.ToLower(p.MACAddress), IP: pfx.Addr()})
		masked := pfx.Masked()
		found := false
		for _, s := range n.Subnets {
			found = found || s.Prefix == masked
		}
		if !found {
			n.Subnets = append(n.Subnets, DHCPSubnet{Prefix: masked, Gateway: p.Gateway, DNSServers: p.DNSServers, HostRoutes: p.HostRoutes})
		}
	}
	out := make([]DHCPNetwork, 0, len(byNet))
	for _, n := range byNet {
		sort.Slice(n.Hosts, func(i, j int) bool { return n.Hosts[i].MAC < n.Hosts[j].MAC })
		sort.Slice(n.Subnets, func(i, j int) bool { return n.Subnets[i].Prefix.Addr().Less(n.Subnets[j].Prefix.Addr()) })
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NetworkID < out[j].NetworkID })
	return out
}

// dhcpNames are the names of a network's server on a bridge: namespace,
// bridge-side and namespace-side veth ends (at most 15 characters), and
// the server's MAC.
type dhcpNames struct {
	key, ns, outer, inner, mac string
}

func namesFor(bridge, networkID string) dhcpNames {
	h := sha256.Sum256([]byte(bridge + "|" + networkID))
	key := hex.EncodeToString(h[:5])
	return dhcpNames{key: key, ns: "cdhcp-" + key, outer: "cdh" + key, inner: "cdn" + key,
		mac: fmt.Sprintf("02:ca:%02x:%02x:%02x:%02x", h[5], h[6], h[7], h[8])}
}

// DnsmasqConfig renders a server's dnsmasq configuration and dhcp-host
// file; dir is its directory and iface the namespace-side interface.
func DnsmasqConfig(n DHCPNetwork, dir, iface string, lease time.Duration) (conf, hosts string) {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# corral-agent: DHCP of network %s (VLAN %d); rewritten on every change", n.NetworkID, n.VLAN)
	w("port=0")
	w("interface=%s", iface)
	w("bind-interfaces")
	w("except-interface=lo")
	w("dhcp-authoritative")
	w("dhcp-ignore=tag:!known")
	w("dhcp-hostsfile=%s", filepath.Join(dir, "hosts"))
	w("dhcp-leasefile=%s", filepath.Join(dir, "leases"))
	w("pid-file=%s", filepath.Join(dir, "pid"))
	w("log-facility=%s", filepath.Join(dir, "dnsmasq.log"))
	w("dhcp-lease-max=%d", max(len(n.Hosts)*2, 64))
	secs := int(lease / time.Second)
	for i, s := range n.Subnets {
		tag := fmt.Sprintf("s%d", i)
		w("dhcp-range=set:%s,%s,static,%s,%ds", tag, s.Prefix.Addr(), mask(s.Prefix.Bits()), secs)
		w("shared-network=%s,%s", iface, s.Prefix.Addr())
		if s.Gateway != "" {
			w("dhcp-option=tag:%s,option:router,%s", tag, s.Gateway)
		} else {
			w("dhcp-option=tag:%s,option:router", tag)
		}
		if len(s.DNSServers) > 0 {
			w("dhcp-option=tag:%s,option:dns-server,%s", tag, strings.Join(s.DNSServers, ","))
		} else {
			w("dhcp-option=tag:%s,option:dns-server", tag)
		}
		w("dhcp-option=tag:%s,option:mtu,%d", tag, n.MTU)
		if len(s.HostRoutes) > 0 {
			var rs []string
			for _, r := range s.HostRoutes {
				rs = append(rs, r.Destination, r.NextHop)
			}
			if s.Gateway != "" { // RFC 3442: with option 121 the router option is ignored
				rs = append(rs, "0.0.0.0/0", s.Gateway)
			}
			w("dhcp-option=tag:%s,option:classless-static-route,%s", tag, strings.Join(rs, ","))
		}
	}
	var h strings.Builder
	for _, e := range n.Hosts {
		fmt.Fprintf(&h, "%s,%s\n", e.MAC, e.IP)
	}
	return b.String(), h.String()
}

func mask(bits int) string {
	var b [4]byte
	for i := 0; i < bits; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b).String()
}

func (d *DHCP) log() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.Default()
}

// Sync makes the host's DHCP servers match its ports and returns their
// bridge ports for the flows. A network whose server cannot be set up is
// logged and left out; it never stops the others or the flows.
func (d *DHCP) Sync(ports []types.BoundPort, vlanOf map[string]int, ifaces []network.Interface) []flows.DHCPPort {
	d.mu.Lock()
	defer d.mu.Unlock()
	want := DHCPNetworks(ports, vlanOf, d.UnderlayMTU)
	byName := map[string]network.Interface{}
	for _, i := range ifaces {
		byName[i.Name] = i
	}
	var out []flows.DHCPPort
	keep := map[string]bool{}
	for _, n := range want {
		nm := namesFor(d.Bridge, n.NetworkID)
		keep[nm.outer] = true
		if err := d.ensure(n, nm); err != nil {
			d.log().Error("DHCP server", "network", n.NetworkID, "error", err)
			continue
		}
		if i, ok := byName[nm.outer]; ok && i.OFPort > 0 && i.Tag == n.VLAN {
			out = append(out, flows.DHCPPort{OFPort: i.OFPort, VLAN: n.VLAN, MAC: nm.mac})
		}
	}
	// Servers of networks that have no port here any more: only those
	// this agent made on this bridge (marked, and named after it).
	for _, i := range ifaces {
		netID := i.ExternalIDs[dhcpMark]
		if netID == "" || keep[i.Name] || namesFor(d.Bridge, netID).outer != i.Name {
			continue
		}
		if err := d.remove(netID, namesFor(d.Bridge, netID)); err != nil {
			d.log().Error("remove DHCP server", "network", netID, "error", err)
		}
	}
	return out
}

func run(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ensure sets up one network's namespace, veth, port and dnsmasq; every
// step is idempotent.
func (d *DHCP) ensure(n DHCPNetwork, nm dhcpNames) error {
	dir := filepath.Join(d.Dir, nm.key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join("/run/netns", nm.ns)); err != nil {
		if err := run("ip", "netns", "add", nm.ns); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", nm.outer)); err != nil {
		// A half-made pair (an agent stopped midway) is made again.
		run("ip", "-n", nm.ns, "link", "del", nm.inner)
		steps := [][]string{
			{"ip", "link", "add", nm.outer, "type", "veth", "peer", "name", nm.inner, "netns", nm.ns},
			{"ip", "-n", nm.ns, "link", "set", nm.inner, "address", nm.mac},
			{"ip", "-n", nm.ns, "addr", "add", DHCPServerIP + "/32", "dev", nm.inner},
			{"ip", "-n", nm.ns, "link", "set", "lo", "up"},
			{"ip", "-n", nm.ns, "link", "set", nm.inner, "up"},
			{"ip", "link", "set", nm.outer, "up"},
			// The userspace datapath does not complete offloaded checksums.
			{"ip", "netns", "exec", nm.ns, "ethtool", "-K", nm.inner, "tx", "off"},
			{"ethtool", "-K", nm.outer, "tx", "off"},
		}
		for _, s := range steps {
			if err := run(s[0], s[1:]...); err != nil {
				return err
			}
		}
	}
	if err := d.Switch.EnsureAccessPort(nm.outer, n.VLAN, map[string]string{dhcpMark: n.NetworkID}); err != nil {
		return err
	}
	for _, s := range n.Subnets {
		if err := run("ip", "-n", nm.ns, "route", "replace", s.Prefix.String(), "dev", nm.inner); err != nil {
			return err
		}
	}
	lease := d.LeaseTime
	if lease <= 0 {
		lease = 24 * time.Hour
	}
	conf, hosts := DnsmasqConfig(n, dir, nm.inner, lease)
	confPath, hostsPath := filepath.Join(dir, "dnsmasq.conf"), filepath.Join(dir, "hosts")
	oldConf, _ := os.ReadFile(confPath)
	oldHosts, _ := os.ReadFile(hostsPath)
	if err := writeIfChanged(hostsPath, oldHosts, hosts); err != nil {
		return err
	}
	if err := writeIfChanged(confPath, oldConf, conf); err != nil {
		return err
	}
	pid := d.pid(dir)
	switch {
	case pid == 0 || string(oldConf) != conf:
		if pid != 0 {
			syscall.Kill(pid, syscall.SIGTERM)
			waitGone(pid, 5*time.Second)
		}
		if err := run("ip", "netns", "exec", nm.ns, "dnsmasq", "--conf-file="+confPath); err != nil {
			return err
		}
		d.log().Info("DHCP server started", "network", n.NetworkID, "vlan", n.VLAN, "namespace", nm.ns, "hosts", len(n.Hosts))
	case string(oldHosts) != hosts:
		// dnsmasq re-reads its dhcp-hostsfile on SIGHUP.
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("reload dnsmasq %d: %w", pid, err)
		}
		d.log().Info("DHCP hosts reloaded", "network", n.NetworkID, "hosts", len(n.Hosts))
	}
	return nil
}

func writeIfChanged(path string, old []byte, content string) error {
	if string(old) == content {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// pid returns the running dnsmasq of dir, 0 if none: the pid file's
// process, if it is a dnsmasq started with this directory's configuration.
func (d *DHCP) pid(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmd, []byte(filepath.Join(dir, "dnsmasq.conf"))) {
		return 0
	}
	return pid
}

func waitGone(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// remove stops a network's server and removes its port, veth, namespace
// and directory.
func (d *DHCP) remove(networkID string, nm dhcpNames) error {
	dir := filepath.Join(d.Dir, nm.key)
	if pid := d.pid(dir); pid != 0 {
		syscall.Kill(pid, syscall.SIGTERM)
		waitGone(pid, 5*time.Second)
	}
	if err := d.Switch.DeletePort(nm.outer); err != nil {
		return err
	}
	run("ip", "link", "del", nm.outer)
	run("ip", "netns", "del", nm.ns)
	os.RemoveAll(dir)
	d.log().Info("DHCP server removed: no port of its network is on this host", "network", networkID)
	return nil
}
