package types

import "time"

// Provisioning states of a bare-metal node. A node is enrolled in
// "enroll"; the conductor verifies its BMC credentials ("verifying") and
// makes it "manageable". Providing it inspects its hardware ("inspecting")
// when none is known, and makes it "available". A baremetal server claims
// an available node ("deploying" → "active"); deleting the server wipes the
// node ("deleting" → "cleaning") and returns it to "available". "error"
// carries the reason in LastError; "maintenance" is set by an operator.
const (
	NodeEnroll      = "enroll"
	NodeVerifying   = "verifying"
	NodeManageable  = "manageable"
	NodeInspecting  = "inspecting"
	NodeAvailable   = "available"
	NodeDeploying   = "deploying"
	NodeActive      = "active"
	NodeDeleting    = "deleting"
	NodeCleaning    = "cleaning"
	NodeError       = "error"
	NodeMaintenance = "maintenance"
)

// Power states of a node as its BMC reports them. PowerUnknown means the
// BMC has not answered (see Node.BMCFault).
const (
	PowerOn      = "on"
	PowerOff     = "off"
	PowerUnknown = "unknown"
)

// Power operations of PUT /v1/nodes/{id}/power.
const (
	PowerOpOn      = "on"
	PowerOpOff     = "off"
	PowerOpCycle   = "cycle"
	PowerOpSoftOff = "soft_off"
)

// Provisioning targets of POST /v1/nodes/{id}/provision.
const (
	// TargetManage verifies the BMC credentials again (from enroll,
	// error or maintenance) and stops at manageable.
	TargetManage = "manage"
	// TargetProvide makes a manageable node available, inspecting it
	// first when its hardware is not known.
	TargetProvide = "provide"
	// TargetInspect boots the deploy ramdisk to report the hardware, then
	// returns the node to manageable.
	TargetInspect = "inspect"
	// TargetMaintenance takes an idle node out of service.
	TargetMaintenance = "maintenance"
	// TargetClean erases the disks of an idle node without a server
	// (manageable or available), then returns it to that state; with
	// NodeProvision.Quick only their metadata.
	TargetClean = "clean"
)

// Deploy-agent modes, named on the ramdisk's kernel command line.
const (
	AgentInspect = "inspect"
	AgentDeploy  = "deploy"
	AgentClean   = "clean"
)

// NodeBMC is how corrald reaches a node's BMC. The password is never
// returned; it is stored encrypted with corrald's BMC key.
type NodeBMC struct {
	Address  string `json:"address"`
	Port     int    `json:"port"`
	Username string `json:"username"`
}

// NodeBMCCreate sets a node's BMC; Port defaults to 623.
type NodeBMCCreate struct {
	Address  string `json:"address"`
	Port     int    `json:"port,omitempty"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// NodeDisk is one disk of a node.
type NodeDisk struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"size_bytes"`
}

// NodeHardware is a node's inventory: given at enrolment or reported by
// the deploy agent on inspection.
type NodeHardware struct {
	CPUModel string     `json:"cpu_model,omitempty"`
	CPUs     int64      `json:"cpus"`
	RAMMiB   int64      `json:"ram_mib"`
	Disks    []NodeDisk `json:"disks,omitempty"`
}

// DiskGiB is the size of the node's largest disk in whole GiB.
func (h NodeHardware) DiskGiB() int64 {
	var best int64
	for _, d := range h.Disks {
		best = max(best, d.SizeBytes>>30)
	}
	return best
}

// Known reports whether the inventory says anything.
func (h NodeHardware) Known() bool { return h.CPUs > 0 && h.RAMMiB > 0 && len(h.Disks) > 0 }

// Node is a bare-metal machine Corral manages through its BMC.
type Node struct {
	Meta
	Name        string  `json:"name"`
	RegionID    string  `json:"region_id"`
	ZoneID      string  `json:"zone_id"`
	AggregateID string  `json:"aggregate_id,omitempty"`
	BMC         NodeBMC `json:"bmc"`
	// MACs are the node's NIC addresses; the first one boots from the
	// provisioning network.
	MACs []string `json:"macs"`
	// ProvisionIP is the address the node gets by DHCP on the
	// provisioning network (assigned by corrald when not given).
	ProvisionIP string       `json:"provision_ip,omitempty"`
	Hardware    NodeHardware `json:"hardware"`
	State       string       `json:"state"`
	// Target is where the conductor is taking the node, if anywhere
	// beyond its current state ("manageable", "available").
	Target string `json:"target,omitempty"`
	// Step is the conductor's step within State (e.g. "wait_agent").
	Step string `json:"step,omitempty"`
	// LastError says why the node is in error, or why the last attempt
	// (e.g. credential verification) failed.
	LastError string `json:"last_error,omitempty"`
	// PowerState is the last power state read from the BMC.
	PowerState     string     `json:"power_state"`
	PowerCheckedAt *time.Time `json:"power_checked_at,omitempty"`
	// BMCFault is set while the BMC does not answer (timeouts after
	// retries) and cleared when it answers again.
	BMCFault string `json:"bmc_fault,omitempty"`
	// ServerID is the baremetal server deployed on the node.
	ServerID string `json:"server_id,omitempty"`
	// Conductor is the corrald replica driving the node right now.
	Conductor string `json:"conductor,omitempty"`
	// Deadline is when the current step times out into error.
	Deadline *time.Time `json:"deadline,omitempty"`
	// QuickClean makes the cleaning after a server delete wipe disk
	// metadata only; by default the whole disk is erased.
	QuickClean bool `json:"quick_clean,omitempty"`
	// CleanMode is the mode of the cleaning in progress: CleanFull or
	// CleanQuick.
	CleanMode      string    `json:"clean_mode,omitempty"`
	StateChangedAt time.Time `json:"state_changed_at"`
}

