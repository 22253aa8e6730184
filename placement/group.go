package placement

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// GroupRole says what kind of workers a group holds and sets its defaults.
type GroupRole string

const (
	// RoleWorkers is a plain group of identical members. An empty role means
	// RoleWorkers.
	RoleWorkers GroupRole = "workers"
	// RoleBroker is a Kafka broker group: members are always on distinct
	// hosts and spread over zones (racks) with a skew of at most one, and a
	// member's zone never changes.
	RoleBroker GroupRole = "broker"
	// RoleStream is a stream-processing (Flink) worker group sized by slots:
	// every member gets Stream.Flavor(), with dedicated CPUs.
	RoleStream GroupRole = "stream"
)

// StreamSizing sizes a stream worker by its task slots.
type StreamSizing struct {
	// SlotsPerWorker is the number of task slots per worker.
	SlotsPerWorker int64 `json:"slots_per_worker"`
	// CPUPerSlotMilli is the CPU per slot in thousandths of a core; anything
	// below 1000 is raised to one full core per slot.
	CPUPerSlotMilli int64 `json:"cpu_per_slot_milli"`
	// MemoryPerSlotMiB is the memory per slot.
	MemoryPerSlotMiB int64 `json:"memory_per_slot_mib"`
	// DiskGiB is the local disk per worker.
	DiskGiB int64 `json:"disk_gib"`
}

// Flavor returns the per-worker flavor: vCPUs = ceil(slots × max(1 core,
// CPU per slot)), memory = slots × memory per slot, and dedicated CPUs so
// that stream workers are never placed on overcommitted CPUs.
func (z StreamSizing) Flavor() Flavor {
	perSlot := max(z.CPUPerSlotMilli, 1000)
	return Flavor{
		VCPUs:        (z.SlotsPerWorker*perSlot + 999) / 1000,
		MemoryMiB:    z.SlotsPerWorker * z.MemoryPerSlotMiB,
		DiskGiB:      z.DiskGiB,
		DedicatedCPU: true,
	}
}

// GroupRequest asks for a group of identical members placed all or nothing
// within one region.
type GroupRequest struct {
	Constraints
	// Role sets defaults: brokers spread over zones on distinct hosts,
	// stream workers are sized by Stream.
	Role GroupRole
	// Members is the number of members PlaceGroup places.
	Members int
	// Flavor is the size of a member; ignored for RoleStream.
	Flavor Flavor
	// Stream sizes stream workers; required for RoleStream.
	Stream *StreamSizing
	// SpreadZones spreads members evenly over the usable zones with a skew
	// of at most one (10 over 4 zones: 3/3/2/2). Implied by RoleBroker,
	// MinZones and ReplicationFactor.
	SpreadZones bool
	// MinZones is the least number of zones the members must span.
	MinZones int
	// ReplicationFactor is the largest replication factor of the topics a
	// broker group will hold; the group is refused if it would span fewer
	// zones than that.
	ReplicationFactor int
	// DistinctHosts puts at most one member on a host. Implied by RoleBroker.
	DistinctHosts bool
	// Existing are the current members, for ScaleUp, ScaleDown and Replace.
	Existing []Member
	// Now is the current time, used to judge heartbeats.
	Now time.Time
}

// groupSpec is a normalised GroupRequest.
type groupSpec struct {
	flavor   Flavor
	spread   bool
	distinct bool
	minZones int
	rf       int
}

func normalize(g *GroupRequest) (groupSpec, error) {
	gs := groupSpec{flavor: g.Flavor, spread: g.SpreadZones, distinct: g.DistinctHosts,
		minZones: g.MinZones, rf: g.ReplicationFactor}
	switch g.Role {
	case "", RoleWorkers:
	case RoleBroker:
		gs.spread, gs.distinct = true, true
	case RoleStream:
		if g.Stream == nil || g.Stream.SlotsPerWorker < 1 || g.Stream.MemoryPerSlotMiB < 1 {
			return gs, fmt.Errorf("stream group needs slots_per_worker and memory_per_slot_mib: %w", ErrInvalidRequest)
		}
		gs.flavor = g.Stream.Flavor()
	default:
		return gs, fmt.Errorf("group role %q: %w", g.Role, ErrInvalidRequest)
	}
	if gs.minZones < 0 || gs.rf < 0 {
		return gs, fmt.Errorf("negative min_zones or replication factor: %w", ErrInvalidRequest)
	}
	if gs.minZones > 1 || gs.rf > 1 {
		gs.spread = true
	}
	if g.Kind == KindBareMetal {
		gs.distinct = true // a node hosts exactly one server
	}
	return gs, nil
}

