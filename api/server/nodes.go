package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
	"github.com/labstack/echo/v4"
)

// BaremetalConfig wires bare-metal nodes into the API.
type BaremetalConfig struct {
	// Keyring seals BMC passwords at rest. Without it enrolment answers
	// 503: a password is never stored in the clear.
	Keyring *baremetal.Keyring
	// Conductor drives the nodes: power operations go through it, and
	// it is woken after every change. Without it nodes are only records.
	Conductor *baremetal.Conductor
}

// nodeRoutes registers bare-metal nodes (issue 6).
func (s *Server) nodeRoutes(g *echo.Group) {
	g.POST("/nodes", s.enrolNode)
	g.GET("/nodes", func(c echo.Context) error {
		if err := allowInfra(c); err != nil {
			return err
		}
		opts, err := listOptions(c, map[string]func(string) (string, error){
			"region": s.regionID(c), "zone": s.zoneID(c), "aggregate": s.aggregateID(c), "state": nil, "name": nil,
		})
		if err != nil {
			return err
		}
		l, err := s.store.ListNodes(c.Request().Context(), opts)
		return listJSON(c, l, err)
	})
	g.GET("/nodes/:id", func(c echo.Context) error {
		if err := allowInfra(c); err != nil {
			return err
		}
		n, err := s.store.GetNode(c.Request().Context(), c.Param("id"))
		return found(c, n.Revision, n, err)
	})
	g.GET("/nodes/:id/events", func(c echo.Context) error {
		if err := allowInfra(c); err != nil {
			return err
		}
		opts, err := listOptions(c, nil)
		if err != nil {
			return err
		}
		n, err := s.store.GetNode(c.Request().Context(), c.Param("id"))
		if err != nil {
			return err
		}
		l, err := s.store.ListNodeEvents(c.Request().Context(), n.ID, opts)
		return listJSON(c, l, err)
	})
	g.PATCH("/nodes/:id", s.updateNode)
	g.DELETE("/nodes/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		_, err := s.store.DeleteNode(c.Request().Context(), id, rev)
		return nodeError(err)
	}))
	g.POST("/nodes/:id/provision", s.provisionNode)
	g.PUT("/nodes/:id/power", s.powerNode)
}

// actor names the caller in a node's history.
func actor(c echo.Context) string { return "api:" + principalOf(c).TokenID }

// wakeConductor makes the conductor look at the nodes now.
func (s *Server) wakeConductor(c echo.Context) {
	if cond := s.cfg.Baremetal.Conductor; cond != nil {
		store.AfterCommit(c.Request().Context(), cond.Wake)
	}
}

// nodeError turns the node errors of the store and the conductor into API
// errors; others pass through to the generic mapping.
func nodeError(err error) error {
	var se *store.NodeStateError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return types.Errorf(types.CodeConflict, "%v", se).WithDetail("state", se.State).WithDetail("allowed_states", sorted(se.Want...))
	case errors.Is(err, store.ErrLeased):
		return types.Errorf(types.CodeConflict, "%v; retry when it is done", err)
	case errors.Is(err, baremetal.ErrNotIdle):
		return types.Errorf(types.CodeConflict, "%v: power operations wait until the conductor is done", err)
	case errors.Is(err, baremetal.ErrUnreachable):
		return types.Errorf(types.CodeUnavailable, "%v", err).WithDetail("reason", "bmc_unreachable")
	case errors.Is(err, baremetal.ErrRejected):
		return types.Errorf(types.CodeUnavailable, "%v", err).WithDetail("reason", "bmc_rejected")
	}
	return err
}

// checkBMC validates BMC settings, defaulting the port.
func checkBMC(b *types.NodeBMCCreate) error {
	if b.Port == 0 {
		b.Port = 623
	}
	switch {
	case b.Address == "" || len(b.Address) > maxHostNameLen || strings.ContainsAny(b.Address, " /:@"):
		return types.FieldError("bmc.address", "must be a host name or an IPv4 address")
	case b.Port < 1 || b.Port > 65535:
		return types.FieldError("bmc.port", "is %d, must be from 1 to 65535", b.Port)
	case b.Username == "" || len(b.Username) > 16:
		return types.FieldError("bmc.username", "is required, at most 16 characters (IPMI)")
	case b.Password == "" || len(b.Password) > 20:
		return types.FieldError("bmc.password", "is required, at most 20 characters (IPMI 2.0)")
	}
	return nil
}

