package compute

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/corral-cloud/corral/api/testenv"
)

// TestLibvirtDefineLookup defines a domain built by BuildDomain in the
// real libvirtd and reads it back: metadata round-trips, the UUID is the
// server's, redefinition in place works, and undefine removes it.
func TestLibvirtDefineLookup(t *testing.T) {
	uri := testenv.Require(t, "CORRAL_TEST_LIBVIRT", "libvirt (libvirtd running)")
	hv, err := NewLibvirt(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer hv.Close()
	dir, err := os.MkdirTemp("", "corral-lv-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	id := "srv-test" + randomHex()
	meta := Metadata{ServerID: id, Name: "m1", Project: "prj-1", ImageID: "img-1", Host: "h1", SpecHash: "abc", RebootSeq: 3}
	cfg := DomainConfig{Name: DomainName(id), UUID: DomainUUID(id), Type: "qemu", VCPUs: 1, RAMMiB: 64,
		Disk: filepath.Join(dir, "d.qcow2"), ConsoleSocket: filepath.Join(dir, "c.sock"), ConsoleLog: filepath.Join(dir, "c.log"),
		NICs: []NIC{{MAC: "02:00:00:00:00:01", PortID: "p1", Bridge: "br-none"}}, Metadata: meta}
	dom, err := BuildDomain(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := hv.Define(dom); err != nil {
		t.Fatal(err)
	}
	defer hv.Undefine(cfg.Name)
	got, ok, err := hv.Lookup(cfg.Name)
	if err != nil || !ok {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	if got.Meta != meta {
		t.Errorf("metadata = %+v, want %+v", got.Meta, meta)
	}
	if got.UUID != DomainUUID(id) || got.Running || got.Type != "qemu" {
		t.Errorf("domain %+v", got)
	}
	// Redefining in place (a resize) keeps the domain.
	cfg.VCPUs = 2
	dom, _ = BuildDomain(cfg)
	if err := hv.Define(dom); err != nil {
		t.Fatalf("redefine: %v", err)
	}
	m := meta
	m.RebootSeq = 4
	if err := hv.SetMetadata(cfg.Name, m); err != nil {
		t.Fatal(err)
	}
	if got, _, _ = hv.Lookup(cfg.Name); got.Meta.RebootSeq != 4 {
		t.Errorf("metadata after SetMetadata = %+v", got.Meta)
	}
	if err := hv.Undefine(cfg.Name); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := hv.Lookup(cfg.Name); ok || err != nil {
		t.Errorf("after undefine: %v %v", ok, err)
	}
}
