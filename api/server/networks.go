package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// Networking (issue 5): networks and subnets are the operator's (admin
// writes, everyone reads, like the catalogue); ports and security groups
// belong to projects (members manage their own, like servers). Agents
// long-poll their host's desired network state.

// Limits of networking requests.
const (
	maxVLAN         = 4094
	maxVNI          = 1<<24 - 1
	maxDNSServers   = 5
	maxFixedIPs     = 16
	maxPortGroups   = 16
	maxRules        = 1000
	minSubnetBits   = 8  // a /8 is the largest subnet
	maxSubnetBits   = 30 // a /30 has two host addresses
	maxNetworkWait  = 50 * time.Second
	networkRecheck  = 500 * time.Millisecond
	networkWatchKey = "\x00network" // the hub key of networking changes; never a host ID
)

func (s *Server) networkRoutes(g *echo.Group) {
	st := s.store
	// Networks.
	g.POST("/networks", createHandler(s, adminOnly, s.prepareNetwork, func(ctx context.Context, in types.NetworkCreate) (types.Network, error) {
		n, err := st.CreateNetwork(ctx, types.Network{Name: in.Name, ProjectID: in.Project, SegmentType: in.SegmentType,
			SegmentID: in.SegmentID, Physnet: in.Physnet, Description: in.Description})
		return n, s.netChanged(ctx, netError(err))
	}))
	g.GET("/networks", listHandler(catalogRead, func(c echo.Context) map[string]func(string) (string, error) {
		return map[string]func(string) (string, error){"project": s.projectID(c), "segment_type": nil, "name": nil, "physnet": nil}
	}, st.ListNetworks))
	g.GET("/networks/:id", showHandler(catalogRead, st.GetNetwork))
	g.PATCH("/networks/:id", patchHandler(s, func(in *types.NetworkUpdate) error {
		return checkNameDesc(in.Name, in.Description)
	}, st.UpdateNetwork))
	g.DELETE("/networks/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return s.netChanged(c.Request().Context(), netError(st.DeleteNetwork(c.Request().Context(), id, rev)))
	}))

	// Subnets.
	g.POST("/subnets", createHandler(s, adminOnly, s.prepareSubnet, func(ctx context.Context, in types.SubnetCreate) (types.Subnet, error) {
		sn, err := st.CreateSubnet(ctx, types.Subnet{Name: in.Name, NetworkID: in.Network, CIDR: in.CIDR, GatewayIP: in.GatewayIP,
			AllocationPools: in.AllocationPools, DNSServers: in.DNSServers, HostRoutes: in.HostRoutes, Description: in.Description})
		return sn, s.netChanged(ctx, netError(err))
	}))
	g.GET("/subnets", listHandler(catalogRead, func(c echo.Context) map[string]func(string) (string, error) {
		return map[string]func(string) (string, error){"network": s.networkID(c), "name": nil}
	}, st.ListSubnets))
	g.GET("/subnets/:id", showHandler(catalogRead, st.GetSubnet))
	g.PATCH("/subnets/:id", patchHandler(s, func(in *types.SubnetUpdate) error {
		if err := checkNameDesc(in.Name, in.Description); err != nil {
			return err
		}
		if in.DNSServers != nil {
			return checkDNS(*in.DNSServers)
		}
		return nil
	}, st.UpdateSubnet))
	g.DELETE("/subnets/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return s.netChanged(c.Request().Context(), netError(st.DeleteSubnet(c.Request().Context(), id, rev)))
	}))

	// Ports.
	g.POST("/ports", s.createPort)
	g.GET("/ports", s.listPorts)
	g.GET("/ports/:id", func(c echo.Context) error {
		p, err := s.visiblePort(c)
		return found(c, p.Revision, p, err)
	})
	g.PATCH("/ports/:id", s.updatePort)
	g.DELETE("/ports/:id", func(c echo.Context) error {
		p, rev, err := writableVisible(c, s.visiblePort)
		if err != nil {
			return err
		}
		if err := s.baremetalPortsFixed(c, p.DeviceID); err != nil {
			return err
		}
		if _, err := st.DeletePort(c.Request().Context(), c.Param("id"), rev); err != nil {
			return err
		}
		s.netChanged(c.Request().Context(), nil)
		return c.NoContent(http.StatusNoContent)
	})

	// Security groups.
	g.POST("/security-groups", s.createSecurityGroup)
	g.GET("/security-groups", func(c echo.Context) error {
		if err := allow(c, readers...); err != nil {
			return err
		}
		opts, err := listOptions(c, map[string]func(string) (string, error){"project": s.projectID(c), "name": nil})
		if err != nil {
			return err
		}
		if scope := projectScope(c); scope != "" {
			if f, ok := opts.Filters["project"]; ok && f != scope {
				return listJSON(c, types.List[types.SecurityGroup]{}, nil)
			}
			opts.Filters["project"] = scope
		}
		l, err := st.ListSecurityGroups(c.Request().Context(), opts)
		return listJSON(c, l, err)
	})
	g.GET("/security-groups/:id", func(c echo.Context) error {
		sg, err := s.visibleGroupSG(c)
		return found(c, sg.Revision, sg, err)
	})
	g.PATCH("/security-groups/:id", func(c echo.Context) error {
		sg, rev, err := writableVisible(c, s.visibleGroupSG)
		if err != nil {
			return err
		}
		var in types.SecurityGroupUpdate
		if err := s.decode(c, &in); err != nil {
			return err
		}
		if err := checkNameDesc(in.Name, in.Description); err != nil {
			return err
		}
		out, err := st.UpdateSecurityGroup(c.Request().Context(), sg.ID, rev, in)
		return found(c, out.Revision, out, err)
	})
	g.DELETE("/security-groups/:id", func(c echo.Context) error {
		sg, rev, err := writableVisible(c, s.visibleGroupSG)
		if err != nil {
			return err
		}
		if err := s.netChanged(c.Request().Context(), netError(st.DeleteSecurityGroup(c.Request().Context(), sg.ID, rev))); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	})
	g.POST("/security-groups/:id/rules", s.addRule)
	g.DELETE("/security-groups/:id/rules/:rule", func(c echo.Context) error {
		if err := allow(c, serverWrite...); err != nil {
			return err
		}
		sg, err := s.visibleGroupSG(c)
		if err != nil {
			return err
		}
		if err := st.DeleteSecurityGroupRule(c.Request().Context(), sg.ID, c.Param("rule")); err != nil {
			return err
		}
		s.netChanged(c.Request().Context(), nil)
		return c.NoContent(http.StatusNoContent)
	})

	// The agents' side.
	g.GET("/hosts/:id/network", s.hostNetwork)
	g.PUT("/hosts/:id/network/endpoint", s.setTunnelEndpoint)
}

