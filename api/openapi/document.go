package openapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/corral-cloud/corral/api/types"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"
)

// Version is the document's info.version: the API's, not a build's.
const Version = "v1"

// OpenAPIPath is where corrald serves the document.
const OpenAPIPath = "/v1/openapi.json"

var pathParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// OpenAPIPathOf turns an echo path ("/v1/servers/:id") into an OpenAPI
// path template ("/v1/servers/{id}").
func OpenAPIPathOf(echoPath string) string {
	return pathParam.ReplaceAllString(echoPath, "{$1}")
}

// Document builds the OpenAPI 3 document of routes. It fails only if a
// Go type cannot be described, which a test catches.
func Document(routes []Route) (*openapi3.T, error) {
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info: &openapi3.Info{
			Title:   "Corral API",
			Version: Version,
			Description: "corrald's REST API. Every /v1 route needs Authorization: Bearer <token>; " +
				"errors are {\"error\":{\"code\",\"message\",\"details\"}}. See docs/api.md.",
		},
		Paths: openapi3.NewPaths(),
		Components: &openapi3.Components{
			SecuritySchemes: openapi3.SecuritySchemes{
				"bearer": &openapi3.SecuritySchemeRef{Value: openapi3.NewJWTSecurityScheme().WithBearerFormat("corral_tok")},
			},
			Schemas: openapi3.Schemas{},
		},
	}
	errSchema, err := schemaOf(types.ErrorBody{})
	if err != nil {
		return nil, err
	}
	doc.Components.Schemas["Error"] = errSchema
	errRef := &openapi3.SchemaRef{Ref: "#/components/schemas/Error"}
	for _, r := range routes {
		op := &openapi3.Operation{
			OperationID: operationID(r),
			Summary:     r.Summary,
			Responses:   openapi3.NewResponses(),
		}
		if len(r.Roles) > 0 {
			op.Security = &openapi3.SecurityRequirements{{"bearer": []string{}}}
			op.Description = "Roles: " + strings.Join(r.Roles, ", ") + "."
		} else {
			op.Security = &openapi3.SecurityRequirements{}
			op.Description = "No token needed."
		}
		for _, m := range pathParam.FindAllStringSubmatch(r.Path, -1) {
			op.AddParameter(openapi3.NewPathParameter(m[1]).WithSchema(openapi3.NewStringSchema()))
		}
		for _, q := range r.Query {
			op.AddParameter(openapi3.NewQueryParameter(q).WithSchema(openapi3.NewStringSchema()))
		}
		switch r.Method {
		case http.MethodPatch, http.MethodDelete:
			op.AddParameter(&openapi3.Parameter{In: openapi3.ParameterInHeader, Name: "If-Match",
				Description: "act only at this revision, e.g. \"3\"", Schema: openapi3.NewStringSchema().NewRef()})
		case http.MethodPost:
			op.AddParameter(&openapi3.Parameter{In: openapi3.ParameterInHeader, Name: "Idempotency-Key",
				Description: "a repeat with the same key answers the first result", Schema: openapi3.NewStringSchema().NewRef()})
		}
		if r.Body != nil {
			body, err := content(r.Body)
			if err != nil {
				return nil, fmt.Errorf("%s %s: body: %w", r.Method, r.Path, err)
			}
			op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithRequired(true).WithContent(body)}
		}
		status := r.Status
		if status == 0 {
			status = http.StatusOK
		}
		resp := openapi3.NewResponse().WithDescription(http.StatusText(status))
		if r.Out != nil {
			out, err := content(r.Out)
			if err != nil {
				return nil, fmt.Errorf("%s %s: answer: %w", r.Method, r.Path, err)
			}
			resp.WithContent(out)
		}
		op.AddResponse(status, resp)
		for _, s := range r.Also {
			op.AddResponse(s, openapi3.NewResponse().WithDescription(http.StatusText(s)))
		}
		op.Responses.Set("default", &openapi3.ResponseRef{Value: openapi3.NewResponse().
			WithDescription("an error").WithJSONSchemaRef(errRef)})
		doc.AddOperation(OpenAPIPathOf(r.Path), r.Method, op)
	}
	return doc, nil
}

// operationID is a stable name for a route: "GET /v1/servers/:id" gives
// "get_servers_id".
func operationID(r Route) string {
	p := strings.TrimPrefix(r.Path, "/v1")
	p = strings.NewReplacer(":", "", "/", "_", "-", "_", ".", "_").Replace(p)
	return strings.ToLower(r.Method) + strings.TrimRight(p, "_")
}

// content describes a body of v's type.
func content(v any) (openapi3.Content, error) {
	switch v.(type) {
	case Binary:
		return openapi3.NewContentWithSchema(openapi3.NewStringSchema().WithFormat("binary"), []string{"application/octet-stream"}), nil
	case string:
		return openapi3.NewContentWithSchema(openapi3.NewStringSchema(), []string{"text/plain"}), nil
	}
	s, err := schemaOf(v)
	if err != nil {
		return nil, err
	}
	return openapi3.NewContentWithJSONSchemaRef(s), nil
}

// schemaOf generates the schema of v's type from its json tags. Objects
// take no other fields: corrald refuses unknown fields in every body.
func schemaOf(v any) (*openapi3.SchemaRef, error) {
	closed := func(_ string, t reflect.Type, _ reflect.StructTag, s *openapi3.Schema) error {
		if t.Kind() == reflect.Struct && s.Properties != nil {
			no := false
			s.AdditionalProperties = openapi3.AdditionalProperties{Has: &no}
		}
		return nil
	}
	return openapi3gen.NewSchemaRefForValue(v, nil, openapi3gen.SchemaCustomizer(closed))
}

var (
	once    sync.Once
	encoded []byte
	encErr  error
)

// JSON returns the document of Routes, encoded once.
func JSON() ([]byte, error) {
	once.Do(func() {
		doc, err := Document(Routes)
		if err != nil {
			encErr = err
			return
		}
		encoded, encErr = json.Marshal(doc)
	})
	return encoded, encErr
}

// Statuses lists the success statuses of r, sorted.
func (r Route) Statuses() []string {
	s := r.Status
	if s == 0 {
		s = http.StatusOK
	}
	out := []string{strconv.Itoa(s)}
	for _, a := range r.Also {
		out = append(out, strconv.Itoa(a))
	}
	slices.Sort(out)
	return out
}
