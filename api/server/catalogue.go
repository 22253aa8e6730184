package server

import (
	"net/http"

	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// This file holds the simple catalogue resources: regions, zones,
// aggregates, flavors and projects. Images, hosts, servers and tokens have
// files of their own.

func (s *Server) regionRoutes(g *echo.Group) {
	g.POST("/regions", func(c echo.Context) error {
		if err := allow(c, adminOnly...); err != nil {
			return err
		}
		var in types.RegionCreate
		if err := s.decode(c, &in); err != nil {
			return err
		}
		if err := first(checkName("name", in.Name, maxNameLen), checkDescription(in.Description)); err != nil {
			return err
		}
		r, err := s.store.CreateRegion(c.Request().Context(), in)
		return created(c, r.ID, r.Revision, r, err)
	})
	g.GET("/regions", func(c echo.Context) error {
		if err := allow(c, catalogRead...); err != nil {
			return err
		}
		opts, err := listOptions(c, nil)
		if err != nil {
			return err
		}
		l, err := s.store.ListRegions(c.Request().Context(), opts)
		return listJSON(c, l, err)
	})
	g.GET("/regions/:id", func(c echo.Context) error {
		if err := allow(c, catalogRead...); err != nil {
			return err
		}
		r, err := s.store.GetRegion(c.Request().Context(), c.Param("id"))
		return found(c, r.Revision, r, err)
	})
	g.PATCH("/regions/:id", func(c echo.Context) error {
		var in types.RegionUpdate
		rev, err := s.prepareUpdate(c, &in)
		if err != nil {
			return err
		}
		if in.Name != nil {
			if err := checkName("name", *in.Name, maxNameLen); err != nil {
				return err
			}
		}
		if in.Description != nil {
			if err := checkDescription(*in.Description); err != nil {
				return err
			}
		}
		r, err := s.store.UpdateRegion(c.Request().Context(), c.Param("id"), rev, in)
		return found(c, r.Revision, r, err)
	})
	g.DELETE("/regions/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return s.store.DeleteRegion(c.Request().Context(), id, rev)
	}))
}

func (s *Server) zoneRoutes(g *echo.Group) {
	g.POST("/zones", func(c echo.Context) error {
		if err := allow(c, adminOnly...); err != nil {
			return err
		}
		var in types.ZoneCreate
		if err := s.decode(c, &in); err != nil {
			return err
		}
		if err := first(checkName("name", in.Name, maxNameLen), checkDescription(in.Description)); err != nil {
			return err
		}
		if in.Region == "" {
			return types.FieldError("region", "is required")
		}
		ctx := c.Request().Context()
		region, err := s.store.GetRegion(ctx, in.Region)
		if err != nil {
			return refError("region", err)
		}
		z, err := s.store.CreateZone(ctx, region.ID, in)
		return created(c, z.ID, z.Revision, z, err)
	})
	g.GET("/zones", func(c echo.Context) error {
		if err := allow(c, catalogRead...); err != nil {
			return err
		}
		opts, err := listOptions(c, map[string]func(string) (string, error){"region": s.regionID(c)})
		if err != nil {
			return err
		}
		l, err := s.store.ListZones(c.Request().Context(), opts)
		return listJSON(c, l, err)
	})
	g.GET("/zones/:id", func(c echo.Context) error {
		if err := allow(c, catalogRead...); err != nil {
			return err
		}
		z, err := s.store.GetZone(c.Request().Context(), c.Param("id"))
		return found(c, z.Revision, z, err)
	})
	g.PATCH("/zones/:id", func(c echo.Context) error {
		var in types.ZoneUpdate
		rev, err := s.prepareUpdate(c, &in)
		if err != nil {
			return err
		}
		if in.Name != nil {
			if err := checkName("name", *in.Name, maxNameLen); err != nil {
				return err
			}
		}
		if in.Description != nil {
			if err := checkDescription(*in.Description); err != nil {
				return err
			}
		}
		z, err := s.store.UpdateZone(c.Request().Context(), c.Param("id"), rev, in)
		return found(c, z.Revision, z, err)
	})
	g.DELETE("/zones/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return s.store.DeleteZone(c.Request().Context(), id, rev)
	}))
}

func (s *Server) aggregateRoutes(g *echo.Group) {
	g.POST("/aggregates", func(c echo.Context) error {
		if err := allow(c, adminOnly...); err != nil {
			return err
		}
		var in types.AggregateCreate
		if err := s.decode(c, &in); err != nil {
			return err
		}
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
		if err := checkAggregate(a); err != nil {
			return err
		}
		out, err := s.store.CreateAggregate(c.Request().Context(), a)
		return created(c, out.ID, out.Revision, out, err)
	})
	g.GET("/aggregates", func(c echo.Context) error {
		if err := allow(c, catalogRead...); err != nil {
			return err
		}
		opts, err := listOptions(c, nil)
		if err != nil {
			return err
		}
		l, err := s.store.ListAggregates(c.Request().Context(), opts)
		return listJSON(c, l, err)
	})
	g.GET("/aggregates/:id", func(c echo.Context) error {
		if err := allow(c, catalogRead...); err != nil {
			return err
		}
		a, err := s.store.GetAggregate(c.Request().Context(), c.Param("id"))
		return found(c, a.Revision, a, err)
	})
	g.PATCH("/aggregates/:id", func(c echo.Context) error {
		var in types.AggregateUpdate
		rev, err := s.prepareUpdate(c, &in)
		if err != nil {
			return err
		}
		a, err := s.store.UpdateAggregate(c.Request().Context(), c.Param("id"), rev, in, checkAggregate)
		return found(c, a.Revision, a, err)
	})
	g.DELETE("/aggregates/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return s.store.DeleteAggregate(c.Request().Context(), id, rev)
	}))
}

