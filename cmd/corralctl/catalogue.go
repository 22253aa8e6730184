package main

import (
	"context"
	"github.com/corral-cloud/corral/api/client"
	"strconv"

	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
)

// This file holds the simple catalogue resources: regions, zones,
// aggregates, flavors and projects.

var regionKind = &kind[types.Region]{
	name: "region", plural: "regions", res: func(c *client.Client) client.Collection { return c.Regions().Collection }, lookup: byAPI,
	headers: []string{"ID", "NAME", "DESCRIPTION"},
	row:     func(r types.Region, n *names) []string { return []string{r.ID, r.Name, r.Description} },
}

func (a *app) regionCommand() *cobra.Command {
	k := regionKind
	var in types.RegionCreate
	create := createCommand(a, k, "create NAME", "Create a region (a datacenter)", &in, func(n string) { in.Name = n })
	create.Flags().StringVar(&in.Description, "description", "", "description")
	update := renameCommand(a, k, "Change a region", func(name, desc *string) any {
		return types.RegionUpdate{Name: name, Description: desc}
	})

	return group("region", "Manage regions (datacenters)",
		listCommand(a, k), showCommand(a, k), create, update, deleteCommand(a, k, true))
}

var zoneKind = &kind[types.Zone]{
	name: "zone", plural: "zones", res: func(c *client.Client) client.Collection { return c.Zones().Collection }, lookup: byAPI,
	headers: []string{"ID", "NAME", "REGION", "DESCRIPTION"},
	row: func(z types.Zone, n *names) []string {
		return []string{z.ID, z.Name, n.region(z.RegionID), z.Description}
	},
	filters: []filter{{flag: "region", param: "region", usage: "only zones in this region (ID or name)"}},
}

func (a *app) zoneCommand() *cobra.Command {
	k := zoneKind
	var in types.ZoneCreate
	create := createCommand(a, k, "create NAME --region REGION", "Create a zone (a rack) in a region", &in, func(n string) { in.Name = n })
	create.Flags().StringVar(&in.Region, "region", "", "the zone's region (ID or name); a zone never moves")
	create.Flags().StringVar(&in.Description, "description", "", "description")
	create.MarkFlagRequired("region")
	update := renameCommand(a, k, "Change a zone", func(name, desc *string) any {
		return types.ZoneUpdate{Name: name, Description: desc}
	})

	return group("zone", "Manage zones (racks)",
		listCommand(a, k), showCommand(a, k), create, update, deleteCommand(a, k, true))
}

var aggregateKind = &kind[types.Aggregate]{
	name: "aggregate", plural: "aggregates", res: func(c *client.Client) client.Collection { return c.Aggregates().Collection }, lookup: byAPI,
	headers: []string{"ID", "NAME", "TRAITS", "CPU-RATIO", "RAM-RATIO", "WEIGHER"},
	row: func(g types.Aggregate, n *names) []string {
		return []string{g.ID, g.Name, join(g.Traits), ratio(g.CPUAllocationRatio), ratio(g.RAMAllocationRatio), g.Weigher}
	},
}

func ratio(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// aggregateFlags are the flags shared by aggregate create and update.
type aggregateFlags struct {
	traits                []string
	cpuRatio, ramRatio    float64
	reservedMiB, reserved int64
	weigher, description  string
}

func (f *aggregateFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringSliceVar(&f.traits, "traits", nil, "traits of the hosts, comma-separated (e.g. ssd,avx2)")
	fl.Float64Var(&f.cpuRatio, "cpu-allocation-ratio", 1, "vCPUs allocatable per physical CPU")
	fl.Float64Var(&f.ramRatio, "ram-allocation-ratio", 1, "guest RAM allocatable per MiB of host RAM")
	fl.Int64Var(&f.reservedMiB, "reserved-memory-mib", 0, "memory kept back on every host for the host itself")
	fl.Int64Var(&f.reserved, "reserved-cpus", 0, "CPUs kept back on every host for the host itself")
	fl.StringVar(&f.weigher, "weigher", "", "default placement policy: pack or spread (default spread)")
	fl.StringVar(&f.description, "description", "", "description")
}

func (a *app) aggregateCommand() *cobra.Command {
	k := aggregateKind
	var cf aggregateFlags
	var key string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create an aggregate (a hardware type)", Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			in := types.AggregateCreate{Name: args[0], Traits: cf.traits,
				CPUAllocationRatio: optional(cmd, "cpu-allocation-ratio", cf.cpuRatio),
				RAMAllocationRatio: optional(cmd, "ram-allocation-ratio", cf.ramRatio),
				ReservedMemoryMiB:  cf.reservedMiB, ReservedCPUs: cf.reserved, Weigher: cf.weigher, Description: cf.description}
			_, err := a.createObject(ctx, k.col(a), in, key)
			return err
		}),
	}
	cf.add(create)
	addIdempotencyFlag(create, &key)

	var uf aggregateFlags
	var name string
	var rev int64
	update := &cobra.Command{
		Use: "update ID|NAME", Short: "Change an aggregate", Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			up := types.AggregateUpdate{
				Name:               optional(cmd, "name", name),
				Traits:             optional(cmd, "traits", nonNil(uf.traits)),
				CPUAllocationRatio: optional(cmd, "cpu-allocation-ratio", uf.cpuRatio),
				RAMAllocationRatio: optional(cmd, "ram-allocation-ratio", uf.ramRatio),
				ReservedMemoryMiB:  optional(cmd, "reserved-memory-mib", uf.reservedMiB),
				ReservedCPUs:       optional(cmd, "reserved-cpus", uf.reserved),
				Weigher:            optional(cmd, "weigher", uf.weigher),
				Description:        optional(cmd, "description", uf.description),
			}
			return updateObject(ctx, a, cmd, k, args[0], up, rev)
		}),
	}
	update.Flags().StringVar(&name, "name", "", "new name")
	uf.add(update)
	addIfMatchFlag(update, &rev)

	return group("aggregate", "Manage aggregates (hardware types and their overcommit policy)",
		listCommand(a, k), showCommand(a, k), create, update, deleteCommand(a, k, true))
}

