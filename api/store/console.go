package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/corral-cloud/corral/api/types"
)

// ConsoleTail is the console output corrald keeps for a server.
type ConsoleTail struct {
	// Data is the kept output: valid UTF-8, no NUL bytes, at most
	// types.ConsoleKeep bytes, starting at a line start once anything was
	// cut.
	Data string
	// EndSeq counts every byte ever kept: Data ends there and starts at
	// EndSeq-len(Data). Cursors (?after=) are counted on it.
	EndSeq int64
	// SrcOffset is where the agent's next chunk starts in the host's
	// console log.
	SrcOffset int64
	UpdatedAt time.Time
}

type consoleRow struct {
	ServerID  string `db:"server_id"`
	Data      string `db:"data"`
	EndSeq    int64  `db:"end_seq"`
	SrcOffset int64  `db:"src_offset"`
	UpdatedAt int64  `db:"updated_at"`
}

// Console returns a server's kept console output; ok is false when its
// agent never sent any. It does not check the server's visibility.
func (s *Store) Console(ctx context.Context, serverID string) (ConsoleTail, bool, error) {
	var r consoleRow
	err := s.rd(ctx).GetContext(ctx, &r, s.rb("SELECT * FROM server_consoles WHERE server_id = ?"), serverID)
	if errors.Is(err, sql.ErrNoRows) {
		return ConsoleTail{}, false, nil
	}
	if err != nil {
		return ConsoleTail{}, false, fmt.Errorf("read console of %s: %w", serverID, err)
	}
	return ConsoleTail{Data: r.Data, EndSeq: r.EndSeq, SrcOffset: r.SrcOffset, UpdatedAt: fromMicros(r.UpdatedAt)}, true, nil
}

// AppendConsole keeps the chunks a host's agent uploaded, in one
// transaction, for VMs placed on that host; it returns the servers whose
// console grew. Chunks for other servers are skipped and returned in
// unknown (a guest the host runs that corrald has no server for).
func (s *Store) AppendConsole(ctx context.Context, hostID string, chunks []types.ConsoleChunk, now time.Time) (grew, unknown []string, err error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("append console: %w", err)
	}
	defer tx.Rollback()
	for _, ch := range chunks {
		row, err := lockRow[ServerRow](ctx, s, tx, serverTable, ch.ServerID)
		if errors.Is(err, ErrNotFound) || (err == nil && (row.HostID != hostID || row.Kind != types.KindVM)) {
			unknown = append(unknown, ch.ServerID)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		var cur consoleRow
		err = tx.GetContext(ctx, &cur, s.rb("SELECT * FROM server_consoles WHERE server_id = ?"), row.ID)
		exists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, nil, fmt.Errorf("read console of %s: %w", row.ID, err)
		}
		t := ConsoleTail{Data: cur.Data, EndSeq: cur.EndSeq, SrcOffset: cur.SrcOffset}
		next, changed := AppendChunk(t, ch, types.ConsoleKeep)
		if !changed && exists {
			continue
		}
		if exists {
			_, err = tx.ExecContext(ctx, s.rb(`UPDATE server_consoles SET data = ?, end_seq = ?, src_offset = ?, updated_at = ?
				WHERE server_id = ?`), next.Data, next.EndSeq, next.SrcOffset, micros(now), row.ID)
		} else {
			_, err = tx.ExecContext(ctx, s.rb(`INSERT INTO server_consoles (server_id, data, end_seq, src_offset, updated_at)
				VALUES (?, ?, ?, ?, ?)`), row.ID, next.Data, next.EndSeq, next.SrcOffset, micros(now))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("keep console of %s: %w", row.ID, err)
		}
		if changed {
			grew = append(grew, row.ID)
		}
	}
	return grew, unknown, tx.Commit()
}

