package server

import (
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
	g.PATCH("/servers/:id", s.updateServer)
	g.DELETE("/servers/:id", s.deleteServer)
}

// createServer validates a request and records it; the server stays
// pending until placement takes it.
func (s *Server) createServer(c echo.Context) error {
	if err := allow(c, serverWrite...); err != nil {
		return err
	}
	var in types.ServerCreate
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if in.DesiredState == "" {
		in.DesiredState = types.DesiredActive
	}
	if err := first(checkName("name", in.Name, maxNameLen), checkOneOf("kind", in.Kind, types.KindVM, types.KindBaremetal),
		checkOneOf("desired_state", in.DesiredState, types.DesiredActive, types.DesiredStopped)); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"flavor", in.Flavor}, {"image", in.Image}} {
		if f.v == "" {
			return types.FieldError(f.name, "is required")
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
			return types.Errorf(types.CodeForbidden, "a member may only create servers in its own project").WithDetail("field", "project")
		}
		out.ProjectID = proj.ID
	case p.Role == types.RoleMember:
		out.ProjectID = p.ProjectID
	case in.Project == "":
		return types.FieldError("project", "is required")
	default:
		proj, err := s.store.GetProject(ctx, in.Project)
		if err != nil {
			return refError("project", err)
		}
		out.ProjectID = proj.ID
	}
	flavor, err := s.store.GetFlavor(ctx, in.Flavor)
	if err != nil {
		return refError("flavor", err)
	}
	if flavor.Kind != in.Kind {
		return types.FieldError("flavor", "flavor %s is for %s servers, not %s", flavor.Name, flavor.Kind, in.Kind)
	}
	image, err := s.store.GetImage(ctx, in.Image)
	if err != nil {
		return refError("image", err)
	}
	if image.Status != types.ImageActive {
		return types.Errorf(types.CodeImageNotActive, "image %s has no data yet; upload it first", image.ID).WithDetail("field", "image")
	}
	if image.MinDiskGiB > flavor.DiskGiB && in.Kind == types.KindVM {
		return types.FieldError("flavor", "flavor %s has a %d GiB disk, image %s needs at least %d GiB",
			flavor.Name, flavor.DiskGiB, image.Name, image.MinDiskGiB)
	}
	out.FlavorID, out.ImageID = flavor.ID, image.ID
	if in.Region != "" {
		r, err := s.store.GetRegion(ctx, in.Region)
		if err != nil {
			return refError("region", err)
		}
		out.RegionID = r.ID
	}
	if in.Zone != "" {
		z, err := s.store.GetZone(ctx, in.Zone)
		if err != nil {
			return refError("zone", err)
		}
		if out.RegionID != "" && z.RegionID != out.RegionID {
			return types.FieldError("zone", "zone %s is not in region %s", z.Name, in.Region)
		}
		out.ZoneID, out.RegionID = z.ID, z.RegionID
	}
	if in.Aggregate != "" {
		a, err := s.store.GetAggregate(ctx, in.Aggregate)
		if err != nil {
			return refError("aggregate", err)
		}
		out.AggregateID = a.ID
	}
	srv, err := s.store.CreateServer(ctx, out)
	if err != nil {
		return refError("server", err)
	}
	return created(c, srv.ID, srv.Revision, srv, nil)
}

func (s *Server) listServers(c echo.Context) error {
	if err := allow(c, readers...); err != nil {
		return err
	}
	opts, err := listOptions(c, map[string]func(string) (string, error){
		"region": s.regionID(c), "zone": s.zoneID(c), "aggregate": s.aggregateID(c), "project": s.projectID(c),
		"kind": nil, "state": nil, "host": s.hostID(c), "name": nil,
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
	if err := allow(c, readers...); err != nil {
		return types.Server{}, err
	}
	srv, err := s.store.GetServer(c.Request().Context(), c.Param("id"))
	if err != nil {
		return srv, err
	}
	if scope := projectScope(c); scope != "" && scope != srv.ProjectID {
		return types.Server{}, notFound("server", c.Param("id"))
	}
	return srv, nil
}

func (s *Server) updateServer(c echo.Context) error {
	if err := allow(c, serverWrite...); err != nil {
		return err
	}
	if _, err := s.visibleServer(c); err != nil {
		return err
	}
	rev, err := ifMatch(c)
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
	return found(c, srv.Revision, srv, err)
}

// deleteServer removes a server that runs nowhere yet. Once placement and
// the agents exist, deleting a placed server hands it to them instead.
func (s *Server) deleteServer(c echo.Context) error {
	if err := allow(c, serverWrite...); err != nil {
		return err
	}
	if _, err := s.visibleServer(c); err != nil {
		return err
	}
	rev, err := ifMatch(c)
	if err != nil {
		return err
	}
	if _, err := s.store.DeleteServer(c.Request().Context(), c.Param("id"), rev); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
