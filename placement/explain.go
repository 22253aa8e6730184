package placement

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Reason is why a filter rejected a host. It is a small integer while
// hosts are counted and a snake_case code in JSON and in messages.
type Reason uint8

// The reasons, in the order the filters run. A host is counted under the
// first reason that rejects it, so the more permanent reasons come first.
const (
	// ReasonNone means the host fits.
	ReasonNone Reason = iota

	// ReasonWrongRegion: the host is not in the required region.
	ReasonWrongRegion
	// ReasonWrongKind: a compute host for a bare-metal request, or a node
	// for a VM request.
	ReasonWrongKind
	// ReasonWrongZone: the host is not in an allowed zone.
	ReasonWrongZone
	// ReasonMissingAggregate: the host is not in every required aggregate.
	ReasonMissingAggregate
	// ReasonMissingTrait: the host lacks a required trait.
	ReasonMissingTrait
	// ReasonNoHugepages: hugepages wanted but the host has no pool, or a pool
	// of another page size.
	ReasonNoHugepages
	// ReasonTooSmallCPU: the flavor has more vCPUs than the empty host offers.
	ReasonTooSmallCPU
	// ReasonTooSmallMemory: the flavor (with overhead) needs more memory than
	// the empty host offers.
	ReasonTooSmallMemory
	// ReasonTooSmallDisk: the flavor needs more disk than the host has.
	ReasonTooSmallDisk
	// ReasonTooSmallHugepages: the flavor needs more hugepages than the pool.
	ReasonTooSmallHugepages

	// ReasonMaintenance: the host is in maintenance.
	ReasonMaintenance
	// ReasonDown: the host is down.
	ReasonDown
	// ReasonStaleHeartbeat: the host's last heartbeat is too old (or missing).
	ReasonStaleHeartbeat

	// ReasonAffinitySameHost: same_host policy, and this is not the group's host.
	ReasonAffinitySameHost
	// ReasonAntiAffinityHost: the host already runs a member of the group.
	ReasonAntiAffinityHost
	// ReasonAntiAffinityRack: the host's zone already has a member of the group.
	ReasonAntiAffinityRack

	// ReasonCPU: not enough free vCPUs under the allocation ratio.
	ReasonCPU
	// ReasonMemory: not enough free memory under the allocation ratio.
	ReasonMemory
	// ReasonHugepages: not enough free hugepages.
	ReasonHugepages
	// ReasonDisk: not enough free disk.
	ReasonDisk
	// ReasonFailsafe: the allocation fits, but the measured free memory after
	// the placement would fall below the failsafe margin.
	ReasonFailsafe
	// ReasonNodeInUse: the bare-metal node already hosts a server.
	ReasonNodeInUse

	numReasons
)

// Class groups reasons by what an operator can do about them.
type Class string

const (
	// ClassNeverMatch: the host can never take this request as asked.
	ClassNeverMatch Class = "never_match"
	// ClassUnavailable: the host is in maintenance, down or silent right now.
	ClassUnavailable Class = "unavailable"
	// ClassPolicy: a group policy rules the host out.
	ClassPolicy Class = "policy"
	// ClassFullNow: the host lacks free capacity right now.
	ClassFullNow Class = "full_now"
)

type reasonInfo struct {
	code  string
	label string
	class Class
	dim   string // resource dimension, if any
	unit  string
}

