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

// SendGuestReport sends an agent's report: statuses and, when
// report.Unknown is set, the host's whole set of unknown guests.
func (c *Client) SendGuestReport(ctx context.Context, hostID string, report types.GuestReport) error {
	_, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/hosts/" + url.PathEscape(hostID) + "/guests/status",
		Body: report}, nil)
	return err
}

// UnknownGuests lists the managed guests a host runs that corrald has no
// server for (admin only).
func (c *Client) UnknownGuests(ctx context.Context, hostID string) ([]types.UnknownGuest, error) {
	var out types.List[types.UnknownGuest]
	_, err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/v1/hosts/" + url.PathEscape(hostID) + "/unknown-guests"}, &out)
	return out.Items, err
}

// AdoptGuest rebuilds the server record of an unknown guest and takes its
// claim on the host (admin only); in may name references that replace
// those of the guest's metadata.
func (c *Client) AdoptGuest(ctx context.Context, hostID, serverID string, in *types.GuestAdopt) (types.Server, error) {
	var out types.Server
	r := Request{Method: http.MethodPost, Path: "/v1/hosts/" + url.PathEscape(hostID) + "/unknown-guests/" +
		url.PathEscape(serverID) + "/adopt", Body: types.GuestAdopt{}}
	if in != nil {
		r.Body = in
	}
	_, err := c.Do(ctx, r, &out)
	return out, err
}

// DeleteUnknownGuest records the deletion of an unknown guest: the host's
// agent destroys it and confirms (admin only).
func (c *Client) DeleteUnknownGuest(ctx context.Context, hostID, serverID string) (types.GuestTombstone, error) {
	var out types.GuestTombstone
	_, err := c.Do(ctx, Request{Method: http.MethodDelete, Path: "/v1/hosts/" + url.PathEscape(hostID) + "/unknown-guests/" +
		url.PathEscape(serverID)}, &out)
	return out, err
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