// groupRegion returns the region all existing members share, or "".
func groupRegion(g *GroupRequest) (string, error) {
	region := g.Region
	for _, m := range g.Existing {
		if region == "" {
			region = m.Region
		}
		if m.Region != region {
			return "", fmt.Errorf("member %s is in region %s, group in %s: %w", m.ID, m.Region, region, ErrInvalidRequest)
		}
	}
	return region, nil
}

// PlaceGroup places g.Members members all or nothing in one region. With
// zone spread it first finds the usable zones (those with room for a
// member), checks them against the replication factor and MinZones, drops
// zones that cannot take an even share, and gives each remaining zone
// floor(N/k) or ceil(N/k) members, the extra ones to the best zones by
// weigher. Regions are tried in order of their best host (by weigher, then
// name); the first that holds the whole group wins.
//
// On refusal the Decision has no claims and the *FitError's explanation has
// a GroupRefusal, e.g. "need 3 zones, 2 usable: rack-a, rack-b".
func (s *Snapshot) PlaceGroup(g GroupRequest) (Decision, error) {
	if g.Members < 1 {
		return Decision{}, fmt.Errorf("group needs at least one member: %w", ErrInvalidRequest)
	}
	if len(g.Existing) > 0 {
		return Decision{}, fmt.Errorf("group already has members, use ScaleUp: %w", ErrInvalidRequest)
	}
	return s.placeMembers(g, g.Members, true)
}

// ScaleUp adds members to a group that already has g.Existing, in the
// members' region, keeping the spread: each new member goes to the usable
// zone with the fewest members (ties to the best zone by weigher). It is
// refused, all or nothing, if that would leave a skew above one that was not
// there before, or fewer zones than MinZones or the replication factor.
func (s *Snapshot) ScaleUp(g GroupRequest, add int) (Decision, error) {
	if add < 1 {
		return Decision{}, fmt.Errorf("scale up by %d: %w", add, ErrInvalidRequest)
	}
	return s.placeMembers(g, add, false)
}

func (s *Snapshot) placeMembers(g GroupRequest, add int, initial bool) (Decision, error) {
	gs, err := normalize(&g)
	if err != nil {
		return Decision{}, err
	}
	if gs.rf > add+len(g.Existing) || gs.minZones > add+len(g.Existing) {
		return Decision{}, fmt.Errorf("%d members cannot span %d zones: %w", add+len(g.Existing), max(gs.rf, gs.minZones), ErrInvalidRequest)
	}
	cn := g.Constraints
	if cn.Region, err = groupRegion(&g); err != nil {
		return Decision{}, err
	}
	c, err := s.compile(cn, gs.flavor, nil, g.Now)
	if err != nil {
		return Decision{}, err
	}
	if gs.distinct {
		for _, m := range g.Existing {
			c.excludeHost(s, m.HostID)
		}
	}
	var t tally
	// Candidates per region, each list in ID order.
	cands := make([][]cand, len(s.regions.names))
	for _, i := range s.skipRegion(&c, &t) {
		x := &s.idx[i]
		r, avail, nd := s.check(&c, i, &x.used, x.free)
		if r != ReasonNone {
			t.reject(r, i, avail, nd, s.sample)
			continue
		}
		t.fit++
		if cands[x.region] == nil {
			cands[x.region] = make([]cand, 0, len(s.byRegion[x.region]))
		}
		cands[x.region] = append(cands[x.region], cand{i: i, score: score(&c, x, &x.used)})
	}
	d := Decision{Weigher: c.weigher}
	if c.bare {
		d.Weigher = WeighBestFit
	}
	var first *GroupRefusal
	for _, rc := range s.regionOrder(cands) {
		claims, ref := s.planRegion(&c, &gs, rc, g.Existing, add, initial)
		if ref == nil {
			d.Claims = claims
			d.Region = s.regions.names[s.idx[rc[0].i].region]
			d.Explanation = s.explain(&t, c.margin)
			return d, nil
		}
		if first == nil {
			first = ref
		}
	}
	if first == nil {
		first = &GroupRefusal{Reason: GroupInsufficientCapacity, Region: cn.Region, Wanted: add,
			Message: fmt.Sprintf("%d members wanted, no host fits one", add), UsableZones: []string{}}
	}
	d.Explanation = s.explain(&t, c.margin)
	d.Explanation.Group = first
	d.Explanation.Summary = summary(d.Explanation)
	return d, &FitError{Explanation: d.Explanation}
}