// netChanged wakes the agents' network watches when err is nil, and
// returns err.
func (s *Server) netChanged(ctx context.Context, err error) error {
	if err == nil {
		store.AfterCommit(ctx, func() { s.hub.notify(networkWatchKey) })
	}
	return err
}

// netError turns the store's networking errors into API errors.
func netError(err error) error {
	var inUse *store.InUseError
	var overlap *store.SubnetOverlapError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &overlap):
		return types.FieldError("cidr", "%s overlaps subnet %s (%s) of the same network", overlap.CIDR, overlap.OtherID, overlap.OtherCIDR).
			WithDetail("overlaps", types.Ref{Kind: "subnet", ID: overlap.OtherID, Name: overlap.OtherName})
	case errors.As(err, &inUse):
		code := map[string]string{"network": types.CodeNetworkInUse, "subnet": types.CodeSubnetInUse,
			"security group": types.CodeSecurityGroupInUse}[inUse.Kind]
		if code == "" {
			return err
		}
		what := map[string]string{"network": "has ports", "subnet": "has addresses allocated to ports",
			"security group": "is used by ports or by other groups' rules"}[inUse.Kind]
		return types.Errorf(code, "%s %s %s (%d); delete or move them first", inUse.Kind, inUse.ID, what, inUse.Count).
			WithDetail("used_by", inUse.Users).WithDetail("count", inUse.Count)
	case errors.Is(err, store.ErrSegmentInUse):
		return types.Errorf(types.CodeSegmentInUse, "%v", err).WithDetail("field", "segment_id")
	case errors.Is(err, store.ErrPoolExhausted):
		return types.Errorf(types.CodeIPPoolExhausted, "%v", err).WithDetail("field", "fixed_ips")
	case errors.Is(err, store.ErrAddressInUse):
		return types.Errorf(types.CodeIPAddressInUse, "%v", err).WithDetail("field", "fixed_ips")
	}
	return err
}

func (s *Server) prepareNetwork(c echo.Context, in *types.NetworkCreate) error {
	if err := first(checkName("name", in.Name, maxNameLen), checkDescription(in.Description),
		checkOneOf("segment_type", in.SegmentType, types.SegmentVLAN, types.SegmentVXLAN, types.SegmentFlat), checkProvider(in)); err != nil {
		return err
	}
	max := int64(maxVLAN)
	if in.SegmentType == types.SegmentVXLAN {
		max = maxVNI
	}
	if in.SegmentType != types.SegmentFlat {
		if err := checkRange("segment_id", in.SegmentID, 1, max); err != nil {
			return err
		}
	}
	if in.Project != "" {
		p, err := s.store.GetProject(c.Request().Context(), in.Project)
		if err != nil {
			return refError("project", err)
		}
		in.Project = p.ID
	}
	return nil
}

// parseV4 parses an IPv4 address for field.
func parseV4(field, v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return netip.Addr{}, types.FieldError(field, "%q is not an IPv4 address", v)
	}
	return a, nil
}

