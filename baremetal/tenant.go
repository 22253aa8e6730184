package baremetal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/backoff"
)

// NICPort is a NIC of a node with the Corral port its server has on it,
// if any: a bare-metal server's port carries the MAC of the node's NIC it
// is bound to (the API gives it that MAC when the port is plugged in).
type NICPort struct {
	NIC NodeNIC
	// Port is the server's port on the NIC; nil when the NIC has none.
	Port *types.Port
	// Network is the port's network (zero without a port).
	Network types.Network
}

// NodePorts returns each NIC of a node with its server's port on it. Ports
// whose MAC is no NIC of the node are returned in stray: nothing cables
// them, and the caller reports them.
func NodePorts(ctx context.Context, st NodeStore, r store.NodeRow) (nics []NICPort, stray []types.Port, err error) {
	for _, mac := range r.MACList() {
		nics = append(nics, NICPort{NIC: NodeNIC{NodeID: r.ID, Name: r.Name, MAC: mac}})
	}
	if r.ServerID == "" {
		return nics, nil, nil
	}
	ports, err := st.ListPorts(ctx, store.ListOptions{Limit: 100, Filters: map[string]string{"device_id": r.ServerID}})
	if err != nil {
		return nil, nil, fmt.Errorf("ports of server %s: %w", r.ServerID, err)
	}
	for _, p := range ports.Items {
		i := slices.IndexFunc(nics, func(n NICPort) bool { return strings.EqualFold(n.NIC.MAC, p.MACAddress) })
		if i < 0 || nics[i].Port != nil {
			stray = append(stray, p)
			continue
		}
		net, err := st.GetNetwork(ctx, p.NetworkID)
		if err != nil {
			return nil, nil, fmt.Errorf("network of port %s: %w", p.ID, err)
		}
		nics[i].Port, nics[i].Network = &p, net
	}
	return nics, stray, nil
}

// switchAttempts bounds the tries of one switch move before the node
// fails; the waits between them come from the backoff helper.
const switchAttempts = 4

// switchRetry runs a switch call until it succeeds, fails for good
// (ErrSegmentUnsupported, ErrNoPort) or has been tried switchAttempts
// times, waiting the conductor's backoff between tries. Each try gets the
// switch timeout.
func (c *Conductor) switchRetry(ctx context.Context, fn func(context.Context) error) error {
	b := c.cfg.SwitchBackoff
	var err error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.cfg.SwitchTimeout)
		err = fn(actx)
		cancel()
		if err == nil || errors.Is(err, ErrSegmentUnsupported) || errors.Is(err, ErrNoPort) || attempt >= switchAttempts {
			return err
		}
		wait := b.Next()
		c.log.Warn("switch port move failed; retrying", "error", err, "retry_in", wait)
		if serr := backoff.Sleep(ctx, wait); serr != nil {
			return err
		}
	}
}

// joinTenant moves each NIC of an active node's switch port from the
// provisioning network to its port's network, or parks it when the
// server has no port on it. Every move is recorded in the node's history.
// Idempotent: a conductor that resumes here repeats the moves.
func (c *Conductor) joinTenant(ctx context.Context, r store.NodeRow) error {
	if c.cfg.Switch == nil {
		return nil
	}
	nics, stray, err := NodePorts(ctx, c.store, r)
	if err != nil {
		return err
	}
	if len(nics) == 0 {
		return fmt.Errorf("node %s has no MAC: %w", r.ID, ErrNoPort)
	}
	for _, p := range stray {
		c.log.Warn("port of a bare-metal server on no NIC of its node", "node", r.ID, "port", p.ID, "mac", p.MACAddress)
	}
	for _, n := range nics {
		to, why := "off the provisioning network", "deployed: no port of the server on NIC "+n.NIC.MAC+" (parked)"
		err := c.switchRetry(ctx, func(ctx context.Context) error {
			if n.Port == nil {
				return c.cfg.Switch.SetProvisioning(ctx, n.NIC, false)
			}
			return c.cfg.Switch.SetTenant(ctx, n.NIC, Segment{NetworkID: n.Network.ID, Type: n.Network.SegmentType, ID: n.Network.SegmentID})
		})
		if err != nil {
			return err
		}
		if n.Port != nil {
			to = fmt.Sprintf("on network %s", n.Network.ID)
			why = fmt.Sprintf("deployed: NIC %s joins network %s (%s %d) for port %s", n.NIC.MAC, n.Network.ID,
				n.Network.SegmentType, n.Network.SegmentID, n.Port.ID)
		}
		if err := c.store.NodeEvent(ctx, r.ID, r.State, to, why, c.actor()); err != nil {
			c.log.Warn("record switch port", "node", r.ID, "error", err)
		}
	}
	return nil
}

// leaveTenant parks every NIC of a node whose server is being deleted:
// off its tenant networks before the server and its ports go, so the
// node never holds a network its ports no longer grant. Cleaning then
// moves the provisioning NIC onto the provisioning network.
func (c *Conductor) leaveTenant(ctx context.Context, r store.NodeRow) error {
	if c.cfg.Switch == nil {
		return nil
	}
	for _, mac := range r.MACList() {
		nic := NodeNIC{NodeID: r.ID, Name: r.Name, MAC: mac}
		if err := c.switchRetry(ctx, func(ctx context.Context) error { return c.cfg.Switch.SetProvisioning(ctx, nic, false) }); err != nil {
			return err
		}
		if err := c.store.NodeEvent(ctx, r.ID, r.State, "off the tenant networks", "server deleted: NIC "+mac+" parked", c.actor()); err != nil {
			c.log.Warn("record switch port", "node", r.ID, "error", err)
		}
	}
	return nil
}

// defaultSwitchBackoff is the waits between switch tries: 1 s doubling to
// 10 s, minus up to 20 % jitter.
func defaultSwitchBackoff() backoff.Backoff {
	return backoff.Backoff{Initial: time.Second, Max: 10 * time.Second, Jitter: 0.2}
}