func (s *Server) flavorRoutes(g *echo.Group) {
	g.POST("/flavors", func(c echo.Context) error {
		if err := allow(c, adminOnly...); err != nil {
			return err
		}
		var in types.FlavorCreate
		if err := s.decode(c, &in); err != nil {
			return err
		}
		if in.Kind == "" {
			in.Kind = types.KindVM
		}
		if err := checkFlavor(in); err != nil {
			return err
		}
		f, err := s.store.CreateFlavor(c.Request().Context(), in)
		return created(c, f.ID, f.Revision, f, err)
	})
	g.GET("/flavors", func(c echo.Context) error {
		if err := allow(c, catalogRead...); err != nil {
			return err
		}
		opts, err := listOptions(c, map[string]func(string) (string, error){"kind": nil})
		if err != nil {
			return err
		}
		l, err := s.store.ListFlavors(c.Request().Context(), opts)
		return listJSON(c, l, err)
	})
	g.GET("/flavors/:id", func(c echo.Context) error {
		if err := allow(c, catalogRead...); err != nil {
			return err
		}
		f, err := s.store.GetFlavor(c.Request().Context(), c.Param("id"))
		return found(c, f.Revision, f, err)
	})
	g.PATCH("/flavors/:id", func(c echo.Context) error {
		var in types.FlavorUpdate
		rev, err := s.prepareUpdate(c, &in)
		if err != nil {
			return err
		}
		if in.Name != nil {
			if err := checkName("name", *in.Name, maxNameLen); err != nil {
				return err
			}
		}
		if in.Description != nil {
			if err := checkDescription(*in.Description); err != nil {
				return err
			}
		}
		f, err := s.store.UpdateFlavor(c.Request().Context(), c.Param("id"), rev, in)
		return found(c, f.Revision, f, err)
	})
	g.DELETE("/flavors/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return s.store.DeleteFlavor(c.Request().Context(), id, rev)
	}))
}

func (s *Server) projectRoutes(g *echo.Group) {
	g.POST("/projects", func(c echo.Context) error {
		if err := allow(c, adminOnly...); err != nil {
			return err
		}
		var in types.ProjectCreate
		if err := s.decode(c, &in); err != nil {
			return err
		}
		if err := first(checkName("name", in.Name, maxNameLen), checkDescription(in.Description)); err != nil {
			return err
		}
		p, err := s.store.CreateProject(c.Request().Context(), in)
		return created(c, p.ID, p.Revision, p, err)
	})
	g.GET("/projects", func(c echo.Context) error {
		if err := allow(c, readers...); err != nil {
			return err
		}
		opts, err := listOptions(c, nil)
		if err != nil {
			return err
		}
		if scope := projectScope(c); scope != "" {
			opts.Filters["id"] = scope
		}
		l, err := s.store.ListProjects(c.Request().Context(), opts)
		return listJSON(c, l, err)
	})
	g.GET("/projects/:id", func(c echo.Context) error {
		if err := allow(c, readers...); err != nil {
			return err
		}
		p, err := s.store.GetProject(c.Request().Context(), c.Param("id"))
		if err == nil {
			if scope := projectScope(c); scope != "" && scope != p.ID {
				return notFound("project", c.Param("id"))
			}
		}
		return found(c, p.Revision, p, err)
	})
	g.PATCH("/projects/:id", func(c echo.Context) error {
		var in types.ProjectUpdate
		rev, err := s.prepareUpdate(c, &in)
		if err != nil {
			return err
		}
		if in.Name != nil {
			if err := checkName("name", *in.Name, maxNameLen); err != nil {
				return err
			}
		}
		if in.Description != nil {
			if err := checkDescription(*in.Description); err != nil {
				return err
			}
		}
		p, err := s.store.UpdateProject(c.Request().Context(), c.Param("id"), rev, in)
		return found(c, p.Revision, p, err)
	})
	g.DELETE("/projects/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return s.store.DeleteProject(c.Request().Context(), id, rev)
	}))
}

// decode reads a JSON body within the configured limit.
func (s *Server) decode(c echo.Context, v any) error {
	return decodeJSON(c.Request(), s.cfg.MaxBodyBytes, v)
}

// prepareUpdate checks that the caller is an admin, decodes the patch and
// reads If-Match.
func (s *Server) prepareUpdate(c echo.Context, v any) (int64, error) {
	if err := allow(c, adminOnly...); err != nil {
		return 0, err
	}
	rev, err := ifMatch(c)
	if err != nil {
		return 0, err
	}
	return rev, s.decode(c, v)
}

// deleteHandler is an admin-only DELETE that honours If-Match and answers
// 204.
func (s *Server) deleteHandler(del func(c echo.Context, id string, rev int64) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := allow(c, adminOnly...); err != nil {
			return err
		}
		rev, err := ifMatch(c)
		if err != nil {
			return err
		}
		if err := del(c, c.Param("id"), rev); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	}
}

// created answers 201 with a Location, or the error.
func created(c echo.Context, id string, revision int64, v any, err error) error {
	if err != nil {
		return err
	}
	setResource(c, id)
	c.Response().Header().Set("Location", c.Request().URL.Path+"/"+id)
	return object(c, http.StatusCreated, revision, v)
}

// found answers 200 with the object, or the error.
func found(c echo.Context, revision int64, v any, err error) error {
	if err != nil {
		return err
	}
	return object(c, http.StatusOK, revision, v)
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

func (s *Server) hostID(c echo.Context) func(string) (string, error) {
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