// checkHardware validates an inventory.
func checkHardware(h types.NodeHardware) error {
	if err := first(checkRange("hardware.cpus", h.CPUs, 0, maxVCPUs), checkRange("hardware.ram_mib", h.RAMMiB, 0, maxRAMMiB)); err != nil {
		return err
	}
	for _, d := range h.Disks {
		if d.Name == "" || d.SizeBytes < 0 {
			return types.FieldError("hardware.disks", "every disk needs a name and a size")
		}
	}
	return nil
}

// normalizeMACs checks MACs and writes them in lower case with colons.
func normalizeMACs(macs []string) ([]string, error) {
	if len(macs) == 0 {
		return nil, types.FieldError("macs", "at least one MAC is required: the first one boots from the provisioning network")
	}
	out := make([]string, 0, len(macs))
	seen := map[string]bool{}
	for _, m := range macs {
		n, err := unicastMAC("macs", m)
		if err != nil {
			return nil, err
		}
		if seen[n] {
			return nil, types.FieldError("macs", "%s is listed twice", n)
		}
		seen[n] = true
		out = append(out, n)
	}
	return out, nil
}

func (s *Server) keyring() (*baremetal.Keyring, error) {
	if s.cfg.Baremetal.Keyring == nil {
		return nil, types.Errorf(types.CodeUnavailable, "bare metal is not configured on this corrald: it has no BMC key to seal passwords with (--bmc-key-file)")
	}
	return s.cfg.Baremetal.Keyring, nil
}

// enrolNode records a node in enroll; the conductor verifies its BMC
// credentials and makes it manageable (and, with provide, available).
func (s *Server) enrolNode(c echo.Context) error {
	if err := allow(c, adminOnly...); err != nil {
		return err
	}
	var in types.NodeCreate
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if err := first(checkName("name", in.Name, maxHostNameLen), checkBMC(&in.BMC)); err != nil {
		return err
	}
	macs, err := normalizeMACs(in.MACs)
	if err != nil {
		return err
	}
	if in.ProvisionIP != "" {
		if ip := net.ParseIP(in.ProvisionIP); ip == nil || ip.To4() == nil {
			return types.FieldError("provision_ip", "%q is not an IPv4 address", in.ProvisionIP)
		}
	}
	var hw types.NodeHardware
	if in.Hardware != nil {
		if err := checkHardware(*in.Hardware); err != nil {
			return err
		}
		hw = *in.Hardware
	}
	for _, f := range []struct{ name, v string }{{"region", in.Region}, {"zone", in.Zone}} {
		if f.v == "" {
			return types.FieldError(f.name, "is required")
		}
	}
	keys, err := s.keyring()
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	region, err := s.store.GetRegion(ctx, in.Region)
	if err != nil {
		return refError("region", err)
	}
	zone, err := s.store.GetZoneIn(ctx, region.ID, in.Zone)
	if err != nil {
		return refError("zone", err)
	}
	if zone.RegionID != region.ID {
		return types.FieldError("zone", "zone %s is in region %s, not %s", zone.Name, zone.RegionID, region.Name)
	}
	aggID := ""
	if in.Aggregate != "" {
		a, err := s.store.GetAggregate(ctx, in.Aggregate)
		if err != nil {
			return refError("aggregate", err)
		}
		aggID = a.ID
	}
	sealed, err := keys.Seal(in.BMC.Password)
	if err != nil {
		return err
	}
	target := types.NodeManageable
	if in.Provide {
		target = types.NodeAvailable
	}
	n, err := s.store.CreateNode(ctx, store.NodeEnrolment{Name: in.Name, RegionID: region.ID, ZoneID: zone.ID, AggregateID: aggID,
		BMCAddress: in.BMC.Address, BMCPort: in.BMC.Port, BMCUsername: in.BMC.Username, BMCPassword: sealed, MACs: macs,
		ProvisionIP: in.ProvisionIP, Hardware: hw, QuickClean: in.QuickClean, Target: target, Actor: actor(c)})
	if errors.Is(err, store.ErrExists) {
		return types.Errorf(types.CodeAlreadyExists, "the node's name or one of its MACs is taken by another node").WithDetail("field", "name/macs")
	}
	if err != nil {
		return err
	}
	s.wakeConductor(c)
	return created(c, n.ID, n.Revision, n, nil)
}

