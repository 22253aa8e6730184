package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/jmoiron/sqlx"
)

const (
	prefixNode      = "node-"
	prefixNodeEvent = "nev-"
)

var nodeTable = table{
	name: "nodes", kind: "node", byName: true,
	cols: []string{"id", "revision", "created_at", "updated_at", "name", "region_id", "zone_id", "aggregate_id",
		"bmc_address", "bmc_port", "bmc_username", "bmc_password", "macs", "provision_ip", "hardware", "state", "target",
		"step", "last_error", "power_state", "power_checked_at", "bmc_fault", "server_id", "image_id", "agent_token",
		"attempt", "deadline", "lease_owner", "lease_expires", "state_changed_at", "agent_token_expires", "agent_token_used_at",
		"agent_session", "agent_ip", "quick_clean", "clean_mode"},
	filters: map[string]string{
		"region":    "region_id = ?",
		"zone":      "zone_id = ?",
		"aggregate": "aggregate_id = ?",
		"state":     "state = ?",
		"name":      "name = ?",
	},
}

// Sentinel errors of nodes.
var (
	// ErrNodeState means the node is not in a state that allows the
	// change (a lost compare-and-swap on its state, or a busy node).
	ErrNodeState = errors.New("node is not in a state that allows this")
	// ErrLeased means another conductor holds the node's lease.
	ErrLeased = errors.New("node is driven by another conductor")
)

// NodeStateError says which state refused a change. errors.Is(err,
// ErrNodeState) is true.
type NodeStateError struct {
	NodeID string
	State  string
	Want   []string
}

func (e *NodeStateError) Error() string {
	return fmt.Sprintf("node %s is %s, not %s", e.NodeID, e.State, strings.Join(e.Want, " or "))
}

// Is makes errors.Is(err, ErrNodeState) true.
func (e *NodeStateError) Is(target error) bool { return target == ErrNodeState }

// NodeRow is a stored node, secrets included: BMCPassword and AgentToken
// are sealed by the caller (baremetal.Keyring) and never leave corrald.
type NodeRow struct {
	rowMeta
	Name           string `db:"name"`
	RegionID       string `db:"region_id"`
	ZoneID         string `db:"zone_id"`
	AggregateID    string `db:"aggregate_id"`
	BMCAddress     string `db:"bmc_address"`
	BMCPort        int    `db:"bmc_port"`
	BMCUsername    string `db:"bmc_username"`
	BMCPassword    string `db:"bmc_password"`
	MACs           string `db:"macs"`
	ProvisionIP    string `db:"provision_ip"`
	Hardware       string `db:"hardware"`
	State          string `db:"state"`
	Target         string `db:"target"`
	Step           string `db:"step"`
	LastError      string `db:"last_error"`
	PowerState     string `db:"power_state"`
	PowerCheckedAt int64  `db:"power_checked_at"`
	BMCFault       string `db:"bmc_fault"`
	ServerID       string `db:"server_id"`
	ImageID        string `db:"image_id"`
	AgentToken     string `db:"agent_token"`
	Attempt        int    `db:"attempt"`
	Deadline       int64  `db:"deadline"`
	LeaseOwner     string `db:"lease_owner"`
	LeaseExpires   int64  `db:"lease_expires"`
	StateChangedAt int64  `db:"state_changed_at"`
	// AgentTokenExpires ends the boot token (AgentToken); AgentTokenUsedAt
	// is when the deploy agent exchanged it for its work (0: not yet).
	AgentTokenExpires int64 `db:"agent_token_expires"`
	AgentTokenUsedAt  int64 `db:"agent_token_used_at"`
	// AgentSession is the sealed credential the agent uses after the
	// exchange, from AgentIP only.
	AgentSession string `db:"agent_session"`
	AgentIP      string `db:"agent_ip"`
	// QuickClean (1) makes the cleaning after a server delete wipe
	// metadata only; CleanMode is the mode of the cleaning in progress.
	QuickClean int    `db:"quick_clean"`
	CleanMode  string `db:"clean_mode"`
}

// ClearAgentCredentials forgets the boot token and the agent session:
// the step that issued them is over.
func (r *NodeRow) ClearAgentCredentials() {
	r.AgentToken, r.AgentTokenExpires, r.AgentTokenUsedAt, r.AgentSession, r.AgentIP = "", 0, 0, "", ""
}

