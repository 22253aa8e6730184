package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// FleetHost is what /metrics reports of one host: its inventory, what
// placement claimed on it and what its agent last measured.
type FleetHost struct {
	Name          string
	State         string
	Inventory     types.Inventory
	Usage         types.Usage
	LastHeartbeat time.Time
	Allocated     types.Allocation
	// FailsafeFreeMiB is the memory failsafe's free memory (the last
	// heartbeat's, less what was claimed since); Measured is false when
	// no heartbeat has measured it yet.
	FailsafeFreeMiB int64
	Measured        bool
}

// FleetNode is what /metrics reports of one bare-metal node and its BMC.
type FleetNode struct {
	Name       string
	State      string
	PowerState string
	// BMCFault is set while the BMC does not answer.
	BMCFault string
	// LastAnswer is when the BMC last answered: its last power check
	// when it has no fault; when it has one, when the fault was recorded
	// (the check before answered); the enrolment if it never answered.
	LastAnswer time.Time
	// StateChangedAt is when the node entered its state.
	StateChangedAt time.Time
}

// Fleet is the store's view of the fleet for /metrics, read with one
// query per table so that a scrape costs the same at 10 hosts as at
// 10,000.
type Fleet struct {
	Hosts []FleetHost
	Nodes []FleetNode
	// OldestUnsettled is, by server kind, when the oldest server still
	// converging (pending, scheduled, building, deleting, or stopped/active against
	// its desired state) last changed; absent when none is.
	OldestUnsettled map[string]time.Time
}

// Fleet reads the fleet for /metrics.
func (s *Store) Fleet(ctx context.Context) (Fleet, error) {
	var out Fleet
	var hosts []struct {
		Name          string        `db:"name"`
		State         string        `db:"state"`
		Inventory     string        `db:"inventory"`
		Usage         string        `db:"usage"`
		LastHeartbeat int64         `db:"last_heartbeat"`
		HbFreeRAMMiB  sql.NullInt64 `db:"hb_free_ram_mib"`
		HbUsedRAMMiB  int64         `db:"hb_used_ram_mib"`
		Allocation
	}
	q := s.rd(ctx)
	if err := q.SelectContext(ctx, &hosts, `SELECT name, state, inventory, usage, last_heartbeat, hb_free_ram_mib,
		hb_used_ram_mib, used_vcpus, used_ram_mib, used_disk_gib, used_hugepages, used_guests FROM hosts`); err != nil {
		return out, fmt.Errorf("read hosts for metrics: %w", err)
	}
	out.Hosts = make([]FleetHost, len(hosts))
	for i, h := range hosts {
		row := HostRow{HbFreeRAMMiB: h.HbFreeRAMMiB, HbUsedRAMMiB: h.HbUsedRAMMiB, Allocation: h.Allocation}
		out.Hosts[i] = FleetHost{Name: h.Name, State: h.State, Inventory: fromJSON[types.Inventory](h.Inventory),
			Usage: fromJSON[types.Usage](h.Usage), LastHeartbeat: fromMicros(h.LastHeartbeat),
			Allocated: types.Allocation{VCPUs: h.VCPUs, RAMMiB: h.RAMMiB, DiskGiB: h.DiskGiB, Hugepages: h.Hugepages,
				Guests: h.Guests},
			FailsafeFreeMiB: row.failsafeFree(), Measured: h.HbFreeRAMMiB.Valid}
	}
	var nodes []struct {
		Name       string `db:"name"`
		State      string `db:"state"`
		PowerState string `db:"power_state"`
		BMCFault   string `db:"bmc_fault"`
		Answer     int64  `db:"answer"`
		Changed    int64  `db:"state_changed_at"`
	}
	// The fault's start is looked up only for faulted nodes (node_events
	// is indexed by node).
	if err := q.SelectContext(ctx, &nodes, `SELECT name, state, power_state, bmc_fault, state_changed_at,
		CASE WHEN bmc_fault = '' AND power_checked_at > 0 THEN power_checked_at
		     WHEN bmc_fault = '' THEN created_at
		     ELSE COALESCE((SELECT MAX(e.at) FROM node_events e WHERE e.node_id = nodes.id AND e.to_state = 'bmc fault'), created_at)
		END AS answer FROM nodes`); err != nil {
		return out, fmt.Errorf("read nodes for metrics: %w", err)
	}
	out.Nodes = make([]FleetNode, len(nodes))
	for i, n := range nodes {
		out.Nodes[i] = FleetNode{Name: n.Name, State: n.State, PowerState: n.PowerState, BMCFault: n.BMCFault,
			LastAnswer: fromMicros(n.Answer), StateChangedAt: fromMicros(n.Changed)}
	}
	var unsettled []struct {
		Kind   string `db:"kind"`
		Oldest int64  `db:"oldest"`
	}
	if err := q.SelectContext(ctx, &unsettled, s.rb(`SELECT kind, MIN(updated_at) AS oldest FROM servers
		WHERE state IN (?, ?, ?, ?) OR (desired_state = ? AND state = ?) OR (desired_state = ? AND state = ?) GROUP BY kind`),
		types.ServerPending, types.ServerScheduled, types.ServerBuilding, types.ServerDeleting, types.DesiredActive, types.ServerStopped,
		types.DesiredStopped, types.ServerActive); err != nil {
		return out, fmt.Errorf("read unsettled servers for metrics: %w", err)
	}
	out.OldestUnsettled = make(map[string]time.Time, len(unsettled))
	for _, u := range unsettled {
		out.OldestUnsettled[u.Kind] = fromMicros(u.Oldest)
	}
	return out, nil
}
