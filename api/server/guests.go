package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// Limits of the agent's watch.
const (
	defaultWatchWait = 30 * time.Second
	maxWatchWait     = 5 * time.Minute
	// maxReportGuests bounds one status report.
	maxReportGuests = 10000
)

// guestRoutes registers the agent's watch of its desired guests, its
// reports of what runs, and the users' server actions.
func (s *Server) guestRoutes(g *echo.Group) {
	g.GET("/hosts/:id/guests", s.watchGuests)
	g.POST("/hosts/:id/guests/status", s.reportGuests)
	g.POST("/servers/:id/actions", s.serverAction)
}

// hub wakes the watches of hosts whose desired guests changed. Changes made
// by another corrald replica are found by each watch's periodic re-check.
type hub struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
}

func newHub() *hub { return &hub{chans: map[string]chan struct{}{}} }

// wait returns a channel closed at the next change of the host's guests.
func (h *hub) wait(hostID string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.chans[hostID]
	if !ok {
		ch = make(chan struct{})
		h.chans[hostID] = ch
	}
	return ch
}

// notify wakes the watches of the hosts.
func (h *hub) notify(hostIDs ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range hostIDs {
		if ch, ok := h.chans[id]; ok {
			close(ch)
			delete(h.chans, id)
		}
	}
}

// notify wakes the watches of the hosts once the request's change has
// committed (a watcher woken earlier would read the old state).
func (s *Server) notify(c echo.Context, hostIDs ...string) {
	store.AfterCommit(c.Request().Context(), func() { s.hub.notify(hostIDs...) })
}

// forget refreshes the placement snapshot's view of hosts whose
// allocations changed outside a decision, once the change has committed.
func (s *Server) forget(c echo.Context, hostIDs ...string) {
	ctx := c.Request().Context()
	store.AfterCommit(ctx, func() { s.placer.forget(store.Detach(ctx), hostIDs...) })
}

// notifyServers wakes the watches of the servers' hosts.
func (s *Server) notifyServers(c echo.Context, srvs ...types.Server) {
	ids := make([]string, 0, len(srvs))
	for _, srv := range srvs {
		if srv.HostID != "" {
			ids = append(ids, srv.HostID)
		}
	}
	s.notify(c, ids...)
}

// ownHost checks that the caller is the host's agent or an admin.
func ownHost(c echo.Context) error {
	if err := allow(c, types.RoleAdmin, types.RoleAgent); err != nil {
		return err
	}
	if p := principalOf(c); p.Role == types.RoleAgent && p.HostID != c.Param("id") {
		return types.Errorf(types.CodeForbidden, "an agent may only act for its own host")
	}
	return nil
}

// hostGuests returns the host's desired guests and their version.
func (s *Server) hostGuests(ctx context.Context, hostID string) (types.HostGuests, error) {
	guests, err := s.store.HostGuests(ctx, hostID)
	if err != nil {
		return types.HostGuests{}, err
	}
	tombs, err := s.store.HostTombstones(ctx, hostID)
	if err != nil {
		return types.HostGuests{}, err
	}
	for i := range guests {
		if len(guests[i].NICs) == 0 {
			// No port: one NIC on the integration bridge, on no
			// network (the network loop wires only ports it knows).
			guests[i].NICs = []types.GuestNIC{defaultNIC(guests[i].ServerID)}
		}
	}
	out := types.HostGuests{HostID: hostID, Guests: guests, Tombstones: tombs}
	b, err := json.Marshal(out)
	if err != nil {
		return types.HostGuests{}, err
	}
	sum := sha256.Sum256(b)
	out.Version = hex.EncodeToString(sum[:12])
	return out, nil
}

// defaultNIC is a server's NIC on its host's integration bridge when no
// network port is bound to it: a stable, locally administered MAC derived
// from the server's ID (40 random bits), and the server's ID as its port.
func defaultNIC(serverID string) types.GuestNIC {
	sum := sha256.Sum256([]byte(serverID))
	mac := fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", sum[0], sum[1], sum[2], sum[3], sum[4])
	return types.GuestNIC{PortID: serverID, MAC: mac}
}

// watchGuests is the agent's long poll: GET /v1/hosts/{id}/guests
// ?version=V&wait=30s answers the host's desired guests at once when their
// version is not V, and otherwise when they change or wait runs out (then
// with the same version). No message broker: the agent calls again.
func (s *Server) watchGuests(c echo.Context) error {
	if err := ownHost(c); err != nil {
		return err
	}
	hostID := c.Param("id")
	ctx := c.Request().Context()
	if _, err := s.store.GetHost(ctx, hostID); err != nil {
		return err
	}
	wait := defaultWatchWait
	if v := c.QueryParam("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxWatchWait {
			return types.FieldError("wait", "must be a duration between 0s and %s, e.g. 30s", maxWatchWait)
		}
		wait = d
	}
	s.holdFor(c, wait+longPollMargin)
	since := c.QueryParam("version")
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	recheck := time.NewTicker(s.cfg.WatchRecheck)
	defer recheck.Stop()
	for {
		changed := s.hub.wait(hostID) // before reading, so no change is missed
		// Ports (a guest's NICs) change through the networking API.
		netChanged := s.hub.wait(networkWatchKey)
		hg, err := s.hostGuests(ctx, hostID)
		if err != nil {
			return err
		}
		if hg.Version != since {
			return c.JSON(http.StatusOK, hg)
		}
		select {
		case <-changed:
			s.metrics.wakeups.WithLabelValues("guests", "notify").Inc()
		case <-netChanged:
			s.metrics.wakeups.WithLabelValues("guests", "notify").Inc()
		case <-recheck.C:
			s.metrics.wakeups.WithLabelValues("guests", "recheck").Inc()
		case <-deadline.C:
			return c.JSON(http.StatusOK, hg)
		case <-ctx.Done():
			return types.Errorf(types.CodeCanceled, "the watch was closed")
		}
	}
}

