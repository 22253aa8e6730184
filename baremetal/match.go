package baremetal

import (
	"fmt"
	"sort"
	"strings"

	"github.com/corral-cloud/corral/api/types"
)

// MatchRequest is what a baremetal server asks of a node: its flavor's
// hardware and, where given, a region, zone (rack) and aggregate
// (hardware type), as IDs.
type MatchRequest struct {
	VCPUs, RAMMiB, DiskGiB int64
	RegionID               string
	ZoneID                 string
	AggregateID            string
	// NICs is how many NICs the server's ports need: one port per NIC,
	// each NIC an access port of one network.
	NICs int
}

// Reasons a node is passed over.
const (
	ReasonRegion    = "wrong region"
	ReasonZone      = "wrong zone"
	ReasonAggregate = "wrong aggregate"
	ReasonState     = "not available"
	ReasonBMCFault  = "bmc unreachable"
	ReasonUnknownHW = "hardware unknown"
	ReasonCPUs      = "too few cpus"
	ReasonRAM       = "too little ram"
	ReasonDisk      = "disk too small"
	ReasonNICs      = "too few nics"
)

// Explanation counts why nodes were passed over, with a few sample nodes
// and numbers per reason.
type Explanation struct {
	Considered int                 `json:"considered"`
	Fit        int                 `json:"fit"`
	Reasons    map[string]int      `json:"reasons"`
	Samples    map[string][]string `json:"samples,omitempty"`
}

// maxSamples is how many nodes an explanation names per reason.
const maxSamples = 3

func (e *Explanation) reject(n types.Node, reason, detail string) {
	e.Reasons[reason]++
	if len(e.Samples[reason]) < maxSamples {
		s := n.Name
		if detail != "" {
			s += " (" + detail + ")"
		}
		e.Samples[reason] = append(e.Samples[reason], s)
	}
}

// String reads like "0/3 nodes fit: 2 not available, 1 too little ram".
func (e Explanation) String() string {
	keys := make([]string, 0, len(e.Reasons))
	for k := range e.Reasons {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if e.Reasons[keys[i]] != e.Reasons[keys[j]] {
			return e.Reasons[keys[i]] > e.Reasons[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", e.Reasons[k], k)
		if s := e.Samples[k]; len(s) > 0 {
			parts[i] += " [" + strings.Join(s, ", ") + "]"
		}
	}
	msg := fmt.Sprintf("%d/%d nodes fit", e.Fit, e.Considered)
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, ", ")
	}
	return msg
}

// Match returns the nodes that can take req, best fit first (the
// smallest node that fits, so big nodes stay free for big flavors), and
// why the others cannot. It is pure: no store, no clock.
func Match(nodes []types.Node, req MatchRequest) ([]types.Node, Explanation) {
	exp := Explanation{Considered: len(nodes), Reasons: map[string]int{}, Samples: map[string][]string{}}
	var fit []types.Node
	for _, n := range nodes {
		hw := n.Hardware
		switch {
		case req.RegionID != "" && n.RegionID != req.RegionID:
			exp.reject(n, ReasonRegion, "")
		case req.ZoneID != "" && n.ZoneID != req.ZoneID:
			exp.reject(n, ReasonZone, "")
		case req.AggregateID != "" && n.AggregateID != req.AggregateID:
			exp.reject(n, ReasonAggregate, "")
		case n.State != types.NodeAvailable || n.ServerID != "":
			exp.reject(n, ReasonState, n.State)
		case n.BMCFault != "":
			exp.reject(n, ReasonBMCFault, "")
		case !hw.Known():
			exp.reject(n, ReasonUnknownHW, "")
		case hw.CPUs < req.VCPUs:
			exp.reject(n, ReasonCPUs, fmt.Sprintf("%d < %d", hw.CPUs, req.VCPUs))
		case hw.RAMMiB < req.RAMMiB:
			exp.reject(n, ReasonRAM, fmt.Sprintf("%d MiB < %d MiB", hw.RAMMiB, req.RAMMiB))
		case hw.DiskGiB() < req.DiskGiB:
			exp.reject(n, ReasonDisk, fmt.Sprintf("%d GiB < %d GiB", hw.DiskGiB(), req.DiskGiB))
		case len(n.MACs) < req.NICs:
			exp.reject(n, ReasonNICs, fmt.Sprintf("%d < %d", len(n.MACs), req.NICs))
		default:
			fit = append(fit, n)
		}
	}
	exp.Fit = len(fit)
	sort.SliceStable(fit, func(i, j int) bool {
		a, b := fit[i].Hardware, fit[j].Hardware
		if a.RAMMiB != b.RAMMiB {
			return a.RAMMiB < b.RAMMiB
		}
		if a.CPUs != b.CPUs {
			return a.CPUs < b.CPUs
		}
		return fit[i].ID < fit[j].ID
	})
	return fit, exp
}
