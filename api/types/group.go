package types

// Group roles.
const (
	// RoleBroker is a Kafka-style broker group: members on distinct hosts,
	// spread evenly over racks (max skew 1), each member's rack fixed for
	// life.
	GroupBroker = "broker"
	// GroupStream is a Flink-style stream-worker group sized by slots.
	GroupStream = "stream"
	// GroupWorkers is a plain group of identical servers.
	GroupWorkers = "workers"
)

// StreamSizing sizes stream workers by slots: each worker gets
// slots × CPU and memory per slot, at least one whole core per slot, and
// no CPU overcommit.
type StreamSizing struct {
	SlotsPerWorker   int64   `json:"slots_per_worker"`
	CPUPerSlot       float64 `json:"cpu_per_slot"`
	MemoryMiBPerSlot int64   `json:"memory_mib_per_slot"`
	// DiskGiB is each worker's local disk; 0 means 10 GiB.
	DiskGiB int64 `json:"disk_gib,omitempty"`
}

// GroupSpec is what a group asks for. It is kept with the group so scaling
// and replacement follow the same rules.
type GroupSpec struct {
	Members int    `json:"members"`
	Flavor  string `json:"flavor,omitempty"`
	Image   string `json:"image"`
	// Zones and Aggregate restrict where members go (IDs).
	Zones     []string `json:"zones,omitempty"`
	Aggregate string   `json:"aggregate,omitempty"`
	Traits    []string `json:"traits,omitempty"`
	// SpreadZones spreads members evenly over racks (implied for brokers).
	SpreadZones bool `json:"spread_zones,omitempty"`
	// MinZones is the least number of racks the members must span.
	MinZones int `json:"min_zones,omitempty"`
	// ReplicationFactor is the largest replication factor of the topics
	// a broker group holds; the group is refused if fewer racks are usable.
	ReplicationFactor int `json:"replication_factor,omitempty"`
	// DistinctHosts puts at most one member on a host (implied for
	// brokers).
	DistinctHosts bool          `json:"distinct_hosts,omitempty"`
	Weigher       string        `json:"weigher,omitempty"`
	Stream        *StreamSizing `json:"stream,omitempty"`
}

// GroupCreate places a whole group at once, all or nothing. Project,
// Region, Flavor, Image, Zones and Aggregate are IDs or names.
type GroupCreate struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Project string `json:"project,omitempty"`
	Region  string `json:"region,omitempty"`
	GroupSpec
}

// GroupMember is one member: its server and where it runs. ZoneID is what
// a broker's broker.rack should be set to.
type GroupMember struct {
	ServerID string `json:"server_id"`
	Name     string `json:"name"`
	HostID   string `json:"host_id"`
	ZoneID   string `json:"zone_id"`
	State    string `json:"state"`
}

// Group is a worker group and its members.
type Group struct {
	Meta
	Name      string        `json:"name"`
	ProjectID string        `json:"project_id"`
	Role      string        `json:"role"`
	RegionID  string        `json:"region_id"`
	Spec      GroupSpec     `json:"spec"`
	Members   []GroupMember `json:"members"`
}

// GroupScale changes the number of members: new members keep the spread,
// removed ones come from the most crowded rack first.
type GroupScale struct {
	Members int `json:"members"`
}
