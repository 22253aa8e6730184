package types

// Networking (issue 5): networks, subnets with static IPAM, ports, security
// groups, and the desired network state of one host that its agent watches.

// Error codes of networking; all are 409 (see Status).
const (
	CodeNetworkInUse       = "network_in_use"        // 409: the network still has ports
	CodeSubnetInUse        = "subnet_in_use"         // 409: addresses of the subnet are allocated to ports
	CodeSecurityGroupInUse = "security_group_in_use" // 409: ports or other groups' rules use the group
	CodeIPPoolExhausted    = "ip_pool_exhausted"     // 409: no free address is left in the subnet's pools
	CodeIPAddressInUse     = "ip_address_in_use"     // 409: the fixed IP asked for is allocated to another port
	CodeMACAddressInUse    = "mac_address_in_use"    // 409: another port of the network has the MAC asked for
	CodeSegmentInUse       = "segment_in_use"        // 409: another network has this VLAN ID or VNI
)

// Segment types of a network.
const (
	SegmentVLAN  = "vlan"  // an 802.1Q VLAN: isolated on the hosts' integration bridges
	SegmentVXLAN = "vxlan" // an overlay: VXLAN tunnels between hosts, keyed by the VNI
	// SegmentFlat is an untagged provider network: the frames of a physical
	// network (Physnet) without a VLAN tag. Only with a physnet.
	SegmentFlat = "flat"
)

// Security group rule directions and protocols.
const (
	DirectionIngress = "ingress" // traffic to the port
	DirectionEgress  = "egress"  // traffic from the port
	ProtocolAny      = "any"
	ProtocolTCP      = "tcp"
	ProtocolUDP      = "udp"
	ProtocolICMP     = "icmp"
)

// DefaultSecurityGroup is the name of the group every project gets on its
// first port: all egress, and ingress from members of the same group.
const DefaultSecurityGroup = "default"

// Network is an isolated layer-2 segment.
type Network struct {
	Meta
	Name string `json:"name"`
	// ProjectID owns the network; empty for a network shared by all
	// projects.
	ProjectID string `json:"project_id,omitempty"`
	// SegmentType is "vlan", "vxlan" or "flat".
	SegmentType string `json:"segment_type"`
	// SegmentID is the VLAN ID (1–4094) or the VNI (1–16777215), 0 for a
	// flat network. Unique per segment type: a VLAN ID names one network
	// whether or not it leaves the hosts on a physical network.
	SegmentID int64 `json:"segment_id"`
	// Physnet makes the network a provider network: its frames leave every
	// host on the uplink the host's agent maps to this physical network
	// name (corral-agent --physnet NAME=BRIDGE), tagged with the VLAN ID
	// ("vlan") or untagged ("flat"). Empty for a network that stays inside
	// the hosts' integration bridges (and VXLAN tunnels). Set at create,
	// by admins, never changed.
	Physnet     string `json:"provider_physnet,omitempty"`
	Description string `json:"description,omitempty"`
}

// NetworkCreate creates a network. Project is a project's ID or name.
type NetworkCreate struct {
	Name        string `json:"name"`
	Project     string `json:"project,omitempty"`
	SegmentType string `json:"segment_type"`
	SegmentID   int64  `json:"segment_id"`
	// Physnet binds a "vlan" or "flat" network to a physical network
	// (required for "flat", refused for "vxlan").
	Physnet     string `json:"provider_physnet,omitempty"`
	Description string `json:"description,omitempty"`
}

// NetworkUpdate changes the fields that are set. The segment never changes:
// every port of the network is wired to it.
type NetworkUpdate struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}

// IPRange is an inclusive range of addresses.
type IPRange struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// Subnet is an IPv4 range of a network whose addresses corrald allocates
// to ports (static IPAM: no DHCP server).
type Subnet struct {
	Meta
	Name      string `json:"name"`
	NetworkID string `json:"network_id"`
	// CIDR is the subnet in canonical form, e.g. "10.77.0.0/24".
	CIDR string `json:"cidr"`
	// GatewayIP is the router's address, inside CIDR; empty for none.
	GatewayIP string `json:"gateway_ip,omitempty"`
	// AllocationPools are the ranges ports get addresses from.
	AllocationPools []IPRange `json:"allocation_pools"`
	DNSServers      []string  `json:"dns_servers"`
	// HostRoutes are static routes handed to guests by DHCP (option 121)
	// and the config drive.
	HostRoutes  []HostRoute `json:"host_routes"`
	Description string      `json:"description,omitempty"`
}

