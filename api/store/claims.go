package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// HostClaim is one compare-and-swap on a host: add Delta if the host is
// still at Generation.
type HostClaim struct {
	HostID     string
	Generation int64
	Delta      Allocation
	// Failsafe, when set, also requires the host's measured free memory
	// less what was claimed since it was measured (see HostRow) to stay at
	// or above MarginMiB after the claim. It is checked in the same
	// statement as the generation, so it holds across snapshot rebuilds
	// and replicas.
	Failsafe  bool
	MarginMiB int64
}

// StaleHostError is returned when a host's generation moved on between the
// scheduler's snapshot and the claim: another claim won. Nothing was
// written; the caller refreshes the host and places again.
type StaleHostError struct{ HostID string }

func (e *StaleHostError) Error() string { return "host " + e.HostID + " changed since it was read" }

// Is makes errors.Is(err, ErrStale) true.
func (e *StaleHostError) Is(target error) bool { return target == ErrStale }

// PlacedServer is a server to record with the resources it claims.
type PlacedServer struct {
	Server types.Server // HostID, RegionID and ZoneID set by placement
	Claim  Allocation
	// Bootstrap is the guest's first-boot data, nil for none.
	Bootstrap *ServerBootstrap
}

// ClaimAndCreate applies every host claim and records the servers in state
// scheduled, in one transaction: all of it happens, or none (a group is all
// or nothing, and no claim is ever left without its server).
func (s *Store) ClaimAndCreate(ctx context.Context, claims []HostClaim, servers []PlacedServer, group *types.Group) ([]types.Server, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	defer tx.Rollback()
	if err := s.applyClaims(ctx, tx, claims); err != nil {
		return nil, err
	}
	switch {
	case group != nil && group.Revision == 0:
		if err := s.insertGroup(ctx, tx, group); err != nil {
			return nil, err
		}
	case group != nil:
		// Members are added to a group as it was read: if it changed
		// since, the decision may break its spread.
		if err := s.bumpGroup(ctx, tx, group.ID, group.Revision); err != nil {
			return nil, err
		}
		group.Revision++
	}
	out := make([]types.Server, len(servers))
	for i, ps := range servers {
		in := ps.Server
		row := ServerRow{rowMeta: newMeta(prefixServer), Name: in.Name, Kind: in.Kind, ProjectID: in.ProjectID,
			FlavorID: in.FlavorID, ImageID: in.ImageID, RegionID: in.RegionID, ZoneID: in.ZoneID, AggregateID: in.AggregateID,
			DesiredState: in.DesiredState, State: types.ServerScheduled, HostID: in.HostID, NodeID: in.NodeID,
			Addresses: "[]", Claim: toJSON(ps.Claim), GroupID: in.GroupID}
		if ps.Bootstrap != nil {
			row.Bootstrap = toJSON(ps.Bootstrap)
		}
		if group != nil {
			row.GroupID = group.ID
		}
		if err := insertRow(ctx, s, tx, serverTable, &row); err != nil {
			return nil, err
		}
		out[i] = row.API()
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return out, nil
}

func (s *Store) applyClaims(ctx context.Context, tx *Tx, claims []HostClaim) error {
	for _, c := range claims {
		failsafe := 0
		if c.Failsafe {
			failsafe = 1
		}
		res, err := tx.ExecContext(ctx, s.rb(`UPDATE hosts SET generation = generation + 1,
			used_vcpus = used_vcpus + ?, used_ram_mib = used_ram_mib + ?, used_disk_gib = used_disk_gib + ?,
			used_hugepages = used_hugepages + ?, used_guests = used_guests + ?
			WHERE id = ? AND generation = ? AND (? = 0 OR (hb_free_ram_mib IS NOT NULL AND
				hb_free_ram_mib - CASE WHEN used_ram_mib > hb_used_ram_mib THEN used_ram_mib - hb_used_ram_mib ELSE 0 END - ? >= ?))`),
			c.Delta.VCPUs, c.Delta.RAMMiB, c.Delta.DiskGiB, c.Delta.Hugepages, c.Delta.Guests, c.HostID, c.Generation,
			failsafe, c.Delta.RAMMiB, c.MarginMiB)
		if err != nil {
			return fmt.Errorf("claim on host %s: %w", c.HostID, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return &StaleHostError{HostID: c.HostID}
		}
	}
	return nil
}

// release gives a server's claim back to its host.
func (s *Store) release(ctx context.Context, tx *Tx, row ServerRow) error {
	if row.HostID == "" {
		return nil
	}
	var a Allocation
	if err := json.Unmarshal([]byte(row.Claim), &a); err != nil {
		return fmt.Errorf("server %s: bad claim %q: %w", row.ID, row.Claim, err)
	}
	_, err := tx.ExecContext(ctx, s.rb(`UPDATE hosts SET generation = generation + 1,
		used_vcpus = used_vcpus - ?, used_ram_mib = used_ram_mib - ?, used_disk_gib = used_disk_gib - ?,
		used_hugepages = used_hugepages - ?, used_guests = used_guests - ? WHERE id = ?`),
		a.VCPUs, a.RAMMiB, a.DiskGiB, a.Hugepages, a.Guests, row.HostID)
	if err != nil {
		return fmt.Errorf("release claim of %s on %s: %w", row.ID, row.HostID, err)
	}
	return nil
}

// DeleteServers deletes servers and gives their claims back, in one
// transaction. It returns the deleted servers.
func (s *Store) DeleteServers(ctx context.Context, ids []string, ifMatch int64) ([]types.Server, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("delete servers: %w", err)
	}
	defer tx.Rollback()
	out, err := s.deleteServers(ctx, tx, ids, ifMatch)
	if err != nil {
		return nil, err
	}
	return out, tx.Commit()
}

func (s *Store) deleteServers(ctx context.Context, tx *Tx, ids []string, ifMatch int64) ([]types.Server, error) {
	out := make([]types.Server, 0, len(ids))
	for _, id := range ids {
		row, err := lockRow[ServerRow](ctx, s, tx, serverTable, id)
		if err != nil {
			return nil, err
		}
		if ifMatch > 0 && row.Revision != ifMatch {
			return nil, fmt.Errorf("server %s is at revision %d, not %d: %w", row.ID, row.Revision, ifMatch, ErrStale)
		}
		if row.hasGuest() {
			// The host's agent runs (or may be building) the guest: it
			// removes it and confirms, and only then is the claim given
			// back (ReportGuests). Until then the server is "deleting",
			// out of its group.
			if row.State != types.ServerDeleting {
				row.State, row.GroupID, row.Revision, row.UpdatedAt = types.ServerDeleting, "", row.Revision+1, micros(time.Now())
				if _, err := tx.ExecContext(ctx, s.rb(`UPDATE servers SET state = ?, group_id = ?, revision = ?, updated_at = ?
					WHERE id = ?`), row.State, row.GroupID, row.Revision, row.UpdatedAt, row.ID); err != nil {
					return nil, fmt.Errorf("delete server %s: %w", row.ID, err)
				}
				// The explicit record the agent acts on.
				if err := s.tombstoneFor(ctx, tx, row, types.TombstoneServerDeleted); err != nil {
					return nil, err
				}
			}
			out = append(out, row.API())
			continue
		}
		// No report yet, but the agent may be building it.
		if err := s.tombstoneFor(ctx, tx, row, types.TombstoneServerDeleted); err != nil {
			return nil, err
		}
		if err := s.release(ctx, tx, row); err != nil {
			return nil, err
		}
		if err := s.unplugPorts(ctx, tx, row.ID); err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM servers WHERE id = ?"), row.ID); err != nil {
			return nil, fmt.Errorf("delete server %s: %w", row.ID, err)
		}
		out = append(out, row.API())
	}
	return out, nil
}