var reasons = [numReasons]reasonInfo{
	ReasonNone:              {"none", "fits", "", "", ""},
	ReasonWrongRegion:       {"wrong_region", "wrong region", ClassNeverMatch, "", ""},
	ReasonWrongKind:         {"wrong_kind", "wrong kind", ClassNeverMatch, "", ""},
	ReasonWrongZone:         {"wrong_zone", "wrong zone", ClassNeverMatch, "", ""},
	ReasonMissingAggregate:  {"missing_aggregate", "missing aggregate", ClassNeverMatch, "", ""},
	ReasonMissingTrait:      {"missing_trait", "missing trait", ClassNeverMatch, "", ""},
	ReasonNoHugepages:       {"no_hugepages", "no hugepages of that size", ClassNeverMatch, "", ""},
	ReasonTooSmallCPU:       {"too_small_cpu", "host too small: cpu", ClassNeverMatch, "cpu", "vcpu"},
	ReasonTooSmallMemory:    {"too_small_memory", "host too small: memory", ClassNeverMatch, "memory", "MiB"},
	ReasonTooSmallDisk:      {"too_small_disk", "host too small: disk", ClassNeverMatch, "disk", "GiB"},
	ReasonTooSmallHugepages: {"too_small_hugepages", "host too small: hugepages", ClassNeverMatch, "hugepages", "pages"},
	ReasonMaintenance:       {"maintenance", "maintenance", ClassUnavailable, "", ""},
	ReasonDown:              {"down", "down", ClassUnavailable, "", ""},
	ReasonStaleHeartbeat:    {"stale_heartbeat", "stale heartbeat", ClassUnavailable, "", ""},
	ReasonAffinitySameHost:  {"affinity_same_host", "affinity: not the group's host", ClassPolicy, "", ""},
	ReasonAntiAffinityHost:  {"anti_affinity_host", "anti-affinity: host has a member", ClassPolicy, "", ""},
	ReasonAntiAffinityRack:  {"anti_affinity_rack", "anti-affinity: rack has a member", ClassPolicy, "", ""},
	ReasonCPU:               {"cpu", "cpu", ClassFullNow, "cpu", "vcpu"},
	ReasonMemory:            {"memory", "memory", ClassFullNow, "memory", "MiB"},
	ReasonHugepages:         {"hugepages", "hugepages", ClassFullNow, "hugepages", "pages"},
	ReasonDisk:              {"disk", "disk", ClassFullNow, "disk", "GiB"},
	ReasonFailsafe:          {"memory_failsafe", "memory failsafe", ClassFullNow, "memory", "MiB"},
	ReasonNodeInUse:         {"node_in_use", "node in use", ClassFullNow, "", ""},
}

// String returns the reason's snake_case code.
func (r Reason) String() string {
	if r >= numReasons {
		return "reason(" + strconv.Itoa(int(r)) + ")"
	}
	return reasons[r].code
}

// Class returns the reason's class.
func (r Reason) Class() Class {
	if r >= numReasons {
		return ""
	}
	return reasons[r].class
}

// MarshalText encodes the reason as its snake_case code.
func (r Reason) MarshalText() ([]byte, error) {
	if r >= numReasons {
		return nil, fmt.Errorf("marshal reason %d: unknown", r)
	}
	return []byte(reasons[r].code), nil
}

// UnmarshalText decodes a snake_case code.
func (r *Reason) UnmarshalText(b []byte) error {
	for i := range reasons {
		if reasons[i].code == string(b) {
			*r = Reason(i)
			return nil
		}
	}
	return fmt.Errorf("unmarshal reason %q: unknown", b)
}

// Explanation says how many hosts were considered and why the others were
// filtered out. It is plain data, ready to be JSON-encoded into a 409's
// details or a dry-run response.
type Explanation struct {
	// Hosts is the number of hosts in the snapshot.
	Hosts int `json:"hosts"`
	// Fit is the number of hosts that passed every filter (for a group: that
	// could take one member).
	Fit int `json:"fit"`
	// NeverMatch counts hosts that can never take the request as asked.
	NeverMatch int `json:"never_match"`
	// Unavailable counts hosts in maintenance, down or with a stale heartbeat.
	Unavailable int `json:"unavailable"`
	// Policy counts hosts ruled out by affinity or anti-affinity.
	Policy int `json:"policy"`
	// FullNow counts hosts without enough free capacity right now.
	FullNow int `json:"full_now"`
	// Reasons has one entry per reason seen, most frequent first.
	Reasons []ReasonCount `json:"reasons"`
	// Group says why a group could not be placed, when it could not.
	Group *GroupRefusal `json:"group,omitempty"`
	// Summary is a human sentence such as
	// "0/120 hosts fit: 80 wrong region, 37 memory failsafe (free 1.2 GiB < margin 2 GiB)".
	Summary string `json:"summary"`
}

