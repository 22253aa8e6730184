package baremetal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/backoff"
)

// NodeStore is what the conductor needs of the store.
type NodeStore interface {
	ListNodeRows(ctx context.Context, states ...string) ([]store.NodeRow, error)
	GetNodeRow(ctx context.Context, idOrName string) (store.NodeRow, error)
	ChangeNode(ctx context.Context, idOrName string, ifMatch int64, actor string, change store.NodeChange) (store.NodeRow, error)
	UpdateNodeServer(ctx context.Context, nodeID, actor string, change store.NodeChange, setServer func(*store.ServerRow)) (store.NodeRow, error)
	DetachNodeServer(ctx context.Context, nodeID, actor string) (store.NodeRow, error)
	AcquireNodeLease(ctx context.Context, id, owner string, ttl time.Duration) (store.NodeRow, error)
	ReleaseNodeLease(ctx context.Context, id, owner string) error
	RecordNodePower(ctx context.Context, id, power, fault, reason, actor string) (store.NodeRow, error)
	NodeEvent(ctx context.Context, nodeID, from, to, reason, actor string) error
	GetImage(ctx context.Context, idOrName string) (types.Image, error)
	// The ports of a node's server and their networks: the tenant
	// networks its switch ports join.
	ListPorts(ctx context.Context, opts store.ListOptions) (types.List[types.Port], error)
	GetNetwork(ctx context.Context, idOrName string) (types.Network, error)
	// ServerGuest is the node's server as its OS sees it at first boot
	// (the config drive), as a VM's guest does.
	ServerGuest(ctx context.Context, id string) (types.GuestSpec, error)
}

var _ NodeStore = (*store.Store)(nil)

// Provisioner is the provisioning network as the conductor sees it.
type Provisioner interface {
	// PrepareImage makes an image's raw data ready to stream to deploy
	// agents (converting a qcow2 image once). Idempotent.
	PrepareImage(ctx context.Context, img types.Image) error
	// Refresh rewrites the DHCP entries of the enrolled nodes and reloads
	// the DHCP server. Idempotent.
	Refresh(ctx context.Context) error
}

// Steps of the states in which the deploy ramdisk runs (inspecting,
// deploying, cleaning). The step is persisted, so a conductor that takes
// over a node resumes at it.
const (
	// StepBooting: a token was issued and the node is being booted into
	// the ramdisk. A conductor that finds a node here (its predecessor
	// died mid-boot) starts the attempt again with a new token.
	StepBooting = "booting"
	// StepWaitAgent: the ramdisk is running; the deploy agent reports to
	// the provisioning HTTP server, which moves the step on.
	StepWaitAgent = "wait_agent"
	// StepAgentDone: the agent succeeded; the conductor finishes
	// (boots the disk, powers off).
	StepAgentDone = "agent_done"
	// StepNetworks: a deployed node is powered off and boots its disk
	// next; its switch ports move from the provisioning network to its
	// server's networks before it is powered on, so the tenant's OS never
	// sees the provisioning network.
	StepNetworks = "networks"
)

// ConductorConfig configures a Conductor. Zero values take the defaults.
type ConductorConfig struct {
	// ID names this conductor (one per corrald process) in leases and
	// events.
	ID string
	// LeaseTTL is how long a lease lasts without renewal (default 30 s):
	// after a replica dies, its nodes wait this long for another.
	LeaseTTL time.Duration
	// Poll is how often nodes are checked for work (default 2 s).
	Poll time.Duration
	// SyncEvery is how often idle nodes' power states are read (default 30 s).
	SyncEvery time.Duration
	// InspectTimeout, DeployTimeout and CleanTimeout bound the wait for
	// the deploy agent (defaults 10, 30 and 15 minutes).
	InspectTimeout, DeployTimeout, CleanTimeout time.Duration
	// MaxAttempts is how many times a ramdisk boot is started for one
	// operation before the node goes to error (default 2).
	MaxAttempts int
	// Workers bounds the nodes handled at once (default 8).
	Workers int
	// TokenTTL is how long a boot token may wait to be exchanged by the
	// deploy agent (default 30 minutes); it is single-use regardless.
	TokenTTL time.Duration
	// Switch moves nodes' provisioning NICs on and off the provisioning
	// network. Nil leaves the fabric alone: nodes then stay on the
	// provisioning network when active.
	Switch SwitchPort
	// SwitchTimeout bounds each switch call (default 30 s).
	SwitchTimeout time.Duration
	// SwitchBackoff spaces the tries of a switch move that failed
	// (default 1 s doubling to 10 s, 20 % jitter); a move is tried four
	// times before the node fails.
	SwitchBackoff backoff.Backoff
	// Logger receives the conductor's messages.
	Logger *slog.Logger
}

