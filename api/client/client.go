// Package client is the Go client of Corral's /v1 API, used by corralctl,
// corral-agent and the end-to-end tests.
//
// Each resource has typed calls: c.Servers().Create, Get, List, ListAll,
// Update, Delete and Wait; c.Nodes().ProvisionJSON, c.Images().UploadJSON
// and so on. Each resource's Collection makes the same calls in the API's
// own JSON, for callers that print answers as they come (corralctl). The
// generic Get, List, Create and Update, and the agent's calls on Client
// (RegisterHost, Heartbeat, WatchGuests …), remain.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// Client calls one corrald endpoint with one token. It is safe for
// concurrent use.
type Client struct {
	endpoint string
	token    string
	http     *http.Client
	// UserAgent is sent with every request.
	UserAgent string
}

// New returns a client for endpoint (e.g. "http://127.0.0.1:8440") that
// authenticates with token. A nil httpClient means one that waits at most
// 60 s for an answer's headers but never cuts off a long body (an image
// download); bound whole calls with the context.
func New(endpoint, token string, httpClient *http.Client) *Client {
	if httpClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 60 * time.Second
		tr.MaxIdleConnsPerHost = 16
		httpClient = &http.Client{Transport: tr}
	}
	return &Client{endpoint: strings.TrimRight(endpoint, "/"), token: token, http: httpClient, UserAgent: "corral-client"}
}

// WithToken returns a copy of c that uses another token.
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// Error is an error answer of the API: the HTTP status and the body.
type Error struct {
	Status int
	Body   *types.Error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d): %s", e.Body.Code, e.Status, e.Body.Message)
}

// Unwrap returns the API error body, so that errors.As finds *types.Error.
func (e *Error) Unwrap() error { return e.Body }

// Code returns the API error code of err, or "" if err is not an API error.
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Body.Code
	}
	return ""
}

// Request is one call. Body, when not nil, is sent as JSON unless it is an
// io.Reader, which is streamed as is.
type Request struct {
	Method string
	Path   string // below the endpoint, e.g. "/v1/servers"
	Query  url.Values
	Body   any
	Header http.Header
}

// Do sends a request and decodes a JSON answer into out (when not nil).
// Errors from the API come back as *Error.
func (c *Client) Do(ctx context.Context, r Request, out any) (http.Header, error) {
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.Header, fmt.Errorf("%s %s: decode answer: %w", r.Method, r.Path, err)
		}
	}
	return resp.Header, nil
}

// Stream sends a request and returns the answer body for the caller to
// read and close (image downloads).
func (c *Client) Stream(ctx context.Context, r Request) (*http.Response, error) {
	return c.send(ctx, r)
}

func (c *Client) send(ctx context.Context, r Request) (*http.Response, error) {
	u := c.endpoint + r.Path
	if len(r.Query) > 0 {
		u += "?" + r.Query.Encode()
	}
	var body io.Reader
	contentType := ""
	switch b := r.Body.(type) {
	case nil:
	case io.Reader:
		body, contentType = b, "application/octet-stream"
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode body: %w", r.Method, r.Path, err)
		}
		body, contentType = bytes.NewReader(buf), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, u, body)
	if err != nil {
		return nil, err
	}
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	if contentType != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", c.UserAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.Method, r.Path, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		var eb types.ErrorBody
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(data, &eb) != nil || eb.Error == nil {
			eb.Error = &types.Error{Code: "http_" + fmt.Sprint(resp.StatusCode), Message: strings.TrimSpace(string(data))}
		}
		return nil, &Error{Status: resp.StatusCode, Body: eb.Error}
	}
	return resp, nil
}

// Get fetches one object.
func Get[T any](ctx context.Context, c *Client, path string) (T, error) {
	var out T
	_, err := c.Do(ctx, Request{Method: http.MethodGet, Path: path}, &out)
	return out, err
}

// List fetches one page.
func List[T any](ctx context.Context, c *Client, path string, q url.Values) (types.List[T], error) {
	var out types.List[T]
	_, err := c.Do(ctx, Request{Method: http.MethodGet, Path: path, Query: q}, &out)
	return out, err
}

// ListAll follows cursors and returns every object.
func ListAll[T any](ctx context.Context, c *Client, path string, q url.Values) ([]T, error) {
	q2 := url.Values{}
	for k, v := range q {
		q2[k] = v
	}
	var all []T
	for {
		page, err := List[T](ctx, c, path, q2)
		if err != nil {
			return all, err
		}
		all = append(all, page.Items...)
		if page.NextCursor == "" {
			return all, nil
		}
		q2.Set("cursor", page.NextCursor)
	}
}

// Create posts in and decodes the created object. A non-empty
// idempotencyKey makes retries safe.
func Create[T any](ctx context.Context, c *Client, path string, in any, idempotencyKey string) (T, error) {
	var out T
	h := http.Header{}
	if idempotencyKey != "" {
		h.Set("Idempotency-Key", idempotencyKey)
	}
	_, err := c.Do(ctx, Request{Method: http.MethodPost, Path: path, Body: in, Header: h}, &out)
	return out, err
}

// Update patches an object.
func Update[T any](ctx context.Context, c *Client, path string, in any) (T, error) {
	var out T
	_, err := c.Do(ctx, Request{Method: http.MethodPatch, Path: path, Body: in}, &out)
	return out, err
}

// Delete deletes an object.
func (c *Client) Delete(ctx context.Context, path string) error {
	_, err := c.Do(ctx, Request{Method: http.MethodDelete, Path: path}, nil)
	return err
}

// RegisterHost registers the calling agent's host and returns its agent
// token.
//
// agentToken, when not empty, is the host's current agent token: it proves
// that the caller is the host's own agent, which a registrar needs in order
// to re-register a host that is up and heartbeating.
func (c *Client) RegisterHost(ctx context.Context, in types.HostRegister, agentToken string) (types.HostRegistration, error) {
	var out types.HostRegistration
	h := http.Header{}
	if agentToken != "" {
		h.Set(types.HeaderAgentToken, agentToken)
	}
	_, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/hosts/register", Body: in, Header: h}, &out)
	return out, err
}

// Heartbeat sends a host's measured usage.
func (c *Client) Heartbeat(ctx context.Context, hostID string, u types.Usage) error {
	_, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/hosts/" + url.PathEscape(hostID) + "/heartbeat",
		Body: types.Heartbeat{Usage: u}}, nil)
	return err
}

// UploadImage streams r as the data of an image.
func (c *Client) UploadImage(ctx context.Context, imageID string, r io.Reader) (types.Image, error) {
	var out types.Image
	_, err := c.Do(ctx, Request{Method: http.MethodPut, Path: "/v1/images/" + url.PathEscape(imageID) + "/file", Body: r}, &out)
	return out, err
}