// ReasonCount is one reason with its number of hosts and a few of them.
type ReasonCount struct {
	// Reason is the reason's code.
	Reason Reason `json:"reason"`
	// Class is the reason's class.
	Class Class `json:"class"`
	// Count is the number of hosts rejected for this reason.
	Count int `json:"count"`
	// SampleHosts are a few of those hosts, in ID order.
	SampleHosts []string `json:"sample_hosts"`
	// Dimension gives the numbers behind a resource reason.
	Dimension *Dimension `json:"dimension,omitempty"`
	// Message is a human phrase, e.g. "37 memory failsafe (free 1.2 GiB < margin 2 GiB)".
	Message string `json:"message"`
}

// Dimension gives the numbers behind a resource reason.
type Dimension struct {
	// Name is cpu, memory, disk or hugepages.
	Name string `json:"name"`
	// Unit is vcpu, MiB, GiB or pages.
	Unit string `json:"unit"`
	// Need is what one server needs on the best of these hosts.
	Need int64 `json:"need"`
	// Best is the most any of these hosts had: free capacity for full_now
	// reasons, total capacity for too_small reasons, measured free memory
	// for memory_failsafe.
	Best int64 `json:"best"`
	// MarginMiB is the failsafe margin, for memory_failsafe.
	MarginMiB int64 `json:"margin_mib,omitempty"`
}

// GroupReason is why a group could not be placed.
type GroupReason string

const (
	// GroupTooFewZones: fewer usable zones than min_zones.
	GroupTooFewZones GroupReason = "too_few_zones"
	// GroupReplicationFactor: fewer usable zones than the replication factor.
	GroupReplicationFactor GroupReason = "replication_factor_exceeds_zones"
	// GroupInsufficientCapacity: fewer members fit than wanted.
	GroupInsufficientCapacity GroupReason = "insufficient_capacity"
	// GroupUnevenSpread: the members fit, but not with a skew of at most one.
	GroupUnevenSpread GroupReason = "uneven_spread"
	// GroupZoneFull: no host in the replaced member's zone can take the
	// replacement; a member never changes zone.
	GroupZoneFull GroupReason = "zone_full"
)

// GroupRefusal explains why a group (or a scale-up or replacement) was refused.
type GroupRefusal struct {
	// Reason is the refusal code.
	Reason GroupReason `json:"reason"`
	// Message is a human sentence, e.g. "need 3 zones, 2 usable: rack-a, rack-b".
	Message string `json:"message"`
	// Region is the region that was judged (the best one tried).
	Region string `json:"region,omitempty"`
	// Wanted is the number of members asked for.
	Wanted int `json:"wanted"`
	// Placeable is the number of members that would fit.
	Placeable int `json:"placeable"`
	// ZonesNeeded is the number of zones the group needs.
	ZonesNeeded int `json:"zones_needed,omitempty"`
	// UsableZones are the zones that can take at least one member, by name.
	UsableZones []string `json:"usable_zones"`
}

// tally counts rejections during a scan without allocating.
type tally struct {
	counts  [numReasons]int32
	samples [numReasons][maxSampleSize]int32
	best    [numReasons]int64 // best available amount seen
	need    [numReasons]int64 // need on the host that had best
	fit     int
}

// skipRegion counts, in bulk, the hosts outside the required region and
// returns the hosts a scan must visit: the region's (or every host when no
// region is required), in ID order. The result is the same as filtering
// every host, because the region filter runs first.
func (s *Snapshot) skipRegion(c *compiled, t *tally) []int32 {
	if c.region == -1 {
		return s.all
	}
	var in []int32
	if c.region >= 0 {
		in = s.byRegion[c.region]
	}
	if out := len(s.hosts) - len(in); out > 0 {
		t.counts[ReasonWrongRegion] = int32(out)
		k := 0
		for i := 0; i < len(s.idx) && k < s.sample; i++ {
			if s.idx[i].region != c.region {
				t.samples[ReasonWrongRegion][k] = int32(i)
				k++
			}
		}
	}
	return in
}

func (t *tally) reject(r Reason, i int32, avail, need int64, sample int) {
	n := t.counts[r]
	if int(n) < sample {
		t.samples[r][n] = i
	}
	if n == 0 || avail > t.best[r] {
		t.best[r] = avail
		t.need[r] = need
	}
	t.counts[r] = n + 1
}

