package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/jmoiron/sqlx"
)

var serverTable = table{
	name: "servers", kind: "server", byName: false, owner: ownedByProject,
	cols: []string{"id", "revision", "created_at", "updated_at", "name", "kind", "project_id", "flavor_id", "image_id",
		"region_id", "zone_id", "aggregate_id", "desired_state", "state", "host_id", "node_id", "addresses", "fault", "launched_at", "claim", "group_id",
		"observed", "reboot_seq", "bootstrap"},
	filters: map[string]string{
		"region":    "region_id = ?",
		"zone":      "zone_id = ?",
		"aggregate": "aggregate_id = ?",
		"kind":      "kind = ?",
		"state":     "state = ?",
		"project":   "project_id = ?",
		"host":      "host_id = ?",
		"name":      "name = ?",
		"group":     "group_id = ?",
	},
}

// ServerRow is a stored server.
type ServerRow struct {
	rowMeta
	Name         string        `db:"name"`
	Kind         string        `db:"kind"`
	ProjectID    string        `db:"project_id"`
	FlavorID     string        `db:"flavor_id"`
	ImageID      string        `db:"image_id"`
	RegionID     string        `db:"region_id"`
	ZoneID       string        `db:"zone_id"`
	AggregateID  string        `db:"aggregate_id"`
	DesiredState string        `db:"desired_state"`
	State        string        `db:"state"`
	HostID       string        `db:"host_id"`
	NodeID       string        `db:"node_id"`
	Addresses    string        `db:"addresses"`
	Fault        string        `db:"fault"`
	LaunchedAt   sql.NullInt64 `db:"launched_at"`
	// Claim is the JSON Allocation this server holds on its host.
	Claim   string `db:"claim"`
	GroupID string `db:"group_id"`
	// Observed is the JSON GuestObserved the host's agent last reported.
	Observed  string `db:"observed"`
	RebootSeq int64  `db:"reboot_seq"`
	// Bootstrap is the JSON ServerBootstrap, "" for none.
	Bootstrap string `db:"bootstrap"`
}

// API converts the row to its wire form.
func (r ServerRow) API() types.Server {
	out := types.Server{Meta: r.toAPI(), Name: r.Name, Kind: r.Kind, ProjectID: r.ProjectID, FlavorID: r.FlavorID,
		ImageID: r.ImageID, RegionID: r.RegionID, ZoneID: r.ZoneID, AggregateID: r.AggregateID,
		DesiredState: r.DesiredState, State: r.State, Fault: r.Fault, HostID: r.HostID, NodeID: r.NodeID,
		Addresses: fromJSON[[]types.Address](r.Addresses), GroupID: r.GroupID, RebootSeq: r.RebootSeq}
	if r.Bootstrap != "" {
		b := fromJSON[ServerBootstrap](r.Bootstrap)
		out.KeyNames, out.UserDataBytes = b.KeyNames, len(b.UserData)
	}
	if r.Observed != "" {
		o := fromJSON[types.GuestObserved](r.Observed)
		out.Observed = &o
	}
	if out.Addresses == nil {
		out.Addresses = []types.Address{}
	}
	if r.LaunchedAt.Valid {
		t := fromMicros(r.LaunchedAt.Int64)
		out.LaunchedAt = &t
	}
	return out
}

// CreateServer records a new server in state pending. The references are
// IDs the caller has resolved; a reference deleted meanwhile fails with
// ErrReferenced.
func (s *Store) CreateServer(ctx context.Context, in types.Server) (types.Server, error) {
	row := ServerRow{rowMeta: newMeta(prefixServer), Name: in.Name, Kind: in.Kind, ProjectID: in.ProjectID,
		FlavorID: in.FlavorID, ImageID: in.ImageID, RegionID: in.RegionID, ZoneID: in.ZoneID, AggregateID: in.AggregateID,
		DesiredState: in.DesiredState, State: types.ServerPending, Addresses: "[]", Claim: "{}"}
	return row.API(), insertRow(ctx, s, s.wr(ctx), serverTable, &row)
}

// GetServer finds a server by ID, with the addresses of its ports.
func (s *Store) GetServer(ctx context.Context, id string) (types.Server, error) {
	row, err := getRow[ServerRow](ctx, s, s.rd(ctx), serverTable, id)
	if err != nil {
		return row.API(), err
	}
	out := []types.Server{row.API()}
	return out[0], s.portAddresses(ctx, out)
}

