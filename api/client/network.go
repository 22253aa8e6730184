package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// HostNetwork returns the desired network state of a host. With a version
// and a wait, corrald answers when the state's version differs from it, or
// after wait with the same state.
func (c *Client) HostNetwork(ctx context.Context, hostID, version string, wait time.Duration) (types.HostNetwork, error) {
	q := url.Values{}
	if version != "" {
		q.Set("version", version)
	}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var out types.HostNetwork
	_, err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/v1/hosts/" + url.PathEscape(hostID) + "/network", Query: q}, &out)
	return out, err
}

// SetTunnelEndpoint reports the address a host's VXLAN tunnels use.
func (c *Client) SetTunnelEndpoint(ctx context.Context, hostID, ip string) error {
	_, err := c.Do(ctx, Request{Method: http.MethodPut, Path: "/v1/hosts/" + url.PathEscape(hostID) + "/network/endpoint",
		Body: types.TunnelEndpoint{IP: ip}}, nil)
	return err
}
