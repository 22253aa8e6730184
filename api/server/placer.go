package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/placement"
)

// placer keeps an in-memory placement snapshot of every host and turns
// decisions into claims in the store.
//
// Decisions are made on the snapshot (milliseconds at 10,000 hosts); the
// claim is a compare-and-swap on each chosen host's generation in the same
// transaction that records the servers. A stale snapshot therefore never
// over-allocates: the swap fails, the placer reloads those hosts and decides
// again. Another corrald replica's claims are seen the same way. The whole
// snapshot is rebuilt every refreshEvery to pick up heartbeats, new hosts and
// aggregate changes.
type placer struct {
	store *store.Store
	now   func() time.Time
	cfg   placement.Config
	// metrics times decisions and counts refusals.
	metrics *metrics

	// mu serialises decisions of this replica, so that its own claims never
	// race each other.
	mu       sync.Mutex
	snap     *placement.Snapshot
	loadedAt time.Time
	traits   map[string][]string // aggregate ID → traits
}

const (
	refreshEvery = 2 * time.Second
	claimRetries = 32
)

func newPlacer(st *store.Store, now func() time.Time, cfg placement.Config, m *metrics) *placer {
	return &placer{store: st, now: now, cfg: cfg, metrics: m}
}

// invalidate makes the next decision rebuild the snapshot (hosts or
// aggregates changed through this replica).
func (p *placer) invalidate() {
	p.mu.Lock()
	p.snap = nil
	p.mu.Unlock()
}

// load rebuilds the snapshot from the store. Called with mu held.
func (p *placer) load(ctx context.Context) error {
	aggs, err := listAll(ctx, p.store.ListAggregates)
	if err != nil {
		return err
	}
	cfg := p.cfg
	cfg.Aggregates = map[string]placement.AggregatePolicy{}
	traits := map[string][]string{}
	reserved := map[string]types.Aggregate{}
	for _, a := range aggs {
		cfg.Aggregates[a.ID] = placement.AggregatePolicy{CPURatio: a.CPUAllocationRatio, RAMRatio: a.RAMAllocationRatio,
			Weigher: placement.Weigher(a.Weigher)}
		traits[a.ID] = a.Traits
		reserved[a.ID] = a
	}
	hosts, err := listAll(ctx, p.store.ListHosts)
	if err != nil {
		return err
	}
	ph := make([]placement.Host, len(hosts))
	for i, h := range hosts {
		ph[i] = toPlacementHost(h, traits, reserved)
	}
	snap, err := placement.NewSnapshot(cfg, ph)
	if err != nil {
		return fmt.Errorf("placement snapshot: %w", err)
	}
	p.snap, p.loadedAt, p.traits = snap, p.now(), traits
	return nil
}

// reload refreshes the named hosts after a lost compare-and-swap.
func (p *placer) reload(ctx context.Context, ids ...string) error {
	reserved := map[string]types.Aggregate{}
	for _, id := range ids {
		h, err := p.store.GetHost(ctx, id)
		if err != nil {
			return err
		}
		for _, a := range h.AggregateIDs {
			if ag, err := p.store.GetAggregate(ctx, a); err == nil {
				reserved[a] = ag
			}
		}
		p.snap.Update(toPlacementHost(h, p.traits, reserved))
	}
	return nil
}

func toPlacementHost(h types.Host, traits map[string][]string, aggs map[string]types.Aggregate) placement.Host {
	ph := placement.Host{ID: h.ID, Region: h.RegionID, Zone: h.ZoneID, Aggregates: h.AggregateIDs, Kind: placement.KindVM,
		State: placement.HostState(h.State), VCPUs: h.Inventory.CPUs, MemoryMiB: h.Inventory.RAMMiB, DiskGiB: h.Inventory.DiskGiB,
		HugepageSizeKiB: placement.DefaultHugepageSizeKiB, HugepagesTotal: h.Inventory.Hugepages["2048"],
		Used: placement.Resources{VCPUs: h.Allocated.VCPUs, MemoryMiB: h.Allocated.RAMMiB, DiskGiB: h.Allocated.DiskGiB,
			Hugepages: h.Allocated.Hugepages, Guests: h.Allocated.Guests},
		Generation: h.Generation,
		Heartbeat:  placement.Heartbeat{At: h.LastHeartbeat, FreeMemoryMiB: h.FailsafeFreeMiB}}
	seen := map[string]bool{}
	for _, a := range h.AggregateIDs {
		for _, t := range traits[a] {
			if !seen[t] {
				ph.Traits = append(ph.Traits, t)
				seen[t] = true
			}
		}
		// The host keeps back the most any of its aggregates reserves.
		ph.Reserved.MemoryMiB = max(ph.Reserved.MemoryMiB, aggs[a].ReservedMemoryMiB)
		ph.Reserved.VCPUs = max(ph.Reserved.VCPUs, aggs[a].ReservedCPUs)
	}
	return ph
}

