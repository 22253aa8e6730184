package server

import (
	"context"
	"net/http"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// This file holds the generic handlers that the catalogue resources are
// made of: each resource supplies its roles, validation and store calls.

// resource is a wire type that embeds types.Meta.
type resource interface{ GetMeta() types.Meta }

// filters are a list's allowed query filters, each with an optional
// resolver from a name to an ID; they need the request to resolve.
type filters func(echo.Context) map[string]func(string) (string, error)

// createHandler decodes an In, lets prepare default and validate it (and
// resolve references), and stores it: 201 with Location and ETag.
func createHandler[In any, T resource](s *Server, roles []string, prepare func(echo.Context, *In) error,
	create func(context.Context, In) (T, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := allow(c, roles...); err != nil {
			return err
		}
		var in In
		if err := s.decode(c, &in); err != nil {
			return err
		}
		if err := prepare(c, &in); err != nil {
			return err
		}
		out, err := create(c.Request().Context(), in)
		if err != nil {
			return err
		}
		m := out.GetMeta()
		return created(c, m.ID, m.Revision, out, nil)
	}
}

// showHandler answers GET …/:id (an ID or a name) with the object and its
// ETag.
func showHandler[T resource](roles []string, get func(context.Context, string) (T, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := allow(c, roles...); err != nil {
			return err
		}
		out, err := get(c.Request().Context(), c.Param("id"))
		return found(c, out.GetMeta().Revision, out, err)
	}
}

// listHandler answers a paged, filtered list.
func listHandler[T any](roles []string, allowed filters, list func(context.Context, store.ListOptions) (types.List[T], error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := allow(c, roles...); err != nil {
			return err
		}
		var f map[string]func(string) (string, error)
		if allowed != nil {
			f = allowed(c)
		}
		opts, err := listOptions(c, f)
		if err != nil {
			return err
		}
		l, err := list(c.Request().Context(), opts)
		return listJSON(c, l, err)
	}
}

// patchHandler is an admin-only PATCH: it validates the patch and applies
// it, honouring If-Match.
func patchHandler[In any, T resource](s *Server, check func(*In) error,
	update func(context.Context, string, int64, In) (T, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		var in In
		rev, err := s.prepareUpdate(c, &in)
		if err != nil {
			return err
		}
		if err := check(&in); err != nil {
			return err
		}
		out, err := update(c.Request().Context(), c.Param("id"), rev, in)
		return found(c, out.GetMeta().Revision, out, err)
	}
}

// checkNameDesc validates the name and description of a patch, where set.
func checkNameDesc(name, description *string) error {
	if name != nil {
		if err := checkName("name", *name, maxNameLen); err != nil {
			return err
		}
	}
	if description != nil {
		return checkDescription(*description)
	}
	return nil
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

// visible loads the object named in the path (:id) for a caller that may
// read objects of its kind. It is how handlers load a project-owned object:
// the store confines the lookup to the caller's project (authenticate sets
// store.WithProject), so another project's object is a 404 with the same
// text as one that does not exist, and a name resolves among the caller's
// own objects.
func visible[T any](c echo.Context, get func(context.Context, string) (T, error)) (T, error) {
	if err := allow(c, readers...); err != nil {
		var zero T
		return zero, err
	}
	return get(c.Request().Context(), c.Param("id"))
}

// writableVisible is the preamble of a write to a project-scoped object:
// the caller's role may write (admin or member), the object in the path is
// loaded with visible (another project's is a 404), and If-Match is read.
func writableVisible[T any](c echo.Context, visible func(echo.Context) (T, error)) (T, int64, error) {
	var zero T
	if err := allow(c, serverWrite...); err != nil {
		return zero, 0, err
	}
	v, err := visible(c)
	if err != nil {
		return zero, 0, err
	}
	rev, err := ifMatch(c)
	if err != nil {
		return zero, 0, err
	}
	return v, rev, nil
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
