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

// Segment is the tenant network a node's switch port joins: a Corral
// network's segment type (types.SegmentVLAN or types.SegmentVXLAN) and ID
// (the VLAN ID or the VNI). NetworkID names the Corral network, for
// messages and records.
type Segment struct {
	NetworkID string
	Type      string
	ID        int64
}

var (
	// ErrNoPort means the switch has no port for the node's NIC.
	ErrNoPort = errors.New("no switch port for the node's NIC")
	// ErrSegmentUnsupported means the switch cannot put a port on a
	// network of that segment type (a VXLAN network on a switch that is
	// no VTEP, for instance). Retrying cannot help.
	ErrSegmentUnsupported = errors.New("the switch cannot carry this network's segment")
)

// SwitchPort is what the conductor needs of the fabric: the top-of-rack
// switch port each NIC of a node is cabled to is in exactly one of three
// places.
//
//   - The provisioning network, while the deploy ramdisk runs
//     (inspecting, deploying, cleaning): corrald's DHCP, TFTP and HTTP
//     answer there.
//   - A tenant network, while the node is active and the NIC has a port
//     of its server: the same L2 segment as the VMs' ports of that network.
//   - Parked (an isolated VLAN reaching nothing), otherwise: an active
//     node's NIC without a port, or a node between its tenant and the
//     provisioning network.
//
// A tenant's machine is therefore never on the provisioning network (it
// could reach corrald's provisioning services and see other nodes being
// deployed), and a node being cleaned is never on a tenant network.
//
// Every method is idempotent (setting a port to where it is succeeds, so
// a conductor that resumes after a crash simply repeats it) and moves the
// port off wherever it was before: a port is on one network at a time,
// as an access (untagged) port, so the node's OS needs no VLAN
// configuration. Every method returns ErrNoPort, wrapped, when the NIC's
// switch port cannot be found, and an error when the switch does not
// answer within the context's deadline; the conductor retries those with
// its backoff and then fails the node with the error.
//
// Implementations: baremetal/ovs (an Open vSwitch bridge playing the
// top-of-rack switch, the simulation), baremetal/fake. docs/baremetal.md
// says how a real switch driver (NETCONF, gNMI, a vendor API) plugs in.
type SwitchPort interface {
	// SetProvisioning puts the NIC's port on the provisioning network
	// (on) or parks it (off).
	SetProvisioning(ctx context.Context, nic NodeNIC, on bool) error
	// SetTenant puts the NIC's port on a tenant network's segment. A
	// segment the switch cannot carry returns ErrSegmentUnsupported,
	// wrapped, and leaves the port where it was.
	SetTenant(ctx context.Context, nic NodeNIC, seg Segment) error
}
