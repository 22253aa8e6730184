package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
)

// waitFlags are --wait and --wait-timeout of a command that changes a
// server.
type waitFlags struct {
	wait    bool
	timeout time.Duration
	// interval between reads; tests shorten it.
	interval time.Duration
}

// defaultWaitTimeout bounds a wait: a bare-metal deploy (power, PXE,
// image write, reboot) takes minutes; a VM seconds.
const defaultWaitTimeout = 20 * time.Minute

func (w *waitFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().BoolVar(&w.wait, "wait", false, "return only when the server is "+what+
		" (progress on stderr); fail with the server's reason if it ends in error")
	cmd.Flags().DurationVar(&w.timeout, "wait-timeout", defaultWaitTimeout, "with --wait, give up after this long (exit 1)")
	cmd.Flags().DurationVar(&w.interval, "wait-interval", time.Second, "with --wait, read the server this often")
	cmd.Flags().MarkHidden("wait-interval")
}

// waitServer waits, when asked, for the server raw (the answer of the
// call that changed it) to reach until, printing its progress to stderr.
// It returns the server's final JSON to print: raw itself without --wait.
func (a *app) waitServer(ctx context.Context, w waitFlags, raw json.RawMessage, until client.Until) (json.RawMessage, error) {
	if !w.wait {
		return raw, nil
	}
	var s types.Server
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("read server: %w", err)
		}
	}
	if s.ID == "" { // 204: gone already, nothing to wait for
		return nil, nil
	}
	if w.timeout <= 0 {
		return nil, usagef("--wait-timeout %v: must be positive", w.timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	name := s.Name
	n := newNames(ctx, a)
	out, err := a.api.c.Servers().Wait(ctx, s.ID, until, client.WaitOptions{
		Interval: w.interval,
		Progress: func(p client.Progress) {
			switch {
			case p.Err != nil:
				a.progress(name, "unreachable, retrying: "+p.Err.Error(), p.Elapsed)
			case p.Gone:
				a.progress(name, "gone", p.Elapsed)
			default:
				a.progress(name, describeProgress(p, n), p.Elapsed)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	if until == client.UntilGone {
		return nil, nil
	}
	// Print the server as it is now, in the API's own JSON.
	return a.api.get(ctx, a.api.c.Servers().Collection, out.ID)
}

// describeProgress is one progress line's state: the server's state and
// where it is (its host's name where the token may list hosts), the
// desired state while it differs, a node's state.
func describeProgress(p client.Progress, n *names) string {
	s := p.Server
	parts := []string{s.State}
	if s.DesiredState != "" && s.DesiredState != s.State && s.State != types.ServerDeleting {
		parts[0] += " (want " + s.DesiredState + ")"
	}
	if s.HostID != "" {
		parts = append(parts, "host "+n.host(s.HostID))
	}
	if p.Node != nil {
		parts = append(parts, "node "+p.Node.Name+" "+p.Node.State)
	} else if s.NodeID != "" {
		parts = append(parts, "node "+n.node(s.NodeID))
	}
	if s.Fault != "" {
		parts = append(parts, s.Fault)
	}
	return strings.Join(parts, ", ")
}

// progress prints one line of a wait's progress to stderr.
func (a *app) progress(name, state string, elapsed time.Duration) {
	fmt.Fprintf(a.stderr, "corralctl: server %s: %s [%s]\n", name, state, elapsed.Round(100*time.Millisecond))
}
