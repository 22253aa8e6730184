package openapi

import (
	"net/http"

	"github.com/corral-cloud/corral/api/types"
)

// Route describes one route of the API.
type Route struct {
	// Method and Path are as registered in echo: "GET", "/v1/servers/:id".
	Method, Path string
	// Summary is one line for people.
	Summary string
	// Roles may call the route; empty means no token is needed.
	Roles []string
	// Query names the query parameters the route takes, each a string.
	Query []string
	// Body is a value of the request body's type; nil means no body.
	// Binary (a []byte) means raw data, application/octet-stream.
	Body any
	// Status is the answer's status on success; 0 means 200.
	Status int
	// Out is a value of the answer body's type; nil means no body.
	Out any
	// Also lists other success statuses, answered without a body.
	Also []int
}

// Binary marks a body or answer of raw bytes.
type Binary []byte

// Role sets, as api/server checks them.
var (
	public      []string
	anyToken    = []string{types.RoleAdmin, types.RoleMember, types.RoleReader, types.RoleRegistrar, types.RoleAgent}
	readers     = []string{types.RoleAdmin, types.RoleMember, types.RoleReader}
	catalogRead = []string{types.RoleAdmin, types.RoleMember, types.RoleReader, types.RoleAgent}
	writers     = []string{types.RoleAdmin, types.RoleMember}
	admin       = []string{types.RoleAdmin}
	infraRead   = []string{types.RoleAdmin, types.RoleReader}
	agent       = []string{types.RoleAdmin, types.RoleAgent}
	infraAgent  = []string{types.RoleAdmin, types.RoleReader, types.RoleAgent}
	registrar   = []string{types.RoleAdmin, types.RoleRegistrar}
)

// page is the paging every list takes, after its filters.
func page(filters ...string) []string { return append(filters, "limit", "cursor") }

// crud describes the five routes of a simple resource.
func crud[T, C, U any](plural, what string, read []string, filters ...string) []Route {
	p := "/v1/" + plural
	var t T
	var c C
	var u U
	return []Route{
		{Method: http.MethodPost, Path: p, Summary: "Create " + what, Roles: admin, Body: c, Status: http.StatusCreated, Out: t},
		{Method: http.MethodGet, Path: p, Summary: "List " + plural, Roles: read, Query: page(filters...), Out: types.List[T]{}},
		{Method: http.MethodGet, Path: p + "/:id", Summary: "Show " + what + " (ID or name)", Roles: read, Out: t},
		{Method: http.MethodPatch, Path: p + "/:id", Summary: "Change " + what + " (If-Match: a revision)", Roles: admin, Body: u, Out: t},
		{Method: http.MethodDelete, Path: p + "/:id", Summary: "Delete " + what + "; refused while in use", Roles: admin, Status: http.StatusNoContent},
	}
}

