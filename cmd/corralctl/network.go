package main

import (
	"context"
	"fmt"
	"github.com/corral-cloud/corral/api/client"
	"strings"

	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
)

// This file holds networking (issue 5): networks, subnets, ports and
// security groups.

var networkKind = &kind[types.Network]{
	name: "network", plural: "networks", res: func(c *client.Client) client.Collection { return c.Networks().Collection }, lookup: byAPI,
	headers: []string{"ID", "NAME", "SEGMENT", "PROJECT"},
	row: func(w types.Network, n *names) []string {
		return []string{w.ID, w.Name, segment(w), n.project(w.ProjectID)}
	},
	filters: []filter{{flag: "project", param: "project", usage: "only networks of this project (ID or name)"},
		{flag: "physnet", param: "physnet", usage: "only provider networks of this physical network"}},
}

var subnetKind = &kind[types.Subnet]{
	name: "subnet", plural: "subnets", res: func(c *client.Client) client.Collection { return c.Subnets().Collection }, lookup: byAPI,
	headers: []string{"ID", "NAME", "NETWORK", "CIDR", "GATEWAY", "POOLS"},
	row: func(s types.Subnet, n *names) []string {
		var pools []string
		for _, p := range s.AllocationPools {
			pools = append(pools, p.Start+"-"+p.End)
		}
		return []string{s.ID, s.Name, n.network(s.NetworkID), s.CIDR, s.GatewayIP, join(pools)}
	},
	filters: []filter{{flag: "network", param: "network", usage: "only subnets of this network (ID or name)"}},
}

var portKind = &kind[types.Port]{
	name: "port", plural: "ports", res: func(c *client.Client) client.Collection { return c.Ports().Collection }, lookup: byScan, idPrefix: "port-",
	headers: []string{"ID", "NAME", "NETWORK", "MAC", "IPS", "SERVER", "HOST"},
	row: func(p types.Port, n *names) []string {
		var ips []string
		for _, ip := range p.FixedIPs {
			ips = append(ips, ip.IPAddress)
		}
		return []string{p.ID, p.Name, n.network(p.NetworkID), p.MACAddress, join(ips), p.DeviceID, n.host(p.HostID)}
	},
	filters: []filter{
		{flag: "network", param: "network", usage: "only ports of this network (ID or name)"},
		{flag: "project", param: "project", usage: "only ports of this project (ID or name)"},
		{flag: "host", param: "host", usage: "only ports bound to this host (ID or name)"},
		{flag: "server", param: "device_id", usage: "only ports of this server (ID)"},
	},
}

var securityGroupKind = &kind[types.SecurityGroup]{
	name: "security group", plural: "security groups", res: func(c *client.Client) client.Collection { return c.SecurityGroups().Collection }, lookup: byAPI,
	headers: []string{"ID", "NAME", "PROJECT", "RULES"},
	row: func(g types.SecurityGroup, n *names) []string {
		return []string{g.ID, g.Name, n.project(g.ProjectID), fmt.Sprint(len(g.Rules))}
	},
	filters: []filter{{flag: "project", param: "project", usage: "only groups of this project (ID or name)"}},
}

// networkCommands returns the networking command groups.
func (a *app) networkCommands() []*cobra.Command {
	return []*cobra.Command{a.networkCommand(), a.subnetCommand(), a.portCommand(), a.securityGroupCommand(), a.keypairCommand()}
}

func (a *app) networkCommand() *cobra.Command {
	k := networkKind
	var in types.NetworkCreate
	create := createCommand(a, k, "create NAME --segment-type vlan|vxlan|flat [--segment-id N] [--provider-physnet PHYSNET]",
		"Create a network", &in, func(n string) { in.Name = n })
	f := create.Flags()
	f.StringVar(&in.SegmentType, "segment-type", types.SegmentVLAN, "vlan, vxlan or flat (flat: untagged on --provider-physnet)")
	f.Int64Var(&in.SegmentID, "segment-id", 0, "VLAN ID (1-4094) or VXLAN VNI; none for flat")
	f.StringVar(&in.Physnet, "provider-physnet", "", "physical network of a provider network (vlan or flat): leaves each host on the uplink its agent maps to it (corral-agent --physnet)")
	// Aliases in the words of other clouds' clients.
	f.StringVar(&in.SegmentType, "provider-type", types.SegmentVLAN, "same as --segment-type")
	f.Int64Var(&in.SegmentID, "segment", 0, "same as --segment-id")
	f.StringVar(&in.Project, "project", "", "owning project (ID or name); none means shared")
	f.StringVar(&in.Description, "description", "", "description")
	update := renameCommand(a, k, "Change a network", func(name, desc *string) any {
		return types.NetworkUpdate{Name: name, Description: desc}
	})
	return group("network", "Manage networks (VLAN, VXLAN or flat segments; provider networks on a physical network)",
		listCommand(a, k), showCommand(a, k), create, update, deleteCommand(a, k, true))
}

