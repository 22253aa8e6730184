package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/jmoiron/sqlx"
)

// Networking: networks, subnets, ports with static IPAM, security groups,
// and the desired network state of a host.
//
// Every write here bumps network_generation in its transaction, last (after
// any subnet row locks, so that lock order is always subnets then the
// generation row). Agents' watches compare it to notice changes made by any
// corrald replica.

// Sentinel errors of networking.
var (
	// ErrPoolExhausted means a subnet has no free address left in its
	// allocation pools.
	ErrPoolExhausted = errors.New("no free address in the allocation pools")
	// ErrAddressInUse means a fixed IP asked for is allocated already.
	ErrAddressInUse = errors.New("address already allocated")
	// ErrSegmentInUse means another network has the segment.
	ErrSegmentInUse = errors.New("segment already used by another network")
)

// SubnetOverlapError refuses a subnet whose CIDR overlaps another subnet of
// the same network.
type SubnetOverlapError struct {
	CIDR      string // the new subnet's
	OtherID   string // the subnet it overlaps
	OtherCIDR string
	NetworkID string
	OtherName string
}

func (e *SubnetOverlapError) Error() string {
	return fmt.Sprintf("cidr %s overlaps subnet %s (%s) of network %s", e.CIDR, e.OtherID, e.OtherCIDR, e.NetworkID)
}

// ID prefixes of networking objects.
const (
	prefixNetwork = "net-"
	prefixSubnet  = "snet-"
	prefixPort    = "port-"
	prefixSG      = "sg-"
	prefixSGRule  = "sgr-"
)

var (
	networkTable = table{
		name: "networks", kind: "network", byName: true, owner: sharedOrProject,
		cols: []string{"id", "revision", "created_at", "updated_at", "name", "project_id", "segment_type", "segment_id", "description",
			"physnet"},
		filters: map[string]string{
			"project": "project_id = ?", "segment_type": "segment_type = ?", "name": "name = ?", "physnet": "physnet = ?",
		},
		usedBy: []usage{{kind: "port", table: "ports", where: "network_id = ?"}},
	}
	subnetTable = table{
		name: "subnets", kind: "subnet", byName: true, owner: onVisibleNet,
		cols: []string{"id", "revision", "created_at", "updated_at", "name", "network_id", "cidr", "gateway_ip",
			"allocation_pools", "dns_servers", "host_routes", "description"},
		filters: map[string]string{"network": "network_id = ?", "name": "name = ?"},
		usedBy: []usage{{kind: "port", table: "ports",
			where: "id IN (SELECT port_id FROM ip_allocations WHERE subnet_id = ?)"}},
	}
	portTable = table{
		name: "ports", kind: "port", byName: false, owner: ownedByProject,
		cols: []string{"id", "revision", "created_at", "updated_at", "name", "network_id", "project_id", "mac_address",
			"device_id", "host_id", "description", "auto_delete", "allowed_address_pairs"},
		filters: map[string]string{
			"network": "network_id = ?", "project": "project_id = ?", "device_id": "device_id = ?", "host": "host_id = ?",
			"mac_address": "mac_address = ?",
		},
	}
	sgTable = table{
		name: "security_groups", kind: "security group", byName: true, owner: ownedByProject,
		cols:    []string{"id", "revision", "created_at", "updated_at", "name", "project_id", "description"},
		filters: map[string]string{"project": "project_id = ?", "name": "name = ?"},
		usedBy: []usage{
			{kind: "port", table: "ports", where: "id IN (SELECT port_id FROM port_security_groups WHERE group_id = ?)"},
			{kind: "security group", table: "security_groups",
				where: "id IN (SELECT group_id FROM security_group_rules WHERE remote_group_id = ? AND group_id <> remote_group_id)"},
		},
	}
)

// bumpGeneration records that networking state changed.
func (s *Store) bumpGeneration(ctx context.Context, tx *Tx) error {
	if _, err := tx.ExecContext(ctx, "UPDATE network_generation SET generation = generation + 1 WHERE id = 1"); err != nil {
		return fmt.Errorf("bump network generation: %w", err)
	}
	return nil
}

// NetworkGeneration returns a number that changes whenever any networking
// state changes, on any corrald sharing the database.
func (s *Store) NetworkGeneration(ctx context.Context) (int64, error) {
	var g int64
	err := s.rd(ctx).GetContext(ctx, &g, "SELECT generation FROM network_generation WHERE id = 1")
	return g, err
}

// inTx runs fn in a write transaction and commits it.
func (s *Store) inTx(ctx context.Context, what string, fn func(tx *Tx) error) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	return nil
}

// NetworkRow is a stored network.
type NetworkRow struct {
	rowMeta
	Name        string `db:"name"`
	ProjectID   string `db:"project_id"`
	SegmentType string `db:"segment_type"`
	SegmentID   int64  `db:"segment_id"`
	Description string `db:"description"`
	// Physnet is the provider network's physical network, or "".
	Physnet string `db:"physnet"`
}

// API converts the row to its wire form.
func (r NetworkRow) API() types.Network {
	return types.Network{Meta: r.toAPI(), Name: r.Name, ProjectID: r.ProjectID, SegmentType: r.SegmentType,
		SegmentID: apiSegmentID(r.SegmentType, r.SegmentID), Physnet: r.Physnet, Description: r.Description}
}

// apiSegmentID hides the internal discriminator of flat networks (see
// migration 0012): a flat network has no segment ID.
func apiSegmentID(segmentType string, id int64) int64 {
	if segmentType == types.SegmentFlat {
		return 0
	}
	return id
}

// CreateNetwork stores a network; the caller has validated it and resolved
// its project. A segment another network has fails with ErrSegmentInUse.
func (s *Store) CreateNetwork(ctx context.Context, in types.Network) (types.Network, error) {
	row := NetworkRow{rowMeta: newMeta(prefixNetwork), Name: in.Name, ProjectID: in.ProjectID, SegmentType: in.SegmentType,
		SegmentID: in.SegmentID, Physnet: in.Physnet, Description: in.Description}
	err := s.inTx(ctx, "create network", func(tx *Tx) error {
		var other string
		var err error
		if in.SegmentType == types.SegmentFlat {
			// One flat network per physical network; the stored segment_id
			// is only a discriminator for UNIQUE (segment_type, segment_id).
			err = tx.GetContext(ctx, &other, s.rb("SELECT id FROM networks WHERE segment_type = ? AND physnet = ?"),
				in.SegmentType, in.Physnet)
			if err == nil {
				return fmt.Errorf("flat on physical network %s is network %s's: %w", in.Physnet, other, ErrSegmentInUse)
			}
			if err := tx.GetContext(ctx, &row.SegmentID, s.rb("SELECT COALESCE(MAX(segment_id), 0) + 1 FROM networks WHERE segment_type = ?"),
				in.SegmentType); err != nil {
				return fmt.Errorf("create network: %w", err)
			}
		} else {
			err = tx.GetContext(ctx, &other, s.rb("SELECT id FROM networks WHERE segment_type = ? AND segment_id = ?"),
				in.SegmentType, in.SegmentID)
		}
		if err == nil {
			return fmt.Errorf("%s %d is network %s's: %w", in.SegmentType, in.SegmentID, other, ErrSegmentInUse)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("create network: %w", err)
		}
		if err := insertRow(ctx, s, tx, networkTable, &row); err != nil {
			if errors.Is(err, ErrExists) { // a concurrent create took the segment
				return fmt.Errorf("%s %d: %w", in.SegmentType, in.SegmentID, ErrSegmentInUse)
			}
			return err
		}
		return s.bumpGeneration(ctx, tx)
	})
	return row.API(), err
}