// NodeCreate enrols a node. Region, Zone and Aggregate are IDs or names.
// With Provide the conductor goes on from manageable to available.
type NodeCreate struct {
	Name        string        `json:"name"`
	Region      string        `json:"region"`
	Zone        string        `json:"zone"`
	Aggregate   string        `json:"aggregate,omitempty"`
	BMC         NodeBMCCreate `json:"bmc"`
	MACs        []string      `json:"macs"`
	ProvisionIP string        `json:"provision_ip,omitempty"`
	Hardware    *NodeHardware `json:"hardware,omitempty"`
	Provide     bool          `json:"provide,omitempty"`
	// QuickClean: see Node.QuickClean.
	QuickClean bool `json:"quick_clean,omitempty"`
}

// NodeUpdate changes the fields that are set. New BMC credentials are
// verified again: the node goes back to enroll → verifying.
type NodeUpdate struct {
	Name     *string        `json:"name,omitempty"`
	BMC      *NodeBMCCreate `json:"bmc,omitempty"`
	Hardware *NodeHardware  `json:"hardware,omitempty"`
	// QuickClean: see Node.QuickClean.
	QuickClean *bool `json:"quick_clean,omitempty"`
}

// NodeProvision asks the conductor to take a node somewhere: one of the
// Target constants.
type NodeProvision struct {
	Target string `json:"target"`
	// Quick, with target "clean", wipes disk metadata only instead of
	// the whole disk.
	Quick bool `json:"quick,omitempty"`
}

// NodePower is a power operation: one of the PowerOp constants.
type NodePower struct {
	State string `json:"state"`
}

// NodeEvent is one entry of a node's history: a state transition or a
// power change, with who made it and why.
type NodeEvent struct {
	ID     string    `json:"id"`
	NodeID string    `json:"node_id"`
	At     time.Time `json:"at"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason,omitempty"`
	// Actor is "api:<token ID>", "conductor:<replica>", "agent" or
	// "sync:<replica>".
	Actor string `json:"actor"`
}

// AgentReport is what the deploy agent sends corrald: the hardware it
// found and, once its work is done, the result.
type AgentReport struct {
	Mode     string       `json:"mode"`
	Hardware NodeHardware `json:"hardware"`
	MACs     []string     `json:"macs,omitempty"`
	IP       string       `json:"ip,omitempty"`
	// Done is false for the first report (hardware only) and true for
	// the last one.
	Done bool `json:"done"`
	// OK says whether the work succeeded; Error says why not.
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Disk is the disk written or wiped; SHA256 the digest read back from
	// it after writing; Bytes how much was written.
	Disk   string `json:"disk,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Bytes  int64  `json:"bytes,omitempty"`
}

// Cleaning modes.
const (
	// CleanFull erases every disk end to end (discard where the device
	// supports it, then zeroes), and verifies that it reads back zeroes.
	CleanFull = "full"
	// CleanQuick wipes the first and last MiB of every disk: partition
	// tables, RAID and LVM metadata.
	CleanQuick = "quick"
)

// AgentWork is what corrald answers a deploy agent that exchanges its
// boot token (once): a session token for the rest of its work, valid
// from the agent's DHCP address until Expires, and the work itself.
type AgentWork struct {
	Token   string    `json:"token"`
	Mode    string    `json:"mode"`
	Clean   string    `json:"clean,omitempty"`
	Expires time.Time `json:"expires"`
	// ConfigDrive, for a deploy, is what the agent writes to a partition
	// of its own at the end of the disk once the image is written: the
	// deployed OS's bootstrap (hostname, network configuration, SSH keys,
	// user data), read at first boot the way cloud-init reads a
	// ConfigDrive or NoCloud seed.
	ConfigDrive *ConfigDrive `json:"config_drive,omitempty"`
}

// ConfigDrive is a small read-only filesystem (ISO 9660) for a deployed
// node's first boot. Label is "config-2" (OpenStack ConfigDrive layout)
// or "cidata" (NoCloud); Files are its files, by slash-separated path
// ("meta-data", "openstack/latest/meta_data.json").
type ConfigDrive struct {
	Label string            `json:"label"`
	Files []ConfigDriveFile `json:"files"`
}

// ConfigDriveFile is one file of a config drive.
type ConfigDriveFile struct {
	Path string `json:"path"`
	Data []byte `json:"data"`
}