// cand is a host that can take one member, with its score before any
// member is placed.
type cand struct {
	i     int32
	score int64
}

// regionOrder orders the regions that have candidates by their best
// host's score, then by name.
func (s *Snapshot) regionOrder(cands [][]cand) [][]cand {
	type region struct {
		id   int32
		best int64
	}
	var rs []region
	for id, cs := range cands {
		if len(cs) == 0 {
			continue
		}
		r := region{id: int32(id), best: cs[0].score}
		for _, cd := range cs {
			r.best = max(r.best, cd.score)
		}
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b region) int {
		if a.best != b.best {
			return cmp.Compare(b.best, a.best)
		}
		return cmp.Compare(s.regions.names[a.id], s.regions.names[b.id])
	})
	out := make([][]cand, len(rs))
	for k, r := range rs {
		out[k] = cands[r.id]
	}
	return out
}

// slot is the scratch state of one candidate host while a group is planned:
// earlier members are applied here, never to the snapshot.
type slot struct {
	used  Resources
	free  int64
	taken bool
}

// bucket is one zone (or, without zone spread, the whole region).
type bucket struct {
	name string
	ks   []int // positions in the region's candidates
	room int   // members it can take, capped at the number wanted
	best int64 // best host score
	old  int   // existing members
	add  int   // members to add
}

// planRegion plans add members on the region's candidates. It returns the
// claims in member order, or why the region cannot hold them.
func (s *Snapshot) planRegion(c *compiled, gs *groupSpec, rc []cand, existing []Member, add int, initial bool) ([]Claim, *GroupRefusal) {
	region := s.regions.names[s.idx[rc[0].i].region]
	cands := make([]int32, len(rc))
	st := make([]slot, len(rc))
	for k, cd := range rc {
		cands[k] = cd.i
		st[k] = slot{used: s.idx[cd.i].used, free: s.idx[cd.i].free}
	}
	// Bucket the candidates by zone (one bucket without zone spread).
	var bs []*bucket
	byZone := make([]*bucket, len(s.zones.names)+1)
	get := func(zone int32, name string) *bucket {
		if !gs.spread {
			zone, name = 0, ""
		}
		if zone < 0 { // a member's zone that no host is in
			for _, b := range bs {
				if b.name == name {
					return b
				}
			}
			b := &bucket{name: name, best: math.MinInt64}
			bs = append(bs, b)
			return b
		}
		b := byZone[zone]
		if b == nil {
			b = &bucket{name: name, best: math.MinInt64}
			byZone[zone] = b
			bs = append(bs, b)
		}
		return b
	}
	for k, cd := range rc {
		z := s.idx[cd.i].zone
		b := get(z, s.zones.names[z])
		b.ks = append(b.ks, k)
		b.best = max(b.best, cd.score)
	}
	for _, m := range existing {
		z, ok := s.zones.lookup(m.Zone)
		if !ok {
			z = -1
		}
		get(z, m.Zone).old++
	}
	// Room per bucket: how many members each host could take alone, by
	// applying members to a copy until fit refuses (the same check as
	// placement, so room and filling agree).
	for _, b := range bs {
		for _, k := range b.ks {
			if b.room >= add {
				break
			}
			b.room += s.roomOn(c, gs, cands[k], st[k], add-b.room)
		}
	}
	slices.SortFunc(bs, func(a, b *bucket) int {
		if a.best != b.best {
			return cmp.Compare(b.best, a.best)
		}
		if a.room != b.room {
			return cmp.Compare(b.room, a.room)
		}
		return cmp.Compare(a.name, b.name)
	})
	var usable []string
	total := 0
	for _, b := range bs {
		if b.room > 0 {
			usable = append(usable, b.name)
			total += b.room
		}
	}
	slices.Sort(usable)
	if usable == nil {
		usable = []string{}
	}
	refuse := func(r GroupReason, placeable, zones int, msg string, a ...any) *GroupRefusal {
		return &GroupRefusal{Reason: r, Message: fmt.Sprintf(msg, a...), Region: region, Wanted: add,
			Placeable: placeable, ZonesNeeded: zones, UsableZones: usable}
	}
	var ref *GroupRefusal
	switch {
	case !gs.spread:
		if total < add {
			return nil, refuse(GroupInsufficientCapacity, total, 0, "%d members wanted, room for %d in region %s", add, total, region)
		}
		bs[0].add = add
	case initial:
		ref = s.evenTargets(gs, bs, usable, add, total, refuse)
	default:
		ref = s.fillTargets(gs, bs, add, refuse)
	}
	if ref != nil {
		return nil, ref
	}
	return s.fill(c, gs, cands, st, bs, add, refuse)
}

