package server

import (
	"context"

	"github.com/corral-cloud/corral/api/store"

	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// This file holds the simple catalogue resources: regions, zones,
// aggregates, flavors and projects, made of the generic handlers in
// handlers.go. Images, hosts, servers, groups and tokens have files of
// their own.

func (s *Server) regionRoutes(g *echo.Group) {
	st := s.store
	g.POST("/regions", createHandler(s, adminOnly, func(_ echo.Context, in *types.RegionCreate) error {
		return first(checkName("name", in.Name, maxNameLen), checkDescription(in.Description))
	}, st.CreateRegion))
	g.GET("/regions", listHandler(catalogRead, nil, st.ListRegions))
	g.GET("/regions/:id", showHandler(catalogRead, st.GetRegion))
	g.PATCH("/regions/:id", patchHandler(s, func(in *types.RegionUpdate) error {
		return checkNameDesc(in.Name, in.Description)
	}, st.UpdateRegion))
	g.DELETE("/regions/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return st.DeleteRegion(c.Request().Context(), id, rev)
	}))
}

func (s *Server) zoneRoutes(g *echo.Group) {
	st := s.store
	// A zone is created in a region given by ID or name.
	g.POST("/zones", createHandler(s, adminOnly, func(c echo.Context, in *types.ZoneCreate) error {
		if err := first(checkName("name", in.Name, maxNameLen), checkDescription(in.Description)); err != nil {
			return err
		}
		if in.Region == "" {
			return types.FieldError("region", "is required")
		}
		region, err := st.GetRegion(c.Request().Context(), in.Region)
		if err != nil {
			return refError("region", err)
		}
		in.Region = region.ID
		return nil
	}, func(ctx context.Context, in types.ZoneCreate) (types.Zone, error) {
		return st.CreateZone(ctx, in.Region, in)
	}))
	g.GET("/zones", listHandler(catalogRead, func(c echo.Context) map[string]func(string) (string, error) {
		return map[string]func(string) (string, error){"region": s.regionID(c)}
	}, st.ListZones))
	g.GET("/zones/:id", showHandler(catalogRead, st.GetZone))
	g.PATCH("/zones/:id", patchHandler(s, func(in *types.ZoneUpdate) error {
		return checkNameDesc(in.Name, in.Description)
	}, st.UpdateZone))
	g.DELETE("/zones/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return st.DeleteZone(c.Request().Context(), id, rev)
	}))
}

func (s *Server) aggregateRoutes(g *echo.Group) {
	st := s.store
	g.POST("/aggregates", createHandler(s, adminOnly, func(_ echo.Context, in *types.AggregateCreate) error {
		return checkAggregate(aggregateDefaults(*in))
	}, func(ctx context.Context, in types.AggregateCreate) (types.Aggregate, error) {
		return st.CreateAggregate(ctx, aggregateDefaults(in))
	}))
	g.GET("/aggregates", listHandler(catalogRead, nil, st.ListAggregates))
	g.GET("/aggregates/:id", showHandler(catalogRead, st.GetAggregate))
	// The whole aggregate is validated after the patch, inside the update.
	g.PATCH("/aggregates/:id", patchHandler(s, func(*types.AggregateUpdate) error { return nil },
		func(ctx context.Context, id string, rev int64, in types.AggregateUpdate) (types.Aggregate, error) {
			return st.UpdateAggregate(ctx, id, rev, in, checkAggregate)
		}))
	g.DELETE("/aggregates/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return st.DeleteAggregate(c.Request().Context(), id, rev)
	}))
}

// aggregateDefaults fills in what a create leaves out: no overcommit
// (ratios 1), the spread weigher, no traits.
func aggregateDefaults(in types.AggregateCreate) types.Aggregate {
	a := types.Aggregate{Name: in.Name, Traits: in.Traits, CPUAllocationRatio: 1, RAMAllocationRatio: 1,
		ReservedMemoryMiB: in.ReservedMemoryMiB, ReservedCPUs: in.ReservedCPUs, Weigher: in.Weigher, Description: in.Description}
	if a.Traits == nil {
		a.Traits = []string{}
	}
	if in.CPUAllocationRatio != nil {
		a.CPUAllocationRatio = *in.CPUAllocationRatio
	}
	if in.RAMAllocationRatio != nil {
		a.RAMAllocationRatio = *in.RAMAllocationRatio
	}
	if a.Weigher == "" {
		a.Weigher = "spread"
	}
	return a
}

