package types

// RightsizingReport lists servers whose measured usage over a window stays
// far below their flavor (GET /v1/reports/rightsizing), with a smaller
// flavor each could use and the capacity that would free per rack.
type RightsizingReport struct {
	// Window is the period looked at, e.g. "168h0m0s".
	Window string `json:"window"`
	// CPUP95Below and MemBelow are the thresholds, in percent of the
	// flavor: p95 CPU below the one and memory below the other.
	CPUP95Below float64 `json:"cpu_p95_below"`
	MemBelow    float64 `json:"mem_below"`
	// MinHours is how many hourly samples a server needs in the window to
	// be judged at all.
	MinHours int `json:"min_hours"`
	// Headroom multiplies measured usage before a flavor is chosen.
	Headroom float64             `json:"headroom"`
	Servers  []RightsizingServer `json:"servers"`
	Racks    []RightsizingRack   `json:"racks"`
}

// RightsizingServer is one under-used server.
type RightsizingServer struct {
	ServerID  string `json:"server_id"`
	Name      string `json:"name"`
	ProjectID string `json:"project_id"`
	HostID    string `json:"host_id,omitempty"`
	// ZoneID is the server's rack.
	ZoneID   string `json:"zone_id,omitempty"`
	FlavorID string `json:"flavor_id"`
	Flavor   string `json:"flavor"`
	VCPUs    int64  `json:"vcpus"`
	RAMMiB   int64  `json:"ram_mib"`
	// Hours is how many hourly samples the window holds.
	Hours int `json:"hours"`
	// CPUP95 is the 95th percentile of the hourly mean CPU use, and
	// CPUMax the highest hourly peak, in percent of the flavor's vCPUs.
	CPUP95 float64 `json:"cpu_p95_pct"`
	CPUMax float64 `json:"cpu_max_pct"`
	// MemP95 is the 95th percentile of the hourly peak memory use in
	// percent of the flavor's RAM; MemP95MiB the same in MiB.
	MemP95    float64 `json:"mem_p95_pct"`
	MemP95MiB int64   `json:"mem_p95_mib"`
	// Suggested is the smallest flavor that still fits the p95 usage
	// with headroom; nil when no smaller flavor does (Reason says why).
	Suggested *FlavorSize `json:"suggested,omitempty"`
	Reason    string      `json:"reason,omitempty"`
	// FreesVCPUs and FreesRAMMiB are what resizing to Suggested frees.
	FreesVCPUs  int64 `json:"frees_vcpus"`
	FreesRAMMiB int64 `json:"frees_ram_mib"`
}

// FlavorSize names a flavor and its size.
type FlavorSize struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	VCPUs   int64  `json:"vcpus"`
	RAMMiB  int64  `json:"ram_mib"`
	DiskGiB int64  `json:"disk_gib"`
}

// RightsizingRack sums what the suggestions would free in one rack (zone).
type RightsizingRack struct {
	ZoneID      string `json:"zone_id"`
	Zone        string `json:"zone"`
	Servers     int    `json:"servers"`
	FreesVCPUs  int64  `json:"frees_vcpus"`
	FreesRAMMiB int64  `json:"frees_ram_mib"`
}