type refuseFunc func(r GroupReason, placeable, zones int, msg string, a ...any) *GroupRefusal

// zoneChecks refuses when the group would span fewer zones than the
// replication factor or MinZones.
func zoneChecks(gs *groupSpec, zones int, usable []string, placeable int, refuse refuseFunc) *GroupRefusal {
	if gs.rf > 0 && zones < gs.rf {
		return refuse(GroupReplicationFactor, placeable, gs.rf, "replication factor %d needs %d zones, %d usable: %s", gs.rf, gs.rf, zones, zoneList(usable))
	}
	if zones < gs.minZones {
		return refuse(GroupTooFewZones, placeable, gs.minZones, "need %d zones, %d usable: %s", gs.minZones, zones, zoneList(usable))
	}
	return nil
}

// evenTargets gives each zone floor(N/k) or ceil(N/k) members. A zone that
// cannot take floor(N/k) is dropped and k recomputed; dropping a zone only
// raises the share of the others, so the first stable k is the largest
// feasible one.
func (s *Snapshot) evenTargets(gs *groupSpec, bs []*bucket, usable []string, add, total int, refuse refuseFunc) *GroupRefusal {
	if r := zoneChecks(gs, min(len(usable), add), usable, min(total, add), refuse); r != nil {
		return r
	}
	if total < add {
		return refuse(GroupInsufficientCapacity, total, 0, "%d members wanted, room for %d in %d zones", add, total, len(usable))
	}
	zs := make([]*bucket, 0, len(bs))
	for _, b := range bs {
		if b.room > 0 {
			zs = append(zs, b)
		}
	}
	for len(zs) > 0 {
		base := add / len(zs)
		keep := zs[:0:0]
		for _, b := range zs {
			if b.room >= base {
				keep = append(keep, b)
			}
		}
		if len(keep) == len(zs) {
			break
		}
		zs = keep
	}
	k := len(zs)
	if k == 0 {
		return refuse(GroupUnevenSpread, 0, 0, "%d members do not fit with a skew of at most 1 in any set of zones: %s", add, zoneList(usable))
	}
	names := make([]string, k)
	for j, b := range zs {
		names[j] = b.name
	}
	slices.Sort(names)
	base, extra := add/k, add%k
	if r := zoneChecks(gs, min(k, add), names, add, func(r GroupReason, p, z int, msg string, a ...any) *GroupRefusal {
		ref := refuse(r, p, z, msg+fmt.Sprintf(" (zones with room for an even share of %d)", max(base, 1)), a...)
		ref.UsableZones = names
		return ref
	}); r != nil {
		return r
	}
	for _, b := range zs {
		b.add = base
	}
	for _, b := range zs {
		if extra == 0 {
			break
		}
		if b.room >= base+1 {
			b.add++
			extra--
		}
	}
	if extra > 0 {
		return refuse(GroupUnevenSpread, add-extra, 0, "%d members do not fit with a skew of at most 1 over %d zones: %s", add, k, zoneList(names))
	}
	return nil
}

