package types

import "fmt"

// Error codes are machine-readable, snake_case and stable. Each maps to one
// HTTP status (see Status).
const (
	CodeInvalidJSON           = "invalid_json"            // 400: the body is not JSON or a value has the wrong type
	CodeUnknownField          = "unknown_field"           // 400: the body names a field the API does not know
	CodeInvalidArgument       = "invalid_argument"        // 400: a field's value is not allowed; details.field names it
	CodeInvalidReference      = "invalid_reference"       // 400: a referenced object (flavor, image…) does not exist
	CodeInvalidInput          = "invalid_input"           // 400: a path parameter, query value, header or JSON string holds a NUL byte or invalid UTF-8, or the query string is malformed; details.field names it
	CodeBodyTooLarge          = "body_too_large"          // 413: the body is over the size limit
	CodeUnsupportedMediaType  = "unsupported_media_type"  // 415
	CodeUnauthenticated       = "unauthenticated"         // 401: no token or an unknown token
	CodeTokenExpired          = "token_expired"           // 401
	CodeForbidden             = "forbidden"               // 403: the token's role may not do this
	CodeNotFound              = "not_found"               // 404
	CodeMethodNotAllowed      = "method_not_allowed"      // 405
	CodeAlreadyExists         = "already_exists"          // 409: a unique name is taken
	CodeConflict              = "conflict"                // 409: the object is not in a state that allows this
	CodeFlavorInUse           = "flavor_in_use"           // 409
	CodeImageInUse            = "image_in_use"            // 409
	CodeRegionInUse           = "region_in_use"           // 409
	CodeZoneInUse             = "zone_in_use"             // 409
	CodeAggregateInUse        = "aggregate_in_use"        // 409
	CodeProjectInUse          = "project_in_use"          // 409
	CodeHostHasServers        = "host_has_servers"        // 409
	CodeImageNotActive        = "image_not_active"        // 409: the image has no uploaded data yet
	CodeConsoleUnavailable    = "console_unavailable"     // 409: the server has no serial console through the API (bare metal); details.reason says why
	CodeIdempotencyInProgress = "idempotency_in_progress" // 409: a request with this key is still running
	CodeIdempotencyKeyReused  = "idempotency_key_reused"  // 422: the key was used for a different request
	CodePreconditionFailed    = "precondition_failed"     // 412: If-Match does not match the current revision
	CodeRateLimited           = "rate_limited"            // 429: over the caller's request rate; Retry-After says when to retry
	CodeCanceled              = "canceled"                // 499: the client closed the request
	CodeUnavailable           = "unavailable"             // 503: a dependency (store, libvirt, BMC) is unreachable
	CodeInternal              = "internal"                // 500: details are in corrald's log only
)

// Error is the one error shape of the API. It is sent as the value of the
// "error" key of ErrorBody.
type Error struct {
	// Code is one of the Code constants.
	Code string `json:"code"`
	// Message is a human-readable, lower-case explanation.
	Message string `json:"message"`
	// Details carries structured context, such as the offending field or
	// the objects that use a resource.
	Details map[string]any `json:"details,omitempty"`
}

// ErrorBody is the JSON document of every error response.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// Error implements the error interface.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithDetail returns e with key set to value in its details.
func (e *Error) WithDetail(key string, value any) *Error {
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	e.Details[key] = value
	return e
}

// FieldError returns an invalid_argument error naming field.
func FieldError(field, format string, args ...any) *Error {
	return Errorf(CodeInvalidArgument, "%s: "+format, append([]any{field}, args...)...).WithDetail("field", field)
}

// InputError returns an invalid_input error naming field: the request
// holds bytes the API never accepts (a NUL byte, invalid UTF-8, a malformed
// query string), refused before anything reaches the store.
func InputError(field, format string, args ...any) *Error {
	return Errorf(CodeInvalidInput, "%s: "+format, append([]any{field}, args...)...).WithDetail("field", field)
}

// Status returns the HTTP status that goes with code.
func Status(code string) int {
	switch code {
	case CodeInvalidJSON, CodeUnknownField, CodeInvalidArgument, CodeInvalidReference, CodeInvalidInput:
		return 400
	case CodeUnauthenticated, CodeTokenExpired:
		return 401
	case CodeForbidden:
		return 403
	case CodeNotFound:
		return 404
	case CodeMethodNotAllowed:
		return 405
	case CodeAlreadyExists, CodeConflict, CodeNoValidHost, CodeFlavorInUse, CodeImageInUse, CodeRegionInUse,
		CodeZoneInUse, CodeAggregateInUse, CodeProjectInUse, CodeHostHasServers,
		CodeImageNotActive, CodeIdempotencyInProgress, CodeConsoleUnavailable,
		CodeNetworkInUse, CodeSubnetInUse, CodeSecurityGroupInUse, CodeIPPoolExhausted, CodeIPAddressInUse, CodeSegmentInUse,
		CodeMACAddressInUse:
		return 409
	case CodePreconditionFailed:
		return 412
	case CodeBodyTooLarge:
		return 413
	case CodeUnsupportedMediaType:
		return 415
	case CodeIdempotencyKeyReused:
		return 422
	case CodeRateLimited:
		return 429
	case CodeCanceled:
		return 499
	case CodeUnavailable:
		return 503
	default:
		return 500
	}
}

// Ref names an object, for example one that keeps another from being deleted.
type Ref struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// CodeNoValidHost is the 409 for a request placement cannot satisfy; its
// details.explanation says why, counted per reason.
const CodeNoValidHost = "no_valid_host"