// updateNode renames a node, corrects its inventory or changes its BMC
// credentials, which are then verified again.
func (s *Server) updateNode(c echo.Context) error {
	var in types.NodeUpdate
	rev, err := s.prepareUpdate(c, &in)
	if err != nil {
		return err
	}
	if in.Name != nil {
		if err := checkName("name", *in.Name, maxHostNameLen); err != nil {
			return err
		}
	}
	if in.Hardware != nil {
		if err := checkHardware(*in.Hardware); err != nil {
			return err
		}
	}
	sealed := ""
	if in.BMC != nil {
		if err := checkBMC(in.BMC); err != nil {
			return err
		}
		keys, err := s.keyring()
		if err != nil {
			return err
		}
		if sealed, err = keys.Seal(in.BMC.Password); err != nil {
			return err
		}
	}
	row, err := s.store.ChangeNode(c.Request().Context(), c.Param("id"), rev, actor(c), func(_ *store.Tx, r *store.NodeRow) (string, error) {
		set(&r.Name, in.Name)
		if in.Hardware != nil {
			r.SetHardware(*in.Hardware)
		}
		if in.QuickClean != nil {
			r.QuickClean = 0
			if *in.QuickClean {
				r.QuickClean = 1
			}
		}
		if in.BMC == nil {
			return "", nil
		}
		if store.IsBusy(r.State) || r.ServerID != "" {
			return "", &store.NodeStateError{NodeID: r.ID, State: r.State,
				Want: []string{"enroll, manageable, available, error or maintenance without a server"}}
		}
		r.BMCAddress, r.BMCPort, r.BMCUsername, r.BMCPassword = in.BMC.Address, in.BMC.Port, in.BMC.Username, sealed
		r.State, r.LastError, r.BMCFault = types.NodeVerifying, "", ""
		if r.Target == "" {
			r.Target = types.NodeManageable
		}
		return "bmc credentials changed: verifying them", nil
	})
	if errors.Is(err, store.ErrExists) {
		return types.Errorf(types.CodeAlreadyExists, "the name is already taken").WithDetail("field", "name")
	}
	if err != nil {
		return nodeError(err)
	}
	s.wakeConductor(c)
	n := row.API()
	return found(c, n.Revision, n, nil)
}

// set copies *v into *dst when v is not nil.
func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// provisionNode moves a node toward a provisioning target; the conductor
// does the work. 202 with the node.
func (s *Server) provisionNode(c echo.Context) error {
	if err := allow(c, adminOnly...); err != nil {
		return err
	}
	var in types.NodeProvision
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if err := checkOneOf("target", in.Target, types.TargetManage, types.TargetProvide, types.TargetInspect, types.TargetMaintenance,
		types.TargetClean); err != nil {
		return err
	}
	if in.Quick && in.Target != types.TargetClean {
		return types.FieldError("quick", "applies to the target %q only", types.TargetClean)
	}
	rev, err := ifMatch(c)
	if err != nil {
		return err
	}
	row, err := s.store.ChangeNode(c.Request().Context(), c.Param("id"), rev, actor(c), func(_ *store.Tx, r *store.NodeRow) (string, error) {
		return baremetal.Provision(r, in.Target, in.Quick)
	})
	if err != nil {
		return nodeError(err)
	}
	s.wakeConductor(c)
	n := row.API()
	return object(c, http.StatusAccepted, n.Revision, n)
}

