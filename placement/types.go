package placement

import (
	"errors"
	"time"
)

// Kind is the kind of machine a request wants, and the kind of a Host.
type Kind string

const (
	// KindVM is a compute host that runs virtual machines, or a request for
	// a virtual machine. An empty Kind means KindVM.
	KindVM Kind = "vm"
	// KindBareMetal is a bare-metal node, or a request for a whole node. A
	// node hosts exactly one server.
	KindBareMetal Kind = "baremetal"
)

// HostState is the operational state of a host as recorded by the store.
type HostState string

const (
	// StateUp is a host that accepts new guests. An empty state means StateUp.
	StateUp HostState = "up"
	// StateMaintenance is a host drained for maintenance; it takes no new guests.
	StateMaintenance HostState = "maintenance"
	// StateDown is a host known to be down. Any state other than up or
	// maintenance is treated as down.
	StateDown HostState = "down"
)

// Weigher names the order in which feasible hosts are preferred.
type Weigher string

const (
	// WeighPack prefers the most used hosts, so that fewer hosts are powered.
	WeighPack Weigher = "pack"
	// WeighSpread prefers the least used hosts, so that load is spread.
	WeighSpread Weigher = "spread"
	// WeighBestFit is reported for bare-metal decisions, which always prefer
	// the smallest matching node. It cannot be requested.
	WeighBestFit Weigher = "best_fit"
)

// DefaultHugepageSizeKiB is the hugepage size assumed when a host does not
// state one: 2 MiB pages.
const DefaultHugepageSizeKiB = 2048

// DefaultFailsafeMarginMiB is the measured free memory a compute host must
// keep after a placement when Config.FailsafeMarginMiB is zero: 2 GiB.
const DefaultFailsafeMarginMiB = 2048

// DefaultHeartbeatMaxAge is the age after which a host's heartbeat is stale
// when Config.HeartbeatMaxAge is zero.
const DefaultHeartbeatMaxAge = 60 * time.Second

// DefaultSampleSize is the number of sample host IDs kept per reason when
// Config.SampleSize is zero.
const DefaultSampleSize = 3

// maxSampleSize bounds Config.SampleSize so that counting stays allocation free.
const maxSampleSize = 8

// DefaultOverhead is the hypervisor overhead used when neither the host nor
// the Config sets one: 256 MiB per guest plus 30 MiB per GiB of guest RAM
// (about 3 %), so an 8 GiB guest is charged 8 GiB + 496 MiB. That matches the
// 8.3–8.9 GB that QEMU was measured to use for an 8 GB guest.
var DefaultOverhead = Overhead{FixedMiB: 256, PerGiBMiB: 30}

// Overhead is the memory the hypervisor (QEMU, page tables, device buffers)
// uses on top of a guest's RAM. It is charged as normal host memory, also for
// hugepage-backed guests whose RAM comes from the hugepage pool.
type Overhead struct {
	// FixedMiB is charged once per guest.
	FixedMiB int64 `json:"fixed_mib"`
	// PerGiBMiB is charged per GiB of guest RAM, rounded up to a whole MiB.
	PerGiBMiB int64 `json:"per_gib_mib"`
}

// For returns the overhead in MiB for a guest with guestMiB of RAM.
func (o Overhead) For(guestMiB int64) int64 {
	return o.FixedMiB + (guestMiB*o.PerGiBMiB+1023)/1024
}

// Resources is an amount of host resources: what a claim takes, what a host
// has in use, or what it reserves for itself.
type Resources struct {
	// VCPUs is a number of virtual CPUs (or physical threads for reservations).
	VCPUs int64 `json:"vcpus"`
	// MemoryMiB is normal (not hugepage) memory in MiB. For a claim it is the
	// guest's RAM plus its hypervisor overhead, or only the overhead for a
	// hugepage-backed guest.
	MemoryMiB int64 `json:"memory_mib"`
	// DiskGiB is local disk in GiB.
	DiskGiB int64 `json:"disk_gib"`
	// Hugepages is a number of hugepages of the host's page size.
	Hugepages int64 `json:"hugepages"`
	// Guests is a number of guests (servers).
	Guests int64 `json:"guests"`
}

