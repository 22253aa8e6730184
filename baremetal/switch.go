package baremetal

import (
	"context"
	"errors"
)

// NodeNIC names the NIC of a node that boots from the provisioning
// network: the switch port it is cabled to is found by its MAC (a real
// switch learns it, or an operator records the port at enrolment).
type NodeNIC struct {
	NodeID string
	Name   string
	MAC    string
}

// ErrNoPort means the switch has no port for the node's NIC.
var ErrNoPort = errors.New("no switch port for the node's NIC")

// SwitchPort puts the switch port of a node's provisioning NIC on the
// provisioning network or takes it off, which is what the conductor needs
// of the fabric: a node is on the provisioning network while the deploy
// ramdisk runs (inspecting, deploying, cleaning) and off it once a tenant
// has it (active), so a tenant's machine can neither reach corrald's
// DHCP, TFTP and HTTP nor see other nodes being deployed.
//
// SetProvisioning is idempotent; it returns ErrNoPort when the NIC's
// port cannot be found, and an error when the switch does not answer in
// time. Implementations: baremetal/ovs (an access
// VLAN on an Open vSwitch bridge, the simulation), baremetal/fake. A
// driver for a real top-of-rack switch implements the same method by
// setting the access VLAN of the port it finds for the MAC (from its
// MAC table, LLDP, or an operator-recorded switch and port), over the
// switch's API (NETCONF, gNMI, eAPI…); tenant VLANs come with the fabric
// driver and are not part of this interface.
type SwitchPort interface {
	SetProvisioning(ctx context.Context, nic NodeNIC, on bool) error
}
