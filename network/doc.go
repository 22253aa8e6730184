// Package network holds what a host's network should look like, as the
// agent understands it, and the small interfaces its reconciler is written
// against.
//
// The control plane answers each host with a types.HostNetwork: the ports
// bound to it (segment, MAC, addresses, resolved security group rules) and
// the remote VXLAN endpoints. The agent wires them on one integration
// bridge per host:
//
//   - a guest port is found on the bridge by external_ids:iface-id = port ID
//     (libvirt sets it from <virtualport type='openvswitch'><parameters
//     interfaceid='PORT_ID'/>);
//   - every network gets a local VLAN on the bridge: a VLAN network its own
//     VLAN ID, a VXLAN network one allocated by the host and kept in the
//     bridge's external_ids, so that it survives agent restarts;
//   - VXLAN networks get one tunnel port per remote host and VNI, only to
//     hosts that have ports on the network;
//   - flat networks get a local VLAN allocated like VXLAN networks, kept
//     in external_ids by physical network;
//   - provider networks (vlan or flat on a physical network) get one pair
//     of patch ports to the physical network's uplink bridge, whose access
//     tags translate the local VLAN to the provider VLAN (PatchSpec);
//   - OpenFlow rules (package flows) enforce anti-spoofing (own addresses
//     and allowed address pairs) and security groups with connection
//     tracking, and hand everything else to NORMAL.
//
// Sub-packages: flows computes the desired flows (pure), ovs is the Open
// vSwitch driver, agent is the reconcile loop.
package network
