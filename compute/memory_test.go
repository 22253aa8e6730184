package compute

import (
	"testing"

	"libvirt.org/go/libvirt"
)

// TestMemoryUsed: a guest's memory in use comes from its balloon driver's
// view when it reports one, else from its qemu process's resident size,
// capped at the guest's memory.
func TestMemoryUsed(t *testing.T) {
	type stats = map[libvirt.DomainMemoryStatTags]uint64
	tests := []struct {
		name   string
		stats  stats
		memKiB uint64
		want   uint64
	}{
		{"balloon: available minus usable", stats{libvirt.DOMAIN_MEMORY_STAT_AVAILABLE: 1000, libvirt.DOMAIN_MEMORY_STAT_USABLE: 700,
			libvirt.DOMAIN_MEMORY_STAT_UNUSED: 600, libvirt.DOMAIN_MEMORY_STAT_RSS: 900}, 1024, 300},
		{"balloon without usable: minus unused", stats{libvirt.DOMAIN_MEMORY_STAT_AVAILABLE: 1000,
			libvirt.DOMAIN_MEMORY_STAT_UNUSED: 600}, 1024, 400},
		{"no balloon: resident size", stats{libvirt.DOMAIN_MEMORY_STAT_RSS: 200}, 1024, 200},
		{"resident size over the guest's memory: capped", stats{libvirt.DOMAIN_MEMORY_STAT_RSS: 2000}, 1024, 1024},
		{"nothing known", stats{}, 1024, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := memoryUsed(tc.stats, tc.memKiB); got != tc.want {
				t.Errorf("memoryUsed = %d, want %d", got, tc.want)
			}
		})
	}
}
