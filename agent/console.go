package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
)

// ConsoleSource tells where a guest's serial console is logged;
// compute.Driver is the real one (libvirt's virtlogd writes the log).
type ConsoleSource interface {
	// ConsoleLog returns the path of the guest's console log, which may
	// not exist yet.
	ConsoleLog(serverID string) string
}

// DefaultConsoleInterval is how often the console logs are read.
const DefaultConsoleInterval = time.Second

// consoleBudget bounds the raw bytes of one upload (base64 makes them a
// third larger in the body, well within corrald's body limit).
const consoleBudget = 32 << 10

// consoleShipper uploads the guests' new console output to corrald, where
// users read it (GET /v1/servers/{id}/console). corrald keeps what follows
// the last chunk it took, so a chunk sent twice costs nothing: after a
// restart the agent sends each log's last types.ConsoleKeep bytes again.
type consoleShipper struct {
	l   *guestLoop
	src ConsoleSource
	// pos is, per server, the next byte to send and the log's inode.
	pos map[string]consolePos
	// rr rotates the first guest looked at, so that one chatty guest
	// cannot take every upload's budget.
	rr int
}

type consolePos struct {
	off int64
	ino uint64
}

func (l *guestLoop) runConsoles(ctx context.Context, src ConsoleSource, every time.Duration) {
	c := &consoleShipper{l: l, src: src, pos: map[string]consolePos{}}
	backoff := DefaultBackoff()
	for ctx.Err() == nil {
		more, err := c.ship(ctx)
		switch {
		case err != nil:
			wait := backoff.Next()
			l.a.log.Warn("cannot upload guest consoles; retrying", "error", err, "retry_in", wait)
			l.a.clock.Sleep(ctx, wait)
		case more:
			backoff.Reset() // a log has more to send now
		default:
			backoff.Reset()
			l.a.clock.Sleep(ctx, every)
		}
	}
}

// ship uploads one batch of new output; more says output was left for the
// next batch.
func (c *consoleShipper) ship(ctx context.Context) (more bool, err error) {
	hostID, token := c.l.a.credentials()
	c.l.mu.Lock()
	ids := make([]string, 0, len(c.l.specs))
	for id, g := range c.l.specs {
		if g.DesiredState != types.DesiredDeleted {
			ids = append(ids, id)
		}
	}
	c.l.mu.Unlock()
	if hostID == "" || token == "" || len(ids) == 0 {
		return false, nil
	}
	sort.Strings(ids)
	live := make(map[string]bool, len(ids))
	for _, id := range ids {
		live[id] = true
	}
	for id := range c.pos {
		if !live[id] {
			delete(c.pos, id) // deleted: its log went with it
		}
	}
	c.rr = (c.rr + 1) % len(ids)
	ids = append(ids[c.rr:], ids[:c.rr]...)
	var up types.ConsoleUpload
	next := map[string]consolePos{}
	left := consoleBudget
	for _, id := range ids {
		if left <= 0 || len(up.Chunks) == types.MaxConsoleChunks {
			more = true
			break
		}
		ch, pos, full, ok := c.read(id, left)
		if !ok {
			continue
		}
		more = more || full
		up.Chunks = append(up.Chunks, ch)
		next[id] = pos
		left -= len(ch.Data)
	}
	if len(up.Chunks) == 0 {
		return false, nil
	}
	cctx, cancel := context.WithTimeout(ctx, c.l.a.cfg.RequestTimeout)
	err = c.l.a.api.WithToken(token).SendConsole(cctx, hostID, up)
	cancel()
	var apiErr *client.Error
	if err != nil && errors.As(err, &apiErr) && apiErr.Status == http.StatusBadRequest {
		c.l.a.log.Error("corrald rejected a console upload; skipping that output", apiAttrs(apiErr)...)
		err = nil
	}
	if err != nil {
		return false, err
	}
	for id, p := range next {
		c.pos[id] = p
	}
	return more, nil
}

// read returns a guest's next chunk of console output, at most limit
// bytes; ok is false when there is none. full says more is waiting.
func (c *consoleShipper) read(id string, limit int) (ch types.ConsoleChunk, pos consolePos, full, ok bool) {
	f, err := os.Open(c.src.ConsoleLog(id))
	if err != nil {
		return ch, pos, false, false // no log yet
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ch, pos, false, false
	}
	size := fi.Size()
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	p, seen := c.pos[id]
	reset := false
	switch {
	case !seen:
		// First look since the agent started: corrald may have any of
		// it, and keeps only what it has not.
		p.off = max(0, size-types.ConsoleKeep)
	case size < p.off || (ino != 0 && p.ino != 0 && ino != p.ino):
		p.off, reset = 0, true // rotated or made anew (the guest restarted)
	}
	p.ino = ino
	n := min(size-p.off, int64(types.MaxConsoleChunk), int64(limit))
	if n <= 0 && !reset {
		c.pos[id] = p
		return ch, pos, false, false
	}
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, p.off)
	if err != nil && !errors.Is(err, io.EOF) {
		return ch, pos, false, false
	}
	buf = buf[:got]
	ch = types.ConsoleChunk{ServerID: id, Offset: p.off, Reset: reset, Data: buf}
	return ch, consolePos{off: p.off + int64(got), ino: ino}, p.off+int64(got) < size, true
}

// ConsoleWriter types into a guest's serial console; compute.Driver is the
// real one (the console's unix socket).
type ConsoleWriter interface {
	// WriteConsole writes data to the guest's serial port. It fails,
	// without retrying, when the console cannot be reached at once.
	WriteConsole(ctx context.Context, serverID string, data []byte) error
}

// runConsoleInput long-polls corrald for input typed into the host's
// guests' consoles and types it. Input is never retried: keystrokes typed
// late are worse than keystrokes lost, and the user sees the console.
func (l *guestLoop) runConsoleInput(ctx context.Context, w ConsoleWriter) {
	backoff := DefaultBackoff()
	for ctx.Err() == nil {
		hostID, token := l.a.credentials()
		if hostID == "" || token == "" {
			l.a.clock.Sleep(ctx, time.Second)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, l.wait+l.a.cfg.RequestTimeout)
		in, err := l.a.api.WithToken(token).TakeConsoleInput(cctx, hostID, l.wait)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			wait := backoff.Next()
			l.a.log.Warn("cannot take console input; retrying", "error", err, "retry_in", wait)
			l.a.clock.Sleep(ctx, wait)
			continue
		}
		backoff.Reset()
		for _, i := range in.Inputs {
			l.mu.Lock()
			g, ok := l.specs[i.ServerID]
			l.mu.Unlock()
			if !ok || g.DesiredState == types.DesiredDeleted {
				continue
			}
			if err := w.WriteConsole(ctx, i.ServerID, []byte(i.Data)); err != nil {
				l.a.log.Warn("console input not typed", "server", i.ServerID, "error", err)
			}
		}
	}
}