// fillTargets adds members one at a time to the zone with the fewest
// members that still has room, so a scale-up keeps the spread.
func (s *Snapshot) fillTargets(gs *groupSpec, bs []*bucket, add int, refuse refuseFunc) *GroupRefusal {
	var considered []*bucket
	for _, b := range bs {
		if b.room > 0 || b.old > 0 {
			considered = append(considered, b)
		}
	}
	for j := 0; j < add; j++ {
		var pick *bucket
		// Fewest members first; among equals, the zone that got the fewest
		// new members so far, then the preferred zone.
		for _, b := range considered { // in preference order
			if b.add >= b.room {
				continue
			}
			if pick == nil || b.old+b.add < pick.old+pick.add ||
				(b.old+b.add == pick.old+pick.add && b.add < pick.add) {
				pick = b
			}
		}
		if pick == nil {
			return refuse(GroupInsufficientCapacity, j, 0, "%d members wanted, room for %d", add, j)
		}
		pick.add++
	}
	skew := func(withNew bool) int {
		lo, hi := math.MaxInt, 0
		for _, b := range considered {
			n := b.old
			if withNew {
				n += b.add
			}
			lo, hi = min(lo, n), max(hi, n)
		}
		return hi - lo
	}
	var used []string
	for _, b := range considered {
		if b.old+b.add > 0 {
			used = append(used, b.name)
		}
	}
	slices.Sort(used)
	if r := zoneChecks(gs, len(used), used, add, refuse); r != nil {
		return r
	}
	if now, before := skew(true), skew(false); now > 1 && now > before {
		return refuse(GroupUnevenSpread, add, 0, "adding %d members would leave a zone skew of %d", add, now)
	}
	return nil
}

// roomOn returns how many members (up to limit) host i could take alone.
func (s *Snapshot) roomOn(c *compiled, gs *groupSpec, i int32, sl slot, limit int) int {
	if gs.distinct {
		limit = 1
	}
	x := &s.idx[i]
	n := c.needOn(x)
	res := Resources{VCPUs: n.cpu, MemoryMiB: n.mem, DiskGiB: n.disk, Hugepages: n.hp, Guests: 1}
	k := 0
	for k < limit {
		if r, _, _ := fit(c, x, &sl.used, sl.free, &n); r != ReasonNone {
			break
		}
		sl.used = sl.used.Add(res)
		sl.free -= n.mem
		k++
	}
	return k
}

// fill places the planned number of members per bucket, round-robin over
// the buckets in preference order (so consecutive members land in
// different zones), each on the best host of its bucket that still fits
// with the earlier members applied.
func (s *Snapshot) fill(c *compiled, gs *groupSpec, cands []int32, st []slot, bs []*bucket, add int, refuse refuseFunc) ([]Claim, *GroupRefusal) {
	claims := make([]Claim, 0, add)
	for len(claims) < add {
		progress := false
		for _, b := range bs {
			if b.add == 0 {
				continue
			}
			best, bestScore := -1, int64(0)
			for _, k := range b.ks {
				i := cands[k]
				if gs.distinct && st[k].taken {
					continue
				}
				x := &s.idx[i]
				n := c.needOn(x)
				if r, _, _ := fit(c, x, &st[k].used, st[k].free, &n); r != ReasonNone {
					continue
				}
				if sc := score(c, x, &st[k].used); best < 0 || sc > bestScore || (sc == bestScore && i < cands[best]) {
					best, bestScore = k, sc
				}
			}
			if best < 0 {
				return nil, refuse(GroupInsufficientCapacity, len(claims), 0, "%d members wanted, room for %d", add, len(claims))
			}
			cl := s.claimOn(c, cands[best])
			st[best].used = st[best].used.Add(cl.Resources)
			st[best].free -= cl.Resources.MemoryMiB
			st[best].taken = true
			claims = append(claims, cl)
			b.add--
			progress = true
		}
		if !progress {
			break
		}
	}
	return claims, nil
}