// MACList returns the node's MACs.
func (r NodeRow) MACList() []string {
	m := fromJSON[[]string](r.MACs)
	if m == nil {
		m = []string{}
	}
	return m
}

// HardwareInfo returns the node's inventory.
func (r NodeRow) HardwareInfo() types.NodeHardware { return fromJSON[types.NodeHardware](r.Hardware) }

// DeadlineTime returns when the current step times out, or the zero time.
func (r NodeRow) DeadlineTime() time.Time {
	if r.Deadline == 0 {
		return time.Time{}
	}
	return fromMicros(r.Deadline)
}

// SetDeadline sets (or, with the zero time, clears) the step's timeout.
func (r *NodeRow) SetDeadline(t time.Time) {
	if t.IsZero() {
		r.Deadline = 0
		return
	}
	r.Deadline = micros(t)
}

// SetHardware records the node's inventory.
func (r *NodeRow) SetHardware(h types.NodeHardware) { r.Hardware = toJSON(h) }

// API converts the row to its wire form, without secrets. The lease
// owner shows only while the lease is live.
func (r NodeRow) API() types.Node {
	n := types.Node{Meta: r.toAPI(), Name: r.Name, RegionID: r.RegionID, ZoneID: r.ZoneID, AggregateID: r.AggregateID,
		BMC: types.NodeBMC{Address: r.BMCAddress, Port: r.BMCPort, Username: r.BMCUsername}, MACs: r.MACList(),
		ProvisionIP: r.ProvisionIP, Hardware: r.HardwareInfo(), State: r.State, Target: r.Target, Step: r.Step,
		LastError: r.LastError, PowerState: r.PowerState, BMCFault: r.BMCFault, ServerID: r.ServerID,
		QuickClean: r.QuickClean != 0, StateChangedAt: fromMicros(r.StateChangedAt)}
	if r.State == types.NodeCleaning {
		n.CleanMode = r.CleanMode
	}
	if r.PowerCheckedAt > 0 {
		t := fromMicros(r.PowerCheckedAt)
		n.PowerCheckedAt = &t
	}
	if r.Deadline > 0 {
		t := fromMicros(r.Deadline)
		n.Deadline = &t
	}
	if r.LeaseOwner != "" && r.LeaseExpires > micros(time.Now()) {
		n.Conductor = r.LeaseOwner
	}
	return n
}

// NodeEnrolment is a node to create, its references resolved to IDs and
// its BMC password sealed.
type NodeEnrolment struct {
	Name, RegionID, ZoneID, AggregateID  string
	BMCAddress, BMCUsername, BMCPassword string
	BMCPort                              int
	MACs                                 []string
	ProvisionIP                          string
	Hardware                             types.NodeHardware
	// QuickClean makes the cleaning after a server delete wipe metadata
	// only (default: the whole disk).
	QuickClean bool
	// Target is "manageable" or "available": where the conductor takes
	// the node after verifying its BMC.
	Target string
	Actor  string
}

// CreateNode enrols a node in state enroll, with its MACs (unique across
// nodes: ErrExists) and a first event.
func (s *Store) CreateNode(ctx context.Context, in NodeEnrolment) (types.Node, error) {
	now := micros(time.Now())
	row := NodeRow{rowMeta: newMeta(prefixNode), Name: in.Name, RegionID: in.RegionID, ZoneID: in.ZoneID,
		AggregateID: in.AggregateID, BMCAddress: in.BMCAddress, BMCPort: in.BMCPort, BMCUsername: in.BMCUsername,
		BMCPassword: in.BMCPassword, MACs: toJSON(in.MACs), ProvisionIP: in.ProvisionIP, Hardware: toJSON(in.Hardware),
		State: types.NodeEnroll, Target: in.Target, PowerState: types.PowerUnknown, StateChangedAt: now}
	if in.QuickClean {
		row.QuickClean = 1
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return types.Node{}, fmt.Errorf("create node: %w", err)
	}
	defer tx.Rollback()
	if err := insertRow(ctx, s, tx, nodeTable, &row); err != nil {
		return types.Node{}, err
	}
	if err := s.setNodeMACs(ctx, tx, row.ID, in.MACs); err != nil {
		return types.Node{}, err
	}
	if err := s.nodeEvent(ctx, tx, row.ID, "", types.NodeEnroll, "enrolled", in.Actor); err != nil {
		return types.Node{}, err
	}
	if err := tx.Commit(); err != nil {
		return types.Node{}, fmt.Errorf("create node: %w", err)
	}
	return row.API(), nil
}

