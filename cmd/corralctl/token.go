package main

import (
	"context"
	"github.com/corral-cloud/corral/api/client"
	"strconv"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
)

var tokenKind = &kind[types.Token]{
	name: "token", plural: "tokens", res: func(c *client.Client) client.Collection { return c.Tokens().Collection }, lookup: byScan, idPrefix: "tok-",
	headers: []string{"ID", "NAME", "ROLE", "PROJECT", "HOST", "EXPIRES"},
	row: func(t types.Token, n *names) []string {
		exp := ""
		if t.ExpiresAt != nil {
			exp = shortTime(*t.ExpiresAt)
		}
		return []string{t.ID, t.Name, t.Role, n.project(t.ProjectID), n.host(t.HostID), exp}
	},
	filters: []filter{
		{flag: "role", param: "role", usage: "only tokens of this role"},
		{flag: "project", param: "project", usage: "only tokens of this project (ID or name)"},
		{flag: "host", param: "host", usage: "only the agent tokens of this host (ID or name)"},
	},
}

// tokenCommand has no update: the API has none. Revoking is delete.
func (a *app) tokenCommand() *cobra.Command {
	k := tokenKind
	var in types.TokenCreate
	var expiresIn time.Duration
	create := &cobra.Command{
		Use:   "create NAME --role admin|member|reader|registrar [--project P] [--expires-in 720h]",
		Short: "Create a token and print its secret, which is shown only once",
		Long: `Create a token and print its secret, which corrald shows only this once.

No Idempotency-Key is sent: corrald keeps the answer to a keyed request for a
day, and the answer holds the secret. A failed call is therefore not retried.`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			in.Name = args[0]
			if cmd.Flags().Changed("expires-in") {
				if expiresIn < time.Second || expiresIn%time.Second != 0 {
					return usagef("--expires-in %v: want a whole number of seconds, such as 720h", expiresIn)
				}
				in.ExpiresInSeconds = int64(expiresIn / time.Second)
			}
			raw, err := a.api.create(ctx, k.col(a), in, "")
			if err != nil {
				return err
			}
			if err := a.printObject(raw); err != nil {
				return err
			}
			if a.tabular() {
				a.notef("store the secret now: it is not shown again")
			}
			return nil
		}),
	}
	fl := create.Flags()
	fl.StringVar(&in.Role, "role", "", "admin, member (needs --project), reader or registrar")
	fl.StringVar(&in.Project, "project", "", "project (ID or name) of a member or reader token")
	fl.DurationVar(&expiresIn, "expires-in", 0, "lifetime, e.g. 720h (default 30 days)")
	create.MarkFlagRequired("role")

	return group("token", "Manage API tokens",
		listCommand(a, k), showCommand(a, k), create, deleteCommand(a, k, false))
}

var auditKind = &kind[types.AuditEntry]{
	name: "audit entry", plural: "audit entries", res: func(c *client.Client) client.Collection { return c.Audit().Collection }, lookup: byAPI,
	headers: []string{"ID", "AT", "TOKEN", "ROLE", "METHOD", "PATH", "STATUS", "RESOURCE"},
	row: func(e types.AuditEntry, n *names) []string {
		return []string{e.ID, shortTime(e.At), e.TokenID, e.Role, e.Method, e.Path, strconv.Itoa(e.Status), e.ResourceID}
	},
	filters: []filter{
		{flag: "token", param: "token", usage: "only calls made with this token ID"},
		{flag: "resource", param: "resource", usage: "only calls on this object ID"},
		{flag: "method", param: "method", usage: "only calls with this HTTP method, e.g. DELETE"},
	},
}

// auditCommand lists the audit log, oldest entry first.
func (a *app) auditCommand() *cobra.Command {
	return group("audit", "Read the audit log of mutating calls", listCommand(a, auditKind))
}