// GetNetwork finds a network by ID or name.
func (s *Store) GetNetwork(ctx context.Context, idOrName string) (types.Network, error) {
	row, err := getRow[NetworkRow](ctx, s, s.rd(ctx), networkTable, idOrName)
	return row.API(), err
}

// ListNetworks returns a page of networks. Filters: project, segment_type,
// name.
func (s *Store) ListNetworks(ctx context.Context, opts ListOptions) (types.List[types.Network], error) {
	return listAPI(ctx, s, networkTable, opts, NetworkRow.API)
}

// UpdateNetwork changes a network's name or description.
func (s *Store) UpdateNetwork(ctx context.Context, idOrName string, ifMatch int64, in types.NetworkUpdate) (types.Network, error) {
	row, err := updateRow(ctx, s, networkTable, idOrName, ifMatch, func(r *NetworkRow) error {
		set(&r.Name, in.Name)
		set(&r.Description, in.Description)
		return nil
	})
	return row.API(), err
}

// DeleteNetwork deletes a network without ports, and its subnets. A network
// with ports fails with an InUseError naming them.
func (s *Store) DeleteNetwork(ctx context.Context, idOrName string, ifMatch int64) error {
	return deleteNet[NetworkRow](ctx, s, networkTable, idOrName, ifMatch)
}

// SubnetRow is a stored subnet.
type SubnetRow struct {
	rowMeta
	Name            string `db:"name"`
	NetworkID       string `db:"network_id"`
	CIDR            string `db:"cidr"`
	GatewayIP       string `db:"gateway_ip"`
	AllocationPools string `db:"allocation_pools"`
	DNSServers      string `db:"dns_servers"`
	HostRoutes      string `db:"host_routes"`
	Description     string `db:"description"`
}

// API converts the row to its wire form.
func (r SubnetRow) API() types.Subnet {
	out := types.Subnet{Meta: r.toAPI(), Name: r.Name, NetworkID: r.NetworkID, CIDR: r.CIDR, GatewayIP: r.GatewayIP,
		AllocationPools: fromJSON[[]types.IPRange](r.AllocationPools), DNSServers: fromJSON[[]string](r.DNSServers),
		HostRoutes: fromJSON[[]types.HostRoute](r.HostRoutes), Description: r.Description}
	if out.DNSServers == nil {
		out.DNSServers = []string{}
	}
	if out.HostRoutes == nil {
		out.HostRoutes = []types.HostRoute{}
	}
	if out.AllocationPools == nil {
		out.AllocationPools = []types.IPRange{}
	}
	return out
}

// CreateSubnet stores a subnet of a network (by ID); the caller has
// validated it. A CIDR overlapping another subnet of the network fails with
// a *SubnetOverlapError; the network is locked meanwhile so that two
// overlapping creates cannot both pass.
func (s *Store) CreateSubnet(ctx context.Context, in types.Subnet) (types.Subnet, error) {
	row := SubnetRow{rowMeta: newMeta(prefixSubnet), Name: in.Name, NetworkID: in.NetworkID, CIDR: in.CIDR,
		GatewayIP: in.GatewayIP, AllocationPools: toJSON(in.AllocationPools), DNSServers: toJSON(in.DNSServers),
		HostRoutes: toJSON(in.HostRoutes), Description: in.Description}
	if in.DNSServers == nil {
		row.DNSServers = "[]"
	}
	if in.HostRoutes == nil {
		row.HostRoutes = "[]"
	}
	err := s.inTx(ctx, "create subnet", func(tx *Tx) error {
		if _, err := lockRow[NetworkRow](ctx, s, tx, networkTable, in.NetworkID); err != nil {
			return err
		}
		mine, err := netip.ParsePrefix(in.CIDR)
		if err != nil {
			return fmt.Errorf("create subnet: cidr %q: %w", in.CIDR, err)
		}
		var others []SubnetRow
		if err := sqlx.SelectContext(ctx, tx, &others, s.rb("SELECT * FROM subnets WHERE network_id = ? ORDER BY id"), in.NetworkID); err != nil {
			return fmt.Errorf("create subnet: %w", err)
		}
		for _, o := range others {
			if p, err := netip.ParsePrefix(o.CIDR); err == nil && p.Overlaps(mine) {
				return &SubnetOverlapError{CIDR: in.CIDR, OtherID: o.ID, OtherCIDR: o.CIDR, OtherName: o.Name, NetworkID: in.NetworkID}
			}
		}
		if err := insertRow(ctx, s, tx, subnetTable, &row); err != nil {
			return err
		}
		return s.bumpGeneration(ctx, tx)
	})
	return row.API(), err
}

// GetSubnet finds a subnet by ID or name.
func (s *Store) GetSubnet(ctx context.Context, idOrName string) (types.Subnet, error) {
	row, err := getRow[SubnetRow](ctx, s, s.rd(ctx), subnetTable, idOrName)
	return row.API(), err
}

// ListSubnets returns a page of subnets. Filters: network, name.
func (s *Store) ListSubnets(ctx context.Context, opts ListOptions) (types.List[types.Subnet], error) {
	return listAPI(ctx, s, subnetTable, opts, SubnetRow.API)
}

// UpdateSubnet changes a subnet's name, DNS servers or description; none
// of them is part of a host's wiring, so the generation stays.
func (s *Store) UpdateSubnet(ctx context.Context, idOrName string, ifMatch int64, in types.SubnetUpdate) (types.Subnet, error) {
	row, err := updateRow(ctx, s, subnetTable, idOrName, ifMatch, func(r *SubnetRow) error {
		set(&r.Name, in.Name)
		set(&r.Description, in.Description)
		if in.DNSServers != nil {
			r.DNSServers = toJSON(*in.DNSServers)
		}
		return nil
	})
	return row.API(), err
}

// DeleteSubnet deletes a subnet none of whose addresses is allocated; else
// it fails with an InUseError naming the ports.
func (s *Store) DeleteSubnet(ctx context.Context, idOrName string, ifMatch int64) error {
	return deleteNet[SubnetRow](ctx, s, subnetTable, idOrName, ifMatch)
}