func (s *Store) setNodeMACs(ctx context.Context, tx *Tx, nodeID string, macs []string) error {
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM node_macs WHERE node_id = ?"), nodeID); err != nil {
		return fmt.Errorf("set MACs of %s: %w", nodeID, err)
	}
	for _, m := range macs {
		if _, err := tx.ExecContext(ctx, s.rb("INSERT INTO node_macs (mac, node_id) VALUES (?, ?)"), m, nodeID); err != nil {
			return fmt.Errorf("MAC %s of node %s: %w", m, nodeID, classify(err))
		}
	}
	return nil
}

func (s *Store) nodeEvent(ctx context.Context, e sqlx.ExtContext, nodeID, from, to, reason, actor string) error {
	_, err := e.ExecContext(ctx, s.rb(`INSERT INTO node_events (id, node_id, at, from_state, to_state, reason, actor)
		VALUES (?, ?, ?, ?, ?, ?, ?)`), NewID(prefixNodeEvent), nodeID, micros(time.Now()), from, to, reason, actor)
	if err != nil {
		return fmt.Errorf("record event of node %s: %w", nodeID, err)
	}
	return nil
}

// GetNode finds a node by ID or name.
func (s *Store) GetNode(ctx context.Context, idOrName string) (types.Node, error) {
	row, err := s.GetNodeRow(ctx, idOrName)
	return row.API(), err
}

// GetNodeRow finds a node by ID or name, secrets included.
func (s *Store) GetNodeRow(ctx context.Context, idOrName string) (NodeRow, error) {
	return getRow[NodeRow](ctx, s, s.rd(ctx), nodeTable, idOrName)
}

// NodeByMAC finds the node that has a NIC with mac (lower case).
func (s *Store) NodeByMAC(ctx context.Context, mac string) (NodeRow, error) {
	var row NodeRow
	err := s.rd(ctx).GetContext(ctx, &row, s.rb("SELECT nodes.* FROM nodes JOIN node_macs ON node_macs.node_id = nodes.id WHERE node_macs.mac = ?"), mac)
	if errors.Is(err, sql.ErrNoRows) {
		return row, fmt.Errorf("node with MAC %s: %w", mac, ErrNotFound)
	}
	if err != nil {
		return row, fmt.Errorf("node by MAC %s: %w", mac, err)
	}
	return row, nil
}

// ListNodes returns a page of nodes. Filters: region, zone, aggregate
// (IDs), state, name.
func (s *Store) ListNodes(ctx context.Context, opts ListOptions) (types.List[types.Node], error) {
	return listAPI(ctx, s, nodeTable, opts, NodeRow.API)
}

// ListNodeRows returns every node in one of states (all nodes when none
// is given), secrets included, in ID order.
func (s *Store) ListNodeRows(ctx context.Context, states ...string) ([]NodeRow, error) {
	q, args := "SELECT * FROM nodes ORDER BY id", []any{}
	if len(states) > 0 {
		var err error
		q, args, err = sqlx.In("SELECT * FROM nodes WHERE state IN (?) ORDER BY id", states)
		if err != nil {
			return nil, err
		}
	}
	var rows []NodeRow
	if err := s.rd(ctx).SelectContext(ctx, &rows, s.rb(q), args...); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return rows, nil
}

// ListNodeEvents returns a page of a node's history, oldest first.
func (s *Store) ListNodeEvents(ctx context.Context, nodeID string, opts ListOptions) (types.List[types.NodeEvent], error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	var rows []struct {
		ID     string `db:"id"`
		NodeID string `db:"node_id"`
		At     int64  `db:"at"`
		From   string `db:"from_state"`
		To     string `db:"to_state"`
		Reason string `db:"reason"`
		Actor  string `db:"actor"`
	}
	if err := s.rd(ctx).SelectContext(ctx, &rows, s.rb(fmt.Sprintf(
		"SELECT * FROM node_events WHERE node_id = ? AND id > ? ORDER BY id LIMIT %d", limit+1)), nodeID, opts.After); err != nil {
		return types.List[types.NodeEvent]{}, fmt.Errorf("list events of node %s: %w", nodeID, err)
	}
	out := types.List[types.NodeEvent]{Items: []types.NodeEvent{}}
	if len(rows) > limit {
		rows = rows[:limit]
		out.NextCursor = rows[limit-1].ID
	}
	for _, r := range rows {
		out.Items = append(out.Items, types.NodeEvent{ID: r.ID, NodeID: r.NodeID, At: fromMicros(r.At), From: r.From, To: r.To,
			Reason: r.Reason, Actor: r.Actor})
	}
	return out, nil
}