// explain turns a tally into an Explanation. It is the only place that
// formats strings, once per decision.
func (s *Snapshot) explain(t *tally, margin int64) Explanation {
	e := Explanation{Hosts: len(s.hosts), Fit: t.fit}
	for r := Reason(1); r < numReasons; r++ {
		n := int(t.counts[r])
		if n == 0 {
			continue
		}
		info := reasons[r]
		rc := ReasonCount{Reason: r, Class: info.class, Count: n}
		k := min(n, s.sample)
		rc.SampleHosts = make([]string, k)
		for j := 0; j < k; j++ {
			rc.SampleHosts[j] = s.hosts[t.samples[r][j]].ID
		}
		if info.dim != "" {
			rc.Dimension = &Dimension{Name: info.dim, Unit: info.unit, Need: t.need[r], Best: t.best[r]}
			if r == ReasonFailsafe {
				rc.Dimension.MarginMiB = margin
			}
		}
		rc.Message = strconv.Itoa(n) + " " + reasonPhrase(r, rc.Dimension)
		switch info.class {
		case ClassNeverMatch:
			e.NeverMatch += n
		case ClassUnavailable:
			e.Unavailable += n
		case ClassPolicy:
			e.Policy += n
		case ClassFullNow:
			e.FullNow += n
		}
		e.Reasons = append(e.Reasons, rc)
	}
	sort.SliceStable(e.Reasons, func(a, b int) bool { return e.Reasons[a].Count > e.Reasons[b].Count })
	e.Summary = summary(e)
	return e
}

// summary renders "fit/hosts hosts fit: reason, reason, ...".
func summary(e Explanation) string {
	var b strings.Builder
	if e.Group != nil {
		b.WriteString("group refused: ")
		b.WriteString(e.Group.Message)
		b.WriteString("; ")
	}
	b.WriteString(strconv.Itoa(e.Fit))
	b.WriteByte('/')
	b.WriteString(strconv.Itoa(e.Hosts))
	b.WriteString(" hosts fit")
	if e.Group != nil {
		b.WriteString(" one member")
	}
	for i, rc := range e.Reasons {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(rc.Message)
	}
	return b.String()
}

func reasonPhrase(r Reason, d *Dimension) string {
	label := reasons[r].label
	if d == nil {
		return label
	}
	switch {
	case r == ReasonFailsafe:
		after := d.Best - d.Need
		if after < 0 {
			return fmt.Sprintf("%s (measured free %s < need %s + margin %s)", label, gib(d.Best), gib(d.Need), gib(d.MarginMiB))
		}
		return fmt.Sprintf("%s (free %s < margin %s)", label, gib(after), gib(d.MarginMiB))
	case r >= ReasonTooSmallCPU && r <= ReasonTooSmallHugepages:
		return fmt.Sprintf("%s (need %s, largest %s)", label, amount(d.Unit, d.Need), amount(d.Unit, d.Best))
	default:
		return fmt.Sprintf("%s (need %s, most free %s)", label, amount(d.Unit, d.Need), amount(d.Unit, d.Best))
	}
}

func amount(unit string, v int64) string {
	switch unit {
	case "MiB":
		return gib(v)
	case "GiB":
		return strconv.FormatInt(v, 10) + " GiB"
	case "vcpu":
		return strconv.FormatInt(v, 10) + " vCPU"
	default:
		return strconv.FormatInt(v, 10) + " " + unit
	}
}

// gib renders MiB as GiB with at most one decimal: 1229 → "1.2 GiB".
func gib(mib int64) string {
	s := strconv.FormatFloat(float64(mib)/1024, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " GiB"
}

// zoneList renders up to ten zone names, then a count of the rest.
func zoneList(zones []string) string {
	if len(zones) == 0 {
		return "none"
	}
	const show = 10
	if len(zones) <= show {
		return strings.Join(zones, ", ")
	}
	return strings.Join(zones[:show], ", ") + fmt.Sprintf(" and %d more", len(zones)-show)
}
