package server

import (
	"net/http"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// agentOf registers a host as its agent would and returns the host and its
// agent token.
func (e *env) agentOf(name string) (types.Host, string) {
	e.t.Helper()
	var reg types.HostRegistration
	e.must(200, "POST", "/v1/hosts/register", types.HostRegister{Name: name, Region: "dc1", Zone: "rack1",
		Aggregates: []string{"gen10"}, Inventory: types.Inventory{CPUs: 64, RAMMiB: 262144, DiskGiB: 1000}}, &reg)
	e.must(204, "POST", "/v1/hosts/"+reg.Host.ID+"/heartbeat", types.Heartbeat{Usage: types.Usage{MemFreeMiB: 200000}}, nil)
	return reg.Host, reg.Token
}

func (e *env) watch(token, hostID, version, wait string) (types.HostGuests, resp) {
	e.t.Helper()
	r := e.call(token, "GET", "/v1/hosts/"+hostID+"/guests?version="+version+"&wait="+wait, nil)
	var hg types.HostGuests
	if r.status == 200 {
		r.decode(e.t, &hg)
	}
	return hg, r
}

func (e *env) report(token, hostID string, st ...types.GuestStatus) resp {
	e.t.Helper()
	return e.call(token, "POST", "/v1/hosts/"+hostID+"/guests/status", types.GuestReport{Guests: st})
}

// TestGuestWatch: the agent's long poll answers at once when its version
// is stale, waits when it is current, and wakes as soon as a server is
// placed on, changed on or deleted from its host; only the host's own
// agent (or an admin) may watch.
func TestGuestWatch(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	e.must(200, "PATCH", "/v1/hosts/"+c.host.ID, types.HostUpdate{State: ptr(types.HostMaintenance)}, nil)
	host, agent := e.agentOf("hv9")

	hg, r := e.watch(agent, host.ID, "", "10s")
	if r.status != 200 || len(hg.Guests) != 0 || hg.Version == "" {
		t.Fatalf("first watch = %d %s", r.status, r.body)
	}
	// Current version, nothing changes: answers after wait, same version.
	start := time.Now()
	again, _ := e.watch(agent, host.ID, hg.Version, "300ms")
	if again.Version != hg.Version || time.Since(start) < 300*time.Millisecond {
		t.Errorf("idle watch answered %v after %s", again.Version, time.Since(start))
	}
	// A create wakes a waiting watch.
	done := make(chan types.HostGuests)
	go func() {
		got, _ := e.watch(agent, host.ID, hg.Version, "20s")
		done <- got
	}()
	time.Sleep(100 * time.Millisecond)
	var srv types.Server
	e.must(201, "POST", "/v1/servers", c.server("w1"), &srv)
	var woke types.HostGuests
	select {
	case woke = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not wake on a create")
	}
	if len(woke.Guests) != 1 || woke.Version == hg.Version {
		t.Fatalf("after create: %+v", woke)
	}
	g := woke.Guests[0]
	if g.ServerID != srv.ID || g.DesiredState != types.DesiredActive || g.VCPUs != 1 || g.RAMMiB != 512 ||
		g.Image.SHA256 != c.image.SHA256 || len(g.NICs) != 1 || g.NICs[0].MAC == "" {
		t.Errorf("guest spec %+v", g)
	}
	// Stopping changes the spec (and the version).
	e.must(202, "POST", "/v1/servers/"+srv.ID+"/actions", types.ServerAction{Action: types.ActionStop}, nil)
	stopped, _ := e.watch(agent, host.ID, woke.Version, "5s")
	if stopped.Guests[0].DesiredState != types.DesiredStopped {
		t.Errorf("after stop: %+v", stopped.Guests[0])
	}
	// Bad wait, other host's agent, readers.
	if _, r := e.watch(agent, host.ID, "", "forever"); r.status != 400 || r.apiErr(t).Details["field"] != "wait" {
		t.Errorf("bad wait = %d %s", r.status, r.body)
	}
	_, other := e.agentOf("hv10")
	if _, r := e.watch(other, host.ID, "", "1s"); r.status != 403 {
		t.Errorf("another host's agent watching = %d, want 403", r.status)
	}
	if _, r := e.watch(e.token(types.RoleReader, ""), host.ID, "", "1s"); r.status != 403 {
		t.Errorf("a reader watching = %d, want 403", r.status)
	}
	if _, r := e.watch(e.admin, "host-nope", "", "1s"); r.status != 404 {
		t.Errorf("watching an unknown host = %d, want 404", r.status)
	}
}

func ptr[T any](v T) *T { return &v }

// TestGuestReportsAndDelete: reports move the server through building and
// active with what the agent observed; a delete of a guest the agent has
// made turns the server "deleting" until the agent confirms, and only then
// is the claim given back; reports for unknown servers are ignored; a
// force delete is for admins.
func TestGuestReportsAndDelete(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	e.must(200, "PATCH", "/v1/hosts/"+c.host.ID, types.HostUpdate{State: ptr(types.HostMaintenance)}, nil)
	host, agent := e.agentOf("hv9")
	var srv types.Server
	e.must(201, "POST", "/v1/servers", c.server("r1"), &srv)
	if srv.HostID != host.ID {
		t.Fatalf("placed on %s, want %s", srv.HostID, host.ID)
	}

	if r := e.report(agent, host.ID, types.GuestStatus{ServerID: srv.ID, State: types.GuestBuilding}); r.status != 200 {
		t.Fatalf("report = %d %s", r.status, r.body)
	}
	e.must(200, "GET", "/v1/servers/"+srv.ID, nil, &srv)
	if srv.State != types.ServerBuilding {
		t.Errorf("state %s, want building", srv.State)
	}
	now := time.Now().UTC().Truncate(time.Second)
	obs := types.GuestObserved{Domain: "corral-" + srv.ID, DomainID: 7, DomainType: "qemu", StartedAt: &now,
		QoS: []types.AppliedQoS{{Limit: "disk_iops", Value: 50, Mechanism: "libvirt-iotune vda"}}}
	r := e.report(agent, host.ID, types.GuestStatus{ServerID: srv.ID, State: types.GuestActive, Observed: obs},
		types.GuestStatus{ServerID: "srv-unknown", State: types.GuestActive})
	var res struct{ Unknown []string }
	r.decode(t, &res)
	if len(res.Unknown) != 1 || res.Unknown[0] != "srv-unknown" {
		t.Errorf("report answer %s", r.body)
	}
	e.must(200, "GET", "/v1/servers/"+srv.ID, nil, &srv)
	if srv.State != types.ServerActive || srv.LaunchedAt == nil || srv.Observed == nil || srv.Observed.DomainID != 7 ||
		len(srv.Observed.QoS) != 1 {
		t.Errorf("after active report: %+v observed %+v", srv, srv.Observed)
	}
	// Bad reports.
	if r := e.report(agent, host.ID, types.GuestStatus{ServerID: srv.ID, State: "flying"}); r.status != 400 ||
		r.apiErr(t).Details["field"] != "guests[0].state" {
		t.Errorf("bad state = %d %s", r.status, r.body)
	}
	_, other := e.agentOf("hv10")
	if r := e.report(other, host.ID, types.GuestStatus{ServerID: srv.ID, State: types.GuestError}); r.status != 403 {
		t.Errorf("another host's agent reporting = %d, want 403", r.status)
	}

	// Reboot asks once more; only an active server.
	var rebooted types.Server
	e.must(202, "POST", "/v1/servers/"+srv.ID+"/actions", types.ServerAction{Action: types.ActionReboot}, &rebooted)
	if rebooted.RebootSeq != 1 {
		t.Errorf("reboot_seq %d", rebooted.RebootSeq)
	}
	if r := e.call(e.admin, "POST", "/v1/servers/"+srv.ID+"/actions", types.ServerAction{Action: "explode"}); r.status != 400 {
		t.Errorf("bad action = %d", r.status)
	}

	// Delete: 202 deleting, the claim held until the agent confirms.
	hostBefore := getHost(e, host.ID)
	var deleting types.Server
	e.must(202, "DELETE", "/v1/servers/"+srv.ID, nil, &deleting)
	if deleting.State != types.ServerDeleting {
		t.Fatalf("delete answered state %s", deleting.State)
	}
	hg, _ := e.watch(agent, host.ID, "", "1s")
	if len(hg.Guests) != 1 || hg.Guests[0].DesiredState != types.DesiredDeleted {
		t.Fatalf("desired after delete: %+v", hg.Guests)
	}
	if r := e.call(e.admin, "POST", "/v1/servers/"+srv.ID+"/actions", types.ServerAction{Action: types.ActionStart}); r.status != 409 {
		t.Errorf("start while deleting = %d, want 409", r.status)
	}
	if h := getHost(e, host.ID); h.Allocated != hostBefore.Allocated {
		t.Errorf("claim released before the agent confirmed: %+v → %+v", hostBefore.Allocated, h.Allocated)
	}
	// A late "active" report does not undo the delete.
	e.report(agent, host.ID, types.GuestStatus{ServerID: srv.ID, State: types.GuestActive, Observed: obs})
	e.must(200, "GET", "/v1/servers/"+srv.ID, nil, &srv)
	if srv.State != types.ServerDeleting {
		t.Errorf("state after a late active report: %s", srv.State)
	}
	e.report(agent, host.ID, types.GuestStatus{ServerID: srv.ID, State: types.GuestDeleted})
	if r := e.call(e.admin, "GET", "/v1/servers/"+srv.ID, nil); r.status != 404 {
		t.Errorf("server after confirmed delete = %d", r.status)
	}
	if h := getHost(e, host.ID); h.Allocated.Guests != 0 || h.Allocated.VCPUs != 0 {
		t.Errorf("claim not released: %+v", h.Allocated)
	}

	// A server no agent has reported on goes at once (204).
	var fresh types.Server
	e.must(201, "POST", "/v1/servers", c.server("r2"), &fresh)
	e.must(204, "DELETE", "/v1/servers/"+fresh.ID, nil, nil)

	// Force delete: admin only, at once.
	e.must(201, "POST", "/v1/servers", c.server("r3"), &fresh)
	e.report(agent, host.ID, types.GuestStatus{ServerID: fresh.ID, State: types.GuestActive})
	member := e.token(types.RoleMember, c.project.ID)
	if r := e.call(member, "DELETE", "/v1/servers/"+fresh.ID+"?force=true", nil); r.status != 403 {
		t.Errorf("member force delete = %d, want 403", r.status)
	}
	e.must(204, "DELETE", "/v1/servers/"+fresh.ID+"?force=true", nil, nil)
	if h := getHost(e, host.ID); h.Allocated.Guests != 0 {
		t.Errorf("force delete kept the claim: %+v", h.Allocated)
	}
	// A guest that vanishes without being asked is an error.
	e.must(201, "POST", "/v1/servers", c.server("r4"), &fresh)
	e.report(agent, host.ID, types.GuestStatus{ServerID: fresh.ID, State: types.GuestActive})
	e.report(agent, host.ID, types.GuestStatus{ServerID: fresh.ID, State: types.GuestDeleted})
	e.must(200, "GET", "/v1/servers/"+fresh.ID, nil, &fresh)
	if fresh.State != types.ServerError || fresh.Fault == "" {
		t.Errorf("vanished guest: state %s fault %q", fresh.State, fresh.Fault)
	}
}

func getHost(e *env, id string) types.Host {
	e.t.Helper()
	var h types.Host
	e.must(http.StatusOK, "GET", "/v1/hosts/"+id, nil, &h)
	return h
}

// TestDeletedServerUnplugsPorts: a port plugged into a server is the
// guest's NIC; when the server goes, the port is unplugged but keeps its
// address, ready for another server.
func TestDeletedServerUnplugsPorts(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	e.must(200, "PATCH", "/v1/hosts/"+c.host.ID, types.HostUpdate{State: ptr(types.HostMaintenance)}, nil)
	host, agent := e.agentOf("hv9")
	e.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "n1", Project: c.project.ID, SegmentType: "vlan", SegmentID: 100}, nil)
	e.must(201, "POST", "/v1/subnets", types.SubnetCreate{Name: "s1", Network: "n1", CIDR: "10.5.0.0/24", GatewayIP: "10.5.0.1"}, nil)
	var srv types.Server
	e.must(201, "POST", "/v1/servers", c.server("p1"), &srv)
	var port types.Port
	e.must(201, "POST", "/v1/ports", types.PortCreate{Network: "n1", Project: c.project.ID, Server: srv.ID}, &port)
	if port.HostID != host.ID || len(port.FixedIPs) != 1 {
		t.Fatalf("port %+v", port)
	}
	hg, _ := e.watch(agent, host.ID, "", "1s")
	if len(hg.Guests) != 1 || len(hg.Guests[0].NICs) != 1 || hg.Guests[0].NICs[0].PortID != port.ID ||
		hg.Guests[0].NICs[0].IPs[0] != port.FixedIPs[0].IPAddress+"/24" || hg.Guests[0].NICs[0].Gateway != "10.5.0.1" ||
		hg.Guests[0].NICs[0].MAC != port.MACAddress {
		t.Fatalf("guest NICs %+v, port %+v", hg.Guests[0].NICs, port)
	}
	e.report(agent, host.ID, types.GuestStatus{ServerID: srv.ID, State: types.GuestActive})
	e.must(202, "DELETE", "/v1/servers/"+srv.ID, nil, nil)
	e.report(agent, host.ID, types.GuestStatus{ServerID: srv.ID, State: types.GuestDeleted})
	var after types.Port
	e.must(200, "GET", "/v1/ports/"+port.ID, nil, &after)
	if after.DeviceID != "" || after.HostID != "" || len(after.FixedIPs) != 1 || after.FixedIPs[0] != port.FixedIPs[0] {
		t.Errorf("port after its server went: %+v", after)
	}
}

