package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
)

// This file holds networking (issue 5): networks, subnets, ports and
// security groups.

var networkKind = &kind[types.Network]{
	name: "network", plural: "networks", path: "/v1/networks", lookup: byAPI,
	headers: []string{"ID", "NAME", "SEGMENT", "PROJECT"},
	row: func(n types.Network) []string {
		return []string{n.ID, n.Name, fmt.Sprintf("%s/%d", n.SegmentType, n.SegmentID), n.ProjectID}
	},
	filters: []filter{{flag: "project", param: "project", usage: "only networks of this project (ID or name)"}},
}

var subnetKind = &kind[types.Subnet]{
	name: "subnet", plural: "subnets", path: "/v1/subnets", lookup: byAPI,
	headers: []string{"ID", "NAME", "NETWORK", "CIDR", "GATEWAY", "POOLS"},
	row: func(s types.Subnet) []string {
		var pools []string
		for _, p := range s.AllocationPools {
			pools = append(pools, p.Start+"-"+p.End)
		}
		return []string{s.ID, s.Name, s.NetworkID, s.CIDR, s.GatewayIP, join(pools)}
	},
	filters: []filter{{flag: "network", param: "network", usage: "only subnets of this network (ID or name)"}},
}

var portKind = &kind[types.Port]{
	name: "port", plural: "ports", path: "/v1/ports", lookup: byScan,
	headers: []string{"ID", "NAME", "NETWORK", "MAC", "IPS", "SERVER", "HOST"},
	row: func(p types.Port) []string {
		var ips []string
		for _, ip := range p.FixedIPs {
			ips = append(ips, ip.IPAddress)
		}
		return []string{p.ID, p.Name, p.NetworkID, p.MACAddress, join(ips), p.DeviceID, p.HostID}
	},
	filters: []filter{
		{flag: "network", param: "network", usage: "only ports of this network (ID or name)"},
		{flag: "project", param: "project", usage: "only ports of this project (ID or name)"},
		{flag: "host", param: "host", usage: "only ports bound to this host (ID or name)"},
		{flag: "server", param: "device_id", usage: "only ports of this server (ID)"},
	},
}

var securityGroupKind = &kind[types.SecurityGroup]{
	name: "security group", plural: "security groups", path: "/v1/security-groups", lookup: byAPI,
	headers: []string{"ID", "NAME", "PROJECT", "RULES"},
	row: func(g types.SecurityGroup) []string {
		return []string{g.ID, g.Name, g.ProjectID, fmt.Sprint(len(g.Rules))}
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
	create := createCommand(a, k, "create NAME --segment-type vlan|vxlan --segment-id N", "Create a network", &in,
		func(n string) { in.Name = n })
	create.Flags().StringVar(&in.SegmentType, "segment-type", types.SegmentVLAN, "vlan or vxlan")
	create.Flags().Int64Var(&in.SegmentID, "segment-id", 0, "VLAN ID (1-4094) or VXLAN VNI")
	create.Flags().StringVar(&in.Project, "project", "", "owning project (ID or name); none means shared")
	create.Flags().StringVar(&in.Description, "description", "", "description")
	create.MarkFlagRequired("segment-id")
	update := renameCommand(a, k, "Change a network", func(name, desc *string) any {
		return types.NetworkUpdate{Name: name, Description: desc}
	})
	return group("network", "Manage networks (VLAN or VXLAN segments)",
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
		_, err := a.createObject(ctx, k.path, in, key)
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
	var ips, groups []string
	var key string
	create := &cobra.Command{Use: "create NAME --network NET", Short: "Create a port (MAC and fixed IPs)", Args: cobra.ExactArgs(1)}
	create.RunE = a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		in.Name = args[0]
		in.FixedIPs = nil
		for _, ip := range ips {
			subnet, addr, _ := strings.Cut(ip, "=")
			in.FixedIPs = append(in.FixedIPs, types.FixedIPRequest{Subnet: subnet, IPAddress: addr})
		}
		in.SecurityGroups = nil
		if cmd.Flags().Changed("security-group") {
			in.SecurityGroups = &groups
		}
		_, err := a.createObject(ctx, k.path, in, key)
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
	f.StringVar(&in.Description, "description", "", "description")
	create.MarkFlagRequired("network")
	addIdempotencyFlag(create, &key)

	var server, host, name string
	var sgs []string
	var rev int64
	update := &cobra.Command{
		Use: "update ID", Short: "Change, bind, move or unbind a port (its MAC and addresses stay)", Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			up := types.PortUpdate{Name: optional(cmd, "name", name), Server: optional(cmd, "server", server),
				Host: optional(cmd, "host", host), SecurityGroups: optional(cmd, "security-group", sgs)}
			return updateObject(ctx, a, cmd, k, args[0], up, rev)
		}),
	}
	update.Flags().StringVar(&name, "name", "", "new name")
	update.Flags().StringVar(&server, "server", "", "server to bind to; \"\" unbinds")
	update.Flags().StringVar(&host, "host", "", "host to bind to; \"\" unbinds")
	update.Flags().StringSliceVar(&sgs, "security-group", nil, "replace the security groups (repeatable)")
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
			_, err := a.createObject(ctx, objectPath(k.path, args[0])+"/rules", rule, key)
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
			if err := a.api.delete(ctx, objectPath(k.path, args[0])+"/rules/"+args[1], 0); err != nil {
				return err
			}
			if a.output == formatTable {
				fmt.Fprintf(a.stdout, "deleted rule %s\n", args[1])
			}
			return nil
		}),
	}
	return group("security-group", "Manage security groups and their rules",
		listCommand(a, k), showCommand(a, k), create, update, deleteCommand(a, k, true), ruleAdd, ruleDelete)
}
