package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// hasGuest reports whether a host's agent may have made a guest for the
// server: a placed VM it has reported on. Such a server is deleted by its
// agent, which confirms; a server no agent has reported on is deleted at
// once, with a tombstone that tells an agent that was building it to
// remove the guest.
func (r ServerRow) hasGuest() bool {
	if r.Kind != types.KindVM || r.HostID == "" {
		return false
	}
	switch r.State {
	case types.ServerBuilding, types.ServerActive, types.ServerStopped, types.ServerError, types.ServerDeleting:
		return true
	}
	return false
}

type guestRow struct {
	ID           string        `db:"id"`
	Name         string        `db:"name"`
	ProjectID    string        `db:"project_id"`
	DesiredState string        `db:"desired_state"`
	State        string        `db:"state"`
	RebootSeq    int64         `db:"reboot_seq"`
	Kind         string        `db:"kind"`
	FlavorID     string        `db:"flavor_id"`
	Generation   sql.NullInt64 `db:"generation"`
	VCPUs        int64         `db:"vcpus"`
	RAMMiB       int64         `db:"ram_mib"`
	DiskGiB      int64         `db:"disk_gib"`
	Hugepages    int64         `db:"hugepages"`
	NetInKbps    int64         `db:"net_in_kbps"`
	NetOutKbps   int64         `db:"net_out_kbps"`
	DiskIOPS     int64         `db:"disk_iops"`
	DiskBytesSec int64         `db:"disk_bytes_sec"`
	ImageID      string        `db:"image_id"`
	SHA256       string        `db:"sha256"`
	SizeBytes    int64         `db:"size_bytes"`
	DiskFormat   string        `db:"disk_format"`
	Claim        string        `db:"claim"`
	Bootstrap    string        `db:"bootstrap"`
}

// HostGuests returns what the host's agent must run: every VM placed on
// the host, with its flavor's sizes and QoS, its image and its ports as
// NICs (addresses with their prefix, the first subnet's gateway). A server
// being deleted is listed with desired state "deleted" until the agent
// confirms, with its tombstone's generation as revision. A server without
// ports has no NICs; the caller decides.
func (s *Store) HostGuests(ctx context.Context, hostID string) ([]types.GuestSpec, error) {
	var rows []guestRow
	err := s.rd(ctx).SelectContext(ctx, &rows, s.rb(`SELECT s.id, s.name, s.project_id, s.desired_state, s.state, s.reboot_seq,
		s.kind, s.flavor_id, s.claim, s.bootstrap, t.generation, f.vcpus, f.ram_mib, f.disk_gib, f.hugepages, f.net_in_kbps, f.net_out_kbps, f.disk_iops, f.disk_bytes_sec,
		i.id AS image_id, i.sha256, i.size_bytes, i.disk_format
		FROM servers s JOIN flavors f ON f.id = s.flavor_id JOIN images i ON i.id = s.image_id
		LEFT JOIN guest_tombstones t ON t.host_id = s.host_id AND t.server_id = s.id AND s.state = 'deleting'
		WHERE s.host_id = ? AND s.kind = ? ORDER BY s.id`), hostID, types.KindVM)
	if err != nil {
		return nil, fmt.Errorf("list guests of host %s: %w", hostID, err)
	}
	nics, err := s.hostNICs(ctx, hostID)
	if err != nil {
		return nil, err
	}
	out := make([]types.GuestSpec, 0, len(rows))
	for _, r := range rows {
		desired, rev := r.DesiredState, int64(0)
		if r.State == types.ServerDeleting {
			desired, rev = types.DesiredDeleted, r.Generation.Int64
		}
		out = append(out, types.GuestSpec{ServerID: r.ID, Name: r.Name, ProjectID: r.ProjectID, DesiredState: desired,
			VCPUs: r.VCPUs, RAMMiB: r.RAMMiB, DiskGiB: r.DiskGiB, Hugepages: r.Hugepages != 0,
			QoS:       types.QoS{NetInKbps: r.NetInKbps, NetOutKbps: r.NetOutKbps, DiskIOPS: r.DiskIOPS, DiskBytesSec: r.DiskBytesSec},
			Image:     types.GuestImage{ID: r.ImageID, SHA256: r.SHA256, SizeBytes: r.SizeBytes, Format: r.DiskFormat},
			NICs:      append([]types.GuestNIC{}, nics[r.ID]...),
			RebootSeq: r.RebootSeq, Revision: rev, FlavorID: r.FlavorID, Kind: r.Kind,
			ClaimRAMMiB: fromJSON[Allocation](r.Claim).RAMMiB, Bootstrap: guestBootstrap(r.Name, r.Bootstrap)})
	}
	return out, nil
}

