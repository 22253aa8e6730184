package baremetal_test

import (
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
	"github.com/corral-cloud/corral/baremetal/fake"
	"github.com/google/go-cmp/cmp"
)

// port plugs a port on a new network into the server, on the node's NIC.
func (r *rig) port(srv types.Server, name, segType string, segID int64, mac string) types.Port {
	r.t.Helper()
	n := must(r.t, func() (types.Network, error) {
		return r.st.CreateNetwork(ctx, types.Network{Name: name, SegmentType: segType, SegmentID: segID})
	})
	return must(r.t, func() (types.Port, error) {
		return r.st.CreatePort(ctx, store.PortSpec{Port: types.Port{NetworkID: n.ID, ProjectID: r.project.ID, DeviceID: srv.ID, MACAddress: mac}})
	})
}

// switchEvents lists the node's recorded switch moves.
func (r *rig) switchEvents(id string) []string {
	r.t.Helper()
	l := must(r.t, func() (types.List[types.NodeEvent], error) {
		return r.st.ListNodeEvents(ctx, id, store.ListOptions{Limit: 1000})
	})
	var out []string
	for _, e := range l.Items {
		if strings.Contains(e.To, "network") {
			out = append(out, e.To)
		}
	}
	return out
}

// TestTenantNetworks: a deployed node's switch port leaves the
// provisioning network for its port's VLAN network while the node is off,
// recorded in its history; deleting the server parks the port before the
// ports go, and cleaning brings it back to the provisioning network.
func TestTenantNetworks(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	n, srv, m := r.claimed("bm1", 9631)
	const mac = "52:54:00:00:00:01"
	p := r.port(srv, "tenant", types.SegmentVLAN, 210, mac)
	r.settle(n.ID)
	r.report(n.ID, types.AgentReport{Mode: "deploy", Done: true, OK: true, SHA256: "x"})
	row := r.settle(n.ID)
	if row.State != types.NodeActive {
		t.Fatalf("after deploy: %s (%s)", row.State, row.LastError)
	}
	// The move happened with the node off: power off, switch, power on.
	var power []string
	r.bmcs.Do(m, func(m *fake.Machine) { power = m.Calls[len(m.Calls)-2:] })
	if diff := cmp.Diff([]string{"power off", "power on"}, power); diff != "" {
		t.Errorf("last BMC calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{mac + " on", mac + " vlan 210"}, r.sw.Calls); diff != "" {
		t.Errorf("switch calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"on the provisioning network", "on network " + p.NetworkID}, r.switchEvents(n.ID)); diff != "" {
		t.Errorf("recorded moves (-want +got):\n%s", diff)
	}

	must(t, func() (types.Server, error) { return r.st.BeginBaremetalDelete(ctx, srv.ID, 0, "test") })
	row = r.settle(n.ID)
	if row.State != types.NodeCleaning || !r.sw.OnProvisioning(mac) {
		t.Fatalf("after delete: %s, on provisioning %v", row.State, r.sw.OnProvisioning(mac))
	}
	if diff := cmp.Diff([]string{mac + " on", mac + " vlan 210", mac + " off", mac + " on"}, r.sw.Calls); diff != "" {
		t.Errorf("switch calls (-want +got):\n%s", diff)
	}
	wantEv := []string{"on the provisioning network", "on network " + p.NetworkID, "off the tenant networks", "on the provisioning network"}
	if diff := cmp.Diff(wantEv, r.switchEvents(n.ID)); diff != "" {
		t.Errorf("recorded moves (-want +got):\n%s", diff)
	}
}

// TestTenantNetworkUnsupported: a network the switch cannot carry fails
// the deploy at once (no retries), naming the reason, with the node off
// and never on a tenant network; a NIC without a port is parked.
func TestTenantNetworkUnsupported(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	r.sw.Unsupported = types.SegmentVXLAN
	n, srv, _ := r.claimed("bm1", 9631)
	r.port(srv, "overlay", types.SegmentVXLAN, 5001, "52:54:00:00:00:01")
	r.settle(n.ID)
	r.report(n.ID, types.AgentReport{Mode: "deploy", Done: true, OK: true, SHA256: "x"})
	row := r.settle(n.ID)
	got := must(t, func() (types.Server, error) { return r.st.GetServer(ctx, srv.ID) })
	if row.State != types.NodeError || !strings.Contains(row.LastError, "vxlan") || got.State != types.ServerError {
		t.Errorf("node %s %q, server %s", row.State, row.LastError, got.State)
	}
	if diff := cmp.Diff([]string{"52:54:00:00:00:01 on"}, r.sw.Calls); diff != "" {
		t.Errorf("switch calls (-want +got):\n%s", diff)
	}

	// No port at all: parked, as before tenant networks existed.
	n2, _, _ := r.claimed("bm2", 9632)
	r.settle(n2.ID)
	r.report(n2.ID, types.AgentReport{Mode: "deploy", Done: true, OK: true, SHA256: "x"})
	if row := r.settle(n2.ID); row.State != types.NodeActive || r.sw.OnProvisioning("52:54:00:00:00:02") {
		t.Errorf("portless node: %s (%s), on provisioning %v", row.State, row.LastError, r.sw.OnProvisioning("52:54:00:00:00:02"))
	}
}
