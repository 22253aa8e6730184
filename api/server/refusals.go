package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// Bounds of the refusal log.
const (
	// refusalWindow is how long refusals of one caller, route and status
	// are gathered into one audit row after the first one is written.
	refusalWindow = 10 * time.Second
	// refusalKeys bounds the callers × routes × statuses gathered at once;
	// past it, refusals are counted in one overflow row per window.
	refusalKeys = 4096
)

// refusalLog audits refused calls without letting a flood of them flood the
// audit log (a reader's refused POSTs once wrote 28,000 rows in 10 s): the
// first refusal of a caller, method, route and status is written at once
// with its request ID; the ones that follow within refusalWindow are
// counted and written as one row (Count > 1) when the window closes. The
// number of rows written is thus bounded by the distinct keys per window,
// and the memory by refusalKeys.
type refusalLog struct {
	store *store.Store
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	pending  map[refusalKey]*refusalGroup
	overflow *refusalGroup
}

type refusalKey struct {
	token, method, route string
	status               int
}

type refusalGroup struct {
	first time.Time
	entry types.AuditEntry // the latest refusal, as the group's sample
	count int              // refusals after the first, not yet written
}

func newRefusalLog(st *store.Store, log *slog.Logger, now func() time.Time) *refusalLog {
	return &refusalLog{store: st, log: log, now: now, pending: map[refusalKey]*refusalGroup{}}
}

// add records one refused call.
func (r *refusalLog) add(ctx context.Context, e types.AuditEntry) {
	now := r.now()
	k := refusalKey{token: e.TokenID, method: e.Method, route: e.Path, status: e.Status}
	r.mu.Lock()
	due := r.takeDue(now)
	g, seen := r.pending[k]
	write := false
	switch {
	case seen:
		g.entry, g.count = e, g.count+1
	case len(r.pending) < refusalKeys:
		r.pending[k] = &refusalGroup{first: now}
		write = true
	default:
		if r.overflow == nil {
			r.overflow = &refusalGroup{first: now}
		}
		r.overflow.entry, r.overflow.count = e, r.overflow.count+1
	}
	r.mu.Unlock()
	if write {
		due = append(due, e)
	}
	r.write(ctx, due)
}

// takeDue removes the groups whose window has closed and returns their
// aggregate rows. Called with mu held.
func (r *refusalLog) takeDue(now time.Time) []types.AuditEntry {
	var out []types.AuditEntry
	for k, g := range r.pending {
		if now.Sub(g.first) < refusalWindow {
			continue
		}
		if g.count > 0 {
			e := g.entry
			e.Count = g.count
			out = append(out, e)
		}
		delete(r.pending, k)
	}
	if g := r.overflow; g != nil && now.Sub(g.first) >= refusalWindow {
		e := g.entry
		e.Count, e.TokenID, e.Path, e.ResourceID = g.count, "*", "*", ""
		out = append(out, e)
		r.overflow = nil
	}
	return out
}

// flush writes what has come due; the maintenance loop calls it so that a
// flood that stopped is still written.
func (r *refusalLog) flush(ctx context.Context) {
	r.mu.Lock()
	due := r.takeDue(r.now())
	r.mu.Unlock()
	r.write(ctx, due)
}

func (r *refusalLog) write(ctx context.Context, entries []types.AuditEntry) {
	if len(entries) == 0 {
		return
	}
	if err := r.store.AppendAudit(ctx, entries); err != nil {
		r.log.Error("write audit entries of refused calls", "error", err, "count", len(entries))
	}
}
