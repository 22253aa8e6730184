// Package backoff paces retries: capped exponential waits with jitter. It
// is the one backoff helper of Corral: the host agent's loops, the
// bare-metal conductor's switch moves and the other retry loops use it, so
// that every retry is bounded the same way.
package backoff
