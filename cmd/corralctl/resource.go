package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// lookup says how an object named on the command line is found.
type lookup int

const (
	// byAPI: corrald accepts an ID or a name in the object's path.
	byAPI lookup = iota
	// byNameFilter: the path takes only IDs; a name is found with the
	// list filter "name".
	byNameFilter
	// byScan: the path takes only IDs and the list cannot filter by name;
	// a name is found by listing every object.
	byScan
)

// kind describes one resource of the API to the generic commands. T is
// its wire type, decoded only to fill table rows: JSON output and "key:
// value" lines work from the API's JSON.
type kind[T any] struct {
	name   string                                 // singular, as in messages: "server"
	plural string                                 // "servers"
	res    func(*client.Client) client.Collection // the collection, e.g. Servers()
	lookup lookup
	// idPrefix starts the kind's IDs ("srv-"), for a lookup other than
	// byAPI: an argument without it is taken for a name.
	idPrefix string
	headers  []string
	// row renders one object; n turns IDs into names.
	row func(v T, n *names) []string
	// wide and wideRow are the extra columns of -o wide, after row's.
	wide    []string
	wideRow func(v T, n *names) []string
	filters []filter
}

// filter is a list filter: a flag that sets a query parameter.
type filter struct {
	flag, param, usage string
}

// col returns the kind's collection on a's connection.
func (k *kind[T]) col(a *app) client.Collection { return k.res(a.api.c) }

// rows decodes items and renders them as table rows, with the wide
// columns (and the creation time) when wide.
func (k *kind[T]) rows(n *names, items []json.RawMessage, wide bool) ([][]string, error) {
	rows := make([][]string, 0, len(items))
	for _, raw := range items {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("read %s: %w", k.name, err)
		}
		row := k.row(v, n)
		if wide {
			if k.wideRow != nil {
				row = append(row, k.wideRow(v, n)...)
			}
			var m types.Meta
			json.Unmarshal(raw, &m)
			row = append(row, shortTime(m.CreatedAt))
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// headersFor returns the table's headers in the output format.
func (k *kind[T]) headersFor(output string) []string {
	if output != formatWide {
		return k.headers
	}
	h := append(slices.Clone(k.headers), k.wide...)
	return append(h, "CREATED")
}

// printList prints items as a table (wide: with more columns), or as one
// JSON array or YAML list. Tables show names of projects, flavors, hosts
// and zones (racks) where the API gives IDs, one list of each per
// invocation.
func printList[T any](ctx context.Context, a *app, k *kind[T], items []json.RawMessage) error {
	switch a.output {
	case formatJSON:
		return writeJSONItems(a.stdout, items)
	case formatYAML:
		return writeYAMLItems(a.stdout, items)
	}
	rows, err := k.rows(newNames(ctx, a), items, a.output == formatWide)
	if err != nil {
		return err
	}
	return writeTable(a.stdout, k.headersFor(a.output), rows)
}

// listCommand is "<kind> list" with the kind's filters, --limit, --cursor
// and --all.
func listCommand[T any](a *app, k *kind[T]) *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List " + k.plural, Args: cobra.NoArgs}
	values := make([]string, len(k.filters))
	for i, f := range k.filters {
		cmd.Flags().StringVar(&values[i], f.flag, "", f.usage)
	}
	var limit int
	var cursor string
	var all bool
	cmd.Flags().IntVar(&limit, "limit", 0, "objects per page (1 to 1000; default corrald's, 100)")
	cmd.Flags().StringVar(&cursor, "cursor", "", "start at this cursor, printed after a page that has more")
	cmd.Flags().BoolVar(&all, "all", false, "follow cursors and list every page")
	cmd.RunE = a.action(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		q := url.Values{}
		for i, f := range k.filters {
			if !cmd.Flags().Changed(f.flag) {
				continue
			}
			// corrald resolves names in filters itself.
			q.Set(f.param, values[i])
		}
		if cmd.Flags().Changed("limit") {
			if limit < 1 {
				return usagef("--limit %d: must be at least 1", limit)
			}
			q.Set("limit", strconv.Itoa(limit))
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		items, next, err := a.api.list(ctx, k.col(a), q, all)
		if err != nil {
			return err
		}
		if err := printList(ctx, a, k, items); err != nil {
			return err
		}
		if next != "" {
			a.notef("more %s: add --cursor %s for the next page, or --all", k.plural, next)
		}
		return nil
	})
	return cmd
}

// showCommand is "<kind> show ID|NAME".
func showCommand[T any](a *app, k *kind[T]) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID|NAME",
		Short: "Show a " + k.name,
		Args:  cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			raw, err := fetch(ctx, a, k, args[0])
			if err != nil {
				return err
			}
			return a.printObject(raw)
		}),
	}
}

