package placement

import (
	"fmt"
	"time"
)

// compiled is a request translated once into the snapshot's integer IDs
// and bit masks, so that filtering a host is a handful of comparisons and
// never allocates.
type compiled struct {
	bare     bool
	region   int32  // -1: any region; -2: a region no host has
	zones    []bool // nil: any zone; else indexed by zone ID
	aggMask  []uint64
	aggMiss  bool // a required aggregate no host has
	trMask   []uint64
	trMiss   bool // a required trait no host has
	flavor   Flavor
	cutoff   int64 // heartbeats before this (Unix ns) are stale
	margin   int64
	weigher  Weigher
	onlyHost []bool // same_host: only these hosts (by index)
	exHost   []bool // anti-affinity: not these hosts
	exZone   []bool // anti-affinity: not these zones
}

// need is what one server takes on a particular host. Memory depends on the
// host's overhead and on whether the guest is hugepage backed.
type need struct {
	cpu, mem, disk, hp int64
}

// compile validates the constraints and translates them.
func (s *Snapshot) compile(cn Constraints, f Flavor, aff *Affinity, now time.Time) (compiled, error) {
	c := compiled{region: -1, flavor: f, margin: s.margin}
	switch cn.Kind {
	case "", KindVM:
	case KindBareMetal:
		c.bare = true
	default:
		return c, fmt.Errorf("kind %q: %w", cn.Kind, ErrInvalidRequest)
	}
	if f.VCPUs < 1 || f.MemoryMiB < 1 || f.DiskGiB < 0 {
		return c, fmt.Errorf("flavor needs at least 1 vCPU and 1 MiB, got %d vCPU %d MiB %d GiB: %w",
			f.VCPUs, f.MemoryMiB, f.DiskGiB, ErrInvalidRequest)
	}
	if c.bare && (f.Hugepages || f.DedicatedCPU) {
		return c, fmt.Errorf("hugepages and dedicated CPUs apply to VMs only: %w", ErrInvalidRequest)
	}
	if !c.bare {
		if now.IsZero() {
			return c, fmt.Errorf("now is required to judge heartbeats: %w", ErrInvalidRequest)
		}
		c.cutoff = now.Add(-s.maxAge).UnixNano()
	}
	if cn.Region != "" {
		c.region = -2
		if id, ok := s.regions.lookup(cn.Region); ok {
			c.region = id
		}
	}
	if len(cn.Zones) > 0 {
		c.zones = make([]bool, len(s.zones.names))
		for _, z := range cn.Zones {
			if id, ok := s.zones.lookup(z); ok {
				c.zones[id] = true
			}
		}
	}
	if len(cn.Aggregates) > 0 {
		c.aggMask = make([]uint64, s.aggW)
		for _, a := range cn.Aggregates {
			id, ok := s.aggs.lookup(a)
			if !ok {
				c.aggMiss = true
				continue
			}
			c.aggMask[id/64] |= 1 << (id % 64)
		}
	}
	if len(cn.Traits) > 0 {
		c.trMask = make([]uint64, s.traitW)
		for _, t := range cn.Traits {
			id, ok := s.traits.lookup(t)
			if !ok {
				c.trMiss = true
				continue
			}
			c.trMask[id/64] |= 1 << (id % 64)
		}
	}
	w, err := s.weigherFor(cn)
	if err != nil {
		return c, err
	}
	c.weigher = w
	if aff != nil {
		switch aff.Policy {
		case SameHost:
			if len(aff.Members) > 0 {
				c.onlyHost = make([]bool, len(s.hosts))
				for _, m := range aff.Members {
					if i, ok := s.byID[m.HostID]; ok {
						c.onlyHost[i] = true
					}
				}
			}
		case DifferentHost:
			for _, m := range aff.Members {
				c.excludeHost(s, m.HostID)
			}
		case DifferentRack:
			for _, m := range aff.Members {
				c.excludeZone(s, m.Zone)
			}
		default:
			return c, fmt.Errorf("affinity policy %q: %w", aff.Policy, ErrInvalidRequest)
		}
	}
	return c, nil
}

func (c *compiled) excludeHost(s *Snapshot, id string) {
	i, ok := s.byID[id]
	if !ok {
		return
	}
	if c.exHost == nil {
		c.exHost = make([]bool, len(s.hosts))
	}
	c.exHost[i] = true
}

func (c *compiled) excludeZone(s *Snapshot, zone string) {
	id, ok := s.zones.lookup(zone)
	if !ok {
		return
	}
	if c.exZone == nil {
		c.exZone = make([]bool, len(s.zones.names))
	}
	c.exZone[id] = true
}

// weigherFor resolves the weigher: the request's, else the first required
// aggregate's default, else the config's, else spread.
func (s *Snapshot) weigherFor(cn Constraints) (Weigher, error) {
	w := cn.Weigher
	if w == "" {
		for _, a := range cn.Aggregates {
			if p := s.cfg.Aggregates[a]; p.Weigher != "" {
				w = p.Weigher
				break
			}
		}
	}
	if w == "" {
		w = s.cfg.DefaultWeigher
	}
	if w == "" {
		w = WeighSpread
	}
	if w != WeighPack && w != WeighSpread {
		return "", fmt.Errorf("weigher %q: %w", w, ErrInvalidRequest)
	}
	return w, nil
}

