package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/corral-cloud/corral/api/types"
)

// Collection is one collection of the API ("/v1/servers") with the calls
// every collection takes, in the API's own JSON: corralctl prints answers
// as they come, so that fields added to the API show without a change.
// Resource adds typed calls on top.
type Collection struct {
	c    *Client
	path string
}

// Path returns the collection's path, e.g. "/v1/servers".
func (col Collection) Path() string { return col.path }

// ObjectPath returns the path of one object (an ID, or a name where the
// API resolves names).
func (col Collection) ObjectPath(id string) string { return col.path + "/" + url.PathEscape(id) }

// ifMatch returns the header of a call conditional on revision rev, or
// nil for 0 (unconditional).
func ifMatch(rev int64) http.Header {
	if rev == 0 {
		return nil
	}
	return http.Header{"If-Match": {strconv.Quote(strconv.FormatInt(rev, 10))}}
}

// GetJSON fetches one object.
func (col Collection) GetJSON(ctx context.Context, id string) (json.RawMessage, error) {
	return Get[json.RawMessage](ctx, col.c, col.ObjectPath(id))
}

// ListJSON fetches one page; q holds filters, limit and cursor.
func (col Collection) ListJSON(ctx context.Context, q url.Values) (types.List[json.RawMessage], error) {
	return List[json.RawMessage](ctx, col.c, col.path, q)
}

// CreateJSON posts in. A non-empty idempotencyKey makes a repeat answer
// the first result instead of creating a second object.
func (col Collection) CreateJSON(ctx context.Context, in any, idempotencyKey string) (json.RawMessage, error) {
	return Create[json.RawMessage](ctx, col.c, col.path, in, idempotencyKey)
}

// UpdateJSON patches object id with in, at revision rev unless it is 0.
// It is not idempotent: after a lost answer the revision has moved on.
func (col Collection) UpdateJSON(ctx context.Context, id string, in any, rev int64) (json.RawMessage, error) {
	var out json.RawMessage
	_, err := col.c.Do(ctx, Request{Method: http.MethodPatch, Path: col.ObjectPath(id), Body: in, Header: ifMatch(rev)}, &out)
	return out, err
}

// DeleteJSON deletes object id, at revision rev unless it is 0, and
// returns the answer's body: the object while its deletion goes on (202),
// nil when it is gone (204). A repeat after a lost answer reports
// not_found.
func (col Collection) DeleteJSON(ctx context.Context, id string, rev int64) (json.RawMessage, error) {
	var out json.RawMessage
	_, err := col.c.Do(ctx, Request{Method: http.MethodDelete, Path: col.ObjectPath(id), Header: ifMatch(rev)}, &out)
	return out, err
}

// Delete deletes object id, at revision rev unless it is 0.
func (col Collection) Delete(ctx context.Context, id string, rev int64) error {
	_, err := col.DeleteJSON(ctx, id, rev)
	return err
}

// PostJSON posts in to a sub-path of object id ("/actions") and returns
// the answer.
func (col Collection) PostJSON(ctx context.Context, id, sub string, in any) (json.RawMessage, error) {
	return col.send(ctx, http.MethodPost, id, sub, in)
}

func (col Collection) send(ctx context.Context, method, id, sub string, in any) (json.RawMessage, error) {
	var out json.RawMessage
	_, err := col.c.Do(ctx, Request{Method: method, Path: col.ObjectPath(id) + sub, Body: in}, &out)
	return out, err
}

// Resource is a collection of objects of type T, created from a C and
// patched with a U.
type Resource[T, C, U any] struct {
	Collection
}

func resource[T, C, U any](c *Client, path string) Resource[T, C, U] {
	return Resource[T, C, U]{Collection{c: c, path: path}}
}

// Get fetches one object by ID (or name, where the API resolves names).
func (r Resource[T, C, U]) Get(ctx context.Context, id string) (T, error) {
	return Get[T](ctx, r.c, r.ObjectPath(id))
}

// List fetches one page; q holds filters, limit and cursor.
func (r Resource[T, C, U]) List(ctx context.Context, q url.Values) (types.List[T], error) {
	return List[T](ctx, r.c, r.path, q)
}

