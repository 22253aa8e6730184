package agent

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
)

// GuestDriver makes the host's guests match their specs; compute.Driver
// is the real one.
type GuestDriver interface {
	// Building reports whether Ensure would create the guest (so the
	// agent reports "building" first).
	Building(g types.GuestSpec) bool
	// Ensure makes one guest match its spec, changing only what differs,
	// and returns what it observes.
	Ensure(ctx context.Context, g types.GuestSpec) types.GuestStatus
	// Cleanup removes managed guests that are not in specs (orphans of
	// servers deleted while the agent was away) and what gone guests
	// left behind; it returns the removed domains.
	Cleanup(specs []types.GuestSpec) ([]string, error)
}

// Defaults of the guest loop.
const (
	// DefaultWatchWait is how long one watch call waits for a change.
	DefaultWatchWait = 30 * time.Second
	// DefaultResync re-checks every guest this often, refreshing its
	// counters and healing drift (a QoS rule removed by hand).
	DefaultResync = 30 * time.Second
	// DefaultGuestWorkers bounds the guests reconciled at once.
	DefaultGuestWorkers = 4
)

// credentials returns the host ID and agent token in use.
func (a *Agent) credentials() (string, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state.HostID, a.state.Token
}

// guestLoop watches the host's desired guests and reconciles them. It
// never touches a guest because corrald is unreachable: a failed watch
// keeps everything as it is and is retried with backoff.
type guestLoop struct {
	a      *Agent
	driver GuestDriver
	wait   time.Duration
	resync time.Duration
	sem    chan struct{}

	mu       sync.Mutex
	specs    map[string]types.GuestSpec // latest desired set
	order    []string
	inflight map[string]bool
	again    map[string]bool // changed while in flight: run again

	reports *reporter
}

func (a *Agent) runGuests(ctx context.Context) {
	l := &guestLoop{a: a, driver: a.cfg.Guests, wait: a.cfg.WatchWait, resync: a.cfg.Resync,
		sem: make(chan struct{}, a.cfg.GuestWorkers), specs: map[string]types.GuestSpec{},
		inflight: map[string]bool{}, again: map[string]bool{}}
	l.reports = &reporter{a: a, pending: map[string]types.GuestStatus{}, kick: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.reports.run(ctx) }()
	go func() { defer wg.Done(); l.resyncLoop(ctx) }()
	l.watch(ctx)
	wg.Wait()
}

func (l *guestLoop) watch(ctx context.Context) {
	backoff := DefaultBackoff()
	version := ""
	for ctx.Err() == nil {
		hostID, token := l.a.credentials()
		if hostID == "" || token == "" {
			l.a.clock.Sleep(ctx, time.Second)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, l.wait+l.a.cfg.RequestTimeout)
		hg, err := l.a.api.WithToken(token).WatchGuests(cctx, hostID, version, l.wait)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			wait := backoff.Next()
			var apiErr *client.Error
			if errors.As(err, &apiErr) {
				l.a.log.Warn("corrald refused the guest watch; guests stay as they are", append(apiAttrs(apiErr), "retry_in", wait)...)
			} else {
				l.a.log.Warn("cannot watch desired guests; guests stay as they are", "error", err, "retry_in", wait)
			}
			l.a.clock.Sleep(ctx, wait)
			continue
		}
		backoff.Reset()
		if hg.Version == version {
			continue
		}
		version = hg.Version
		l.a.log.Debug("desired guests changed", "version", version, "guests", len(hg.Guests))
		l.apply(ctx, hg.Guests)
	}
}

// apply takes a new desired set: orphans go, and every guest is
// reconciled.
func (l *guestLoop) apply(ctx context.Context, specs []types.GuestSpec) {
	l.mu.Lock()
	l.specs = make(map[string]types.GuestSpec, len(specs))
	l.order = l.order[:0]
	for _, g := range specs {
		l.specs[g.ServerID] = g
		l.order = append(l.order, g.ServerID)
	}
	ids := append([]string(nil), l.order...)
	l.mu.Unlock()
	if removed, err := l.driver.Cleanup(specs); err != nil {
		l.a.log.Warn("cannot clean up orphan guests", "error", err)
	} else if len(removed) > 0 {
		l.a.log.Info("removed orphan guests: their servers no longer exist", "domains", removed)
	}
	for _, id := range ids {
		l.dispatch(ctx, id)
	}
}

