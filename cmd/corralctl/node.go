package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
)

var nodeKind = &kind[types.Node]{
	name: "node", plural: "nodes", res: func(c *client.Client) client.Collection { return c.Nodes().Collection }, lookup: byAPI,
	headers: []string{"ID", "NAME", "STATE", "POWER", "BMC", "ZONE", "SERVER", "LAST-ERROR"},
	row: func(d types.Node, n *names) []string {
		power := d.PowerState
		if d.BMCFault != "" {
			power += " (bmc fault)"
		}
		return []string{d.ID, d.Name, d.State, power, d.BMC.Address + ":" + itoa(int64(d.BMC.Port)), n.zone(d.ZoneID), n.server(d.ServerID), d.LastError}
	},
	wide: []string{"REGION", "AGGREGATE", "MACS", "CPUS", "RAM-MIB"},
	wideRow: func(d types.Node, n *names) []string {
		return []string{n.region(d.RegionID), n.aggregate(d.AggregateID), join(d.MACs), itoa(d.Hardware.CPUs), itoa(d.Hardware.RAMMiB)}
	},
	filters: []filter{
		{flag: "region", param: "region", usage: "only nodes in this region (ID or name)"},
		{flag: "zone", param: "zone", usage: "only nodes in this zone (ID or name)"},
		{flag: "aggregate", param: "aggregate", usage: "only nodes in this aggregate (ID or name)"},
		{flag: "state", param: "state", usage: "only nodes in this state, e.g. available or error"},
	},
}

