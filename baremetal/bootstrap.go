package baremetal

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/cloudinit"
)

// Bootstrap is what a deployed node's OS reads at its first boot, as
// cloud-init does, exactly what a VM of the same server would: its name,
// the SSH keys of its keypairs, its user data, and its ports' network
// configuration (IPAM addresses, gateway, DNS servers, host routes).
type Bootstrap struct {
	Node store.NodeRow
	// Guest is the server as its guest sees it at first boot
	// (store.ServerGuest); its NICs are the server's ports on the node's
	// NICs, matched by MAC.
	Guest types.GuestSpec
}

// Bootstrapper renders a Bootstrap as a config drive, which the deploy
// agent writes to a partition of the deployed disk (pxe.Config.Bootstrap;
// CloudInit by default).
type Bootstrapper interface {
	ConfigDrive(ctx context.Context, b Bootstrap) (*types.ConfigDrive, error)
}

// CloudInit renders the config drive with package cloudinit, the renderer
// of VMs' seeds, so both kinds of server boot from the same files. The
// NICs are configured statically: the tenant networks' DHCP servers answer
// only ports on hypervisor hosts.
type CloudInit struct {
	// Layout is cloudinit.LayoutNoCloud (the default, label cidata) or
	// cloudinit.LayoutConfigDrive (label config-2).
	Layout string
	// UnderlayMTU is the MTU VXLAN networks are carried over (default
	// 1500): a NIC on one gets it less the overlay, as a VM's does.
	UnderlayMTU int
}

var _ Bootstrapper = CloudInit{}

// ConfigDrive implements Bootstrapper.
func (c CloudInit) ConfigDrive(_ context.Context, b Bootstrap) (*types.ConfigDrive, error) {
	label, files, err := cloudinit.RenderLayout(c.Layout, cloudinit.Guest(b.Guest, false, c.UnderlayMTU))
	if err != nil {
		return nil, fmt.Errorf("config drive of node %s: %w", b.Node.ID, err)
	}
	cd := &types.ConfigDrive{Label: label}
	for _, p := range cloudinit.Paths(files) {
		cd.Files = append(cd.Files, types.ConfigDriveFile{Path: p, Data: files[p]})
	}
	return cd, nil
}

// NodeBootstrap gathers a node's Bootstrap from the store: its server's
// first-boot view, keeping the ports on the node's NICs (a port whose MAC
// is no NIC of the node is cabled nowhere: the conductor reports it).
func NodeBootstrap(ctx context.Context, st NodeStore, r store.NodeRow) (Bootstrap, error) {
	b := Bootstrap{Node: r}
	if r.ServerID == "" {
		return b, fmt.Errorf("node %s has no server", r.ID)
	}
	g, err := st.ServerGuest(ctx, r.ServerID)
	if err != nil {
		return b, fmt.Errorf("server %s: %w", r.ServerID, err)
	}
	macs := r.MACList()
	g.NICs = slices.DeleteFunc(g.NICs, func(n types.GuestNIC) bool {
		return !slices.ContainsFunc(macs, func(m string) bool { return strings.EqualFold(m, n.MAC) })
	})
	b.Guest = g
	return b, nil
}