// Routes is the whole API, one entry per route.
var Routes = concat(
	[]Route{
		{Method: http.MethodGet, Path: "/healthz", Summary: "Liveness: the process answers", Roles: public, Out: map[string]string{}},
		{Method: http.MethodGet, Path: "/readyz", Summary: "Readiness: the store answers and its schema is current", Roles: public, Out: map[string]any{}},
		{Method: http.MethodGet, Path: "/metrics", Summary: "Prometheus metrics (text exposition format)", Roles: public, Out: ""},
		{Method: http.MethodGet, Path: "/v1/openapi.json", Summary: "This document", Roles: anyToken, Out: map[string]any{}},
		{Method: http.MethodGet, Path: "/", Summary: "The dashboard: a redirect to /ui/", Roles: public, Status: http.StatusFound},
		{Method: http.MethodGet, Path: "/ui", Summary: "The dashboard: a redirect to /ui/", Roles: public, Status: http.StatusFound},
		{Method: http.MethodGet, Path: "/ui/*", Summary: "The dashboard's static files (HTML, JavaScript, CSS); the data comes from /v1 with the user's token", Roles: public, Out: ""},
		{Method: http.MethodGet, Path: "/v1/alerts", Summary: "Alerts over hosts and nodes: stale heartbeat, failsafe margin reached, unknown guests, BMC unreachable", Roles: infraRead, Out: types.AlertList{}},
		{Method: http.MethodGet, Path: "/v1/audit", Summary: "List audit entries, oldest first", Roles: infraRead, Query: page("token", "resource", "method"), Out: types.List[types.AuditEntry]{}},
	},
	crud[types.Region, types.RegionCreate, types.RegionUpdate]("regions", "a region", catalogRead),
	crud[types.Zone, types.ZoneCreate, types.ZoneUpdate]("zones", "a zone (rack)", catalogRead, "region"),
	crud[types.Aggregate, types.AggregateCreate, types.AggregateUpdate]("aggregates", "an aggregate", catalogRead),
	crud[types.Flavor, types.FlavorCreate, types.FlavorUpdate]("flavors", "a flavor", catalogRead, "kind"),
	crud[types.Image, types.ImageCreate, types.ImageUpdate]("images", "an image", catalogRead, "status"),
	[]Route{
		{Method: http.MethodPut, Path: "/v1/images/:id/file", Summary: "Upload an image's data (its format is checked)", Roles: admin, Body: Binary{}, Out: types.Image{}},
		{Method: http.MethodGet, Path: "/v1/images/:id/file", Summary: "Download an image's data; X-Checksum-Sha256 carries its digest", Roles: catalogRead, Out: Binary{}},
	},
	crud[types.Project, types.ProjectCreate, types.ProjectUpdate]("projects", "a project", readers),
	crud[types.Network, types.NetworkCreate, types.NetworkUpdate]("networks", "a network", catalogRead, "project", "segment_type", "name"),
	crud[types.Subnet, types.SubnetCreate, types.SubnetUpdate]("subnets", "a subnet", catalogRead, "network", "name"),
	[]Route{
		{Method: http.MethodPost, Path: "/v1/servers", Summary: "Create a server (Idempotency-Key makes retries safe); placed at once or refused with the reason", Roles: writers, Body: types.ServerCreate{}, Status: http.StatusCreated, Out: types.Server{}},
		{Method: http.MethodGet, Path: "/v1/servers", Summary: "List servers", Roles: readers, Query: page("region", "zone", "aggregate", "project", "kind", "state", "host", "name", "group"), Out: types.List[types.Server]{}},
		{Method: http.MethodGet, Path: "/v1/servers/:id", Summary: "Show a server", Roles: readers, Out: types.Server{}},
		{Method: http.MethodPost, Path: "/v1/keypairs", Summary: "Import an SSH public key into a project", Roles: writers, Body: types.KeypairCreate{}, Status: http.StatusCreated, Out: types.Keypair{}},
		{Method: http.MethodGet, Path: "/v1/keypairs", Summary: "List keypairs (the caller's project's)", Roles: readers, Query: page("project", "name"), Out: types.List[types.Keypair]{}},
		{Method: http.MethodGet, Path: "/v1/keypairs/:id", Summary: "Show a keypair", Roles: readers, Out: types.Keypair{}},
		{Method: http.MethodDelete, Path: "/v1/keypairs/:id", Summary: "Delete a keypair; servers made with it keep their keys", Roles: writers, Status: http.StatusNoContent},
		{Method: http.MethodGet, Path: "/v1/servers/:id/events", Summary: "A server's events: the audit entries of calls on it, oldest first", Roles: readers, Query: page(), Out: types.List[types.AuditEntry]{}},
		{Method: http.MethodPatch, Path: "/v1/servers/:id", Summary: "Rename a server or change its desired state (active, stopped)", Roles: writers, Body: types.ServerUpdate{}, Out: types.Server{}},
		{Method: http.MethodDelete, Path: "/v1/servers/:id", Summary: "Delete a server: 202 with the server while its host lets go of it, 204 when gone", Roles: writers, Query: []string{"force"}, Status: http.StatusAccepted, Out: types.Server{}, Also: []int{http.StatusNoContent}},
		{Method: http.MethodPost, Path: "/v1/servers/:id/actions", Summary: "Start, stop or reboot a server", Roles: writers, Body: types.ServerAction{}, Status: http.StatusAccepted, Out: types.Server{}},
		{Method: http.MethodPost, Path: "/v1/placement/dry-run", Summary: "Where a server would be placed, and why hosts were refused", Roles: writers, Body: types.ServerCreate{}, Out: types.DryRun{}},

		{Method: http.MethodPost, Path: "/v1/groups", Summary: "Create a worker group (brokers and streams)", Roles: writers, Body: types.GroupCreate{}, Status: http.StatusCreated, Out: types.Group{}},
		{Method: http.MethodGet, Path: "/v1/groups", Summary: "List groups", Roles: readers, Query: page("project", "role"), Out: types.List[types.Group]{}},
		{Method: http.MethodGet, Path: "/v1/groups/:id", Summary: "Show a group", Roles: readers, Out: types.Group{}},
		{Method: http.MethodDelete, Path: "/v1/groups/:id", Summary: "Delete a group and its servers", Roles: writers, Status: http.StatusNoContent},
		{Method: http.MethodPost, Path: "/v1/groups/:id/scale", Summary: "Scale a group's brokers", Roles: writers, Body: types.GroupScale{}, Out: types.Group{}},
		{Method: http.MethodPost, Path: "/v1/groups/:id/members/:server/replace", Summary: "Replace a group member with a new server", Roles: writers, Status: http.StatusCreated, Out: types.Server{}},

		{Method: http.MethodPost, Path: "/v1/hosts/register", Summary: "Register the calling agent's host; answers its agent token", Roles: registrar, Body: types.HostRegister{}, Out: types.HostRegistration{}},
		{Method: http.MethodPost, Path: "/v1/hosts/:id/heartbeat", Summary: "A host's measured usage", Roles: agent, Body: types.Heartbeat{}, Status: http.StatusNoContent},
		{Method: http.MethodGet, Path: "/v1/hosts", Summary: "List hosts", Roles: infraRead, Query: page("region", "zone", "aggregate", "state"), Out: types.List[types.Host]{}},
		{Method: http.MethodGet, Path: "/v1/hosts/:id", Summary: "Show a host", Roles: infraAgent, Out: types.Host{}},
		{Method: http.MethodPatch, Path: "/v1/hosts/:id", Summary: "Put a host in or out of maintenance, or change its aggregates", Roles: admin, Body: types.HostUpdate{}, Out: types.Host{}},
		{Method: http.MethodDelete, Path: "/v1/hosts/:id", Summary: "Delete a host that holds no servers", Roles: admin, Status: http.StatusNoContent},
		{Method: http.MethodGet, Path: "/v1/hosts/:id/guests", Summary: "Long-poll a host's desired guests (its agent)", Roles: agent, Query: []string{"version", "wait"}, Out: types.HostGuests{}},
		{Method: http.MethodPost, Path: "/v1/hosts/:id/guests/status", Summary: "An agent's observations of its guests", Roles: agent, Body: types.GuestReport{}, Out: map[string]any{}},
		{Method: http.MethodGet, Path: "/v1/hosts/:id/network", Summary: "Long-poll a host's desired network state (its agent)", Roles: infraAgent, Query: []string{"version", "wait"}, Out: types.HostNetwork{}},
		{Method: http.MethodPut, Path: "/v1/hosts/:id/network/endpoint", Summary: "The address a host's VXLAN tunnels use", Roles: agent, Body: types.TunnelEndpoint{}, Status: http.StatusNoContent},
		{Method: http.MethodPost, Path: "/v1/hosts/:id/guests/console", Summary: "An agent uploads its guests' new serial console output (offsets make a repeat harmless)", Roles: agent, Body: types.ConsoleUpload{}, Out: map[string]any{}},
		{Method: http.MethodPost, Path: "/v1/hosts/:id/guests/console/input", Summary: "An agent's long poll for console input to type into its guests", Roles: agent, Query: []string{"wait"}, Body: struct{}{}, Out: types.ConsoleInputs{}},
		{Method: http.MethodGet, Path: "/v1/servers/:id/console", Summary: "A VM's serial console: the tail of its log, or new lines after a cursor (follow=true long-polls)", Roles: readers, Query: []string{"tail", "after", "follow", "wait"}, Out: types.Console{}},
		{Method: http.MethodPost, Path: "/v1/servers/:id/console/input", Summary: "Type text into a running VM's serial console", Roles: writers, Body: types.ConsoleInput{}, Status: http.StatusAccepted, Out: map[string]any{}},
		{Method: http.MethodGet, Path: "/v1/reports/rightsizing", Summary: "Servers whose measured usage over a window stays far below their flavor, with a smaller flavor and the capacity it frees per rack", Roles: readers, Query: []string{"window", "cpu_p95_below", "mem_below", "min_hours", "headroom"}, Out: types.RightsizingReport{}},
		{Method: http.MethodGet, Path: "/v1/hosts/:id/unknown-guests", Summary: "Managed guests a host runs that corrald has no server for", Roles: admin, Out: types.List[types.UnknownGuest]{}},
		{Method: http.MethodPost, Path: "/v1/hosts/:id/unknown-guests/:server_id/adopt", Summary: "Rebuild the server record of an unknown guest", Roles: admin, Body: types.GuestAdopt{}, Status: http.StatusCreated, Out: types.Server{}},
		{Method: http.MethodDelete, Path: "/v1/hosts/:id/unknown-guests/:server_id", Summary: "Record the deletion of an unknown guest; its agent destroys it", Roles: admin, Status: http.StatusAccepted, Out: types.GuestTombstone{}},

		{Method: http.MethodPost, Path: "/v1/tokens", Summary: "Create a token; the secret is shown once", Roles: admin, Body: types.TokenCreate{}, Status: http.StatusCreated, Out: types.TokenCreated{}},
		{Method: http.MethodGet, Path: "/v1/tokens", Summary: "List tokens", Roles: admin, Query: page("role", "project", "host"), Out: types.List[types.Token]{}},
		{Method: http.MethodGet, Path: "/v1/tokens/:id", Summary: "Show a token (never its secret)", Roles: admin, Out: types.Token{}},
		{Method: http.MethodDelete, Path: "/v1/tokens/:id", Summary: "Revoke a token", Roles: admin, Status: http.StatusNoContent},

		{Method: http.MethodPost, Path: "/v1/ports", Summary: "Create a port on a network", Roles: writers, Body: types.PortCreate{}, Status: http.StatusCreated, Out: types.Port{}},
		{Method: http.MethodGet, Path: "/v1/ports", Summary: "List ports", Roles: readers, Query: page("network", "project", "device_id", "host", "mac_address"), Out: types.List[types.Port]{}},
		{Method: http.MethodGet, Path: "/v1/ports/:id", Summary: "Show a port", Roles: readers, Out: types.Port{}},
		{Method: http.MethodPatch, Path: "/v1/ports/:id", Summary: "Bind, unbind or change a port", Roles: writers, Body: types.PortUpdate{}, Out: types.Port{}},
		{Method: http.MethodDelete, Path: "/v1/ports/:id", Summary: "Delete a port", Roles: writers, Status: http.StatusNoContent},
		{Method: http.MethodPost, Path: "/v1/security-groups", Summary: "Create a security group", Roles: writers, Body: types.SecurityGroupCreate{}, Status: http.StatusCreated, Out: types.SecurityGroup{}},
		{Method: http.MethodGet, Path: "/v1/security-groups", Summary: "List security groups", Roles: readers, Query: page("project", "name"), Out: types.List[types.SecurityGroup]{}},
		{Method: http.MethodGet, Path: "/v1/security-groups/:id", Summary: "Show a security group", Roles: readers, Out: types.SecurityGroup{}},
		{Method: http.MethodPatch, Path: "/v1/security-groups/:id", Summary: "Rename or describe a security group", Roles: writers, Body: types.SecurityGroupUpdate{}, Out: types.SecurityGroup{}},
		{Method: http.MethodDelete, Path: "/v1/security-groups/:id", Summary: "Delete a security group no port uses", Roles: writers, Status: http.StatusNoContent},
		{Method: http.MethodPost, Path: "/v1/security-groups/:id/rules", Summary: "Add a rule to a security group", Roles: writers, Body: types.SecurityGroupRuleCreate{}, Status: http.StatusCreated, Out: types.SecurityGroupRule{}},
		{Method: http.MethodDelete, Path: "/v1/security-groups/:id/rules/:rule", Summary: "Remove a rule from a security group", Roles: writers, Status: http.StatusNoContent},

		{Method: http.MethodPost, Path: "/v1/nodes", Summary: "Enrol a bare-metal node; its BMC credentials are checked", Roles: admin, Body: types.NodeCreate{}, Status: http.StatusCreated, Out: types.Node{}},
		{Method: http.MethodGet, Path: "/v1/nodes", Summary: "List bare-metal nodes", Roles: infraRead, Query: page("region", "zone", "aggregate", "state", "name"), Out: types.List[types.Node]{}},
		{Method: http.MethodGet, Path: "/v1/nodes/:id", Summary: "Show a node", Roles: infraRead, Out: types.Node{}},
		{Method: http.MethodGet, Path: "/v1/nodes/:id/events", Summary: "A node's history: transitions and power changes", Roles: infraRead, Query: page(), Out: types.List[types.NodeEvent]{}},
		{Method: http.MethodPatch, Path: "/v1/nodes/:id", Summary: "Change a node's BMC, hardware or placement", Roles: admin, Body: types.NodeUpdate{}, Out: types.Node{}},
		{Method: http.MethodDelete, Path: "/v1/nodes/:id", Summary: "Delete a node: 202 while it is cleaned, 204 when gone", Roles: admin, Status: http.StatusAccepted, Out: types.Node{}, Also: []int{http.StatusNoContent}},
		{Method: http.MethodPost, Path: "/v1/nodes/:id/provision", Summary: "Move a node toward a provisioning target", Roles: admin, Body: types.NodeProvision{}, Status: http.StatusAccepted, Out: types.Node{}},
		{Method: http.MethodPut, Path: "/v1/nodes/:id/power", Summary: "Power a node on or off through its BMC", Roles: admin, Body: types.NodePower{}, Out: types.Node{}},
	},
)

func concat(lists ...[]Route) []Route {
	var out []Route
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