// parseCIDR parses an IPv4 network in canonical form for field.
func parseCIDR(field, v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return p, types.FieldError(field, "%q is not a CIDR such as 10.0.0.0/24", v)
	}
	if !p.Addr().Is4() {
		return p, types.FieldError(field, "%q: only IPv4 subnets are supported", v)
	}
	if p.Masked() != p {
		return p, types.FieldError(field, "%q has host bits set; the network is %s", v, p.Masked()).WithDetail("suggestion", p.Masked().String())
	}
	return p, nil
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b)
}

// hostAddr checks that a is a usable host address of p.
func hostAddr(field string, a netip.Addr, p netip.Prefix) error {
	switch {
	case !p.Contains(a):
		return types.FieldError(field, "%s is outside %s", a, p)
	case a == p.Addr():
		return types.FieldError(field, "%s is the network address of %s", a, p)
	case a == lastAddr(p):
		return types.FieldError(field, "%s is the broadcast address of %s", a, p)
	}
	return nil
}

// maxHostRoutes bounds a subnet's host routes (DHCP option 121 must fit
// in a DHCP packet).
const maxHostRoutes = 20

// checkHostRoutes checks a subnet's static routes: IPv4 destinations in
// canonical form, next hops inside the subnet.
func checkHostRoutes(routes []types.HostRoute, subnet netip.Prefix) error {
	if len(routes) > maxHostRoutes {
		return types.FieldError("host_routes", "has %d routes, the limit is %d", len(routes), maxHostRoutes)
	}
	for i, r := range routes {
		field := fmt.Sprintf("host_routes[%d]", i)
		if _, err := parseCIDR(field+".destination", r.Destination); err != nil {
			return err
		}
		hop, err := parseV4(field+".nexthop", r.NextHop)
		if err != nil {
			return err
		}
		if err := hostAddr(field+".nexthop", hop, subnet); err != nil {
			return err
		}
	}
	return nil
}

func checkDNS(servers []string) error {
	if len(servers) > maxDNSServers {
		return types.FieldError("dns_servers", "has %d servers, the limit is %d", len(servers), maxDNSServers)
	}
	for _, d := range servers {
		if _, err := netip.ParseAddr(d); err != nil {
			return types.FieldError("dns_servers", "%q is not an IP address", d)
		}
	}
	return nil
}

// prepareSubnet validates a subnet create: canonical IPv4 CIDR, gateway and
// pools inside it, pools disjoint and clear of the gateway; it fills in
// the gateway and the pool when absent. Overlaps with the network's other
// subnets are checked by the store, under the network's lock.
func (s *Server) prepareSubnet(c echo.Context, in *types.SubnetCreate) error {
	if err := first(checkName("name", in.Name, maxNameLen), checkDescription(in.Description), checkDNS(in.DNSServers)); err != nil {
		return err
	}
	if in.CIDR == "" {
		return types.FieldError("cidr", "is required")
	}
	p, err := parseCIDR("cidr", in.CIDR)
	if err != nil {
		return err
	}
	if p.Bits() < minSubnetBits || p.Bits() > maxSubnetBits {
		return types.FieldError("cidr", "a /%d is not allowed: the prefix length must be from %d to %d", p.Bits(), minSubnetBits, maxSubnetBits)
	}
	in.CIDR = p.String()
	var gw netip.Addr
	switch {
	case in.NoGateway && in.GatewayIP != "":
		return types.FieldError("gateway_ip", "give gateway_ip or no_gateway, not both")
	case in.GatewayIP != "":
		if gw, err = parseV4("gateway_ip", in.GatewayIP); err != nil {
			return err
		}
		if err := hostAddr("gateway_ip", gw, p); err != nil {
			return err
		}
	case !in.NoGateway:
		gw = p.Addr().Next()
		in.GatewayIP = gw.String()
	}
	if len(in.AllocationPools) == 0 {
		// Every host address except the gateway.
		lo, hi := p.Addr().Next(), lastAddr(p).Prev()
		switch {
		case !gw.IsValid() || gw.Compare(lo) < 0 || gw.Compare(hi) > 0:
			in.AllocationPools = []types.IPRange{{Start: lo.String(), End: hi.String()}}
		default:
			if gw != lo {
				in.AllocationPools = append(in.AllocationPools, types.IPRange{Start: lo.String(), End: gw.Prev().String()})
			}
			if gw != hi {
				in.AllocationPools = append(in.AllocationPools, types.IPRange{Start: gw.Next().String(), End: hi.String()})
			}
		}
	}
	var ranges [][2]netip.Addr
	for i, r := range in.AllocationPools {
		field := fmt.Sprintf("allocation_pools[%d]", i)
		lo, err := parseV4(field+".start", r.Start)
		if err != nil {
			return err
		}
		hi, err := parseV4(field+".end", r.End)
		if err != nil {
			return err
		}
		if err := first(hostAddr(field+".start", lo, p), hostAddr(field+".end", hi, p)); err != nil {
			return err
		}
		if lo.Compare(hi) > 0 {
			return types.FieldError(field, "start %s is after end %s", lo, hi)
		}
		if gw.IsValid() && gw.Compare(lo) >= 0 && gw.Compare(hi) <= 0 {
			return types.FieldError(field, "%s-%s contains the gateway %s", lo, hi, gw)
		}
		for j, o := range ranges {
			if lo.Compare(o[1]) <= 0 && o[0].Compare(hi) <= 0 {
				return types.FieldError(field, "%s-%s overlaps allocation_pools[%d]", lo, hi, j)
			}
		}
		ranges = append(ranges, [2]netip.Addr{lo, hi})
	}
	if in.DNSServers == nil {
		in.DNSServers = []string{}
	}
	if err := checkHostRoutes(in.HostRoutes, p); err != nil {
		return err
	}
	if in.Network == "" {
		return types.FieldError("network", "is required")
	}
	n, err := s.store.GetNetwork(c.Request().Context(), in.Network)
	if err != nil {
		return refError("network", err)
	}
	in.Network = n.ID
	return nil
}

