package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
)

var serverKind = &kind[types.Server]{
	name: "server", plural: "servers", res: func(c *client.Client) client.Collection { return c.Servers().Collection }, lookup: byNameFilter, idPrefix: "srv-",
	headers: []string{"ID", "NAME", "KIND", "STATE", "PROJECT", "FLAVOR", "HOST"},
	row: func(s types.Server, n *names) []string {
		host := n.host(s.HostID)
		if s.HostID == "" {
			host = n.node(s.NodeID)
		}
		return []string{s.ID, s.Name, s.Kind, s.State, n.project(s.ProjectID), n.flavor(s.FlavorID), host}
	},
	wide: []string{"DESIRED", "IMAGE", "REGION", "RACK", "ADDRESSES", "FAULT"},
	wideRow: func(s types.Server, n *names) []string {
		var addrs []string
		for _, a := range s.Addresses {
			addrs = append(addrs, a.IP)
		}
		return []string{s.DesiredState, n.image(s.ImageID), n.region(s.RegionID), n.zone(s.ZoneID), join(addrs), s.Fault}
	},
	filters: []filter{
		{flag: "project", param: "project", usage: "only servers of this project (ID or name)"},
		{flag: "region", param: "region", usage: "only servers in this region (ID or name)"},
		{flag: "zone", param: "zone", usage: "only servers in this zone (ID or name)"},
		{flag: "aggregate", param: "aggregate", usage: "only servers in this aggregate (ID or name)"},
		{flag: "kind", param: "kind", usage: "only servers of this kind: vm or baremetal"},
		{flag: "state", param: "state", usage: "only servers in this state, e.g. active or error"},
		{flag: "host", param: "host", usage: "only servers on this host (ID or name)"},
		{flag: "name", param: "name", usage: "only servers with this name"},
	},
}