// Add returns r plus o.
func (r Resources) Add(o Resources) Resources {
	return Resources{
		VCPUs:     r.VCPUs + o.VCPUs,
		MemoryMiB: r.MemoryMiB + o.MemoryMiB,
		DiskGiB:   r.DiskGiB + o.DiskGiB,
		Hugepages: r.Hugepages + o.Hugepages,
		Guests:    r.Guests + o.Guests,
	}
}

// Heartbeat is what the host agent last measured.
type Heartbeat struct {
	// At is when the agent measured. A zero time means no heartbeat yet.
	At time.Time `json:"at"`
	// FreeMemoryMiB is the memory the kernel reported as available, in MiB,
	// minus whatever was claimed on the host since (see ApplyClaim).
	FreeMemoryMiB int64 `json:"free_memory_mib"`
}

// Host is one compute host or bare-metal node as seen in a snapshot: its
// place in the hierarchy, its capacity, its allocations and its last
// heartbeat.
type Host struct {
	// ID identifies the host. IDs are unique within a snapshot, and ties
	// between equally good hosts are broken by the smallest ID.
	ID string
	// Region is the datacenter.
	Region string
	// Zone is the rack.
	Zone string
	// Aggregates are the hardware types the host belongs to.
	Aggregates []string
	// Traits are capabilities such as "nvme", "sriov" or "gpu".
	Traits []string
	// Kind is KindVM for a compute host and KindBareMetal for a node.
	Kind Kind
	// State is up, maintenance or down.
	State HostState

	// VCPUs is the number of physical CPU threads (for a node: its CPUs).
	VCPUs int64
	// MemoryMiB is the physical memory, including the hugepage pool.
	MemoryMiB int64
	// DiskGiB is the local disk.
	DiskGiB int64
	// HugepageSizeKiB is the size of the hugepages in the pool; zero means
	// DefaultHugepageSizeKiB.
	HugepageSizeKiB int64
	// HugepagesTotal is the number of pages in the pool. The pool is carved
	// out of MemoryMiB and is not available as normal memory.
	HugepagesTotal int64
	// Reserved is kept for the host itself (VCPUs, MemoryMiB, DiskGiB) and
	// never allocated to guests.
	Reserved Resources
	// Overhead is the per-guest hypervisor overhead; nil means Config.Overhead.
	Overhead *Overhead

	// Used is the sum of the claims on the host, overhead included.
	Used Resources
	// Generation is bumped by every claim; the store compares and swaps it.
	Generation int64
	// Heartbeat is the agent's last measurement. Nodes have no agent and
	// ignore it.
	Heartbeat Heartbeat
}

// Flavor is the size of one server or group member.
type Flavor struct {
	// VCPUs is the number of virtual CPUs (for a node: the minimum CPU count).
	VCPUs int64 `json:"vcpus"`
	// MemoryMiB is the guest RAM (for a node: the minimum RAM).
	MemoryMiB int64 `json:"memory_mib"`
	// DiskGiB is the local disk (for a node: the minimum disk).
	DiskGiB int64 `json:"disk_gib"`
	// Hugepages backs the guest RAM with the host's hugepages. Hugepage memory
	// is never overcommitted.
	Hugepages bool `json:"hugepages,omitempty"`
	// HugepageSizeKiB, when set, requires hosts with that page size.
	HugepageSizeKiB int64 `json:"hugepage_size_kib,omitempty"`
	// DedicatedCPU forbids CPU overcommit: the host's CPU ratio is taken as
	// 1.0 for this guest.
	DedicatedCPU bool `json:"dedicated_cpu,omitempty"`
}