func (s *Server) networkID(c echo.Context) func(string) (string, error) {
	return func(v string) (string, error) {
		n, err := s.store.GetNetwork(c.Request().Context(), v)
		return n.ID, err
	}
}

// portProject decides the project of a new port or group: members use
// their own, admins name one (or, for ports, inherit the network's).
func (s *Server) portProject(c echo.Context, given, fallback string) (string, error) {
	p := principalOf(c)
	ctx := c.Request().Context()
	switch {
	case p.Role == types.RoleMember && given != "" && given != p.ProjectID:
		proj, err := s.store.GetProject(ctx, given)
		if err != nil || proj.ID != p.ProjectID {
			return "", types.Errorf(types.CodeForbidden, "a member may only create in its own project").WithDetail("field", "project")
		}
		return proj.ID, nil
	case p.Role == types.RoleMember:
		return p.ProjectID, nil
	case given != "":
		proj, err := s.store.GetProject(ctx, given)
		if err != nil {
			return "", refError("project", err)
		}
		return proj.ID, nil
	case fallback != "":
		return fallback, nil
	}
	return "", types.FieldError("project", "is required")
}

// resolveBinding checks the server and host a port is bound to. An empty
// host with a server means the server's host. Only admins (and the host's
// own agent) name a host: see bindableHost.
//
// A bare-metal server's port is bound to no host: it is wired on its
// node's switch port, and takes the MAC of the node's next NIC without a
// port (mac; "" for a VM's port). See baremetalMAC.
func (s *Server) resolveBinding(c echo.Context, projectID, serverID, host, portID string) (string, string, string, error) {
	if host != "" {
		h, err := s.bindableHost(c, host)
		if err != nil {
			return "", "", "", refError("host_id", err)
		}
		host = h
	}
	mac := ""
	if serverID != "" {
		srv, err := s.store.GetServer(c.Request().Context(), serverID)
		if err != nil {
			return "", "", "", refError("device_id", err)
		}
		if srv.ProjectID != projectID { // an admin's mistake: members see only their project's servers
			return "", "", "", types.FieldError("device_id", "server %s is in project %s, the port in %s", srv.ID, srv.ProjectID, projectID)
		}
		if srv.Kind == types.KindBaremetal {
			if host != "" {
				return "", "", "", types.FieldError("host_id", "a bare-metal server's port is wired on its node's switch port, not on a host")
			}
			if mac, err = s.baremetalMAC(c, srv, portID); err != nil {
				return "", "", "", err
			}
		}
		if host == "" {
			host = srv.HostID
		}
	}
	return serverID, host, mac, nil
}

// baremetalMAC returns the MAC a port plugged into a bare-metal server
// takes: that of the first NIC of the server's node that has no port of
// the server yet (portID, the port being plugged, excepted). The node's
// switch ports join the networks when its deploy ends, so ports are
// plugged while the server is building; later changes would leave the
// switch behind (409 until hot-plug exists).
func (s *Server) baremetalMAC(c echo.Context, srv types.Server, portID string) (string, error) {
	ctx := c.Request().Context()
	if err := s.baremetalPortsFixed(c, srv.ID); err != nil {
		return "", err
	}
	node, err := s.store.GetNode(ctx, srv.NodeID)
	if err != nil {
		return "", types.Errorf(types.CodeConflict, "server %s has no node to wire a port on", srv.ID)
	}
	ports, err := s.store.ListPorts(ctx, store.ListOptions{Limit: 100, Filters: map[string]string{"device_id": srv.ID}})
	if err != nil {
		return "", err
	}
	for _, mac := range node.MACs {
		if !slices.ContainsFunc(ports.Items, func(p types.Port) bool { return p.ID != portID && strings.EqualFold(p.MACAddress, mac) }) {
			return mac, nil
		}
	}
	return "", types.FieldError("device_id", "every NIC of server %s's node (%d) has a port already: a bare-metal port is one NIC on one network", srv.ID, len(node.MACs))
}