func (c *ConductorConfig) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.LeaseTTL, 30*time.Second)
	def(&c.Poll, 2*time.Second)
	def(&c.SyncEvery, 30*time.Second)
	def(&c.InspectTimeout, 10*time.Minute)
	def(&c.DeployTimeout, 30*time.Minute)
	def(&c.CleanTimeout, 15*time.Minute)
	def(&c.TokenTTL, 30*time.Minute)
	def(&c.SwitchTimeout, 30*time.Second)
	if c.SwitchBackoff == (backoff.Backoff{}) {
		c.SwitchBackoff = defaultSwitchBackoff()
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 2
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.ID == "" {
		c.ID = "conductor-" + randomHex(4)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Conductor drives nodes through their states and keeps their power
// states in sync. Several conductors (corrald replicas) share the store:
// each node is driven by the holder of its lease.
type Conductor struct {
	cfg   ConductorConfig
	store NodeStore
	bmcs  Driver
	prov  Provisioner
	keys  *Keyring
	log   *slog.Logger

	wake chan struct{}
	sem  chan struct{}

	mu       sync.Mutex
	inFlight map[string]bool
}

// NewConductor returns a conductor. prov may be nil when no provisioning
// network is configured: nodes can then be verified and power-managed,
// but not inspected, deployed or cleaned (those fail with a clear reason).
func NewConductor(cfg ConductorConfig, st NodeStore, bmcs Driver, prov Provisioner, keys *Keyring) *Conductor {
	cfg.defaults()
	return &Conductor{cfg: cfg, store: st, bmcs: bmcs, prov: prov, keys: keys, log: cfg.Logger,
		wake: make(chan struct{}, 1), sem: make(chan struct{}, cfg.Workers), inFlight: map[string]bool{}}
}

// ID is the conductor's name in leases and events.
func (c *Conductor) ID() string { return c.cfg.ID }

func (c *Conductor) actor() string { return "conductor:" + c.cfg.ID }

// Keyring returns the keyring that seals secrets.
func (c *Conductor) Keyring() *Keyring { return c.keys }

// Wake makes the conductor look for work now (after an API call).
func (c *Conductor) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// workStates are the states in which nodes may need the conductor.
var workStates = []string{types.NodeEnroll, types.NodeVerifying, types.NodeManageable, types.NodeInspecting,
	types.NodeDeploying, types.NodeDeleting, types.NodeCleaning}

// syncStates are the idle states whose power the sync reads.
var syncStates = []string{types.NodeManageable, types.NodeAvailable, types.NodeActive, types.NodeError, types.NodeMaintenance}

// Run drives nodes until ctx ends, and waits for its workers.
func (c *Conductor) Run(ctx context.Context) {
	var wg sync.WaitGroup
	poll := time.NewTicker(c.cfg.Poll)
	defer poll.Stop()
	syncT := time.NewTicker(c.cfg.SyncEvery)
	defer syncT.Stop()
	for {
		c.dispatch(ctx, &wg, workStates, needsWork, c.Step)
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-poll.C:
		case <-c.wake:
		case <-syncT.C:
			c.dispatch(ctx, &wg, syncStates, func(store.NodeRow) bool { return true }, func(ctx context.Context, id string) error {
				_, err := c.SyncPower(ctx, id)
				return err
			})
		}
	}
}

// dispatch runs fn on a worker for every node in states that is not being
// handled by this conductor already.
func (c *Conductor) dispatch(ctx context.Context, wg *sync.WaitGroup, states []string, want func(store.NodeRow) bool,
	fn func(context.Context, string) error) {
	rows, err := c.store.ListNodeRows(ctx, states...)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Error("list nodes", "error", err)
		}
		return
	}
	now := time.Now()
	for _, r := range rows {
		if r.LeaseOwner != "" && r.LeaseOwner != c.cfg.ID && r.LeaseExpires > now.UnixMicro() {
			continue // another replica drives it
		}
		if !want(r) {
			continue
		}
		c.mu.Lock()
		busy := c.inFlight[r.ID]
		if !busy {
			c.inFlight[r.ID] = true
		}
		c.mu.Unlock()
		if busy {
			continue
		}
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			c.done(r.ID)
			return
		}
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			defer func() { <-c.sem }()
			defer c.done(id)
			if err := fn(ctx, id); err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrLeased) {
				c.log.Warn("node step", "node", id, "error", err)
			}
		}(r.ID)
	}
}