func (a *app) serverCommand() *cobra.Command {
	k := serverKind
	var in types.ServerCreate
	var key string
	var createWait waitFlags
	var bootstrap func() error
	create := &cobra.Command{
		Use:   "create NAME --flavor FLAVOR --image IMAGE [--project PROJECT]",
		Short: "Create a server (a VM or a bare-metal machine)",
		Long: `Create a server. A VM is placed at once: it is created "scheduled" on a
host (or refused with the reason, no_valid_host), then "building" and
"active" as its host's agent reports. A bare-metal server is created
"building" on a node and deploys from there. Each --network gets a port of
its own, deleted with the server; ports created with "port create" stay.

Every create sends an Idempotency-Key: a random one for this invocation, so
that corralctl's own retries never create two servers, or --idempotency-key K,
so that running the same command again (after a timeout, say) returns the
server the first run created.

With --wait, corralctl returns only when the server is active (a VM's guest
runs; a bare-metal server's node is deployed), printing each change of state
to stderr, and exits 1 with the server's reason (its fault, or its node's
last error) if it ends in error.`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			in.Name = args[0]
			if err := bootstrap(); err != nil {
				return err
			}
			until := client.UntilActive
			if in.DesiredState == types.ServerStopped {
				until = client.UntilStopped
			}
			return a.changeServer(ctx, createWait, until, func() (json.RawMessage, error) {
				if key == "" {
					key = newIdempotencyKey()
				}
				return a.api.create(ctx, k.col(a), in, key)
			})
		}),
	}
	bootstrap = addBootstrapFlags(create, &in)
	fl := create.Flags()
	fl.StringVar(&in.Kind, "kind", types.KindVM, "vm or baremetal")
	fl.StringVar(&in.Flavor, "flavor", "", "flavor (ID or name)")
	fl.StringVar(&in.Image, "image", "", "image (ID or name)")
	fl.StringVar(&in.Project, "project", "", "project (ID or name); a member's token always uses its own")
	fl.StringVar(&in.Region, "region", "", "region to place the server in (ID or name)")
	fl.StringVar(&in.Zone, "zone", "", "zone to place the server in (ID or name)")
	fl.StringVar(&in.Aggregate, "aggregate", "", "aggregate to place the server in (ID or name)")
	fl.StringVar(&in.DesiredState, "desired-state", "", "active or stopped (default active)")
	fl.StringSliceVar(&in.Networks, "network", nil, "network (ID or name) to plug the server into, with a port of its own; repeat or comma-separate")
	create.MarkFlagRequired("flavor")
	create.MarkFlagRequired("image")
	addIdempotencyFlag(create, &key)
	createWait.add(create, "active (stopped with --desired-state stopped)")

	var name, desired string
	var rev int64
	var updateWait waitFlags
	update := &cobra.Command{
		Use: "update ID|NAME", Short: "Rename a server or change its desired state", Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			up := types.ServerUpdate{Name: optional(cmd, "name", name), DesiredState: optional(cmd, "desired-state", desired)}
			if updateWait.wait && up.DesiredState == nil {
				return usagef("--wait needs --desired-state")
			}
			if !updateWait.wait {
				return updateObject(ctx, a, cmd, k, args[0], up, rev)
			}
			id, err := resolveID(ctx, a, k, args[0])
			if err != nil {
				return err
			}
			return a.changeServer(ctx, updateWait, client.Until(desired), func() (json.RawMessage, error) {
				return a.api.update(ctx, k.col(a), id, up, rev)
			})
		}),
	}
	updateWait.add(update, "in its new desired state")
	update.Flags().StringVar(&name, "name", "", "new name")
	update.Flags().StringVar(&desired, "desired-state", "", "active or stopped")
	addIfMatchFlag(update, &rev)

	return group("server", "Manage servers (VMs and bare-metal machines)",
		listCommand(a, k), showCommand(a, k), create, update, a.serverDelete(k),
		a.serverAction(k, types.ActionStart, "Start a stopped server", client.UntilActive),
		a.serverAction(k, types.ActionStop, "Stop a server: graceful, forced after the host's stop timeout", client.UntilStopped),
		// No --wait on reboot: the server stays active throughout.
		a.serverAction(k, types.ActionReboot, "Reboot an active server", ""),
		a.consoleCommand(k))
}

// changeServer makes a change (call) and prints the server, after
// waiting for it to reach until when w asks for it.
func (a *app) changeServer(ctx context.Context, w waitFlags, until client.Until, call func() (json.RawMessage, error)) error {
	if w.wait && w.timeout <= 0 {
		return usagef("--wait-timeout %v: must be positive", w.timeout)
	}
	raw, err := call()
	if err != nil {
		return err
	}
	if w.wait && a.tabular() {
		// Say what was done before the wait, which may be long.
		var s types.Server
		if json.Unmarshal(raw, &s) == nil && s.ID != "" {
			a.notef("server %s (%s): %s; waiting until %s", s.Name, s.ID, s.State, until)
		}
	}
	raw, err = a.waitServer(ctx, w, raw, until)
	if err != nil || raw == nil {
		return err
	}
	return a.printObject(raw)
}

// serverDelete is "server delete ID|NAME...", with --wait: each server is
// deleted, then awaited until its host or node has let go of it.
func (a *app) serverDelete(k *kind[types.Server]) *cobra.Command {
	cmd := deleteCommand(a, k, true)
	var w waitFlags
	w.add(cmd, "gone (its host or node let go of it)")
	plain := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if !w.wait {
			return plain(cmd, args)
		}
		return a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			ifMatch, _ := cmd.Flags().GetInt64("if-match")
			if ifMatch != 0 && len(args) > 1 {
				return usagef("--if-match applies to one object, not %d", len(args))
			}
			failed := false
			for _, arg := range args {
				id, err := resolveID(ctx, a, k, arg)
				if err == nil {
					var raw json.RawMessage
					if raw, err = a.api.delete(ctx, k.col(a), id, ifMatch); err == nil {
						_, err = a.waitServer(ctx, w, raw, client.UntilGone)
					}
				}
				if err != nil {
					printError(a.stderr, err)
					failed = true
					continue
				}
				if a.tabular() {
					fmt.Fprintf(a.stdout, "deleted server %s\n", arg)
				}
			}
			if failed {
				return errReported
			}
			return nil
		})(cmd, args)
	}
	return cmd
}

