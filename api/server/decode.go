package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/corral-cloud/corral/api/types"
)

// DefaultMaxBodyBytes bounds JSON request bodies.
const DefaultMaxBodyBytes = 1 << 20

// decodeJSON strictly decodes one JSON object from r into v: unknown
// fields, wrong types, trailing data and bodies over limit bytes are
// errors of type *types.Error with their codes.
func decodeJSON(r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return types.Errorf(types.CodeUnsupportedMediaType, "content type %q is not application/json", ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return types.Errorf(types.CodeBodyTooLarge, "request body is over %d bytes", limit).WithDetail("limit", limit)
		}
		return types.Errorf(types.CodeInvalidJSON, "read body: %v", err)
	}
	return decodeBytes(body, v)
}

// decodeBytes is the pure part of decodeJSON, and the fuzz target.
func decodeBytes(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return types.Errorf(types.CodeInvalidJSON, "request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return types.Errorf(types.CodeInvalidJSON, "request body has data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return types.Errorf(types.CodeInvalidJSON, "request body has data after the JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return types.Errorf(types.CodeInvalidJSON, "malformed JSON at byte %d: %v", se.Offset, se).WithDetail("offset", se.Offset)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return types.Errorf(types.CodeInvalidJSON, "the body must be a JSON object, not %s", te.Value)
		}
		return types.Errorf(types.CodeInvalidJSON, "%s: expected %s, got %s", field, typeName(te.Type.Kind().String()), te.Value).
			WithDetail("field", field)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return types.Errorf(types.CodeInvalidJSON, "malformed JSON: unexpected end of body")
	}
	// encoding/json reports an unknown field only as text; its form has been
	// fixed since Go 1.10 and is covered by TestDecodeErrors.
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return types.Errorf(types.CodeUnknownField, "unknown field %q", f).WithDetail("field", f)
	}
	return types.Errorf(types.CodeInvalidJSON, "malformed JSON: %v", err)
}

func typeName(kind string) string {
	switch kind {
	case "int", "int64", "int32", "uint", "uint64":
		return "an integer"
	case "float64", "float32":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "a list"
	case "struct", "map":
		return "an object"
	case "ptr":
		return "a value"
	}
	return fmt.Sprintf("a %s", kind)
}