// PortRow is a stored port.
type PortRow struct {
	rowMeta
	Name        string `db:"name"`
	NetworkID   string `db:"network_id"`
	ProjectID   string `db:"project_id"`
	MACAddress  string `db:"mac_address"`
	DeviceID    string `db:"device_id"`
	HostID      string `db:"host_id"`
	Description string `db:"description"`
	// AutoDelete (0 or 1): the port goes with its server (see
	// types.Port.AutoDelete).
	AutoDelete int64 `db:"auto_delete"`
	// AllowedAddressPairs is the JSON list of types.AddressPair.
	AllowedAddressPairs string `db:"allowed_address_pairs"`
}

func pairsJSON(p []types.AddressPair) string {
	if len(p) == 0 {
		return "[]"
	}
	return toJSON(p)
}

func (r PortRow) api(ips []types.FixedIP, groups []string) types.Port {
	if ips == nil {
		ips = []types.FixedIP{}
	}
	if groups == nil {
		groups = []string{}
	}
	return types.Port{Meta: r.toAPI(), Name: r.Name, NetworkID: r.NetworkID, ProjectID: r.ProjectID, MACAddress: r.MACAddress,
		FixedIPs: ips, DeviceID: r.DeviceID, HostID: r.HostID, SecurityGroups: groups, Description: r.Description,
		AutoDelete: r.AutoDelete != 0, AllowedAddressPairs: r.pairs()}
}

func (r PortRow) pairs() []types.AddressPair {
	out := fromJSON[[]types.AddressPair](r.AllowedAddressPairs)
	if out == nil {
		out = []types.AddressPair{}
	}
	return out
}

// PortSpec is a port to create: the port with its references resolved to
// IDs, and the addresses asked for. SubnetIDs with an empty IP get a free
// address from that subnet's pools. Port.AutoDelete marks a port made by a
// server create, deleted with its server.
type PortSpec struct {
	Port types.Port
	IPs  []types.FixedIP
}

// maxPortAttempts bounds the retries of a port create that lost a race for
// a MAC or an address (the subnet lock makes the latter rare).
const maxPortAttempts = 8

// CreatePort stores a port and allocates its addresses in one transaction.
// Each subnet involved is locked (FOR UPDATE on PostgreSQL; SQLite's
// writers are serialised) before its free addresses are read, so that
// concurrent creates never pick the same address; the primary key of
// ip_allocations is the backstop. It fails with ErrPoolExhausted when a
// subnet has no free address, ErrAddressInUse when an asked-for address is
// taken. An empty MAC address gets a random locally administered one.
func (s *Store) CreatePort(ctx context.Context, in PortSpec) (types.Port, error) {
	var lastErr error
	for attempt := 0; attempt < maxPortAttempts; attempt++ {
		p, err := s.createPort(ctx, in)
		if err == nil || !errors.Is(err, ErrExists) {
			return p, err
		}
		if in.Port.MACAddress != "" && strings.Contains(err.Error(), "mac_address") {
			return p, err // the caller's own MAC is taken: retrying cannot help
		}
		lastErr = err
	}
	return types.Port{}, lastErr
}

func (s *Store) createPort(ctx context.Context, in PortSpec) (types.Port, error) {
	row := PortRow{rowMeta: newMeta(prefixPort), Name: in.Port.Name, NetworkID: in.Port.NetworkID, ProjectID: in.Port.ProjectID,
		MACAddress: in.Port.MACAddress, DeviceID: in.Port.DeviceID, HostID: in.Port.HostID, Description: in.Port.Description,
		AutoDelete: boolInt(in.Port.AutoDelete && in.Port.DeviceID != ""), AllowedAddressPairs: pairsJSON(in.Port.AllowedAddressPairs)}
	if row.MACAddress == "" {
		row.MACAddress = RandomMAC()
	}
	var ips []types.FixedIP
	err := s.inTx(ctx, "create port", func(tx *Tx) error {
		if _, err := lockRow[NetworkRow](ctx, s, tx, networkTable, row.NetworkID); err != nil {
			return err
		}
		if err := insertRow(ctx, s, tx, portTable, &row); err != nil {
			return err
		}
		var err error
		if ips, err = s.allocate(ctx, tx, row.ID, row.NetworkID, in.IPs); err != nil {
			return err
		}
		if err := s.setPortGroups(ctx, tx, row.ID, in.Port.SecurityGroups, false); err != nil {
			return err
		}
		if err := s.touchServers(ctx, tx, row.DeviceID); err != nil {
			return err
		}
		return s.bumpGeneration(ctx, tx)
	})
	if err != nil {
		return types.Port{}, err
	}
	return row.api(ips, sortedCopy(in.Port.SecurityGroups)), nil
}

