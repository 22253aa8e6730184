package compute

import (
	"strings"
	"testing"
)

func baseConfig() DomainConfig {
	return DomainConfig{Name: "corral-srv-1", UUID: DomainUUID("srv-1"), Type: "qemu", VCPUs: 2, RAMMiB: 256,
		Disk: "/var/lib/corral/disks/srv-1.qcow2", ConsoleSocket: "/c.sock", ConsoleLog: "/c.log",
		NICs:     []NIC{{MAC: "02:00:00:00:00:01", PortID: "prt-1", Bridge: "br-int", VLAN: 100}},
		Metadata: Metadata{ServerID: "srv-1", Host: "hv1"}}
}

func TestBuildDomain(t *testing.T) {
	tests := []struct {
		name   string
		change func(*DomainConfig)
		want   []string
		absent []string
	}{
		{name: "tcg guest", change: func(*DomainConfig) {},
			want: []string{`<domain type="qemu">`, `<model fallback="forbid">qemu64</model>`, `bus="virtio"`,
				`<model type="virtio"></model>`, `<driver name="qemu" type="qcow2" cache="none" io="native">`,
				`<virtualport type="openvswitch">`, `<tag id="100">`, `<host csum="off">`, `<driver name="qemu">`,
				`<log file="/c.log" append="off">`, `<source bridge="br-int">`, `<server-id>srv-1</server-id>`,
				`<uuid>` + DomainUUID("srv-1") + `</uuid>`, `<memballoon model="none">`},
			absent: []string{"hugepages", "vhost", "iotune", "sysinfo", "cdrom"}},
		{name: "config drive", change: func(c *DomainConfig) { c.ConfigDrive = "/var/lib/corral/disks/srv-1.cidata.iso" },
			want: []string{`<disk type="file" device="cdrom">`, `<source file="/var/lib/corral/disks/srv-1.cidata.iso">`,
				`<target dev="hdc" bus="ide">`, `<readonly></readonly>`, `<driver name="qemu" type="raw">`}},
		{name: "kvm with host model, vhost, hugepages, pinning", change: func(c *DomainConfig) {
			c.Type, c.Vhost, c.Hugepages, c.PinCPUs, c.ChecksumOffload = "kvm", true, true, []int{2, 3}, true
		}, want: []string{`<domain type="kvm">`, `<cpu mode="host-model">`, `<driver name="vhost">`, `<hugepages></hugepages>`,
			`<vcpupin vcpu="0" cpuset="2">`, `<vcpupin vcpu="1" cpuset="3">`},
			absent: []string{"qemu64", `csum="off"`}},
		{name: "disk limits and SMBIOS", change: func(c *DomainConfig) {
			c.DiskIOPS, c.DiskBytesSec = 50, 1048576
			c.OEMStrings = []string{"corral.ip=10.0.0.5/24"}
		}, want: []string{`<total_iops_sec>50</total_iops_sec>`, `<total_bytes_sec>1048576</total_bytes_sec>`,
			`<entry>corral.ip=10.0.0.5/24</entry>`, `<smbios mode="sysinfo">`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			tt.change(&cfg)
			d, err := BuildDomain(cfg)
			if err != nil {
				t.Fatal(err)
			}
			x, err := d.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(x, w) {
					t.Errorf("missing %s in\n%s", w, x)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(x, a) {
					t.Errorf("unexpected %s in\n%s", a, x)
				}
			}
		})
	}
	bad := baseConfig()
	bad.Type = "xen"
	if _, err := BuildDomain(bad); err == nil {
		t.Error("type xen accepted")
	}
	bad = baseConfig()
	bad.Disk = ""
	if _, err := BuildDomain(bad); err == nil {
		t.Error("no disk accepted")
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	m := Metadata{ServerID: "srv-1", Name: "a<b", Project: "p", ImageID: "i", Host: "h", SpecHash: "x", RebootSeq: 9}
	raw, err := marshalMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	// libvirt answers the element without its namespace.
	got, err := ParseMetadata(strings.Replace(raw, ` xmlns="`+MetadataURI+`"`, "", 1))
	if err != nil || got != m {
		t.Errorf("round trip = %+v, %v; want %+v", got, err, m)
	}
	if DomainUUID("srv-1") != DomainUUID("srv-1") || DomainUUID("srv-1") == DomainUUID("srv-2") ||
		len(DomainUUID("srv-1")) != 36 {
		t.Error("DomainUUID is not a stable UUID per server")
	}
}
