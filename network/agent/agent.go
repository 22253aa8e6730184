// Package agent is the network side of corral-agent: a reconcile loop that
// watches the host's desired network state in corrald and makes the
// integration bridge match it.
//
// Flows are reconciled, never reinitialised: the loop touches nothing
// until it has the desired state, then lists the installed flows by
// Corral's cookie, and adds and deletes only the difference in one atomic
// OpenFlow bundle. A restarted agent computes the same flows (equal flows
// have equal cookies), finds nothing to change and changes nothing, so
// traffic never stops; neither does it when corrald is unreachable, as the
// installed flows stay as they are.
package agent

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/network"
	"github.com/corral-cloud/corral/network/flows"
	"github.com/corral-cloud/corral/network/ovs"
)

// Source is where the desired state comes from; *client.Client is one.
type Source interface {
	// HostNetwork returns the host's state; with a version it waits up to
	// wait for a state of another version.
	HostNetwork(ctx context.Context, hostID, version string, wait time.Duration) (types.HostNetwork, error)
	// SetTunnelEndpoint reports the host's VXLAN address.
	SetTunnelEndpoint(ctx context.Context, hostID, ip string) error
}

// Switch is the integration bridge; *ovs.Driver is the real one. Every
// method is idempotent.
type Switch interface {
	// EnsureBridge creates the bridge if missing; it never re-creates one.
	EnsureBridge() (created bool, datapath string, err error)
	Interfaces() ([]network.Interface, error)
	SetTag(port string, vlan int) error
	EnsureTunnel(t network.TunnelSpec) error
	DeletePort(name string) error
	ExternalIDs() (map[string]string, error)
	SetExternalIDs(kv map[string]string) error
	// InstalledCookies lists the cookies of Corral's installed flows.
	InstalledCookies() ([]uint64, error)
	// Apply adds and deletes (by cookie) flows atomically.
	Apply(add []flows.Flow, del []uint64) error
}

// ChangeNotifier is a Switch that can tell when its interfaces change;
// the loop then looks at once instead of at the next poll.
type ChangeNotifier interface {
	Changes(ctx context.Context) <-chan struct{}
}

var (
	_ Switch         = (*ovs.Driver)(nil)
	_ ChangeNotifier = (*ovs.Driver)(nil)
)

// Defaults of Reconciler.
const (
	DefaultWait   = 30 * time.Second
	DefaultPoll   = time.Second
	DefaultResync = 30 * time.Second
)

// vniKey is the bridge external_ids key that keeps a VNI's local VLAN.
const vniKey = "corral-vni-"

// Reconciler makes the bridge match the host's desired network state.
type Reconciler struct {
	// Source gives the desired state (the api/client with the agent token).
	Source Source
	// Switch is the bridge.
	Switch Switch
	// HostID is the host's ID in Corral.
	HostID string
	// TunnelIP, when set, is reported as the host's VXLAN endpoint and used
	// as the tunnels' local address.
	TunnelIP string
	// Wait is the long-poll wait (default 30 s).
	Wait time.Duration
	// Poll is how often the bridge's interfaces are listed, so that a
	// guest NIC plugged after its port was bound gets its flows (default
	// 1 s).
	Poll time.Duration
	// Resync is how often the installed flows are compared with the
	// desired ones even if nothing seems to have changed, to repair drift
	// (default 30 s).
	Resync time.Duration
	// Logger receives the loop's messages (default slog.Default()).
	Logger *slog.Logger
	// OnReconcile, when set, is called after every reconcile.
	OnReconcile func(Result)
	// Physnets maps physical network names to this host's uplinks
	// (corral-agent --physnet); provider networks on other physical
	// networks stay local to the host.
	Physnets map[string]Uplink
	// DHCP, when set, serves DHCP to the guest ports (dhcp.go).
	DHCP *DHCP

	mu sync.Mutex
	// used is the signature of the interfaces the last reconcile saw.
	used string
	// uplinks are Physnets resolved and ensured (nil until then).
	uplinks map[string]Uplink
	// patchOK are the patches ensured by this process, so that an
	// unchanged one is not set again on every reconcile.
	patchOK map[string]network.PatchSpec
	// warned are the physical networks without an uplink already logged.
	warned map[string]bool
}

