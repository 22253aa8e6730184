package baremetal

import (
	"context"
	"net"
	"strconv"
	"time"
)

// CallObserver is told the outcome of every BMC command: the BMC's
// address ("host:port"), the command ("power_state", "set_power",
// "set_boot_device"), how long it took (retries included) and its error,
// nil on success. It must not block.
type CallObserver func(bmc, op string, took time.Duration, err error)

// Observe returns a Driver whose BMCs report every command to obs, for
// metrics. It changes nothing else: the errors are d's own.
func Observe(d Driver, obs CallObserver) Driver { return observed{d: d, obs: obs} }

type observed struct {
	d   Driver
	obs CallObserver
}

func (o observed) BMC(c Credentials) BMC {
	return observedBMC{b: o.d.BMC(c), addr: net.JoinHostPort(c.Address, strconv.Itoa(c.Port)), obs: o.obs}
}

type observedBMC struct {
	b    BMC
	addr string
	obs  CallObserver
}

func (o observedBMC) PowerState(ctx context.Context) (string, error) {
	start := time.Now()
	s, err := o.b.PowerState(ctx)
	o.obs(o.addr, "power_state", time.Since(start), err)
	return s, err
}

func (o observedBMC) SetPower(ctx context.Context, op PowerOp) error {
	start := time.Now()
	err := o.b.SetPower(ctx, op)
	o.obs(o.addr, "set_power", time.Since(start), err)
	return err
}

func (o observedBMC) SetBootDevice(ctx context.Context, dev BootDevice) error {
	start := time.Now()
	err := o.b.SetBootDevice(ctx, dev)
	o.obs(o.addr, "set_boot_device", time.Since(start), err)
	return err
}

var (
	_ Driver = observed{}
	_ BMC    = observedBMC{}
)