// baremetalPortsFixed refuses a change to the ports of a bare-metal
// server once its deploy is over (its switch ports are set then): 409.
// Other servers' ports, and unplugged ones, may change.
func (s *Server) baremetalPortsFixed(c echo.Context, serverID string) error {
	if serverID == "" {
		return nil
	}
	srv, err := s.store.GetServer(c.Request().Context(), serverID)
	if err != nil || srv.Kind != types.KindBaremetal || srv.State == types.ServerBuilding {
		return nil
	}
	return types.Errorf(types.CodeConflict, "server %s is a bare-metal server that is %s: its switch ports were set when its deploy ended, "+
		"so its ports change only while it is building (or with the server's delete)", srv.ID, srv.State)
}

// bindableHost resolves the host a caller binds a port to. Members may not
// read hosts, so for them every host is answered as one that does not
// exist (a port follows its server's host instead); an agent may name only
// its own host.
func (s *Server) bindableHost(c echo.Context, ref string) (string, error) {
	p := principalOf(c)
	if p.Role != types.RoleAdmin && p.Role != types.RoleAgent {
		return "", store.NotFound("host", ref)
	}
	h, err := s.store.GetHost(c.Request().Context(), ref)
	if err != nil {
		return "", err
	}
	if p.Role == types.RoleAgent && h.ID != p.HostID {
		return "", store.NotFound("host", ref)
	}
	return h.ID, nil
}

// resolveGroups turns group IDs or names into IDs of groups of the project.
func (s *Server) resolveGroups(c echo.Context, projectID string, groups []string) ([]string, error) {
	if len(groups) > maxPortGroups {
		return nil, types.FieldError("security_groups", "has %d groups, the limit is %d", len(groups), maxPortGroups)
	}
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		sg, err := s.store.GetSecurityGroupIn(c.Request().Context(), projectID, g)
		if err != nil {
			return nil, refError("security_groups", err)
		}
		if sg.ProjectID != projectID { // an admin's mistake: members see only their project's groups
			return nil, types.FieldError("security_groups", "group %s is in project %s, the port in %s", sg.ID, sg.ProjectID, projectID)
		}
		out = append(out, sg.ID)
	}
	return out, nil
}

func (s *Server) createPort(c echo.Context) error {
	if err := allow(c, serverWrite...); err != nil {
		return err
	}
	var in types.PortCreate
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if in.Name != "" {
		if err := checkName("name", in.Name, maxNameLen); err != nil {
			return err
		}
	}
	if err := checkDescription(in.Description); err != nil {
		return err
	}
	if in.Network == "" {
		return types.FieldError("network", "is required")
	}
	ctx := c.Request().Context()
	network, err := s.store.GetNetwork(ctx, in.Network)
	if err != nil {
		return refError("network", err)
	}
	project, err := s.portProject(c, in.Project, network.ProjectID)
	if err != nil {
		return err
	}
	if network.ProjectID != "" && network.ProjectID != project { // an admin's mistake: members see only shared networks and their own
		return types.FieldError("network", "network %s belongs to another project", network.ID)
	}
	spec := store.PortSpec{Port: types.Port{Name: in.Name, NetworkID: network.ID, ProjectID: project, Description: in.Description}}
	if in.MACAddress != "" {
		mac, err := checkMAC(c, in.MACAddress)
		if err != nil {
			return err
		}
		spec.Port.MACAddress = mac
	}
	var nicMAC string
	if spec.Port.DeviceID, spec.Port.HostID, nicMAC, err = s.resolveBinding(c, project, in.Server, in.Host, ""); err != nil {
		return err
	}
	if nicMAC != "" {
		if spec.Port.MACAddress != "" && spec.Port.MACAddress != nicMAC {
			return types.FieldError("mac_address", "a port of a bare-metal server takes its node's NIC MAC (%s); leave mac_address out", nicMAC)
		}
		spec.Port.MACAddress = nicMAC
	}
	if spec.IPs, err = s.resolveFixedIPs(c, network.ID, in.FixedIPs); err != nil {
		return err
	}
	if spec.Port.AllowedAddressPairs, err = checkAddressPairs(c, in.AllowedAddressPairs); err != nil {
		return err
	}
	if in.SecurityGroups == nil {
		g, err := s.store.EnsureDefaultSecurityGroup(ctx, project)
		if err != nil {
			return err
		}
		spec.Port.SecurityGroups = []string{g.ID}
	} else if spec.Port.SecurityGroups, err = s.resolveGroups(c, project, *in.SecurityGroups); err != nil {
		return err
	}
	p, err := s.store.CreatePort(ctx, spec)
	if errors.Is(err, store.ErrExists) && spec.Port.MACAddress != "" {
		// Two ports with one MAC on one L2 segment steal each other's
		// traffic. The answer says only that the MAC is used on this
		// network, which any port on it could see on the wire; never
		// whose port has it.
		return types.Errorf(types.CodeMACAddressInUse, "mac_address: %s is already used on network %s", spec.Port.MACAddress, network.ID).
			WithDetail("field", "mac_address")
	}
	if err := s.netChanged(c.Request().Context(), netError(err)); err != nil {
		return err
	}
	return created(c, p.ID, p.Revision, p, nil)
}

