package placement

import (
	"errors"
	"testing"
	"time"
)

// t0 is the "now" of every test.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const gibMiB = 1024

// noOverhead makes memory arithmetic in tests exact.
var noOverhead = &Overhead{}

// hostBuilder builds a Host fixture: a fresh, empty, up compute host with
// 32 threads, 128 GiB, 1 TB disk in region dc1, zone rack-a, whose
// heartbeat says all its normal memory is free unless told otherwise.
type hostBuilder struct {
	h       Host
	freeSet bool
}

func newHost(id string) *hostBuilder {
	return &hostBuilder{h: Host{
		ID: id, Region: "dc1", Zone: "rack-a", Kind: KindVM, State: StateUp,
		VCPUs: 32, MemoryMiB: 128 * gibMiB, DiskGiB: 1000,
		Heartbeat: Heartbeat{At: t0},
	}}
}

func (b *hostBuilder) inRegion(r string) *hostBuilder      { b.h.Region = r; return b }
func (b *hostBuilder) inZone(z string) *hostBuilder        { b.h.Zone = z; return b }
func (b *hostBuilder) inAggs(a ...string) *hostBuilder     { b.h.Aggregates = a; return b }
func (b *hostBuilder) withTraits(t ...string) *hostBuilder { b.h.Traits = t; return b }
func (b *hostBuilder) withCPU(n int64) *hostBuilder        { b.h.VCPUs = n; return b }
func (b *hostBuilder) withRAM(mib int64) *hostBuilder      { b.h.MemoryMiB = mib; return b }
func (b *hostBuilder) withDisk(gib int64) *hostBuilder     { b.h.DiskGiB = gib; return b }
func (b *hostBuilder) withState(s HostState) *hostBuilder  { b.h.State = s; return b }
func (b *hostBuilder) withGen(g int64) *hostBuilder        { b.h.Generation = g; return b }
func (b *hostBuilder) withOverhead(o Overhead) *hostBuilder {
	b.h.Overhead = &o
	return b
}

func (b *hostBuilder) withHugepages(pages, sizeKiB int64) *hostBuilder {
	b.h.HugepagesTotal, b.h.HugepageSizeKiB = pages, sizeKiB
	return b
}

func (b *hostBuilder) withReserved(cpu, mib int64) *hostBuilder {
	b.h.Reserved = Resources{VCPUs: cpu, MemoryMiB: mib}
	return b
}

func (b *hostBuilder) used(cpu, mib int64) *hostBuilder {
	b.h.Used.VCPUs, b.h.Used.MemoryMiB = cpu, mib
	b.h.Used.Guests++
	return b
}

func (b *hostBuilder) usedDisk(gib int64) *hostBuilder     { b.h.Used.DiskGiB = gib; return b }
func (b *hostBuilder) usedPages(n int64) *hostBuilder      { b.h.Used.Hugepages = n; return b }
func (b *hostBuilder) usedGuests(n int64) *hostBuilder     { b.h.Used.Guests = n; return b }
func (b *hostBuilder) heartbeat(at time.Time) *hostBuilder { b.h.Heartbeat.At = at; return b }

func (b *hostBuilder) measuredFree(mib int64) *hostBuilder {
	b.h.Heartbeat.FreeMemoryMiB, b.freeSet = mib, true
	return b
}

func (b *hostBuilder) bare() *hostBuilder {
	b.h.Kind = KindBareMetal
	b.h.Heartbeat = Heartbeat{}
	return b
}

func (b *hostBuilder) build() Host {
	h := b.h
	if !b.freeSet && h.Kind != KindBareMetal {
		pageKiB := h.HugepageSizeKiB
		if pageKiB == 0 {
			pageKiB = DefaultHugepageSizeKiB
		}
		h.Heartbeat.FreeMemoryMiB = h.MemoryMiB - h.HugepagesTotal*pageKiB/1024 - h.Used.MemoryMiB
	}
	h.Aggregates = append([]string(nil), h.Aggregates...)
	h.Traits = append([]string(nil), h.Traits...)
	return h
}

// hosts builds every builder.
func hosts(bs ...*hostBuilder) []Host {
	out := make([]Host, len(bs))
	for i, b := range bs {
		out[i] = b.build()
	}
	return out
}

// testConfig has no overhead and a 2 GiB margin so numbers stay readable.
func testConfig() Config { return Config{Overhead: noOverhead} }

func mustSnapshot(t testing.TB, cfg Config, hs []Host) *Snapshot {
	t.Helper()
	s, err := NewSnapshot(cfg, hs)
	if err != nil {
		t.Fatalf("NewSnapshot: %v", err)
	}
	return s
}

// vmReq asks for a VM of cpu vCPUs and mib MiB at t0.
func vmReq(cpu, mib int64) Request {
	return Request{Flavor: Flavor{VCPUs: cpu, MemoryMiB: mib}, Now: t0}
}

// chosen returns the host IDs of a decision's claims.
func chosen(d Decision) []string {
	out := []string{}
	for _, c := range d.Claims {
		out = append(out, c.HostID)
	}
	return out
}

// zonesOf returns the zone of every claim.
func zonesOf(d Decision) []string {
	out := []string{}
	for _, c := range d.Claims {
		out = append(out, c.Zone)
	}
	return out
}

// zoneCounts counts claims per zone.
func zoneCounts(d Decision) map[string]int {
	out := map[string]int{}
	for _, c := range d.Claims {
		out[c.Zone]++
	}
	return out
}

// reasonCounts maps reason codes to counts.
func reasonCounts(e Explanation) map[Reason]int {
	out := map[Reason]int{}
	for _, r := range e.Reasons {
		out[r.Reason] = r.Count
	}
	return out
}

func isInvalid(err error) bool { return errors.Is(err, ErrInvalidRequest) }