// ReplaceServer retires old and records its replacement with a new claim
// in one transaction. The old member leaves its group at once, but if its
// host's agent may run its guest it is only marked deleting: its row and
// claim stay until the agent confirms the guest is gone (ReportGuests), as
// for any delete. The group's revision moves on, so a concurrent change of
// the same group that read it before fails its compare-and-swap.
func (s *Store) ReplaceServer(ctx context.Context, oldID string, claims []HostClaim, repl PlacedServer) (types.Server, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return types.Server{}, fmt.Errorf("replace server: %w", err)
	}
	defer tx.Rollback()
	old, err := lockRow[ServerRow](ctx, s, tx, serverTable, oldID)
	if err != nil {
		return types.Server{}, err
	}
	if old.GroupID != "" {
		if err := s.bumpGroup(ctx, tx, old.GroupID, 0); err != nil {
			return types.Server{}, err
		}
	}
	// deleteServers records the guest's tombstone either way.
	gone, err := s.deleteServers(ctx, tx, []string{old.ID}, 0)
	if err != nil {
		return types.Server{}, err
	}
	if gone[0].State != types.ServerDeleting {
		// Its claim was given back at once, which moved its host's
		// generation on; claims on that host were computed before.
		for i := range claims {
			if claims[i].HostID == old.HostID {
				claims[i].Generation++
			}
		}
	}
	if err := s.applyClaims(ctx, tx, claims); err != nil {
		return types.Server{}, err
	}
	in := repl.Server
	row := ServerRow{rowMeta: newMeta(prefixServer), Name: in.Name, Kind: in.Kind, ProjectID: in.ProjectID,
		FlavorID: in.FlavorID, ImageID: in.ImageID, RegionID: in.RegionID, ZoneID: in.ZoneID, AggregateID: in.AggregateID,
		DesiredState: in.DesiredState, State: types.ServerScheduled, HostID: in.HostID, Addresses: "[]",
		Claim: toJSON(repl.Claim), GroupID: old.GroupID, Bootstrap: old.Bootstrap}
	if err := insertRow(ctx, s, tx, serverTable, &row); err != nil {
		return types.Server{}, err
	}
	return row.API(), tx.Commit()
}