// Result is what one reconcile did.
type Result struct {
	Version  string
	Flows    int // desired flows
	Added    int
	Deleted  int
	Retagged int
	Tunnels  int // tunnel ports created, changed or removed
	Patches  int // provider patch pairs created, changed or removed
	Duration time.Duration
	Err      error
}

func (r *Reconciler) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// Run ensures the bridge, then watches the desired state and reconciles
// until ctx ends; it returns nil then. Errors (corrald or OVS unreachable)
// are logged and retried; they never remove installed flows.
func (r *Reconciler) Run(ctx context.Context) error {
	wait, poll, resync := or(r.Wait, DefaultWait), or(r.Poll, DefaultPoll), or(r.Resync, DefaultResync)
	for {
		created, dp, err := r.Switch.EnsureBridge()
		if err == nil {
			r.log().Info("integration bridge ready", "created", created, "datapath_type", dp)
			break
		}
		r.log().Error("ensure integration bridge", "error", err)
		if !sleep(ctx, 2*time.Second) {
			return nil
		}
	}
	states := make(chan types.HostNetwork, 1)
	go r.watch(ctx, wait, states)

	var state *types.HostNetwork
	var lastIfaces string
	var lastFull time.Time
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var changes <-chan struct{}
	if n, ok := r.Switch.(ChangeNotifier); ok {
		changes = n.Changes(ctx)
	}
	for {
		check := false
		select {
		case <-ctx.Done():
			return nil
		case st := <-states:
			state = &st
		case <-changes:
			check = true
		case <-tick.C:
			check = true
		}
		if check {
			if state == nil {
				continue // nothing is touched before the desired state is known
			}
			ifaces, err := r.Switch.Interfaces()
			if err != nil {
				r.log().Error("list bridge interfaces", "error", err)
				continue
			}
			if sig := signature(ifaces); sig == lastIfaces && time.Since(lastFull) < resync {
				continue
			}
		}
		res, _ := r.ReconcileOnce(*state)
		if res.Err == nil {
			// The interfaces the reconcile worked from, not a fresh list: a
			// NIC plugged meanwhile must still count as a change.
			lastFull = time.Now()
			r.mu.Lock()
			lastIfaces = r.used
			r.mu.Unlock()
		}
	}
}

// watch long-polls the desired state and hands each new one to the loop,
// replacing one not taken yet.
func (r *Reconciler) watch(ctx context.Context, wait time.Duration, out chan types.HostNetwork) {
	version := ""
	backoff := time.Second
	reported := false
	for ctx.Err() == nil {
		if r.TunnelIP != "" && !reported {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := r.Source.SetTunnelEndpoint(cctx, r.HostID, r.TunnelIP)
			cancel()
			if err != nil {
				r.log().Warn("report tunnel endpoint", "error", err)
			}
			reported = err == nil
		}
		cctx, cancel := context.WithTimeout(ctx, wait+15*time.Second)
		st, err := r.Source.HostNetwork(cctx, r.HostID, version, wait)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log().Warn("watch host network; installed flows stay as they are", "error", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 15*time.Second)
			continue
		}
		backoff = time.Second
		if st.Version == version {
			continue
		}
		version = st.Version
		select {
		case <-out:
		default:
		}
		out <- st
	}
}

// ReconcileOnce makes the bridge match st: port tags, tunnel ports, then
// the flows, changing only what differs.
func (r *Reconciler) ReconcileOnce(st types.HostNetwork) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	res, err := r.reconcile(st)
	res.Version, res.Duration, res.Err = st.Version, time.Since(start), err
	if err != nil {
		r.log().Error("reconcile network", "version", st.Version, "error", err)
	} else if res.Added+res.Deleted+res.Retagged+res.Tunnels+res.Patches > 0 {
		r.log().Info("reconciled network", "version", st.Version, "flows", res.Flows, "added", res.Added,
			"deleted", res.Deleted, "retagged", res.Retagged, "tunnels", res.Tunnels, "patches", res.Patches, "duration", res.Duration)
	}
	if r.OnReconcile != nil {
		r.OnReconcile(res)
	}
	return res, err
}

