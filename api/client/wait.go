package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// Until is the state a wait ends in.
type Until string

// What a wait can end on.
const (
	// UntilActive: the server is active (a VM's guest runs, a bare-metal
	// server's node is deployed).
	UntilActive Until = types.ServerActive
	// UntilStopped: the server is stopped.
	UntilStopped Until = types.ServerStopped
	// UntilGone: the server is deleted (its host or node let go of it).
	UntilGone Until = "gone"
)

// Progress is one observation of a wait, reported when something changed.
type Progress struct {
	// Server as last read; zero once Gone.
	Server types.Server
	// Node is a bare-metal server's node, when the caller may read nodes.
	Node *types.Node
	// Gone is set when the server no longer exists.
	Gone bool
	// Elapsed is the time since the wait began.
	Elapsed time.Duration
	// Err is a transient error the wait is riding out (corrald
	// unreachable, 5xx); the wait goes on until its context ends.
	Err error
}

// WaitOptions tunes Servers.Wait.
type WaitOptions struct {
	// Interval between reads; 0 means one second.
	Interval time.Duration
	// Progress, when set, is called with the first observation and every
	// change of the server's state, desired state or node state.
	Progress func(Progress)
}

// WaitError is a wait that cannot reach its state: the server (or its
// node) ended in error, or the server vanished while it was awaited
// active or stopped.
type WaitError struct {
	Server types.Server
	// State is the server's state ("error", or "gone").
	State string
	// Reason is the server's fault, else its node's last error.
	Reason string
}

func (e *WaitError) Error() string {
	name := e.Server.Name
	if name == "" {
		name = e.Server.ID
	}
	if e.Reason == "" {
		return fmt.Sprintf("server %s is %s", name, e.State)
	}
	return fmt.Sprintf("server %s is %s: %s", name, e.State, e.Reason)
}

// Wait polls server id until it reaches until, and returns it then (the
// zero Server for UntilGone). It fails with a *WaitError when the server
// or its bare-metal node goes to error (with the server's fault, or the
// node's last error, as the reason), or vanishes while awaited active or
// stopped; with ctx's error (and the last observation) when ctx ends
// first; at once on an API refusal (401, 403, 400). Unreachable corrald
// and 5xx answers are ridden out until ctx ends. Wait only reads.
func (r Servers) Wait(ctx context.Context, id string, until Until, opts WaitOptions) (types.Server, error) {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	start := time.Now()
	nodes := r.c.Nodes()
	readNodes := true
	last := ""
	var lastErr error
	var s types.Server
	for {
		p, err := r.observe(ctx, nodes, id, &readNodes)
		p.Elapsed = time.Since(start)
		switch {
		case err == nil:
			s, lastErr = p.Server, nil
			key := "gone"
			if !p.Gone {
				key = s.State + "/" + s.DesiredState
				if p.Node != nil {
					key += "/" + p.Node.State
				}
			}
			if key != last && opts.Progress != nil {
				opts.Progress(p)
			}
			last = key
			if done, err := reached(p, until); done || err != nil {
				return p.Server, err
			}
		case transient(err):
			if lastErr == nil && opts.Progress != nil {
				opts.Progress(Progress{Server: s, Elapsed: p.Elapsed, Err: err})
			}
			lastErr = err
		case ctx.Err() != nil: // the read itself ran out of time
		default:
			return s, err
		}
		select {
		case <-ctx.Done():
			what := fmt.Sprintf("server %s not %s after %s", id, until, time.Since(start).Round(time.Second))
			if s.State != "" {
				what += fmt.Sprintf(" (state %s)", s.State)
			}
			if lastErr != nil {
				what += fmt.Sprintf("; last error: %v", lastErr)
			}
			return s, fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(opts.Interval):
		}
	}
}

// observe reads the server and, for bare metal, its node while the
// caller may read nodes (members may not: then the server alone says).
func (r Servers) observe(ctx context.Context, nodes Nodes, id string, readNodes *bool) (Progress, error) {
	s, err := r.Get(ctx, id)
	if Code(err) == types.CodeNotFound {
		return Progress{Gone: true}, nil
	}
	if err != nil {
		return Progress{}, err
	}
	p := Progress{Server: s}
	if s.Kind == types.KindBaremetal && s.NodeID != "" && *readNodes {
		n, err := nodes.Get(ctx, s.NodeID)
		switch {
		case err == nil:
			p.Node = &n
		case transient(err):
		default:
			*readNodes = false
		}
	}
	return p, nil
}

// reached says whether p ends a wait for until, and how.
func reached(p Progress, until Until) (bool, error) {
	s := p.Server
	if p.Gone {
		if until == UntilGone {
			return true, nil
		}
		return true, &WaitError{Server: s, State: "gone", Reason: "deleted while awaited " + string(until)}
	}
	if s.State == types.ServerError {
		reason := s.Fault
		if reason == "" && p.Node != nil {
			reason = p.Node.LastError
		}
		return true, &WaitError{Server: s, State: s.State, Reason: reason}
	}
	if p.Node != nil && p.Node.State == types.NodeError {
		return true, &WaitError{Server: s, State: "error", Reason: "node " + p.Node.Name + ": " + p.Node.LastError}
	}
	return until != UntilGone && s.State == string(until), nil
}

// transient reports whether a failed read may succeed later: no answer,
// or corrald (or a proxy) unavailable, or a rate limit.
func transient(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status >= 500 || e.Status == http.StatusTooManyRequests
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}
