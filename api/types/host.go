package types

import "time"

// Host states.
const (
	HostUp          = "up"
	HostDown        = "down"        // no heartbeat within the liveness limit
	HostMaintenance = "maintenance" // set by an operator; nothing new is placed
)

// Inventory is what a host has, as its agent reports it.
type Inventory struct {
	CPUModel  string `json:"cpu_model,omitempty"`
	CPUs      int64  `json:"cpus"`
	NUMANodes int64  `json:"numa_nodes,omitempty"`
	RAMMiB    int64  `json:"ram_mib"`
	DiskGiB   int64  `json:"disk_gib"`
	// Hugepages counts pages by size in KiB, e.g. {"2048": 512}.
	Hugepages map[string]int64 `json:"hugepages,omitempty"`
	NICs      []string         `json:"nics,omitempty"`
}

// Usage is what a host measures, sent with every heartbeat.
type Usage struct {
	MemFreeMiB  int64   `json:"mem_free_mib"`
	Load1       float64 `json:"load1"`
	DiskFreeGiB int64   `json:"disk_free_gib"`
	// HugepagesFree counts, by page size in KiB, the pages a new guest can
	// still get: free pages not reserved by another mapping.
	HugepagesFree map[string]int64 `json:"hugepages_free,omitempty"`
	Guests        int64            `json:"guests"`
	// GuestClaimRAMMiB is the sum of the placement claims (RAM, hypervisor
	// overhead included: GuestSpec.ClaimRAMMiB) of the guests that were
	// running when MemFreeMiB was measured. The memory failsafe counts
	// every claim beyond it as not yet measured. An agent that does not
	// send it (nil) has all claims made before its heartbeat counted as
	// measured.
	GuestClaimRAMMiB *int64 `json:"guest_claim_ram_mib,omitempty"`
}

// Host is a compute host, created by its agent's registration.
type Host struct {
	Meta
	Name         string    `json:"name"`
	RegionID     string    `json:"region_id"`
	ZoneID       string    `json:"zone_id"`
	AggregateIDs []string  `json:"aggregate_ids"`
	State        string    `json:"state"`
	Inventory    Inventory `json:"inventory"`
	// Capabilities are what the agent found the host can do: the Cap
	// constants, such as "vhost_net", "hugepages", "cgroup_v2".
	Capabilities  []string  `json:"capabilities"`
	Usage         Usage     `json:"usage"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	AgentVersion  string    `json:"agent_version,omitempty"`
	// MachineID is the machine identity of its last registration.
	MachineID string `json:"machine_id,omitempty"`
	// Allocated is what placement has claimed on the host, hypervisor
	// overhead included; Generation moves on with every claim.
	Allocated  Allocation `json:"allocated"`
	Generation int64      `json:"generation"`
	// FailsafeFreeMiB is the memory the last heartbeat measured free less
	// what placement claimed on the host since that measurement: what the
	// memory failsafe compares with its margin.
	FailsafeFreeMiB int64 `json:"failsafe_free_mib"`
}

// Allocation is an amount of host resources claimed by servers.
type Allocation struct {
	VCPUs   int64 `json:"vcpus"`
	RAMMiB  int64 `json:"ram_mib"`
	DiskGiB int64 `json:"disk_gib"`
	// Hugepages counts 2 MiB pages.
	Hugepages int64 `json:"hugepages"`
	Guests    int64 `json:"guests"`
}

// HostRegister is sent by an agent when it starts. Registering an existing
// name updates that host and issues a new agent credential. Region, Zone and
// Aggregates are IDs or names.
type HostRegister struct {
	Name         string    `json:"name"`
	Region       string    `json:"region"`
	Zone         string    `json:"zone"`
	Aggregates   []string  `json:"aggregates,omitempty"`
	Inventory    Inventory `json:"inventory"`
	Capabilities []string  `json:"capabilities,omitempty"`
	AgentVersion string    `json:"agent_version,omitempty"`
	// MachineID identifies the machine the agent runs on (a digest of
	// /etc/machine-id and the agent's state directory). A registration
	// whose name matches no host gets back the host registered from the
	// same machine, instead of a new, empty one.
	MachineID string `json:"machine_id,omitempty"`
}

// HeaderAgentToken carries a host's current agent token on a registration,
// proving that the registering agent is the host's own.
const HeaderAgentToken = "X-Corral-Agent-Token"

// HostRegistration is the answer to a registration: the host and the
// host-scoped token the agent uses from then on.
type HostRegistration struct {
	Host  Host   `json:"host"`
	Token string `json:"token"`
}

// Heartbeat is sent by an agent every few seconds.
type Heartbeat struct {
	Usage Usage `json:"usage"`
}

// HostUpdate changes the fields that are set. State may be set to
// "maintenance" or back to "up".
type HostUpdate struct {
	State      *string   `json:"state,omitempty"`
	Aggregates *[]string `json:"aggregates,omitempty"`
}

// Host capabilities an agent reports. "kvm" is not among them: /dev/kvm
// existing proves nothing (on kvm_pvm hosts guests die in KVM's instruction
// emulator), so it will be reported only once the compute driver has booted
// a guest with KVM; until then CapKVMDevice says only that the device node
// is there.
const (
	// CapCgroupV1 means cgroup v1 controllers manage guests (v1 or hybrid).
	CapCgroupV1 = "cgroup_v1"
	// CapCgroupV2 means the unified cgroup2 hierarchy is mounted at
	// /sys/fs/cgroup.
	CapCgroupV2 = "cgroup_v2"
	// CapHugepages means at least one hugepage of some size is configured.
	CapHugepages = "hugepages"
	// CapVhostNet means /dev/vhost-net exists.
	CapVhostNet = "vhost_net"
	// CapKVMDevice means /dev/kvm exists. It does not mean KVM guests run.
	CapKVMDevice = "kvm_device"
	// CapKVM means a guest booted under KVM on this host (a real boot
	// probe), or the operator configured the domain type kvm.
	CapKVM = "kvm"
	// CapTCG means guests run under QEMU's TCG emulation: KVM is absent
	// or broken and the host's configuration allows emulation.
	CapTCG = "tcg"
)
