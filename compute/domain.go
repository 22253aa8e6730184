package compute

import (
	"crypto/sha256"
	"encoding/xml"
	"fmt"

	"libvirt.org/go/libvirtxml"
)

// MetadataURI names Corral's element in a domain's <metadata>; the element
// ties the domain to its server so a restarted agent can adopt it.
const MetadataURI = "https://corral.dev/xmlns/guest/1"

// DomainPrefix starts the name of every domain Corral manages.
const DomainPrefix = "corral-"

// DomainName is the stable libvirt name of a server's domain.
func DomainName(serverID string) string { return DomainPrefix + serverID }

// DomainUUID is the stable libvirt UUID of a server's domain, derived from
// its ID, so that a domain can always be redefined in place.
func DomainUUID(serverID string) string {
	h := sha256.Sum256([]byte("corral-domain:" + serverID))
	h[6] = h[6]&0x0f | 0x50 // version 5 (name-based, SHA)
	h[8] = h[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// Metadata is what Corral keeps in a domain's XML.
type Metadata struct {
	ServerID string `xml:"server-id"`
	Name     string `xml:"name"`
	Project  string `xml:"project"`
	ImageID  string `xml:"image-id"`
	// Host is the host the domain belongs to: an agent manages only its
	// own host's domains (several test hosts may share one libvirtd).
	Host string `xml:"host"`
	// SpecHash identifies the sizes the domain was defined with, so that
	// a resize is noticed.
	SpecHash string `xml:"spec-hash"`
	// RebootSeq is the last reboot request carried out.
	RebootSeq int64 `xml:"reboot-seq"`
	// What an admin needs to adopt the guest if corrald ever loses its
	// server (a database restored from an older backup): the server's
	// kind and flavor, its image's digest (the overlay's base) and its
	// sizes as defined. Domains defined before these existed lack them.
	Kind        string `xml:"kind,omitempty"`
	FlavorID    string `xml:"flavor-id,omitempty"`
	ImageSHA256 string `xml:"image-sha256,omitempty"`
	VCPUs       int64  `xml:"vcpus,omitempty"`
	RAMMiB      int64  `xml:"ram-mib,omitempty"`
	DiskGiB     int64  `xml:"disk-gib,omitempty"`
	Hugepages   bool   `xml:"hugepages,omitempty"`
}

// NIC is a guest network interface as the domain XML needs it.
type NIC struct {
	MAC    string
	PortID string // OVS external_ids:iface-id
	Bridge string
	VLAN   int
}

// DomainConfig is everything needed to build a guest's domain XML.
type DomainConfig struct {
	Name     string
	UUID     string
	Type     string // "kvm" or "qemu"
	CPUModel string // "" means host-model (kvm) or qemu64 (qemu)
	Machine  string // default "pc"
	VCPUs    int64
	RAMMiB   int64
	// Hugepages backs memory with hugepages of the host's default size.
	Hugepages bool
	// PinCPUs, when set, pins vCPU i to host CPU PinCPUs[i % len].
	PinCPUs []int
	// Disk is the guest's qcow2 overlay.
	Disk string
	// DiskCache is the cache mode ("none" lets cgroup throttling work;
	// default "none").
	DiskCache    string
	DiskIOPS     int64
	DiskBytesSec int64
	NICs         []NIC
	// Vhost uses the vhost-net backend for NICs; only where
	// /dev/vhost-net exists.
	Vhost bool
	// ChecksumOffload false sets <host csum='off'/>: the OVS userspace
	// datapath forwards partial checksums without completing them.
	ChecksumOffload bool
	ConsoleSocket   string
	ConsoleLog      string
	// OEMStrings go to SMBIOS type 11: how a guest learns its name and
	// address ("corral.ip=10.0.0.5/24").
	OEMStrings []string
	// ConfigDrive, when set, is an ISO9660 image (a cloud-init NoCloud or
	// ConfigDrive seed) attached as a read-only IDE CD-ROM.
	ConfigDrive string
	Metadata    Metadata
}

// BuildDomain returns the domain for cfg.
func BuildDomain(cfg DomainConfig) (*libvirtxml.Domain, error) {
	if cfg.Name == "" || cfg.Disk == "" || cfg.VCPUs <= 0 || cfg.RAMMiB <= 0 {
		return nil, fmt.Errorf("domain config: name, disk, vcpus and ram are required")
	}
	if cfg.Type != "kvm" && cfg.Type != "qemu" {
		return nil, fmt.Errorf("domain config: type %q is neither kvm nor qemu", cfg.Type)
	}
	meta, err := marshalMetadata(cfg.Metadata)
	if err != nil {
		return nil, err
	}
	machine := cfg.Machine
	if machine == "" {
		machine = "pc"
	}
	cache := cfg.DiskCache
	if cache == "" {
		cache = "none"
	}
	d := &libvirtxml.Domain{
		Type: cfg.Type, Name: cfg.Name, UUID: cfg.UUID,
		Metadata: &libvirtxml.DomainMetadata{XML: meta},
		Memory:   &libvirtxml.DomainMemory{Value: uint(cfg.RAMMiB), Unit: "MiB"},
		VCPU:     &libvirtxml.DomainVCPU{Placement: "static", Value: uint(cfg.VCPUs)},
		OS: &libvirtxml.DomainOS{
			Type:        &libvirtxml.DomainOSType{Arch: "x86_64", Machine: machine, Type: "hvm"},
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}},
		},
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		OnPoweroff: "destroy", OnReboot: "restart", OnCrash: "destroy",
		Devices: &libvirtxml.DomainDeviceList{},
	}

	switch {
	case cfg.CPUModel == "" && cfg.Type == "kvm":
		d.CPU = &libvirtxml.DomainCPU{Mode: "host-model"}
	default:
		model := cfg.CPUModel
		if model == "" {
			model = "qemu64"
		}
		d.CPU = &libvirtxml.DomainCPU{Mode: "custom", Match: "exact", Check: "none",
			Model: &libvirtxml.DomainCPUModel{Fallback: "forbid", Value: model}}
	}
	if cfg.Hugepages {
		d.MemoryBacking = &libvirtxml.DomainMemoryBacking{MemoryHugePages: &libvirtxml.DomainMemoryHugepages{}}
	}
	if len(cfg.PinCPUs) > 0 {
		d.CPUTune = &libvirtxml.DomainCPUTune{}
		for i := 0; i < int(cfg.VCPUs); i++ {
			d.CPUTune.VCPUPin = append(d.CPUTune.VCPUPin, libvirtxml.DomainCPUTuneVCPUPin{
				VCPU: uint(i), CPUSet: fmt.Sprint(cfg.PinCPUs[i%len(cfg.PinCPUs)])})
		}
	}
	if len(cfg.OEMStrings) > 0 {
		d.SysInfo = []libvirtxml.DomainSysInfo{{SMBIOS: &libvirtxml.DomainSysInfoSMBIOS{
			OEMStrings: &libvirtxml.DomainSysInfoOEMStrings{Entry: cfg.OEMStrings}}}}
		d.OS.SMBios = &libvirtxml.DomainSMBios{Mode: "sysinfo"}
	}

	disk := libvirtxml.DomainDisk{
		Device: "disk",
		Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2", Cache: cache},
		Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: cfg.Disk}},
		Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
	}
	if cache == "none" {
		disk.Driver.IO = "native"
	}
	if cfg.DiskIOPS > 0 || cfg.DiskBytesSec > 0 {
		disk.IOTune = &libvirtxml.DomainDiskIOTune{TotalIopsSec: uint64(cfg.DiskIOPS), TotalBytesSec: uint64(cfg.DiskBytesSec)}
	}
	d.Devices.Disks = []libvirtxml.DomainDisk{disk}
	if cfg.ConfigDrive != "" {
		d.Devices.Disks = append(d.Devices.Disks, libvirtxml.DomainDisk{
			Device:   "cdrom",
			Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
			Source:   &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: cfg.ConfigDrive}},
			Target:   &libvirtxml.DomainDiskTarget{Dev: "hdc", Bus: "ide"},
			ReadOnly: &libvirtxml.DomainDiskReadOnly{},
		})
	}

	for _, n := range cfg.NICs {
		iface := libvirtxml.DomainInterface{
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: n.MAC},
			Source: &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: n.Bridge}},
			// libvirt wants a UUID as interfaceid; the agent binds the
			// port's own ID to external_ids:iface-id once the tap exists.
			VirtualPort: &libvirtxml.DomainInterfaceVirtualPort{Params: &libvirtxml.DomainInterfaceVirtualPortParams{
				OpenVSwitch: &libvirtxml.DomainInterfaceVirtualPortParamsOpenVSwitch{}}},
			Model: &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		}
		if n.VLAN > 0 {
			iface.VLan = &libvirtxml.DomainInterfaceVLan{Tags: []libvirtxml.DomainInterfaceVLanTag{{ID: uint(n.VLAN)}}}
		}
		drv := &libvirtxml.DomainInterfaceDriver{Name: "qemu"}
		if cfg.Vhost {
			drv.Name = "vhost"
		}
		if !cfg.ChecksumOffload {
			drv.Host = &libvirtxml.DomainInterfaceDriverHost{CSum: "off"}
		}
		iface.Driver = drv
		d.Devices.Interfaces = append(d.Devices.Interfaces, iface)
	}

	port := uint(0)
	d.Devices.Serials = []libvirtxml.DomainSerial{{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind", Path: cfg.ConsoleSocket}},
		Log:    &libvirtxml.DomainChardevLog{File: cfg.ConsoleLog, Append: "off"},
		Target: &libvirtxml.DomainSerialTarget{Port: &port},
	}}
	d.Devices.MemBalloon = &libvirtxml.DomainMemBalloon{Model: "none"}
	return d, nil
}

// ParseMetadata reads Corral's metadata element as libvirt returns it.
// (GetMetadata answers the element without its namespace.)
func ParseMetadata(s string) (Metadata, error) {
	var m struct {
		XMLName xml.Name `xml:"corral"`
		Metadata
	}
	if err := xml.Unmarshal([]byte(s), &m); err != nil {
		return Metadata{}, fmt.Errorf("parse corral metadata: %w", err)
	}
	return m.Metadata, nil
}

func marshalMetadata(m Metadata) (string, error) {
	b, err := xml.Marshal(struct {
		XMLName xml.Name `xml:"https://corral.dev/xmlns/guest/1 corral"`
		Metadata
	}{Metadata: m})
	if err != nil {
		return "", fmt.Errorf("encode corral metadata: %w", err)
	}
	return string(b), nil
}