// checkMAC validates a MAC asked for a new port and writes it in lower case
// with colons. Multicast and all-zero MACs are refused. Members may choose
// only locally administered MACs (02:…, like Corral's own): a universally
// administered one belongs to a piece of hardware, such as a VLAN's
// gateway router, and a port that took it would steal that device's
// traffic. Admins may give any unicast MAC (a bare-metal NIC's, say). A
// MAC already used on the network is refused by the store.
func checkMAC(c echo.Context, v string) (string, error) {
	s, err := unicastMAC("mac_address", v)
	if err != nil {
		return "", err
	}
	mac, _ := net.ParseMAC(s)
	if mac[0]&2 == 0 && principalOf(c).Role != types.RoleAdmin {
		return "", types.FieldError("mac_address", "%s is universally administered (a hardware vendor's, such as a gateway's); "+
			"choose a locally administered MAC such as 02:%s, or leave it out", mac, mac[1:].String())
	}
	return mac.String(), nil
}

// resolveFixedIPs validates the addresses asked for; none means one from
// each subnet of the network.
func (s *Server) resolveFixedIPs(c echo.Context, networkID string, reqs []types.FixedIPRequest) ([]types.FixedIP, error) {
	ctx := c.Request().Context()
	if len(reqs) > maxFixedIPs {
		return nil, types.FieldError("fixed_ips", "has %d addresses, the limit is %d", len(reqs), maxFixedIPs)
	}
	if len(reqs) == 0 {
		subnets, err := s.store.ListSubnets(ctx, store.ListOptions{Limit: maxFixedIPs, Filters: map[string]string{"network": networkID}})
		if err != nil {
			return nil, err
		}
		out := make([]types.FixedIP, len(subnets.Items))
		for i, sn := range subnets.Items {
			out[i] = types.FixedIP{SubnetID: sn.ID}
		}
		return out, nil
	}
	out := make([]types.FixedIP, 0, len(reqs))
	seen := map[string]bool{}
	for i, r := range reqs {
		field := fmt.Sprintf("fixed_ips[%d]", i)
		if r.Subnet == "" {
			return nil, types.FieldError(field+".subnet", "is required")
		}
		sn, err := s.store.GetSubnet(ctx, r.Subnet)
		if err != nil {
			return nil, refError(field+".subnet", err)
		}
		if sn.NetworkID != networkID {
			return nil, types.FieldError(field+".subnet", "subnet %s is on network %s, not %s", sn.ID, sn.NetworkID, networkID)
		}
		if r.IPAddress != "" {
			a, err := parseV4(field+".ip_address", r.IPAddress)
			if err != nil {
				return nil, err
			}
			p := netip.MustParsePrefix(sn.CIDR)
			if err := hostAddr(field+".ip_address", a, p); err != nil {
				return nil, err
			}
			if sn.GatewayIP == a.String() {
				return nil, types.FieldError(field+".ip_address", "%s is the subnet's gateway", a)
			}
			if seen[a.String()] {
				return nil, types.FieldError(field+".ip_address", "%s is asked for twice", a)
			}
			seen[a.String()] = true
			r.IPAddress = a.String()
		}
		out = append(out, types.FixedIP{SubnetID: sn.ID, IPAddress: r.IPAddress})
	}
	return out, nil
}

func (s *Server) listPorts(c echo.Context) error {
	if err := allow(c, readers...); err != nil {
		return err
	}
	opts, err := listOptions(c, map[string]func(string) (string, error){
		"network": s.networkID(c), "project": s.projectID(c), "device_id": nil, "host": s.hostID(c), "mac_address": nil,
	})
	if err != nil {
		return err
	}
	if scope := projectScope(c); scope != "" {
		if f, ok := opts.Filters["project"]; ok && f != scope {
			return listJSON(c, types.List[types.Port]{}, nil)
		}
		opts.Filters["project"] = scope
	}
	l, err := s.store.ListPorts(c.Request().Context(), opts)
	return listJSON(c, l, err)
}

// visiblePort loads the port in the path; another project's is a 404.
func (s *Server) visiblePort(c echo.Context) (types.Port, error) {
	return visible(c, s.store.GetPort)
}