// StaleGroupError is returned when a group changed (a member added,
// replaced or removed) since the caller read it.
type StaleGroupError struct{ GroupID string }

func (e *StaleGroupError) Error() string { return "group " + e.GroupID + " changed since it was read" }

// Is makes errors.Is(err, ErrStale) true.
func (e *StaleGroupError) Is(target error) bool { return target == ErrStale }

// bumpGroup moves a group's revision on; with revision > 0 only if the
// group is still at it.
func (s *Store) bumpGroup(ctx context.Context, tx *Tx, id string, revision int64) error {
	res, err := tx.ExecContext(ctx, s.rb(`UPDATE server_groups SET revision = revision + 1, updated_at = ?
		WHERE id = ? AND (? = 0 OR revision = ?)`), micros(time.Now()), id, revision, revision)
	if err != nil {
		return fmt.Errorf("group %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return &StaleGroupError{GroupID: id}
	}
	return nil
}

// LockGroup holds a group for the rest of the request transaction in ctx,
// so that two requests changing the same group (two scale-ups, a scale-up
// and a replace) run one after the other, each reading the members the
// other left. On SQLite the request transaction already excludes every
// other writer. A group that does not exist is not an error here.
func (s *Store) LockGroup(ctx context.Context, idOrName string) error {
	rt := requestTx(ctx)
	if rt == nil || s.dialect != Postgres {
		return nil
	}
	_, err := lockRow[GroupRow](ctx, s, &Tx{Tx: rt.tx}, groupTable, idOrName)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrAmbiguous) {
		return nil
	}
	return err
}

