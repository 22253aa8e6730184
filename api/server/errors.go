package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// inUseCodes maps the kind of an object refused for deletion to its code.
var inUseCodes = map[string]string{
	"flavor":    types.CodeFlavorInUse,
	"image":     types.CodeImageInUse,
	"region":    types.CodeRegionInUse,
	"zone":      types.CodeZoneInUse,
	"aggregate": types.CodeAggregateInUse,
	"project":   types.CodeProjectInUse,
	"host":      types.CodeHostHasServers,
}

// apiError turns any error into the API's error type. Store sentinels and
// echo's own errors map to their codes; anything else is internal, and its
// text stays in the log.
func apiError(err error) (*types.Error, bool) {
	var ae *types.Error
	if errors.As(err, &ae) {
		return ae, false
	}
	var inUse *store.InUseError
	if errors.As(err, &inUse) {
		code := inUseCodes[inUse.Kind]
		if code == "" {
			code = types.CodeConflict
		}
		msg := fmt.Sprintf("%s %s is in use by %d %s", inUse.Kind, inUse.ID, inUse.Count, plural(inUse.Count, "object"))
		if inUse.Kind == "host" {
			msg = fmt.Sprintf("host %s still has %d %s; move or delete them first", inUse.ID, inUse.Count, plural(inUse.Count, "server"))
		}
		return types.Errorf(code, "%s", msg).WithDetail("used_by", inUse.Users).WithDetail("count", inUse.Count), false
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return types.Errorf(types.CodeNotFound, "no such endpoint"), false
		case http.StatusMethodNotAllowed:
			return types.Errorf(types.CodeMethodNotAllowed, "method not allowed on this endpoint"), false
		case http.StatusRequestEntityTooLarge:
			return types.Errorf(types.CodeBodyTooLarge, "request body too large"), false
		case http.StatusUnsupportedMediaType:
			return types.Errorf(types.CodeUnsupportedMediaType, "unsupported media type"), false
		case http.StatusUnauthorized:
			return types.Errorf(types.CodeUnauthenticated, "%v", he.Message), false
		}
		if he.Code < 500 {
			return types.Errorf(types.CodeInvalidArgument, "%v", he.Message), false
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		// The caller went away; nobody reads this answer.
		return types.Errorf(types.CodeCanceled, "request canceled by the client"), false
	case errors.Is(err, errTxFailed):
		// Nothing of the request was committed: a retry is safe.
		return types.Errorf(types.CodeUnavailable, "the store could not commit the request; nothing was changed, retry"), true
	case errors.Is(err, context.DeadlineExceeded):
		return types.Errorf(types.CodeUnavailable, "the store did not answer in time"), true
	case errors.Is(err, store.ErrNotFound):
		return types.Errorf(types.CodeNotFound, "%v", err), false
	case errors.Is(err, store.ErrExists):
		return types.Errorf(types.CodeAlreadyExists, "the name is already taken"), false
	case errors.Is(err, store.ErrAmbiguous):
		return types.Errorf(types.CodeInvalidArgument, "%v", err), false
	case errors.Is(err, store.ErrStale):
		return types.Errorf(types.CodePreconditionFailed, "%v", err), false
	case errors.Is(err, store.ErrReferenced):
		return types.Errorf(types.CodeConflict, "a referenced object changed while the request ran; retry"), false
	}
	return types.Errorf(types.CodeInternal, "internal error; see corrald's log for the request ID"), true
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// handleError is echo's HTTPErrorHandler: it writes every error as
// {"error":{...}} with the status its code maps to.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	ae, internal := apiError(err)
	if internal {
		s.log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path,
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "error", err)
	}
	status := types.Status(ae.Code)
	if status == http.StatusServiceUnavailable && c.Response().Header().Get("Retry-After") == "" {
		c.Response().Header().Set("Retry-After", "1")
	}
	if c.Request().Method == http.MethodHead {
		err = c.NoContent(status)
	} else {
		err = c.JSON(status, types.ErrorBody{Error: ae})
	}
	if err != nil {
		s.log.Error("write error response", "error", err)
	}
}

// notFound is the 404 for a missing object, also used to hide objects a
// caller may not see: the same text as the store's ErrNotFound.
func notFound(kind, id string) error {
	return types.Errorf(types.CodeNotFound, "%v", store.NotFound(kind, id))
}

// refError turns a failed lookup of a referenced object into a 400 naming
// the field.
func refError(field string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return types.Errorf(types.CodeInvalidReference, "%s: %v", field, err).WithDetail("field", field)
	case errors.Is(err, store.ErrAmbiguous):
		return types.Errorf(types.CodeInvalidArgument, "%s: %v", field, err).WithDetail("field", field)
	}
	return err
}
