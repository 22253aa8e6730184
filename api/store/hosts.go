package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/jmoiron/sqlx"
)

var hostTable = table{
	name: "hosts", kind: "host", byName: true,
	cols: []string{"id", "revision", "created_at", "updated_at", "name", "region_id", "zone_id", "state", "inventory",
		"capabilities", "usage", "last_heartbeat", "agent_version", "generation", "used_vcpus", "used_ram_mib", "used_disk_gib",
		"used_hugepages", "used_guests", "hb_free_ram_mib", "hb_used_ram_mib", "machine_id"},
	filters: map[string]string{
		"region":    "region_id = ?",
		"zone":      "zone_id = ?",
		"state":     "state = ?",
		"aggregate": "id IN (SELECT host_id FROM host_aggregates WHERE aggregate_id = ?)",
	},
	usedBy: []usage{{kind: "server", table: "servers", where: "host_id = ?"}},
}

// HostRow is a stored host; its aggregates live in host_aggregates.
type HostRow struct {
	rowMeta
	Name          string `db:"name"`
	RegionID      string `db:"region_id"`
	ZoneID        string `db:"zone_id"`
	State         string `db:"state"`
	Inventory     string `db:"inventory"`
	Capabilities  string `db:"capabilities"`
	Usage         string `db:"usage"`
	LastHeartbeat int64  `db:"last_heartbeat"`
	AgentVersion  string `db:"agent_version"`
	// Generation moves on with every claim and release.
	Generation int64 `db:"generation"`
	// MachineID is the machine identity of the last registration.
	MachineID string `db:"machine_id"`
	Allocation
	// HbFreeRAMMiB is the memory the last heartbeat measured free, and
	// HbUsedRAMMiB the host's RAM allocation when it was recorded: the
	// failsafe's figures, kept here so that every replica and every
	// snapshot rebuild sees the claims made since (used - hb_used).
	HbFreeRAMMiB sql.NullInt64 `db:"hb_free_ram_mib"`
	HbUsedRAMMiB int64         `db:"hb_used_ram_mib"`
}

// failsafeFree is the measured free memory less what was claimed since it
// was measured; releases since then are not counted back (their memory
// shows in the next heartbeat).
func (r HostRow) failsafeFree() int64 {
	if !r.HbFreeRAMMiB.Valid {
		return 0
	}
	return r.HbFreeRAMMiB.Int64 - max(0, r.RAMMiB-r.HbUsedRAMMiB)
}

// Allocation is what placement has claimed on a host, overhead included.
type Allocation struct {
	VCPUs     int64 `db:"used_vcpus" json:"vcpus"`
	RAMMiB    int64 `db:"used_ram_mib" json:"ram_mib"`
	DiskGiB   int64 `db:"used_disk_gib" json:"disk_gib"`
	Hugepages int64 `db:"used_hugepages" json:"hugepages"`
	Guests    int64 `db:"used_guests" json:"guests"`
}

// API converts the row and its aggregate IDs to the wire form.
func (r HostRow) API(aggregates []string) types.Host {
	if aggregates == nil {
		aggregates = []string{}
	}
	caps := fromJSON[[]string](r.Capabilities)
	if caps == nil {
		caps = []string{}
	}
	return types.Host{Meta: r.toAPI(), Name: r.Name, RegionID: r.RegionID, ZoneID: r.ZoneID, AggregateIDs: aggregates,
		State: r.State, Inventory: fromJSON[types.Inventory](r.Inventory), Capabilities: caps,
		Usage: fromJSON[types.Usage](r.Usage), LastHeartbeat: fromMicros(r.LastHeartbeat), AgentVersion: r.AgentVersion,
		MachineID: r.MachineID, Generation: r.Generation, Allocated: types.Allocation{VCPUs: r.VCPUs, RAMMiB: r.RAMMiB, DiskGiB: r.DiskGiB,
			Hugepages: r.Hugepages, Guests: r.Guests}, FailsafeFreeMiB: r.failsafeFree()}
}

// HostPlacement says where a registering host sits, as resolved IDs.
type HostPlacement struct {
	RegionID     string
	ZoneID       string
	AggregateIDs []string
}

