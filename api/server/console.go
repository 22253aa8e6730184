package server

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// Serial consoles through the API. corrald never reaches into a host: each
// agent uploads its guests' new console output (POST
// /v1/hosts/{id}/guests/console, read from the console logs libvirt
// writes), corrald keeps the newest types.ConsoleKeep bytes of each server
// in the database, and users read them (GET /v1/servers/{id}/console), or
// follow them with a long poll on a cursor.

// Limits of a console follow.
const (
	defaultConsoleWait = 30 * time.Second
	maxConsoleWait     = 5 * time.Minute
)

func (s *Server) consoleRoutes(g *echo.Group) {
	g.POST("/hosts/:id/guests/console", s.uploadConsole)
	g.GET("/servers/:id/console", s.serverConsole)
	g.POST("/servers/:id/console/input", s.consoleInput)
	g.POST("/hosts/:id/guests/console/input", s.takeConsoleInput)
}

// consoleInput queues text to type into a VM's console, for its host's
// agent to take: POST /v1/servers/{id}/console/input answers 202 with how
// many inputs wait.
func (s *Server) consoleInput(c echo.Context) error {
	srv, _, err := writableVisible(c, s.visibleServer)
	if err != nil {
		return err
	}
	var in types.ConsoleInput
	if err := s.decode(c, &in); err != nil {
		return err
	}
	switch {
	case in.Data == "":
		return types.FieldError("data", "is required")
	case len(in.Data) > types.MaxConsoleInput:
		return types.FieldError("data", "is %d bytes, at most %d", len(in.Data), types.MaxConsoleInput)
	}
	if srv.Kind == types.KindBaremetal {
		return types.Errorf(types.CodeConsoleUnavailable, "server %s is bare metal: its serial console is the node's "+
			"(IPMI serial-over-LAN) and is not served through the API", srv.ID).WithDetail("reason", "baremetal")
	}
	if srv.State != types.ServerActive || srv.HostID == "" {
		return types.Errorf(types.CodeConflict, "server %s is %s: input goes only to a running guest", srv.ID, srv.State).
			WithDetail("state", srv.State)
	}
	n, err := s.store.QueueConsoleInput(c.Request().Context(), srv, in.Data, s.now())
	if err != nil {
		return err
	}
	setResource(c, srv.ID)
	store.AfterCommit(c.Request().Context(), func() { s.consoles.notify(inputKey(srv.HostID)) })
	return c.JSON(http.StatusAccepted, map[string]any{"queued": n})
}

// inputKey is the consoleHub key of a host's pending console input.
func inputKey(hostID string) string { return "input/" + hostID }

// takeConsoleInput is the agent's long poll for console input: POST
// /v1/hosts/{id}/guests/console/input?wait=30s removes and answers the
// input waiting for the host's guests, waiting up to wait for some. It
// runs outside a request transaction (it may wait), taking in short ones.
func (s *Server) takeConsoleInput(c echo.Context) error {
	if err := ownHost(c); err != nil {
		return err
	}
	var in struct{}
	if err := s.decode(c, &in); err != nil {
		return err
	}
	q, err := queryOf(c, "wait")
	if err != nil {
		return err
	}
	wait := defaultConsoleWait
	if v, ok := q["wait"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxConsoleWait {
			return types.FieldError("wait", "must be a duration between 0s and %s, e.g. 30s", maxConsoleWait)
		}
		wait = d
	}
	ctx := c.Request().Context()
	host, err := s.store.GetHost(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	s.holdFor(c, wait+longPollMargin)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	recheck := time.NewTicker(s.cfg.WatchRecheck)
	defer recheck.Stop()
	for {
		queued, release := s.consoles.wait(inputKey(host.ID))
		got, err := s.store.TakeConsoleInput(ctx, host.ID, s.now())
		if err != nil || len(got) > 0 {
			release()
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, types.ConsoleInputs{Inputs: got})
		}
		select {
		case <-queued:
		case <-recheck.C: // input another replica took
		case <-deadline.C:
			release()
			return c.JSON(http.StatusOK, types.ConsoleInputs{Inputs: []types.ConsoleInputFor{}})
		case <-ctx.Done():
			release()
			return types.Errorf(types.CodeCanceled, "the wait was closed")
		}
		release()
	}
}

