package agent

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
)

// GuestDriver makes the host's guests match their specs; compute.Driver
// is the real one. Nothing in it removes a guest for being absent from the
// desired set: only Ensure of a spec with desired state "deleted" removes
// one, and the agent builds such a spec only from an explicit deletion
// recorded by corrald.
type GuestDriver interface {
	// Building reports whether Ensure would create the guest (so the
	// agent reports "building" first).
	Building(g types.GuestSpec) bool
	// Ensure makes one guest match its spec, changing only what differs,
	// and returns what it observes. A spec with desired state "deleted"
	// removes the guest (idempotent).
	Ensure(ctx context.Context, g types.GuestSpec) types.GuestStatus
	// Managed lists the host's managed guests as the hypervisor has them,
	// known or not. It only reads.
	Managed(ctx context.Context) ([]types.UnknownGuest, error)
	// Sweep removes what needs no explicit deletion (policing of gone
	// taps, trashed disks past their grace period) and tells the image
	// cache which images are in use. It never removes a guest or its disk.
	Sweep(specs []types.GuestSpec) error
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
	hostID   string                     // of the latest desired set
	specs    map[string]types.GuestSpec // latest desired set and deletions
	order    []string
	inflight map[string]bool
	again    map[string]bool // changed while in flight: run again
	// running holds the claimed RAM of the guests last seen running, for
	// the heartbeat (Usage.GuestClaimRAMMiB).
	running map[string]int64
	// changedAt holds when a guest's desired change arrived, until the
	// guest has been reconciled to it (corral_agent_reconcile_lag_seconds).
	changedAt map[string]time.Time

	reports *reporter
}

func (a *Agent) runGuests(ctx context.Context) {
	l := &guestLoop{a: a, driver: a.cfg.Guests, wait: a.cfg.WatchWait, resync: a.cfg.Resync,
		sem: make(chan struct{}, a.cfg.GuestWorkers), specs: map[string]types.GuestSpec{},
		inflight: map[string]bool{}, again: map[string]bool{}, running: map[string]int64{}, changedAt: map[string]time.Time{}}
	a.mu.Lock()
	a.guests = l
	a.mu.Unlock()
	l.reports = &reporter{a: a, pending: map[string]types.GuestStatus{}, kick: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.reports.run(ctx) }()
	go func() { defer wg.Done(); l.resyncLoop(ctx) }()
	if a.cfg.Consoles != nil {
		every := a.cfg.ConsoleInterval
		if every <= 0 {
			every = DefaultConsoleInterval
		}
		wg.Add(1)
		go func() { defer wg.Done(); l.runConsoles(ctx, a.cfg.Consoles, every) }()
		if w, ok := a.cfg.Consoles.(ConsoleWriter); ok {
			wg.Add(1)
			go func() { defer wg.Done(); l.runConsoleInput(ctx, w) }()
		}
	}
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
			l.a.metrics.wakeups.WithLabelValues("error").Inc()
			l.reports.forgetSent()
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
			l.a.metrics.wakeups.WithLabelValues("unchanged").Inc()
			continue
		}
		l.a.metrics.wakeups.WithLabelValues("changed").Inc()
		version = hg.Version
		l.a.log.Debug("desired guests changed", "version", version, "guests", len(hg.Guests), "tombstones", len(hg.Tombstones))
		l.apply(ctx, hg)
	}
}