// hostNICs returns the ports plugged into the servers on a host, by
// server, oldest port first.
func (s *Store) hostNICs(ctx context.Context, hostID string) (map[string][]types.GuestNIC, error) {
	return s.guestNICs(ctx, "s.host_id = ?", hostID)
}

// ServerGuest returns what a server's guest learns at first boot, as a
// host's agent gets it in the server's GuestSpec: ServerID, Name,
// ProjectID, NICs (its ports, oldest first, with their addresses, the
// subnets' gateway, DNS servers and host routes, and the networks'
// segment types) and Bootstrap. The other fields are zero. Bare metal's
// config drive is rendered from it (baremetal.NodeBootstrap).
func (s *Store) ServerGuest(ctx context.Context, id string) (types.GuestSpec, error) {
	r, err := getRow[ServerRow](ctx, s, s.rd(ctx), serverTable, id)
	if err != nil {
		return types.GuestSpec{}, err
	}
	nics, err := s.guestNICs(ctx, "s.id = ?", id)
	if err != nil {
		return types.GuestSpec{}, err
	}
	return types.GuestSpec{ServerID: r.ID, Name: r.Name, ProjectID: r.ProjectID,
		NICs: append([]types.GuestNIC{}, nics[r.ID]...), Bootstrap: guestBootstrap(r.Name, r.Bootstrap)}, nil
}

// guestNICs returns the ports plugged into the servers matching where (a
// condition on servers s with one argument), by server, oldest port
// first.
func (s *Store) guestNICs(ctx context.Context, where string, arg string) (map[string][]types.GuestNIC, error) {
	var rows []struct {
		PortID   string         `db:"id"`
		ServerID string         `db:"device_id"`
		MAC      string         `db:"mac_address"`
		IP       sql.NullString `db:"ip_address"`
		CIDR     sql.NullString `db:"cidr"`
		Gateway  sql.NullString `db:"gateway_ip"`
		DNS      sql.NullString `db:"dns_servers"`
		Routes   sql.NullString `db:"host_routes"`
		Segment  string         `db:"segment_type"`
	}
	err := s.rd(ctx).SelectContext(ctx, &rows, s.rb(`SELECT p.id, p.device_id, p.mac_address, a.ip_address, sn.cidr, sn.gateway_ip,
		sn.dns_servers, sn.host_routes, n.segment_type
		FROM ports p JOIN servers s ON s.id = p.device_id JOIN networks n ON n.id = p.network_id
		LEFT JOIN ip_allocations a ON a.port_id = p.id LEFT JOIN subnets sn ON sn.id = a.subnet_id
		WHERE `+where+` ORDER BY p.created_at, p.id, sn.created_at, a.ip_address`), arg)
	if err != nil {
		return nil, fmt.Errorf("list ports (%s %s): %w", where, arg, err)
	}
	out := map[string][]types.GuestNIC{}
	for _, r := range rows {
		list := out[r.ServerID]
		if n := len(list); n == 0 || list[n-1].PortID != r.PortID {
			list = append(list, types.GuestNIC{PortID: r.PortID, MAC: r.MAC, SegmentType: r.Segment})
		}
		nic := &list[len(list)-1]
		if r.IP.Valid && r.CIDR.Valid {
			if _, ipnet, err := net.ParseCIDR(r.CIDR.String); err == nil {
				ones, _ := ipnet.Mask.Size()
				nic.IPs = append(nic.IPs, fmt.Sprintf("%s/%d", r.IP.String, ones))
				if len(nic.IPs) == 1 {
					if d := fromJSON[[]string](r.DNS.String); len(d) > 0 {
						nic.DNSServers = d
					}
					if rt := fromJSON[[]types.HostRoute](r.Routes.String); len(rt) > 0 {
						nic.HostRoutes = rt
					}
				}
				if nic.Gateway == "" && r.Gateway.Valid {
					nic.Gateway = r.Gateway.String
				}
			}
		}
		out[r.ServerID] = list
	}
	return out, nil
}

