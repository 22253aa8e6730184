package server

import (
	"net/http"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// Token lifetimes.
const (
	defaultTokenTTL = 30 * 24 * time.Hour
	maxTokenTTL     = 5 * 365 * 24 * time.Hour
)

func (s *Server) tokenRoutes(g *echo.Group) {
	g.POST("/tokens", s.createToken)
	g.GET("/tokens", func(c echo.Context) error {
		if err := allow(c, adminOnly...); err != nil {
			return err
		}
		opts, err := listOptions(c, map[string]func(string) (string, error){"role": nil, "project": s.projectID(c), "host": s.hostID(c)})
		if err != nil {
			return err
		}
		l, err := s.store.ListTokens(c.Request().Context(), opts)
		return listJSON(c, l, err)
	})
	g.GET("/tokens/:id", func(c echo.Context) error {
		if err := allow(c, adminOnly...); err != nil {
			return err
		}
		t, err := s.store.GetToken(c.Request().Context(), c.Param("id"))
		return found(c, 0, t, err)
	})
	g.DELETE("/tokens/:id", func(c echo.Context) error {
		if err := allow(c, adminOnly...); err != nil {
			return err
		}
		if err := s.store.DeleteToken(c.Request().Context(), c.Param("id")); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	})
}

// createToken issues a token. Agent tokens come only from host
// registration.
func (s *Server) createToken(c echo.Context) error {
	if err := allow(c, adminOnly...); err != nil {
		return err
	}
	var in types.TokenCreate
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if err := first(checkName("name", in.Name, maxNameLen),
		checkOneOf("role", in.Role, types.RoleAdmin, types.RoleMember, types.RoleReader, types.RoleRegistrar)); err != nil {
		return err
	}
	ttl := defaultTokenTTL
	if in.ExpiresInSeconds != 0 {
		if err := checkRange("expires_in_seconds", in.ExpiresInSeconds, 60, int64(maxTokenTTL/time.Second)); err != nil {
			return err
		}
		ttl = time.Duration(in.ExpiresInSeconds) * time.Second
	}
	tok := types.Token{Name: in.Name, Role: in.Role}
	switch {
	case in.Project != "" && (in.Role == types.RoleMember || in.Role == types.RoleReader):
		p, err := s.store.GetProject(c.Request().Context(), in.Project)
		if err != nil {
			return refError("project", err)
		}
		tok.ProjectID = p.ID
	case in.Project != "":
		return types.FieldError("project", "only member and reader tokens belong to a project")
	case in.Role == types.RoleMember:
		return types.FieldError("project", "is required for a member token")
	}
	exp := s.now().Add(ttl)
	t, secret, err := s.store.CreateToken(c.Request().Context(), tok, &exp)
	if err != nil {
		return err
	}
	setResource(c, t.ID)
	return c.JSON(http.StatusCreated, types.TokenCreated{Token: t, Secret: secret})
}

func (s *Server) listAudit(c echo.Context) error {
	if err := allowInfra(c); err != nil {
		return err
	}
	opts, err := listOptions(c, map[string]func(string) (string, error){"token": nil, "resource": nil, "method": nil})
	if err != nil {
		return err
	}
	l, err := s.store.ListAudit(c.Request().Context(), opts)
	return listJSON(c, l, err)
}
