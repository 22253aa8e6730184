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
	ConfigDriveNoCloud   = cloudinit.LayoutNoCloud     // label cidata: meta-data, user-data, network-config
	ConfigDriveOpenStack = cloudinit.LayoutConfigDrive // label config-2: openstack/latest/*
	ConfigDriveNone      = "none"
)

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
	if kind == ConfigDriveNone {
		return "", nil
	}
	label, files, err := cloudinit.RenderLayout(kind, cloudinit.Guest(g, d.cfg.GuestDHCP, d.cfg.UnderlayMTU))
	if err != nil {
		return "", fmt.Errorf("config drive of %s: %w", g.ServerID, err)
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