// SubnetCreate creates a subnet. Network is a network's ID or name. Without
// allocation pools the pool is the whole CIDR except the network, broadcast
// and gateway addresses. Without a gateway the first host address is the
// gateway, unless NoGateway is set.
type SubnetCreate struct {
	Name            string      `json:"name"`
	Network         string      `json:"network"`
	CIDR            string      `json:"cidr"`
	GatewayIP       string      `json:"gateway_ip,omitempty"`
	NoGateway       bool        `json:"no_gateway,omitempty"`
	AllocationPools []IPRange   `json:"allocation_pools,omitempty"`
	DNSServers      []string    `json:"dns_servers,omitempty"`
	HostRoutes      []HostRoute `json:"host_routes,omitempty"`
	Description     string      `json:"description,omitempty"`
}

// SubnetUpdate changes the fields that are set.
type SubnetUpdate struct {
	Name        *string   `json:"name,omitempty"`
	DNSServers  *[]string `json:"dns_servers,omitempty"`
	Description *string   `json:"description,omitempty"`
}

// FixedIP is an address of a port.
type FixedIP struct {
	SubnetID  string `json:"subnet_id"`
	IPAddress string `json:"ip_address"`
}

// FixedIPRequest asks for an address: a subnet (ID or name) and optionally
// the address itself; without one corrald picks a free one from the pools.
type FixedIPRequest struct {
	Subnet    string `json:"subnet"`
	IPAddress string `json:"ip_address,omitempty"`
}

// Port is a virtual NIC on a network: a MAC address and fixed IPs, bound to
// a server (DeviceID) on a host (HostID) or unbound. A port keeps its
// addresses when it moves to another server or host.
type Port struct {
	Meta
	Name       string    `json:"name,omitempty"`
	NetworkID  string    `json:"network_id"`
	ProjectID  string    `json:"project_id"`
	MACAddress string    `json:"mac_address"`
	FixedIPs   []FixedIP `json:"fixed_ips"`
	// DeviceID is the server the port is plugged into, or empty.
	DeviceID string `json:"device_id,omitempty"`
	// HostID is the host whose agent wires the port, or empty.
	HostID string `json:"host_id,omitempty"`
	// SecurityGroups are the IDs of the port's groups. A port with none
	// drops everything but its own ARP (anti-spoofing still applies).
	SecurityGroups []string `json:"security_groups"`
	// AllowedAddressPairs are other addresses (and MACs) the port may
	// send from, such as a VIP that moves between two load balancers.
	// Anti-spoofing drops every other source.
	AllowedAddressPairs []AddressPair `json:"allowed_address_pairs"`
	Description         string        `json:"description,omitempty"`
	// AutoDelete is set on a port that a server create made for the
	// server (ServerCreate.Networks): the port and its addresses are
	// deleted when that server's delete completes. Ports created with
	// POST /v1/ports never have it; rebinding a port clears it.
	AutoDelete bool `json:"auto_delete"`
}

// PortCreate creates a port. Network, Project, Server, Host and the
// security groups are IDs or names (servers by ID only). Without FixedIPs
// the port gets one address from each subnet of the network; without
// SecurityGroups it joins the project's default group. Server binds the
// port and, unless Host is given, puts it on the server's host.
type PortCreate struct {
	Name           string           `json:"name,omitempty"`
	Network        string           `json:"network"`
	Project        string           `json:"project,omitempty"`
	MACAddress     string           `json:"mac_address,omitempty"`
	FixedIPs       []FixedIPRequest `json:"fixed_ips,omitempty"`
	Server         string           `json:"device_id,omitempty"`
	Host           string           `json:"host_id,omitempty"`
	SecurityGroups *[]string        `json:"security_groups,omitempty"`
	// AllowedAddressPairs: see Port (at most 10).
	AllowedAddressPairs []AddressPair `json:"allowed_address_pairs,omitempty"`
	Description         string        `json:"description,omitempty"`
}

// AddressPair is an address a port may send from besides its fixed IPs:
// an IPv4 address or CIDR, and optionally the MAC it sends with (the
// port's own MAC when empty).
type AddressPair struct {
	IPAddress  string `json:"ip_address"`
	MACAddress string `json:"mac_address,omitempty"`
}

// PortUpdate changes the fields that are set. Setting device_id or host_id
// to "" unbinds the port; setting them moves it (a move keeps the port's
// addresses; plugged into a bare-metal server, the port takes the MAC of
// the node's NIC it is wired on, and it has no host).
type PortUpdate struct {
	Name           *string   `json:"name,omitempty"`
	Server         *string   `json:"device_id,omitempty"`
	Host           *string   `json:"host_id,omitempty"`
	SecurityGroups *[]string `json:"security_groups,omitempty"`
	// AllowedAddressPairs replaces the port's pairs; [] removes them all.
	AllowedAddressPairs *[]AddressPair `json:"allowed_address_pairs,omitempty"`
	Description         *string        `json:"description,omitempty"`
}