// GuestReportResult says what a report changed.
type GuestReportResult struct {
	// Changed are the servers whose state or observation changed.
	Changed []types.Server
	// Removed are the servers whose deletion the agent confirmed: their
	// rows are gone and their claims given back.
	Removed []types.Server
	// Confirmed are the deletions without a server record (tombstones)
	// the agent confirmed.
	Confirmed []string
	// Unknown are reported server IDs that are not on this host.
	Unknown []string
}

// ReportGuests records what a host's agent observed, in one transaction.
// A confirmed deletion ("deleted" for a server being deleted) removes the
// server, gives its claim back and confirms its tombstone; "deleted" for a
// tombstone without a server confirms the tombstone. A server not on the
// host is ignored and returned in Unknown.
func (s *Store) ReportGuests(ctx context.Context, hostID string, in []types.GuestStatus, now time.Time) (GuestReportResult, error) {
	var res GuestReportResult
	tx, err := s.begin(ctx)
	if err != nil {
		return res, fmt.Errorf("report guests: %w", err)
	}
	defer tx.Rollback()
	for _, g := range in {
		row, err := lockRow[ServerRow](ctx, s, tx, serverTable, g.ServerID)
		if errors.Is(err, ErrNotFound) || (err == nil && row.HostID != hostID) {
			if g.State == types.GuestDeleted {
				ok, err := s.confirmTombstone(ctx, tx, hostID, g.ServerID, now)
				if err != nil {
					return res, err
				}
				if ok {
					res.Confirmed = append(res.Confirmed, g.ServerID)
					continue
				}
			}
			res.Unknown = append(res.Unknown, g.ServerID)
			continue
		}
		if err != nil {
			return res, err
		}
		if g.State == types.GuestDeleted {
			if row.State != types.ServerDeleting {
				// Nobody asked for this: the guest vanished from the host.
				if err := s.setObserved(ctx, tx, &row, types.ServerError, "the guest vanished from host "+hostID, g.Observed, now); err != nil {
					return res, err
				}
				res.Changed = append(res.Changed, row.API())
				continue
			}
			if err := s.release(ctx, tx, row); err != nil {
				return res, err
			}
			if err := s.unplugPorts(ctx, tx, row.ID); err != nil {
				return res, err
			}
			if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM servers WHERE id = ?"), row.ID); err != nil {
				return res, fmt.Errorf("delete server %s: %w", row.ID, err)
			}
			// Kept, confirmed, for a while: the record that the guest
			// went on purpose.
			if ok, err := s.confirmTombstone(ctx, tx, hostID, row.ID, now); err != nil {
				return res, err
			} else if !ok {
				if err := s.recordTombstone(ctx, tx, hostID, row.ID, row.Revision, types.TombstoneServerDeleted, now); err != nil {
					return res, err
				}
				if _, err := s.confirmTombstone(ctx, tx, hostID, row.ID, now); err != nil {
					return res, err
				}
			}
			res.Removed = append(res.Removed, row.API())
			continue
		}
		state := row.State
		switch {
		case row.State == types.ServerDeleting:
			// Deleting wins over whatever the guest still does.
		case g.State == types.GuestBuilding, g.State == types.GuestActive, g.State == types.GuestStopped, g.State == types.GuestError:
			state = g.State
		default:
			return res, types.FieldError("guests.state", "guest %s: unknown state %q", g.ServerID, g.State)
		}
		fault := g.Fault
		if state != types.ServerError {
			fault = ""
		}
		before := row.State + row.Fault + row.Observed
		if err := s.setObserved(ctx, tx, &row, state, fault, g.Observed, now); err != nil {
			return res, err
		}
		if row.State+row.Fault+row.Observed != before {
			res.Changed = append(res.Changed, row.API())
		}
		if g.State == types.GuestActive && state == types.ServerActive && g.Observed.DomainID > 0 {
			if err := s.recordUsage(ctx, tx, row, g.Observed.Counters, now); err != nil {
				return res, err
			}
		}
	}
	return res, tx.Commit()
}

// setObserved writes a server's state, fault and observation when any of
// them changed.
func (s *Store) setObserved(ctx context.Context, tx *Tx, row *ServerRow, state, fault string, o types.GuestObserved, now time.Time) error {
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode observation of %s: %w", row.ID, err)
	}
	if row.State == state && row.Fault == fault && row.Observed == string(b) {
		return nil
	}
	row.State, row.Fault, row.Observed = state, fault, string(b)
	if state == types.ServerActive && !row.LaunchedAt.Valid {
		row.LaunchedAt = sql.NullInt64{Int64: micros(now), Valid: true}
	}
	row.Revision++
	row.UpdatedAt = micros(now)
	_, err = tx.ExecContext(ctx, s.rb(`UPDATE servers SET state = ?, fault = ?, observed = ?, launched_at = ?, revision = ?,
		updated_at = ? WHERE id = ?`), row.State, row.Fault, row.Observed, row.LaunchedAt, row.Revision, row.UpdatedAt, row.ID)
	if err != nil {
		return fmt.Errorf("record observation of %s: %w", row.ID, err)
	}
	return nil
}

