package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/types"
)

// metricLine returns the /metrics line of a series, or "".
func (e *env) metricLine(series string) string {
	e.t.Helper()
	r := e.call("", "GET", "/metrics", nil)
	for _, line := range strings.Split(string(r.body), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return line
		}
	}
	return ""
}

// TestUnknownGuests: an agent's report of guests corrald has no server for
// shows on the host (admin only) and in corral_unknown_guests; adopting
// one rebuilds its server with the same ID and takes its claim on the
// host; deleting one records a tombstone the host's watch carries until
// the agent confirms. Other roles are refused as on every host route.
func TestUnknownGuests(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	host, agent := e.agentOf("hv9")
	ghost := types.UnknownGuest{ServerID: "srv-ghost1", Name: "ghost", ProjectID: c.project.ID, FlavorID: c.flavor.ID,
		ImageID: c.image.ID, Kind: types.KindVM, VCPUs: 1, RAMMiB: 512, DiskGiB: 1, Domain: "corral-srv-ghost1", State: "running", DomainID: 4}
	odd := types.UnknownGuest{ServerID: "srv-odd1", Name: "odd", ProjectID: "prj-gone", FlavorID: c.flavor.ID, ImageID: c.image.ID,
		VCPUs: 2, RAMMiB: 512, DiskGiB: 1, State: "shut off"}
	list := []types.UnknownGuest{ghost, odd}
	if r := e.call(agent, "POST", "/v1/hosts/"+host.ID+"/guests/status", types.GuestReport{Guests: []types.GuestStatus{}, Unknown: &list}); r.status != 200 ||
		!strings.Contains(string(r.body), `"unknown_guests":2`) {
		t.Fatalf("report = %d %s", r.status, r.body)
	}
	// Another agent cannot report for this host.
	other, otherAgent := e.agentOf("hv8")
	if r := e.call(otherAgent, "POST", "/v1/hosts/"+host.ID+"/guests/status", types.GuestReport{Unknown: &list}); r.status != http.StatusForbidden {
		t.Errorf("another host's agent reported: %d %s", r.status, r.body)
	}
	if r := e.call(agent, "POST", "/v1/hosts/"+host.ID+"/guests/status", `{"guests":[],"unknown":[{"name":"x"}]}`); r.status != 400 ||
		r.apiErr(t).Details["field"] != "unknown[0].server_id" {
		t.Errorf("unknown guest without ID: %d %s", r.status, r.body)
	}

	var got types.List[types.UnknownGuest]
	e.must(200, "GET", "/v1/hosts/"+host.ID+"/unknown-guests", nil, &got)
	if len(got.Items) != 2 || got.Items[0].ServerID != "srv-ghost1" || got.Items[0].DomainID != 4 || got.Items[0].HostID != host.ID {
		t.Fatalf("unknown guests %+v", got.Items)
	}
	e.must(200, "GET", "/v1/hosts/hv9/unknown-guests", nil, &got) // by name too
	if line := e.metricLine(`corral_unknown_guests{host="hv9"}`); !strings.HasSuffix(line, " 2") {
		t.Errorf("metric: %q", line)
	}
	if line := e.metricLine(`corral_unknown_guests{host="hv8"}`); !strings.HasSuffix(line, " 0") {
		t.Errorf("metric of a host without unknown guests: %q", line)
	}

	// Admin only: every other role is refused as on host writes.
	member, reader := e.token(types.RoleMember, c.project.ID), e.token(types.RoleReader, "")
	for _, tok := range []string{member, reader, agent} {
		for _, req := range [][2]string{{"GET", "/unknown-guests"}, {"POST", "/unknown-guests/srv-ghost1/adopt"}, {"DELETE", "/unknown-guests/srv-ghost1"}} {
			if r := e.call(tok, req[0], "/v1/hosts/"+host.ID+req[1], nil); r.status != http.StatusForbidden {
				t.Errorf("%s %s as a non-admin = %d %s", req[0], req[1], r.status, r.body)
			}
		}
	}
	if r := e.call(e.admin, "GET", "/v1/hosts/host-nope/unknown-guests", nil); r.status != 404 {
		t.Errorf("unknown host = %d", r.status)
	}
	if r := e.call(e.admin, "POST", "/v1/hosts/"+other.ID+"/unknown-guests/srv-ghost1/adopt", types.GuestAdopt{}); r.status != 404 {
		t.Errorf("adopt on the wrong host = %d %s", r.status, r.body)
	}

	// Adopt: the server comes back with its ID, and its claim counts.
	before := e.hostOf(host.ID)
	var srv types.Server
	e.must(201, "POST", "/v1/hosts/"+host.ID+"/unknown-guests/srv-ghost1/adopt", types.GuestAdopt{}, &srv)
	if srv.ID != "srv-ghost1" || srv.Name != "ghost" || srv.HostID != host.ID || srv.State != types.ServerActive ||
		srv.ProjectID != c.project.ID || srv.FlavorID != c.flavor.ID {
		t.Errorf("adopted %+v", srv)
	}
	e.must(200, "GET", "/v1/servers/srv-ghost1", nil, &srv)
	after := e.hostOf(host.ID)
	if after.Allocated.Guests != before.Allocated.Guests+1 || after.Allocated.VCPUs != before.Allocated.VCPUs+1 ||
		after.Allocated.RAMMiB <= before.Allocated.RAMMiB+512 {
		t.Errorf("allocation %+v → %+v: the adopted guest's claim is missing", before.Allocated, after.Allocated)
	}
	if r := e.call(e.admin, "POST", "/v1/hosts/"+host.ID+"/unknown-guests/srv-ghost1/adopt", types.GuestAdopt{}); r.status != 404 {
		t.Errorf("second adoption = %d %s", r.status, r.body)
	}
	hg, _ := e.watch(agent, host.ID, "", "0s")
	if len(hg.Guests) != 1 || hg.Guests[0].ServerID != "srv-ghost1" || hg.Guests[0].DesiredState != types.DesiredActive {
		t.Errorf("watch after adoption: %+v", hg.Guests)
	}

	// The odd guest's project is gone and its flavor does not fit.
	r := e.call(e.admin, "POST", "/v1/hosts/"+host.ID+"/unknown-guests/srv-odd1/adopt", types.GuestAdopt{})
	if r.status != 400 || r.apiErr(t).Details["field"] != "project" {
		t.Errorf("adopt with a gone project = %d %s", r.status, r.body)
	}
	r = e.call(e.admin, "POST", "/v1/hosts/"+host.ID+"/unknown-guests/srv-odd1/adopt", types.GuestAdopt{Project: "kafka"})
	if r.status != 409 || r.apiErr(t).Details["field"] != "flavor" {
		t.Errorf("adopt with a flavor that does not fit = %d %s", r.status, r.body)
	}

	// Delete: a tombstone for the agent, confirmed by its report.
	var ts types.GuestTombstone
	e.must(202, "DELETE", "/v1/hosts/"+host.ID+"/unknown-guests/srv-odd1", nil, &ts)
	if ts.ServerID != "srv-odd1" || ts.Generation != 1 || ts.Confirmed {
		t.Errorf("tombstone %+v", ts)
	}
	hg, _ = e.watch(agent, host.ID, "", "0s")
	if len(hg.Tombstones) != 1 || hg.Tombstones[0].ServerID != "srv-odd1" || hg.Tombstones[0].Confirmed {
		t.Fatalf("watch tombstones %+v", hg.Tombstones)
	}
	e.must(200, "GET", "/v1/hosts/"+host.ID+"/unknown-guests", nil, &got)
	if len(got.Items) != 0 {
		t.Errorf("unknown guests after adopt and delete: %+v", got.Items)
	}
	if line := e.metricLine(`corral_unknown_guests{host="hv9"}`); !strings.HasSuffix(line, " 0") {
		t.Errorf("metric after adopt and delete: %q", line)
	}
	if r := e.report(agent, host.ID, types.GuestStatus{ServerID: "srv-odd1", State: types.GuestDeleted}); r.status != 200 ||
		!strings.Contains(string(r.body), `"confirmed":1`) {
		t.Errorf("confirmation = %d %s", r.status, r.body)
	}
	hg2, _ := e.watch(agent, host.ID, hg.Version, "0s")
	if hg2.Version == hg.Version || len(hg2.Tombstones) != 1 || !hg2.Tombstones[0].Confirmed {
		t.Errorf("watch after the confirmation: %+v", hg2)
	}
}