// ListServers returns a page of servers, with the addresses of their
// ports (one query for the page). Filters: region, zone, aggregate, kind,
// state, project, host, name (all IDs or exact values).
func (s *Store) ListServers(ctx context.Context, opts ListOptions) (types.List[types.Server], error) {
	l, err := listAPI(ctx, s, serverTable, opts, ServerRow.API)
	if err != nil {
		return l, err
	}
	return l, s.portAddresses(ctx, l.Items)
}

// UpdateServer changes a server's name or desired state.
func (s *Store) UpdateServer(ctx context.Context, id string, ifMatch int64, in types.ServerUpdate) (types.Server, error) {
	row, err := updateRow(ctx, s, serverTable, id, ifMatch, func(r *ServerRow) error {
		set(&r.Name, in.Name)
		set(&r.DesiredState, in.DesiredState)
		return nil
	})
	if err != nil {
		return row.API(), err
	}
	out := []types.Server{row.API()}
	return out[0], s.portAddresses(ctx, out)
}

// portAddresses adds to each server the fixed IPs of the ports plugged
// into it (network ID, address, MAC), oldest port first, after the
// addresses stored with the server (a bare-metal deploy's) and without
// repeating one. It reads every server's ports with one query.
func (s *Store) portAddresses(ctx context.Context, servers []types.Server) error {
	if len(servers) == 0 {
		return nil
	}
	ids := make([]string, len(servers))
	for i, srv := range servers {
		ids[i] = srv.ID
	}
	q, args, err := sqlx.In(`SELECT p.device_id, p.network_id, p.mac_address, a.ip_address
		FROM ports p JOIN ip_allocations a ON a.port_id = p.id LEFT JOIN subnets sn ON sn.id = a.subnet_id
		WHERE p.device_id IN (?) ORDER BY p.device_id, p.created_at, p.id, sn.created_at, a.ip_address`, ids)
	if err != nil {
		return err
	}
	var rows []struct {
		ServerID  string `db:"device_id"`
		NetworkID string `db:"network_id"`
		MAC       string `db:"mac_address"`
		IP        string `db:"ip_address"`
	}
	if err := s.rd(ctx).SelectContext(ctx, &rows, s.rb(q), args...); err != nil {
		return fmt.Errorf("read server addresses: %w", err)
	}
	byServer := map[string][]types.Address{}
	for _, r := range rows {
		byServer[r.ServerID] = append(byServer[r.ServerID], types.Address{Network: r.NetworkID, IP: r.IP, MAC: r.MAC})
	}
	for i := range servers {
		for _, a := range byServer[servers[i].ID] {
			if !slices.ContainsFunc(servers[i].Addresses, func(b types.Address) bool { return b.IP == a.IP && b.MAC == a.MAC }) {
				servers[i].Addresses = append(servers[i].Addresses, a)
			}
		}
	}
	return nil
}

// touchServers moves on the revision of each server named (empty IDs are
// skipped) whose ports changed: a server's addresses are its ports', so a
// port plugged in or out changes what GET returns, and its ETag must
// change with it.
func (s *Store) touchServers(ctx context.Context, tx *Tx, ids ...string) error {
	now := micros(time.Now())
	for _, id := range ids {
		if id == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, s.rb("UPDATE servers SET revision = revision + 1, updated_at = ? WHERE id = ?"), now, id); err != nil {
			return fmt.Errorf("server %s: %w", id, err)
		}
	}
	return nil
}

// SetServerState records a server's observed state and fault.
func (s *Store) SetServerState(ctx context.Context, id, state, fault string) (types.Server, error) {
	row, err := updateRow(ctx, s, serverTable, id, 0, func(r *ServerRow) error {
		r.State, r.Fault = state, fault
		if state == types.ServerActive && !r.LaunchedAt.Valid {
			r.LaunchedAt = sql.NullInt64{Int64: micros(time.Now()), Valid: true}
		}
		return nil
	})
	return row.API(), err
}

// DeleteServer removes a server record and gives its claim back.
func (s *Store) DeleteServer(ctx context.Context, id string, ifMatch int64) (types.Server, error) {
	out, err := s.DeleteServers(ctx, []string{id}, ifMatch)
	if err != nil {
		return types.Server{}, err
	}
	return out[0], nil
}

// SetServerLocation records the host (VM) or node (bare metal) a server
// runs on and moves it to scheduled. Placement calls it with its claim.
func (s *Store) SetServerLocation(ctx context.Context, id, hostID, nodeID string) error {
	_, err := updateRow(ctx, s, serverTable, id, 0, func(r *ServerRow) error {
		r.HostID, r.NodeID, r.State = hostID, nodeID, types.ServerScheduled
		return nil
	})
	return err
}