// reportGuests records an agent's observations: POST
// /v1/hosts/{id}/guests/status. A "deleted" status for a server being
// deleted finishes the delete and gives its claim back; for a tombstone it
// confirms the tombstone. A report with "unknown" replaces the host's
// unknown guests.
func (s *Server) reportGuests(c echo.Context) error {
	if err := ownHost(c); err != nil {
		return err
	}
	var in types.GuestReport
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if len(in.Guests) > maxReportGuests {
		return types.FieldError("guests", "at most %d guests per report", maxReportGuests)
	}
	for i, g := range in.Guests {
		if g.ServerID == "" {
			return types.FieldError("guests["+strconv.Itoa(i)+"].server_id", "is required")
		}
		if err := checkOneOf("guests["+strconv.Itoa(i)+"].state", g.State, types.GuestBuilding, types.GuestActive,
			types.GuestStopped, types.GuestError, types.GuestDeleted); err != nil {
			return err
		}
	}
	if in.Unknown != nil {
		if len(*in.Unknown) > maxReportGuests {
			return types.FieldError("unknown", "at most %d guests per report", maxReportGuests)
		}
		for i, g := range *in.Unknown {
			if g.ServerID == "" {
				return types.FieldError("unknown["+strconv.Itoa(i)+"].server_id", "is required")
			}
		}
	}
	ctx := c.Request().Context()
	// An admin may report for any host; one that does not exist is a 404,
	// as the watch answers, not an empty success.
	host, err := s.store.GetHost(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	hostID := host.ID
	res, err := s.store.ReportGuests(ctx, hostID, in.Guests, s.now())
	if err != nil {
		return err
	}
	if len(res.Removed) > 0 {
		s.forget(c, hostID)
		// Their ports were unplugged: the network loops unwire them.
		s.notify(c, hostID, networkWatchKey)
	} else if len(res.Confirmed) > 0 {
		s.notify(c, hostID)
	}
	unknown := -1
	if in.Unknown != nil {
		got, err := s.store.SetUnknownGuests(ctx, hostID, *in.Unknown, s.now())
		if err != nil {
			return err
		}
		if unknown = len(got); unknown > 0 {
			s.log.Warn("host runs guests corrald has no server for; adopt or delete them",
				"host_id", hostID, "unknown_guests", unknown)
		}
	}
	out := map[string]any{"changed": len(res.Changed), "removed": len(res.Removed), "confirmed": len(res.Confirmed),
		"unknown": nonNil(res.Unknown)}
	if unknown >= 0 {
		out["unknown_guests"] = unknown
	}
	return c.JSON(http.StatusOK, out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// serverAction carries out POST /v1/servers/{id}/actions: start and stop
// set the desired state; reboot asks the host's agent for one reboot of a
// running guest.
func (s *Server) serverAction(c echo.Context) error {
	srv, rev, err := writableVisible(c, s.visibleServer)
	if err != nil {
		return err
	}
	var in types.ServerAction
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if err := checkOneOf("action", in.Action, types.ActionStart, types.ActionStop, types.ActionReboot); err != nil {
		return err
	}
	if srv.State == types.ServerDeleting {
		return types.Errorf(types.CodeConflict, "server %s is being deleted", srv.ID).WithDetail("state", srv.State)
	}
	ctx := c.Request().Context()
	var out types.Server
	switch in.Action {
	case types.ActionStart, types.ActionStop:
		desired := types.DesiredActive
		if in.Action == types.ActionStop {
			desired = types.DesiredStopped
		}
		out, err = s.store.UpdateServer(ctx, srv.ID, rev, types.ServerUpdate{DesiredState: &desired})
	case types.ActionReboot:
		if srv.State != types.ServerActive || srv.DesiredState != types.DesiredActive {
			return types.Errorf(types.CodeConflict, "server %s is %s (desired %s): only an active server can be rebooted",
				srv.ID, srv.State, srv.DesiredState).WithDetail("state", srv.State)
		}
		out, err = s.store.RebootServer(ctx, srv.ID, rev)
	}
	if err != nil {
		return err
	}
	s.notifyServers(c, out)
	return object(c, http.StatusAccepted, out.Revision, out)
}