func (l *guestLoop) resyncLoop(ctx context.Context) {
	t := time.NewTicker(l.resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		ids := append([]string(nil), l.order...)
		specs := make([]types.GuestSpec, 0, len(l.specs))
		for _, g := range l.specs {
			specs = append(specs, g)
		}
		l.mu.Unlock()
		if len(specs) > 0 {
			if _, err := l.driver.Cleanup(specs); err != nil {
				l.a.log.Warn("cannot clean up", "error", err)
			}
		}
		for _, id := range ids {
			l.dispatch(ctx, id)
		}
	}
}

// dispatch reconciles one guest in a worker, unless one already runs for
// it, in which case that worker runs again with the latest spec.
func (l *guestLoop) dispatch(ctx context.Context, id string) {
	l.mu.Lock()
	if l.inflight[id] {
		l.again[id] = true
		l.mu.Unlock()
		return
	}
	l.inflight[id] = true
	l.mu.Unlock()
	go func() {
		for {
			select {
			case l.sem <- struct{}{}:
			case <-ctx.Done():
				l.done(id)
				return
			}
			l.mu.Lock()
			g, ok := l.specs[id]
			l.mu.Unlock()
			if ok {
				if l.driver.Building(g) {
					l.reports.add(types.GuestStatus{ServerID: id, State: types.GuestBuilding})
				}
				st := l.driver.Ensure(ctx, g)
				if ctx.Err() == nil {
					l.reports.add(st)
				}
			}
			<-l.sem
			l.mu.Lock()
			rerun := l.again[id]
			delete(l.again, id)
			if !rerun {
				delete(l.inflight, id)
			}
			l.mu.Unlock()
			if !rerun || ctx.Err() != nil {
				if rerun {
					l.done(id)
				}
				return
			}
		}
	}()
}

func (l *guestLoop) done(id string) {
	l.mu.Lock()
	delete(l.inflight, id)
	delete(l.again, id)
	l.mu.Unlock()
}

// reporter sends guest statuses to corrald as soon as they come, batching
// those that arrive while a report is on its way, and retries failures
// (keeping only each guest's latest status).
type reporter struct {
	a       *Agent
	mu      sync.Mutex
	pending map[string]types.GuestStatus
	order   []string
	kick    chan struct{}
}

func (r *reporter) add(st types.GuestStatus) {
	r.mu.Lock()
	if _, ok := r.pending[st.ServerID]; !ok {
		r.order = append(r.order, st.ServerID)
	}
	r.pending[st.ServerID] = st
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *reporter) take() []types.GuestStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]types.GuestStatus, 0, len(r.order))
	for _, id := range r.order {
		out = append(out, r.pending[id])
	}
	r.pending, r.order = map[string]types.GuestStatus{}, nil
	return out
}

// putBack returns unsent statuses, unless newer ones arrived meanwhile.
func (r *reporter) putBack(sts []types.GuestStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range sts {
		if _, ok := r.pending[st.ServerID]; !ok {
			r.pending[st.ServerID] = st
			r.order = append(r.order, st.ServerID)
		}
	}
}

func (r *reporter) run(ctx context.Context) {
	backoff := DefaultBackoff()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		for {
			batch := r.take()
			if len(batch) == 0 {
				break
			}
			hostID, token := r.a.credentials()
			cctx, cancel := context.WithTimeout(ctx, r.a.cfg.RequestTimeout)
			err := r.a.api.WithToken(token).ReportGuests(cctx, hostID, batch)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				backoff.Reset()
				continue
			}
			var apiErr *client.Error
			if errors.As(err, &apiErr) && apiErr.Status == http.StatusBadRequest {
				r.a.log.Error("corrald rejected a guest report; dropping it", apiAttrs(apiErr)...)
				continue
			}
			r.putBack(batch)
			wait := backoff.Next()
			r.a.log.Warn("cannot report guest states; retrying", "error", err, "retry_in", wait)
			r.a.clock.Sleep(ctx, wait)
		}
	}
}
