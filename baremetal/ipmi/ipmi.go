// Package ipmi is the BMC driver over IPMI 2.0 lanplus, through bmclib's
// ipmitool provider.
//
// Every BMC gets one command at a time and a minimum interval between
// commands (BMCs crash when commanded too often). Each attempt is bounded
// by a timeout and preceded by a quick presence probe (an unauthenticated
// Get Channel Authentication Capabilities over RMCP, the first packet of
// every IPMI session), which tells a BMC that does not answer (retried
// with backoff, then ErrUnreachable) from one that answers but refuses the
// session (ErrRejected at once, after trying every configured cipher
// suite). The cipher suite that worked is remembered per BMC.
package ipmi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/corral-cloud/corral/baremetal"
)

// Config tunes the driver. Zero values take the defaults.
type Config struct {
	// CipherSuites are tried in order until one opens a session (default
	// 3 then 17). ipmitool without -C asks the BMC for its suites, which
	// some BMCs (ipmi_sim among them) never answer: always name them.
	CipherSuites []string
	// CallTimeout bounds one attempt of one command (default 10 s).
	CallTimeout time.Duration
	// Attempts is how many times a command is tried against a BMC that
	// does not answer (default 3).
	Attempts int
	// Backoff is the pause after the first failed attempt; it doubles
	// (default 1 s).
	Backoff time.Duration
	// MinInterval is the least time between two commands to one BMC
	// (default 1 s).
	MinInterval time.Duration
	// ProbeTimeout bounds the presence probe (default 1 s; it is sent
	// twice).
	ProbeTimeout time.Duration
	// IpmitoolPath is the ipmitool binary; "" looks it up in PATH.
	IpmitoolPath string
}

func (c *Config) defaults() {
	if len(c.CipherSuites) == 0 {
		c.CipherSuites = []string{"3", "17"}
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.Attempts == 0 {
		c.Attempts = 3
	}
	if c.Backoff == 0 {
		c.Backoff = time.Second
	}
	if c.MinInterval == 0 {
		c.MinInterval = time.Second
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = time.Second
	}
}

// Driver is the IPMI implementation of baremetal.Driver. It is safe for
// concurrent use; commands to one BMC are serialised across all handles.
type Driver struct {
	cfg  Config
	mu   sync.Mutex
	bmcs map[string]*bmcState
}

var _ baremetal.Driver = (*Driver)(nil)

// bmcState serialises the commands to one BMC.
type bmcState struct {
	sem    chan struct{} // one command at a time
	last   time.Time     // when the last command ended
	cipher string        // the suite that last worked
}

// New returns a driver.
func New(cfg Config) *Driver {
	cfg.defaults()
	return &Driver{cfg: cfg, bmcs: map[string]*bmcState{}}
}

// BMC implements baremetal.Driver.
func (d *Driver) BMC(c baremetal.Credentials) baremetal.BMC {
	addr := net.JoinHostPort(c.Address, strconv.Itoa(c.Port))
	d.mu.Lock()
	st, ok := d.bmcs[addr]
	if !ok {
		st = &bmcState{sem: make(chan struct{}, 1)}
		d.bmcs[addr] = st
	}
	d.mu.Unlock()
	return &bmc{d: d, creds: c, addr: addr, st: st}
}

// CipherSuite returns the cipher suite that last worked with the BMC at
// address:port, or "" if none has yet.
func (d *Driver) CipherSuite(address string, port int) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st, ok := d.bmcs[net.JoinHostPort(address, strconv.Itoa(port))]; ok {
		return st.cipher
	}
	return ""
}

type bmc struct {
	d     *Driver
	creds baremetal.Credentials
	addr  string
	st    *bmcState
}

// PowerState implements baremetal.BMC.
func (b *bmc) PowerState(ctx context.Context) (string, error) {
	var state string
	err := b.run(ctx, "power status", func(ctx context.Context, c *bmclib.Client) error {
		out, err := c.GetPowerState(ctx)
		if err != nil {
			return err
		}
		state, err = parsePower(out)
		return err
	})
	return state, err
}

// parsePower reads ipmitool's "Chassis Power is on|off".
func parsePower(out string) (string, error) {
	s := strings.ToLower(out)
	switch {
	case strings.Contains(s, "power is on"):
		return "on", nil
	case strings.Contains(s, "power is off"):
		return "off", nil
	}
	return "", fmt.Errorf("unexpected power status %q", strings.TrimSpace(out))
}

