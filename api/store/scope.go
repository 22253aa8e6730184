package store

import (
	"context"
	"fmt"
)

// A request made for a project (a member's or a project reader's) sees only
// that project's objects. The scope travels in the context, so every lookup
// and list of a project-owned table honours it without each caller
// checking: an object outside the scope is ErrNotFound, with the same text
// as an object that does not exist, and a name resolves among the
// project's objects only.

type projectKey struct{}

// WithProject confines the store calls made with the returned context to
// what members of projectID may see: its own servers, groups, ports and
// security groups, shared networks and its own, their subnets, and the
// project itself. Catalogue objects (regions, zones, aggregates, flavors,
// images) and hosts are not owned by a project and are not confined. An
// empty projectID returns ctx unchanged (admins, agents and cloud-wide
// readers see everything).
func WithProject(ctx context.Context, projectID string) context.Context {
	if projectID == "" {
		return ctx
	}
	return context.WithValue(ctx, projectKey{}, projectID)
}

// ProjectOf returns the project ctx is confined to, "" if none.
func ProjectOf(ctx context.Context) string {
	p, _ := ctx.Value(projectKey{}).(string)
	return p
}

// NotFound is the error of a lookup of kind by ref that found nothing, or
// found only an object outside the caller's project: one text for both.
func NotFound(kind, ref string) error {
	return fmt.Errorf("%s %q: %w", kind, ref, ErrNotFound)
}

// Visibility conditions of the project-owned tables, each with one ? for
// the project ID (see table.owner).
const (
	ownedByProject  = "project_id = ?"
	sharedOrProject = "(project_id = ? OR project_id = '')"
	onVisibleNet    = "network_id IN (SELECT id FROM networks WHERE project_id = ? OR project_id = '')"
)

// scope returns the condition and argument that confine a query of t to
// ctx's project, or "" when t is not project-owned or ctx is not confined.
func (t table) scope(ctx context.Context) (string, []any) {
	p := ProjectOf(ctx)
	if p == "" || t.owner == "" {
		return "", nil
	}
	return t.owner, []any{p}
}
