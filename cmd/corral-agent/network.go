package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/corral-cloud/corral/agent"
	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	networkagent "github.com/corral-cloud/corral/network/agent"
	"github.com/corral-cloud/corral/network/ovs"
)

// runNetwork runs the network reconcile loop beside the agent's other
// loops until ctx ends: it waits for the agent's registration (the state
// file in stateDir), then keeps the integration bridge in line with the
// host's desired network state. It never returns an error: corrald or Open
// vSwitch being unreachable is logged and retried, and installed flows
// stay as they are meanwhile. bridge is the integration bridge the guests
// plug into (--bridge), tunnelIP the host's VXLAN endpoint (--tunnel-ip),
// physnets the uplinks of provider networks (--physnet), dhcp the guests'
// DHCP servers (--dhcp; nil for none).
func runNetwork(ctx context.Context, log *slog.Logger, endpoint, stateDir, bridge, tunnelIP string, physnets physnetFlag, dhcp *networkagent.DHCP) {
	log = log.With("loop", "network", "bridge", bridge)
	src := &stateSource{dir: stateDir, endpoint: endpoint}
	var hostID string
	for hostID == "" {
		if st, err := src.load(); err == nil && st.HostID != "" && st.Token != "" {
			hostID = st.HostID
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	r := &networkagent.Reconciler{Source: src, Switch: ovs.New(bridge), HostID: hostID, TunnelIP: tunnelIP, Logger: log,
		Physnets: physnets, DHCP: dhcp}
	if dhcp != nil {
		dhcp.Switch, dhcp.Bridge, dhcp.Logger = r.Switch.(*ovs.Driver), bridge, log
	}
	if err := r.Run(ctx); err != nil {
		log.Error("network loop stopped", "error", err)
	}
}

// physnetFlag collects --physnet NAME=UPLINK values.
type physnetFlag map[string]networkagent.Uplink

func (f *physnetFlag) String() string {
	var out []string
	for n, u := range *f {
		v := n + "=" + u.Bridge
		if u.Interface != "" {
			v += ":" + u.Interface
		}
		out = append(out, v)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func (f *physnetFlag) Set(v string) error {
	name, up, err := networkagent.ParsePhysnet(v)
	if err != nil {
		return err
	}
	if *f == nil {
		*f = physnetFlag{}
	}
	if _, dup := (*f)[name]; dup {
		return fmt.Errorf("physical network %s is given twice", name)
	}
	(*f)[name] = up
	return nil
}

// stateSource calls corrald with the agent token in the agent's state
// file, re-reading the file when corrald refuses the token (the agent
// registered again and got a new one).
type stateSource struct {
	dir, endpoint string
	mu            sync.Mutex
	api           *client.Client
}

func (s *stateSource) load() (agent.State, error) {
	var st agent.State
	data, err := os.ReadFile(filepath.Join(s.dir, agent.StateFile))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(data, &st)
}

func (s *stateSource) client(reload bool) (*client.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.api == nil || reload {
		st, err := s.load()
		if err != nil {
			return nil, err
		}
		if st.Token == "" {
			return nil, errors.New("the agent has no token yet")
		}
		s.api = client.New(s.endpoint, st.Token, nil)
		s.api.UserAgent = "corral-agent/" + version + " network"
	}
	return s.api, nil
}

// call runs fn, once more with a re-read token if corrald refused it.
func (s *stateSource) call(fn func(*client.Client) error) error {
	c, err := s.client(false)
	if err != nil {
		return err
	}
	err = fn(c)
	var ae *client.Error
	if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden) {
		if c, rerr := s.client(true); rerr == nil {
			err = fn(c)
		}
	}
	return err
}

// HostNetwork implements networkagent.Source.
func (s *stateSource) HostNetwork(ctx context.Context, hostID, version string, wait time.Duration) (types.HostNetwork, error) {
	var out types.HostNetwork
	err := s.call(func(c *client.Client) error {
		var err error
		out, err = c.HostNetwork(ctx, hostID, version, wait)
		return err
	})
	return out, err
}

// SetTunnelEndpoint implements networkagent.Source.
func (s *stateSource) SetTunnelEndpoint(ctx context.Context, hostID, ip string) error {
	return s.call(func(c *client.Client) error { return c.SetTunnelEndpoint(ctx, hostID, ip) })
}

var _ networkagent.Source = (*stateSource)(nil)

// dhcpServer is the network loop's DHCP server, nil with --dhcp=false.
func (c *computeOptions) dhcpServer() *networkagent.DHCP {
	if !c.dhcp {
		return nil
	}
	return &networkagent.DHCP{Dir: c.dhcpDir, UnderlayMTU: c.underlayMTU}
}