// needOn returns what the compiled flavor takes on host x. Allocated memory
// is guest RAM plus the host's hypervisor overhead; a hugepage-backed guest
// takes its RAM as whole hugepages and only the overhead as normal memory.
// A bare-metal request needs the flavor's hardware as is.
func (c *compiled) needOn(x *hostIdx) need {
	f := &c.flavor
	n := need{cpu: f.VCPUs, mem: f.MemoryMiB, disk: f.DiskGiB}
	if c.bare {
		return n
	}
	n.mem = x.ov.For(f.MemoryMiB)
	if f.Hugepages {
		n.hp = (f.MemoryMiB*1024 + x.hpKiB - 1) / x.hpKiB
	} else {
		n.mem += f.MemoryMiB
	}
	return n
}

// The filters. Each takes the compiled request and one host and returns
// ReasonNone or the reason it rejects the host; resource filters also return
// the amount available and needed, for the explanation. check runs them in
// the documented order.

// filterKind rejects nodes for VM requests and compute hosts for bare metal.
func filterKind(c *compiled, x *hostIdx) Reason {
	if c.bare != x.bare {
		return ReasonWrongKind
	}
	return ReasonNone
}

// filterRegion rejects hosts outside the required region.
func filterRegion(c *compiled, x *hostIdx) Reason {
	if c.region != -1 && c.region != x.region {
		return ReasonWrongRegion
	}
	return ReasonNone
}

// filterZone rejects hosts outside the allowed zones.
func filterZone(c *compiled, x *hostIdx) Reason {
	if c.zones != nil && !c.zones[x.zone] {
		return ReasonWrongZone
	}
	return ReasonNone
}

// filterAggregates rejects hosts missing a required aggregate.
func (s *Snapshot) filterAggregates(c *compiled, i int32) Reason {
	if c.aggMask == nil {
		return ReasonNone
	}
	if c.aggMiss {
		return ReasonMissingAggregate
	}
	if !covers(s.aggMask[int(i)*s.aggW:], c.aggMask) {
		return ReasonMissingAggregate
	}
	return ReasonNone
}

// covers reports whether the host's bit set has every bit of want.
func covers(host, want []uint64) bool {
	for w, m := range want {
		if host[w]&m != m {
			return false
		}
	}
	return true
}

// filterTraits rejects hosts missing a required trait.
func (s *Snapshot) filterTraits(c *compiled, i int32) Reason {
	if c.trMask == nil {
		return ReasonNone
	}
	if c.trMiss {
		return ReasonMissingTrait
	}
	if !covers(s.trMask[int(i)*s.traitW:], c.trMask) {
		return ReasonMissingTrait
	}
	return ReasonNone
}

// filterHugepageSupport rejects hosts without a hugepage pool (of the
// requested page size) for hugepage-backed flavors.
func filterHugepageSupport(c *compiled, x *hostIdx) Reason {
	if !c.flavor.Hugepages {
		return ReasonNone
	}
	if x.hpTotal == 0 || (c.flavor.HugepageSizeKiB != 0 && c.flavor.HugepageSizeKiB != x.hpKiB) {
		return ReasonNoHugepages
	}
	return ReasonNone
}

// filterTooSmall rejects hosts that could not take the server even if they
// were empty: the flavor is bigger than the host's total (after reservations
// and ratios, and after the failsafe margin for memory). For a bare-metal
// node it matches the node's hardware: CPUs, RAM and disk at least the
// flavor's.
func filterTooSmall(c *compiled, x *hostIdx, n *need) (Reason, int64, int64) {
	if c.bare {
		switch {
		case n.cpu > x.cpuPhys:
			return ReasonTooSmallCPU, x.cpuPhys, n.cpu
		case n.mem > x.ramPhys:
			return ReasonTooSmallMemory, x.ramPhys, n.mem
		case n.disk > x.disk:
			return ReasonTooSmallDisk, x.disk, n.disk
		}
		return ReasonNone, 0, 0
	}
	cpuCap := x.cpuCap
	if c.flavor.DedicatedCPU {
		cpuCap = x.cpuPhys
	}
	memCap := min(x.ramCap, x.ramPhys-c.margin)
	switch {
	case n.cpu > cpuCap:
		return ReasonTooSmallCPU, cpuCap, n.cpu
	case n.mem > memCap:
		return ReasonTooSmallMemory, memCap, n.mem
	case n.disk > x.disk:
		return ReasonTooSmallDisk, x.disk, n.disk
	case n.hp > x.hpTotal:
		return ReasonTooSmallHugepages, x.hpTotal, n.hp
	}
	return ReasonNone, 0, 0
}