func (s *Server) updatePort(c echo.Context) error {
	p, rev, err := writableVisible(c, s.visiblePort)
	if err != nil {
		return err
	}
	var in types.PortUpdate
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if in.Name != nil && *in.Name != "" {
		if err := checkName("name", *in.Name, maxNameLen); err != nil {
			return err
		}
	}
	if in.Description != nil {
		if err := checkDescription(*in.Description); err != nil {
			return err
		}
	}
	ch := store.PortChange{Name: in.Name, Description: in.Description}
	if in.Server != nil || in.Host != nil {
		server, host := p.DeviceID, p.HostID
		if in.Server != nil {
			server = *in.Server
			if in.Host == nil {
				host = "" // follow the new server, or unbind with it
			}
		}
		if in.Host != nil {
			host = *in.Host
		}
		if err := s.baremetalPortsFixed(c, p.DeviceID); err != nil {
			return err
		}
		var nicMAC string
		if server, host, nicMAC, err = s.resolveBinding(c, p.ProjectID, server, host, p.ID); err != nil {
			return err
		}
		ch.DeviceID, ch.HostID = &server, &host
		if nicMAC != "" && nicMAC != p.MACAddress {
			ch.MACAddress = &nicMAC // the node's NIC's: what its OS and the switch see
		}
	}
	if in.SecurityGroups != nil {
		ids, err := s.resolveGroups(c, p.ProjectID, *in.SecurityGroups)
		if err != nil {
			return err
		}
		ch.SecurityGroups = &ids
	}
	if in.AllowedAddressPairs != nil {
		pairs, err := checkAddressPairs(c, *in.AllowedAddressPairs)
		if err != nil {
			return err
		}
		ch.AllowedAddressPairs = &pairs
	}
	out, err := s.store.UpdatePort(c.Request().Context(), p.ID, rev, ch)
	if err := s.netChanged(c.Request().Context(), err); err != nil {
		return err
	}
	return found(c, out.Revision, out, nil)
}

// visibleGroupSG loads the security group in the path (ID, or name within
// the caller's project); another project's is a 404.
func (s *Server) visibleGroupSG(c echo.Context) (types.SecurityGroup, error) {
	return visible(c, s.store.GetSecurityGroup)
}

// checkRule validates a rule and resolves its remote group within the
// project. field prefixes the fields named in errors.
func (s *Server) checkRule(c echo.Context, projectID, field string, in types.SecurityGroupRuleCreate) (types.SecurityGroupRule, error) {
	r := types.SecurityGroupRule{Direction: in.Direction, Protocol: in.Protocol, PortRangeMin: in.PortRangeMin,
		PortRangeMax: in.PortRangeMax, RemoteCIDR: in.RemoteCIDR}
	if r.Protocol == "" {
		r.Protocol = types.ProtocolAny
	}
	if err := first(checkOneOf(field+"direction", r.Direction, types.DirectionIngress, types.DirectionEgress),
		checkOneOf(field+"protocol", r.Protocol, types.ProtocolTCP, types.ProtocolUDP, types.ProtocolICMP, types.ProtocolAny)); err != nil {
		return r, err
	}
	switch {
	case r.Protocol != types.ProtocolTCP && r.Protocol != types.ProtocolUDP:
		if r.PortRangeMin != 0 || r.PortRangeMax != 0 {
			return r, types.FieldError(field+"port_range_min", "port ranges apply to tcp and udp only, not %s", r.Protocol)
		}
	case r.PortRangeMin == 0 && r.PortRangeMax == 0:
	default:
		if r.PortRangeMax == 0 {
			r.PortRangeMax = r.PortRangeMin
		}
		if err := first(checkRange(field+"port_range_min", r.PortRangeMin, 1, 65535),
			checkRange(field+"port_range_max", r.PortRangeMax, 1, 65535)); err != nil {
			return r, err
		}
		if r.PortRangeMin > r.PortRangeMax {
			return r, types.FieldError(field+"port_range_max", "is %d, below port_range_min %d", r.PortRangeMax, r.PortRangeMin)
		}
	}
	if r.RemoteCIDR != "" && in.RemoteGroup != "" {
		return r, types.FieldError(field+"remote_group_id", "give remote_cidr or remote_group_id, not both")
	}
	if r.RemoteCIDR != "" {
		p, err := parseCIDR(field+"remote_cidr", r.RemoteCIDR)
		if err != nil {
			return r, err
		}
		r.RemoteCIDR = p.String()
	}
	if in.RemoteGroup != "" {
		g, err := s.store.GetSecurityGroupIn(c.Request().Context(), projectID, in.RemoteGroup)
		if err != nil {
			return r, refError(field+"remote_group_id", err)
		}
		if g.ProjectID != projectID { // an admin's mistake: members see only their project's groups
			return r, types.FieldError(field+"remote_group_id", "group %s is in another project", g.ID)
		}
		r.RemoteGroupID = g.ID
	}
	return r, nil
}