func (r *Reconciler) reconcile(st types.HostNetwork) (Result, error) {
	var res Result
	ifaces, err := r.Switch.Interfaces()
	if err != nil {
		return res, err
	}
	if err := r.ensureUplinks(); err != nil {
		return res, err
	}
	// The local VLANs of VXLAN and flat networks live in the bridge's
	// external_ids; without such ports there is nothing to read.
	ext := map[string]string{}
	if slices.ContainsFunc(st.Ports, func(p types.BoundPort) bool {
		return p.SegmentType == types.SegmentVXLAN || p.SegmentType == types.SegmentFlat
	}) {
		if ext, err = r.Switch.ExternalIDs(); err != nil {
			return res, err
		}
	}
	prev := map[int64]int{}
	prevFlat := map[string]int{}
	for k, v := range ext {
		vl, err := strconv.Atoi(v)
		if err != nil {
			continue
		}
		if vni, ok := strings.CutPrefix(k, vniKey); ok {
			if n, err := strconv.ParseInt(vni, 10, 64); err == nil {
				prev[n] = vl
			}
		}
		if pn, ok := strings.CutPrefix(k, flatKey); ok {
			prevFlat[pn] = vl
		}
	}
	vlanOf, vniVLAN, flatVLAN, err := network.LocalSegments(st.Ports, prev, prevFlat)
	if err != nil {
		return res, err
	}
	save := map[string]string{}
	for vni, vl := range vniVLAN {
		if prev[vni] != vl {
			save[fmt.Sprintf("%s%d", vniKey, vni)] = strconv.Itoa(vl)
		}
	}
	for pn, vl := range flatVLAN {
		if prevFlat[pn] != vl {
			save[flatKey+pn] = strconv.Itoa(vl)
		}
	}
	if err := r.Switch.SetExternalIDs(save); err != nil {
		return res, err
	}

	// Tunnels: one port per remote endpoint and VNI.
	byName := map[string]network.Interface{}
	for _, i := range ifaces {
		byName[i.Name] = i
	}
	want := map[string]network.TunnelSpec{}
	for _, t := range st.Tunnels {
		for _, vni := range t.VNIs {
			vl, ok := vniVLAN[vni]
			if !ok {
				continue
			}
			spec := network.TunnelSpec{Name: TunnelName(t.IP, vni), RemoteIP: t.IP, LocalIP: r.TunnelIP, VNI: vni, VLAN: vl}
			want[spec.Name] = spec
		}
	}
	changedTunnels := false
	for _, i := range ifaces {
		if i.IsCorralTunnel() {
			if _, ok := want[i.Name]; !ok {
				if err := r.Switch.DeletePort(i.Name); err != nil {
					return res, err
				}
				res.Tunnels++
				changedTunnels = true
			}
		}
	}
	for _, name := range sortedKeys(want) {
		spec := want[name]
		if i, ok := byName[name]; ok && i.Tag == spec.VLAN && i.Options["remote_ip"] == spec.RemoteIP &&
			i.Options["key"] == strconv.FormatInt(spec.VNI, 10) && i.Options["local_ip"] == spec.LocalIP {
			continue
		}
		if err := r.Switch.EnsureTunnel(spec); err != nil {
			return res, err
		}
		res.Tunnels++
		changedTunnels = true
	}
	// Provider networks: one patch pair per network to its uplink.
	patches, missing := r.wantPatches(st, vlanOf)
	for _, pn := range missing {
		if !r.warned[pn] {
			r.log().Warn("provider network's physical network has no uplink on this host (corral-agent --physnet); its ports stay local",
				"physnet", pn)
			if r.warned == nil {
				r.warned = map[string]bool{}
			}
			r.warned[pn] = true
		}
	}
	if res.Patches, err = r.reconcilePatches(ifaces, patches); err != nil {
		return res, err
	}
	if changedTunnels || res.Patches > 0 {
		if ifaces, err = r.Switch.Interfaces(); err != nil {
			return res, err
		}
	}

	r.used = signature(ifaces)
	// Guest ports: tag them, and build the flows' input.
	byIface := map[string]network.Interface{}
	for _, i := range ifaces {
		if id := i.IfaceID(); id != "" && i.OFPort > 0 {
			byIface[id] = i
		}
	}
	var in flows.Input
	for _, p := range st.Ports {
		i, ok := byIface[p.ID]
		if !ok {
			continue // not plugged here yet
		}
		vl := vlanOf[p.NetworkID]
		if i.Tag != vl {
			if err := r.Switch.SetTag(i.Name, vl); err != nil {
				return res, err
			}
			res.Retagged++
		}
		fp := flows.Port{ID: p.ID, OFPort: i.OFPort, VLAN: vl, MAC: p.MACAddress, Rules: p.Rules}
		for _, c := range p.IPs {
			if pfx, err := netip.ParsePrefix(c); err == nil {
				fp.IPs = append(fp.IPs, pfx.Addr())
			}
		}
		for _, pr := range p.AllowedAddressPairs {
			if pfx, err := netip.ParsePrefix(pr.IPAddress); err == nil {
				fp.Pairs = append(fp.Pairs, flows.Pair{CIDR: pfx, MAC: pr.MACAddress})
			}
		}
		in.Ports = append(in.Ports, fp)
	}
	if r.DHCP != nil {
		in.DHCP = r.DHCP.Sync(st.Ports, vlanOf, ifaces)
	}
	for _, i := range ifaces {
		if i.IsCorralTunnel() && i.OFPort > 0 {
			if spec, ok := want[i.Name]; ok {
				in.Tunnels = append(in.Tunnels, flows.Tunnel{OFPort: i.OFPort, VLAN: spec.VLAN})
			}
		}
		if i.IsCorralPatch() && i.OFPort > 0 {
			if spec, ok := patches[i.Name]; ok {
				in.Tunnels = append(in.Tunnels, flows.Tunnel{OFPort: i.OFPort, VLAN: spec.LocalVLAN})
			}
		}
	}
	desired := flows.Compute(in)
	res.Flows = len(desired)
	installed, err := r.Switch.InstalledCookies()
	if err != nil {
		return res, err
	}
	add, del := flows.Diff(desired, installed)
	if err := r.Switch.Apply(add, del); err != nil {
		return res, err
	}
	res.Added, res.Deleted = len(add), len(del)
	return res, nil
}

