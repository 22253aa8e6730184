package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// Tombstones and unknown guests: an agent removes a guest only when a
// deletion is recorded here (or its server is "deleting"), and reports the
// managed guests corrald does not know instead of removing them.

type tombstoneRow struct {
	HostID      string        `db:"host_id"`
	ServerID    string        `db:"server_id"`
	Generation  int64         `db:"generation"`
	Reason      string        `db:"reason"`
	DeletedAt   int64         `db:"deleted_at"`
	ConfirmedAt sql.NullInt64 `db:"confirmed_at"`
}

func (r tombstoneRow) API() types.GuestTombstone {
	out := types.GuestTombstone{ServerID: r.ServerID, Generation: r.Generation, Reason: r.Reason,
		DeletedAt: fromMicros(r.DeletedAt), Confirmed: r.ConfirmedAt.Valid}
	if r.ConfirmedAt.Valid {
		t := fromMicros(r.ConfirmedAt.Int64)
		out.ConfirmedAt = &t
	}
	return out
}

// recordTombstone records (again) that the guest of serverID on hostID is
// to be removed, unconfirmed, with the given generation.
func (s *Store) recordTombstone(ctx context.Context, tx *Tx, hostID, serverID string, generation int64, reason string, now time.Time) error {
	_, err := tx.ExecContext(ctx, s.rb(`INSERT INTO guest_tombstones (host_id, server_id, generation, reason, deleted_at, confirmed_at)
		VALUES (?, ?, ?, ?, ?, NULL)
		ON CONFLICT (host_id, server_id) DO UPDATE SET generation = excluded.generation, reason = excluded.reason,
		deleted_at = excluded.deleted_at, confirmed_at = NULL`), hostID, serverID, generation, reason, micros(now))
	if err != nil {
		return fmt.Errorf("record the deletion of %s on %s: %w", serverID, hostID, err)
	}
	return nil
}

// tombstoneFor records the deletion of a VM's guest on its host, if the
// server is a VM with a host: whatever its state, the host's agent may have
// begun to build it.
func (s *Store) tombstoneFor(ctx context.Context, tx *Tx, row ServerRow, reason string) error {
	if row.Kind != types.KindVM || row.HostID == "" {
		return nil
	}
	return s.recordTombstone(ctx, tx, row.HostID, row.ID, row.Revision, reason, time.Now())
}

// confirmTombstone marks the deletion of serverID on hostID carried out. It
// reports whether the host has a tombstone for the server at all.
func (s *Store) confirmTombstone(ctx context.Context, tx *Tx, hostID, serverID string, now time.Time) (bool, error) {
	if _, err := tx.ExecContext(ctx, s.rb(`UPDATE guest_tombstones SET confirmed_at = ?
		WHERE host_id = ? AND server_id = ? AND confirmed_at IS NULL`), micros(now), hostID, serverID); err != nil {
		return false, fmt.Errorf("confirm the deletion of %s on %s: %w", serverID, hostID, err)
	}
	var n int
	if err := tx.GetContext(ctx, &n, s.rb("SELECT COUNT(*) FROM guest_tombstones WHERE host_id = ? AND server_id = ?"),
		hostID, serverID); err != nil {
		return false, fmt.Errorf("find the deletion of %s on %s: %w", serverID, hostID, err)
	}
	return n > 0, nil
}

// HostTombstones returns the deletions recorded for a host's guests,
// pending and confirmed, by server ID.
func (s *Store) HostTombstones(ctx context.Context, hostID string) ([]types.GuestTombstone, error) {
	var rows []tombstoneRow
	if err := s.rd(ctx).SelectContext(ctx, &rows, s.rb("SELECT * FROM guest_tombstones WHERE host_id = ? ORDER BY server_id"), hostID); err != nil {
		return nil, fmt.Errorf("list the deleted guests of %s: %w", hostID, err)
	}
	out := make([]types.GuestTombstone, len(rows))
	for i, r := range rows {
		out[i] = r.API()
	}
	return out, nil
}