// SetPower implements baremetal.BMC. A cycle is an off then an on.
func (b *bmc) SetPower(ctx context.Context, op baremetal.PowerOp) error {
	state := map[baremetal.PowerOp]string{baremetal.PowerOn: "on", baremetal.PowerOff: "off",
		baremetal.PowerCycle: "cycle", baremetal.PowerSoftOff: "soft"}[op]
	if state == "" {
		return fmt.Errorf("unknown power operation %q", op)
	}
	if op == baremetal.PowerCycle {
		// Off, then on, each confirmed: an IPMI "cycle" is asynchronous on
		// some BMCs (ipmi_sim powers on a second later) and does nothing
		// to a chassis that is off on others.
		if err := b.SetPower(ctx, baremetal.PowerOff); err != nil {
			return err
		}
		state = "on"
	}
	return b.run(ctx, "power "+string(op), func(ctx context.Context, c *bmclib.Client) error {
		ok, err := c.SetPowerState(ctx, state)
		if err == nil && !ok {
			err = errors.New("the BMC did not confirm the power change")
		}
		return err
	})
}

// SetBootDevice implements baremetal.BMC. The device is set for the next
// boot only.
func (b *bmc) SetBootDevice(ctx context.Context, dev baremetal.BootDevice) error {
	name := map[baremetal.BootDevice]string{baremetal.BootPXE: "pxe", baremetal.BootDisk: "disk"}[dev]
	if name == "" {
		return fmt.Errorf("unknown boot device %q", dev)
	}
	return b.run(ctx, "boot device "+name, func(ctx context.Context, c *bmclib.Client) error {
		ok, err := c.SetBootDevice(ctx, name, false, false)
		if err == nil && !ok {
			err = errors.New("the BMC did not confirm the boot device")
		}
		return err
	})
}

// run executes one command under the BMC's serialisation, with retries
// and backoff while the BMC does not answer.
func (b *bmc) run(ctx context.Context, what string, fn func(context.Context, *bmclib.Client) error) error {
	cfg := b.d.cfg
	select {
	case b.st.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("bmc %s: %s: waiting for the previous command: %w", b.addr, what, ctx.Err())
	}
	defer func() { <-b.st.sem }()
	var err error
	backoff := cfg.Backoff
	for attempt := 1; attempt <= cfg.Attempts; attempt++ {
		if wait := time.Until(b.st.last.Add(cfg.MinInterval)); wait > 0 {
			if serr := sleep(ctx, wait); serr != nil {
				return fmt.Errorf("bmc %s: %s: %w", b.addr, what, serr)
			}
		}
		err = b.once(ctx, fn)
		b.st.last = time.Now()
		if err == nil || errors.Is(err, baremetal.ErrRejected) || ctx.Err() != nil {
			break
		}
		if attempt < cfg.Attempts {
			if serr := sleep(ctx, backoff); serr != nil {
				break
			}
			backoff *= 2
		}
	}
	if err != nil {
		return fmt.Errorf("bmc %s: %s: %w", b.addr, what, err)
	}
	return nil
}

// once makes one attempt: probe, then the command with each cipher suite
// in turn (the one that worked last first) until one is accepted.
func (b *bmc) once(ctx context.Context, fn func(context.Context, *bmclib.Client) error) error {
	cfg := b.d.cfg
	if err := probe(ctx, b.addr, cfg.ProbeTimeout); err != nil {
		return err
	}
	suites := make([]string, 0, len(cfg.CipherSuites))
	if b.st.cipher != "" {
		suites = append(suites, b.st.cipher)
	}
	for _, s := range cfg.CipherSuites {
		if s != b.st.cipher {
			suites = append(suites, s)
		}
	}
	var last error
	for _, suite := range suites {
		actx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
		opts := []bmclib.Option{bmclib.WithIpmitoolPort(strconv.Itoa(b.creds.Port)), bmclib.WithIpmitoolCipherSuite(suite),
			bmclib.WithPerProviderTimeout(cfg.CallTimeout)}
		if cfg.IpmitoolPath != "" {
			opts = append(opts, bmclib.WithIpmitoolPath(cfg.IpmitoolPath))
		}
		c := bmclib.NewClient(b.creds.Address, b.creds.Username, b.creds.Password, opts...)
		c.Registry.Drivers = c.Registry.For("ipmitool")
		err := fn(actx, c)
		timedOut := actx.Err() != nil
		cancel()
		if err == nil {
			b.st.cipher = suite
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %v", baremetal.ErrUnreachable, ctx.Err())
		}
		if timedOut {
			return fmt.Errorf("no answer within %s: %w", cfg.CallTimeout, baremetal.ErrUnreachable)
		}
		// It failed fast. A BMC that stopped answering meanwhile is
		// unreachable, not rejecting.
		if perr := probe(ctx, b.addr, cfg.ProbeTimeout); perr != nil {
			return perr
		}
		last = fmt.Errorf("cipher suite %s: %s", suite, oneLine(err))
	}
	return fmt.Errorf("%v (tried cipher suites %s): %w", last, strings.Join(suites, ", "), baremetal.ErrRejected)
}

func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