func (a *app) subnetCommand() *cobra.Command {
	k := subnetKind
	var in types.SubnetCreate
	var pools []string
	create := &cobra.Command{
		Use: "create NAME --network NET --cidr CIDR", Short: "Create a subnet (static IPAM)", Args: cobra.ExactArgs(1),
	}
	var key string
	create.RunE = a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
		in.Name = args[0]
		in.AllocationPools = nil
		for _, p := range pools {
			start, end, ok := strings.Cut(p, "-")
			if !ok {
				return usagef("--pool %q: give START-END", p)
			}
			in.AllocationPools = append(in.AllocationPools, types.IPRange{Start: start, End: end})
		}
		_, err := a.createObject(ctx, k.col(a), in, key)
		return err
	})
	f := create.Flags()
	f.StringVar(&in.Network, "network", "", "the subnet's network (ID or name)")
	f.StringVar(&in.CIDR, "cidr", "", "IPv4 network, e.g. 10.0.0.0/24")
	f.StringVar(&in.GatewayIP, "gateway", "", "gateway address (default: the first host address)")
	f.BoolVar(&in.NoGateway, "no-gateway", false, "no gateway")
	f.StringSliceVar(&pools, "pool", nil, "allocation pool START-END (repeatable; default: the whole CIDR)")
	f.StringSliceVar(&in.DNSServers, "dns", nil, "DNS server (repeatable)")
	f.StringVar(&in.Description, "description", "", "description")
	create.MarkFlagRequired("network")
	create.MarkFlagRequired("cidr")
	addIdempotencyFlag(create, &key)
	update := renameCommand(a, k, "Change a subnet", func(name, desc *string) any {
		return types.SubnetUpdate{Name: name, Description: desc}
	})
	return group("subnet", "Manage subnets",
		listCommand(a, k), showCommand(a, k), create, update, deleteCommand(a, k, true))
}

func (a *app) portCommand() *cobra.Command {
	k := portKind
	var in types.PortCreate
	var ips, groups, pairs []string
	var key string
	create := &cobra.Command{Use: "create NAME --network NET", Short: "Create a port (MAC and fixed IPs)", Args: cobra.ExactArgs(1)}
	create.RunE = a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		in.Name = args[0]
		in.AllowedAddressPairs = addressPairs(pairs)
		in.FixedIPs = nil
		for _, ip := range ips {
			subnet, addr, _ := strings.Cut(ip, "=")
			in.FixedIPs = append(in.FixedIPs, types.FixedIPRequest{Subnet: subnet, IPAddress: addr})
		}
		in.SecurityGroups = nil
		if cmd.Flags().Changed("security-group") {
			in.SecurityGroups = &groups
		}
		_, err := a.createObject(ctx, k.col(a), in, key)
		return err
	})
	f := create.Flags()
	f.StringVar(&in.Network, "network", "", "the port's network (ID or name)")
	f.StringVar(&in.Project, "project", "", "project (ID or name); members use their own")
	f.StringVar(&in.MACAddress, "mac", "", "MAC address (default: a random one)")
	f.StringSliceVar(&ips, "ip", nil, "SUBNET or SUBNET=ADDRESS (repeatable; default: one address from each subnet)")
	f.StringVar(&in.Server, "server", "", "bind to this server (ID)")
	f.StringVar(&in.Host, "host", "", "bind to this host (ID or name; default: the server's host)")
	f.StringSliceVar(&groups, "security-group", nil, "security group (repeatable; default: the project's default group)")
	f.StringArrayVar(&pairs, "allowed-address-pair", nil, "another source the port may send from: IP or CIDR, or IP=MAC (repeatable; e.g. a VIP)")
	f.StringVar(&in.Description, "description", "", "description")
	create.MarkFlagRequired("network")
	addIdempotencyFlag(create, &key)

	var server, host, name string
	var sgs, upPairs []string
	var noPairs bool
	var rev int64
	update := &cobra.Command{
		Use: "update ID", Short: "Change, bind, move or unbind a port (its MAC and addresses stay)", Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			up := types.PortUpdate{Name: optional(cmd, "name", name), Server: optional(cmd, "server", server),
				Host: optional(cmd, "host", host), SecurityGroups: optional(cmd, "security-group", sgs)}
			switch {
			case noPairs && cmd.Flags().Changed("allowed-address-pair"):
				return usagef("give --allowed-address-pair or --no-allowed-address-pairs, not both")
			case noPairs:
				up.AllowedAddressPairs = &[]types.AddressPair{}
			case cmd.Flags().Changed("allowed-address-pair"):
				p := addressPairs(upPairs)
				up.AllowedAddressPairs = &p
			}
			return updateObject(ctx, a, cmd, k, args[0], up, rev)
		}),
	}
	update.Flags().StringVar(&name, "name", "", "new name")
	update.Flags().StringVar(&server, "server", "", "server to bind to; \"\" unbinds")
	update.Flags().StringVar(&host, "host", "", "host to bind to; \"\" unbinds")
	update.Flags().StringSliceVar(&sgs, "security-group", nil, "replace the security groups (repeatable)")
	update.Flags().StringArrayVar(&upPairs, "allowed-address-pair", nil, "replace the allowed address pairs: IP, CIDR or IP=MAC (repeatable)")
	update.Flags().BoolVar(&noPairs, "no-allowed-address-pairs", false, "remove all allowed address pairs")
	addIfMatchFlag(update, &rev)
	return group("port", "Manage ports", listCommand(a, k), showCommand(a, k), create, update, deleteCommand(a, k, true))
}