func (s *Server) flavorRoutes(g *echo.Group) {
	st := s.store
	g.POST("/flavors", createHandler(s, adminOnly, func(_ echo.Context, in *types.FlavorCreate) error {
		if in.Kind == "" {
			in.Kind = types.KindVM
		}
		return checkFlavor(*in)
	}, st.CreateFlavor))
	g.GET("/flavors", listHandler(catalogRead, func(echo.Context) map[string]func(string) (string, error) {
		return map[string]func(string) (string, error){"kind": nil}
	}, st.ListFlavors))
	g.GET("/flavors/:id", showHandler(catalogRead, st.GetFlavor))
	g.PATCH("/flavors/:id", patchHandler(s, func(in *types.FlavorUpdate) error {
		return checkNameDesc(in.Name, in.Description)
	}, st.UpdateFlavor))
	g.DELETE("/flavors/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return st.DeleteFlavor(c.Request().Context(), id, rev)
	}))
}

func (s *Server) projectRoutes(g *echo.Group) {
	st := s.store
	g.POST("/projects", createHandler(s, adminOnly, func(_ echo.Context, in *types.ProjectCreate) error {
		return first(checkName("name", in.Name, maxNameLen), checkDescription(in.Description))
	}, st.CreateProject))
	// Members and project readers see only their own project.
	g.GET("/projects", func(c echo.Context) error {
		return listHandler(readers, nil, func(ctx context.Context, opts store.ListOptions) (types.List[types.Project], error) {
			if scope := projectScope(c); scope != "" {
				opts.Filters["id"] = scope
			}
			return st.ListProjects(ctx, opts)
		})(c)
	})
	// Another project is "not found": the store confines the lookup.
	g.GET("/projects/:id", showHandler(readers, st.GetProject))
	g.PATCH("/projects/:id", patchHandler(s, func(in *types.ProjectUpdate) error {
		return checkNameDesc(in.Name, in.Description)
	}, st.UpdateProject))
	g.DELETE("/projects/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return st.DeleteProject(c.Request().Context(), id, rev)
	}))
}

// regionID resolves a region filter given by ID or name.
func (s *Server) regionID(c echo.Context) func(string) (string, error) {
	return func(v string) (string, error) {
		r, err := s.store.GetRegion(c.Request().Context(), v)
		return r.ID, err
	}
}

func (s *Server) zoneID(c echo.Context) func(string) (string, error) {
	return func(v string) (string, error) {
		z, err := s.store.GetZone(c.Request().Context(), v)
		return z.ID, err
	}
}

func (s *Server) aggregateID(c echo.Context) func(string) (string, error) {
	return func(v string) (string, error) {
		a, err := s.store.GetAggregate(c.Request().Context(), v)
		return a.ID, err
	}
}

func (s *Server) projectID(c echo.Context) func(string) (string, error) {
	return func(v string) (string, error) {
		p, err := s.store.GetProject(c.Request().Context(), v)
		return p.ID, err
	}
}

// hostID resolves a host filter given by ID or name. Members and project
// readers may not read hosts: a host they name that does not resolve is
// kept as given (the list comes back empty) rather than refused, so the
// filter never tells them whether a host exists.
func (s *Server) hostID(c echo.Context) func(string) (string, error) {
	if p := principalOf(c); p.Role != types.RoleAdmin && !(p.Role == types.RoleReader && p.ProjectID == "") {
		return func(v string) (string, error) {
			if h, err := s.store.GetHost(c.Request().Context(), v); err == nil {
				return h.ID, nil
			}
			return v, nil
		}
	}
	return func(v string) (string, error) {
		h, err := s.store.GetHost(c.Request().Context(), v)
		return h.ID, err
	}
}

func (s *Server) groupID(c echo.Context) func(string) (string, error) {
	return func(v string) (string, error) {
		g, err := s.store.GetGroup(c.Request().Context(), v)
		return g.ID, err
	}
}