// nodeCommand manages bare-metal nodes.
func (a *app) nodeCommand() *cobra.Command {
	k := nodeKind
	var in types.NodeCreate
	var hw types.NodeHardware
	var disk int64
	var key, passwordFile string
	var passwordStdin bool
	create := &cobra.Command{
		Use:   "create NAME --region R --zone Z --bmc-address A --bmc-username U --bmc-password-file F --mac MAC",
		Short: "Enrol a bare-metal node",
		Long: `Enrol a bare-metal node. corrald checks its BMC credentials (enroll →
verifying → manageable); with --provide it goes on to available, inspecting the
hardware first unless --cpus, --ram-mib and --disk-gib give it.

The BMC password is read from a file (--bmc-password-file) or from standard
input (--bmc-password-stdin), never from the command line, where other users
of the machine and the shell history would see it. Its first line is used.`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			in.Name = args[0]
			var err error
			if in.BMC.Password, err = readPassword(passwordFile, passwordStdin, a.stdin); err != nil {
				return err
			}
			if cmd.Flags().Changed("cpus") || cmd.Flags().Changed("ram-mib") || cmd.Flags().Changed("disk-gib") {
				hw.Disks = []types.NodeDisk{{Name: "disk0", SizeBytes: disk << 30}}
				in.Hardware = &hw
			}
			_, err = a.createObject(ctx, k.col(a), in, key)
			return err
		}),
	}
	fl := create.Flags()
	fl.StringVar(&in.Region, "region", "", "region (ID or name)")
	fl.StringVar(&in.Zone, "zone", "", "zone, the rack (ID or name)")
	fl.StringVar(&in.Aggregate, "aggregate", "", "aggregate, the hardware type (ID or name)")
	fl.StringVar(&in.BMC.Address, "bmc-address", "", "BMC address")
	fl.IntVar(&in.BMC.Port, "bmc-port", 623, "BMC UDP port")
	fl.StringVar(&in.BMC.Username, "bmc-username", "", "BMC user")
	fl.StringVar(&passwordFile, "bmc-password-file", "", "file whose first line is the BMC password (stored encrypted, never shown)")
	fl.BoolVar(&passwordStdin, "bmc-password-stdin", false, "read the BMC password from standard input (its first line)")
	fl.StringSliceVar(&in.MACs, "mac", nil, "NIC MAC address; repeat or comma-separate; the first boots from the provisioning network")
	fl.StringVar(&in.ProvisionIP, "provision-ip", "", "fixed address on the provisioning network (default: assigned)")
	fl.Int64Var(&hw.CPUs, "cpus", 0, "CPUs, when known (else inspected)")
	fl.Int64Var(&hw.RAMMiB, "ram-mib", 0, "RAM in MiB, when known")
	fl.Int64Var(&disk, "disk-gib", 0, "disk size in GiB, when known")
	fl.BoolVar(&in.Provide, "provide", false, "make the node available once verified")
	fl.BoolVar(&in.QuickClean, "quick-clean", false, "after a server delete, wipe disk metadata only (default: erase the whole disk)")
	for _, f := range []string{"region", "zone", "bmc-address", "bmc-username", "mac"} {
		create.MarkFlagRequired(f)
	}
	create.MarkFlagsOneRequired("bmc-password-file", "bmc-password-stdin")
	create.MarkFlagsMutuallyExclusive("bmc-password-file", "bmc-password-stdin")
	addIdempotencyFlag(create, &key)

	nodeCall := func(use, short string, call func(ctx context.Context, nodes client.Nodes, args []string) (json.RawMessage, error)) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(2),
			RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
				out, err := call(ctx, a.api.c.Nodes(), args)
				if err != nil {
					return err
				}
				return a.printObject(out)
			})}
	}
	provision := nodeCall("provision ID|NAME manage|provide|inspect|maintenance|clean", "Move a node toward a provisioning target",
		func(ctx context.Context, nodes client.Nodes, args []string) (json.RawMessage, error) {
			return nodes.ProvisionJSON(ctx, args[0], types.NodeProvision{Target: args[1]})
		})
	var quick bool
	clean := &cobra.Command{Use: "clean ID|NAME", Short: "Erase the disks of an idle node (manageable or available)",
		Long: `Erase the disks of an idle node without a server: the deploy ramdisk
zeroes every disk end to end and verifies it (discarding first where the
device supports it). With --quick it wipes only the first and last MiB of
each disk (partition tables, RAID and LVM metadata). The node returns to
the state it was in.`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			out, err := a.api.c.Nodes().ProvisionJSON(ctx, args[0], types.NodeProvision{Target: types.TargetClean, Quick: quick})
			if err != nil {
				return err
			}
			return a.printObject(out)
		})}
	clean.Flags().BoolVar(&quick, "quick", false, "wipe disk metadata only")
	power := nodeCall("power ID|NAME on|off|cycle|soft_off", "Power a node on or off through its BMC",
		func(ctx context.Context, nodes client.Nodes, args []string) (json.RawMessage, error) {
			return nodes.PowerJSON(ctx, args[0], types.NodePower{State: args[1]})
		})

	events := &cobra.Command{Use: "events ID|NAME", Short: "Show a node's history: transitions and power changes", Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			items, _, err := a.api.list(ctx, k.col(a).Sub(args[0], "events"), nil, true)
			if err != nil {
				return err
			}
			switch a.output {
			case formatJSON:
				return writeJSONItems(a.stdout, items)
			case formatYAML:
				return writeYAMLItems(a.stdout, items)
			}
			rows := make([][]string, 0, len(items))
			for _, raw := range items {
				var e types.NodeEvent
				if err := json.Unmarshal(raw, &e); err != nil {
					return err
				}
				rows = append(rows, []string{shortTime(e.At), e.From, e.To, e.Actor, e.Reason})
			}
			return writeTable(a.stdout, []string{"AT", "FROM", "TO", "ACTOR", "REASON"}, rows)
		})}

	return group("node", "Manage bare-metal nodes", listCommand(a, k), showCommand(a, k), create, provision, clean, power, events,
		deleteCommand(a, k, true))
}

// readPassword returns the first line of the password file, or of stdin.
func readPassword(file string, fromStdin bool, stdin io.Reader) (string, error) {
	var data []byte
	var err error
	what := "--bmc-password-stdin"
	if fromStdin {
		data, err = io.ReadAll(io.LimitReader(stdin, 64<<10))
	} else {
		what = "--bmc-password-file " + file
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	if line = strings.TrimSuffix(line, "\r"); line == "" {
		return "", fmt.Errorf("%s: the password is empty", what)
	}
	return line, nil
}
