package agent

import (
	"context"
	"time"

	"github.com/corral-cloud/corral/backoff"
)

// Backoff is the one retry pacing helper (package backoff), named here
// for the agent's configuration.
type Backoff = backoff.Backoff

// DefaultBackoff is the agent's retry policy: backoff.Default.
func DefaultBackoff() Backoff { return backoff.Default() }

// Clock tells the time and waits. Tests replace it to run the agent loop
// without real waits.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d, or until ctx is done and then returns ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

// RealClock is the Clock of the real world.
type RealClock struct{}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

// Sleep implements Clock.
func (RealClock) Sleep(ctx context.Context, d time.Duration) error { return backoff.Sleep(ctx, d) }