// allocate gives port its addresses. Subnets are locked in ID order, so
// two transactions never wait for each other in a cycle.
func (s *Store) allocate(ctx context.Context, tx *Tx, portID, networkID string, want []types.FixedIP) ([]types.FixedIP, error) {
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	order := slices.Clone(want)
	sort.SliceStable(order, func(i, j int) bool { return order[i].SubnetID < order[j].SubnetID })
	subnets := map[string]SubnetRow{}
	for _, w := range order {
		if _, ok := subnets[w.SubnetID]; ok {
			continue
		}
		var sn SubnetRow
		err := tx.GetContext(ctx, &sn, s.rb("SELECT * FROM subnets WHERE id = ?"+lock), w.SubnetID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("subnet %q: %w", w.SubnetID, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("lock subnet %s: %w", w.SubnetID, err)
		}
		if sn.NetworkID != networkID {
			return nil, fmt.Errorf("subnet %s is not on network %s: %w", sn.ID, networkID, ErrNotFound)
		}
		subnets[sn.ID] = sn
	}
	out := make([]types.FixedIP, 0, len(want))
	for _, w := range want {
		sn := subnets[w.SubnetID]
		ip := w.IPAddress
		if ip == "" {
			var used []string
			if err := tx.SelectContext(ctx, &used, s.rb("SELECT ip_address FROM ip_allocations WHERE subnet_id = ?"), sn.ID); err != nil {
				return nil, fmt.Errorf("read allocations of subnet %s: %w", sn.ID, err)
			}
			taken := make(map[netip.Addr]bool, len(used))
			for _, u := range used {
				if a, err := netip.ParseAddr(u); err == nil {
					taken[a] = true
				}
			}
			free, ok := FirstFree(fromJSON[[]types.IPRange](sn.AllocationPools), taken)
			if !ok {
				return nil, fmt.Errorf("subnet %s (%s): %w", sn.ID, sn.CIDR, ErrPoolExhausted)
			}
			ip = free.String()
		} else {
			var n int
			if err := tx.GetContext(ctx, &n, s.rb("SELECT COUNT(*) FROM ip_allocations WHERE subnet_id = ? AND ip_address = ?"),
				sn.ID, ip); err != nil {
				return nil, err
			}
			if n > 0 {
				return nil, fmt.Errorf("%s in subnet %s: %w", ip, sn.ID, ErrAddressInUse)
			}
		}
		if _, err := tx.ExecContext(ctx, s.rb("INSERT INTO ip_allocations (subnet_id, ip_address, port_id) VALUES (?, ?, ?)"),
			sn.ID, ip, portID); err != nil {
			return nil, fmt.Errorf("allocate %s in subnet %s: %w", ip, sn.ID, classify(err))
		}
		out = append(out, types.FixedIP{SubnetID: sn.ID, IPAddress: ip})
	}
	return out, nil
}

// FirstFree returns the lowest address of the pools that is not taken.
func FirstFree(pools []types.IPRange, taken map[netip.Addr]bool) (netip.Addr, bool) {
	for _, p := range pools {
		a, err1 := netip.ParseAddr(p.Start)
		end, err2 := netip.ParseAddr(p.End)
		if err1 != nil || err2 != nil {
			continue
		}
		for ; a.IsValid() && a.Compare(end) <= 0; a = a.Next() {
			if !taken[a] {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// RandomMAC returns a random unicast, locally administered MAC address with
// Corral's prefix 02:c0.
func RandomMAC() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return fmt.Sprintf("02:c0:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

func sortedCopy(v []string) []string {
	out := slices.Clone(v)
	slices.Sort(out)
	return slices.Compact(out)
}

// setPortGroups replaces the security groups of a port.
func (s *Store) setPortGroups(ctx context.Context, tx *Tx, portID string, groups []string, replace bool) error {
	if replace {
		if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM port_security_groups WHERE port_id = ?"), portID); err != nil {
			return fmt.Errorf("set security groups of port %s: %w", portID, err)
		}
	}
	for _, g := range sortedCopy(groups) {
		if _, err := tx.ExecContext(ctx, s.rb("INSERT INTO port_security_groups (port_id, group_id) VALUES (?, ?)"), portID, g); err != nil {
			return fmt.Errorf("add port %s to security group %s: %w", portID, g, classify(err))
		}
	}
	return nil
}

// portDetails loads the addresses and groups of ports.
func (s *Store) portDetails(ctx context.Context, q sqlx.QueryerContext, ids []string) (map[string][]types.FixedIP, map[string][]string, error) {
	ips := map[string][]types.FixedIP{}
	groups := map[string][]string{}
	if len(ids) == 0 {
		return ips, groups, nil
	}
	query, args, err := sqlx.In("SELECT port_id, subnet_id, ip_address FROM ip_allocations WHERE port_id IN (?) ORDER BY port_id, subnet_id, ip_address", ids)
	if err != nil {
		return nil, nil, err
	}
	var allocs []struct {
		PortID   string `db:"port_id"`
		SubnetID string `db:"subnet_id"`
		IP       string `db:"ip_address"`
	}
	if err := sqlx.SelectContext(ctx, q, &allocs, s.rb(query), args...); err != nil {
		return nil, nil, fmt.Errorf("read port addresses: %w", err)
	}
	for _, a := range allocs {
		ips[a.PortID] = append(ips[a.PortID], types.FixedIP{SubnetID: a.SubnetID, IPAddress: a.IP})
	}
	query, args, err = sqlx.In("SELECT port_id, group_id FROM port_security_groups WHERE port_id IN (?) ORDER BY port_id, group_id", ids)
	if err != nil {
		return nil, nil, err
	}
	var pg []struct {
		PortID  string `db:"port_id"`
		GroupID string `db:"group_id"`
	}
	if err := sqlx.SelectContext(ctx, q, &pg, s.rb(query), args...); err != nil {
		return nil, nil, fmt.Errorf("read port security groups: %w", err)
	}
	for _, r := range pg {
		groups[r.PortID] = append(groups[r.PortID], r.GroupID)
	}
	return ips, groups, nil
}

// GetPort finds a port by ID.
func (s *Store) GetPort(ctx context.Context, id string) (types.Port, error) {
	row, err := getRow[PortRow](ctx, s, s.rd(ctx), portTable, id)
	if err != nil {
		return types.Port{}, err
	}
	ips, groups, err := s.portDetails(ctx, s.rd(ctx), []string{row.ID})
	return row.api(ips[row.ID], groups[row.ID]), err
}

// ListPorts returns a page of ports. Filters: network, project, device_id,
// host, mac_address.
func (s *Store) ListPorts(ctx context.Context, opts ListOptions) (types.List[types.Port], error) {
	p, err := listRows[PortRow](ctx, s, portTable, opts)
	if err != nil {
		return types.List[types.Port]{}, err
	}
	ids := make([]string, len(p.Items))
	for i, r := range p.Items {
		ids[i] = r.ID
	}
	ips, groups, err := s.portDetails(ctx, s.rd(ctx), ids)
	if err != nil {
		return types.List[types.Port]{}, err
	}
	out := types.List[types.Port]{Items: make([]types.Port, len(p.Items)), NextCursor: p.Next}
	for i, r := range p.Items {
		out.Items[i] = r.api(ips[r.ID], groups[r.ID])
	}
	return out, nil
}

// PortChange is a validated port update with references resolved to IDs.
//
// MACAddress is set only when a port is plugged into a bare-metal server:
// it takes the MAC of the node's NIC.
type PortChange struct {
	Name, DeviceID, HostID, Description, MACAddress *string
	SecurityGroups                                  *[]string
	AllowedAddressPairs                             *[]types.AddressPair
}

// UpdatePort changes a port: its name, binding (server and host) or
// security groups. Its addresses never change, nor its MAC, but when it
// is plugged into a bare-metal server (MACAddress). A port rebound to
// another server (or unbound) is no longer deleted with a server: whoever
// moved it owns it now.
func (s *Store) UpdatePort(ctx context.Context, id string, ifMatch int64, in PortChange) (types.Port, error) {
	var row PortRow
	err := s.inTx(ctx, "update port", func(tx *Tx) error {
		var err error
		row, err = lockRow[PortRow](ctx, s, tx, portTable, id)
		if err != nil {
			return err
		}
		if ifMatch > 0 && row.Revision != ifMatch {
			return fmt.Errorf("port %s is at revision %d, not %d: %w", row.ID, row.Revision, ifMatch, ErrStale)
		}
		set(&row.Name, in.Name)
		oldDevice := row.DeviceID
		set(&row.DeviceID, in.DeviceID)
		if row.DeviceID != oldDevice {
			row.AutoDelete = 0
		}
		set(&row.HostID, in.HostID)
		set(&row.Description, in.Description)
		if in.AllowedAddressPairs != nil {
			row.AllowedAddressPairs = pairsJSON(*in.AllowedAddressPairs)
		}
		set(&row.MACAddress, in.MACAddress)
		row.Revision++
		row.UpdatedAt = micros(time.Now())
		q, args, err := sqlx.Named(portTable.updateSQL(), &row)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.rb(q), args...); err != nil {
			return fmt.Errorf("update port %s: %w", row.ID, classify(err))
		}
		if in.SecurityGroups != nil {
			if err := s.setPortGroups(ctx, tx, row.ID, *in.SecurityGroups, true); err != nil {
				return err
			}
		}
		if row.DeviceID != oldDevice {
			if err := s.touchServers(ctx, tx, oldDevice, row.DeviceID); err != nil {
				return err
			}
		}
		return s.bumpGeneration(ctx, tx)
	})
	if err != nil {
		return types.Port{}, err
	}
	return s.GetPort(ctx, row.ID)
}

// DeletePort deletes a port and releases its addresses. It returns the
// deleted port.
func (s *Store) DeletePort(ctx context.Context, id string, ifMatch int64) (types.Port, error) {
	var out types.Port
	err := s.inTx(ctx, "delete port", func(tx *Tx) error {
		row, err := lockRow[PortRow](ctx, s, tx, portTable, id)
		if err != nil {
			return err
		}
		if ifMatch > 0 && row.Revision != ifMatch {
			return fmt.Errorf("port %s is at revision %d, not %d: %w", row.ID, row.Revision, ifMatch, ErrStale)
		}
		ips, groups, err := s.portDetails(ctx, tx, []string{row.ID})
		if err != nil {
			return err
		}
		out = row.api(ips[row.ID], groups[row.ID])
		// Addresses and group memberships go with the port (ON DELETE
		// CASCADE); deleting them first keeps that explicit.
		for _, q := range []string{"DELETE FROM ip_allocations WHERE port_id = ?", "DELETE FROM port_security_groups WHERE port_id = ?",
			"DELETE FROM ports WHERE id = ?"} {
			if _, err := tx.ExecContext(ctx, s.rb(q), row.ID); err != nil {
				return fmt.Errorf("delete port %s: %w", row.ID, classify(err))
			}
		}
		if err := s.touchServers(ctx, tx, row.DeviceID); err != nil {
			return err
		}
		return s.bumpGeneration(ctx, tx)
	})
	return out, err
}

// AllocatedAddresses returns the addresses allocated in a subnet, sorted
// as strings (tests and the API's subnet usage).
func (s *Store) AllocatedAddresses(ctx context.Context, subnetID string) ([]string, error) {
	var out []string
	err := s.rd(ctx).SelectContext(ctx, &out, s.rb("SELECT ip_address FROM ip_allocations WHERE subnet_id = ? ORDER BY ip_address"), subnetID)
	return out, err
}

// SecurityGroupRow is a stored security group.
type SecurityGroupRow struct {
	rowMeta
	Name        string `db:"name"`
	ProjectID   string `db:"project_id"`
	Description string `db:"description"`
}

// RuleRow is a stored security group rule.
type RuleRow struct {
	ID            string `db:"id"`
	GroupID       string `db:"group_id"`
	CreatedAt     int64  `db:"created_at"`
	Direction     string `db:"direction"`
	Protocol      string `db:"protocol"`
	PortRangeMin  int64  `db:"port_range_min"`
	PortRangeMax  int64  `db:"port_range_max"`
	RemoteCIDR    string `db:"remote_cidr"`
	RemoteGroupID string `db:"remote_group_id"`
}

// API converts the row to its wire form.
func (r RuleRow) API() types.SecurityGroupRule {
	return types.SecurityGroupRule{ID: r.ID, Direction: r.Direction, Protocol: r.Protocol, PortRangeMin: r.PortRangeMin,
		PortRangeMax: r.PortRangeMax, RemoteCIDR: r.RemoteCIDR, RemoteGroupID: r.RemoteGroupID}
}

func (s *Store) groupRules(ctx context.Context, q sqlx.QueryerContext, ids []string) (map[string][]types.SecurityGroupRule, error) {
	out := map[string][]types.SecurityGroupRule{}
	if len(ids) == 0 {
		return out, nil
	}
	query, args, err := sqlx.In("SELECT * FROM security_group_rules WHERE group_id IN (?) ORDER BY group_id, id", ids)
	if err != nil {
		return nil, err
	}
	var rows []RuleRow
	if err := sqlx.SelectContext(ctx, q, &rows, s.rb(query), args...); err != nil {
		return nil, fmt.Errorf("read security group rules: %w", err)
	}
	for _, r := range rows {
		out[r.GroupID] = append(out[r.GroupID], r.API())
	}
	return out, nil
}

func (r SecurityGroupRow) api(rules []types.SecurityGroupRule) types.SecurityGroup {
	if rules == nil {
		rules = []types.SecurityGroupRule{}
	}
	return types.SecurityGroup{Meta: r.toAPI(), Name: r.Name, ProjectID: r.ProjectID, Rules: rules, Description: r.Description}
}

// CreateSecurityGroup stores a group with its rules (validated, remote
// groups resolved to IDs).
func (s *Store) CreateSecurityGroup(ctx context.Context, in types.SecurityGroup) (types.SecurityGroup, error) {
	row := SecurityGroupRow{rowMeta: newMeta(prefixSG), Name: in.Name, ProjectID: in.ProjectID, Description: in.Description}
	var rules []types.SecurityGroupRule
	err := s.inTx(ctx, "create security group", func(tx *Tx) error {
		if err := insertRow(ctx, s, tx, sgTable, &row); err != nil {
			return err
		}
		for _, r := range in.Rules {
			if r.RemoteGroupID == "self" {
				r.RemoteGroupID = row.ID
			}
			out, err := s.insertRule(ctx, tx, row.ID, r)
			if err != nil {
				return err
			}
			rules = append(rules, out)
		}
		return s.bumpGeneration(ctx, tx)
	})
	return row.api(rules), err
}

func (s *Store) insertRule(ctx context.Context, tx *Tx, groupID string, r types.SecurityGroupRule) (types.SecurityGroupRule, error) {
	row := RuleRow{ID: NewID(prefixSGRule), GroupID: groupID, CreatedAt: micros(time.Now()), Direction: r.Direction,
		Protocol: r.Protocol, PortRangeMin: r.PortRangeMin, PortRangeMax: r.PortRangeMax, RemoteCIDR: r.RemoteCIDR,
		RemoteGroupID: r.RemoteGroupID}
	if row.RemoteGroupID != "" {
		var n int
		if err := tx.GetContext(ctx, &n, s.rb("SELECT COUNT(*) FROM security_groups WHERE id = ?"), row.RemoteGroupID); err != nil {
			return types.SecurityGroupRule{}, err
		}
		if n == 0 {
			return types.SecurityGroupRule{}, fmt.Errorf("remote group %s: %w", row.RemoteGroupID, ErrReferenced)
		}
	}
	if _, err := tx.NamedExecContext(ctx, `INSERT INTO security_group_rules (id, group_id, created_at, direction, protocol,
		port_range_min, port_range_max, remote_cidr, remote_group_id) VALUES (:id, :group_id, :created_at, :direction, :protocol,
		:port_range_min, :port_range_max, :remote_cidr, :remote_group_id)`, &row); err != nil {
		return types.SecurityGroupRule{}, fmt.Errorf("add rule to security group %s: %w", groupID, classify(err))
	}
	return row.API(), nil
}

// EnsureDefaultSecurityGroup returns the project's default group, creating
// it on first use: all egress, and all ingress from members of the group.
// Concurrent first uses agree on one group (the name is unique per
// project).
func (s *Store) EnsureDefaultSecurityGroup(ctx context.Context, projectID string) (types.SecurityGroup, error) {
	for i := 0; i < 3; i++ {
		g, err := s.projectGroup(ctx, projectID, types.DefaultSecurityGroup)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return g, err
		}
		g, err = s.CreateSecurityGroup(ctx, types.SecurityGroup{Name: types.DefaultSecurityGroup, ProjectID: projectID,
			Description: "default group: all egress, ingress from members",
			Rules: []types.SecurityGroupRule{
				{Direction: types.DirectionEgress, Protocol: types.ProtocolAny, RemoteCIDR: "0.0.0.0/0"},
				{Direction: types.DirectionIngress, Protocol: types.ProtocolAny, RemoteGroupID: "self"},
			}})
		if err == nil || !errors.Is(err, ErrExists) {
			return g, err
		}
	}
	return s.projectGroup(ctx, projectID, types.DefaultSecurityGroup)
}

func (s *Store) projectGroup(ctx context.Context, projectID, name string) (types.SecurityGroup, error) {
	var row SecurityGroupRow
	err := s.wr(ctx).GetContext(ctx, &row, s.rb("SELECT * FROM security_groups WHERE project_id = ? AND name = ?"), projectID, name)
	if errors.Is(err, sql.ErrNoRows) {
		return types.SecurityGroup{}, fmt.Errorf("security group %q of project %s: %w", name, projectID, ErrNotFound)
	}
	if err != nil {
		return types.SecurityGroup{}, err
	}
	rules, err := s.groupRules(ctx, s.wr(ctx), []string{row.ID})
	return row.api(rules[row.ID]), err
}

// GetSecurityGroup finds a group by ID or name.
func (s *Store) GetSecurityGroup(ctx context.Context, idOrName string) (types.SecurityGroup, error) {
	row, err := getRow[SecurityGroupRow](ctx, s, s.rd(ctx), sgTable, idOrName)
	if err != nil {
		return types.SecurityGroup{}, err
	}
	rules, err := s.groupRules(ctx, s.rd(ctx), []string{row.ID})
	return row.api(rules[row.ID]), err
}

// GetSecurityGroupIn finds a group of a project by ID or name: group names
// repeat across projects ("default"), and a name resolves within projectID.
// Whatever the project, ctx's scope (WithProject) still applies.
func (s *Store) GetSecurityGroupIn(ctx context.Context, projectID, idOrName string) (types.SecurityGroup, error) {
	g, err := s.GetSecurityGroup(ctx, idOrName)
	if err == nil && (g.ProjectID == projectID || g.ID == idOrName) {
		return g, nil
	}
	if err != nil && !errors.Is(err, ErrAmbiguous) && !errors.Is(err, ErrNotFound) {
		return g, err
	}
	return s.projectGroupRead(ctx, projectID, idOrName)
}

func (s *Store) projectGroupRead(ctx context.Context, projectID, name string) (types.SecurityGroup, error) {
	var row SecurityGroupRow
	err := s.rd(ctx).GetContext(ctx, &row, s.rb("SELECT * FROM security_groups WHERE project_id = ? AND name = ?"), projectID, name)
	if errors.Is(err, sql.ErrNoRows) {
		return types.SecurityGroup{}, NotFound("security group", name)
	}
	if err != nil {
		return types.SecurityGroup{}, err
	}
	rules, err := s.groupRules(ctx, s.rd(ctx), []string{row.ID})
	return row.api(rules[row.ID]), err
}

// ListSecurityGroups returns a page of groups with their rules. Filters:
// project, name.
func (s *Store) ListSecurityGroups(ctx context.Context, opts ListOptions) (types.List[types.SecurityGroup], error) {
	p, err := listRows[SecurityGroupRow](ctx, s, sgTable, opts)
	if err != nil {
		return types.List[types.SecurityGroup]{}, err
	}
	ids := make([]string, len(p.Items))
	for i, r := range p.Items {
		ids[i] = r.ID
	}
	rules, err := s.groupRules(ctx, s.rd(ctx), ids)
	if err != nil {
		return types.List[types.SecurityGroup]{}, err
	}
	out := types.List[types.SecurityGroup]{Items: make([]types.SecurityGroup, len(p.Items)), NextCursor: p.Next}
	for i, r := range p.Items {
		out.Items[i] = r.api(rules[r.ID])
	}
	return out, nil
}

// UpdateSecurityGroup changes a group's name or description.
func (s *Store) UpdateSecurityGroup(ctx context.Context, idOrName string, ifMatch int64, in types.SecurityGroupUpdate) (types.SecurityGroup, error) {
	row, err := updateRow(ctx, s, sgTable, idOrName, ifMatch, func(r *SecurityGroupRow) error {
		set(&r.Name, in.Name)
		set(&r.Description, in.Description)
		return nil
	})
	if err != nil {
		return types.SecurityGroup{}, err
	}
	return s.GetSecurityGroup(ctx, row.ID)
}

// DeleteSecurityGroup deletes a group that no port uses and no other
// group's rule names as its remote group; else an InUseError.
func (s *Store) DeleteSecurityGroup(ctx context.Context, idOrName string, ifMatch int64) error {
	return deleteNet[SecurityGroupRow](ctx, s, sgTable, idOrName, ifMatch)
}

// AddSecurityGroupRule adds a validated rule to a group and bumps the
// group's revision.
func (s *Store) AddSecurityGroupRule(ctx context.Context, groupID string, r types.SecurityGroupRule) (types.SecurityGroupRule, error) {
	var out types.SecurityGroupRule
	err := s.inTx(ctx, "add security group rule", func(tx *Tx) error {
		if err := s.touchGroup(ctx, tx, groupID); err != nil {
			return err
		}
		var err error
		out, err = s.insertRule(ctx, tx, groupID, r)
		if err != nil {
			return err
		}
		return s.bumpGeneration(ctx, tx)
	})
	return out, err
}

// DeleteSecurityGroupRule removes a rule of a group.
func (s *Store) DeleteSecurityGroupRule(ctx context.Context, groupID, ruleID string) error {
	return s.inTx(ctx, "delete security group rule", func(tx *Tx) error {
		if err := s.touchGroup(ctx, tx, groupID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.rb("DELETE FROM security_group_rules WHERE id = ? AND group_id = ?"), ruleID, groupID)
		if err != nil {
			return fmt.Errorf("delete rule %s: %w", ruleID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("rule %q of security group %s: %w", ruleID, groupID, ErrNotFound)
		}
		return s.bumpGeneration(ctx, tx)
	})
}

func (s *Store) touchGroup(ctx context.Context, tx *Tx, groupID string) error {
	res, err := tx.ExecContext(ctx, s.rb("UPDATE security_groups SET revision = revision + 1, updated_at = ? WHERE id = ?"),
		micros(time.Now()), groupID)
	if err != nil {
		return fmt.Errorf("update security group %s: %w", groupID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("security group %q: %w", groupID, ErrNotFound)
	}
	return nil
}

// deleteNet is deleteRow plus the generation bump, in one transaction.
func deleteNet[R any, P interface {
	*R
	metaRow
}](ctx context.Context, s *Store, t table, idOrName string, ifMatch int64) error {
	return s.inTx(ctx, "delete "+t.kind, func(tx *Tx) error {
		row, err := lockRow[R](ctx, s, tx, t, idOrName)
		if err != nil {
			return err
		}
		m := P(&row).meta()
		if ifMatch > 0 && m.Revision != ifMatch {
			return fmt.Errorf("%s %s is at revision %d, not %d: %w", t.kind, m.ID, m.Revision, ifMatch, ErrStale)
		}
		if err := checkUsers(ctx, s, tx, t, m.ID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM "+t.name+" WHERE id = ?"), m.ID); err != nil {
			return fmt.Errorf("delete %s %s: %w", t.kind, m.ID, classify(err))
		}
		return s.bumpGeneration(ctx, tx)
	})
}

// SetTunnelEndpoint records the address a host's VXLAN tunnels use.
func (s *Store) SetTunnelEndpoint(ctx context.Context, hostID, ip string) error {
	return s.inTx(ctx, "set tunnel endpoint", func(tx *Tx) error {
		var old string
		err := tx.GetContext(ctx, &old, s.rb("SELECT ip FROM host_tunnel_endpoints WHERE host_id = ?"), hostID)
		switch {
		case err == nil && old == ip:
			return nil
		case err == nil:
			_, err = tx.ExecContext(ctx, s.rb("UPDATE host_tunnel_endpoints SET ip = ?, updated_at = ? WHERE host_id = ?"),
				ip, micros(time.Now()), hostID)
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, s.rb("INSERT INTO host_tunnel_endpoints (host_id, ip, updated_at) VALUES (?, ?, ?)"),
				hostID, ip, micros(time.Now()))
		}
		if err != nil {
			return fmt.Errorf("set tunnel endpoint of host %s: %w", hostID, classify(err))
		}
		return s.bumpGeneration(ctx, tx)
	})
}

// HostNetwork returns the desired network state of a host (without its
// version): the ports bound to it with their segments, addresses and
// security group rules resolved to CIDRs, and the remote tunnel endpoints
// of its VXLAN networks. Everything is sorted, so equal states are equal
// values.
func (s *Store) HostNetwork(ctx context.Context, hostID string) (types.HostNetwork, error) {
	out := types.HostNetwork{HostID: hostID, Ports: []types.BoundPort{}, Tunnels: []types.Tunnel{}}
	var ports []struct {
		PortRow
		SegmentType string `db:"segment_type"`
		SegmentID   int64  `db:"segment_id"`
		Physnet     string `db:"physnet"`
	}
	if err := sqlx.SelectContext(ctx, s.rd(ctx), &ports, s.rb(`SELECT p.*, n.segment_type, n.segment_id, n.physnet FROM ports p
		JOIN networks n ON n.id = p.network_id WHERE p.host_id = ? ORDER BY p.id`), hostID); err != nil {
		return out, fmt.Errorf("read ports of host %s: %w", hostID, err)
	}
	if len(ports) == 0 {
		return out, nil
	}
	ids := make([]string, len(ports))
	for i, p := range ports {
		ids[i] = p.ID
	}
	ips, groups, err := s.portDetails(ctx, s.rd(ctx), ids)
	if err != nil {
		return out, err
	}
	// Subnets of the addresses, for prefixes and gateways.
	subnets := map[string]SubnetRow{}
	var subnetIDs, groupIDs []string
	for _, l := range ips {
		for _, ip := range l {
			subnetIDs = append(subnetIDs, ip.SubnetID)
		}
	}
	for _, l := range groups {
		groupIDs = append(groupIDs, l...)
	}
	if len(subnetIDs) > 0 {
		q, args, err := sqlx.In("SELECT * FROM subnets WHERE id IN (?)", sortedCopy(subnetIDs))
		if err != nil {
			return out, err
		}
		var rows []SubnetRow
		if err := sqlx.SelectContext(ctx, s.rd(ctx), &rows, s.rb(q), args...); err != nil {
			return out, fmt.Errorf("read subnets: %w", err)
		}
		for _, r := range rows {
			subnets[r.ID] = r
		}
	}
	rules, err := s.groupRules(ctx, s.rd(ctx), sortedCopy(groupIDs))
	if err != nil {
		return out, err
	}
	members, err := s.groupMemberIPs(ctx, rules)
	if err != nil {
		return out, err
	}
	vxlanNets := map[string]int64{}
	for _, p := range ports {
		bp := types.BoundPort{ID: p.ID, NetworkID: p.NetworkID, SegmentType: p.SegmentType,
			SegmentID: apiSegmentID(p.SegmentType, p.SegmentID), Physnet: p.Physnet,
			MACAddress: p.MACAddress, IPs: []string{}, Rules: []types.ResolvedRule{}}
		for _, pair := range p.pairs() {
			if pair.MACAddress == "" {
				pair.MACAddress = p.MACAddress
			}
			if pfx, err := netip.ParsePrefix(pair.IPAddress); err == nil {
				pair.IPAddress = pfx.Masked().String()
			} else if a, err := netip.ParseAddr(pair.IPAddress); err == nil {
				pair.IPAddress = netip.PrefixFrom(a, a.BitLen()).String()
			} else {
				continue // the API validated it; never widen anti-spoofing on a bad value
			}
			bp.AllowedAddressPairs = append(bp.AllowedAddressPairs, pair)
		}
		for _, ip := range ips[p.ID] {
			sn := subnets[ip.SubnetID]
			bits := 32
			if pfx, err := netip.ParsePrefix(sn.CIDR); err == nil {
				bits = pfx.Bits()
			}
			bp.IPs = append(bp.IPs, fmt.Sprintf("%s/%d", ip.IPAddress, bits))
			if bp.Gateway == "" {
				bp.Gateway = sn.GatewayIP
			}
			if len(bp.IPs) == 1 { // nil when empty: the state's version hashes it
				if d := fromJSON[[]string](sn.DNSServers); len(d) > 0 {
					bp.DNSServers = d
				}
				if r := fromJSON[[]types.HostRoute](sn.HostRoutes); len(r) > 0 {
					bp.HostRoutes = r
				}
			}
		}
		bp.Rules = resolveRules(groups[p.ID], rules, members)
		if p.SegmentType == types.SegmentVXLAN {
			vxlanNets[p.NetworkID] = p.SegmentID
		}
		out.Ports = append(out.Ports, bp)
	}
	if len(vxlanNets) > 0 {
		if out.Tunnels, err = s.tunnels(ctx, hostID, vxlanNets); err != nil {
			return out, err
		}
	}
	return out, nil
}

// groupMemberIPs returns, for every remote group the rules name, the
// addresses of its ports as /32 CIDRs, sorted.
func (s *Store) groupMemberIPs(ctx context.Context, rules map[string][]types.SecurityGroupRule) (map[string][]string, error) {
	var remote []string
	for _, rs := range rules {
		for _, r := range rs {
			if r.RemoteGroupID != "" {
				remote = append(remote, r.RemoteGroupID)
			}
		}
	}
	out := map[string][]string{}
	if len(remote) == 0 {
		return out, nil
	}
	q, args, err := sqlx.In(`SELECT psg.group_id, a.ip_address FROM port_security_groups psg
		JOIN ip_allocations a ON a.port_id = psg.port_id WHERE psg.group_id IN (?) ORDER BY psg.group_id, a.ip_address`, sortedCopy(remote))
	if err != nil {
		return nil, err
	}
	var rows []struct {
		GroupID string `db:"group_id"`
		IP      string `db:"ip_address"`
	}
	if err := sqlx.SelectContext(ctx, s.rd(ctx), &rows, s.rb(q), args...); err != nil {
		return nil, fmt.Errorf("read remote group members: %w", err)
	}
	for _, r := range rows {
		out[r.GroupID] = append(out[r.GroupID], r.IP+"/32")
	}
	// A member's allowed address pairs are its addresses too: a VIP that
	// moves between members is a member's source.
	q, args, err = sqlx.In(`SELECT psg.group_id, p.allowed_address_pairs FROM port_security_groups psg
		JOIN ports p ON p.id = psg.port_id WHERE psg.group_id IN (?) AND p.allowed_address_pairs <> '[]' ORDER BY psg.group_id, p.id`,
		sortedCopy(remote))
	if err != nil {
		return nil, err
	}
	var pairRows []struct {
		GroupID string `db:"group_id"`
		Pairs   string `db:"allowed_address_pairs"`
	}
	if err := sqlx.SelectContext(ctx, s.rd(ctx), &pairRows, s.rb(q), args...); err != nil {
		return nil, fmt.Errorf("read remote group members' address pairs: %w", err)
	}
	for _, r := range pairRows {
		for _, pair := range fromJSON[[]types.AddressPair](r.Pairs) {
			if pfx, err := netip.ParsePrefix(pair.IPAddress); err == nil {
				out[r.GroupID] = append(out[r.GroupID], pfx.Masked().String())
			} else if a, err := netip.ParseAddr(pair.IPAddress); err == nil {
				out[r.GroupID] = append(out[r.GroupID], a.String()+"/32")
			}
		}
	}
	for g := range out {
		out[g] = sortedCopy(out[g])
	}
	return out, nil
}

// resolveRules merges the rules of a port's groups, remote groups expanded,
// duplicates removed, in a stable order.
func resolveRules(groups []string, rules map[string][]types.SecurityGroupRule, members map[string][]string) []types.ResolvedRule {
	seen := map[string]bool{}
	out := []types.ResolvedRule{}
	for _, g := range groups {
		for _, r := range rules[g] {
			rr := types.ResolvedRule{Direction: r.Direction, Protocol: r.Protocol, PortRangeMin: r.PortRangeMin,
				PortRangeMax: r.PortRangeMax, RemoteCIDRs: []string{}}
			switch {
			case r.RemoteGroupID != "":
				rr.RemoteCIDRs = append(rr.RemoteCIDRs, members[r.RemoteGroupID]...)
			case r.RemoteCIDR != "":
				rr.RemoteCIDRs = append(rr.RemoteCIDRs, r.RemoteCIDR)
			default:
				rr.RemoteCIDRs = append(rr.RemoteCIDRs, "0.0.0.0/0")
			}
			key := fmt.Sprintf("%s|%s|%d|%d|%s", rr.Direction, rr.Protocol, rr.PortRangeMin, rr.PortRangeMax, strings.Join(rr.RemoteCIDRs, ","))
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, rr)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Direction != b.Direction {
			return a.Direction < b.Direction
		}
		if a.Protocol != b.Protocol {
			return a.Protocol < b.Protocol
		}
		if a.PortRangeMin != b.PortRangeMin {
			return a.PortRangeMin < b.PortRangeMin
		}
		if a.PortRangeMax != b.PortRangeMax {
			return a.PortRangeMax < b.PortRangeMax
		}
		return strings.Join(a.RemoteCIDRs, ",") < strings.Join(b.RemoteCIDRs, ",")
	})
	return out
}

// tunnels returns the other hosts with ports on the given VXLAN networks
// and a tunnel endpoint, each with the VNIs it shares with this host.
func (s *Store) tunnels(ctx context.Context, hostID string, nets map[string]int64) ([]types.Tunnel, error) {
	netIDs := make([]string, 0, len(nets))
	for id := range nets {
		netIDs = append(netIDs, id)
	}
	q, args, err := sqlx.In(`SELECT DISTINCT p.host_id, n.segment_id, e.ip FROM ports p
		JOIN networks n ON n.id = p.network_id JOIN host_tunnel_endpoints e ON e.host_id = p.host_id
		WHERE p.network_id IN (?) AND p.host_id <> '' AND p.host_id <> ? ORDER BY p.host_id, n.segment_id`, sortedCopy(netIDs), hostID)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		HostID string `db:"host_id"`
		VNI    int64  `db:"segment_id"`
		IP     string `db:"ip"`
	}
	if err := sqlx.SelectContext(ctx, s.rd(ctx), &rows, s.rb(q), args...); err != nil {
		return nil, fmt.Errorf("read tunnel endpoints: %w", err)
	}
	out := []types.Tunnel{}
	for _, r := range rows {
		if n := len(out); n > 0 && out[n-1].HostID == r.HostID {
			out[n-1].VNIs = append(out[n-1].VNIs, r.VNI)
			continue
		}
		out = append(out, types.Tunnel{HostID: r.HostID, IP: r.IP, VNIs: []int64{r.VNI}})
	}
	return out, nil
}