// filterState rejects hosts in maintenance or down.
func filterState(x *hostIdx) Reason {
	switch x.state {
	case stateUp:
		return ReasonNone
	case stateMaintenance:
		return ReasonMaintenance
	default:
		return ReasonDown
	}
}

// filterHeartbeat rejects compute hosts whose last heartbeat is older than
// the snapshot's maximum age, or missing. Nodes have no agent.
func filterHeartbeat(c *compiled, x *hostIdx) Reason {
	if !c.bare && x.hbAt < c.cutoff {
		return ReasonStaleHeartbeat
	}
	return ReasonNone
}

// filterAffinity applies the server-group policy and group anti-affinity.
func filterAffinity(c *compiled, i int32, x *hostIdx) Reason {
	switch {
	case c.onlyHost != nil && !c.onlyHost[i]:
		return ReasonAffinitySameHost
	case c.exHost != nil && c.exHost[i]:
		return ReasonAntiAffinityHost
	case c.exZone != nil && c.exZone[x.zone]:
		return ReasonAntiAffinityRack
	}
	return ReasonNone
}

// fit is the capacity filter and the only place where allocation ratios are
// enforced: used + need must stay within (total - reserved) × ratio for CPU
// (ratio 1.0 for dedicated CPUs) and normal memory, and within the totals for
// hugepages (never overcommitted) and disk. It then applies the failsafe:
// the measured free memory minus the claim must stay at or above the margin.
// It returns the reason, the amount available and the amount needed.
func fit(c *compiled, x *hostIdx, used *Resources, measuredFree int64, n *need) (Reason, int64, int64) {
	if c.bare {
		if used.Guests > 0 {
			return ReasonNodeInUse, 0, 1
		}
		return ReasonNone, 0, 0
	}
	cpuCap := x.cpuCap
	if c.flavor.DedicatedCPU {
		cpuCap = x.cpuPhys
	}
	if used.VCPUs+n.cpu > cpuCap {
		return ReasonCPU, cpuCap - used.VCPUs, n.cpu
	}
	if used.MemoryMiB+n.mem > x.ramCap {
		return ReasonMemory, x.ramCap - used.MemoryMiB, n.mem
	}
	if n.hp > 0 && used.Hugepages+n.hp > x.hpTotal {
		return ReasonHugepages, x.hpTotal - used.Hugepages, n.hp
	}
	if used.DiskGiB+n.disk > x.disk {
		return ReasonDisk, x.disk - used.DiskGiB, n.disk
	}
	if measuredFree-n.mem < c.margin {
		return ReasonFailsafe, measuredFree, n.mem
	}
	return ReasonNone, 0, 0
}

// check runs every filter on host i with the given allocations and measured
// free memory, and returns the first reason that rejects it.
//
// The order matters for the explanation, not for the outcome: a host is
// counted under its most permanent reason. "Never match" filters come first
// (cheapest, and the answer does not change by waiting; region is first so
// that a scan can skip other regions wholesale, see skipRegion), then
// "unavailable" (state and heartbeat), then group policy, then the
// capacity filters that say the host is "full now".
func (s *Snapshot) check(c *compiled, i int32, used *Resources, measuredFree int64) (Reason, int64, int64) {
	x := &s.idx[i]
	if r := filterRegion(c, x); r != ReasonNone {
		return r, 0, 0
	}
	if r := filterKind(c, x); r != ReasonNone {
		return r, 0, 0
	}
	if r := filterZone(c, x); r != ReasonNone {
		return r, 0, 0
	}
	if r := s.filterAggregates(c, i); r != ReasonNone {
		return r, 0, 0
	}
	if r := s.filterTraits(c, i); r != ReasonNone {
		return r, 0, 0
	}
	if r := filterHugepageSupport(c, x); r != ReasonNone {
		return r, 0, 0
	}
	n := c.needOn(x)
	if r, a, nd := filterTooSmall(c, x, &n); r != ReasonNone {
		return r, a, nd
	}
	if r := filterState(x); r != ReasonNone {
		return r, 0, 0
	}
	if r := filterHeartbeat(c, x); r != ReasonNone {
		return r, 0, 0
	}
	if r := filterAffinity(c, i, x); r != ReasonNone {
		return r, 0, 0
	}
	return fit(c, x, used, measuredFree, &n)
}

// claimOn returns the claim for one server on host i.
func (s *Snapshot) claimOn(c *compiled, i int32) Claim {
	h := &s.hosts[i]
	x := &s.idx[i]
	cl := Claim{HostID: h.ID, Region: h.Region, Zone: h.Zone, Generation: h.Generation}
	if c.bare {
		// A node hosts exactly one server: the claim takes all of it.
		cl.Resources = Resources{VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB, DiskGiB: h.DiskGiB, Guests: 1}
		return cl
	}
	n := c.needOn(x)
	cl.Resources = Resources{VCPUs: n.cpu, MemoryMiB: n.mem, DiskGiB: n.disk, Hugepages: n.hp, Guests: 1}
	return cl
}
