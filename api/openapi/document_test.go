package openapi

import (
	"context"
	"testing"
)

// TestDocumentValid: the document of Routes validates with kin-openapi's
// loader, every operation has a unique ID, and every path parameter of a
// route is declared.
func TestDocumentValid(t *testing.T) {
	raw, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewValidator(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, r := range Routes {
		id := operationID(r)
		if other, dup := ids[id]; dup {
			t.Errorf("%s %s and %s share the operation ID %s", r.Method, r.Path, other, id)
		}
		ids[id] = r.Method + " " + r.Path
		op := v.Doc().Paths.Find(OpenAPIPathOf(r.Path)).GetOperation(r.Method)
		for _, m := range pathParam.FindAllStringSubmatch(r.Path, -1) {
			if op.Parameters.GetByInAndName("path", m[1]) == nil {
				t.Errorf("%s %s: path parameter %s undeclared", r.Method, r.Path, m[1])
			}
		}
	}
	if got := OpenAPIPathOf("/v1/hosts/:id/unknown-guests/:server_id"); got != "/v1/hosts/{id}/unknown-guests/{server_id}" {
		t.Errorf("OpenAPIPathOf = %q", got)
	}
}