// deleteCommand is "<kind> delete ID|NAME...". It deletes each object in
// turn, reports each failure and goes on with the next.
func deleteCommand[T any](a *app, k *kind[T], conditional bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete ID|NAME...",
		Short: "Delete " + k.plural,
		Args:  cobra.MinimumNArgs(1),
	}
	var ifMatch int64
	if conditional {
		cmd.Flags().Int64Var(&ifMatch, "if-match", 0, "delete only at this revision (one object only)")
	}
	cmd.RunE = a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
		if ifMatch != 0 && len(args) > 1 {
			return usagef("--if-match applies to one object, not %d", len(args))
		}
		failed := false
		for _, arg := range args {
			id, err := resolveID(ctx, a, k, arg)
			if err == nil {
				_, err = a.api.delete(ctx, k.col(a), id, ifMatch)
			}
			if err != nil {
				printError(a.stderr, err)
				failed = true
				continue
			}
			if a.tabular() {
				fmt.Fprintf(a.stdout, "deleted %s %s\n", k.name, arg)
			}
		}
		if failed {
			return errReported
		}
		return nil
	})
	return cmd
}

// fetch gets the object named arg (an ID or a name). Where corrald's path
// takes only IDs, a name that does not look like one is looked up by
// name first: asking for it by ID would be answered 404, and every such
// 404 would count in corrald's error rate (corral_http_requests_total)
// although the lookup succeeds.
func fetch[T any](ctx context.Context, a *app, k *kind[T], arg string) (json.RawMessage, error) {
	if k.lookup != byAPI && !strings.HasPrefix(arg, k.idPrefix) {
		id, err := findByName(ctx, a, k, arg)
		if err != nil {
			return nil, err
		}
		if id != "" {
			return a.api.get(ctx, k.col(a), id)
		}
	}
	raw, err := a.api.get(ctx, k.col(a), arg)
	if err == nil || k.lookup == byAPI || client.Code(err) != types.CodeNotFound || !strings.HasPrefix(arg, k.idPrefix) {
		return raw, err
	}
	id, ferr := findByName(ctx, a, k, arg)
	if ferr != nil {
		return nil, ferr
	}
	if id == "" {
		return nil, err // the answer for the path: not found
	}
	return a.api.get(ctx, k.col(a), id)
}

// resolveID returns what to put in the path of the object named arg: arg
// itself when corrald resolves names, else the ID found for it.
func resolveID[T any](ctx context.Context, a *app, k *kind[T], arg string) (string, error) {
	if k.lookup == byAPI {
		return arg, nil
	}
	if !strings.HasPrefix(arg, k.idPrefix) {
		// A name: its ID comes with the list, no second request.
		id, err := findByName(ctx, a, k, arg)
		if err != nil || id != "" {
			return id, err
		}
	}
	raw, err := fetch(ctx, a, k, arg)
	if err != nil {
		return "", err
	}
	var m types.Meta
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("read %s: %w", k.name, err)
	}
	return m.ID, nil
}

