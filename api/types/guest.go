package types

import "time"

// Desired state of a guest that is being deleted. Users never set it: a
// DELETE of a placed VM moves the server to "deleting" and the host's agent
// sees this desired state until it confirms the guest is gone.
const DesiredDeleted = "deleted"

// Server actions (POST /v1/servers/{id}/actions).
const (
	ActionStart  = "start"
	ActionStop   = "stop"
	ActionReboot = "reboot"
)

// ServerAction asks for a lifecycle action on a server.
type ServerAction struct {
	// Action is "start", "stop" or "reboot".
	Action string `json:"action"`
}

// GuestImage is the image a guest boots, as its host's agent fetches it.
type GuestImage struct {
	ID        string `json:"id"`
	SHA256    string `json:"sha256"`
	SizeBytes int64  `json:"size_bytes"`
	Format    string `json:"format"`
}

// GuestNIC is one network interface of a guest. PortID is what the host's
// switch knows the interface by (Open vSwitch external_ids:iface-id).
type GuestNIC struct {
	PortID  string   `json:"port_id"`
	MAC     string   `json:"mac"`
	VLAN    int      `json:"vlan,omitempty"`
	IPs     []string `json:"ips,omitempty"` // CIDR notation
	Gateway string   `json:"gateway,omitempty"`
	// DNSServers and HostRoutes are those of the first address's subnet.
	DNSServers []string    `json:"dns_servers,omitempty"`
	HostRoutes []HostRoute `json:"host_routes,omitempty"`
	// SegmentType is the network's ("vlan" or "vxlan"), so the guest's
	// MTU can account for the overlay.
	SegmentType string `json:"segment_type,omitempty"`
}

// GuestSpec is what a host's agent must make true for one server.
type GuestSpec struct {
	ServerID  string `json:"server_id"`
	Name      string `json:"name"`
	ProjectID string `json:"project_id"`
	// DesiredState is "active", "stopped" or "deleted".
	DesiredState string     `json:"desired_state"`
	VCPUs        int64      `json:"vcpus"`
	RAMMiB       int64      `json:"ram_mib"`
	DiskGiB      int64      `json:"disk_gib"`
	Hugepages    bool       `json:"hugepages"`
	QoS          QoS        `json:"qos"`
	Image        GuestImage `json:"image"`
	NICs         []GuestNIC `json:"nics"`
	// RebootSeq counts reboots asked for; the agent reboots a running
	// guest whose last applied reboot is older.
	RebootSeq int64 `json:"reboot_seq"`
	// ClaimRAMMiB is the RAM placement claimed for the guest on its host,
	// hypervisor overhead included. The agent sums it over the guests
	// running when it measures free memory (Usage.GuestClaimRAMMiB), so the
	// memory failsafe knows which claims that measurement already shows.
	ClaimRAMMiB int64 `json:"claim_ram_mib,omitempty"`
	// Revision is the server's revision this spec was made from; for a
	// spec with desired state "deleted" it is the generation of the delete.
	Revision int64 `json:"revision"`
	// FlavorID and Kind are written into the guest's metadata, so that
	// an unknown guest can be adopted.
	FlavorID string `json:"flavor_id,omitempty"`
	Kind     string `json:"kind,omitempty"`
	// Bootstrap is what the guest learns at first boot (config drive);
	// nil for servers created without keys or user data, which still get
	// their name and network.
	Bootstrap *GuestBootstrap `json:"bootstrap,omitempty"`
}

// HostGuests is a host's whole desired set, the answer of its agent's watch
// (GET /v1/hosts/{id}/guests). Version changes whenever the set does.
//
// A guest's absence from Guests is never an order to remove it: an agent
// removes a guest only when it is named by an explicit deletion, either a
// spec with desired state "deleted" (a server being deleted) or an
// unconfirmed entry of Tombstones. A managed guest that is in neither is
// reported as unknown and left running.
type HostGuests struct {
	HostID  string      `json:"host_id"`
	Version string      `json:"version"`
	Guests  []GuestSpec `json:"guests"`
	// Tombstones are the deletions corrald recorded for guests of this
	// host that have no server record (any more): pending ones for the
	// agent to carry out, and confirmed ones kept for a while.
	Tombstones []GuestTombstone `json:"tombstones"`
}

// GuestTombstone is corrald's record that a guest on a host was deleted on
// purpose: by a server delete that removed the record at once (a server
// not yet built, a forced delete), or by an admin deleting an unknown
// guest. An agent removes the guest it names while it is not confirmed,
// and confirms with a "deleted" status.
type GuestTombstone struct {
	ServerID string `json:"server_id"`
	// Generation orders the deletions of one server ID: the server's
	// revision when it was deleted (1 for an unknown guest's delete).
	Generation int64 `json:"generation"`
	// Reason says who deleted it: "server_deleted", "force_deleted",
	// "unknown_guest_deleted".
	Reason    string    `json:"reason"`
	DeletedAt time.Time `json:"deleted_at"`
	// Confirmed is true once the host's agent reported the guest gone;
	// the agent never acts on a confirmed tombstone.
	Confirmed   bool       `json:"confirmed"`
	ConfirmedAt *time.Time `json:"confirmed_at,omitempty"`
}

// Tombstone reasons.
const (
	TombstoneServerDeleted  = "server_deleted"
	TombstoneForceDeleted   = "force_deleted"
	TombstoneUnknownDeleted = "unknown_guest_deleted"
)