// powerNode runs a power operation on an idle node through its BMC and
// answers with the node and the power state read back. A BMC that does not
// answer gives 503 after the driver's timeouts and retries, never a hang.
func (s *Server) powerNode(c echo.Context) error {
	if err := allow(c, adminOnly...); err != nil {
		return err
	}
	var in types.NodePower
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if err := checkOneOf("state", in.State, types.PowerOpOn, types.PowerOpOff, types.PowerOpCycle, types.PowerOpSoftOff); err != nil {
		return err
	}
	cond := s.cfg.Baremetal.Conductor
	if cond == nil {
		return types.Errorf(types.CodeUnavailable, "bare metal is not configured on this corrald: no conductor drives BMCs")
	}
	ctx := c.Request().Context()
	n, err := s.store.GetNode(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	row, err := cond.Power(ctx, n.ID, baremetal.PowerOp(in.State), actor(c))
	if err != nil {
		return nodeError(err)
	}
	out := row.API()
	return object(c, http.StatusOK, out.Revision, out)
}

// createBaremetalServer places a baremetal server on an available node
// that matches its flavor and the requested region, zone and aggregate:
// the node is claimed with a compare-and-swap on its state in the
// transaction that records the server, so two creates never get the same
// node (the loser moves on to the next candidate). The conductor then
// deploys it: 201 with the server "building". Its keypairs' keys and user
// data (boot, nil for none) are kept with it as a VM's are: the deploy
// agent writes them to the node's config drive.
func (s *Server) createBaremetalServer(c echo.Context, out types.Server, networks []string, boot *store.ServerBootstrap) error {
	ctx := c.Request().Context()
	flavor, err := s.store.GetFlavor(ctx, out.FlavorID)
	if err != nil {
		return refError("flavor", err)
	}
	req := baremetal.MatchRequest{VCPUs: flavor.VCPUs, RAMMiB: flavor.RAMMiB, DiskGiB: flavor.DiskGiB,
		RegionID: out.RegionID, ZoneID: out.ZoneID, AggregateID: out.AggregateID, NICs: len(networks)}
	for range 8 {
		nodes, err := listAll(ctx, s.store.ListNodes)
		if err != nil {
			return err
		}
		fit, exp := baremetal.Match(nodes, req)
		if len(fit) == 0 {
			return types.Errorf(types.CodeNoValidHost, "no bare-metal node fits: %s", exp).WithDetail("explanation", exp)
		}
		for _, n := range fit {
			srv := out
			srv.RegionID, srv.ZoneID = n.RegionID, n.ZoneID
			if srv.AggregateID == "" {
				srv.AggregateID = n.AggregateID
			}
			made, err := s.store.ClaimNodeAndCreateServer(ctx, n.ID, srv, boot, actor(c))
			if errors.Is(err, store.ErrNodeState) {
				continue // another create took this node first
			}
			if err != nil {
				return refError("server", err)
			}
			if len(networks) > 0 {
				// The request's transaction makes the claim and the ports
				// one change: a port that fails undoes the claim.
				if err := s.plugBaremetalNetworks(c, made, n, networks); err != nil {
					return err
				}
				if made, err = s.store.GetServer(ctx, made.ID); err != nil {
					return err
				}
				s.notify(c, networkWatchKey)
			}
			s.wakeConductor(c)
			return created(c, made.ID, made.Revision, made, nil)
		}
	}
	return types.Errorf(types.CodeUnavailable, "every fitting node was taken by concurrent requests; retry")
}

// plugBaremetalNetworks gives a new bare-metal server one port on each
// network, on the node's NICs in order: the port's MAC is the NIC's, so
// the node's OS configures the address IPAM gave the port on the NIC that
// the switch puts on the port's network. The ports are auto_delete, and
// bound to no host: the conductor wires them on the node's switch port
// when the deploy ends (no hypervisor's agent touches them).
func (s *Server) plugBaremetalNetworks(c echo.Context, srv types.Server, node types.Node, networks []string) error {
	ctx := c.Request().Context()
	group, err := s.store.EnsureDefaultSecurityGroup(ctx, srv.ProjectID)
	if err != nil {
		return err
	}
	for i, n := range networks {
		field := fmt.Sprintf("networks[%d]", i)
		ips, err := s.resolveFixedIPs(c, n, nil)
		if err != nil {
			return err
		}
		_, err = s.store.CreatePort(ctx, store.PortSpec{Port: types.Port{NetworkID: n, ProjectID: srv.ProjectID,
			DeviceID: srv.ID, MACAddress: node.MACs[i], SecurityGroups: []string{group.ID}, AutoDelete: true}, IPs: ips})
		if errors.Is(err, store.ErrExists) {
			return types.Errorf(types.CodeMACAddressInUse, "%s: the node's NIC %s already has a port on network %s", field, node.MACs[i], n).
				WithDetail("field", field)
		}
		if err != nil {
			err = netError(err)
			var apiErr *types.Error
			if errors.As(err, &apiErr) && apiErr.Details["field"] != nil {
				apiErr.Details["field"] = field
			}
			return err
		}
	}
	return nil
}

// deleteBaremetalServer starts deleting a baremetal server: the node is
// powered off and cleaned by the conductor, then returns to available.
// 202 with the server "deleting" (204 if it never had a node).
func (s *Server) deleteBaremetalServer(c echo.Context, srv types.Server, rev int64) error {
	out, err := s.store.BeginBaremetalDelete(c.Request().Context(), srv.ID, rev, actor(c))
	if err != nil {
		return nodeError(err)
	}
	s.wakeConductor(c)
	if out.NodeID == "" {
		return c.NoContent(http.StatusNoContent)
	}
	return object(c, http.StatusAccepted, out.Revision, out)
}