func (a *app) securityGroupCommand() *cobra.Command {
	k := securityGroupKind
	var in types.SecurityGroupCreate
	create := createCommand(a, k, "create NAME", "Create a security group (add rules with rule-add)", &in, func(n string) { in.Name = n })
	create.Flags().StringVar(&in.Project, "project", "", "project (ID or name); members use their own")
	create.Flags().StringVar(&in.Description, "description", "", "description")
	update := renameCommand(a, k, "Change a security group", func(name, desc *string) any {
		return types.SecurityGroupUpdate{Name: name, Description: desc}
	})

	var rule types.SecurityGroupRuleCreate
	var ports, key string
	ruleAdd := &cobra.Command{
		Use:   "rule-add GROUP --direction ingress|egress [--protocol tcp] [--ports 22 | 8000-8080] [--remote-cidr C | --remote-group G]",
		Short: "Allow traffic to or from a group's ports", Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			rule.PortRangeMin, rule.PortRangeMax = 0, 0
			if ports != "" {
				lo, hi, _ := strings.Cut(ports, "-")
				if _, err := fmt.Sscan(lo, &rule.PortRangeMin); err != nil {
					return usagef("--ports %q: give N or N-M", ports)
				}
				rule.PortRangeMax = rule.PortRangeMin
				if hi != "" {
					if _, err := fmt.Sscan(hi, &rule.PortRangeMax); err != nil {
						return usagef("--ports %q: give N or N-M", ports)
					}
				}
			}
			_, err := a.createObject(ctx, k.col(a).Sub(args[0], "rules"), rule, key)
			return err
		}),
	}
	f := ruleAdd.Flags()
	f.StringVar(&rule.Direction, "direction", "", "ingress or egress")
	f.StringVar(&rule.Protocol, "protocol", types.ProtocolAny, "tcp, udp, icmp or any")
	f.StringVar(&ports, "ports", "", "destination port or range (tcp and udp)")
	f.StringVar(&rule.RemoteCIDR, "remote-cidr", "", "peer range (default 0.0.0.0/0)")
	f.StringVar(&rule.RemoteGroup, "remote-group", "", "peer group (ID or name)")
	ruleAdd.MarkFlagRequired("direction")
	addIdempotencyFlag(ruleAdd, &key)
	ruleDelete := &cobra.Command{
		Use: "rule-delete GROUP RULE-ID", Short: "Remove a rule", Args: cobra.ExactArgs(2),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			if _, err := a.api.delete(ctx, k.col(a).Sub(args[0], "rules"), args[1], 0); err != nil {
				return err
			}
			if a.tabular() {
				fmt.Fprintf(a.stdout, "deleted rule %s\n", args[1])
			}
			return nil
		}),
	}
	return group("security-group", "Manage security groups and their rules",
		listCommand(a, k), showCommand(a, k), create, update, deleteCommand(a, k, true), ruleAdd, ruleDelete)
}

// addressPairs parses --allowed-address-pair values: IP, CIDR or IP=MAC.
// corrald validates them.
func addressPairs(v []string) []types.AddressPair {
	var out []types.AddressPair
	for _, p := range v {
		ip, mac, _ := strings.Cut(p, "=")
		out = append(out, types.AddressPair{IPAddress: ip, MACAddress: mac})
	}
	return out
}

// segment shows a network's segment: "vlan/300", "vxlan/5000", with
// "@physnet" for a provider network ("flat@datacentre" for a flat one).
func segment(n types.Network) string {
	seg := fmt.Sprintf("%s/%d", n.SegmentType, n.SegmentID)
	switch {
	case n.SegmentType == types.SegmentFlat:
		seg = "flat@" + n.Physnet
	case n.Physnet != "":
		seg += "@" + n.Physnet
	}
	return seg
}
