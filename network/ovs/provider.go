package ovs

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/corral-cloud/corral/network"
)

// PatchSpec is a provider network's pair of patch ports.
type PatchSpec = network.PatchSpec

// BridgeExists reports whether OVS has a bridge of that name.
func (d *Driver) BridgeExists(name string) (bool, error) {
	bridges, err := d.lib.VSwitch.ListBridges()
	if err != nil {
		return false, fmt.Errorf("list bridges: %w", err)
	}
	return slices.Contains(bridges, name), nil
}

// EnsureUplink creates a physical network's uplink bridge if it is
// missing: the integration bridge's datapath type, fail mode standalone
// (it forwards by NORMAL, as a switch does), marked corral-managed; with
// iface, that network interface is added to it. An existing bridge is
// never re-created or reconfigured, and an existing port is left alone.
func (d *Driver) EnsureUplink(bridge, iface string) error {
	ok, err := d.BridgeExists(bridge)
	if err != nil {
		return err
	}
	if !ok {
		dp := d.datapath
		if dp == "" {
			out, err := d.vsctl("get", "Bridge", d.bridge, "datapath_type")
			if err != nil {
				return fmt.Errorf("read datapath type of %s: %w", d.bridge, err)
			}
			dp = strings.Trim(strings.TrimSpace(string(out)), `"`)
		}
		args := []string{"--may-exist", "add-br", bridge, "--", "set", "Bridge", bridge, "fail_mode=standalone",
			"external_ids:corral-managed=true"}
		if dp != "" {
			args = append(args, "datapath_type="+dp)
		}
		if _, err := d.vsctl(args...); err != nil {
			return fmt.Errorf("create uplink bridge %s: %w", bridge, err)
		}
	}
	if iface != "" {
		if _, err := d.vsctl("--may-exist", "add-port", bridge, iface); err != nil {
			return fmt.Errorf("add %s to uplink bridge %s: %w", iface, bridge, err)
		}
	}
	return nil
}

// EnsurePatch creates or updates both ends of a provider patch in one
// OVSDB transaction, so that no half pair exists. Both ends carry
// external_ids:corral-patch=true (and the physnet) so that stale pairs
// can be found and removed.
func (d *Driver) EnsurePatch(p PatchSpec) error {
	mark := []string{"external_ids:corral-patch=true", "external_ids:corral-physnet=" + p.Physnet}
	var args []string
	// A peer left on another bridge (the physnet was mapped to another
	// uplink since) would make add-port fail: move it in the same
	// transaction. A peer already in place is not touched, so that a
	// restarted agent never interrupts the patch.
	if out, err := d.vsctl("port-to-br", p.Peer); err == nil {
		if br := strings.TrimSpace(string(out)); br != "" && br != p.Uplink {
			args = append(args, "--if-exists", "del-port", br, p.Peer, "--")
		}
	}
	args = append(args, "--may-exist", "add-port", d.bridge, p.Name, "--", "set", "Interface", p.Name, "type=patch", "options:peer="+p.Peer)
	args = append(args, mark...)
	args = append(args, "--", "set", "Port", p.Name, fmt.Sprintf("tag=%d", p.LocalVLAN),
		"--", "--may-exist", "add-port", p.Uplink, p.Peer, "--", "set", "Interface", p.Peer, "type=patch", "options:peer="+p.Name)
	args = append(args, mark...)
	args = append(args, "--", "set", "Port", p.Peer, fmt.Sprintf("tag=%d", p.ProviderVLAN))
	if _, err := d.vsctl(args...); err != nil {
		return fmt.Errorf("ensure patch %s to %s (%s, local VLAN %d, VLAN %d): %w", p.Name, p.Uplink, p.Physnet, p.LocalVLAN, p.ProviderVLAN, err)
	}
	return nil
}

// DeletePatch removes both ends of a provider patch in one transaction;
// an end already gone is not an error.
func (d *Driver) DeletePatch(name, peer string) error {
	args := []string{"--if-exists", "del-port", d.bridge, name}
	if peer != "" {
		args = append(args, "--", "--if-exists", "del-port", peer)
	}
	if _, err := d.vsctl(args...); err != nil {
		return fmt.Errorf("delete patch %s/%s: %w", name, peer, err)
	}
	return nil
}

// IsInterface reports whether name is a network interface of the agent's
// network namespace (and not an OVS bridge's own port): --physnet
// NAME=eth1 names an interface, NAME=br-ex a bridge.
func IsInterface(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}