// findByName returns the ID of the one object called name, "" when there
// is none, and an invalid_argument error when several share the name.
func findByName[T any](ctx context.Context, a *app, k *kind[T], name string) (string, error) {
	q := url.Values{}
	if k.lookup == byNameFilter {
		q.Set("name", name)
	}
	items, _, err := a.api.list(ctx, k.col(a), q, true)
	if err != nil {
		return "", err
	}
	var ids []string
	for _, raw := range items {
		var o struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			return "", fmt.Errorf("read %s: %w", k.name, err)
		}
		if o.Name == name {
			ids = append(ids, o.ID)
		}
	}
	switch len(ids) {
	case 0:
		return "", nil
	case 1:
		return ids[0], nil
	}
	return "", types.Errorf(types.CodeInvalidArgument, "%d %s are called %q; name one by its ID", len(ids), k.plural, name).
		WithDetail("ids", ids)
}

// updateObject patches the object named arg with body and prints the
// result. cmd names the flags to suggest when body changes nothing.
func updateObject[T any](ctx context.Context, a *app, cmd *cobra.Command, k *kind[T], arg string, body any, ifMatch int64) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	if bytes.Equal(raw, []byte("{}")) {
		var names []string
		cmd.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "if-match" && f.Name != "help" {
				names = append(names, "--"+f.Name)
			}
		})
		return usagef("nothing to update: give at least one of %s", strings.Join(names, ", "))
	}
	id, err := resolveID(ctx, a, k, arg)
	if err != nil {
		return err
	}
	out, err := a.api.update(ctx, k.col(a), id, body, ifMatch)
	if err != nil {
		return err
	}
	return a.printObject(out)
}

// createObject posts body with an Idempotency-Key (key, or a new one for
// this invocation) and prints the created object.
func (a *app) createObject(ctx context.Context, col client.Collection, body any, key string) (json.RawMessage, error) {
	if key == "" {
		key = newIdempotencyKey()
	}
	raw, err := a.api.create(ctx, col, body, key)
	if err != nil {
		return nil, err
	}
	return raw, a.printObject(raw)
}

// addIdempotencyFlag adds --idempotency-key to a create command.
func addIdempotencyFlag(cmd *cobra.Command, key *string) {
	cmd.Flags().StringVar(key, "idempotency-key", "",
		"Idempotency-Key to send, so that running the same command again creates nothing new (default: a random key per invocation)")
}

// addIfMatchFlag adds --if-match to an update command.
func addIfMatchFlag(cmd *cobra.Command, rev *int64) {
	cmd.Flags().Int64Var(rev, "if-match", 0, "change the object only if it is at this revision")
}

// optional returns &v when the flag name was given, else nil: update
// commands send only the fields named on the command line.
func optional[V any](cmd *cobra.Command, name string, v V) *V {
	if !cmd.Flags().Changed(name) {
		return nil
	}
	return &v
}

// join renders a list in one table cell.
func join(v []string) string { return strings.Join(v, ",") }

// createCommand is "create NAME" for a resource whose request the command's
// flags fill: body points at the request, setName puts the argument in it.
func createCommand[T any](a *app, k *kind[T], use, short string, body any, setName func(string)) *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			setName(args[0])
			_, err := a.createObject(ctx, k.col(a), body, key)
			return err
		}),
	}
	addIdempotencyFlag(cmd, &key)
	return cmd
}

// renameCommand is "update ID|NAME" with --name and --description, for
// resources whose patch holds only those; patch builds the request from
// the flags that were given.
func renameCommand[T any](a *app, k *kind[T], short string, patch func(name, description *string) any) *cobra.Command {
	var name, desc string
	var rev int64
	cmd := &cobra.Command{
		Use: "update ID|NAME", Short: short, Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			up := patch(optional(cmd, "name", name), optional(cmd, "description", desc))
			return updateObject(ctx, a, cmd, k, args[0], up, rev)
		}),
	}
	cmd.Flags().StringVar(&name, "name", "", "new name")
	cmd.Flags().StringVar(&desc, "description", "", "new description")
	addIfMatchFlag(cmd, &rev)
	return cmd
}
