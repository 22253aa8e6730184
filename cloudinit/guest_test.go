package cloudinit

import (
	"testing"

	"github.com/corral-cloud/corral/api/types"
)

func TestGuestMTU(t *testing.T) {
	for _, tc := range []struct {
		seg      string
		underlay int
		want     int
	}{{"vlan", 0, 1500}, {"vxlan", 0, 1450}, {"vxlan", 9000, 8950}, {"vlan", 9000, 9000}} {
		if got := GuestMTU(tc.seg, tc.underlay); got != tc.want {
			t.Errorf("GuestMTU(%s, %d) = %d, want %d", tc.seg, tc.underlay, got, tc.want)
		}
	}
}

// TestGuest maps a guest spec to cloud-init's instance: DHCP for NICs
// with addresses when the host serves DHCP, static otherwise, the overlay's
// MTU, and the bootstrap's keys and data.
func TestGuest(t *testing.T) {
	g := types.GuestSpec{ServerID: "srv-1", Name: "web-1",
		Bootstrap: &types.GuestBootstrap{Hostname: "web-1", PublicKeys: []string{"ssh-ed25519 AAAA k"}, UserData: []byte("#cloud-config\n")},
		NICs: []types.GuestNIC{{MAC: "02:00:00:00:00:01", IPs: []string{"10.0.0.5/24"}, Gateway: "10.0.0.1", SegmentType: "vxlan",
			DNSServers: []string{"10.0.0.53"}, HostRoutes: []types.HostRoute{{Destination: "172.16.0.0/12", NextHop: "10.0.0.254"}}}}}
	in := Guest(g, true, 1500)
	if in.ID != "srv-1" || in.Hostname != "web-1" || len(in.PublicKeys) != 1 || string(in.UserData) != "#cloud-config\n" {
		t.Errorf("instance %+v", in)
	}
	n := in.NICs[0]
	if !n.DHCP || n.MTU != 1450 || n.Gateway != "10.0.0.1" || len(n.Routes) != 1 || n.Routes[0].Via != "10.0.0.254" {
		t.Errorf("nic %+v", n)
	}
	if Guest(g, false, 1500).NICs[0].DHCP {
		t.Error("DHCP without a DHCP server")
	}
}
