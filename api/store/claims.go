package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/jmoiron/sqlx"
)

// HostClaim is one compare-and-swap on a host: add Delta if the host is
// still at Generation.
type HostClaim struct {
	HostID     string
	Generation int64
	Delta      Allocation
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
}

// ClaimAndCreate applies every host claim and records the servers in state
// scheduled, in one transaction: all of it happens, or none (a group is all
// or nothing, and no claim is ever left without its server).
func (s *Store) ClaimAndCreate(ctx context.Context, claims []HostClaim, servers []PlacedServer, group *types.Group) ([]types.Server, error) {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	defer tx.Rollback()
	if err := s.applyClaims(ctx, tx, claims); err != nil {
		return nil, err
	}
	if group != nil && group.Revision == 0 {
		if err := s.insertGroup(ctx, tx, group); err != nil {
			return nil, err
		}
	}
	out := make([]types.Server, len(servers))
	for i, ps := range servers {
		in := ps.Server
		row := ServerRow{rowMeta: newMeta(prefixServer), Name: in.Name, Kind: in.Kind, ProjectID: in.ProjectID,
			FlavorID: in.FlavorID, ImageID: in.ImageID, RegionID: in.RegionID, ZoneID: in.ZoneID, AggregateID: in.AggregateID,
			DesiredState: in.DesiredState, State: types.ServerScheduled, HostID: in.HostID, NodeID: in.NodeID,
			Addresses: "[]", Claim: toJSON(ps.Claim), GroupID: in.GroupID}
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

func (s *Store) applyClaims(ctx context.Context, tx *sqlx.Tx, claims []HostClaim) error {
	for _, c := range claims {
		res, err := tx.ExecContext(ctx, s.rb(`UPDATE hosts SET generation = generation + 1,
			used_vcpus = used_vcpus + ?, used_ram_mib = used_ram_mib + ?, used_disk_gib = used_disk_gib + ?,
			used_hugepages = used_hugepages + ?, used_guests = used_guests + ?
			WHERE id = ? AND generation = ?`),
			c.Delta.VCPUs, c.Delta.RAMMiB, c.Delta.DiskGiB, c.Delta.Hugepages, c.Delta.Guests, c.HostID, c.Generation)
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
func (s *Store) release(ctx context.Context, tx *sqlx.Tx, row ServerRow) error {
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
	tx, err := s.w.BeginTxx(ctx, nil)
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

func (s *Store) deleteServers(ctx context.Context, tx *sqlx.Tx, ids []string, ifMatch int64) ([]types.Server, error) {
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

// ReplaceServer deletes old and records its replacement with a new claim in
// one transaction.
func (s *Store) ReplaceServer(ctx context.Context, oldID string, claims []HostClaim, repl PlacedServer) (types.Server, error) {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return types.Server{}, fmt.Errorf("replace server: %w", err)
	}
	defer tx.Rollback()
	old, err := lockRow[ServerRow](ctx, s, tx, serverTable, oldID)
	if err != nil {
		return types.Server{}, err
	}
	if err := s.tombstoneFor(ctx, tx, old, types.TombstoneServerDeleted); err != nil {
		return types.Server{}, err
	}
	if err := s.release(ctx, tx, old); err != nil {
		return types.Server{}, err
	}
	if err := s.unplugPorts(ctx, tx, old.ID); err != nil {
		return types.Server{}, err
	}
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM servers WHERE id = ?"), old.ID); err != nil {
		return types.Server{}, err
	}
	// Releasing moved the old host's generation on; claims on it were
	// computed before, so compare against the bumped value.
	for i := range claims {
		if claims[i].HostID == old.HostID {
			claims[i].Generation++
		}
	}
	if err := s.applyClaims(ctx, tx, claims); err != nil {
		return types.Server{}, err
	}
	in := repl.Server
	row := ServerRow{rowMeta: newMeta(prefixServer), Name: in.Name, Kind: in.Kind, ProjectID: in.ProjectID,
		FlavorID: in.FlavorID, ImageID: in.ImageID, RegionID: in.RegionID, ZoneID: in.ZoneID, AggregateID: in.AggregateID,
		DesiredState: in.DesiredState, State: types.ServerScheduled, HostID: in.HostID, Addresses: "[]",
		Claim: toJSON(repl.Claim), GroupID: old.GroupID}
	if err := insertRow(ctx, s, tx, serverTable, &row); err != nil {
		return types.Server{}, err
	}
	return row.API(), tx.Commit()
}

var groupTable = table{
	name: "server_groups", kind: "group", byName: true,
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

func (s *Store) insertGroup(ctx context.Context, tx *sqlx.Tx, g *types.Group) error {
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
	row, err := getRow[GroupRow](ctx, s, s.r, groupTable, idOrName)
	if err != nil {
		return types.Group{}, err
	}
	g := row.API()
	var members []ServerRow
	if err := s.r.SelectContext(ctx, &members, s.rb("SELECT * FROM servers WHERE group_id = ? ORDER BY id"), row.ID); err != nil {
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
	tx, err := s.w.BeginTxx(ctx, nil)
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