// consoleHub wakes the follows of servers' consoles at an upload. A
// server's channel is dropped when its last follower leaves, so follows of
// servers long gone leave nothing behind. Uploads another replica took are
// found by each follow's periodic re-check.
type consoleHub struct {
	mu   sync.Mutex
	keys map[string]*consoleWaiters
}

type consoleWaiters struct {
	ch chan struct{}
	n  int
}

// wait returns a channel closed at the server's next upload, and a release
// the follower calls once it stops waiting on it.
func (h *consoleHub) wait(serverID string) (<-chan struct{}, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := h.keys[serverID]
	if !ok {
		w = &consoleWaiters{ch: make(chan struct{})}
		h.keys[serverID] = w
	}
	w.n++
	once := sync.Once{}
	return w.ch, func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if w.n--; w.n == 0 && h.keys[serverID] == w {
				delete(h.keys, serverID)
			}
		})
	}
}

// notify wakes the follows of the servers.
func (h *consoleHub) notify(serverIDs ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range serverIDs {
		if w, ok := h.keys[id]; ok {
			close(w.ch)
			delete(h.keys, id)
		}
	}
}

// size is how many servers have followers waiting.
func (h *consoleHub) size() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.keys)
}

// uploadConsole keeps the console output a host's agent read.
func (s *Server) uploadConsole(c echo.Context) error {
	if err := ownHost(c); err != nil {
		return err
	}
	var in types.ConsoleUpload
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if len(in.Chunks) > types.MaxConsoleChunks {
		return types.FieldError("chunks", "at most %d chunks per upload", types.MaxConsoleChunks)
	}
	for i, ch := range in.Chunks {
		f := "chunks[" + strconv.Itoa(i) + "]"
		switch {
		case ch.ServerID == "":
			return types.FieldError(f+".server_id", "is required")
		case ch.Offset < 0:
			return types.FieldError(f+".offset", "must not be negative")
		case len(ch.Data) > types.MaxConsoleChunk:
			return types.FieldError(f+".data", "is %d bytes, at most %d per chunk", len(ch.Data), types.MaxConsoleChunk)
		}
	}
	ctx := c.Request().Context()
	host, err := s.store.GetHost(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	grew, unknown, err := s.store.AppendConsole(ctx, host.ID, in.Chunks, s.now())
	if err != nil {
		return err
	}
	if len(grew) > 0 {
		store.AfterCommit(ctx, func() { s.consoles.notify(grew...) })
	}
	return c.JSON(http.StatusOK, map[string]any{"kept": len(grew), "unknown": nonNil(unknown)})
}

// serverConsole answers a server's console: GET
// /v1/servers/{id}/console?tail=N gives the last N whole lines;
// ?after=CURSOR the lines after a cursor (an answer's "next"), and with
// follow=true waits up to wait (default 30s) for at least one.
func (s *Server) serverConsole(c echo.Context) error {
	srv, err := s.visibleServer(c)
	if err != nil {
		return err
	}
	q, err := queryOf(c, "tail", "after", "follow", "wait")
	if err != nil {
		return err
	}
	limit, after, follow, wait := types.DefaultConsoleTail, int64(-1), false, defaultConsoleWait
	if v, ok := q["tail"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > types.MaxConsoleLines {
			return types.FieldError("tail", "must be an integer from 1 to %d", types.MaxConsoleLines)
		}
		limit = n
	} else if _, ok := q["after"]; ok {
		limit = types.MaxConsoleLines
	}
	if v, ok := q["after"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return types.FieldError("after", "must be a cursor (an answer's \"next\"), a non-negative integer")
		}
		after = n
	}
	if v, ok := q["follow"]; ok {
		if follow, err = strconv.ParseBool(v); err != nil {
			return types.FieldError("follow", "must be true or false")
		}
		if follow && after < 0 {
			return types.FieldError("after", "is required with follow=true: pass the \"next\" of a previous answer")
		}
	}
	if v, ok := q["wait"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxConsoleWait {
			return types.FieldError("wait", "must be a duration between 0s and %s, e.g. 30s", maxConsoleWait)
		}
		if !follow {
			return types.FieldError("wait", "is only allowed with follow=true")
		}
		wait = d
	}
	if srv.Kind == types.KindBaremetal {
		return types.Errorf(types.CodeConsoleUnavailable, "server %s is bare metal: its serial console is the node's "+
			"(IPMI serial-over-LAN) and is not served through the API", srv.ID).WithDetail("reason", "baremetal")
	}
	ctx := c.Request().Context()
	if follow {
		s.holdFor(c, wait+longPollMargin)
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	recheck := time.NewTicker(s.cfg.WatchRecheck)
	defer recheck.Stop()
	for {
		changed, release := s.consoles.wait(srv.ID) // before reading, so no upload is missed
		t, _, err := s.store.Console(ctx, srv.ID)
		if err != nil {
			release()
			return err
		}
		out := consoleView(t, after, limit)
		if !follow || len(out.Lines) > 0 {
			release()
			return c.JSON(http.StatusOK, out)
		}
		select {
		case <-changed:
		case <-recheck.C: // an upload another replica took
		case <-deadline.C:
			release()
			return c.JSON(http.StatusOK, out)
		case <-ctx.Done():
			release()
			return types.Errorf(types.CodeCanceled, "the follow was closed")
		}
		release()
	}
}

// consoleView cuts a kept console into an answer. Without a cursor (after
// < 0) it gives the last limit whole lines; with one, the first limit whole
// lines after it. Next always points past the last line given, at a line
// start, so that a line is never given twice nor split.
func consoleView(t store.ConsoleTail, after int64, limit int) types.Console {
	out := types.Console{Lines: []string{}}
	if !t.UpdatedAt.IsZero() {
		u := t.UpdatedAt
		out.UpdatedAt = &u
	}
	start := t.EndSeq - int64(len(t.Data))
	from := 0
	switch {
	case after < 0:
		out.Truncated = start > 0
	case after < start:
		out.Truncated = true // cut since the cursor was given
	case after > t.EndSeq:
		out.Truncated = start > 0 // a cursor of another history (a restored database)
	default:
		from = int(after - start)
	}
	seg := t.Data[from:]
	whole := strings.LastIndexByte(seg, '\n') + 1
	raw := strings.SplitAfter(seg[:whole], "\n")
	if n := len(raw); n > 0 && raw[n-1] == "" {
		raw = raw[:n-1]
	}
	partial := seg[whole:]
	next := start + int64(from)
	switch {
	case len(raw) <= limit:
		next += int64(whole)
	case after < 0:
		raw = raw[len(raw)-limit:]
		out.Truncated = true
		next += int64(whole)
	default:
		raw = raw[:limit]
		partial = ""
		for _, l := range raw {
			next += int64(len(l))
		}
	}
	for _, l := range raw {
		out.Lines = append(out.Lines, strings.TrimRight(l, "\r\n"))
	}
	out.Partial = strings.TrimRight(partial, "\r")
	out.Next = next
	return out
}

// queryOf reads the query, refusing parameters not in allowed and
// parameters given twice, so that a typo never goes unnoticed.
func queryOf(c echo.Context, allowed ...string) (map[string]string, error) {
	out := map[string]string{}
	for k, vs := range c.QueryParams() {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			return nil, types.FieldError(k, "unknown query parameter; allowed: %s", strings.Join(sorted(allowed...), ", ")).
				WithDetail("allowed", sorted(allowed...))
		}
		if len(vs) > 1 {
			return nil, types.FieldError(k, "given %d times; give it once", len(vs))
		}
		out[k] = vs[0]
	}
	return out, nil
}