// apply takes a new desired set: every guest is reconciled, and guests
// named by an unconfirmed tombstone are removed. A managed guest in
// neither is reported as unknown, never removed: absence from the set is
// no order (a database restored from a backup, a wrong host ID, a bug that
// empties the set would otherwise destroy running guests).
func (l *guestLoop) apply(ctx context.Context, hg types.HostGuests) {
	l.mu.Lock()
	now := time.Now()
	old := l.specs
	l.specs = make(map[string]types.GuestSpec, len(hg.Guests)+len(hg.Tombstones))
	l.order = l.order[:0]
	for _, g := range hg.Guests {
		l.specs[g.ServerID] = g
		l.order = append(l.order, g.ServerID)
	}
	for _, t := range hg.Tombstones {
		if _, ok := l.specs[t.ServerID]; ok || t.Confirmed || t.ServerID == "" {
			continue
		}
		l.specs[t.ServerID] = types.GuestSpec{ServerID: t.ServerID, DesiredState: types.DesiredDeleted, Revision: t.Generation}
		l.order = append(l.order, t.ServerID)
	}
	for id, g := range l.specs {
		if was, ok := old[id]; (!ok || was.Revision != g.Revision || was.DesiredState != g.DesiredState) && l.changedAt[id].IsZero() {
			l.changedAt[id] = now
		}
	}
	for id := range l.changedAt {
		if _, ok := l.specs[id]; !ok {
			delete(l.changedAt, id)
		}
	}
	ids := append([]string(nil), l.order...)
	l.hostID = hg.HostID
	l.mu.Unlock()
	for _, id := range ids {
		l.dispatch(ctx, id)
	}
	l.survey(ctx)
}

