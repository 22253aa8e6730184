package placement

// Weighing turns a feasible host into one integer score; the highest score
// wins and ties go to the smallest host ID (the snapshot is sorted by ID, so
// a scan keeps the first of equal scores). Integer scores keep the choice
// deterministic across machines.

// scoreScale is the fixed-point scale of utilisation: 1,000,000 = 100 %.
const scoreScale = 1_000_000

// utilisation returns the host's allocated share of CPU plus its allocated
// share of normal memory, each in millionths of its (overcommitted)
// capacity, so 2,000,000 is a full host.
func utilisation(x *hostIdx, used *Resources) int64 {
	var u int64
	if x.cpuCap > 0 {
		u += used.VCPUs * scoreScale / x.cpuCap
	}
	if x.ramCap > 0 {
		u += used.MemoryMiB * scoreScale / x.ramCap
	}
	return u
}

// weighPack scores the most used hosts highest, so that guests fill hosts
// one after the other and fewer hosts are powered.
func weighPack(x *hostIdx, used *Resources) int64 { return utilisation(x, used) }

// weighSpread scores the least used hosts highest, so that load is spread.
func weighSpread(x *hostIdx, used *Resources) int64 { return -utilisation(x, used) }

// weighBestFit scores bare-metal nodes by how little hardware the flavor
// would leave unused, whatever the weigher: the smallest matching node wins
// and bigger nodes stay free for bigger flavors.
func weighBestFit(x *hostIdx, n *need) int64 {
	var waste int64
	if x.cpuPhys > 0 {
		waste += (x.cpuPhys - n.cpu) * scoreScale / x.cpuPhys
	}
	if x.ramPhys > 0 {
		waste += (x.ramPhys - n.mem) * scoreScale / x.ramPhys
	}
	if x.disk > 0 {
		waste += (x.disk - n.disk) * scoreScale / x.disk
	}
	return -waste
}

// score weighs host x for the compiled request.
func score(c *compiled, x *hostIdx, used *Resources) int64 {
	if c.bare {
		n := c.needOn(x)
		return weighBestFit(x, &n)
	}
	if c.weigher == WeighPack {
		return weighPack(x, used)
	}
	return weighSpread(x, used)
}
