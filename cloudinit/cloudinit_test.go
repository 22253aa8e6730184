package cloudinit

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func instance() Instance {
	return Instance{ID: "srv-0001", Hostname: "Web_1", PublicKeys: []string{"ssh-ed25519 AAAAC3Nza test@corral"},
		UserData: []byte("#cloud-config\nruncmd:\n  - echo hi\n"),
		NICs: []NIC{
			{MAC: "52:54:00:AA:00:01", DHCP: true, Addresses: []string{"10.0.0.5/24"}, Gateway: "10.0.0.1", MTU: 1450},
			{MAC: "52:54:00:aa:00:02", Addresses: []string{"10.1.0.7/24"}, Gateway: "10.1.0.1", DNSServers: []string{"10.1.0.53"},
				MTU: 1500, Routes: []Route{{To: "172.16.0.0/12", Via: "10.1.0.254"}}},
		}}
}

// TestGolden compares the rendered seeds with testdata/<case>/<file>;
// refresh with go test -update.
func TestGolden(t *testing.T) {
	noKeys := instance()
	noKeys.PublicKeys, noKeys.UserData, noKeys.NICs = nil, nil, nil
	for _, tc := range []struct {
		name   string
		render func(Instance) (map[string][]byte, error)
		in     Instance
	}{
		{"nocloud", Render, instance()},
		{"nocloud-bare", Render, noKeys},
		{"configdrive", RenderConfigDrive, instance()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, err := tc.render(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join("testdata", tc.name)
			if *update {
				os.RemoveAll(dir)
				for _, p := range Paths(files) {
					os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
					if err := os.WriteFile(filepath.Join(dir, p), files[p], 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			got := map[string]string{}
			for p, b := range files {
				got[p] = string(b)
			}
			want := map[string]string{}
			filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					b, _ := os.ReadFile(p)
					rel, _ := filepath.Rel(dir, p)
					want[rel] = string(b)
				}
				return nil
			})
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("rendered files differ from %s (-want +got):\n%s", dir, diff)
			}
		})
	}
}

func TestHostname(t *testing.T) {
	for in, want := range map[string]string{"web-1": "web-1", "Web_1.Prod": "web-1-prod", "--": "guest",
		strings.Repeat("a", 70): strings.Repeat("a", 63)} {
		if got := Hostname(in); got != want {
			t.Errorf("Hostname(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	for name, in := range map[string]Instance{
		"no id":       {Hostname: "x"},
		"no mac":      {ID: "i", Hostname: "x", NICs: []NIC{{}}},
		"bad address": {ID: "i", Hostname: "x", NICs: []NIC{{MAC: "m", Addresses: []string{"10.0.0.5"}}}},
		"bad route":   {ID: "i", Hostname: "x", NICs: []NIC{{MAC: "m", Routes: []Route{{To: "x"}}}}},
	} {
		if _, err := Render(in); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
}