// survey reports the managed guests that are neither desired nor being
// deleted, and sweeps what needs no explicit deletion.
func (l *guestLoop) survey(ctx context.Context) {
	l.mu.Lock()
	hostID := l.hostID
	specs := make([]types.GuestSpec, 0, len(l.specs))
	known := make(map[string]bool, len(l.specs))
	for id, g := range l.specs {
		known[id] = true
		if g.DesiredState != types.DesiredDeleted {
			specs = append(specs, g)
		}
	}
	l.mu.Unlock()
	if hostID == "" {
		return // no desired set yet: nothing is known, nothing reported
	}
	managed, err := l.driver.Managed(ctx)
	if err != nil {
		l.a.log.Warn("cannot list the host's guests; unknown guests not reported", "error", err)
	} else {
		unknown := []types.UnknownGuest{}
		for _, g := range managed {
			if !known[g.ServerID] {
				unknown = append(unknown, g)
			}
		}
		if len(unknown) > 0 {
			ids := make([]string, len(unknown))
			for i, g := range unknown {
				ids[i] = g.ServerID
			}
			l.a.log.Warn("guests corrald has no server for are left running and reported; an admin adopts or deletes them",
				"servers", ids)
		}
		l.reports.setUnknown(hostID, unknown)
	}
	if err := l.driver.Sweep(specs); err != nil {
		l.a.log.Warn("cannot sweep", "error", err)
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
		l.mu.Unlock()
		for _, id := range ids {
			l.dispatch(ctx, id)
		}
		l.survey(ctx)
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
				start := time.Now()
				st := l.driver.Ensure(ctx, g)
				if ctx.Err() == nil {
					l.reports.add(st)
					l.a.metrics.reconcile.WithLabelValues(st.State).Observe(time.Since(start).Seconds())
				}
				l.mu.Lock()
				if at, ok := l.changedAt[id]; ok && ctx.Err() == nil && l.specs[id].Revision == g.Revision {
					l.a.metrics.lag.Observe(time.Since(at).Seconds())
					delete(l.changedAt, id)
				}
				if st.State == types.GuestActive && g.DesiredState != types.DesiredDeleted {
					l.running[id] = g.ClaimRAMMiB
				} else {
					delete(l.running, id)
				}
				l.mu.Unlock()
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

// runningClaims sums the claimed RAM of the guests last seen running:
// their memory shows in a measurement of free memory taken now.
func (l *guestLoop) runningClaims() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var sum int64
	for id, ram := range l.running {
		if g, ok := l.specs[id]; ok && g.DesiredState != types.DesiredDeleted {
			sum += ram
		} else if !ok {
			delete(l.running, id) // gone from the desired set
		}
	}
	return sum
}

func (l *guestLoop) done(id string) {
	l.mu.Lock()
	delete(l.inflight, id)
	delete(l.again, id)
	l.mu.Unlock()
}

// reporter sends guest statuses to corrald as soon as they come, batching
// those that arrive while a report is on its way, and retries failures
// (keeping only each guest's latest status). It sends the host's unknown
// guests when they change.
type reporter struct {
	a       *Agent
	mu      sync.Mutex
	pending map[string]types.GuestStatus
	order   []string
	kick    chan struct{}

	unknown     *[]types.UnknownGuest // to send, if set
	unknownHost string                // the host it was found on
	sentUnknown string                // digest of the last set corrald took
	sentAt      time.Time             // when it took it
}

// unknownRefresh re-sends an unchanged set of unknown guests this often:
// corrald may have lost it (a database restored from a backup).
const unknownRefresh = 10 * time.Minute

// forgetSent makes the next survey send the unknown guests again, after
// corrald was unreachable (it may have come back with another database).
func (r *reporter) forgetSent() {
	r.mu.Lock()
	r.sentUnknown = ""
	r.mu.Unlock()
}

func (r *reporter) add(st types.GuestStatus) {
	r.mu.Lock()
	if _, ok := r.pending[st.ServerID]; !ok {
		r.order = append(r.order, st.ServerID)
	}
	r.pending[st.ServerID] = st
	r.mu.Unlock()
	r.wake()
}

func (r *reporter) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// setUnknown queues the host's unknown guests unless corrald already has
// this very set.
func (r *reporter) setUnknown(hostID string, unknown []types.UnknownGuest) {
	digest := unknownDigest(hostID, unknown)
	r.mu.Lock()
	if digest == r.sentUnknown && r.a.clock.Now().Sub(r.sentAt) < unknownRefresh {
		r.unknown = nil
		r.mu.Unlock()
		return
	}
	r.unknown, r.unknownHost = &unknown, hostID
	r.mu.Unlock()
	r.wake()
}

func unknownDigest(hostID string, unknown []types.UnknownGuest) string {
	ids := make([]string, 0, len(unknown)+1)
	ids = append(ids, hostID)
	for _, g := range unknown {
		ids = append(ids, g.ServerID+"/"+g.State)
	}
	sort.Strings(ids[1:])
	return strings.Join(ids, ",")
}

func (r *reporter) take() (types.GuestReport, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := types.GuestReport{Guests: make([]types.GuestStatus, 0, len(r.order))}
	for _, id := range r.order {
		out.Guests = append(out.Guests, r.pending[id])
	}
	r.pending, r.order = map[string]types.GuestStatus{}, nil
	host := ""
	if r.unknown != nil {
		out.Unknown, host = r.unknown, r.unknownHost
		r.unknown = nil
	}
	return out, host
}

// putBack returns an unsent report, unless newer statuses (or a newer
// unknown set) arrived meanwhile.
func (r *reporter) putBack(rep types.GuestReport, host string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range rep.Guests {
		if _, ok := r.pending[st.ServerID]; !ok {
			r.pending[st.ServerID] = st
			r.order = append(r.order, st.ServerID)
		}
	}
	if rep.Unknown != nil && r.unknown == nil {
		r.unknown, r.unknownHost = rep.Unknown, host
	}
}

// sent records that corrald took a report's unknown set.
func (r *reporter) sent(rep types.GuestReport, host string) {
	if rep.Unknown == nil {
		return
	}
	r.mu.Lock()
	r.sentUnknown, r.sentAt = unknownDigest(host, *rep.Unknown), r.a.clock.Now()
	r.mu.Unlock()
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
			rep, unknownHost := r.take()
			if len(rep.Guests) == 0 && rep.Unknown == nil {
				break
			}
			hostID, token := r.a.credentials()
			if rep.Unknown != nil && unknownHost != hostID {
				// Found for another host ID (re-registered since): the
				// next survey finds them again.
				rep.Unknown = nil
				if len(rep.Guests) == 0 {
					continue
				}
			}
			cctx, cancel := context.WithTimeout(ctx, r.a.cfg.RequestTimeout)
			err := r.a.api.WithToken(token).SendGuestReport(cctx, hostID, rep)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				r.sent(rep, hostID)
				backoff.Reset()
				continue
			}
			var apiErr *client.Error
			if errors.As(err, &apiErr) && apiErr.Status == http.StatusBadRequest {
				r.a.log.Error("corrald rejected a guest report; dropping it", apiAttrs(apiErr)...)
				continue
			}
			r.putBack(rep, hostID)
			wait := backoff.Next()
			r.a.log.Warn("cannot report guest states; retrying", "error", err, "retry_in", wait)
			r.a.clock.Sleep(ctx, wait)
		}
	}
}