// TestServerCreateWithNetworks: "networks" makes a port per network,
// plugged into the new server; when a network has no free address the
// create fails as a whole: no server, no port, no claim.
func TestServerCreateWithNetworks(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	e.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "n1", Project: c.project.ID, SegmentType: "vlan", SegmentID: 100}, nil)
	e.must(201, "POST", "/v1/subnets", types.SubnetCreate{Name: "s1", Network: "n1", CIDR: "10.5.0.0/24"}, nil)
	e.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "tiny", Project: c.project.ID, SegmentType: "vlan", SegmentID: 101}, nil)
	// A /30 without a gateway: two usable addresses.
	e.must(201, "POST", "/v1/subnets", types.SubnetCreate{Name: "s2", Network: "tiny", CIDR: "10.6.0.0/30", NoGateway: true}, nil)

	in := c.server("w1")
	in.Networks = []string{"n1", "tiny"}
	var srv types.Server
	e.must(201, "POST", "/v1/servers", in, &srv)
	var ports types.List[types.Port]
	e.must(200, "GET", "/v1/ports?device_id="+srv.ID, nil, &ports)
	if len(ports.Items) != 2 || ports.Items[0].HostID != srv.HostID {
		t.Fatalf("ports of the new server: %+v", ports.Items)
	}
	in = c.server("w2")
	in.Networks = []string{"tiny"}
	e.must(201, "POST", "/v1/servers", in, nil)

	before, hostBefore := e.counts(), getHost(e, c.host.ID)
	in = c.server("w3")
	in.Networks = []string{"n1", "tiny"}
	r := e.call(e.admin, "POST", "/v1/servers", in)
	if r.status != 409 {
		var tp types.List[types.Port]
		e.must(200, "GET", "/v1/ports?network=tiny", nil, &tp)
		t.Fatalf("create on an exhausted network = %d %s, want 409; tiny's ports %+v", r.status, r.body, tp.Items)
	}
	if e := r.apiErr(t); e.Code != "ip_pool_exhausted" || e.Details["field"] != "networks[1]" {
		t.Errorf("exhausted: %s", r.body)
	}
	if after := e.counts(); after["servers"] != before["servers"] {
		t.Errorf("servers %d → %d after a failed create", before["servers"], after["servers"])
	}
	var all types.List[types.Port]
	e.must(200, "GET", "/v1/ports?network=n1", nil, &all)
	if len(all.Items) != 1 {
		t.Errorf("n1 has %d ports after the failed create, want 1", len(all.Items))
	}
	if h := getHost(e, c.host.ID); h.Allocated != hostBefore.Allocated {
		t.Errorf("claim kept after a failed create: %+v → %+v", hostBefore.Allocated, h.Allocated)
	}
	// Bad references.
	in.Networks = []string{"nope"}
	if r := e.call(e.admin, "POST", "/v1/servers", in); r.status != 400 || r.apiErr(t).Details["field"] != "networks[0]" {
		t.Errorf("unknown network = %d %s", r.status, r.body)
	}
	in.Networks = []string{"n1", "n1"}
	if r := e.call(e.admin, "POST", "/v1/servers", in); r.status != 400 {
		t.Errorf("network listed twice = %d %s", r.status, r.body)
	}
}