// AppendChunk adds a chunk to a kept tail and cuts it to keep bytes: only
// the part of the chunk past t.SrcOffset is new (a chunk sent again adds
// nothing); a gap (output the agent skipped) is marked by a line saying so.
// Invalid UTF-8 becomes U+FFFD and NUL bytes are dropped. The cut falls at
// a line start when the kept part holds one. It reports whether anything
// was added.
func AppendChunk(t ConsoleTail, ch types.ConsoleChunk, keep int) (ConsoleTail, bool) {
	data := ch.Data
	var add strings.Builder
	if ch.Reset {
		t.SrcOffset = 0
		if t.Data != "" && !strings.HasSuffix(t.Data, "\n") {
			add.WriteString("\n")
		}
	}
	switch skip := t.SrcOffset - ch.Offset; {
	case skip >= int64(len(data)):
		if add.Len() == 0 {
			return t, false
		}
		data = nil
	case skip > 0:
		data = data[skip:]
	case skip < 0:
		if t.Data != "" && !strings.HasSuffix(t.Data+add.String(), "\n") {
			add.WriteString("\n")
		}
		fmt.Fprintf(&add, "[corral: %d bytes of console output were not kept]\n", -skip)
	}
	if end := ch.Offset + int64(len(ch.Data)); end > t.SrcOffset || ch.Reset {
		t.SrcOffset = end
	}
	add.WriteString(strings.ReplaceAll(strings.ToValidUTF8(string(data), "\uFFFD"), "\x00", ""))
	if add.Len() == 0 {
		return t, false
	}
	t.Data += add.String()
	t.EndSeq += int64(add.Len())
	if over := len(t.Data) - keep; over > 0 {
		cut := over
		if i := strings.IndexByte(t.Data[over:], '\n'); i >= 0 && i < len(t.Data)-over-1 {
			cut = over + i + 1
		}
		for cut < len(t.Data) && !utf8.RuneStart(t.Data[cut]) {
			cut++
		}
		t.Data = t.Data[cut:]
	}
	return t, true
}

// PurgeConsoles removes the console output and input of servers that no
// longer exist, and input older than a minute.
func (s *Store) PurgeConsoles(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.wr(ctx).ExecContext(ctx, "DELETE FROM server_consoles WHERE server_id NOT IN (SELECT id FROM servers)")
	if err != nil {
		return 0, fmt.Errorf("purge consoles: %w", err)
	}
	if _, err := s.wr(ctx).ExecContext(ctx, s.rb("DELETE FROM server_console_input WHERE created_at < ? OR server_id NOT IN (SELECT id FROM servers)"),
		micros(now.Add(-consoleInputTTL))); err != nil {
		return 0, fmt.Errorf("purge console input: %w", err)
	}
	return res.RowsAffected()
}

// consoleInputTTL is how long input waits for an agent: later, it would be
// typed into a console its sender stopped watching.
const consoleInputTTL = time.Minute

// QueueConsoleInput queues input for a VM's host's agent and returns how
// many inputs wait for the server. A full queue is a conflict.
func (s *Store) QueueConsoleInput(ctx context.Context, srv types.Server, data string, now time.Time) (int, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("queue console input: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM server_console_input WHERE server_id = ? AND created_at < ?"),
		srv.ID, micros(now.Add(-consoleInputTTL))); err != nil {
		return 0, fmt.Errorf("queue console input: %w", err)
	}
	var q struct {
		N   int64 `db:"n"`
		Max int64 `db:"mx"`
	}
	if err := tx.GetContext(ctx, &q, s.rb("SELECT COUNT(*) AS n, COALESCE(MAX(seq), 0) AS mx FROM server_console_input WHERE server_id = ?"),
		srv.ID); err != nil {
		return 0, fmt.Errorf("queue console input: %w", err)
	}
	if q.N >= types.MaxConsoleInputQueue {
		return 0, types.Errorf(types.CodeConflict, "server %s: %d console inputs already wait for its host's agent (is it up?)",
			srv.ID, q.N).WithDetail("limit", types.MaxConsoleInputQueue)
	}
	if _, err := tx.ExecContext(ctx, s.rb(`INSERT INTO server_console_input (server_id, seq, host_id, data, created_at)
		VALUES (?, ?, ?, ?, ?)`), srv.ID, q.Max+1, srv.HostID, data, micros(now)); err != nil {
		return 0, fmt.Errorf("queue console input: %w", err)
	}
	return int(q.N) + 1, tx.Commit()
}

// TakeConsoleInput removes and returns the input waiting for the guests
// of a host (still placed there), oldest first per server; input older
// than a minute is dropped.
func (s *Store) TakeConsoleInput(ctx context.Context, hostID string, now time.Time) ([]types.ConsoleInputFor, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("take console input: %w", err)
	}
	defer tx.Rollback()
	var rows []struct {
		ServerID string `db:"server_id"`
		Data     string `db:"data"`
	}
	if err := tx.SelectContext(ctx, &rows, s.rb(`SELECT i.server_id, i.data FROM server_console_input i
		JOIN servers s ON s.id = i.server_id AND s.host_id = i.host_id
		WHERE i.host_id = ? AND i.created_at >= ? ORDER BY i.server_id, i.seq`), hostID, micros(now.Add(-consoleInputTTL))); err != nil {
		return nil, fmt.Errorf("take console input: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM server_console_input WHERE host_id = ?"), hostID); err != nil {
		return nil, fmt.Errorf("take console input: %w", err)
	}
	out := make([]types.ConsoleInputFor, len(rows))
	for i, r := range rows {
		out[i] = types.ConsoleInputFor{ServerID: r.ServerID, Data: r.Data}
	}
	return out, tx.Commit()
}