// PurgeTombstones removes confirmed deletions older than before, and
// returns how many it removed. Pending ones are kept until their agent
// confirms, however old.
func (s *Store) PurgeTombstones(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.wr(ctx).ExecContext(ctx, s.rb("DELETE FROM guest_tombstones WHERE confirmed_at IS NOT NULL AND confirmed_at < ?"), micros(before))
	if err != nil {
		return 0, fmt.Errorf("purge confirmed guest deletions: %w", err)
	}
	return res.RowsAffected()
}

type unknownRow struct {
	HostID    string `db:"host_id"`
	ServerID  string `db:"server_id"`
	Guest     string `db:"guest"`
	FirstSeen int64  `db:"first_seen"`
	LastSeen  int64  `db:"last_seen"`
}

func (r unknownRow) API() types.UnknownGuest {
	g := fromJSON[types.UnknownGuest](r.Guest)
	g.ServerID, g.HostID = r.ServerID, r.HostID
	g.FirstSeen, g.LastSeen = fromMicros(r.FirstSeen), fromMicros(r.LastSeen)
	return g
}

// SetUnknownGuests replaces the unknown guests of a host with what its
// agent reported, in one transaction. Guests corrald knows meanwhile (a
// server on the host) and guests whose deletion is pending are left out.
// It returns the host's unknown guests as stored.
func (s *Store) SetUnknownGuests(ctx context.Context, hostID string, in []types.UnknownGuest, now time.Time) ([]types.UnknownGuest, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("record unknown guests: %w", err)
	}
	defer tx.Rollback()
	var skip []string
	if err := tx.SelectContext(ctx, &skip, s.rb(`SELECT id FROM servers WHERE host_id = ?
		UNION SELECT server_id FROM guest_tombstones WHERE host_id = ? AND confirmed_at IS NULL`), hostID, hostID); err != nil {
		return nil, fmt.Errorf("record unknown guests of %s: %w", hostID, err)
	}
	known := map[string]bool{}
	for _, id := range skip {
		known[id] = true
	}
	var old []unknownRow
	if err := tx.SelectContext(ctx, &old, s.rb("SELECT * FROM unknown_guests WHERE host_id = ?"), hostID); err != nil {
		return nil, fmt.Errorf("record unknown guests of %s: %w", hostID, err)
	}
	firstSeen := map[string]int64{}
	for _, r := range old {
		firstSeen[r.ServerID] = r.FirstSeen
	}
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM unknown_guests WHERE host_id = ?"), hostID); err != nil {
		return nil, fmt.Errorf("record unknown guests of %s: %w", hostID, err)
	}
	seen := map[string]bool{}
	for _, g := range in {
		if g.ServerID == "" || known[g.ServerID] || seen[g.ServerID] {
			continue
		}
		seen[g.ServerID] = true
		first, ok := firstSeen[g.ServerID]
		if !ok {
			first = micros(now)
		}
		g.HostID, g.FirstSeen, g.LastSeen, g.Tombstone = "", time.Time{}, time.Time{}, nil
		if _, err := tx.ExecContext(ctx, s.rb(`INSERT INTO unknown_guests (host_id, server_id, guest, first_seen, last_seen)
			VALUES (?, ?, ?, ?, ?)`), hostID, g.ServerID, toJSON(g), first, micros(now)); err != nil {
			return nil, fmt.Errorf("record unknown guest %s of %s: %w", g.ServerID, hostID, classify(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("record unknown guests of %s: %w", hostID, err)
	}
	return s.UnknownGuests(ctx, hostID)
}

// UnknownGuests returns a host's unknown guests by server ID, each with the
// deletion recorded for it, if any. A guest whose server exists meanwhile
// is not listed.
func (s *Store) UnknownGuests(ctx context.Context, hostID string) ([]types.UnknownGuest, error) {
	var rows []unknownRow
	if err := s.rd(ctx).SelectContext(ctx, &rows, s.rb(`SELECT u.* FROM unknown_guests u WHERE u.host_id = ?
		AND NOT EXISTS (SELECT 1 FROM servers s WHERE s.id = u.server_id) ORDER BY u.server_id`), hostID); err != nil {
		return nil, fmt.Errorf("list unknown guests of %s: %w", hostID, err)
	}
	tombs, err := s.HostTombstones(ctx, hostID)
	if err != nil {
		return nil, err
	}
	byID := map[string]types.GuestTombstone{}
	for _, t := range tombs {
		byID[t.ServerID] = t
	}
	out := make([]types.UnknownGuest, 0, len(rows))
	for _, r := range rows {
		g := r.API()
		if t, ok := byID[g.ServerID]; ok {
			g.Tombstone = &t
		}
		out = append(out, g)
	}
	return out, nil
}

// UnknownGuestCounts returns how many unknown guests each host has, by
// host name, 0 for hosts without any.
func (s *Store) UnknownGuestCounts(ctx context.Context) (map[string]int, error) {
	var rows []struct {
		Name string `db:"name"`
		N    int    `db:"n"`
	}
	if err := s.rd(ctx).SelectContext(ctx, &rows, `SELECT h.name AS name, (SELECT COUNT(*) FROM unknown_guests u WHERE u.host_id = h.id
		AND NOT EXISTS (SELECT 1 FROM servers s WHERE s.id = u.server_id)) AS n FROM hosts h`); err != nil {
		return nil, fmt.Errorf("count unknown guests: %w", err)
	}
	out := make(map[string]int, len(rows))
	for _, r := range rows {
		out[r.Name] = r.N
	}
	return out, nil
}

func (s *Store) lockUnknown(ctx context.Context, tx *Tx, hostID, serverID string) (types.UnknownGuest, error) {
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	var r unknownRow
	err := tx.GetContext(ctx, &r, s.rb("SELECT * FROM unknown_guests WHERE host_id = ? AND server_id = ?"+lock), hostID, serverID)
	if errors.Is(err, sql.ErrNoRows) {
		return types.UnknownGuest{}, fmt.Errorf("unknown guest %q on host %s: %w", serverID, hostID, ErrNotFound)
	}
	if err != nil {
		return types.UnknownGuest{}, fmt.Errorf("find unknown guest %s on %s: %w", serverID, hostID, err)
	}
	var n int
	if err := tx.GetContext(ctx, &n, s.rb("SELECT COUNT(*) FROM servers WHERE id = ?"), serverID); err != nil {
		return types.UnknownGuest{}, fmt.Errorf("find server %s: %w", serverID, err)
	}
	if n > 0 {
		// corrald knows it meanwhile: it is no longer unknown.
		return types.UnknownGuest{}, fmt.Errorf("unknown guest %q on host %s: %w", serverID, hostID, ErrNotFound)
	}
	return r.API(), nil
}

// AdoptedServer is an unknown guest's server record as the caller rebuilt
// it (references resolved) and the claim it takes on its host.
type AdoptedServer struct {
	Server types.Server
	Claim  Allocation
}

// AdoptGuest turns an unknown guest of a host into a server again, in one
// transaction: the server record keeps the guest's ID, its claim is added
// to the host's allocations, the guest leaves the unknown list and any
// deletion recorded for it is dropped. A guest that is not (or no longer)
// unknown is ErrNotFound.
func (s *Store) AdoptGuest(ctx context.Context, hostID, serverID string, in AdoptedServer) (types.Server, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return types.Server{}, fmt.Errorf("adopt guest: %w", err)
	}
	defer tx.Rollback()
	host, err := lockRow[HostRow](ctx, s, tx, hostTable, hostID)
	if err != nil {
		return types.Server{}, err
	}
	if _, err := s.lockUnknown(ctx, tx, host.ID, serverID); err != nil {
		return types.Server{}, err
	}
	now := micros(time.Now())
	srv := in.Server
	row := ServerRow{rowMeta: rowMeta{ID: serverID, Revision: 1, CreatedAt: now, UpdatedAt: now}, Name: srv.Name, Kind: types.KindVM,
		ProjectID: srv.ProjectID, FlavorID: srv.FlavorID, ImageID: srv.ImageID, RegionID: host.RegionID, ZoneID: host.ZoneID,
		AggregateID: srv.AggregateID, DesiredState: srv.DesiredState, State: srv.State, HostID: host.ID, Addresses: "[]",
		Claim: toJSON(in.Claim)}
	if srv.State == types.ServerActive {
		row.LaunchedAt = sql.NullInt64{Int64: now, Valid: true}
	}
	if err := insertRow(ctx, s, tx, serverTable, &row); err != nil {
		return types.Server{}, err
	}
	if err := s.applyClaims(ctx, tx, []HostClaim{{HostID: host.ID, Generation: host.Generation, Delta: in.Claim}}); err != nil {
		return types.Server{}, err
	}
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM unknown_guests WHERE host_id = ? AND server_id = ?"), host.ID, serverID); err != nil {
		return types.Server{}, fmt.Errorf("adopt guest %s: %w", serverID, err)
	}
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM guest_tombstones WHERE host_id = ? AND server_id = ?"), host.ID, serverID); err != nil {
		return types.Server{}, fmt.Errorf("adopt guest %s: %w", serverID, err)
	}
	if err := tx.Commit(); err != nil {
		return types.Server{}, fmt.Errorf("adopt guest %s: %w", serverID, err)
	}
	return row.API(), nil
}