// NodeChange is applied to a node inside the transaction that holds its
// row. It returns the reason recorded with the event when the state
// changes (the row's State before and after are compared).
type NodeChange func(tx *Tx, r *NodeRow) (reason string, err error)

// ChangeNode reads a node in a write transaction, lets change modify it,
// and writes it back with a new revision; a state change is recorded as an
// event by actor in the same transaction. With ifMatch > 0 the node must
// be at that revision (ErrStale).
func (s *Store) ChangeNode(ctx context.Context, idOrName string, ifMatch int64, actor string, change NodeChange) (NodeRow, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return NodeRow{}, fmt.Errorf("change node: %w", err)
	}
	defer tx.Rollback()
	row, err := s.changeNodeTx(ctx, tx, idOrName, ifMatch, actor, change)
	if err != nil {
		return row, err
	}
	if err := tx.Commit(); err != nil {
		return row, fmt.Errorf("change node %s: %w", row.ID, err)
	}
	return row, nil
}

func (s *Store) changeNodeTx(ctx context.Context, tx *Tx, idOrName string, ifMatch int64, actor string, change NodeChange) (NodeRow, error) {
	row, err := lockRow[NodeRow](ctx, s, tx, nodeTable, idOrName)
	if err != nil {
		return row, err
	}
	if ifMatch > 0 && row.Revision != ifMatch {
		return row, fmt.Errorf("node %s is at revision %d, not %d: %w", row.ID, row.Revision, ifMatch, ErrStale)
	}
	before := row
	reason, err := change(tx, &row)
	if err != nil {
		return before, err
	}
	now := micros(time.Now())
	if row.State != before.State {
		row.StateChangedAt = now
		if err := s.nodeEvent(ctx, tx, row.ID, before.State, row.State, reason, actor); err != nil {
			return before, err
		}
	}
	row.Revision++
	row.UpdatedAt = now
	q, args, err := sqlx.Named(nodeTable.updateSQL(), &row)
	if err != nil {
		return before, fmt.Errorf("change node %s: %w", row.ID, err)
	}
	res, err := tx.ExecContext(ctx, s.rb(q), args...)
	if err != nil {
		return before, fmt.Errorf("change node %s: %w", row.ID, classify(err))
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return before, fmt.Errorf("change node %s: %w", row.ID, ErrStale)
	}
	return row, nil
}

// RequireState fails with a NodeStateError unless r is in one of states.
func RequireState(r *NodeRow, states ...string) error {
	for _, st := range states {
		if r.State == st {
			return nil
		}
	}
	return &NodeStateError{NodeID: r.ID, State: r.State, Want: states}
}

// SetNodeMACs replaces a node's MACs (unique across nodes: ErrExists).
func (s *Store) SetNodeMACs(ctx context.Context, id string, macs []string, actor string) (NodeRow, error) {
	return s.ChangeNode(ctx, id, 0, actor, func(tx *Tx, r *NodeRow) (string, error) {
		r.MACs = toJSON(macs)
		return "", s.setNodeMACs(ctx, tx, r.ID, macs)
	})
}

// NodeEvent records an event that is not a state change (a power change
// noticed by the sync, a BMC fault) in a node's history.
func (s *Store) NodeEvent(ctx context.Context, nodeID, from, to, reason, actor string) error {
	return s.nodeEvent(ctx, s.wr(ctx), nodeID, from, to, reason, actor)
}

// busyStates are those in which a conductor is working on the node.
var busyStates = []string{types.NodeVerifying, types.NodeInspecting, types.NodeDeploying, types.NodeDeleting, types.NodeCleaning}

// IsBusy reports whether a conductor is working on a node in state.
func IsBusy(state string) bool {
	for _, b := range busyStates {
		if b == state {
			return true
		}
	}
	return false
}

