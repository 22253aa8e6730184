package compute

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
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

// TestInstance maps a guest spec to cloud-init's instance: DHCP for NICs
// with addresses when the host serves DHCP, static otherwise, the overlay's
// MTU, and the bootstrap's keys and data.
func TestInstance(t *testing.T) {
	g := types.GuestSpec{ServerID: "srv-1", Name: "web-1",
		Bootstrap: &types.GuestBootstrap{Hostname: "web-1", PublicKeys: []string{"ssh-ed25519 AAAA k"}, UserData: []byte("#cloud-config\n")},
		NICs: []types.GuestNIC{{MAC: "02:00:00:00:00:01", IPs: []string{"10.0.0.5/24"}, Gateway: "10.0.0.1", SegmentType: "vxlan",
			DNSServers: []string{"10.0.0.53"}, HostRoutes: []types.HostRoute{{Destination: "172.16.0.0/12", NextHop: "10.0.0.254"}}}}}
	in := Instance(g, true, 1500)
	if in.ID != "srv-1" || in.Hostname != "web-1" || len(in.PublicKeys) != 1 || string(in.UserData) != "#cloud-config\n" {
		t.Errorf("instance %+v", in)
	}
	n := in.NICs[0]
	if !n.DHCP || n.MTU != 1450 || n.Gateway != "10.0.0.1" || len(n.Routes) != 1 || n.Routes[0].Via != "10.0.0.254" {
		t.Errorf("nic %+v", n)
	}
	if Instance(g, false, 1500).NICs[0].DHCP {
		t.Error("DHCP without a DHCP server")
	}
}

// TestWriteISO writes a NoCloud seed and reads it back with isoinfo: the
// label cloud-init looks for, and the files as rendered.
func TestWriteISO(t *testing.T) {
	if _, err := exec.LookPath("isoinfo"); err != nil {
		t.Skip("isoinfo (genisoimage) is not installed")
	}
	out := filepath.Join(t.TempDir(), "seed.iso")
	files := map[string][]byte{"meta-data": []byte("{\"instance-id\": \"srv-1\"}\n"), "user-data": []byte("#cloud-config\n")}
	if err := WriteISO(t.Context(), "cidata", files, out); err != nil {
		t.Fatal(err)
	}
	info, err := exec.Command("isoinfo", "-d", "-i", out).Output()
	if err != nil || !strings.Contains(string(info), "Volume id: cidata") {
		t.Fatalf("isoinfo -d: %v\n%s", err, info)
	}
	for name, want := range files {
		got, err := exec.Command("isoinfo", "-R", "-i", out, "-x", "/"+name).Output()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}
