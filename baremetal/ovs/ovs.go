package ovs

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
)

// ExecFunc runs ovs-vsctl with args and returns its standard output.
type ExecFunc func(ctx context.Context, args ...string) ([]byte, error)

// Config configures a Switch.
type Config struct {
	// Bridge, if set, is the only bridge whose ports are changed.
	Bridge string
	// ProvisioningVLAN is the access VLAN of the provisioning network
	// (1–4094).
	ProvisioningVLAN int
	// ParkingVLAN is the access VLAN of a port off the provisioning
	// network (1–4094, not ProvisioningVLAN).
	ParkingVLAN int
	// Timeout bounds each ovs-vsctl call (default 10 s).
	Timeout time.Duration
	// Exec replaces how ovs-vsctl runs (tests).
	Exec ExecFunc
}

// Switch implements baremetal.SwitchPort on an OVS bridge.
type Switch struct{ cfg Config }

var _ baremetal.SwitchPort = (*Switch)(nil)

// New checks the configuration and returns a switch.
func New(cfg Config) (*Switch, error) {
	for _, v := range []struct {
		name string
		tag  int
	}{{"provisioning", cfg.ProvisioningVLAN}, {"parking", cfg.ParkingVLAN}} {
		if v.tag < 1 || v.tag > 4094 {
			return nil, fmt.Errorf("ovs switch: %s VLAN %d is not from 1 to 4094", v.name, v.tag)
		}
	}
	if cfg.ProvisioningVLAN == cfg.ParkingVLAN {
		return nil, errors.New("ovs switch: the parking VLAN must differ from the provisioning VLAN")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Exec == nil {
		cfg.Exec = func(ctx context.Context, args ...string) ([]byte, error) {
			out, err := exec.CommandContext(ctx, "ovs-vsctl", args...).Output()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
			}
			return out, err
		}
	}
	return &Switch{cfg: cfg}, nil
}

func (s *Switch) vsctl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	secs := max(1, int(s.cfg.Timeout/time.Second))
	out, err := s.cfg.Exec(ctx, append([]string{fmt.Sprintf("--timeout=%d", secs)}, args...)...)
	if err != nil {
		return "", fmt.Errorf("ovs-vsctl %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// port returns the name of the port whose interface carries the MAC.
func (s *Switch) port(ctx context.Context, mac string) (string, error) {
	out, err := s.vsctl(ctx, "--bare", "--columns=name", "find", "interface", fmt.Sprintf("external_ids:attached-mac=%q", mac))
	if err != nil {
		return "", err
	}
	names := strings.Fields(out)
	if len(names) != 1 {
		return "", fmt.Errorf("%d interfaces with attached-mac %s: %w", len(names), mac, baremetal.ErrNoPort)
	}
	if s.cfg.Bridge != "" {
		br, err := s.vsctl(ctx, "port-to-br", names[0])
		if err != nil {
			return "", err
		}
		if br != s.cfg.Bridge {
			return "", fmt.Errorf("port %s of %s is on bridge %s, not %s: %w", names[0], mac, br, s.cfg.Bridge, baremetal.ErrNoPort)
		}
	}
	return names[0], nil
}

// SetProvisioning implements baremetal.SwitchPort: the port of the NIC
// becomes an access port of the provisioning or the parking VLAN.
// Idempotent.
func (s *Switch) SetProvisioning(ctx context.Context, nic baremetal.NodeNIC, on bool) error {
	name, err := s.port(ctx, nic.MAC)
	if err != nil {
		return fmt.Errorf("node %s: %w", nic.Name, err)
	}
	tag := s.cfg.ParkingVLAN
	if on {
		tag = s.cfg.ProvisioningVLAN
	}
	if _, err := s.vsctl(ctx, "set", "port", name, fmt.Sprintf("tag=%d", tag), "trunks=[]", "vlan_mode=access"); err != nil {
		return fmt.Errorf("node %s: %w", nic.Name, err)
	}
	return nil
}

// SetTenant implements baremetal.SwitchPort: the port of the NIC becomes
// an access port of the network's VLAN, the VLAN the hosts' integration
// bridges give the network (the bridge trunks it to them). A VXLAN
// network would need the switch to be a VTEP mapping the VNI to the
// port; an OVS bridge standing in for a top-of-rack switch is not, so it
// returns ErrSegmentUnsupported, as it does for a VLAN network whose ID
// is the provisioning or the parking VLAN (the node would land on that
// network instead). Idempotent.
func (s *Switch) SetTenant(ctx context.Context, nic baremetal.NodeNIC, seg baremetal.Segment) error {
	switch {
	case seg.Type != types.SegmentVLAN:
		return fmt.Errorf("node %s: network %s is a %s network; bare-metal nodes join VLAN networks only "+
			"(a VXLAN network needs a VTEP-capable top-of-rack switch): %w", nic.Name, seg.NetworkID, seg.Type, baremetal.ErrSegmentUnsupported)
	case seg.ID < 1 || seg.ID > 4094:
		return fmt.Errorf("node %s: network %s has VLAN %d, not from 1 to 4094: %w", nic.Name, seg.NetworkID, seg.ID, baremetal.ErrSegmentUnsupported)
	case int(seg.ID) == s.cfg.ProvisioningVLAN || int(seg.ID) == s.cfg.ParkingVLAN:
		return fmt.Errorf("node %s: network %s has VLAN %d, which this switch uses for provisioning or parking: %w",
			nic.Name, seg.NetworkID, seg.ID, baremetal.ErrSegmentUnsupported)
	}
	name, err := s.port(ctx, nic.MAC)
	if err != nil {
		return fmt.Errorf("node %s: %w", nic.Name, err)
	}
	if _, err := s.vsctl(ctx, "set", "port", name, fmt.Sprintf("tag=%d", seg.ID), "trunks=[]", "vlan_mode=access"); err != nil {
		return fmt.Errorf("node %s: %w", nic.Name, err)
	}
	return nil
}

// Tag returns the access VLAN of the port of a MAC (0: none). Tests use
// it to check where a node is.
func (s *Switch) Tag(ctx context.Context, mac string) (int, error) {
	name, err := s.port(ctx, mac)
	if err != nil {
		return 0, err
	}
	out, err := s.vsctl(ctx, "get", "port", name, "tag")
	if err != nil {
		return 0, err
	}
	var tag int
	if out == "[]" {
		return 0, nil
	}
	if _, err := fmt.Sscan(out, &tag); err != nil {
		return 0, fmt.Errorf("port %s: tag %q", name, out)
	}
	return tag, nil
}
