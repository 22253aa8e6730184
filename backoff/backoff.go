package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff computes the waits between failed attempts: Initial, then twice
// the previous wait, never more than Max, each shortened by a random share
// of up to Jitter so that agents that lost corrald together do not return
// together. It is not safe for concurrent use.
type Backoff struct {
	// Initial is the first wait (default 1 s).
	Initial time.Duration
	// Max caps the wait (default 30 s). Jitter only ever shortens a wait,
	// so the cap holds.
	Max time.Duration
	// Jitter is the largest share of a wait that is taken off at random,
	// from 0 (none) to 1.
	Jitter float64
	// Rand draws the jitter; nil means the global source.
	Rand *rand.Rand

	attempt int
}

// Default is the agents' retry policy: 1 s doubling to 30 s, minus up to
// 20 % jitter.
func Default() Backoff {
	return Backoff{Initial: time.Second, Max: 30 * time.Second, Jitter: 0.2}
}

// Next returns the wait before the next attempt and counts one more
// failure.
func (b *Backoff) Next() time.Duration {
	initial, ceiling := b.Initial, b.Max
	if initial <= 0 {
		initial = time.Second
	}
	if ceiling < initial {
		ceiling = max(initial, 30*time.Second)
	}
	d := initial
	for i := 0; i < b.attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	b.attempt++
	if b.Jitter > 0 {
		f := rand.Float64
		if b.Rand != nil {
			f = b.Rand.Float64
		}
		d -= time.Duration(float64(d) * min(b.Jitter, 1) * f())
	}
	return d
}

// Reset starts over at Initial, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Failures returns how many waits Next has handed out since the last Reset.
func (b *Backoff) Failures() int { return b.attempt }

// Sleep waits for d, or until ctx is done and then returns ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
