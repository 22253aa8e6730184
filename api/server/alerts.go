package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/placement"
	"github.com/labstack/echo/v4"
)

// maxAlerts bounds an answer of GET /v1/alerts.
const maxAlerts = 1000

// listAlerts answers GET /v1/alerts: what needs an operator's eye on the
// hosts and bare-metal nodes, computed from the store with corrald's own
// limits (liveness, failsafe margin), so that the dashboard and corralctl
// never guess them. Hosts and nodes are infrastructure: admins and
// cloud-wide readers only.
func (s *Server) listAlerts(c echo.Context) error {
	if err := allowInfra(c); err != nil {
		return err
	}
	if _, err := listOptions(c, nil); err != nil { // no parameters
		return err
	}
	ctx := c.Request().Context()
	out := types.AlertList{Items: []types.Alert{}}
	add := func(a types.Alert) {
		if len(out.Items) >= maxAlerts {
			out.Truncated = true
			return
		}
		out.Items = append(out.Items, a)
	}
	unknown, err := s.store.UnknownGuestCounts(ctx)
	if err != nil {
		return err
	}
	margin := s.cfg.Placement.FailsafeMarginMiB
	if margin == 0 {
		margin = placement.DefaultFailsafeMarginMiB
	}
	now := s.now()
	err = eachPage(ctx, s.store.ListHosts, func(h types.Host) {
		host := func(kind, format string, args ...any) {
			add(types.Alert{Kind: kind, Object: "host", ObjectID: h.ID, Name: h.Name, Message: fmt.Sprintf(format, args...)})
		}
		age := now.Sub(h.LastHeartbeat).Truncate(time.Second)
		switch {
		case h.State == types.HostDown:
			host(types.AlertHostStale, "host is down: last heartbeat %s ago", age)
		case age > s.cfg.HostDownAfter:
			host(types.AlertHostStale, "last heartbeat %s ago (limit %s)", age, s.cfg.HostDownAfter)
		}
		if margin > 0 && h.FailsafeFreeMiB < margin {
			host(types.AlertFailsafe, "failsafe free memory %d MiB < margin %d MiB", h.FailsafeFreeMiB, margin)
		}
		if n := unknown[h.Name]; n > 0 {
			host(types.AlertUnknownGuests, "%d unknown guests: adopt or delete them", n)
		}
	})
	if err != nil {
		return err
	}
	err = eachPage(ctx, s.store.ListNodes, func(n types.Node) {
		if n.BMCFault != "" {
			add(types.Alert{Kind: types.AlertBMCUnreachable, Object: "node", ObjectID: n.ID, Name: n.Name,
				Message: "BMC unreachable: " + n.BMCFault})
		}
	})
	if err != nil {
		return err
	}
	return jsonETag(c, http.StatusOK, out)
}

// eachPage calls fn on every object of a list, page by page.
func eachPage[T any](ctx context.Context, list func(context.Context, store.ListOptions) (types.List[T], error), fn func(T)) error {
	opts := store.ListOptions{Limit: maxLimit, Filters: map[string]string{}}
	for {
		l, err := list(ctx, opts)
		if err != nil {
			return err
		}
		for _, v := range l.Items {
			fn(v)
		}
		if l.NextCursor == "" {
			return nil
		}
		opts.After = l.NextCursor
	}
}