// RegisterHost creates the host named in reg, or updates it if it exists
// (an agent restarting), and issues a new agent token for it, revoking the
// host's earlier agent tokens. A host in maintenance stays in maintenance.
// A name that matches no host, with a machine identity that matches one,
// gets that host back under the new name: the same machine keeps its host
// record (and the claims of the guests it runs) when it is renamed.
func (s *Store) RegisterHost(ctx context.Context, reg types.HostRegister, where HostPlacement) (types.Host, string, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return types.Host{}, "", fmt.Errorf("register host: %w", err)
	}
	defer tx.Rollback()
	now := micros(time.Now())
	row, err := lockRow[HostRow](ctx, s, tx, hostTable, reg.Name)
	if errors.Is(err, ErrNotFound) && reg.MachineID != "" {
		row, err = s.hostByMachine(ctx, tx, reg.MachineID, s.dialect == Postgres)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		row = HostRow{rowMeta: newMeta(prefixHost), Name: reg.Name, State: types.HostUp, Usage: "{}"}
	case err != nil:
		return types.Host{}, "", err
	default:
		// A host with servers never changes rack under them: their zone
		// (a broker's broker.rack) would become a lie.
		if row.RegionID != where.RegionID || row.ZoneID != where.ZoneID {
			if err := checkUsers(ctx, s, tx, hostTable, row.ID); err != nil {
				return types.Host{}, "", err
			}
		}
		row.Revision++
		row.UpdatedAt = now
		if row.State != types.HostMaintenance {
			row.State = types.HostUp
		}
	}
	caps := reg.Capabilities
	if caps == nil {
		caps = []string{}
	}
	row.Name = reg.Name
	if reg.MachineID != "" {
		row.MachineID = reg.MachineID
	}
	row.RegionID, row.ZoneID = where.RegionID, where.ZoneID
	row.Inventory, row.Capabilities = toJSON(reg.Inventory), toJSON(caps)
	row.LastHeartbeat, row.AgentVersion = now, reg.AgentVersion
	if row.Revision == 1 {
		err = insertRow(ctx, s, tx, hostTable, &row)
	} else {
		q, args, nerr := sqlx.Named(hostTable.updateSQL(), &row)
		if nerr != nil {
			return types.Host{}, "", nerr
		}
		_, err = tx.ExecContext(ctx, s.rb(q), args...)
		err = classify(err)
	}
	if err != nil {
		return types.Host{}, "", fmt.Errorf("register host %s: %w", reg.Name, err)
	}
	if err := s.setHostAggregates(ctx, tx, row.ID, where.AggregateIDs); err != nil {
		return types.Host{}, "", err
	}
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM tokens WHERE host_id = ? AND role = ?"), row.ID, types.RoleAgent); err != nil {
		return types.Host{}, "", fmt.Errorf("revoke old agent tokens of %s: %w", reg.Name, err)
	}
	_, secret, err := s.createToken(ctx, tx, types.Token{Name: "agent " + reg.Name, Role: types.RoleAgent, HostID: row.ID}, nil)
	if err != nil {
		return types.Host{}, "", err
	}
	if err := tx.Commit(); err != nil {
		return types.Host{}, "", fmt.Errorf("register host %s: %w", reg.Name, err)
	}
	return row.API(where.AggregateIDs), secret, nil
}

// hostByMachine finds the host last registered from a machine; the most
// recently registered wins if (against the rule) several share it.
func (s *Store) hostByMachine(ctx context.Context, q sqlx.QueryerContext, machineID string, lock bool) (HostRow, error) {
	var rows []HostRow
	suffix := ""
	if lock {
		suffix = " FOR UPDATE"
	}
	if err := sqlx.SelectContext(ctx, q, &rows, s.rb("SELECT * FROM hosts WHERE machine_id = ? ORDER BY last_heartbeat DESC, id LIMIT 1"+suffix),
		machineID); err != nil {
		return HostRow{}, fmt.Errorf("find host of machine %s: %w", machineID, err)
	}
	if len(rows) == 0 {
		return HostRow{}, fmt.Errorf("host of machine %q: %w", machineID, ErrNotFound)
	}
	return rows[0], nil
}

// RegistrationTarget returns the host a registration of name from
// machineID would update: the host of that name, else the host last
// registered from that machine. ErrNotFound means it would create one.
func (s *Store) RegistrationTarget(ctx context.Context, name, machineID string) (types.Host, error) {
	row, err := getRow[HostRow](ctx, s, s.rd(ctx), hostTable, name)
	if errors.Is(err, ErrNotFound) && machineID != "" {
		row, err = s.hostByMachine(ctx, s.rd(ctx), machineID, false)
	}
	if err != nil {
		return types.Host{}, err
	}
	aggs, err := s.hostAggregates(ctx, row.ID)
	return row.API(aggs[row.ID]), err
}

func (s *Store) setHostAggregates(ctx context.Context, tx *Tx, hostID string, aggs []string) error {
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM host_aggregates WHERE host_id = ?"), hostID); err != nil {
		return fmt.Errorf("set aggregates of %s: %w", hostID, err)
	}
	for _, a := range aggs {
		if _, err := tx.ExecContext(ctx, s.rb("INSERT INTO host_aggregates (host_id, aggregate_id) VALUES (?, ?)"), hostID, a); err != nil {
			return fmt.Errorf("add %s to aggregate %s: %w", hostID, a, classify(err))
		}
	}
	return nil
}