func (c *Conductor) done(id string) {
	c.mu.Lock()
	delete(c.inFlight, id)
	c.mu.Unlock()
}

// needsWork reports whether the conductor has something to do for a node
// in a work state.
func needsWork(r store.NodeRow) bool {
	switch r.State {
	case types.NodeEnroll:
		return r.Target != ""
	case types.NodeManageable:
		return r.Target == types.NodeAvailable
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Step takes the lease of a node and advances its state machine by at
// most one step. It is idempotent and safe to call from several
// conductors at once: only the lease holder acts. The lease is kept while
// the node is in a state the conductor drives and released once it rests.
func (c *Conductor) Step(ctx context.Context, id string) error {
	row, err := c.store.AcquireNodeLease(ctx, id, c.cfg.ID, c.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	err = c.step(ctx, row)
	if ctx.Err() != nil {
		return err // keep the lease; it expires if this process is going away
	}
	if now, gerr := c.store.GetNodeRow(ctx, id); gerr == nil && (!contains(workStates, now.State) || !needsWork(now)) {
		if rerr := c.store.ReleaseNodeLease(ctx, id, c.cfg.ID); rerr != nil {
			c.log.Error("release lease", "node", id, "error", rerr)
		}
	}
	return err
}

func (c *Conductor) step(ctx context.Context, r store.NodeRow) error {
	switch r.State {
	case types.NodeEnroll:
		if r.Target == "" {
			return nil
		}
		_, err := c.transition(ctx, r, func(n *store.NodeRow) string {
			n.State = types.NodeVerifying
			return "checking the BMC credentials"
		})
		return err
	case types.NodeVerifying:
		return c.verify(ctx, r)
	case types.NodeManageable:
		switch {
		case r.Target != types.NodeAvailable:
			return nil
		case r.HardwareInfo().Known():
			_, err := c.transition(ctx, r, func(n *store.NodeRow) string {
				n.State, n.Target = types.NodeAvailable, ""
				return "provided; hardware known from enrolment"
			})
			return err
		default:
			_, err := c.transition(ctx, r, func(n *store.NodeRow) string {
				n.State, n.Step, n.Attempt = types.NodeInspecting, "", 0
				return "provided; inspecting the hardware first"
			})
			return err
		}
	case types.NodeInspecting:
		return c.agentStep(ctx, r, types.AgentInspect, c.cfg.InspectTimeout)
	case types.NodeDeploying:
		return c.agentStep(ctx, r, types.AgentDeploy, c.cfg.DeployTimeout)
	case types.NodeCleaning:
		return c.agentStep(ctx, r, types.AgentClean, c.cfg.CleanTimeout)
	case types.NodeDeleting:
		return c.tearDown(ctx, r)
	}
	return nil
}

// transition changes the node if it is still in the state and step it was
// read in (another writer moving it on makes this a no-op ErrNodeState).
func (c *Conductor) transition(ctx context.Context, seen store.NodeRow, apply func(*store.NodeRow) string) (store.NodeRow, error) {
	return c.store.ChangeNode(ctx, seen.ID, 0, c.actor(), func(_ *store.Tx, n *store.NodeRow) (string, error) {
		if n.State != seen.State || n.Step != seen.Step {
			return "", &store.NodeStateError{NodeID: n.ID, State: n.State + "/" + n.Step, Want: []string{seen.State + "/" + seen.Step}}
		}
		return apply(n), nil
	})
}

// fail puts a node (and its server, if any) in error with reason, and
// powers it off when it was booted into the ramdisk.
func (c *Conductor) fail(ctx context.Context, seen store.NodeRow, reason string) error {
	_, err := c.store.UpdateNodeServer(ctx, seen.ID, c.actor(), func(_ *store.Tx, n *store.NodeRow) (string, error) {
		if n.State != seen.State || n.Step != seen.Step {
			return "", &store.NodeStateError{NodeID: n.ID, State: n.State, Want: []string{seen.State}}
		}
		n.State, n.Step, n.LastError, n.Target = types.NodeError, "", reason, ""
		n.ClearAgentCredentials()
		n.SetDeadline(time.Time{})
		return reason, nil
	}, store.MarkServerError(reason))
	if err != nil {
		return err
	}
	c.log.Warn("node failed", "node", seen.ID, "state", seen.State, "reason", reason)
	if seen.Step == StepWaitAgent || seen.Step == StepBooting || seen.Step == StepAgentDone || seen.Step == StepNetworks {
		if bmc, berr := c.bmc(seen); berr == nil {
			if perr := bmc.SetPower(ctx, PowerOff); perr == nil {
				c.store.RecordNodePower(ctx, seen.ID, types.PowerOff, "", "powered off after the failure", c.actor())
			}
		}
	}
	return nil
}

// bmc returns the BMC of a node, its password opened with the keyring.
func (c *Conductor) bmc(r store.NodeRow) (BMC, error) {
	pw, err := c.keys.Open(r.BMCPassword)
	if err != nil {
		return nil, fmt.Errorf("node %s: bmc password: %w", r.ID, err)
	}
	return c.bmcs.BMC(Credentials{Address: r.BMCAddress, Port: r.BMCPort, Username: r.BMCUsername, Password: pw}), nil
}

// bmcFault describes a BMC error for the node's record.
func bmcFault(err error) string {
	switch {
	case errors.Is(err, ErrUnreachable):
		return "bmc unreachable: " + err.Error()
	case errors.Is(err, ErrRejected):
		return "bmc rejected the request: " + err.Error()
	}
	return err.Error()
}

// verify checks the BMC credentials by reading the power state.
func (c *Conductor) verify(ctx context.Context, r store.NodeRow) error {
	bmc, err := c.bmc(r)
	if err != nil {
		_, terr := c.transition(ctx, r, func(n *store.NodeRow) string {
			n.State, n.Target, n.LastError = types.NodeEnroll, "", err.Error()
			return n.LastError
		})
		return terr
	}
	power, err := bmc.PowerState(ctx)
	if err != nil {
		reason := "bmc credentials not verified: " + bmcFault(err)
		if errors.Is(err, ErrRejected) {
			reason = "bmc credentials rejected: the BMC at " + fmt.Sprintf("%s:%d", r.BMCAddress, r.BMCPort) +
				" refused a session for user " + r.BMCUsername + " (wrong username or password, or no common cipher suite)"
		}
		_, terr := c.transition(ctx, r, func(n *store.NodeRow) string {
			n.State, n.Target, n.LastError = types.NodeEnroll, "", reason
			return reason
		})
		return terr
	}
	if _, err := c.store.RecordNodePower(ctx, r.ID, power, "", "read while verifying the BMC", c.actor()); err != nil {
		return err
	}
	_, err = c.transition(ctx, r, func(n *store.NodeRow) string {
		n.State, n.LastError = types.NodeManageable, ""
		if n.Target == types.NodeManageable {
			n.Target = ""
		}
		return "bmc credentials verified (power " + power + ")"
	})
	return err
}

// agentStep drives the states in which the deploy ramdisk runs.
func (c *Conductor) agentStep(ctx context.Context, r store.NodeRow, mode string, timeout time.Duration) error {
	switch r.Step {
	case "", StepBooting:
		return c.bootRamdisk(ctx, r, mode, timeout)
	case StepWaitAgent:
		if dl := r.DeadlineTime(); !dl.IsZero() && time.Now().After(dl) {
			return c.fail(ctx, r, fmt.Sprintf("%s timed out: the deploy agent did not report within %s "+
				"(check the node's console, and DHCP and HTTP on the provisioning network)", r.State, timeout))
		}
		return nil
	case StepAgentDone:
		return c.finish(ctx, r, mode)
	case StepNetworks:
		return c.activate(ctx, r)
	}
	return nil
}

// bootRamdisk starts an attempt: a new agent token (which invalidates any
// earlier attempt's agent), DHCP entries, then PXE once and a power cycle.
func (c *Conductor) bootRamdisk(ctx context.Context, r store.NodeRow, mode string, timeout time.Duration) error {
	if r.Attempt >= c.cfg.MaxAttempts {
		return c.fail(ctx, r, fmt.Sprintf("%s gave up after %d attempts to boot the deploy ramdisk (interrupted each time)", r.State, r.Attempt))
	}
	if c.prov == nil {
		return c.fail(ctx, r, r.State+" needs the provisioning network, and this corrald has none (--pxe-interface)")
	}
	if mode == types.AgentDeploy {
		img, err := c.store.GetImage(ctx, r.ImageID)
		if err != nil {
			return c.fail(ctx, r, "image "+r.ImageID+": "+err.Error())
		}
		if err := c.prov.PrepareImage(ctx, img); err != nil {
			return c.fail(ctx, r, "prepare image "+img.ID+": "+err.Error())
		}
	}
	// A new boot token, bound to this state and attempt: it opens for
	// nothing else, and a newer attempt's token replaces it.
	sealed, err := SealToken(c.keys, r.State, r.Attempt+1, randomHex(24))
	if err != nil {
		return err
	}
	booting, err := c.transition(ctx, r, func(n *store.NodeRow) string {
		n.Step = StepBooting
		n.Attempt++
		n.ClearAgentCredentials()
		n.AgentToken, n.AgentTokenExpires = sealed, time.Now().Add(c.cfg.TokenTTL).UnixMicro()
		n.SetDeadline(time.Now().Add(timeout))
		return ""
	})
	if err != nil {
		return err
	}
	if err := c.prov.Refresh(ctx); err != nil {
		return c.fail(ctx, booting, "update DHCP for the provisioning network: "+err.Error())
	}
	bmc, err := c.bmc(booting)
	if err != nil {
		return c.fail(ctx, booting, err.Error())
	}
	// The ramdisk needs the provisioning network (after a delete the node
	// comes back to it here, to be cleaned).
	if err := c.setProvisioning(ctx, booting, true, "booting the deploy ramdisk ("+mode+")"); err != nil {
		return c.fail(ctx, booting, "put the node on the provisioning network: "+err.Error())
	}
	if err := c.reboot(ctx, booting, bmc, BootPXE, "booting the deploy ramdisk ("+mode+")"); err != nil {
		return c.fail(ctx, booting, "boot the deploy ramdisk: "+bmcFault(err))
	}
	_, err = c.transition(ctx, booting, func(n *store.NodeRow) string {
		n.Step = StepWaitAgent
		return ""
	})
	return err
}

// reboot sets the boot device and power-cycles the node (off, then on:
// an IPMI "cycle" does nothing to a node that is off).
func (c *Conductor) reboot(ctx context.Context, r store.NodeRow, bmc BMC, dev BootDevice, why string) error {
	if err := bmc.SetBootDevice(ctx, dev); err != nil {
		return err
	}
	if err := bmc.SetPower(ctx, PowerOff); err != nil {
		return err
	}
	if err := bmc.SetPower(ctx, PowerOn); err != nil {
		return err
	}
	_, err := c.store.RecordNodePower(ctx, r.ID, types.PowerOn, "", why, c.actor())
	return err
}

// finish completes an operation after the agent reported success.
func (c *Conductor) finish(ctx context.Context, r store.NodeRow, mode string) error {
	bmc, err := c.bmc(r)
	if err != nil {
		return c.fail(ctx, r, err.Error())
	}
	switch mode {
	case types.AgentDeploy:
		// Boot the written disk from now on, powered off: the node is off
		// while its ports leave the provisioning network (StepNetworks),
		// so the tenant's OS never sees that network, not even for its
		// first DHCP request. Each call is idempotent: a conductor that
		// resumes here repeats them.
		if err := bmc.SetBootDevice(ctx, BootDisk); err != nil {
			return c.fail(ctx, r, "boot the deployed disk: "+bmcFault(err))
		}
		if err := bmc.SetPower(ctx, PowerOff); err != nil {
			return c.fail(ctx, r, "boot the deployed disk: "+bmcFault(err))
		}
		c.store.RecordNodePower(ctx, r.ID, types.PowerOff, "", "deployed; moving its switch ports", c.actor())
		_, err := c.transition(ctx, r, func(n *store.NodeRow) string {
			n.Step = StepNetworks
			return ""
		})
		return err
	default:
		if err := bmc.SetPower(ctx, PowerOff); err != nil {
			return c.fail(ctx, r, "power off after "+mode+": "+bmcFault(err))
		}
		c.store.RecordNodePower(ctx, r.ID, types.PowerOff, "", mode+" done", c.actor())
		_, err := c.transition(ctx, r, func(n *store.NodeRow) string {
			n.Step = ""
			n.ClearAgentCredentials()
			n.SetDeadline(time.Time{})
			if mode == types.AgentClean {
				why := "disks erased end to end and verified"
				if n.CleanMode == types.CleanQuick {
					why = "disk metadata wiped (quick)"
				}
				back := types.NodeAvailable
				if n.Target == types.NodeManageable {
					back = types.NodeManageable // a clean asked of a manageable node
				}
				n.State, n.Target, n.CleanMode = back, "", ""
				return why
			}
			if n.Target == types.NodeAvailable {
				n.State, n.Target = types.NodeAvailable, ""
				return "hardware inspected"
			}
			n.State, n.Target = types.NodeManageable, ""
			return "hardware inspected"
		})
		return err
	}
}

// activate moves a deployed node's switch ports onto its server's
// networks, powers it on from its disk and makes it active.
func (c *Conductor) activate(ctx context.Context, r store.NodeRow) error {
	bmc, err := c.bmc(r)
	if err != nil {
		return c.fail(ctx, r, err.Error())
	}
	if err := c.joinTenant(ctx, r); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return c.fail(ctx, r, "move the node's switch ports to its networks: "+err.Error())
	}
	if err := bmc.SetPower(ctx, PowerOn); err != nil {
		return c.fail(ctx, r, "boot the deployed disk: "+bmcFault(err))
	}
	if _, err := c.store.RecordNodePower(ctx, r.ID, types.PowerOn, "", "booting the deployed disk", c.actor()); err != nil {
		return err
	}
	_, err = c.store.UpdateNodeServer(ctx, r.ID, c.actor(), func(_ *store.Tx, n *store.NodeRow) (string, error) {
		if n.State != r.State || n.Step != r.Step {
			return "", &store.NodeStateError{NodeID: n.ID, State: n.State, Want: []string{r.State}}
		}
		n.State, n.Step = types.NodeActive, ""
		n.ClearAgentCredentials()
		n.SetDeadline(time.Time{})
		return "image written and verified; booted from disk", nil
	}, store.MarkServerActive(nil))
	return err
}

// setProvisioning moves the node's provisioning NIC on or off the
// provisioning network through the switch, if one is configured, and
// records the move in the node's history.
func (c *Conductor) setProvisioning(ctx context.Context, r store.NodeRow, on bool, why string) error {
	if c.cfg.Switch == nil {
		return nil
	}
	macs := r.MACList()
	if len(macs) == 0 {
		return fmt.Errorf("node %s has no MAC: %w", r.ID, ErrNoPort)
	}
	if err := c.cfg.Switch.SetProvisioning(ctx, NodeNIC{NodeID: r.ID, Name: r.Name, MAC: macs[0]}, on); err != nil {
		return err
	}
	to := "off the provisioning network"
	if on {
		to = "on the provisioning network"
	}
	if err := c.store.NodeEvent(ctx, r.ID, r.State, to, why, c.actor()); err != nil {
		c.log.Warn("record switch port", "node", r.ID, "error", err)
	}
	return nil
}

// tearDown powers a node off and removes its server; cleaning follows.
func (c *Conductor) tearDown(ctx context.Context, r store.NodeRow) error {
	bmc, err := c.bmc(r)
	if err != nil {
		return c.fail(ctx, r, err.Error())
	}
	if err := bmc.SetPower(ctx, PowerOff); err != nil {
		return c.fail(ctx, r, "power off to delete the server: "+bmcFault(err))
	}
	c.store.RecordNodePower(ctx, r.ID, types.PowerOff, "", "server deleted", c.actor())
	if err := c.leaveTenant(ctx, r); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return c.fail(ctx, r, "take the node off its tenant networks: "+err.Error())
	}
	_, err = c.store.DetachNodeServer(ctx, r.ID, c.actor())
	return err
}

// SyncPower reads an idle node's power state. A change the conductor did
// not make is recorded as an out-of-band change; a BMC that does not
// answer (after the driver's retries) flags the node with a fault, which
// clears when it answers again.
func (c *Conductor) SyncPower(ctx context.Context, id string) (store.NodeRow, error) {
	r, err := c.store.AcquireNodeLease(ctx, id, c.cfg.ID, c.cfg.LeaseTTL)
	if err != nil {
		return r, err
	}
	defer c.store.ReleaseNodeLease(context.WithoutCancel(ctx), id, c.cfg.ID)
	if !contains(syncStates, r.State) {
		return r, nil
	}
	bmc, err := c.bmc(r)
	if err != nil {
		return r, err
	}
	power, err := bmc.PowerState(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return r, err
		}
		return c.store.RecordNodePower(ctx, id, types.PowerUnknown, bmcFault(err), "", "sync:"+c.cfg.ID)
	}
	reason := ""
	if r.PowerState != types.PowerUnknown && r.PowerState != power {
		reason = fmt.Sprintf("changed out of band: recorded %s, the BMC says %s", r.PowerState, power)
	}
	return c.store.RecordNodePower(ctx, id, power, "", reason, "sync:"+c.cfg.ID)
}

