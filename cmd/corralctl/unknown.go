package main

import (
	"context"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
)

// Unknown guests: guests a host runs that corrald has no server for (a
// database restored from a backup). The agent reports them and never
// touches them; an admin adopts or deletes each.

var unknownGuestKind = &kind[types.UnknownGuest]{
	name: "unknown guest", plural: "unknown guests",
	headers: []string{"SERVER-ID", "NAME", "PROJECT", "FLAVOR", "VCPUS", "RAM-MIB", "STATE", "FIRST-SEEN", "DELETED"},
	row: func(g types.UnknownGuest, n *names) []string {
		deleted := ""
		if g.Tombstone != nil {
			deleted = shortTime(g.Tombstone.DeletedAt)
		}
		return []string{g.ServerID, g.Name, g.ProjectID, g.FlavorID, itoa(g.VCPUs), itoa(g.RAMMiB), g.State,
			shortTime(g.FirstSeen), deleted}
	},
}

func unknownGuests(a *app, host string) client.Collection {
	return a.api.c.Hosts().Sub(host, "unknown-guests")
}

// hostGuestCommands are "host unknown-guests", "host adopt" and
// "host delete-guest".
func (a *app) hostGuestCommands() []*cobra.Command {
	list := &cobra.Command{
		Use:   "unknown-guests HOST",
		Short: "List the guests a host runs that corrald has no server for",
		Long: `List the guests a host's agent found running (or defined) that corrald has
no server for, for instance after the database was restored from a backup
taken before they were created. The agent leaves them untouched: adopt
each one (host adopt) or delete it (host delete-guest).`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			items, _, err := a.api.list(ctx, unknownGuests(a, args[0]), nil, true)
			if err != nil {
				return err
			}
			return printList(ctx, a, unknownGuestKind, items)
		}),
	}
	var in types.GuestAdopt
	adopt := &cobra.Command{
		Use:   "adopt HOST SERVER_ID",
		Short: "Rebuild the server record of an unknown guest and take its claim on the host",
		Long: `Adopt an unknown guest: its server record is rebuilt from the guest's
metadata (same server ID, name, project, flavor and image) and its resources
are claimed on the host. The guest keeps running untouched. Where the
metadata names a project, flavor or image that no longer exists, give
another with the flags.`,
		Args: cobra.ExactArgs(2),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			raw, err := unknownGuests(a, args[0]).PostJSON(ctx, args[1], "/adopt", in)
			if err != nil {
				return err
			}
			return a.printObject(raw)
		}),
	}
	fl := adopt.Flags()
	fl.StringVar(&in.Project, "project", "", "project (ID or name) instead of the one in the guest's metadata")
	fl.StringVar(&in.Flavor, "flavor", "", "flavor (ID or name) instead of the one in the guest's metadata; it must match the guest's sizes")
	fl.StringVar(&in.Image, "image", "", "image (ID or name) instead of the one in the guest's metadata")
	fl.StringVar(&in.Name, "name", "", "server name instead of the one in the guest's metadata")
	del := &cobra.Command{
		Use:     "delete-guest HOST SERVER_ID",
		Aliases: []string{"forget-guest"},
		Short:   "Delete an unknown guest: its host's agent destroys it",
		Long: `Delete an unknown guest. corrald records the deletion (a tombstone) and the
host's agent destroys the domain and confirms. Its disk is kept in the
agent's trash for --deleted-disk-grace (24 h by default).`,
		Args: cobra.ExactArgs(2),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			raw, err := a.api.delete(ctx, unknownGuests(a, args[0]), args[1], 0)
			if err != nil {
				return err
			}
			return a.printObject(raw)
		}),
	}
	return []*cobra.Command{list, adopt, del}
}
