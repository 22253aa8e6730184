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