// DeleteNode deletes a node that has no server and that no conductor is
// working on, with its MACs and history.
func (s *Store) DeleteNode(ctx context.Context, idOrName string, ifMatch int64) (types.Node, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return types.Node{}, fmt.Errorf("delete node: %w", err)
	}
	defer tx.Rollback()
	row, err := lockRow[NodeRow](ctx, s, tx, nodeTable, idOrName)
	if err != nil {
		return types.Node{}, err
	}
	if ifMatch > 0 && row.Revision != ifMatch {
		return types.Node{}, fmt.Errorf("node %s is at revision %d, not %d: %w", row.ID, row.Revision, ifMatch, ErrStale)
	}
	if row.ServerID != "" {
		var name string
		_ = tx.GetContext(ctx, &name, s.rb("SELECT name FROM servers WHERE id = ?"), row.ServerID)
		return types.Node{}, &InUseError{Kind: "node", ID: row.ID, Count: 1,
			Users: []types.Ref{{Kind: "server", ID: row.ServerID, Name: name}}}
	}
	if IsBusy(row.State) {
		return types.Node{}, &NodeStateError{NodeID: row.ID, State: row.State,
			Want: []string{types.NodeEnroll, types.NodeManageable, types.NodeAvailable, types.NodeError, types.NodeMaintenance}}
	}
	for _, q := range []string{"DELETE FROM node_macs WHERE node_id = ?", "DELETE FROM node_events WHERE node_id = ?", "DELETE FROM nodes WHERE id = ?"} {
		if _, err := tx.ExecContext(ctx, s.rb(q), row.ID); err != nil {
			return types.Node{}, fmt.Errorf("delete node %s: %w", row.ID, classify(err))
		}
	}
	return row.API(), tx.Commit()
}

// AcquireNodeLease makes owner the node's conductor until now+ttl, if
// the lease is free, expired or already owner's; else ErrLeased. Leases
// keep two corrald replicas from driving the same node; an expired lease
// (its replica died) is taken over and the work resumes from the
// persisted state and step.
func (s *Store) AcquireNodeLease(ctx context.Context, id, owner string, ttl time.Duration) (NodeRow, error) {
	now := time.Now()
	res, err := s.wr(ctx).ExecContext(ctx, s.rb(`UPDATE nodes SET lease_owner = ?, lease_expires = ?
		WHERE id = ? AND (lease_owner = '' OR lease_owner = ? OR lease_expires < ?)`),
		owner, micros(now.Add(ttl)), id, owner, micros(now))
	if err != nil {
		return NodeRow{}, fmt.Errorf("lease node %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		row, err := getRow[NodeRow](ctx, s, s.wr(ctx), nodeTable, id)
		if err != nil {
			return row, err
		}
		return row, fmt.Errorf("node %s: lease held by %s: %w", id, row.LeaseOwner, ErrLeased)
	}
	return getRow[NodeRow](ctx, s, s.wr(ctx), nodeTable, id)
}

// ReleaseNodeLease gives up owner's lease on a node; a lease owner does
// not hold is left alone.
func (s *Store) ReleaseNodeLease(ctx context.Context, id, owner string) error {
	_, err := s.wr(ctx).ExecContext(ctx, s.rb("UPDATE nodes SET lease_owner = '', lease_expires = 0 WHERE id = ? AND lease_owner = ?"), id, owner)
	if err != nil {
		return fmt.Errorf("release lease of node %s: %w", id, err)
	}
	return nil
}

// RecordNodePower records a power state read from the BMC (or
// types.PowerUnknown) and the BMC fault ("" when it answered). A change
// of either is recorded as an event by actor with reason. It does not
// move the node's revision: only operators' edits and transitions do.
func (s *Store) RecordNodePower(ctx context.Context, id, power, fault, reason, actor string) (NodeRow, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return NodeRow{}, fmt.Errorf("record power of node %s: %w", id, err)
	}
	defer tx.Rollback()
	row, err := lockRow[NodeRow](ctx, s, tx, nodeTable, id)
	if err != nil {
		return row, err
	}
	if row.PowerState != power {
		if err := s.nodeEvent(ctx, tx, id, "power "+row.PowerState, "power "+power, reason, actor); err != nil {
			return row, err
		}
	}
	if (row.BMCFault == "") != (fault == "") {
		to, why := "bmc ok", "the BMC answers again"
		if fault != "" {
			to, why = "bmc fault", fault
		}
		from := "bmc ok"
		if row.BMCFault != "" {
			from = "bmc fault"
		}
		if err := s.nodeEvent(ctx, tx, id, from, to, why, actor); err != nil {
			return row, err
		}
	}
	row.PowerState, row.BMCFault, row.PowerCheckedAt = power, fault, micros(time.Now())
	if _, err := tx.ExecContext(ctx, s.rb("UPDATE nodes SET power_state = ?, bmc_fault = ?, power_checked_at = ? WHERE id = ?"),
		row.PowerState, row.BMCFault, row.PowerCheckedAt, id); err != nil {
		return row, fmt.Errorf("record power of node %s: %w", id, err)
	}
	return row, tx.Commit()
}

