package types

// Region is a datacenter.
type Region struct {
	Meta
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// RegionCreate creates a region.
type RegionCreate struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// RegionUpdate changes the fields that are set.
type RegionUpdate struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}

// Zone is an availability zone: a rack in a region.
type Zone struct {
	Meta
	Name        string `json:"name"`
	RegionID    string `json:"region_id"`
	Description string `json:"description,omitempty"`
}

// ZoneCreate creates a zone. Region is a region's ID or name.
type ZoneCreate struct {
	Name        string `json:"name"`
	Region      string `json:"region"`
	Description string `json:"description,omitempty"`
}

// ZoneUpdate changes the fields that are set. A zone never moves to another
// region: hosts and brokers in it keep their rack for life.
type ZoneUpdate struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}

// Aggregate is a hardware type: a set of hosts with the same traits and
// overcommit policy.
type Aggregate struct {
	Meta
	Name   string   `json:"name"`
	Traits []string `json:"traits"`
	// CPUAllocationRatio is vCPUs allocatable per physical CPU (1 = none).
	CPUAllocationRatio float64 `json:"cpu_allocation_ratio"`
	// RAMAllocationRatio is guest RAM allocatable per MiB of host RAM.
	RAMAllocationRatio float64 `json:"ram_allocation_ratio"`
	// ReservedMemoryMiB is kept back on every host for the host itself.
	ReservedMemoryMiB int64 `json:"reserved_memory_mib"`
	// ReservedCPUs is kept back on every host for the host itself.
	ReservedCPUs int64 `json:"reserved_cpus"`
	// Weigher is the default placement policy: "pack" or "spread".
	Weigher     string `json:"weigher"`
	Description string `json:"description,omitempty"`
}

// AggregateCreate creates an aggregate. Ratios default to 1 (no overcommit).
type AggregateCreate struct {
	Name               string   `json:"name"`
	Traits             []string `json:"traits,omitempty"`
	CPUAllocationRatio *float64 `json:"cpu_allocation_ratio,omitempty"`
	RAMAllocationRatio *float64 `json:"ram_allocation_ratio,omitempty"`
	ReservedMemoryMiB  int64    `json:"reserved_memory_mib,omitempty"`
	ReservedCPUs       int64    `json:"reserved_cpus,omitempty"`
	Weigher            string   `json:"weigher,omitempty"`
	Description        string   `json:"description,omitempty"`
}

// AggregateUpdate changes the fields that are set.
type AggregateUpdate struct {
	Name               *string   `json:"name,omitempty"`
	Traits             *[]string `json:"traits,omitempty"`
	CPUAllocationRatio *float64  `json:"cpu_allocation_ratio,omitempty"`
	RAMAllocationRatio *float64  `json:"ram_allocation_ratio,omitempty"`
	ReservedMemoryMiB  *int64    `json:"reserved_memory_mib,omitempty"`
	ReservedCPUs       *int64    `json:"reserved_cpus,omitempty"`
	Weigher            *string   `json:"weigher,omitempty"`
	Description        *string   `json:"description,omitempty"`
}

// QoS limits a server's network and disk. Zero means unlimited.
type QoS struct {
	NetInKbps    int64 `json:"net_in_kbps,omitempty"`
	NetOutKbps   int64 `json:"net_out_kbps,omitempty"`
	DiskIOPS     int64 `json:"disk_iops,omitempty"`
	DiskBytesSec int64 `json:"disk_bytes_sec,omitempty"`
}

// Flavor is a server size.
type Flavor struct {
	Meta
	Name string `json:"name"`
	// Kind is the kind of server the flavor sizes: "vm" or "baremetal".
	Kind    string `json:"kind"`
	VCPUs   int64  `json:"vcpus"`
	RAMMiB  int64  `json:"ram_mib"`
	DiskGiB int64  `json:"disk_gib"`
	// Hugepages backs guest memory with hugepages; such memory is never
	// overcommitted.
	Hugepages   bool   `json:"hugepages"`
	QoS         QoS    `json:"qos"`
	Description string `json:"description,omitempty"`
}

// FlavorCreate creates a flavor. Kind defaults to "vm".
type FlavorCreate struct {
	Name        string `json:"name"`
	Kind        string `json:"kind,omitempty"`
	VCPUs       int64  `json:"vcpus"`
	RAMMiB      int64  `json:"ram_mib"`
	DiskGiB     int64  `json:"disk_gib"`
	Hugepages   bool   `json:"hugepages,omitempty"`
	QoS         QoS    `json:"qos,omitempty"`
	Description string `json:"description,omitempty"`
}

// FlavorUpdate changes the fields that are set. Sizes cannot change: a
// flavor in use would no longer describe its servers; create a new one.
type FlavorUpdate struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}

// Image statuses.
const (
	ImageQueued    = "queued"    // created, no data yet
	ImageUploading = "uploading" // an upload is writing the data
	ImageActive    = "active"    // data uploaded and checksummed
)

// Image is a disk image kept in corrald's image store.
type Image struct {
	Meta
	Name string `json:"name"`
	// DiskFormat is "qcow2" or "raw".
	DiskFormat string `json:"disk_format"`
	Status     string `json:"status"`
	SizeBytes  int64  `json:"size_bytes"`
	// SHA256 is the hex digest of the uploaded data.
	SHA256      string `json:"sha256,omitempty"`
	MinDiskGiB  int64  `json:"min_disk_gib"`
	Description string `json:"description,omitempty"`
}

// ImageCreate creates an image record; upload its data with
// PUT /v1/images/{id}/file.
type ImageCreate struct {
	Name        string `json:"name"`
	DiskFormat  string `json:"disk_format"`
	MinDiskGiB  int64  `json:"min_disk_gib,omitempty"`
	Description string `json:"description,omitempty"`
}

// ImageUpdate changes the fields that are set.
type ImageUpdate struct {
	Name        *string `json:"name,omitempty"`
	MinDiskGiB  *int64  `json:"min_disk_gib,omitempty"`
	Description *string `json:"description,omitempty"`
}

// Project is a tenant.
type Project struct {
	Meta
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// ProjectCreate creates a project.
type ProjectCreate struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// ProjectUpdate changes the fields that are set.
type ProjectUpdate struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}