// ensureUplinks resolves and creates the uplinks of Physnets, once: an
// uplink that cannot be made is an error of this reconcile, retried by
// the next.
func (r *Reconciler) ensureUplinks() error {
	if r.uplinks != nil || len(r.Physnets) == 0 {
		return nil
	}
	u, ok := r.Switch.(Uplinker)
	if !ok {
		return fmt.Errorf("physical networks are configured but the switch cannot make uplinks")
	}
	out := map[string]Uplink{}
	for _, name := range sortedKeys(r.Physnets) {
		up, err := ResolveUplink(u, r.Physnets[name], ovs.IsInterface)
		if err != nil {
			return fmt.Errorf("physical network %s: %w", name, err)
		}
		if err := u.EnsureUplink(up.Bridge, up.Interface); err != nil {
			return fmt.Errorf("physical network %s: %w", name, err)
		}
		r.log().Info("uplink ready", "physnet", name, "bridge", up.Bridge, "interface", up.Interface)
		out[name] = up
	}
	r.uplinks = out
	return nil
}

// TunnelName is the tunnel port's name for a remote endpoint and VNI: at
// most 15 characters, the same on every run.
func TunnelName(remoteIP string, vni int64) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%d", remoteIP, vni)
	return fmt.Sprintf("cvx%012x", h.Sum64()&0xffffffffffff)
}

// signature summarises what of the interfaces matters to the flows.
func signature(ifaces []network.Interface) string {
	var b strings.Builder
	for _, i := range ifaces {
		fmt.Fprintf(&b, "%s|%d|%s|%d;", i.Name, i.OFPort, i.IfaceID(), i.Tag)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
