package server

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// This file validates a request once, at the edge, before anything of it
// reaches the store or the audit log: PostgreSQL refuses NUL bytes and
// invalid UTF-8 in text (the request would fail with a 500, or its audit
// entry would be lost while the change itself committed), and SQLite would
// store them. JSON bodies are checked by the shared decoder (decode.go).

// MaxHeaderBytes bounds the request line and headers that corrald's HTTP
// server reads; a larger request is answered 431 by net/http.
const MaxHeaderBytes = 64 << 10

// maxRequestIDLen bounds an X-Request-Id taken from the client.
const maxRequestIDLen = 128

// checkedHeaders are the request headers whose values reach the store or
// the audit log. X-Request-Id is not among them: a bad one is replaced,
// never refused (see requestID).
var checkedHeaders = []string{echo.HeaderAuthorization, "Idempotency-Key", "If-Match", "If-None-Match", types.HeaderAgentToken}

// requestID gives every request an X-Request-Id: the client's, if it is
// 1 to 128 printable ASCII characters, else a new random one. The ID is
// written to the audit log and to corrald's log, so it must never be
// able to make either fail.
func (s *Server) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		rid := c.Request().Header.Get(echo.HeaderXRequestID)
		if !validRequestID(rid) {
			rid = newRequestID()
			c.Request().Header.Set(echo.HeaderXRequestID, rid)
		}
		c.Response().Header().Set(echo.HeaderXRequestID, rid)
		return next(c)
	}
}

func validRequestID(rid string) bool {
	if rid == "" || len(rid) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(rid); i++ {
		if rid[i] < 0x20 || rid[i] > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b[:])
}

// checkInput refuses, with 400 invalid_input naming the field, a request
// whose path parameters, path, query string or stored headers hold a NUL
// byte or invalid UTF-8, and a query string that is malformed or uses ';'
// (Go's query parser drops such pairs silently, so "?state=down;x" would
// list everything instead of failing).
func (s *Server) checkInput(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := checkRequest(c); err != nil {
			return err
		}
		return next(c)
	}
}

func checkRequest(c echo.Context) error {
	r := c.Request()
	names, values := c.ParamNames(), c.ParamValues()
	for i, name := range names {
		if i < len(values) {
			if err := checkText(name, values[i]); err != nil {
				return err
			}
		}
	}
	// Unmatched routes have no parameters, but their path is still logged
	// and audited.
	if err := checkText("path", r.URL.Path); err != nil {
		return err
	}
	if err := checkQuery(r.URL.RawQuery); err != nil {
		return err
	}
	for _, h := range checkedHeaders {
		for _, v := range r.Header.Values(h) {
			if err := checkText(h, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkQuery parses the raw query string strictly.
func checkQuery(raw string) error {
	if raw == "" {
		return nil
	}
	if strings.Contains(raw, ";") {
		return types.InputError("query", "';' is not a separator: send parameters as a=1&b=2, and escape a ';' in a value as %%3B")
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return types.InputError("query", "malformed query string: %v", err)
	}
	for k, vs := range q {
		if err := checkText("query", k); err != nil {
			return err
		}
		for _, v := range vs {
			if err := checkText(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkText refuses a NUL byte and invalid UTF-8 in a value of field.
func checkText(field, v string) error {
	switch {
	case strings.IndexByte(v, 0) >= 0:
		return types.InputError(printable(field), "holds a NUL byte")
	case !utf8.ValidString(v):
		return types.InputError(printable(field), "is not valid UTF-8")
	}
	return nil
}

// printable makes a field name safe to echo back in an error.
func printable(field string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(field, "\uFFFD"), "\x00", "\uFFFD")
}
