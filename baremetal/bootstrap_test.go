package baremetal_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
	"github.com/corral-cloud/corral/cloudinit"
	"github.com/google/go-cmp/cmp"
)

// TestCloudInitBootstrap: a node's config drive is its server's guest
// rendered by cloudinit, as a VM's seed is: name, keys and user data from
// the server's bootstrap, and the port on the node's NIC (by MAC) with its
// IPAM address, gateway and DNS servers, configured statically; a port
// whose MAC is no NIC of the node is left out. The ConfigDrive layout
// gives the OpenStack files under config-2.
func TestCloudInitBootstrap(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	r.bmcs.Add("127.0.0.1", 9631, "secret")
	n := r.enrol(r.node("bm1", 9631).provide().hardware())
	if row := r.settle(n.ID); row.State != types.NodeAvailable {
		t.Fatalf("node is %s", row.State)
	}
	boot := &store.ServerBootstrap{KeyNames: []string{"ops"}, PublicKeys: []string{"ssh-ed25519 AAAAC3Nza ops@corral"},
		UserData: []byte("#cloud-config\nruncmd: [echo hi]\n")}
	srv := must(t, func() (types.Server, error) {
		return r.st.ClaimNodeAndCreateServer(ctx, n.ID, types.Server{Name: "web-bm1", Kind: types.KindBaremetal,
			ProjectID: r.project.ID, FlavorID: r.flavor.ID, ImageID: r.image.ID, DesiredState: "active"}, boot, "test")
	})
	net := must(t, func() (types.Network, error) {
		return r.st.CreateNetwork(ctx, types.Network{Name: "tenant", SegmentType: types.SegmentVLAN, SegmentID: 210})
	})
	sn := must(t, func() (types.Subnet, error) {
		return r.st.CreateSubnet(ctx, types.Subnet{NetworkID: net.ID, Name: "v4", CIDR: "10.90.0.0/24", GatewayIP: "10.90.0.1",
			AllocationPools: []types.IPRange{{Start: "10.90.0.10", End: "10.90.0.20"}}, DNSServers: []string{"10.90.0.53"}})
	})
	mac := r.row(n.ID).MACList()[0]
	for i, m := range []string{strings.ToUpper(mac), "52:54:00:99:99:99"} {
		must(t, func() (types.Port, error) {
			return r.st.CreatePort(ctx, store.PortSpec{Port: types.Port{NetworkID: net.ID, ProjectID: r.project.ID, DeviceID: srv.ID,
				MACAddress: m}, IPs: []types.FixedIP{{SubnetID: sn.ID, IPAddress: []string{"10.90.0.15", "10.90.0.16"}[i]}}})
		})
	}
	b := must(t, func() (baremetal.Bootstrap, error) { return baremetal.NodeBootstrap(ctx, r.st, r.row(n.ID)) })
	cd := must(t, func() (*types.ConfigDrive, error) { return baremetal.CloudInit{}.ConfigDrive(ctx, b) })
	got := map[string]string{}
	for _, f := range cd.Files {
		got[f.Path] = string(f.Data)
	}
	want := map[string]string{
		"meta-data": `{
  "instance-id": "` + srv.ID + `",
  "local-hostname": "web-bm1",
  "public-keys": [
    "ssh-ed25519 AAAAC3Nza ops@corral"
  ]
}
`,
		"user-data": "#cloud-config\nruncmd: [echo hi]\n",
		"network-config": `{
  "ethernets": {
    "eth0": {
      "addresses": [
        "10.90.0.15/24"
      ],
      "dhcp4": false,
      "match": {
        "macaddress": "` + strings.ToLower(mac) + `"
      },
      "mtu": 1500,
      "nameservers": {
        "addresses": [
          "10.90.0.53"
        ]
      },
      "routes": [
        {
          "to": "0.0.0.0/0",
          "via": "10.90.0.1"
        }
      ]
    }
  },
  "version": 2
}
`,
	}
	if cd.Label != cloudinit.LabelNoCloud {
		t.Errorf("label %q", cd.Label)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}

	cd = must(t, func() (*types.ConfigDrive, error) {
		return baremetal.CloudInit{Layout: cloudinit.LayoutConfigDrive}.ConfigDrive(ctx, b)
	})
	var paths []string
	var meta struct {
		UUID string            `json:"uuid"`
		Keys map[string]string `json:"public_keys"`
	}
	for _, f := range cd.Files {
		paths = append(paths, f.Path)
		if f.Path == "openstack/latest/meta_data.json" {
			json.Unmarshal(f.Data, &meta)
		}
	}
	if cd.Label != cloudinit.LabelConfigDrive || !cmp.Equal(paths, []string{"openstack/latest/meta_data.json",
		"openstack/latest/network_data.json", "openstack/latest/user_data"}) || meta.UUID != srv.ID || meta.Keys["key-0"] != boot.PublicKeys[0] {
		t.Errorf("configdrive layout: %s %v %+v", cd.Label, paths, meta)
	}
	if _, err := (baremetal.CloudInit{Layout: "floppy"}).ConfigDrive(ctx, b); err == nil {
		t.Error("an unknown layout rendered")
	}
}