// SecurityGroupRule allows one kind of traffic. Everything not allowed is
// dropped; replies to allowed connections always pass (stateful).
type SecurityGroupRule struct {
	ID string `json:"id"`
	// Direction is "ingress" or "egress".
	Direction string `json:"direction"`
	// Protocol is "tcp", "udp", "icmp" or "any".
	Protocol string `json:"protocol"`
	// PortRangeMin and PortRangeMax bound the destination port (tcp and udp
	// only); 0 and 0 mean every port.
	PortRangeMin int64 `json:"port_range_min,omitempty"`
	PortRangeMax int64 `json:"port_range_max,omitempty"`
	// RemoteCIDR is the peer's range; RemoteGroupID allows the addresses of
	// the group's ports instead. Neither means 0.0.0.0/0.
	RemoteCIDR    string `json:"remote_cidr,omitempty"`
	RemoteGroupID string `json:"remote_group_id,omitempty"`
}

// SecurityGroupRuleCreate adds a rule. RemoteGroup is a group's ID or name
// (within the rule's project).
type SecurityGroupRuleCreate struct {
	Direction    string `json:"direction"`
	Protocol     string `json:"protocol,omitempty"`
	PortRangeMin int64  `json:"port_range_min,omitempty"`
	PortRangeMax int64  `json:"port_range_max,omitempty"`
	RemoteCIDR   string `json:"remote_cidr,omitempty"`
	RemoteGroup  string `json:"remote_group_id,omitempty"`
}

// SecurityGroup is a named set of rules of one project.
type SecurityGroup struct {
	Meta
	Name        string              `json:"name"`
	ProjectID   string              `json:"project_id"`
	Rules       []SecurityGroupRule `json:"rules"`
	Description string              `json:"description,omitempty"`
}

// SecurityGroupCreate creates a group, optionally with rules.
type SecurityGroupCreate struct {
	Name        string                    `json:"name"`
	Project     string                    `json:"project,omitempty"`
	Rules       []SecurityGroupRuleCreate `json:"rules,omitempty"`
	Description string                    `json:"description,omitempty"`
}

// SecurityGroupUpdate changes the fields that are set.
type SecurityGroupUpdate struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}

// HostNetwork is the desired network state of one host: what its agent
// wires on the integration bridge. GET /v1/hosts/{id}/network?version=V
// answers at once when the state's version differs from V, else waits for
// a change (up to wait=).
type HostNetwork struct {
	HostID string `json:"host_id"`
	// Version identifies this state: equal versions mean equal states.
	Version string      `json:"version"`
	Ports   []BoundPort `json:"ports"`
	// Tunnels are the other hosts that have ports on the VXLAN networks
	// of this host's ports.
	Tunnels []Tunnel `json:"tunnels"`
}

// BoundPort is a port bound to the host, with everything needed to wire
// it: its segment, addresses and resolved security group rules.
type BoundPort struct {
	ID          string `json:"id"`
	NetworkID   string `json:"network_id"`
	SegmentType string `json:"segment_type"`
	SegmentID   int64  `json:"segment_id"`
	// Physnet is the network's physical network, for a provider network.
	Physnet    string `json:"provider_physnet,omitempty"`
	MACAddress string `json:"mac_address"`
	// IPs are the port's addresses with their prefix, e.g. "10.0.0.5/24".
	IPs []string `json:"ips"`
	// AllowedAddressPairs are the other sources the port may send from, as
	// canonical CIDRs (an address is a /32) with the MAC they use (never
	// empty: the port's own MAC when the pair names none).
	AllowedAddressPairs []AddressPair `json:"allowed_address_pairs,omitempty"`
	// Gateway is the gateway of the first subnet, or empty.
	Gateway string `json:"gateway,omitempty"`
	// DNSServers and HostRoutes are the first subnet's, for the host's
	// DHCP server.
	DNSServers []string    `json:"dns_servers,omitempty"`
	HostRoutes []HostRoute `json:"host_routes,omitempty"`
	// Rules are the rules of all the port's groups, remote groups expanded
	// to their ports' addresses.
	Rules []ResolvedRule `json:"rules"`
}

// ResolvedRule is a rule with its peers as CIDRs.
type ResolvedRule struct {
	Direction    string `json:"direction"`
	Protocol     string `json:"protocol"`
	PortRangeMin int64  `json:"port_range_min,omitempty"`
	PortRangeMax int64  `json:"port_range_max,omitempty"`
	// RemoteCIDRs are the peers; empty means none (a remote group without
	// ports allows nothing).
	RemoteCIDRs []string `json:"remote_cidrs"`
}

// Tunnel is a remote VXLAN endpoint and the VNIs it shares with this host.
type Tunnel struct {
	HostID string  `json:"host_id"`
	IP     string  `json:"ip"`
	VNIs   []int64 `json:"vnis"`
}

// TunnelEndpoint is what an agent reports about its host: the address its
// VXLAN tunnels use.
type TunnelEndpoint struct {
	IP string `json:"ip"`
}