func (s *Server) createSecurityGroup(c echo.Context) error {
	if err := allow(c, serverWrite...); err != nil {
		return err
	}
	var in types.SecurityGroupCreate
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if err := first(checkName("name", in.Name, maxNameLen), checkDescription(in.Description)); err != nil {
		return err
	}
	if len(in.Rules) > maxRules {
		return types.FieldError("rules", "has %d rules, the limit is %d", len(in.Rules), maxRules)
	}
	project, err := s.portProject(c, in.Project, "")
	if err != nil {
		return err
	}
	out := types.SecurityGroup{Name: in.Name, ProjectID: project, Description: in.Description}
	for i, rc := range in.Rules {
		r, err := s.checkRule(c, project, fmt.Sprintf("rules[%d].", i), rc)
		if err != nil {
			return err
		}
		out.Rules = append(out.Rules, r)
	}
	sg, err := s.store.CreateSecurityGroup(c.Request().Context(), out)
	if err := s.netChanged(c.Request().Context(), err); err != nil {
		return err
	}
	return created(c, sg.ID, sg.Revision, sg, nil)
}

func (s *Server) addRule(c echo.Context) error {
	if err := allow(c, serverWrite...); err != nil {
		return err
	}
	sg, err := s.visibleGroupSG(c)
	if err != nil {
		return err
	}
	var in types.SecurityGroupRuleCreate
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if len(sg.Rules) >= maxRules {
		return types.FieldError("rules", "group %s has %d rules, the limit", sg.ID, maxRules)
	}
	r, err := s.checkRule(c, sg.ProjectID, "", in)
	if err != nil {
		return err
	}
	out, err := s.store.AddSecurityGroupRule(c.Request().Context(), sg.ID, r)
	if err := s.netChanged(c.Request().Context(), err); err != nil {
		return err
	}
	setResource(c, out.ID)
	c.Response().Header().Set("Location", c.Request().URL.Path+"/"+out.ID)
	return c.JSON(http.StatusCreated, out)
}

// ownHostNetwork admits admins, cloud-wide readers, and the host's own
// agent.
func ownHostNetwork(c echo.Context) error {
	if err := allowInfra(c, types.RoleAgent); err != nil {
		return err
	}
	if p := principalOf(c); p.Role == types.RoleAgent && p.HostID != c.Param("id") {
		return types.Errorf(types.CodeForbidden, "an agent may only read its own host's network")
	}
	return nil
}

// hostNetwork answers an agent's watch of its host's desired network
// state. With version= equal to the current state's version it waits (up
// to wait=, at most 50 s) for a change: writes through this corrald wake
// it at once, and the network generation is re-read every 500 ms to see
// writes through other replicas.
func (s *Server) hostNetwork(c echo.Context) error {
	if err := ownHostNetwork(c); err != nil {
		return err
	}
	since := c.QueryParam("version")
	var wait time.Duration
	if w := c.QueryParam("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < 0 || d > maxNetworkWait {
			return types.FieldError("wait", "must be a duration from 0s to %s", maxNetworkWait)
		}
		wait = d
	}
	for k := range c.QueryParams() {
		if k != "version" && k != "wait" {
			return types.FieldError(k, "unknown query parameter").WithDetail("allowed", sorted("version", "wait"))
		}
	}
	s.holdFor(c, wait+longPollMargin)
	ctx := c.Request().Context()
	h, err := s.store.GetHost(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(networkRecheck)
	defer tick.Stop()
	for {
		changed := s.hub.wait(networkWatchKey) // before reading, so no change is missed
		gen, err := s.store.NetworkGeneration(ctx)
		if err != nil {
			return err
		}
		state, err := s.store.HostNetwork(ctx, h.ID)
		if err != nil {
			return err
		}
		state.Version = networkVersion(state)
		if state.Version != since || wait == 0 {
			return c.JSON(http.StatusOK, state)
		}
		for same := true; same; {
			select {
			case <-changed:
				s.metrics.wakeups.WithLabelValues("network", "notify").Inc()
				same = false
			case <-tick.C:
				s.metrics.wakeups.WithLabelValues("network", "recheck").Inc()
				g, err := s.store.NetworkGeneration(ctx)
				if err != nil {
					return err
				}
				same = g == gen
			case <-deadline.C:
				return c.JSON(http.StatusOK, state)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// networkVersion is a digest of a host's state: equal states, equal
// versions, on every replica.
func networkVersion(st types.HostNetwork) string {
	st.Version = ""
	b, _ := json.Marshal(st)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func (s *Server) setTunnelEndpoint(c echo.Context) error {
	if err := allow(c, types.RoleAdmin, types.RoleAgent); err != nil {
		return err
	}
	if p := principalOf(c); p.Role == types.RoleAgent && p.HostID != c.Param("id") {
		return types.Errorf(types.CodeForbidden, "an agent may only set its own host's tunnel endpoint")
	}
	var in types.TunnelEndpoint
	if err := s.decode(c, &in); err != nil {
		return err
	}
	a, err := parseV4("ip", in.IP)
	if err != nil {
		return err
	}
	h, err := s.store.GetHost(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	if err := s.netChanged(c.Request().Context(), s.store.SetTunnelEndpoint(c.Request().Context(), h.ID, a.String())); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
