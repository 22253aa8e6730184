package baremetal_test

import (
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/corral-cloud/corral/baremetal"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func TestRender(t *testing.T) {
	_, subnet, _ := net.ParseCIDR("10.79.5.0/24")
	golden(t, "dnsmasq.conf", baremetal.Dnsmasq(baremetal.DnsmasqConfig{Interface: "prov0", Subnet: subnet,
		BootURL: "http://10.79.5.1:8089/boot.ipxe", TFTPRoot: "/usr/lib/ipxe", HostsFile: "/var/lib/corral/pxe/hosts",
		LeaseFile: "/var/lib/corral/pxe/leases", PIDFile: "/var/lib/corral/pxe/dnsmasq.pid", LogFile: "/var/lib/corral/pxe/dnsmasq.log"}))
	golden(t, "hosts", baremetal.DHCPHosts([]baremetal.DHCPHost{{MAC: "52:54:00:00:00:02", IP: "10.79.5.11"},
		{MAC: "52:54:00:00:00:01", IP: "10.79.5.10"}}))
	golden(t, "chain.ipxe", baremetal.IPXEChain("http://10.79.5.1:8089"))
	golden(t, "deploy.ipxe", baremetal.IPXERamdisk(baremetal.RamdiskBoot{BaseURL: "http://10.79.5.1:8089", NodeID: "node-1",
		Name: "bm1", State: "deploying", Mode: "deploy", Token: "t0k"}))
	golden(t, "local.ipxe", baremetal.IPXELocal("bm1", "active"))
}

func TestKeyring(t *testing.T) {
	k, err := baremetal.NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	s1, _ := k.Seal("secret")
	s2, _ := k.Seal("secret")
	if s1 == s2 {
		t.Error("two seals of one value are equal: the nonce is not random")
	}
	if p, err := k.Open(s1); err != nil || p != "secret" {
		t.Errorf("open = %q, %v", p, err)
	}
	other, _ := baremetal.NewKeyring([]byte("0123456789abcdef0123456789abcdef"))
	if _, err := other.Open(s1); err != baremetal.ErrBadSeal {
		t.Errorf("open with another key: %v", err)
	}
	if _, err := k.Open(s1[:len(s1)-2] + "AA"); err != baremetal.ErrBadSeal {
		t.Errorf("tampered value opened: %v", err)
	}
	if _, err := baremetal.NewKeyring([]byte("short")); err == nil {
		t.Error("short key accepted")
	}
	path := filepath.Join(t.TempDir(), "bmc.key")
	k1, made, err := baremetal.LoadKeyFile(path, true)
	if err != nil || !made {
		t.Fatalf("create key file: %v %v", made, err)
	}
	s, _ := k1.Seal("x")
	k2, made, err := baremetal.LoadKeyFile(path, true)
	if err != nil || made {
		t.Fatalf("reload key file: %v %v", made, err)
	}
	if p, err := k2.Open(s); err != nil || p != "x" {
		t.Errorf("reloaded key opens %q, %v", p, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode().Perm())
	}
	missing := filepath.Join(t.TempDir(), "nope", "bmc.key")
	if _, _, err := baremetal.LoadKeyFile(missing, false); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing key file without create = %v, want os.ErrNotExist", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a key was made without create: %v", err)
	}
}