func (e *env) hostOf(id string) types.Host {
	e.t.Helper()
	var h types.Host
	e.must(200, "GET", "/v1/hosts/"+id, nil, &h)
	return h
}

// TestRegisterSameMachine: a host that registers under a new name from the
// same machine gets its host record back; a registrar needs the host's
// agent token to take over a live host, whether it names the host or its
// machine; a malformed machine identity is refused naming the field.
func TestRegisterSameMachine(t *testing.T) {
	e := newEnv(t)
	e.catalogue()
	reg := func(tok, name, machine string, hdr ...string) resp {
		return e.call(tok, "POST", "/v1/hosts/register", types.HostRegister{Name: name, Region: "dc1", Zone: "rack1",
			Inventory: types.Inventory{CPUs: 8, RAMMiB: 16384, DiskGiB: 100}, MachineID: machine}, hdr...)
	}
	var first types.HostRegistration
	r := reg(e.admin, "hv-a", "0123abcd")
	r.decode(t, &first)
	if r.status != 200 || first.Host.MachineID != "0123abcd" {
		t.Fatalf("register = %d %s", r.status, r.body)
	}
	e.must(204, "POST", "/v1/hosts/"+first.Host.ID+"/heartbeat", types.Heartbeat{Usage: types.Usage{MemFreeMiB: 8000}}, nil)

	// A registrar without the agent token cannot take the live host over
	// through its machine identity.
	registrar := e.token(types.RoleRegistrar, "")
	if r := reg(registrar, "hv-b", "0123abcd"); r.status != 409 {
		t.Errorf("takeover by machine identity = %d %s", r.status, r.body)
	}
	var again types.HostRegistration
	r = reg(registrar, "hv-b", "0123abcd", types.HeaderAgentToken, first.Token)
	r.decode(t, &again)
	if r.status != 200 || again.Host.ID != first.Host.ID || again.Host.Name != "hv-b" {
		t.Errorf("same machine, new name = %d %s: want host %s back", r.status, r.body, first.Host.ID)
	}
	if r := reg(e.admin, "hv-c", "bad id\x01"); r.status != 400 || r.apiErr(t).Details["field"] != "machine_id" {
		t.Errorf("bad machine id = %d %s", r.status, r.body)
	}
	var third types.HostRegistration
	reg(e.admin, "hv-c", "ffff0000").decode(t, &third)
	if third.Host.ID == first.Host.ID {
		t.Error("another machine got the host")
	}
}
