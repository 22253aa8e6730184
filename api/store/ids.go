package store

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// Kind prefixes of IDs.
const (
	prefixRegion    = "rgn-"
	prefixZone      = "zone-"
	prefixAggregate = "agg-"
	prefixHost      = "host-"
	prefixFlavor    = "flv-"
	prefixImage     = "img-"
	prefixProject   = "prj-"
	prefixServer    = "srv-"
	prefixToken     = "tok-"
	prefixAudit     = "aud-"
)

var idState struct {
	sync.Mutex
	ms, seq uint64
}

// NewID returns prefix followed by 12 hex digits of unix milliseconds and
// 12 hex digits that start random and count up within a millisecond, so
// that the IDs one process makes sort in creation order and pagination by
// ID follows it.
func NewID(prefix string) string {
	idState.Lock()
	ms := uint64(time.Now().UnixMilli())
	if ms > idState.ms {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(err) // crypto/rand never fails on Linux
		}
		// Leave headroom so the counter never carries into the time.
		idState.ms, idState.seq = ms, binary.BigEndian.Uint64(b[:])&0x7fffffffffff
	} else {
		idState.seq++
	}
	ms, seq := idState.ms, idState.seq
	idState.Unlock()
	return fmt.Sprintf("%s%012x%012x", prefix, ms, seq)
}

// micros converts a time to the stored form.
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros converts the stored form back, in UTC.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