// ListAll follows cursors and returns every object that q selects.
func (r Resource[T, C, U]) ListAll(ctx context.Context, q url.Values) ([]T, error) {
	return ListAll[T](ctx, r.c, r.path, q)
}

// Create creates an object; a non-empty idempotencyKey makes retries safe.
func (r Resource[T, C, U]) Create(ctx context.Context, in C, idempotencyKey string) (T, error) {
	return Create[T](ctx, r.c, r.path, in, idempotencyKey)
}

// Update patches object id, at revision rev unless it is 0.
func (r Resource[T, C, U]) Update(ctx context.Context, id string, in U, rev int64) (T, error) {
	var out T
	_, err := r.c.Do(ctx, Request{Method: http.MethodPatch, Path: r.ObjectPath(id), Body: in, Header: ifMatch(rev)}, &out)
	return out, err
}

// The resources of the API.

// Regions are datacenters.
func (c *Client) Regions() Resource[types.Region, types.RegionCreate, types.RegionUpdate] {
	return resource[types.Region, types.RegionCreate, types.RegionUpdate](c, "/v1/regions")
}

// Zones are racks.
func (c *Client) Zones() Resource[types.Zone, types.ZoneCreate, types.ZoneUpdate] {
	return resource[types.Zone, types.ZoneCreate, types.ZoneUpdate](c, "/v1/zones")
}

// Aggregates are hardware types and their overcommit policy.
func (c *Client) Aggregates() Resource[types.Aggregate, types.AggregateCreate, types.AggregateUpdate] {
	return resource[types.Aggregate, types.AggregateCreate, types.AggregateUpdate](c, "/v1/aggregates")
}

// Flavors are server sizes.
func (c *Client) Flavors() Resource[types.Flavor, types.FlavorCreate, types.FlavorUpdate] {
	return resource[types.Flavor, types.FlavorCreate, types.FlavorUpdate](c, "/v1/flavors")
}

// Projects are tenants.
func (c *Client) Projects() Resource[types.Project, types.ProjectCreate, types.ProjectUpdate] {
	return resource[types.Project, types.ProjectCreate, types.ProjectUpdate](c, "/v1/projects")
}

// Networks are L2 networks.
func (c *Client) Networks() Resource[types.Network, types.NetworkCreate, types.NetworkUpdate] {
	return resource[types.Network, types.NetworkCreate, types.NetworkUpdate](c, "/v1/networks")
}

// Subnets are address ranges of networks.
func (c *Client) Subnets() Resource[types.Subnet, types.SubnetCreate, types.SubnetUpdate] {
	return resource[types.Subnet, types.SubnetCreate, types.SubnetUpdate](c, "/v1/subnets")
}

// Ports are network attachments.
func (c *Client) Ports() Resource[types.Port, types.PortCreate, types.PortUpdate] {
	return resource[types.Port, types.PortCreate, types.PortUpdate](c, "/v1/ports")
}

// Hosts are compute hosts; they register themselves (RegisterHost), so
// Create is refused.
func (c *Client) Hosts() Resource[types.Host, struct{}, types.HostUpdate] {
	return resource[types.Host, struct{}, types.HostUpdate](c, "/v1/hosts")
}

// Groups are worker groups.
func (c *Client) Groups() Resource[types.Group, types.GroupCreate, struct{}] {
	return resource[types.Group, types.GroupCreate, struct{}](c, "/v1/groups")
}

// Tokens are API credentials; Create answers the secret once.
func (c *Client) Tokens() Resource[types.Token, types.TokenCreate, struct{}] {
	return resource[types.Token, types.TokenCreate, struct{}](c, "/v1/tokens")
}

// Keypairs are projects' SSH public keys, given to servers at create.
func (c *Client) Keypairs() Resource[types.Keypair, types.KeypairCreate, struct{}] {
	return resource[types.Keypair, types.KeypairCreate, struct{}](c, "/v1/keypairs")
}

// Audit is the audit log (list only).
func (c *Client) Audit() Resource[types.AuditEntry, struct{}, struct{}] {
	return resource[types.AuditEntry, struct{}, struct{}](c, "/v1/audit")
}

// SecurityGroups are sets of firewall rules for ports.
func (c *Client) SecurityGroups() SecurityGroups {
	return SecurityGroups{resource[types.SecurityGroup, types.SecurityGroupCreate, types.SecurityGroupUpdate](c, "/v1/security-groups")}
}

