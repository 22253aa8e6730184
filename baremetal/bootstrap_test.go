package baremetal_test

import (
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
	"github.com/google/go-cmp/cmp"
)

// TestNoCloud: the config drive of a node whose server has a port holds
// the server's name and ID, and a network-config giving the NIC (by MAC)
// the port's IPAM address, the subnet's gateway and DNS servers.
func TestNoCloud(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	n, srv, _ := r.claimed("bm1", 9631)
	net := must(t, func() (types.Network, error) {
		return r.st.CreateNetwork(ctx, types.Network{Name: "tenant", SegmentType: types.SegmentVLAN, SegmentID: 210})
	})
	sn := must(t, func() (types.Subnet, error) {
		return r.st.CreateSubnet(ctx, types.Subnet{NetworkID: net.ID, Name: "v4", CIDR: "10.90.0.0/24", GatewayIP: "10.90.0.1",
			AllocationPools: []types.IPRange{{Start: "10.90.0.10", End: "10.90.0.20"}}, DNSServers: []string{"10.90.0.53"}})
	})
	must(t, func() (types.Port, error) {
		return r.st.CreatePort(ctx, store.PortSpec{Port: types.Port{NetworkID: net.ID, ProjectID: r.project.ID, DeviceID: srv.ID,
			MACAddress: "52:54:00:00:00:01"}, IPs: []types.FixedIP{{SubnetID: sn.ID, IPAddress: "10.90.0.15"}}})
	})
	b := must(t, func() (baremetal.Bootstrap, error) { return baremetal.NodeBootstrap(ctx, r.st, r.row(n.ID)) })
	cd := must(t, func() (*types.ConfigDrive, error) { return baremetal.NoCloud{}.ConfigDrive(ctx, b) })
	got := map[string]string{}
	for _, f := range cd.Files {
		got[f.Path] = string(f.Data)
	}
	want := map[string]string{
		"meta-data": "instance-id: " + srv.ID + "\nlocal-hostname: web-bm1\n",
		"user-data": "#cloud-config\n",
		"network-config": `version: 2
ethernets:
  nic0:
    match:
      macaddress: "52:54:00:00:00:01"
    addresses:
      - 10.90.0.15/24
    routes:
      - to: 0.0.0.0/0
        via: 10.90.0.1
    nameservers:
      addresses: [10.90.0.53]
`,
	}
	if cd.Label != "cidata" {
		t.Errorf("label %q", cd.Label)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}
