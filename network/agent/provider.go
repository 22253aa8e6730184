package agent

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"

	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/network"
	"github.com/corral-cloud/corral/network/ovs"
)

// Uplinker is a Switch that can join provider networks to their physical
// networks' uplink bridges; *ovs.Driver is one. Every method is
// idempotent.
type Uplinker interface {
	// BridgeExists reports whether OVS has the bridge.
	BridgeExists(name string) (bool, error)
	// EnsureUplink creates the uplink bridge if missing (never
	// re-creates one) and adds iface to it if given.
	EnsureUplink(bridge, iface string) error
	// EnsurePatch creates or updates both ends of a patch at once.
	EnsurePatch(p network.PatchSpec) error
	// DeletePatch removes both ends; missing ends are not an error.
	DeletePatch(name, peer string) error
}

var _ Uplinker = (*ovs.Driver)(nil)

// Uplink is where a physical network leaves the host: a bridge, and
// optionally the network interface the agent puts on it.
type Uplink struct {
	Bridge    string
	Interface string
}

var physnetFlagRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
var ifaceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}$`)

// ParsePhysnet parses one corral-agent --physnet value: NAME=BRIDGE,
// NAME=BRIDGE:IFACE (the agent adds IFACE to BRIDGE), or NAME=IFACE
// (resolved when the agent starts: see ResolveUplink).
func ParsePhysnet(v string) (name string, up Uplink, err error) {
	name, target, ok := strings.Cut(v, "=")
	if !ok || !physnetFlagRE.MatchString(name) || target == "" {
		return "", up, fmt.Errorf("--physnet %q: want NAME=BRIDGE, NAME=BRIDGE:INTERFACE or NAME=INTERFACE", v)
	}
	br, iface, _ := strings.Cut(target, ":")
	if !ifaceRE.MatchString(br) || (iface != "" && !ifaceRE.MatchString(iface)) {
		return "", up, fmt.Errorf("--physnet %q: %q is not a bridge or interface name (at most 15 characters)", v, target)
	}
	return name, Uplink{Bridge: br, Interface: iface}, nil
}

// ResolveUplink decides what a bare NAME=X mapping means: X is a bridge
// if OVS has one of that name, else a network interface if the host has
// one (its uplink bridge is then "cpb-" + X, made by the agent), else a
// bridge for the agent to create.
func ResolveUplink(u Uplinker, up Uplink, isInterface func(string) bool) (Uplink, error) {
	if up.Interface != "" {
		return up, nil
	}
	ok, err := u.BridgeExists(up.Bridge)
	if err != nil || ok {
		return up, err
	}
	if isInterface(up.Bridge) {
		br := "cpb-" + up.Bridge
		if len(br) > 15 {
			br = br[:15]
		}
		return Uplink{Bridge: br, Interface: up.Bridge}, nil
	}
	return up, nil
}

// PatchNames are the names of a provider network's patch ports on this
// host: at most 15 characters, the same on every run.
func PatchNames(physnet, segmentType string, segmentID int64) (name, peer string) {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%s|%d", physnet, segmentType, segmentID)
	sum := h.Sum64() & 0xffffffffffff
	return fmt.Sprintf("cpi%012x", sum), fmt.Sprintf("cpo%012x", sum)
}

// flatKey is the bridge external_ids key that keeps a flat network's
// local VLAN.
const flatKey = "corral-flat-"

// wantPatches returns the patches the host's provider networks need,
// keyed by their integration-bridge name. A provider network whose
// physical network has no uplink on this host gets none: its ports stay
// local, and the miss is reported once per reconcile in missing.
func (r *Reconciler) wantPatches(st types.HostNetwork, vlanOf map[string]int) (want map[string]network.PatchSpec, missing []string) {
	want = map[string]network.PatchSpec{}
	seenMissing := map[string]bool{}
	for _, p := range st.Ports {
		if p.Physnet == "" {
			continue
		}
		up, ok := r.uplinks[p.Physnet]
		if !ok {
			if !seenMissing[p.Physnet] {
				missing = append(missing, p.Physnet)
				seenMissing[p.Physnet] = true
			}
			continue
		}
		name, peer := PatchNames(p.Physnet, p.SegmentType, p.SegmentID)
		spec := network.PatchSpec{Name: name, Peer: peer, Uplink: up.Bridge, Physnet: p.Physnet, LocalVLAN: vlanOf[p.NetworkID]}
		if p.SegmentType == types.SegmentVLAN {
			spec.ProviderVLAN = int(p.SegmentID)
		}
		want[name] = spec
	}
	return want, missing
}

// reconcilePatches removes the patches no longer wanted (only ports the
// agent marked) and creates or fixes the wanted ones. It returns how many
// it changed.
func (r *Reconciler) reconcilePatches(ifaces []network.Interface, want map[string]network.PatchSpec) (int, error) {
	u, ok := r.Switch.(Uplinker)
	if !ok {
		if len(want) > 0 {
			return 0, fmt.Errorf("the switch cannot make provider patches")
		}
		return 0, nil
	}
	changed := 0
	byName := map[string]network.Interface{}
	for _, i := range ifaces {
		byName[i.Name] = i
		if i.IsCorralPatch() {
			if _, ok := want[i.Name]; !ok {
				if err := u.DeletePatch(i.Name, i.Options["peer"]); err != nil {
					return changed, err
				}
				changed++
			}
		}
	}
	for _, name := range sortedKeys(want) {
		spec := want[name]
		if i, ok := byName[name]; ok && i.Tag == spec.LocalVLAN && i.Options["peer"] == spec.Peer && i.IsCorralPatch() &&
			r.patchOK[name] == spec {
			continue
		}
		if err := u.EnsurePatch(spec); err != nil {
			return changed, err
		}
		if r.patchOK == nil {
			r.patchOK = map[string]network.PatchSpec{}
		}
		r.patchOK[name] = spec
		changed++
	}
	return changed, nil
}