// Constraints are the parts of a request that select hosts, shared by
// single and group requests. Empty fields do not constrain.
type Constraints struct {
	// Kind is the kind of machine wanted; empty means KindVM.
	Kind Kind
	// Region is the required region.
	Region string
	// Zones is the set of allowed zones.
	Zones []string
	// Aggregates must all contain the host.
	Aggregates []string
	// Traits must all be present on the host.
	Traits []string
	// Weigher orders feasible hosts. Empty means the default weigher of the
	// first required aggregate that has one, then Config.DefaultWeigher, then
	// WeighSpread.
	Weigher Weigher
}

// AffinityPolicy is a server-group policy.
type AffinityPolicy string

const (
	// SameHost puts every member on the host of the existing members.
	SameHost AffinityPolicy = "same_host"
	// DifferentHost puts every member on a host without another member.
	DifferentHost AffinityPolicy = "different_host"
	// DifferentRack puts every member in a zone without another member.
	DifferentRack AffinityPolicy = "different_rack"
)

// Affinity is a server group's policy together with its existing members.
type Affinity struct {
	// Policy is the group's policy.
	Policy AffinityPolicy
	// Members are the group's existing members; their HostID and Zone are used.
	Members []Member
}

// Member is an existing member of a group or server group.
type Member struct {
	// ID identifies the member (for example the server ID).
	ID string `json:"id"`
	// HostID is the host the member runs on.
	HostID string `json:"host_id"`
	// Region is the member's region.
	Region string `json:"region"`
	// Zone is the member's zone (a broker's rack).
	Zone string `json:"zone"`
}

// Request asks for one server.
type Request struct {
	Constraints
	// Flavor is the size of the server.
	Flavor Flavor
	// Affinity is the server group policy, if any.
	Affinity *Affinity
	// Now is the current time, used to judge heartbeats. It is required for
	// KindVM requests; the package never reads the clock.
	Now time.Time
}

// Claim is what the store must atomically take on one host: compare the
// host's generation with Generation, and add Resources to its allocations.
type Claim struct {
	// HostID is the chosen host.
	HostID string `json:"host_id"`
	// Region is the host's region.
	Region string `json:"region"`
	// Zone is the host's zone; for group members it is the member's zone.
	Zone string `json:"zone"`
	// Generation is the host generation the decision was made on.
	Generation int64 `json:"generation"`
	// Resources are what to add to the host's allocations.
	Resources Resources `json:"resources"`
	// Replaces is the ID of the member this claim replaces, if any.
	Replaces string `json:"replaces,omitempty"`
}

// Decision is the outcome of a placement. On success Claims lists one claim
// per server or group member, in member order; on failure it is empty and
// Explanation says why. A decision is never partial.
type Decision struct {
	// Claims are the claims to make, all or nothing.
	Claims []Claim `json:"claims"`
	// Region is the region chosen (for a group, the group's only region).
	Region string `json:"region,omitempty"`
	// Weigher is the weigher that ordered the hosts.
	Weigher Weigher `json:"weigher"`
	// Explanation counts why hosts were filtered out.
	Explanation Explanation `json:"explanation"`
}

// ErrNoValidHost is matched (with errors.Is) by every *FitError.
var ErrNoValidHost = errors.New("no valid host")

// ErrInvalidRequest is wrapped by errors about malformed requests.
var ErrInvalidRequest = errors.New("invalid placement request")

// ErrConflict is returned by Snapshot.Apply when a host's generation is not
// the one a claim was made on: another claim won the race.
var ErrConflict = errors.New("host generation conflict")

// ErrUnknownHost is returned when a claim or member names a host that is not
// in the snapshot.
var ErrUnknownHost = errors.New("unknown host")

// FitError is returned when nothing fits. It carries the explanation, which
// the REST layer puts in the details of a 409.
type FitError struct {
	// Explanation says why nothing fits.
	Explanation Explanation
}

// Error returns the explanation's summary.
func (e *FitError) Error() string { return "no valid host: " + e.Explanation.Summary }

// Is reports whether target is ErrNoValidHost.
func (e *FitError) Is(target error) bool { return target == ErrNoValidHost }
