package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// SendConsole uploads new console output of the host's guests (agent).
func (c *Client) SendConsole(ctx context.Context, hostID string, up types.ConsoleUpload) error {
	_, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/hosts/" + url.PathEscape(hostID) + "/guests/console",
		Body: up}, nil)
	return err
}

// ConsoleTail returns the last tail whole lines of a server's console
// (0: the API's default).
func (c *Client) ConsoleTail(ctx context.Context, serverID string, tail int) (types.Console, error) {
	q := url.Values{}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	var out types.Console
	_, err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/v1/servers/" + url.PathEscape(serverID) + "/console", Query: q}, &out)
	return out, err
}

// ConsoleFollow waits up to wait for console lines after the cursor (a
// previous answer's Next) and returns them, possibly none.
func (c *Client) ConsoleFollow(ctx context.Context, serverID string, after int64, wait time.Duration) (types.Console, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}, "follow": {"true"}, "wait": {wait.String()}}
	var out types.Console
	_, err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/v1/servers/" + url.PathEscape(serverID) + "/console", Query: q}, &out)
	return out, err
}

// Rightsizing returns the right-sizing report; q holds its optional
// parameters (window, cpu_p95_below, mem_below, min_hours, headroom).
func (c *Client) Rightsizing(ctx context.Context, q url.Values) (types.RightsizingReport, error) {
	var out types.RightsizingReport
	_, err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/v1/reports/rightsizing", Query: q}, &out)
	return out, err
}

// SendConsoleInput types data into a VM's serial console (queued for its
// host's agent).
func (c *Client) SendConsoleInput(ctx context.Context, serverID, data string) error {
	_, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/servers/" + url.PathEscape(serverID) + "/console/input",
		Body: types.ConsoleInput{Data: data}}, nil)
	return err
}

// TakeConsoleInput takes the console input waiting for the host's guests,
// waiting up to wait for some (agent).
func (c *Client) TakeConsoleInput(ctx context.Context, hostID string, wait time.Duration) (types.ConsoleInputs, error) {
	var out types.ConsoleInputs
	_, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/hosts/" + url.PathEscape(hostID) + "/guests/console/input",
		Query: url.Values{"wait": {wait.String()}}, Body: struct{}{}}, &out)
	return out, err
}