// GetUnknownGuest returns one unknown guest of a host.
func (s *Store) GetUnknownGuest(ctx context.Context, hostID, serverID string) (types.UnknownGuest, error) {
	all, err := s.UnknownGuests(ctx, hostID)
	if err != nil {
		return types.UnknownGuest{}, err
	}
	i := sort.Search(len(all), func(i int) bool { return all[i].ServerID >= serverID })
	if i < len(all) && all[i].ServerID == serverID {
		return all[i], nil
	}
	return types.UnknownGuest{}, fmt.Errorf("unknown guest %q on host %s: %w", serverID, hostID, ErrNotFound)
}

// DeleteUnknownGuest records the deletion of an unknown guest of a host, in
// one transaction: a pending tombstone the host's agent carries out (and
// confirms), and the guest leaves the unknown list. A guest that is not
// (or no longer) unknown is ErrNotFound.
func (s *Store) DeleteUnknownGuest(ctx context.Context, hostID, serverID string) (types.GuestTombstone, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return types.GuestTombstone{}, fmt.Errorf("delete unknown guest: %w", err)
	}
	defer tx.Rollback()
	if _, err := s.lockUnknown(ctx, tx, hostID, serverID); err != nil {
		return types.GuestTombstone{}, err
	}
	var gen int64
	if err := tx.GetContext(ctx, &gen, s.rb("SELECT COALESCE(MAX(generation), 0) FROM guest_tombstones WHERE host_id = ? AND server_id = ?"),
		hostID, serverID); err != nil {
		return types.GuestTombstone{}, fmt.Errorf("delete unknown guest %s: %w", serverID, err)
	}
	now := time.Now()
	if err := s.recordTombstone(ctx, tx, hostID, serverID, gen+1, types.TombstoneUnknownDeleted, now); err != nil {
		return types.GuestTombstone{}, err
	}
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM unknown_guests WHERE host_id = ? AND server_id = ?"), hostID, serverID); err != nil {
		return types.GuestTombstone{}, fmt.Errorf("delete unknown guest %s: %w", serverID, err)
	}
	if err := tx.Commit(); err != nil {
		return types.GuestTombstone{}, fmt.Errorf("delete unknown guest %s: %w", serverID, err)
	}
	return types.GuestTombstone{ServerID: serverID, Generation: gen + 1, Reason: types.TombstoneUnknownDeleted,
		DeletedAt: fromMicros(micros(now))}, nil
}