// listAll reads every page of a list.
func listAll[T any](ctx context.Context, list func(context.Context, store.ListOptions) (types.List[T], error)) ([]T, error) {
	var out []T
	opts := store.ListOptions{Limit: 1000}
	for {
		page, err := list(ctx, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if page.NextCursor == "" {
			return out, nil
		}
		opts.After = page.NextCursor
	}
}

// decide runs fn on a fresh-enough snapshot, then commit with its decision;
// a lost compare-and-swap reloads the host and decides again. fn must not
// change the snapshot; the decision is applied to it after commit succeeds.
func (p *placer) decide(ctx context.Context, fn func(*placement.Snapshot) (placement.Decision, error),
	commit func(placement.Decision) error) (placement.Decision, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if p.snap == nil || p.now().Sub(p.loadedAt) > refreshEvery {
			if err := p.load(ctx); err != nil {
				return placement.Decision{}, err
			}
		}
		start := time.Now()
		d, err := fn(p.snap)
		if p.metrics != nil { // every decision, those after a lost race included
			p.metrics.observeDecision(time.Since(start), commit == nil, err)
		}
		if err != nil {
			return d, err
		}
		if commit == nil { // dry run
			return d, nil
		}
		err = commit(d)
		var stale *store.StaleHostError
		if errors.As(err, &stale) {
			if attempt >= claimRetries {
				return d, types.Errorf(types.CodeUnavailable,
					"placement lost %d compare-and-swap races in a row on busy hosts; retry", attempt+1)
			}
			// First, refresh just the host that moved on; if races go on
			// (another replica is claiming on the same hosts), wait a
			// moment so the replicas fall out of step, and rebuild the
			// whole snapshot. Every lost race is another claim's win, so
			// the fleet as a whole always makes progress.
			if attempt == 0 {
				err = p.reload(ctx, stale.HostID)
			} else {
				time.Sleep(time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 4))))
				err = p.load(ctx)
			}
			if err != nil {
				return d, err
			}
			continue
		}
		if err != nil {
			return d, err
		}
		if err := p.snap.Apply(d); err != nil {
			p.snap = nil // out of step: rebuild on the next decision
		}
		return d, nil
	}
}

// hostClaims turns a decision into store claims. Each carries the memory
// failsafe, so the store re-checks it against the host row in the claim's
// compare-and-swap: a snapshot that missed another replica's claims, or
// was rebuilt between a heartbeat and a claim, cannot overrun it.
func (p *placer) hostClaims(d placement.Decision) []store.HostClaim {
	margin := p.cfg.FailsafeMarginMiB
	switch {
	case margin == 0:
		margin = placement.DefaultFailsafeMarginMiB
	case margin < 0:
		margin = 0
	}
	hc := d.HostClaims()
	out := make([]store.HostClaim, len(hc))
	for i, c := range hc {
		out[i] = store.HostClaim{HostID: c.HostID, Generation: c.Generation, Delta: allocation(c.Resources),
			Failsafe: true, MarginMiB: margin}
	}
	return out
}

func allocation(r placement.Resources) store.Allocation {
	return store.Allocation{VCPUs: r.VCPUs, RAMMiB: r.MemoryMiB, DiskGiB: r.DiskGiB, Hugepages: r.Hugepages, Guests: r.Guests}
}

// noValidHost is the 409 for a refused placement, carrying the engine's
// explanation.
func noValidHost(err error) error {
	var fe *placement.FitError
	if errors.As(err, &fe) {
		return types.Errorf(types.CodeNoValidHost, "%s", fe.Explanation.Summary).WithDetail("explanation", fe.Explanation)
	}
	if errors.Is(err, placement.ErrInvalidRequest) {
		return types.Errorf(types.CodeInvalidArgument, "%v", err)
	}
	return err
}

// forget refreshes hosts whose allocations changed outside a decision (a
// server deleted), so the snapshot does not wait for its next rebuild.
func (p *placer) forget(ctx context.Context, hostIDs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.snap == nil {
		return
	}
	for _, id := range hostIDs {
		if id == "" {
			continue
		}
		if err := p.reload(ctx, id); err != nil {
			p.snap = nil
			return
		}
	}
}
