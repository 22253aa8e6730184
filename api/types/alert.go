package types

// Alert kinds of GET /v1/alerts.
const (
	// AlertHostStale: the host's agent has not sent a heartbeat within the
	// liveness limit, or the host was marked down.
	AlertHostStale = "host_stale"
	// AlertFailsafe: the host's measured free memory, less what was claimed
	// since the measurement, is below the failsafe margin; placement sends
	// nothing more there.
	AlertFailsafe = "failsafe_margin"
	// AlertUnknownGuests: the host runs managed guests corrald has no
	// server for (adopt or delete them).
	AlertUnknownGuests = "unknown_guests"
	// AlertBMCUnreachable: a bare-metal node's BMC does not answer.
	AlertBMCUnreachable = "bmc_unreachable"
)

// Alert is a condition of a host or a bare-metal node that an operator
// should look at. The servers on that host or node share it.
type Alert struct {
	Kind string `json:"kind"`
	// Object is "host" or "node"; ObjectID and Name identify it.
	Object   string `json:"object"`
	ObjectID string `json:"object_id"`
	Name     string `json:"name"`
	// Message says what is wrong, with the numbers behind it.
	Message string `json:"message"`
}

// AlertList is the answer of GET /v1/alerts: every current alert, up to a
// bound; Truncated says that more were left out.
type AlertList struct {
	Items     []Alert `json:"items"`
	Truncated bool    `json:"truncated,omitempty"`
}
