package types

import "time"

// Server states. A server is created "pending"; placement moves it on.
const (
	ServerPending   = "pending"
	ServerScheduled = "scheduled"
	ServerBuilding  = "building"
	ServerActive    = "active"
	ServerStopped   = "stopped"
	ServerDeleting  = "deleting"
	ServerError     = "error"
)

// Desired states a user may ask for.
const (
	DesiredActive  = "active"
	DesiredStopped = "stopped"
)

// Address is an IP address of a server.
type Address struct {
	Network string `json:"network,omitempty"`
	IP      string `json:"ip"`
	MAC     string `json:"mac,omitempty"`
}

// Server is a VM or a bare-metal machine: one resource for both kinds.
type Server struct {
	Meta
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	ProjectID string `json:"project_id"`
	FlavorID  string `json:"flavor_id"`
	ImageID   string `json:"image_id"`
	// RegionID, ZoneID and AggregateID are what the request asked for,
	// and once placed, where the server is.
	RegionID    string `json:"region_id,omitempty"`
	ZoneID      string `json:"zone_id,omitempty"`
	AggregateID string `json:"aggregate_id,omitempty"`
	// DesiredState is what the user wants: "active" or "stopped".
	DesiredState string `json:"desired_state"`
	// State is what corrald observes.
	State string `json:"state"`
	// Fault says why State is "error".
	Fault     string    `json:"fault,omitempty"`
	HostID    string    `json:"host_id,omitempty"`
	NodeID    string    `json:"node_id,omitempty"`
	Addresses []Address `json:"addresses"`
	// GroupID is the worker group the server belongs to, if any.
	GroupID string `json:"group_id,omitempty"`
	// LaunchedAt is when the server first became active.
	LaunchedAt *time.Time `json:"launched_at,omitempty"`
	// RebootSeq counts the reboots asked for.
	RebootSeq int64 `json:"reboot_seq"`
	// Observed is what the host's agent last reported of the guest.
	Observed *GuestObserved `json:"observed,omitempty"`
	// KeyNames are the keypairs the server was created with; their keys
	// were copied into the server then.
	KeyNames []string `json:"key_names,omitempty"`
	// UserDataBytes is the size of the server's user data, 0 for none.
	UserDataBytes int `json:"user_data_bytes,omitempty"`
}

// ServerCreate creates a server. Project, Flavor, Image, Region, Zone and
// Aggregate are IDs or names. A member's server always goes to the member's
// project.
type ServerCreate struct {
	Name         string `json:"name"`
	Kind         string `json:"kind"`
	Project      string `json:"project,omitempty"`
	Flavor       string `json:"flavor"`
	Image        string `json:"image"`
	Region       string `json:"region,omitempty"`
	Zone         string `json:"zone,omitempty"`
	Aggregate    string `json:"aggregate,omitempty"`
	DesiredState string `json:"desired_state,omitempty"`
	// Traits the host must have (from its aggregates), e.g. "nvme".
	Traits []string `json:"traits,omitempty"`
	// Weigher overrides the aggregate's placement policy: "pack" or "spread".
	Weigher string `json:"weigher,omitempty"`
	// Networks (IDs or names) get one port each, plugged into the server,
	// with an address from each of the network's subnets and the project's
	// default security group; a bare-metal server's ports are on its
	// node's NICs (docs/baremetal.md).
	Networks []string `json:"networks,omitempty"`
	// KeyName names a keypair of the server's project whose key the
	// guest authorizes; Keypairs names several. VMs and bare metal alike
	// (a node's deploy agent writes them to its config drive).
	KeyName  string   `json:"key_name,omitempty"`
	Keypairs []string `json:"keypairs,omitempty"`
	// UserData is handed to the guest as cloud-init user data, base64
	// encoded (as Nova takes it); at most MaxUserDataBytes once decoded.
	UserData string `json:"user_data,omitempty"`
}

// ServerUpdate changes the fields that are set.
type ServerUpdate struct {
	Name         *string `json:"name,omitempty"`
	DesiredState *string `json:"desired_state,omitempty"`
}

// DryRun is the answer of POST /v1/placement/dry-run: where a server would
// land, or why it would not, without claiming anything.
type DryRun struct {
	Fits     bool   `json:"fits"`
	HostID   string `json:"host_id,omitempty"`
	ZoneID   string `json:"zone_id,omitempty"`
	RegionID string `json:"region_id,omitempty"`
	Weigher  string `json:"weigher,omitempty"`
	// Explanation is the engine's account: hosts considered, counts per
	// reason with sample hosts.
	Explanation any `json:"explanation"`
}
