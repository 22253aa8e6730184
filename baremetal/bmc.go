package baremetal

import (
	"context"
	"errors"
)

// PowerOp is a power operation on a node.
type PowerOp string

// Power operations.
const (
	PowerOn      PowerOp = "on"
	PowerOff     PowerOp = "off"
	PowerCycle   PowerOp = "cycle"
	PowerSoftOff PowerOp = "soft_off"
)

// BootDevice is where a node boots next.
type BootDevice string

// Boot devices.
const (
	// BootPXE boots from the network once.
	BootPXE BootDevice = "pxe"
	// BootDisk boots from the local disk.
	BootDisk BootDevice = "disk"
)

// Errors of a BMC. Drivers wrap them with the BMC's address and the last
// underlying error.
var (
	// ErrUnreachable means the BMC did not answer within the timeout, after
	// the retries.
	ErrUnreachable = errors.New("bmc unreachable")
	// ErrRejected means the BMC answered but refused the session (wrong
	// username or password, or no acceptable cipher suite) or the command.
	ErrRejected = errors.New("bmc rejected the request")
)

// Credentials say how to reach a BMC.
type Credentials struct {
	Address  string
	Port     int
	Username string
	Password string
}

// BMC controls one node. Implementations bound every call with a timeout,
// retry unreachable BMCs with backoff, and run one command at a time per
// BMC with a minimum interval between commands, so a call may wait for
// another caller's command first. Errors wrap ErrUnreachable or
// ErrRejected.
type BMC interface {
	// PowerState returns "on" or "off".
	PowerState(ctx context.Context) (string, error)
	// SetPower performs op. On and off are idempotent (powering on a node
	// that is on succeeds); cycle on a node that is off powers it on.
	SetPower(ctx context.Context, op PowerOp) error
	// SetBootDevice sets the next boot device. Idempotent.
	SetBootDevice(ctx context.Context, dev BootDevice) error
}

// Driver makes BMC handles. Handles for the same address share the
// serialisation of commands.
type Driver interface {
	BMC(Credentials) BMC
}
