// Package fake holds hand-written fakes of the bare-metal interfaces for
// unit tests: a BMC whose power and boot device are plain fields and whose
// calls can be made to fail, a provisioning network that records what it
// was asked, and a switch that records which ports are on the
// provisioning network.
package fake

import (
	"context"
	"fmt"
	"sync"

	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
)

// Machine is the state behind one fake BMC.
type Machine struct {
	Password string
	Power    string // "on" or "off"
	Boot     baremetal.BootDevice
	// Unreachable makes every call fail with ErrUnreachable.
	Unreachable bool
	// Calls lists the calls made, e.g. "power on", "boot pxe".
	Calls []string
}

// Driver is a fake baremetal.Driver: one Machine per "address:port".
type Driver struct {
	mu       sync.Mutex
	machines map[string]*Machine
}

var _ baremetal.Driver = (*Driver)(nil)

// NewDriver returns a driver with no machines.
func NewDriver() *Driver { return &Driver{machines: map[string]*Machine{}} }

// Add registers a machine at address:port that accepts password.
func (d *Driver) Add(address string, port int, password string) *Machine {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := &Machine{Password: password, Power: types.PowerOff}
	d.machines[fmt.Sprintf("%s:%d", address, port)] = m
	return m
}

// Do runs fn on a machine under the driver's lock (for tests to change
// or read it).
func (d *Driver) Do(m *Machine, fn func(*Machine)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(m)
}

// BMC implements baremetal.Driver.
func (d *Driver) BMC(c baremetal.Credentials) baremetal.BMC {
	return &bmc{d: d, key: fmt.Sprintf("%s:%d", c.Address, c.Port), password: c.Password}
}

type bmc struct {
	d        *Driver
	key      string
	password string
}

func (b *bmc) call(name string, fn func(*Machine)) error {
	b.d.mu.Lock()
	defer b.d.mu.Unlock()
	m, ok := b.d.machines[b.key]
	if !ok || m.Unreachable {
		return fmt.Errorf("fake bmc %s: %w", b.key, baremetal.ErrUnreachable)
	}
	if m.Password != b.password {
		return fmt.Errorf("fake bmc %s: bad password: %w", b.key, baremetal.ErrRejected)
	}
	m.Calls = append(m.Calls, name)
	if fn != nil {
		fn(m)
	}
	return nil
}

func (b *bmc) PowerState(ctx context.Context) (string, error) {
	var p string
	err := b.call("power status", func(m *Machine) { p = m.Power })
	return p, err
}

func (b *bmc) SetPower(ctx context.Context, op baremetal.PowerOp) error {
	return b.call("power "+string(op), func(m *Machine) {
		switch op {
		case baremetal.PowerOn, baremetal.PowerCycle:
			m.Power = types.PowerOn
		case baremetal.PowerOff, baremetal.PowerSoftOff:
			m.Power = types.PowerOff
		}
	})
}

func (b *bmc) SetBootDevice(ctx context.Context, dev baremetal.BootDevice) error {
	return b.call("boot "+string(dev), func(m *Machine) { m.Boot = dev })
}

// Provisioner is a fake baremetal.Provisioner.
type Provisioner struct {
	mu        sync.Mutex
	Refreshes int
	Images    []string
	// Fail makes every call fail with it.
	Fail error
	// Unsupported is a segment type SetTenant refuses.
	Unsupported string
}

var _ baremetal.Provisioner = (*Provisioner)(nil)

// PrepareImage records the image.
func (p *Provisioner) PrepareImage(ctx context.Context, img types.Image) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Fail != nil {
		return p.Fail
	}
	p.Images = append(p.Images, img.ID)
	return nil
}

// Refresh counts the call.
func (p *Provisioner) Refresh(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Fail != nil {
		return p.Fail
	}
	p.Refreshes++
	return nil
}

// Switch is a fake baremetal.SwitchPort: which MACs are on the
// provisioning network. A MAC never set counts as on it (a new port).
type Switch struct {
	mu  sync.Mutex
	off map[string]bool
	// Calls lists the calls made, e.g. "52:54:00:00:00:01 off".
	Calls []string
	// Fail makes every call fail with it.
	Fail error
	// Unsupported is a segment type SetTenant refuses.
	Unsupported string
}

var _ baremetal.SwitchPort = (*Switch)(nil)

// SetProvisioning records the port's state.
func (s *Switch) SetProvisioning(ctx context.Context, nic baremetal.NodeNIC, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	if s.off == nil {
		s.off = map[string]bool{}
	}
	s.off[nic.MAC] = !on
	state := "off"
	if on {
		state = "on"
	}
	s.Calls = append(s.Calls, nic.MAC+" "+state)
	return nil
}

// SetTenant records the port's tenant segment; it refuses the segment
// type Unsupported with baremetal.ErrSegmentUnsupported.
func (s *Switch) SetTenant(ctx context.Context, nic baremetal.NodeNIC, seg baremetal.Segment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	if seg.Type == s.Unsupported {
		return fmt.Errorf("fake switch: %s: %w", seg.Type, baremetal.ErrSegmentUnsupported)
	}
	if s.off == nil {
		s.off = map[string]bool{}
	}
	s.off[nic.MAC] = true
	s.Calls = append(s.Calls, fmt.Sprintf("%s %s %d", nic.MAC, seg.Type, seg.ID))
	return nil
}

// OnProvisioning reports whether the MAC's port is on the provisioning
// network.
func (s *Switch) OnProvisioning(mac string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.off[mac]
}
