package ovs

import (
	"fmt"
	"sort"
)

// EnsureAccessPort adds a system interface (a veth end) to the bridge as
// an access port of vlan, with the given external_ids, in one transaction.
// It is idempotent: an existing port is re-tagged and re-marked.
func (d *Driver) EnsureAccessPort(name string, vlan int, externalIDs map[string]string) error {
	args := []string{"--may-exist", "add-port", d.bridge, name, "--", "set", "Port", name, fmt.Sprintf("tag=%d", vlan)}
	keys := make([]string, 0, len(externalIDs))
	for k := range externalIDs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 0 {
		args = append(args, "--", "set", "Interface", name)
		for _, k := range keys {
			args = append(args, fmt.Sprintf("external_ids:%s=%s", k, externalIDs[k]))
		}
	}
	if _, err := d.vsctl(args...); err != nil {
		return fmt.Errorf("ensure access port %s on VLAN %d: %w", name, vlan, err)
	}
	return nil
}