// SecurityGroups adds rule calls to the resource.
type SecurityGroups struct {
	Resource[types.SecurityGroup, types.SecurityGroupCreate, types.SecurityGroupUpdate]
}

// AddRule adds a rule to security group id.
func (r SecurityGroups) AddRule(ctx context.Context, id string, in types.SecurityGroupRuleCreate) (types.SecurityGroupRule, error) {
	var out types.SecurityGroupRule
	_, err := r.c.Do(ctx, Request{Method: http.MethodPost, Path: r.ObjectPath(id) + "/rules", Body: in}, &out)
	return out, err
}

// DeleteRule removes rule ruleID from security group id.
func (r SecurityGroups) DeleteRule(ctx context.Context, id, ruleID string) error {
	_, err := r.c.Do(ctx, Request{Method: http.MethodDelete, Path: r.ObjectPath(id) + "/rules/" + url.PathEscape(ruleID)}, nil)
	return err
}

// Images are boot images.
func (c *Client) Images() Images {
	return Images{resource[types.Image, types.ImageCreate, types.ImageUpdate](c, "/v1/images")}
}

// Images adds data transfers to the resource.
type Images struct {
	Resource[types.Image, types.ImageCreate, types.ImageUpdate]
}

// UploadJSON streams body as the data of image id and returns the image.
// Bound the call with ctx; the client's own limit applies to the answer's
// headers only when its HTTP client is so set.
func (r Images) UploadJSON(ctx context.Context, id string, body any) (json.RawMessage, error) {
	return r.send(ctx, http.MethodPut, id, "/file", body)
}

// Nodes are bare-metal machines.
func (c *Client) Nodes() Nodes {
	return Nodes{resource[types.Node, types.NodeCreate, types.NodeUpdate](c, "/v1/nodes")}
}

// Nodes adds provisioning and power calls to the resource.
type Nodes struct {
	Resource[types.Node, types.NodeCreate, types.NodeUpdate]
}

// ProvisionJSON moves node id toward a target (manage, provide, inspect,
// clean, maintenance).
func (r Nodes) ProvisionJSON(ctx context.Context, id string, in types.NodeProvision) (json.RawMessage, error) {
	return r.send(ctx, http.MethodPost, id, "/provision", in)
}

// PowerJSON powers node id on or off through its BMC.
func (r Nodes) PowerJSON(ctx context.Context, id string, in types.NodePower) (json.RawMessage, error) {
	return r.send(ctx, http.MethodPut, id, "/power", in)
}

// Events returns a node's whole history.
func (r Nodes) Events(ctx context.Context, id string) ([]types.NodeEvent, error) {
	return ListAll[types.NodeEvent](ctx, r.c, r.ObjectPath(id)+"/events", nil)
}

// EventsJSON returns a node's whole history as the API's JSON.
func (r Nodes) EventsJSON(ctx context.Context, id string) ([]json.RawMessage, error) {
	return ListAll[json.RawMessage](ctx, r.c, r.ObjectPath(id)+"/events", nil)
}

// Servers are VMs and bare-metal machines.
func (c *Client) Servers() Servers {
	return Servers{resource[types.Server, types.ServerCreate, types.ServerUpdate](c, "/v1/servers")}
}

// Servers adds actions and waiting to the resource.
type Servers struct {
	Resource[types.Server, types.ServerCreate, types.ServerUpdate]
}

// Action asks for start, stop or reboot of server id.
func (r Servers) Action(ctx context.Context, id, action string) (types.Server, error) {
	return r.c.ServerAction(ctx, id, action)
}

// ActionJSON asks for start, stop or reboot of server id and returns the
// API's JSON.
func (r Servers) ActionJSON(ctx context.Context, id, action string) (json.RawMessage, error) {
	return r.PostJSON(ctx, id, "/actions", types.ServerAction{Action: action})
}

// Sub returns the collection below object id, e.g. a security group's
// "rules", a host's "unknown-guests", a node's "events".
func (col Collection) Sub(id, name string) Collection {
	return Collection{c: col.c, path: col.ObjectPath(id) + "/" + name}
}
