package main

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/corral-cloud/corral/api/client"

	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
)

var serverKind = &kind[types.Server]{
	name: "server", plural: "servers", path: "/v1/servers", lookup: byNameFilter,
	headers: []string{"ID", "NAME", "KIND", "STATE", "PROJECT", "FLAVOR", "HOST"},
	row: func(s types.Server) []string {
		host := s.HostID
		if host == "" {
			host = s.NodeID
		}
		return []string{s.ID, s.Name, s.Kind, s.State, s.ProjectID, s.FlavorID, host}
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
server the first run created.`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			in.Name = args[0]
			if err := bootstrap(); err != nil {
				return err
			}
			_, err := a.createObject(ctx, k.path, in, key)
			return err
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

	var name, desired string
	var rev int64
	update := &cobra.Command{
		Use: "update ID|NAME", Short: "Rename a server or change its desired state", Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			up := types.ServerUpdate{Name: optional(cmd, "name", name), DesiredState: optional(cmd, "desired-state", desired)}
			return updateObject(ctx, a, cmd, k, args[0], up, rev)
		}),
	}
	update.Flags().StringVar(&name, "name", "", "new name")
	update.Flags().StringVar(&desired, "desired-state", "", "active or stopped")
	addIfMatchFlag(update, &rev)

	return group("server", "Manage servers (VMs and bare-metal machines)",
		listCommand(a, k), showCommand(a, k), create, update, deleteCommand(a, k, true),
		a.serverAction(k, types.ActionStart, "Start a stopped server"),
		a.serverAction(k, types.ActionStop, "Stop a server: graceful, forced after the host's stop timeout"),
		a.serverAction(k, types.ActionReboot, "Reboot an active server"))
}

// serverAction is "server start|stop|reboot ID|NAME".
func (a *app) serverAction(k *kind[types.Server], action, short string) *cobra.Command {
	return &cobra.Command{
		Use: action + " ID|NAME", Short: short, Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			id, err := resolveID(ctx, a, k, args[0])
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if _, err := a.api.c.Do(ctx, client.Request{Method: http.MethodPost, Path: objectPath(k.path, id) + "/actions",
				Body: types.ServerAction{Action: action}}, &raw); err != nil {
				return err
			}
			return a.printObject(raw)
		}),
	}
}

var hostKind = &kind[types.Host]{
	name: "host", plural: "hosts", path: "/v1/hosts", lookup: byAPI,
	headers: []string{"ID", "NAME", "STATE", "REGION", "ZONE", "AGGREGATES", "CPUS", "RAM-MIB", "LAST-HEARTBEAT"},
	row: func(h types.Host) []string {
		return []string{h.ID, h.Name, h.State, h.RegionID, h.ZoneID, join(h.AggregateIDs),
			itoa(h.Inventory.CPUs), itoa(h.Inventory.RAMMiB), shortTime(h.LastHeartbeat)}
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
