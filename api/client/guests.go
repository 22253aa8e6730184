package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// WatchGuests long-polls a host's desired guests: it answers at once when
// their version is not version, else when they change or wait runs out.
func (c *Client) WatchGuests(ctx context.Context, hostID, version string, wait time.Duration) (types.HostGuests, error) {
	var out types.HostGuests
	q := url.Values{"wait": {wait.String()}}
	if version != "" {
		q.Set("version", version)
	}
	_, err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/v1/hosts/" + url.PathEscape(hostID) + "/guests", Query: q}, &out)
	return out, err
}

// ReportGuests sends an agent's observations of its guests.
func (c *Client) ReportGuests(ctx context.Context, hostID string, statuses []types.GuestStatus) error {
	_, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/hosts/" + url.PathEscape(hostID) + "/guests/status",
		Body: types.GuestReport{Guests: statuses}}, nil)
	return err
}

// ServerAction asks for start, stop or reboot of a server.
func (c *Client) ServerAction(ctx context.Context, serverID, action string) (types.Server, error) {
	var out types.Server
	_, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/servers/" + url.PathEscape(serverID) + "/actions",
		Body: types.ServerAction{Action: action}}, &out)
	return out, err
}

// DownloadImage opens an image's data; the caller reads and closes the
// body. The answer's X-Checksum-Sha256 header carries the digest.
func (c *Client) DownloadImage(ctx context.Context, imageID string) (*http.Response, error) {
	return c.Stream(ctx, Request{Method: http.MethodGet, Path: "/v1/images/" + url.PathEscape(imageID) + "/file"})
}