// ErrNotIdle means a power operation was asked of a node the conductor
// is working on.
var ErrNotIdle = errors.New("node is busy")

// Power performs a power operation asked through the API on an idle node,
// under the node's lease (so it never races a conductor), and records the
// resulting power state.
func (c *Conductor) Power(ctx context.Context, id string, op PowerOp, actor string) (store.NodeRow, error) {
	r, err := c.store.AcquireNodeLease(ctx, id, c.cfg.ID, c.cfg.LeaseTTL)
	if err != nil {
		return r, err
	}
	defer c.store.ReleaseNodeLease(context.WithoutCancel(ctx), id, c.cfg.ID)
	if !contains(syncStates, r.State) && r.State != types.NodeEnroll {
		return r, fmt.Errorf("node %s is %s: %w", r.ID, r.State, ErrNotIdle)
	}
	bmc, err := c.bmc(r)
	if err != nil {
		return r, err
	}
	if err := bmc.SetPower(ctx, op); err != nil {
		if errors.Is(err, ErrUnreachable) {
			c.store.RecordNodePower(context.WithoutCancel(ctx), id, types.PowerUnknown, bmcFault(err), "", actor)
		}
		return r, err
	}
	power, err := bmc.PowerState(ctx)
	if err != nil {
		return r, err
	}
	return c.store.RecordNodePower(ctx, id, power, "", "power "+string(op)+" requested", actor)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}
