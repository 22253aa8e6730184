package main

import (
	"context"
	"encoding/json"
	"net/url"

	"github.com/corral-cloud/corral/api/client"
)

// names turns IDs into names for tables, with one list per kind of
// object per invocation: the first row that needs a project's name lists
// the projects (every page), later rows read the cache. Where the list
// fails (a member may not list hosts or nodes), tables show IDs.
type names struct {
	a     *app
	ctx   context.Context
	cache map[string]map[string]string // collection path → ID → name
}

// newNames returns an empty cache for one invocation.
func newNames(ctx context.Context, a *app) *names {
	return &names{a: a, ctx: ctx, cache: map[string]map[string]string{}}
}

// of returns the name of object id of col, or id when it has none or
// cannot be listed.
func (n *names) of(col client.Collection, id string) string {
	if id == "" || n == nil {
		return id
	}
	m, ok := n.cache[col.Path()]
	if !ok {
		m = map[string]string{}
		n.cache[col.Path()] = m
		items, _, err := n.a.api.list(n.ctx, col, url.Values{"limit": {"1000"}}, true)
		if err == nil {
			for _, raw := range items {
				var o struct {
					ID   string `json:"id"`
					Name string `json:"name"`
				}
				if json.Unmarshal(raw, &o) == nil && o.Name != "" {
					m[o.ID] = o.Name
				}
			}
		}
	}
	if name := m[id]; name != "" {
		return name
	}
	return id
}

func (n *names) c() *client.Client { return n.a.api.c }

func (n *names) project(id string) string   { return n.of(n.c().Projects().Collection, id) }
func (n *names) flavor(id string) string    { return n.of(n.c().Flavors().Collection, id) }
func (n *names) image(id string) string     { return n.of(n.c().Images().Collection, id) }
func (n *names) host(id string) string      { return n.of(n.c().Hosts().Collection, id) }
func (n *names) node(id string) string      { return n.of(n.c().Nodes().Collection, id) }
func (n *names) region(id string) string    { return n.of(n.c().Regions().Collection, id) }
func (n *names) zone(id string) string      { return n.of(n.c().Zones().Collection, id) }
func (n *names) network(id string) string   { return n.of(n.c().Networks().Collection, id) }
func (n *names) server(id string) string    { return n.of(n.c().Servers().Collection, id) }
func (n *names) aggregate(id string) string { return n.of(n.c().Aggregates().Collection, id) }

// aggregates names a list of aggregates.
func (n *names) aggregates(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = n.aggregate(id)
	}
	return out
}