// SetNodeProvisionIP records the provisioning address assigned to a node
// that had none.
func (s *Store) SetNodeProvisionIP(ctx context.Context, id, ip string) error {
	_, err := s.wr(ctx).ExecContext(ctx, s.rb("UPDATE nodes SET provision_ip = ? WHERE id = ? AND provision_ip = ''"), ip, id)
	if err != nil {
		return fmt.Errorf("set provisioning address of node %s: %w", id, err)
	}
	return nil
}

// ClaimNodeAndCreateServer records a baremetal server on a node in one
// transaction: the node moves from available to deploying only if it is
// still available with no server (a compare-and-swap on its state; else
// ErrNodeState and nothing is written), and the server is inserted in
// state building with its node. Two creates never get the same node.
func (s *Store) ClaimNodeAndCreateServer(ctx context.Context, nodeID string, in types.Server, boot *ServerBootstrap, actor string) (types.Server, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return types.Server{}, fmt.Errorf("claim node: %w", err)
	}
	defer tx.Rollback()
	srv := ServerRow{rowMeta: newMeta(prefixServer), Name: in.Name, Kind: in.Kind, ProjectID: in.ProjectID,
		FlavorID: in.FlavorID, ImageID: in.ImageID, RegionID: in.RegionID, ZoneID: in.ZoneID, AggregateID: in.AggregateID,
		DesiredState: in.DesiredState, State: types.ServerBuilding, NodeID: nodeID, Addresses: "[]", Claim: "{}"}
	if boot != nil {
		srv.Bootstrap = toJSON(boot)
	}
	_, err = s.changeNodeTx(ctx, tx, nodeID, 0, actor, func(_ *Tx, r *NodeRow) (string, error) {
		if err := RequireState(r, types.NodeAvailable); err != nil {
			return "", err
		}
		if r.ServerID != "" {
			return "", &NodeStateError{NodeID: r.ID, State: r.State + " with server " + r.ServerID, Want: []string{types.NodeAvailable}}
		}
		r.State, r.Step, r.Target, r.LastError = types.NodeDeploying, "", "", ""
		r.ServerID, r.ImageID, r.Attempt = srv.ID, in.ImageID, 0
		return "server " + srv.ID + " (" + in.Name + ")", nil
	})
	if err != nil {
		return types.Server{}, err
	}
	if err := insertRow(ctx, s, tx, serverTable, &srv); err != nil {
		return types.Server{}, err
	}
	if err := tx.Commit(); err != nil {
		return types.Server{}, fmt.Errorf("claim node %s: %w", nodeID, err)
	}
	return srv.API(), nil
}

// UpdateNodeServer changes a node and the server on it in one
// transaction: setServer, when not nil, edits the server's row.
func (s *Store) UpdateNodeServer(ctx context.Context, nodeID, actor string, change NodeChange, setServer func(*ServerRow)) (NodeRow, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return NodeRow{}, fmt.Errorf("change node: %w", err)
	}
	defer tx.Rollback()
	var serverID string
	row, err := s.changeNodeTx(ctx, tx, nodeID, 0, actor, func(tx *Tx, r *NodeRow) (string, error) {
		serverID = r.ServerID
		return change(tx, r)
	})
	if err != nil {
		return row, err
	}
	if setServer != nil && serverID != "" {
		srv, err := lockRow[ServerRow](ctx, s, tx, serverTable, serverID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return row, err
		}
		if err == nil {
			setServer(&srv)
			srv.Revision++
			srv.UpdatedAt = micros(time.Now())
			q, args, err := sqlx.Named(serverTable.updateSQL(), &srv)
			if err != nil {
				return row, err
			}
			if _, err := tx.ExecContext(ctx, s.rb(q), args...); err != nil {
				return row, fmt.Errorf("update server %s: %w", srv.ID, err)
			}
		}
	}
	return row, tx.Commit()
}