// Replace places a replacement for member old, in old's zone and region —
// a member's zone (a broker's rack) is fixed for life — on a host other
// than old's (and, for distinct-host groups, other than the other members').
// If the zone has no room, the refusal says so; it never moves the member
// to another zone.
func (s *Snapshot) Replace(g GroupRequest, old Member) (Decision, error) {
	gs, err := normalize(&g)
	if err != nil {
		return Decision{}, err
	}
	if old.Zone == "" {
		return Decision{}, fmt.Errorf("member %s has no zone: %w", old.ID, ErrInvalidRequest)
	}
	cn := g.Constraints
	if cn.Region, err = groupRegion(&g); err != nil {
		return Decision{}, err
	}
	if old.Region != "" {
		if cn.Region != "" && cn.Region != old.Region {
			return Decision{}, fmt.Errorf("member %s is in region %s, group in %s: %w", old.ID, old.Region, cn.Region, ErrInvalidRequest)
		}
		cn.Region = old.Region
	}
	cn.Zones = []string{old.Zone}
	c, err := s.compile(cn, gs.flavor, nil, g.Now)
	if err != nil {
		return Decision{}, err
	}
	c.excludeHost(s, old.HostID)
	if gs.distinct {
		for _, m := range g.Existing {
			c.excludeHost(s, m.HostID)
		}
	}
	d, err := s.placeCompiled(&c)
	if err != nil {
		d.Explanation.Group = &GroupRefusal{Reason: GroupZoneFull, Region: cn.Region, Wanted: 1, ZonesNeeded: 1,
			UsableZones: []string{},
			Message:     fmt.Sprintf("no host in zone %s can take a replacement for member %s (a member never changes zone)", old.Zone, old.ID)}
		d.Explanation.Summary = summary(d.Explanation)
		return d, &FitError{Explanation: d.Explanation}
	}
	d.Claims[0].Replaces = old.ID
	return d, nil
}

// ScaleDown chooses remove members of g.Existing to remove, one at a
// time from the zone with the most members (ties: the zone first by name),
// and within it the member with the greatest ID. It returns them in removal
// order. It refuses to leave a spread group on fewer zones than MinZones or
// the replication factor. ScaleDown needs no snapshot.
func ScaleDown(g GroupRequest, remove int) ([]Member, error) {
	gs, err := normalize(&g)
	if err != nil {
		return nil, err
	}
	if remove < 0 || remove > len(g.Existing) {
		return nil, fmt.Errorf("remove %d of %d members: %w", remove, len(g.Existing), ErrInvalidRequest)
	}
	left := slices.Clone(g.Existing)
	out := make([]Member, 0, remove)
	for range remove {
		counts := map[string]int{}
		for _, m := range left {
			counts[m.Zone]++
		}
		zone, most := "", -1
		for z, n := range counts {
			if n > most || (n == most && z < zone) {
				zone, most = z, n
			}
		}
		pick := -1
		for j, m := range left {
			if m.Zone == zone && (pick < 0 || m.ID > left[pick].ID) {
				pick = j
			}
		}
		out = append(out, left[pick])
		left = slices.Delete(left, pick, pick+1)
	}
	if len(left) > 0 && gs.spread {
		zones := map[string]bool{}
		for _, m := range left {
			zones[m.Zone] = true
		}
		if need := max(gs.minZones, gs.rf); len(zones) < need {
			return nil, fmt.Errorf("removing %d members leaves %d zones, %d needed: %w", remove, len(zones), need, ErrInvalidRequest)
		}
	}
	return out, nil
}