// ForceDeleteServer removes a server record and gives its claim back at
// once, without waiting for its host's agent (an operator's way out when a
// host is gone for good). A VM's deletion is recorded as a tombstone, so an
// agent that comes back removes the guest and confirms.
func (s *Store) ForceDeleteServer(ctx context.Context, id string) (types.Server, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return types.Server{}, fmt.Errorf("delete server: %w", err)
	}
	defer tx.Rollback()
	row, err := lockRow[ServerRow](ctx, s, tx, serverTable, id)
	if err != nil {
		return types.Server{}, err
	}
	if err := s.tombstoneFor(ctx, tx, row, types.TombstoneForceDeleted); err != nil {
		return types.Server{}, err
	}
	if err := s.release(ctx, tx, row); err != nil {
		return types.Server{}, err
	}
	if err := s.unplugPorts(ctx, tx, row.ID); err != nil {
		return types.Server{}, err
	}
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM servers WHERE id = ?"), row.ID); err != nil {
		return types.Server{}, fmt.Errorf("delete server %s: %w", row.ID, err)
	}
	return row.API(), tx.Commit()
}

// RebootServer asks for one more reboot of a server.
func (s *Store) RebootServer(ctx context.Context, id string, ifMatch int64) (types.Server, error) {
	row, err := updateRow(ctx, s, serverTable, id, ifMatch, func(r *ServerRow) error {
		r.RebootSeq++
		return nil
	})
	return row.API(), err
}

// unplugPorts deals with the ports plugged into a server that is going
// away, when its delete completes: the ports a server create made for it
// (auto_delete) are deleted with their addresses and group memberships, so
// that nothing holds its networks any more; the others are unbound and
// keep their addresses, to be plugged into another server (a move between
// a VM and a bare-metal node keeps its IP).
func (s *Store) unplugPorts(ctx context.Context, tx *Tx, serverID string) error {
	var auto []string
	if err := tx.SelectContext(ctx, &auto, s.rb("SELECT id FROM ports WHERE device_id = ? AND auto_delete <> 0 ORDER BY id"), serverID); err != nil {
		return fmt.Errorf("ports of %s: %w", serverID, err)
	}
	for _, id := range auto {
		for _, q := range []string{"DELETE FROM ip_allocations WHERE port_id = ?", "DELETE FROM port_security_groups WHERE port_id = ?",
			"DELETE FROM ports WHERE id = ?"} {
			if _, err := tx.ExecContext(ctx, s.rb(q), id); err != nil {
				return fmt.Errorf("delete port %s of %s: %w", id, serverID, classify(err))
			}
		}
	}
	res, err := tx.ExecContext(ctx, s.rb(`UPDATE ports SET device_id = '', host_id = '', revision = revision + 1,
		updated_at = ? WHERE device_id = ?`), micros(time.Now()), serverID)
	if err != nil {
		return fmt.Errorf("unplug the ports of %s: %w", serverID, err)
	}
	if n, _ := res.RowsAffected(); n > 0 || len(auto) > 0 {
		return s.bumpGeneration(ctx, tx)
	}
	return nil
}

// ServerBootstrap is what a server keeps of its create request for its
// guest's first boot: the keypairs named (their keys copied then, so that
// a keypair deleted or replaced later does not change the guest) and the
// user data.
type ServerBootstrap struct {
	KeyNames   []string `json:"key_names,omitempty"`
	PublicKeys []string `json:"public_keys,omitempty"`
	UserData   []byte   `json:"user_data,omitempty"`
}

// guestBootstrap is a guest's bootstrap from its server's stored one.
func guestBootstrap(name, stored string) *types.GuestBootstrap {
	b := types.GuestBootstrap{Hostname: name}
	if stored != "" {
		sb := fromJSON[ServerBootstrap](stored)
		b.PublicKeys, b.UserData = sb.PublicKeys, sb.UserData
	}
	return &b
}
