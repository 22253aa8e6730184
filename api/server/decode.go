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
	"unicode/utf8"

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
		return types.Errorf(types.CodeInvalidJSON, "request body is empty; send a JSON object").WithDetail("field", "body")
	}
	if err := checkJSONText(body); err != nil {
		return err
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

// maxJSONDepth bounds the nesting of a body; no request type comes near it.
const maxJSONDepth = 32

// jsonFrame is one open object or array while a body is walked.
type jsonFrame struct {
	object  bool
	key     string // the current key, in an object
	index   int    // the current index, in an array
	wantKey bool   // the next string token is a key
}

// checkJSONText walks the tokens of a body before it is decoded. The body
// must be an object (a null body would decode into nothing and act as an
// empty change), and no string in it, key or value, may hold a NUL byte or
// invalid UTF-8: encoding/json would silently turn invalid bytes into
// U+FFFD, and PostgreSQL refuses NUL. The error names the field by its
// path, as "qos.disk_iops" or "guests[2].server_id".
func checkJSONText(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var stack []jsonFrame
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return jsonError(err)
		}
		if len(stack) == 0 && tok != json.Delim('{') {
			switch tok.(type) {
			case nil:
				return types.Errorf(types.CodeInvalidJSON, "the body is null; send a JSON object").WithDetail("field", "body")
			case json.Delim:
				return types.Errorf(types.CodeInvalidJSON, "the body must be a JSON object, not an array").WithDetail("field", "body")
			}
			return types.Errorf(types.CodeInvalidJSON, "the body must be a JSON object, not %v", tok).WithDetail("field", "body")
		}
		var top *jsonFrame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if str, ok := tok.(string); ok {
			isKey := top.object && top.wantKey
			field := jsonPath(stack)
			if isKey {
				field = jsonPath(append(stack[:len(stack)-1:len(stack)-1], jsonFrame{object: true, key: str}))
			}
			if strings.IndexByte(str, 0) >= 0 {
				return types.InputError(printable(field), "holds a NUL byte")
			}
			if !utf8.Valid(body[start:dec.InputOffset()]) {
				return types.InputError(printable(field), "is not valid UTF-8")
			}
			if isKey {
				top.key, top.wantKey = str, false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) == maxJSONDepth {
				return types.Errorf(types.CodeInvalidJSON, "the body is nested over %d levels deep", maxJSONDepth)
			}
			stack = append(stack, jsonFrame{object: tok == json.Delim('{'), wantKey: true})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return nil // the decoder reports trailing data
			}
			top = &stack[len(stack)-1]
		}
		// A value has ended: the parent moves on.
		if top.object {
			top.wantKey = true
		} else {
			top.index++
		}
	}
}

// jsonPath names the current position, as "a.b[2].c".
func jsonPath(stack []jsonFrame) string {
	var b strings.Builder
	for i, f := range stack {
		if f.object {
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		} else {
			fmt.Fprintf(&b, "[%d]", f.index)
		}
	}
	if b.Len() == 0 {
		return "body"
	}
	return b.String()
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
