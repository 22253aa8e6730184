package server

import (
	"net"
	"regexp"
	"slices"

	"github.com/corral-cloud/corral/api/types"
)

// Limits on names and sizes. Names are what scripts and DNS use: letters,
// digits, '.', '_' and '-', starting and ending with a letter or digit.
const (
	maxNameLen        = 63
	maxHostNameLen    = 253
	maxDescriptionLen = 1024
	maxTraits         = 64
	maxVCPUs          = 4096
	maxRAMMiB         = 64 << 20 // 64 TiB
	maxDiskGiB        = 1 << 20  // 1 PiB
	maxRatio          = 64
)

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)
	traitRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_]{0,63}$`)
)

func checkName(field, v string, max int) error {
	switch {
	case v == "":
		return types.FieldError(field, "is required")
	case len(v) > max:
		return types.FieldError(field, "is %d characters, the limit is %d", len(v), max).WithDetail("limit", max)
	case !nameRE.MatchString(v):
		return types.FieldError(field, "%q may hold only letters, digits, '.', '_' and '-', and must start and end with a letter or digit", v)
	}
	return nil
}

func checkDescription(v string) error {
	if len(v) > maxDescriptionLen {
		return types.FieldError("description", "is %d characters, the limit is %d", len(v), maxDescriptionLen)
	}
	return nil
}

func checkRange(field string, v, lo, hi int64) error {
	if v < lo || v > hi {
		return types.FieldError(field, "is %d, must be from %d to %d", v, lo, hi).WithDetail("min", lo).WithDetail("max", hi)
	}
	return nil
}

func checkOneOf(field, v string, allowed ...string) error {
	if !slices.Contains(allowed, v) {
		return types.FieldError(field, "is %q, must be one of %v", v, sorted(allowed...)).WithDetail("allowed", sorted(allowed...))
	}
	return nil
}

// first returns the first non-nil error.
func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func checkFlavor(in types.FlavorCreate) error {
	return first(
		checkName("name", in.Name, maxNameLen),
		checkOneOf("kind", in.Kind, types.KindVM, types.KindBaremetal),
		checkRange("vcpus", in.VCPUs, 1, maxVCPUs),
		checkRange("ram_mib", in.RAMMiB, 1, maxRAMMiB),
		checkRange("disk_gib", in.DiskGiB, 0, maxDiskGiB),
		checkRange("qos.net_in_kbps", in.QoS.NetInKbps, 0, 400_000_000),
		checkRange("qos.net_out_kbps", in.QoS.NetOutKbps, 0, 400_000_000),
		checkRange("qos.disk_iops", in.QoS.DiskIOPS, 0, 100_000_000),
		checkRange("qos.disk_bytes_sec", in.QoS.DiskBytesSec, 0, 1<<40),
		checkDescription(in.Description),
		func() error {
			if in.Hugepages && in.Kind == types.KindBaremetal {
				return types.FieldError("hugepages", "applies to vm flavors only")
			}
			return nil
		}(),
	)
}

func checkAggregate(a types.Aggregate) error {
	if err := first(
		checkName("name", a.Name, maxNameLen),
		checkOneOf("weigher", a.Weigher, "pack", "spread"),
		checkRange("reserved_memory_mib", a.ReservedMemoryMiB, 0, maxRAMMiB),
		checkRange("reserved_cpus", a.ReservedCPUs, 0, maxVCPUs),
		checkDescription(a.Description),
	); err != nil {
		return err
	}
	for _, r := range []struct {
		field string
		v     float64
	}{{"cpu_allocation_ratio", a.CPUAllocationRatio}, {"ram_allocation_ratio", a.RAMAllocationRatio}} {
		if !(r.v > 0 && r.v <= maxRatio) {
			return types.FieldError(r.field, "is %g, must be above 0 and at most %d", r.v, maxRatio)
		}
	}
	return checkTraits(a.Traits)
}

func checkTraits(traits []string) error {
	if len(traits) > maxTraits {
		return types.FieldError("traits", "has %d traits, the limit is %d", len(traits), maxTraits)
	}
	seen := map[string]bool{}
	for _, t := range traits {
		if !traitRE.MatchString(t) {
			return types.FieldError("traits", "%q must be lower-case letters, digits and '_'", t)
		}
		if seen[t] {
			return types.FieldError("traits", "%q is listed twice", t)
		}
		seen[t] = true
	}
	return nil
}

// unicastMAC parses an Ethernet MAC that may sit on a NIC: 6 bytes, not
// multicast (which includes broadcast), not all zeros. It returns the MAC
// in lower case with colons.
func unicastMAC(field, v string) (string, error) {
	hw, err := net.ParseMAC(v)
	switch {
	case err != nil || len(hw) != 6:
		return "", types.FieldError(field, "%q is not an Ethernet MAC address", v)
	case hw[0]&1 == 1:
		return "", types.FieldError(field, "%s is a multicast or broadcast address; a NIC needs a unicast MAC", hw)
	case hw.String() == "00:00:00:00:00:00":
		return "", types.FieldError(field, "%s is the zero address; a NIC needs a unicast MAC", hw)
	}
	return hw.String(), nil
}
