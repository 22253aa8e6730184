package baremetal

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// Bootstrap is what a deployed node's OS reads at its first boot, as
// cloud-init does: its name, its network configuration (each NIC's
// port's IPAM address, gateway and DNS servers), and the tenant's SSH keys
// and user data.
type Bootstrap struct {
	Node   store.NodeRow
	Server types.Server
	// NICs are the node's NICs with their ports; Subnets the ports'
	// subnets by ID.
	NICs    []NICPort
	Subnets map[string]types.Subnet
}

// Bootstrapper renders a Bootstrap as a config drive, which the deploy
// agent writes to a partition of the deployed disk.
//
// NoCloud is the implementation in this package: instance ID, hostname
// and network configuration. Keypairs and user data come from the
// server-create API and its renderer (the guest bootstrap shared with
// VMs); that renderer connects here by implementing Bootstrapper (or by
// filling NoCloud's user-data and public keys), which is the hook left
// for it: nothing else in bare metal needs to change.
type Bootstrapper interface {
	ConfigDrive(ctx context.Context, b Bootstrap) (*types.ConfigDrive, error)
}

// NoCloud renders cloud-init's NoCloud seed (label "cidata"): meta-data
// (instance-id, local-hostname), user-data (an empty #cloud-config until
// user data exists) and, when the server has ports, network-config
// (version 2): each NIC with a port, matched by MAC, gets the port's
// addresses, its subnet's gateway as default route and its DNS servers.
type NoCloud struct{}

var _ Bootstrapper = NoCloud{}

// ConfigDrive implements Bootstrapper.
func (NoCloud) ConfigDrive(_ context.Context, b Bootstrap) (*types.ConfigDrive, error) {
	meta := fmt.Sprintf("instance-id: %s\nlocal-hostname: %s\n", b.Server.ID, b.Server.Name)
	cd := &types.ConfigDrive{Label: "cidata", Files: []types.ConfigDriveFile{
		{Path: "meta-data", Data: []byte(meta)},
		{Path: "user-data", Data: []byte("#cloud-config\n")},
	}}
	var nc strings.Builder
	nc.WriteString("version: 2\nethernets:\n")
	n := 0
	for i, nic := range b.NICs {
		if nic.Port == nil || len(nic.Port.FixedIPs) == 0 {
			continue
		}
		n++
		fmt.Fprintf(&nc, "  nic%d:\n    match:\n      macaddress: %q\n    addresses:\n", i, strings.ToLower(nic.NIC.MAC))
		var gw string
		var dns []string
		for _, ip := range nic.Port.FixedIPs {
			sn, ok := b.Subnets[ip.SubnetID]
			if !ok {
				return nil, fmt.Errorf("port %s: subnet %s unknown", nic.Port.ID, ip.SubnetID)
			}
			p, err := netip.ParsePrefix(sn.CIDR)
			if err != nil {
				return nil, fmt.Errorf("subnet %s: %w", sn.ID, err)
			}
			fmt.Fprintf(&nc, "      - %s/%d\n", ip.IPAddress, p.Bits())
			if gw == "" {
				gw = sn.GatewayIP
			}
			dns = append(dns, sn.DNSServers...)
		}
		if gw != "" {
			fmt.Fprintf(&nc, "    routes:\n      - to: 0.0.0.0/0\n        via: %s\n", gw)
		}
		if len(dns) > 0 {
			fmt.Fprintf(&nc, "    nameservers:\n      addresses: [%s]\n", strings.Join(dns, ", "))
		}
	}
	if n > 0 {
		cd.Files = append(cd.Files, types.ConfigDriveFile{Path: "network-config", Data: []byte(nc.String())})
	}
	return cd, nil
}

// NodeBootstrap gathers a node's Bootstrap from the store: its server,
// NICs with their ports, and the ports' subnets.
func NodeBootstrap(ctx context.Context, st NodeStore, r store.NodeRow) (Bootstrap, error) {
	b := Bootstrap{Node: r, Subnets: map[string]types.Subnet{}}
	if r.ServerID == "" {
		return b, fmt.Errorf("node %s has no server", r.ID)
	}
	var err error
	if b.Server, err = st.GetServer(ctx, r.ServerID); err != nil {
		return b, fmt.Errorf("server %s: %w", r.ServerID, err)
	}
	if b.NICs, _, err = NodePorts(ctx, st, r); err != nil {
		return b, err
	}
	for _, n := range b.NICs {
		if n.Port == nil {
			continue
		}
		for _, ip := range n.Port.FixedIPs {
			if _, ok := b.Subnets[ip.SubnetID]; ok {
				continue
			}
			sn, err := st.GetSubnet(ctx, ip.SubnetID)
			if err != nil {
				return b, fmt.Errorf("subnet %s: %w", ip.SubnetID, err)
			}
			b.Subnets[sn.ID] = sn
		}
	}
	return b, nil
}
