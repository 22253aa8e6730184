package compute

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/cloudinit"
)

// Config drive kinds (Config.ConfigDrive).
const (
	ConfigDriveNoCloud   = "nocloud"     // label cidata: meta-data, user-data, network-config
	ConfigDriveOpenStack = "configdrive" // label config-2: openstack/latest/*
	ConfigDriveNone      = "none"
)

// VXLANOverhead is what VXLAN over IPv4 adds to a frame: the guest's MTU
// on a VXLAN network is the underlay's less this.
const VXLANOverhead = 50

// GuestMTU is the MTU of a guest NIC on a network of segmentType over an
// underlay of underlayMTU (default 1500).
func GuestMTU(segmentType string, underlayMTU int) int {
	if underlayMTU <= 0 {
		underlayMTU = 1500
	}
	if segmentType == types.SegmentVXLAN {
		return underlayMTU - VXLANOverhead
	}
	return underlayMTU
}

// Instance maps a guest spec to what cloud-init reads: its name, keys, user
// data and NICs; with dhcp the NICs ask DHCP (which the host's DHCP server
// answers with the same addresses), else they are configured statically.
func Instance(g types.GuestSpec, dhcp bool, underlayMTU int) cloudinit.Instance {
	in := cloudinit.Instance{ID: g.ServerID, Hostname: g.Name}
	if b := g.Bootstrap; b != nil {
		if b.Hostname != "" {
			in.Hostname = b.Hostname
		}
		in.PublicKeys, in.UserData = b.PublicKeys, b.UserData
	}
	for _, n := range g.NICs {
		nic := cloudinit.NIC{MAC: n.MAC, DHCP: dhcp && len(n.IPs) > 0, Addresses: n.IPs, Gateway: n.Gateway,
			DNSServers: n.DNSServers, MTU: GuestMTU(n.SegmentType, underlayMTU)}
		for _, r := range n.HostRoutes {
			nic.Routes = append(nic.Routes, cloudinit.Route{To: r.Destination, Via: r.NextHop})
		}
		in.NICs = append(in.NICs, nic)
	}
	return in
}

// configDrivePath is where a guest's seed image lives, beside its disk.
func (d *Driver) configDrivePath(id string) string {
	return filepath.Join(d.cfg.Dir, "disks", id+".seed.iso")
}

// writeConfigDrive renders the guest's seed and writes it as an ISO9660
// image; it returns the image's path, or "" when config drives are off.
func (d *Driver) writeConfigDrive(ctx context.Context, g types.GuestSpec) (string, error) {
	kind := d.cfg.ConfigDrive
	if kind == "" {
		kind = ConfigDriveNoCloud
	}
	var files map[string][]byte
	var label string
	var err error
	in := Instance(g, d.cfg.GuestDHCP, d.cfg.UnderlayMTU)
	switch kind {
	case ConfigDriveNone:
		return "", nil
	case ConfigDriveNoCloud:
		files, err = cloudinit.Render(in)
		label = cloudinit.LabelNoCloud
	case ConfigDriveOpenStack:
		files, err = cloudinit.RenderConfigDrive(in)
		label = cloudinit.LabelConfigDrive
	default:
		return "", fmt.Errorf("config drive %q: want nocloud, configdrive or none", kind)
	}
	if err != nil {
		return "", err
	}
	out := d.configDrivePath(g.ServerID)
	if err := WriteISO(ctx, label, files, out); err != nil {
		return "", fmt.Errorf("config drive of %s: %w", g.ServerID, err)
	}
	return out, nil
}

// WriteISO writes files (by relative path) into an ISO9660 image with
// Rock Ridge and Joliet names and the volume label, replacing out
// atomically. It runs genisoimage (Debian package genisoimage).
func WriteISO(ctx context.Context, label string, files map[string][]byte, out string) error {
	dir, err := os.MkdirTemp(filepath.Dir(out), ".seed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "root")
	for _, p := range cloudinit.Paths(files) {
		if strings.Contains(p, "..") || filepath.IsAbs(p) {
			return fmt.Errorf("bad path %q in the image", p)
		}
		f := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, files[p], 0o644); err != nil {
			return err
		}
	}
	tmp := filepath.Join(dir, "seed.iso")
	cmd := exec.CommandContext(ctx, "genisoimage", "-quiet", "-input-charset", "utf-8", "-J", "-r", "-V", label, "-o", tmp, root)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("genisoimage: %v: %s", err, strings.TrimSpace(string(b)))
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
