package network

// Interface is an interface on the integration bridge.
type Interface struct {
	Name string
	// OFPort is the OpenFlow port number; -1 or 0 while OVS cannot use it.
	OFPort int
	// Type is "" for system devices (taps, veths), "vxlan", "internal"…
	Type        string
	ExternalIDs map[string]string
	Options     map[string]string
	// Tag is the port's access VLAN, 0 for none.
	Tag int
}

// IfaceID is the Corral port ID libvirt (or a test) put on the interface.
func (i Interface) IfaceID() string { return i.ExternalIDs["iface-id"] }

// IsCorralTunnel reports whether the interface is a tunnel the agent made.
func (i Interface) IsCorralTunnel() bool { return i.ExternalIDs["corral-tunnel"] == "true" }

// TunnelSpec is a VXLAN port to a remote host for one VNI.
type TunnelSpec struct {
	Name     string
	RemoteIP string
	LocalIP  string // optional: the datapath picks by route otherwise
	VNI      int64
	VLAN     int // the local VLAN of the VNI's network
}

// IsCorralPatch reports whether the interface is a provider patch port the
// agent made.
func (i Interface) IsCorralPatch() bool { return i.ExternalIDs["corral-patch"] == "true" }

// PatchSpec is a pair of patch ports joining the integration bridge to a
// physical network's uplink bridge for one provider network: Name on the
// integration bridge, an access port of the network's local VLAN; Peer on
// the uplink, an access port of the network's VLAN ID (ProviderVLAN), or
// of VLAN 0 (untagged) for a flat network. Each end's access tag does the
// VLAN translation: NORMAL strips the local tag into the patch and the
// uplink adds the provider's.
type PatchSpec struct {
	Name, Peer   string
	Uplink       string // the uplink bridge
	Physnet      string
	LocalVLAN    int
	ProviderVLAN int // 0 for flat
}