func (s *Store) hostAggregates(ctx context.Context, ids ...string) (map[string][]string, error) {
	out := map[string][]string{}
	if len(ids) == 0 {
		return out, nil
	}
	q, args, err := sqlx.In("SELECT host_id, aggregate_id FROM host_aggregates WHERE host_id IN (?) ORDER BY aggregate_id", ids)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		HostID      string `db:"host_id"`
		AggregateID string `db:"aggregate_id"`
	}
	if err := s.rd(ctx).SelectContext(ctx, &rows, s.rb(q), args...); err != nil {
		return nil, fmt.Errorf("load host aggregates: %w", err)
	}
	for _, r := range rows {
		out[r.HostID] = append(out[r.HostID], r.AggregateID)
	}
	return out, nil
}

// GetHost finds a host by ID or name.
func (s *Store) GetHost(ctx context.Context, idOrName string) (types.Host, error) {
	row, err := getRow[HostRow](ctx, s, s.rd(ctx), hostTable, idOrName)
	if err != nil {
		return types.Host{}, err
	}
	aggs, err := s.hostAggregates(ctx, row.ID)
	return row.API(aggs[row.ID]), err
}

// ListHosts returns a page of hosts. Filters: region, zone, aggregate (IDs)
// and state.
func (s *Store) ListHosts(ctx context.Context, opts ListOptions) (types.List[types.Host], error) {
	p, err := listRows[HostRow](ctx, s, hostTable, opts)
	if err != nil {
		return types.List[types.Host]{}, err
	}
	ids := make([]string, len(p.Items))
	for i, r := range p.Items {
		ids[i] = r.ID
	}
	aggs, err := s.hostAggregates(ctx, ids...)
	if err != nil {
		return types.List[types.Host]{}, err
	}
	out := types.List[types.Host]{Items: make([]types.Host, len(p.Items)), NextCursor: p.Next}
	for i, r := range p.Items {
		out.Items[i] = r.API(aggs[r.ID])
	}
	return out, nil
}

// Heartbeat records a host's measured usage. A host marked down by the
// liveness check comes back up; maintenance is kept. It does not change the
// host's revision, which tracks operator edits.
func (s *Store) Heartbeat(ctx context.Context, hostID string, u types.Usage, at time.Time) error {
	res, err := s.wr(ctx).ExecContext(ctx, s.rb(`UPDATE hosts SET usage = ?, last_heartbeat = ?,
		hb_free_ram_mib = ?, hb_used_ram_mib = COALESCE(?, used_ram_mib),
		state = CASE WHEN state = 'down' THEN 'up' ELSE state END WHERE id = ?`), toJSON(u), micros(at), u.MemFreeMiB,
		u.GuestClaimRAMMiB, hostID)
	if err != nil {
		return fmt.Errorf("heartbeat of %s: %w", hostID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("host %s: %w", hostID, ErrNotFound)
	}
	return nil
}

// MarkStaleHostsDown sets hosts that are up but have not sent a heartbeat
// since before to down, and returns how many it changed.
func (s *Store) MarkStaleHostsDown(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.wr(ctx).ExecContext(ctx, s.rb("UPDATE hosts SET state = 'down' WHERE state = 'up' AND last_heartbeat < ?"), micros(before))
	if err != nil {
		return 0, fmt.Errorf("mark stale hosts down: %w", err)
	}
	return res.RowsAffected()
}

// UpdateHost sets a host's state (maintenance or up) and aggregates (IDs).
func (s *Store) UpdateHost(ctx context.Context, idOrName string, ifMatch int64, state *string, aggregates *[]string) (types.Host, error) {
	row, err := updateRow(ctx, s, hostTable, idOrName, ifMatch, func(r *HostRow) error {
		set(&r.State, state)
		return nil
	})
	if err != nil {
		return types.Host{}, err
	}
	if aggregates != nil {
		tx, err := s.begin(ctx)
		if err != nil {
			return types.Host{}, err
		}
		defer tx.Rollback()
		if err := s.setHostAggregates(ctx, tx, row.ID, *aggregates); err != nil {
			return types.Host{}, err
		}
		if err := tx.Commit(); err != nil {
			return types.Host{}, err
		}
	}
	return s.GetHost(ctx, row.ID)
}

// DeleteHost deletes a host that has no servers, with its agent tokens.
func (s *Store) DeleteHost(ctx context.Context, idOrName string, ifMatch int64) error {
	row, err := deleteRow[HostRow](ctx, s, hostTable, idOrName, ifMatch)
	if err != nil {
		return err
	}
	_, err = s.wr(ctx).ExecContext(ctx, s.rb("DELETE FROM tokens WHERE host_id = ?"), row.ID)
	return err
}