// UnknownGuest is a managed guest (a domain carrying Corral's metadata for
// this host) that corrald has no server for, as its agent reports it. The
// agent leaves it untouched. An admin adopts it (a server record rebuilt
// from these fields, its claim taken on the host) or deletes it.
type UnknownGuest struct {
	ServerID  string `json:"server_id"`
	Name      string `json:"name"`
	ProjectID string `json:"project_id,omitempty"`
	FlavorID  string `json:"flavor_id,omitempty"`
	ImageID   string `json:"image_id,omitempty"`
	// Kind is the server kind the guest was created as ("vm").
	Kind      string `json:"kind,omitempty"`
	VCPUs     int64  `json:"vcpus"`
	RAMMiB    int64  `json:"ram_mib"`
	DiskGiB   int64  `json:"disk_gib"`
	Hugepages bool   `json:"hugepages"`
	// Domain is the libvirt domain and State its libvirt state
	// ("running", "shut off"...); DomainID is set while it runs.
	Domain     string `json:"domain"`
	DomainUUID string `json:"domain_uuid,omitempty"`
	State      string `json:"state"`
	DomainID   int    `json:"domain_id,omitempty"`
	// HostID is the host that reported it; FirstSeen and LastSeen are set
	// by corrald.
	HostID    string    `json:"host_id,omitempty"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Tombstone is set when corrald has a deletion recorded for this
	// server on this host (a deleted server whose guest came back, or a
	// delete the agent has not carried out yet).
	Tombstone *GuestTombstone `json:"tombstone,omitempty"`
}

// GuestAdopt is the optional body of an adoption (POST
// /v1/hosts/{id}/unknown-guests/{server_id}/adopt): references that
// replace the ones in the guest's metadata when those no longer exist.
type GuestAdopt struct {
	Project string `json:"project,omitempty"`
	Flavor  string `json:"flavor,omitempty"`
	Image   string `json:"image,omitempty"`
	Name    string `json:"name,omitempty"`
}

// Guest states an agent reports.
const (
	GuestBuilding = "building"
	GuestActive   = "active"
	GuestStopped  = "stopped"
	GuestError    = "error"
	GuestDeleted  = "deleted" // the guest and all it left on the host are gone
)

// GuestStatus is an agent's account of one guest.
type GuestStatus struct {
	ServerID string `json:"server_id"`
	// State is one of the Guest* states.
	State    string        `json:"state"`
	Fault    string        `json:"fault,omitempty"`
	Observed GuestObserved `json:"observed"`
}

// GuestReport carries an agent's statuses (POST /v1/hosts/{id}/guests/status).
type GuestReport struct {
	Guests []GuestStatus `json:"guests"`
	// Unknown, when present (even empty), is the host's whole set of
	// unknown guests, replacing the one corrald holds; absent leaves it.
	Unknown *[]UnknownGuest `json:"unknown,omitempty"`
}

// GuestObserved is what a host's agent sees of a guest, shown on the
// server as "observed".
type GuestObserved struct {
	Domain string `json:"domain,omitempty"`
	// DomainID is libvirt's running domain ID; it changes only when the
	// guest's process is restarted.
	DomainID   int    `json:"domain_id,omitempty"`
	DomainUUID string `json:"domain_uuid,omitempty"`
	// DomainType is "kvm" or "qemu" (TCG emulation).
	DomainType string `json:"domain_type,omitempty"`
	// Vhost says whether the NICs use the vhost-net kernel backend.
	Vhost     bool       `json:"vhost"`
	Hugepages bool       `json:"hugepages"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	// ConsoleLog is the host path of the serial console's log.
	ConsoleLog string       `json:"console_log,omitempty"`
	Taps       []string     `json:"taps,omitempty"`
	QoS        []AppliedQoS `json:"qos,omitempty"`
	Counters   GuestCounter `json:"counters"`
	// RebootSeq is the last reboot request the agent carried out.
	RebootSeq int64     `json:"reboot_seq"`
	UpdatedAt time.Time `json:"updated_at"`
}

// AppliedQoS is one limit as the agent applied and read it back.
type AppliedQoS struct {
	// Limit is "net_in_kbps", "net_out_kbps", "disk_iops" or "disk_bytes_sec".
	Limit string `json:"limit"`
	Value int64  `json:"value"`
	// Mechanism names what enforces it, e.g. "tc-tbf vnet3",
	// "ovs-meter 17", "libvirt-iotune vda".
	Mechanism string `json:"mechanism"`
}

// GuestCounter holds a guest's cumulative counters, from libvirt.
type GuestCounter struct {
	CPUTimeNs uint64 `json:"cpu_time_ns"`
	// MemoryKiB is the guest's memory as libvirt sizes it (its flavor's).
	MemoryKiB uint64 `json:"memory_kib"`
	// MemoryUsedKiB is the memory the guest uses now: what the guest's
	// balloon driver reports in use, else the resident size of its qemu
	// process; 0 when unknown. Right-sizing reads it.
	MemoryUsedKiB uint64 `json:"memory_used_kib,omitempty"`
	DiskRdBytes   int64  `json:"disk_rd_bytes"`
	DiskWrBytes   int64  `json:"disk_wr_bytes"`
	DiskWrReqs    int64  `json:"disk_wr_reqs"`
	NetRxBytes    int64  `json:"net_rx_bytes"`
	NetTxBytes    int64  `json:"net_tx_bytes"`
}
