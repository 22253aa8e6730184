package server

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// principal is who is calling: the token's identity and scope.
type principal struct {
	TokenID   string
	Role      string
	ProjectID string // members and project readers
	HostID    string // agents
}

const principalKey = "corral.principal"

func principalOf(c echo.Context) principal {
	p, _ := c.Get(principalKey).(principal)
	return p
}

// authenticate resolves the bearer token. Requests to /healthz, /readyz and
// /metrics pass without one.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !strings.HasPrefix(c.Request().URL.Path, "/v1/") {
			return next(c)
		}
		h := c.Request().Header.Get("Authorization")
		bearer, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || bearer == "" {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="corral"`)
			return types.Errorf(types.CodeUnauthenticated, "no token: send Authorization: Bearer <token>")
		}
		row, err := s.store.Authenticate(c.Request().Context(), bearer)
		if errors.Is(err, store.ErrNotFound) {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="corral", error="invalid_token"`)
			return types.Errorf(types.CodeUnauthenticated, "unknown or revoked token")
		}
		if err != nil {
			return err
		}
		if row.Expired(s.now()) {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="corral", error="invalid_token"`)
			return types.Errorf(types.CodeTokenExpired, "token %s expired at %s", row.ID,
				row.API().ExpiresAt.Format("2006-01-02T15:04:05Z")).WithDetail("token_id", row.ID)
		}
		c.Set(principalKey, principal{TokenID: row.ID, Role: row.Role, ProjectID: row.ProjectID, HostID: row.HostID})
		// Every store call of the request is confined to the caller's
		// project: another project's object is "not found", like one
		// that does not exist, on every route (store.WithProject).
		if scope := projectScope(c); scope != "" {
			c.SetRequest(c.Request().WithContext(store.WithProject(c.Request().Context(), scope)))
		}
		return next(c)
	}
}

// allow fails with 403 unless the caller has one of roles.
func allow(c echo.Context, roles ...string) error {
	p := principalOf(c)
	if slices.Contains(roles, p.Role) {
		return nil
	}
	return types.Errorf(types.CodeForbidden, "role %s may not %s %s", p.Role, strings.ToLower(c.Request().Method), c.Path()).
		WithDetail("role", p.Role).WithDetail("allowed_roles", sorted(roles...))
}

// Role sets used by handlers.
var (
	readers     = []string{types.RoleAdmin, types.RoleMember, types.RoleReader}
	catalogRead = []string{types.RoleAdmin, types.RoleMember, types.RoleReader, types.RoleAgent}
	adminOnly   = []string{types.RoleAdmin}
	serverWrite = []string{types.RoleAdmin, types.RoleMember}
)

// allowInfra admits admins and readers of the whole cloud: hosts and the
// audit log are not a project's to see.
func allowInfra(c echo.Context, also ...string) error {
	p := principalOf(c)
	if p.Role == types.RoleReader && p.ProjectID != "" {
		return types.Errorf(types.CodeForbidden, "a reader bound to project %s may not read %s", p.ProjectID, c.Path())
	}
	return allow(c, append([]string{types.RoleAdmin, types.RoleReader}, also...)...)
}

// projectScope returns the project the caller is confined to, or "" if
// the caller sees all projects. authenticate confines the request's store
// calls to it.
func projectScope(c echo.Context) string {
	p := principalOf(c)
	if p.Role == types.RoleAdmin {
		return ""
	}
	return p.ProjectID
}

// isMutation reports whether a request changes state.
func isMutation(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}