// MarkServerActive is for UpdateNodeServer: the server is active with
// addresses, launched now if it never was.
func MarkServerActive(addrs []types.Address) func(*ServerRow) {
	return func(r *ServerRow) {
		r.State, r.Fault, r.Addresses = types.ServerActive, "", toJSON(addrs)
		if !r.LaunchedAt.Valid {
			r.LaunchedAt = sql.NullInt64{Int64: micros(time.Now()), Valid: true}
		}
	}
}

// MarkServerError is for UpdateNodeServer: the server is in error with
// fault.
func MarkServerError(fault string) func(*ServerRow) {
	return func(r *ServerRow) { r.State, r.Fault = types.ServerError, fault }
}

// BeginBaremetalDelete starts deleting a baremetal server: the server
// moves to deleting and its node to deleting (from deploying, active or
// error), in one transaction. The conductor then powers the node off,
// removes the server and cleans the node.
func (s *Store) BeginBaremetalDelete(ctx context.Context, serverID string, ifMatch int64, actor string) (types.Server, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return types.Server{}, fmt.Errorf("delete server: %w", err)
	}
	defer tx.Rollback()
	srv, err := lockRow[ServerRow](ctx, s, tx, serverTable, serverID)
	if err != nil {
		return types.Server{}, err
	}
	if ifMatch > 0 && srv.Revision != ifMatch {
		return types.Server{}, fmt.Errorf("server %s is at revision %d, not %d: %w", srv.ID, srv.Revision, ifMatch, ErrStale)
	}
	if srv.State == types.ServerDeleting {
		return srv.API(), tx.Commit()
	}
	if srv.NodeID != "" {
		_, err := s.changeNodeTx(ctx, tx, srv.NodeID, 0, actor, func(_ *Tx, r *NodeRow) (string, error) {
			if r.ServerID != srv.ID {
				return "", nil // the node moved on already
			}
			if err := RequireState(r, types.NodeDeploying, types.NodeActive, types.NodeError, types.NodeDeleting); err != nil {
				return "", err
			}
			r.State, r.Step, r.LastError = types.NodeDeleting, "", ""
			r.SetDeadline(time.Time{})
			return "server " + srv.ID + " deleted", nil
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return types.Server{}, err
		}
	}
	srv.State = types.ServerDeleting
	srv.Revision++
	srv.UpdatedAt = micros(time.Now())
	q, args, err := sqlx.Named(serverTable.updateSQL(), &srv)
	if err != nil {
		return types.Server{}, err
	}
	if _, err := tx.ExecContext(ctx, s.rb(q), args...); err != nil {
		return types.Server{}, fmt.Errorf("delete server %s: %w", srv.ID, err)
	}
	if srv.NodeID == "" {
		// Never placed: nothing to clean.
		if err := s.unplugPorts(ctx, tx, srv.ID); err != nil {
			return types.Server{}, err
		}
		if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM servers WHERE id = ?"), srv.ID); err != nil {
			return types.Server{}, err
		}
	}
	return srv.API(), tx.Commit()
}

// DetachNodeServer removes the server of a node in deleting and moves the
// node to cleaning, in one transaction.
func (s *Store) DetachNodeServer(ctx context.Context, nodeID, actor string) (NodeRow, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return NodeRow{}, fmt.Errorf("detach server: %w", err)
	}
	defer tx.Rollback()
	row, err := s.changeNodeTx(ctx, tx, nodeID, 0, actor, func(tx *Tx, r *NodeRow) (string, error) {
		if err := RequireState(r, types.NodeDeleting); err != nil {
			return "", err
		}
		if r.ServerID != "" {
			if err := s.unplugPorts(ctx, tx, r.ServerID); err != nil {
				return "", err
			}
			if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM servers WHERE id = ?"), r.ServerID); err != nil {
				return "", fmt.Errorf("delete server %s: %w", r.ServerID, err)
			}
		}
		r.CleanMode = types.CleanFull
		if r.QuickClean != 0 {
			r.CleanMode = types.CleanQuick
		}
		reason := "server " + r.ServerID + " removed; cleaning (" + r.CleanMode + ")"
		r.State, r.Step, r.ServerID, r.ImageID, r.Attempt = types.NodeCleaning, "", "", "", 0
		r.ClearAgentCredentials()
		r.SetDeadline(time.Time{})
		return reason, nil
	})
	if err != nil {
		return row, err
	}
	return row, tx.Commit()
}
