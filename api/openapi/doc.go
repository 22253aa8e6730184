// Package openapi describes corrald's HTTP API as an OpenAPI 3 document.
//
// Routes holds one entry per route: method, path, summary, who may call
// it, its query parameters, request body and answer, as Go values of
// api/types. Document turns the table into the document corrald serves at
// GET /v1/openapi.json, with the schemas generated from those Go types, so
// a field added to a wire type appears in the document without a change
// here. api/server's tests compare the table with echo's route table (a
// route without an entry, or an entry without a route, fails them) and
// validate example requests against the document.
package openapi