// nonNil returns v, or an empty list for nil: --traits "" clears the
// list, which must be sent as [] rather than null.
func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

var flavorKind = &kind[types.Flavor]{
	name: "flavor", plural: "flavors", res: func(c *client.Client) client.Collection { return c.Flavors().Collection }, lookup: byAPI,
	headers: []string{"ID", "NAME", "KIND", "VCPUS", "RAM-MIB", "DISK-GIB", "HUGEPAGES"},
	row: func(f types.Flavor, n *names) []string {
		return []string{f.ID, f.Name, f.Kind, itoa(f.VCPUs), itoa(f.RAMMiB), itoa(f.DiskGiB), strconv.FormatBool(f.Hugepages)}
	},
	filters: []filter{{flag: "kind", param: "kind", usage: "only flavors of this kind: vm or baremetal"}},
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (a *app) flavorCommand() *cobra.Command {
	k := flavorKind
	var in types.FlavorCreate
	create := createCommand(a, k, "create NAME --vcpus N --ram-mib N", "Create a flavor (a server size)", &in, func(n string) { in.Name = n })
	fl := create.Flags()
	fl.StringVar(&in.Kind, "kind", "", "kind of server sized: vm or baremetal (default vm)")
	fl.Int64Var(&in.VCPUs, "vcpus", 0, "virtual CPUs")
	fl.Int64Var(&in.RAMMiB, "ram-mib", 0, "memory in MiB")
	fl.Int64Var(&in.DiskGiB, "disk-gib", 0, "root disk in GiB")
	fl.BoolVar(&in.Hugepages, "hugepages", false, "back guest memory with hugepages (vm only; never overcommitted)")
	fl.Int64Var(&in.QoS.NetInKbps, "net-in-kbps", 0, "inbound network limit in kbit/s (0: none)")
	fl.Int64Var(&in.QoS.NetOutKbps, "net-out-kbps", 0, "outbound network limit in kbit/s (0: none)")
	fl.Int64Var(&in.QoS.DiskIOPS, "disk-iops", 0, "disk operations per second (0: no limit)")
	fl.Int64Var(&in.QoS.DiskBytesSec, "disk-bytes-sec", 0, "disk bytes per second (0: no limit)")
	fl.StringVar(&in.Description, "description", "", "description")
	create.MarkFlagRequired("vcpus")
	create.MarkFlagRequired("ram-mib")
	update := renameCommand(a, k, "Rename or describe a flavor (sizes never change: create a new flavor)", func(name, desc *string) any {
		return types.FlavorUpdate{Name: name, Description: desc}
	})

	return group("flavor", "Manage flavors (server sizes)",
		listCommand(a, k), showCommand(a, k), create, update, deleteCommand(a, k, true))
}

var projectKind = &kind[types.Project]{
	name: "project", plural: "projects", res: func(c *client.Client) client.Collection { return c.Projects().Collection }, lookup: byAPI,
	headers: []string{"ID", "NAME", "DESCRIPTION"},
	row:     func(p types.Project, n *names) []string { return []string{p.ID, p.Name, p.Description} },
}

func (a *app) projectCommand() *cobra.Command {
	k := projectKind
	var in types.ProjectCreate
	create := createCommand(a, k, "create NAME", "Create a project (a tenant)", &in, func(n string) { in.Name = n })
	create.Flags().StringVar(&in.Description, "description", "", "description")
	update := renameCommand(a, k, "Change a project", func(name, desc *string) any {
		return types.ProjectUpdate{Name: name, Description: desc}
	})

	return group("project", "Manage projects (tenants)",
		listCommand(a, k), showCommand(a, k), create, update, deleteCommand(a, k, true))
}
