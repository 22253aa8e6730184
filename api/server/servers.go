package server

import (
	"errors"
	"fmt"
	"slices"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/placement"
	"net/http"

	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

func (s *Server) serverRoutes(g *echo.Group) {
	g.POST("/servers", s.createServer)
	g.GET("/servers", s.listServers)
	g.GET("/servers/:id", func(c echo.Context) error {
		srv, err := s.visibleServer(c)
		return found(c, srv.Revision, srv, err)
	})
	g.GET("/servers/:id/events", s.serverEvents)
	g.PATCH("/servers/:id", s.updateServer)
	g.DELETE("/servers/:id", s.deleteServer)
	g.POST("/placement/dry-run", s.dryRun)
}

// createServer validates a request, places it and records the server with
// its claim in one transaction: it answers 201 with the server scheduled on
// a host, or 409 no_valid_host with the explanation, having claimed nothing.
func (s *Server) createServer(c echo.Context) error {
	out, req, networks, boot, err := s.serverRequest(c)
	if err != nil {
		return err
	}
	if out.Kind == types.KindBaremetal { // bare metal: a node, not a host (nodes.go)
		return s.createBaremetalServer(c, out, networks, boot)
	}
	ctx := c.Request().Context()
	var made []types.Server
	_, err = s.placer.decide(ctx, func(snap *placement.Snapshot) (placement.Decision, error) {
		return snap.Place(req)
	}, func(d placement.Decision) error {
		cl := d.Claims[0]
		srv := out
		srv.HostID, srv.RegionID, srv.ZoneID = cl.HostID, cl.Region, cl.Zone
		var err error
		made, err = s.store.ClaimAndCreate(ctx, s.placer.hostClaims(d), []store.PlacedServer{{Server: srv, Claim: allocation(cl.Resources), Bootstrap: boot}}, nil)
		return err
	})
	if err != nil {
		return refError("server", noValidHost(err))
	}
	if len(networks) > 0 {
		if err := s.plugNetworks(c, made[0], networks); err != nil {
			return err
		}
		// With its ports: their addresses, and the revision they moved on.
		if made[0], err = s.store.GetServer(ctx, made[0].ID); err != nil {
			return err
		}
	}
	s.notifyServers(c, made...)
	return created(c, made[0].ID, made[0].Revision, made[0], nil)
}

// plugNetworks gives a new server one port on each network, marked
// auto_delete: the ports go with the server when its delete completes. If
// a port cannot be made (no free address), the server and the ports made so
// far are removed, and the claim given back: a create is all or nothing.
func (s *Server) plugNetworks(c echo.Context, srv types.Server, networks []string) error {
	ctx := c.Request().Context()
	failed := 0 // the network whose port failed
	group, err := s.store.EnsureDefaultSecurityGroup(ctx, srv.ProjectID)
	if err == nil {
		var made []string
		for i, n := range networks {
			var ips []types.FixedIP
			failed = i
			if ips, err = s.resolveFixedIPs(c, n, nil); err != nil { // an address from each subnet
				break
			}
			var p types.Port
			p, err = s.store.CreatePort(ctx, store.PortSpec{Port: types.Port{NetworkID: n, ProjectID: srv.ProjectID,
				DeviceID: srv.ID, HostID: srv.HostID, SecurityGroups: []string{group.ID}, AutoDelete: true}, IPs: ips})
			if err != nil {
				break
			}
			made = append(made, p.ID)
		}
		if err != nil {
			for _, id := range made {
				s.store.DeletePort(ctx, id, 0)
			}
		}
	}
	if err != nil {
		if _, derr := s.store.ForceDeleteServer(ctx, srv.ID); derr != nil {
			s.log.Error("cannot remove a server whose ports failed", "server", srv.ID, "error", derr)
		}
		s.forget(c, srv.HostID)
		err = netError(err)
		var apiErr *types.Error
		if errors.As(err, &apiErr) && apiErr.Details["field"] != nil {
			apiErr.Details["field"] = fmt.Sprintf("networks[%d]", failed)
		}
		return err
	}
	s.notify(c, networkWatchKey)
	return nil
}

// dryRun answers where a server would land, and why, without claiming.
func (s *Server) dryRun(c echo.Context) error {
	_, req, _, _, err := s.serverRequest(c)
	if err != nil {
		return err
	}
	d, err := s.placer.decide(c.Request().Context(), func(snap *placement.Snapshot) (placement.Decision, error) {
		return snap.Place(req)
	}, nil)
	var fe *placement.FitError
	switch {
	case errors.As(err, &fe):
		return c.JSON(http.StatusOK, types.DryRun{Fits: false, Explanation: fe.Explanation})
	case err != nil:
		return noValidHost(err)
	}
	cl := d.Claims[0]
	return c.JSON(http.StatusOK, types.DryRun{Fits: true, HostID: cl.HostID, ZoneID: cl.Zone, RegionID: cl.Region,
		Weigher: string(d.Weigher), Explanation: d.Explanation})
}

// serverRequest is what create and dry run share: it checks the caller,
// decodes and resolves a ServerCreate, and builds the engine's request.
// serverRequest decodes and resolves a server create; networks are the IDs
// of the networks asked for, checked to be usable by the server's project.
func (s *Server) serverRequest(c echo.Context) (types.Server, placement.Request, []string, *store.ServerBootstrap, error) {
	if err := allow(c, serverWrite...); err != nil {
		return types.Server{}, placement.Request{}, nil, nil, err
	}
	var in types.ServerCreate
	if err := s.decode(c, &in); err != nil {
		return types.Server{}, placement.Request{}, nil, nil, err
	}
	out, flavor, err := s.resolveServer(c, in)
	if err != nil {
		return types.Server{}, placement.Request{}, nil, nil, err
	}
	boot, err := s.serverBootstrap(c, out, in)
	if err != nil {
		return types.Server{}, placement.Request{}, nil, nil, err
	}
	var networks []string
	for i, ref := range in.Networks {
		field := fmt.Sprintf("networks[%d]", i)
		n, err := s.store.GetNetwork(c.Request().Context(), ref)
		if err != nil {
			return types.Server{}, placement.Request{}, nil, nil, refError(field, err)
		}
		if n.ProjectID != "" && n.ProjectID != out.ProjectID { // an admin's mistake: members see only shared networks and their own
			return types.Server{}, placement.Request{}, nil, nil, types.FieldError(field, "network %s belongs to another project", n.ID)
		}
		if slices.Contains(networks, n.ID) {
			return types.Server{}, placement.Request{}, nil, nil, types.FieldError(field, "network %s is listed twice", n.ID)
		}
		networks = append(networks, n.ID)
	}
	return out, s.placementRequest(out, flavor, in.Traits, in.Weigher), networks, boot, nil
}

// placementRequest builds the engine's request for a resolved server.
func (s *Server) placementRequest(srv types.Server, f types.Flavor, traits []string, weigher string) placement.Request {
	req := placement.Request{Now: s.now(), Flavor: placement.Flavor{VCPUs: f.VCPUs, MemoryMiB: f.RAMMiB, DiskGiB: f.DiskGiB,
		Hugepages: f.Hugepages}}
	req.Kind = placement.Kind(srv.Kind)
	req.Region = srv.RegionID
	if srv.ZoneID != "" {
		req.Zones = []string{srv.ZoneID}
	}
	if srv.AggregateID != "" {
		req.Aggregates = []string{srv.AggregateID}
	}
	req.Traits = traits
	req.Weigher = placement.Weigher(weigher)
	return req
}

// resolveServer validates a create request and resolves its references.
func (s *Server) resolveServer(c echo.Context, in types.ServerCreate) (types.Server, types.Flavor, error) {
	if in.DesiredState == "" {
		in.DesiredState = types.DesiredActive
	}
	fail := func(err error) (types.Server, types.Flavor, error) { return types.Server{}, types.Flavor{}, err }
	if err := first(checkName("name", in.Name, maxNameLen), checkOneOf("kind", in.Kind, types.KindVM, types.KindBaremetal),
		checkOneOf("desired_state", in.DesiredState, types.DesiredActive, types.DesiredStopped), checkTraits(in.Traits)); err != nil {
		return fail(err)
	}
	if in.Weigher != "" {
		if err := checkOneOf("weigher", in.Weigher, "pack", "spread"); err != nil {
			return fail(err)
		}
	}
	for _, f := range []struct{ name, v string }{{"flavor", in.Flavor}, {"image", in.Image}} {
		if f.v == "" {
			return fail(types.FieldError(f.name, "is required"))
		}
	}
	ctx := c.Request().Context()
	out := types.Server{Name: in.Name, Kind: in.Kind, DesiredState: in.DesiredState}
	// The project: members always create in their own.
	p := principalOf(c)
	switch {
	case p.Role == types.RoleMember && in.Project != "" && in.Project != p.ProjectID:
		proj, err := s.store.GetProject(ctx, in.Project)
		if err != nil || proj.ID != p.ProjectID {
			return fail(types.Errorf(types.CodeForbidden, "a member may only create servers in its own project").WithDetail("field", "project"))
		}
		out.ProjectID = proj.ID
	case p.Role == types.RoleMember:
		out.ProjectID = p.ProjectID
	case in.Project == "":
		return fail(types.FieldError("project", "is required"))
	default:
		proj, err := s.store.GetProject(ctx, in.Project)
		if err != nil {
			return fail(refError("project", err))
		}
		out.ProjectID = proj.ID
	}
	flavor, err := s.store.GetFlavor(ctx, in.Flavor)
	if err != nil {
		return fail(refError("flavor", err))
	}
	if flavor.Kind != in.Kind {
		return fail(types.FieldError("flavor", "flavor %s is for %s servers, not %s", flavor.Name, flavor.Kind, in.Kind))
	}
	image, err := s.store.GetImage(ctx, in.Image)
	if err != nil {
		return fail(refError("image", err))
	}
	if image.Status != types.ImageActive {
		return fail(types.Errorf(types.CodeImageNotActive, "image %s has no data yet; upload it first", image.ID).WithDetail("field", "image"))
	}
	if image.MinDiskGiB > flavor.DiskGiB && in.Kind == types.KindVM {
		return fail(types.FieldError("flavor", "flavor %s has a %d GiB disk, image %s needs at least %d GiB",
			flavor.Name, flavor.DiskGiB, image.Name, image.MinDiskGiB))
	}
	out.FlavorID, out.ImageID = flavor.ID, image.ID
	if in.Region != "" {
		r, err := s.store.GetRegion(ctx, in.Region)
		if err != nil {
			return fail(refError("region", err))
		}
		out.RegionID = r.ID
	}
	if in.Zone != "" {
		z, err := s.store.GetZoneIn(ctx, out.RegionID, in.Zone)
		if err != nil {
			return fail(refError("zone", err))
		}
		if out.RegionID != "" && z.RegionID != out.RegionID {
			return fail(types.FieldError("zone", "zone %s is not in region %s", z.Name, in.Region))
		}
		out.ZoneID, out.RegionID = z.ID, z.RegionID
	}
	if in.Aggregate != "" {
		a, err := s.store.GetAggregate(ctx, in.Aggregate)
		if err != nil {
			return fail(refError("aggregate", err))
		}
		out.AggregateID = a.ID
	}
	return out, flavor, nil
}

func (s *Server) listServers(c echo.Context) error {
	if err := allow(c, readers...); err != nil {
		return err
	}
	opts, err := listOptions(c, map[string]func(string) (string, error){
		"region": s.regionID(c), "zone": s.zoneID(c), "aggregate": s.aggregateID(c), "project": s.projectID(c),
		"kind": nil, "state": nil, "host": s.hostID(c), "name": nil, "group": s.groupID(c),
	})
	if err != nil {
		return err
	}
	if scope := projectScope(c); scope != "" {
		if f, ok := opts.Filters["project"]; ok && f != scope {
			return listJSON(c, types.List[types.Server]{}, nil)
		}
		opts.Filters["project"] = scope
	}
	l, err := s.store.ListServers(c.Request().Context(), opts)
	return listJSON(c, l, err)
}

// visibleServer loads the server named in the path, answering 404 for a
// server of another project so that members cannot probe for IDs.
func (s *Server) visibleServer(c echo.Context) (types.Server, error) {
	return visible(c, s.store.GetServer)
}

// serverEvents answers GET /v1/servers/{id}/events: the audit log's
// entries for the server (the calls that created, changed, acted on or
// deleted it), oldest first and paged like every list. The server is
// looked up as the caller sees it, so another project's server is a 404
// like a missing one; the audit log itself stays an infrastructure view.
func (s *Server) serverEvents(c echo.Context) error {
	srv, err := s.visibleServer(c)
	if err != nil {
		return err
	}
	opts, err := listOptions(c, nil)
	if err != nil {
		return err
	}
	opts.Filters["resource"] = srv.ID
	l, err := s.store.ListAudit(c.Request().Context(), opts)
	return listJSON(c, l, err)
}

func (s *Server) updateServer(c echo.Context) error {
	_, rev, err := writableVisible(c, s.visibleServer)
	if err != nil {
		return err
	}
	var in types.ServerUpdate
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if in.Name != nil {
		if err := checkName("name", *in.Name, maxNameLen); err != nil {
			return err
		}
	}
	if in.DesiredState != nil {
		if err := checkOneOf("desired_state", *in.DesiredState, types.DesiredActive, types.DesiredStopped); err != nil {
			return err
		}
	}
	srv, err := s.store.UpdateServer(c.Request().Context(), c.Param("id"), rev, in)
	if err == nil {
		s.notifyServers(c, srv)
	}
	return found(c, srv.Revision, srv, err)
}

// deleteServer deletes a server. A VM whose host's agent has made a guest
// is handed to that agent: the server turns "deleting" (202) and goes, with
// its claim given back, once the agent confirms the guest and all it left
// on the host are gone. Anything else goes at once (204). An admin's
// ?force=true removes the record at once in every case, for a host that is
// gone for good; its agent, if it ever returns, reaps the orphan guest.
func (s *Server) deleteServer(c echo.Context) error {
	if err := allow(c, serverWrite...); err != nil {
		return err
	}
	visible, err := s.visibleServer(c)
	if err != nil {
		return err
	}
	force := c.QueryParam("force") == "true"
	if force {
		if err := allow(c, adminOnly...); err != nil {
			return err
		}
	}
	if visible.GroupID != "" && !force {
		return types.Errorf(types.CodeConflict, "server %s is a member of group %s: scale the group down or replace the member",
			visible.ID, visible.GroupID).WithDetail("group_id", visible.GroupID)
	}
	rev, err := ifMatch(c)
	if err != nil {
		return err
	}
	if visible.Kind == types.KindBaremetal && !force { // bare metal: clean the node (nodes.go)
		return s.deleteBaremetalServer(c, visible, rev)
	}
	ctx := c.Request().Context()
	var srv types.Server
	if force {
		srv, err = s.store.ForceDeleteServer(ctx, visible.ID)
	} else {
		srv, err = s.store.DeleteServer(ctx, visible.ID, rev)
	}
	if err != nil {
		return err
	}
	s.notifyServers(c, srv)
	if srv.State == types.ServerDeleting && !force {
		return object(c, http.StatusAccepted, srv.Revision, srv)
	}
	s.forget(c, srv.HostID)
	s.notify(c, networkWatchKey) // its ports were unplugged
	return c.NoContent(http.StatusNoContent)
}