var groupTable = table{
	name: "server_groups", kind: "group", byName: true, owner: ownedByProject,
	cols:    []string{"id", "revision", "created_at", "updated_at", "name", "project_id", "role", "region_id", "spec"},
	filters: map[string]string{"project": "project_id = ?", "role": "role = ?"},
}

// GroupRow is a stored worker group; Spec is its JSON types.GroupSpec.
type GroupRow struct {
	rowMeta
	Name      string `db:"name"`
	ProjectID string `db:"project_id"`
	Role      string `db:"role"`
	RegionID  string `db:"region_id"`
	Spec      string `db:"spec"`
}

// API converts the row to its wire form, without members.
func (r GroupRow) API() types.Group {
	return types.Group{Meta: r.toAPI(), Name: r.Name, ProjectID: r.ProjectID, Role: r.Role, RegionID: r.RegionID,
		Spec: fromJSON[types.GroupSpec](r.Spec), Members: []types.GroupMember{}}
}

// NewGroupID returns the ID a new group will have.
func NewGroupID() string { return NewID("grp-") }

func (s *Store) insertGroup(ctx context.Context, tx *Tx, g *types.Group) error {
	now := micros(time.Now())
	row := GroupRow{rowMeta: rowMeta{ID: g.ID, Revision: 1, CreatedAt: now, UpdatedAt: now}, Name: g.Name,
		ProjectID: g.ProjectID, Role: g.Role, RegionID: g.RegionID, Spec: toJSON(g.Spec)}
	if err := insertRow(ctx, s, tx, groupTable, &row); err != nil {
		return err
	}
	*g = row.API()
	return nil
}

// GetGroup finds a group by ID or name, with its members.
func (s *Store) GetGroup(ctx context.Context, idOrName string) (types.Group, error) {
	row, err := getRow[GroupRow](ctx, s, s.rd(ctx), groupTable, idOrName)
	if err != nil {
		return types.Group{}, err
	}
	g := row.API()
	var members []ServerRow
	if err := s.rd(ctx).SelectContext(ctx, &members, s.rb("SELECT * FROM servers WHERE group_id = ? ORDER BY id"), row.ID); err != nil {
		return g, fmt.Errorf("members of group %s: %w", row.ID, err)
	}
	for _, m := range members {
		g.Members = append(g.Members, types.GroupMember{ServerID: m.ID, Name: m.Name, HostID: m.HostID, ZoneID: m.ZoneID, State: m.State})
	}
	return g, nil
}

// ListGroups returns a page of groups (without members). Filters: project,
// role.
func (s *Store) ListGroups(ctx context.Context, opts ListOptions) (types.List[types.Group], error) {
	return listAPI(ctx, s, groupTable, opts, GroupRow.API)
}

// SetGroupSpec records a group's new spec (after scaling).
func (s *Store) SetGroupSpec(ctx context.Context, id string, spec types.GroupSpec) error {
	_, err := updateRow(ctx, s, groupTable, id, 0, func(r *GroupRow) error {
		r.Spec = toJSON(spec)
		return nil
	})
	return err
}

// DeleteGroup deletes a group with all its members, releasing their
// claims, in one transaction. It returns the deleted members.
func (s *Store) DeleteGroup(ctx context.Context, idOrName string) ([]types.Server, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("delete group: %w", err)
	}
	defer tx.Rollback()
	g, err := lockRow[GroupRow](ctx, s, tx, groupTable, idOrName)
	if err != nil {
		return nil, err
	}
	var ids []string
	if err := tx.SelectContext(ctx, &ids, s.rb("SELECT id FROM servers WHERE group_id = ? ORDER BY id"), g.ID); err != nil {
		return nil, fmt.Errorf("members of group %s: %w", g.ID, err)
	}
	gone, err := s.deleteServers(ctx, tx, ids, 0)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM server_groups WHERE id = ?"), g.ID); err != nil {
		return nil, fmt.Errorf("delete group %s: %w", g.ID, err)
	}
	return gone, tx.Commit()
}