// serverAction is "server start|stop|reboot ID|NAME"; with --wait (when
// until is set) it returns when the server is in state until.
func (a *app) serverAction(k *kind[types.Server], action, short string, until client.Until) *cobra.Command {
	var w waitFlags
	cmd := &cobra.Command{
		Use: action + " ID|NAME", Short: short, Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			id, err := resolveID(ctx, a, k, args[0])
			if err != nil {
				return err
			}
			return a.changeServer(ctx, w, until, func() (json.RawMessage, error) {
				return a.api.c.Servers().ActionJSON(ctx, id, action)
			})
		}),
	}
	if until != "" {
		w.add(cmd, string(until))
	}
	return cmd
}

var hostKind = &kind[types.Host]{
	name: "host", plural: "hosts", res: func(c *client.Client) client.Collection { return c.Hosts().Collection }, lookup: byAPI,
	headers: []string{"ID", "NAME", "STATE", "REGION", "ZONE", "AGGREGATES", "CPUS", "RAM-MIB", "LAST-HEARTBEAT"},
	row: func(h types.Host, n *names) []string {
		return []string{h.ID, h.Name, h.State, n.region(h.RegionID), n.zone(h.ZoneID), join(n.aggregates(h.AggregateIDs)),
			itoa(h.Inventory.CPUs), itoa(h.Inventory.RAMMiB), shortTime(h.LastHeartbeat)}
	},
	wide: []string{"VCPUS-USED", "RAM-MIB-USED", "MEM-FREE-MIB", "LOAD1", "CAPABILITIES", "AGENT"},
	wideRow: func(h types.Host, _ *names) []string {
		return []string{itoa(h.Allocated.VCPUs), itoa(h.Allocated.RAMMiB), itoa(h.Usage.MemFreeMiB),
			strconv.FormatFloat(h.Usage.Load1, 'f', 2, 64), join(h.Capabilities), h.AgentVersion}
	},
	filters: []filter{
		{flag: "region", param: "region", usage: "only hosts in this region (ID or name)"},
		{flag: "zone", param: "zone", usage: "only hosts in this zone (ID or name)"},
		{flag: "aggregate", param: "aggregate", usage: "only hosts in this aggregate (ID or name)"},
		{flag: "state", param: "state", usage: "only hosts in this state: up, down or maintenance"},
	},
}

// hostCommand has no create: hosts appear when their agents register.
func (a *app) hostCommand() *cobra.Command {
	k := hostKind
	var state string
	var aggs []string
	var rev int64
	update := &cobra.Command{
		Use:   "update ID|NAME",
		Short: "Put a host in or out of maintenance, or change its aggregates",
		Args:  cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("state") && state != types.HostMaintenance && state != types.HostUp {
				return usagef("--state %q: want %s or %s", state, types.HostMaintenance, types.HostUp)
			}
			up := types.HostUpdate{State: optional(cmd, "state", state), Aggregates: optional(cmd, "aggregates", nonNil(aggs))}
			return updateObject(ctx, a, cmd, k, args[0], up, rev)
		}),
	}
	update.Flags().StringVar(&state, "state", "", "maintenance (nothing new is placed) or up")
	update.Flags().StringSliceVar(&aggs, "aggregates", nil, "the host's aggregates, comma-separated IDs or names; '' for none")
	addIfMatchFlag(update, &rev)

	cmd := group("host", "Manage compute hosts (they register themselves)",
		listCommand(a, k), showCommand(a, k), update, deleteCommand(a, k, true))
	cmd.AddCommand(a.hostGuestCommands()...) // unknown guests (unknown.go)
	return cmd
}
