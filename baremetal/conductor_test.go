package baremetal_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/backoff"
	"github.com/corral-cloud/corral/baremetal"
	"github.com/corral-cloud/corral/baremetal/fake"
	"github.com/google/go-cmp/cmp"
)

var ctx = context.Background()

// rig is a conductor over a real SQLite store, a fake BMC and a fake
// provisioning network.
type rig struct {
	t       *testing.T
	st      *store.Store
	keys    *baremetal.Keyring
	bmcs    *fake.Driver
	prov    *fake.Provisioner
	sw      *fake.Switch
	c       *baremetal.Conductor
	region  types.Region
	zone    types.Zone
	flavor  types.Flavor
	image   types.Image
	project types.Project
}

func newRig(t *testing.T, cfg baremetal.ConductorConfig) *rig {
	t.Helper()
	st, err := store.Open(ctx, store.Config{SQLitePath: filepath.Join(t.TempDir(), "corral.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := baremetal.NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, st: st, keys: keys, bmcs: fake.NewDriver(), prov: &fake.Provisioner{}, sw: &fake.Switch{}}
	if cfg.ID == "" {
		cfg.ID = "a"
	}
	if cfg.Switch == nil {
		cfg.Switch = r.sw
	}
	if cfg.SwitchBackoff == (backoff.Backoff{}) {
		cfg.SwitchBackoff = backoff.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}
	}
	r.c = baremetal.NewConductor(cfg, st, r.bmcs, r.prov, keys)
	r.region = must(t, func() (types.Region, error) { return st.CreateRegion(ctx, types.RegionCreate{Name: "dc1"}) })
	r.zone = must(t, func() (types.Zone, error) { return st.CreateZone(ctx, r.region.ID, types.ZoneCreate{Name: "rack1"}) })
	r.flavor = must(t, func() (types.Flavor, error) {
		return st.CreateFlavor(ctx, types.FlavorCreate{Name: "metal", Kind: "baremetal", VCPUs: 1, RAMMiB: 128, DiskGiB: 1})
	})
	img := must(t, func() (types.Image, error) {
		return st.CreateImage(ctx, types.ImageCreate{Name: "os", DiskFormat: "qcow2"})
	})
	r.image = must(t, func() (types.Image, error) { return st.SetImageData(ctx, img.ID, 10, "abc") })
	r.project = must(t, func() (types.Project, error) { return st.CreateProject(ctx, types.ProjectCreate{Name: "p"}) })
	return r
}

func must[T any](t *testing.T, fn func() (T, error)) T {
	t.Helper()
	v, err := fn()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// nodeBuilder builds an enrolment.
type nodeBuilder struct {
	e store.NodeEnrolment
}

func (r *rig) node(name string, port int) *nodeBuilder {
	return &nodeBuilder{e: store.NodeEnrolment{Name: name, RegionID: r.region.ID, ZoneID: r.zone.ID, BMCAddress: "127.0.0.1",
		BMCPort: port, BMCUsername: "admin", BMCPassword: "secret", MACs: []string{"52:54:00:00:00:" + strings.Repeat("0", 2-len(name[2:])) + name[2:]},
		ProvisionIP: "10.79.0.11", Target: types.NodeManageable, Actor: "test"}}
}

func (b *nodeBuilder) password(p string) *nodeBuilder { b.e.BMCPassword = p; return b }
func (b *nodeBuilder) provide() *nodeBuilder          { b.e.Target = types.NodeAvailable; return b }
func (b *nodeBuilder) hardware() *nodeBuilder {
	b.e.Hardware = types.NodeHardware{CPUs: 1, RAMMiB: 230, Disks: []types.NodeDisk{{Name: "vda", SizeBytes: 1 << 30}}}
	return b
}

func (r *rig) enrol(b *nodeBuilder) types.Node {
	r.t.Helper()
	sealed, err := r.keys.Seal(b.e.BMCPassword)
	if err != nil {
		r.t.Fatal(err)
	}
	b.e.BMCPassword = sealed
	return must(r.t, func() (types.Node, error) { return r.st.CreateNode(ctx, b.e) })
}

// settle steps a node until it rests or waits for its agent.
func (r *rig) settle(id string) store.NodeRow {
	r.t.Helper()
	for range 20 {
		if err := r.c.Step(ctx, id); err != nil && !errors.Is(err, store.ErrNodeState) {
			r.t.Fatalf("step: %v", err)
		}
		row := r.row(id)
		if row.Step == baremetal.StepWaitAgent || !stillWorking(row) {
			return row
		}
	}
	r.t.Fatalf("node %s never settled", id)
	return store.NodeRow{}
}

func stillWorking(r store.NodeRow) bool {
	switch r.State {
	case types.NodeEnroll, types.NodeManageable:
		return r.Target != "" && !(r.State == types.NodeEnroll && r.LastError != "")
	case types.NodeAvailable, types.NodeActive, types.NodeError, types.NodeMaintenance:
		return false
	}
	return true
}

func (r *rig) row(id string) store.NodeRow {
	r.t.Helper()
	return must(r.t, func() (store.NodeRow, error) { return r.st.GetNodeRow(ctx, id) })
}

// leaseIP is the address the fake DHCP server leases to every node.
const leaseIP = "10.79.0.11"

func lease(string) string { return leaseIP }

// agentToken is the boot token the iPXE script would hand the ramdisk.
func (r *rig) agentToken(id string) string {
	r.t.Helper()
	tok, err := baremetal.BootToken(r.row(id), r.keys, leaseIP, leaseIP, time.Now())
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

// session exchanges the node's boot token for the agent's session token,
// as the deploy agent does first.
func (r *rig) session(id string) string {
	r.t.Helper()
	w, err := baremetal.ClaimWork(ctx, r.st, r.keys, id, r.agentToken(id), leaseIP, lease)
	if err != nil {
		r.t.Fatal(err)
	}
	return w.Token
}

// report sends an agent report with a fresh session.
func (r *rig) report(id string, rep types.AgentReport) store.NodeRow {
	r.t.Helper()
	return must(r.t, func() (store.NodeRow, error) {
		return baremetal.ApplyAgentReport(ctx, r.st, r.keys, id, r.session(id), leaseIP, rep)
	})
}

func (r *rig) events(id string) []string {
	r.t.Helper()
	l := must(r.t, func() (types.List[types.NodeEvent], error) {
		return r.st.ListNodeEvents(ctx, id, store.ListOptions{Limit: 1000})
	})
	var out []string
	for _, e := range l.Items {
		if !strings.Contains(e.To, " ") { // states, not power, BMC or switch events
			out = append(out, e.To)
		}
	}
	return out
}

// TestVerifyCredentials: wrong BMC credentials keep a node out of
// available with a clear reason; right ones make it manageable.
func TestVerifyCredentials(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	r.bmcs.Add("127.0.0.1", 9631, "secret")
	bad := r.enrol(r.node("bm1", 9631).password("wrong").provide().hardware())
	row := r.settle(bad.ID)
	if row.State != types.NodeEnroll || !strings.Contains(row.LastError, "bmc credentials rejected") || row.Target != "" {
		t.Errorf("wrong credentials: state %s target %q error %q", row.State, row.Target, row.LastError)
	}
	if diff := cmp.Diff([]string{"enroll", "verifying", "enroll"}, r.events(bad.ID)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// The node rests: stepping again does not hammer the BMC.
	r.settle(bad.ID)
	if row := r.row(bad.ID); row.State != types.NodeEnroll {
		t.Errorf("node moved on its own: %s", row.State)
	}

	r.bmcs.Add("127.0.0.1", 9632, "secret")
	good := r.enrol(r.node("bm2", 9632))
	row = r.settle(good.ID)
	if row.State != types.NodeManageable || row.LastError != "" || row.PowerState != types.PowerOff {
		t.Errorf("right credentials: state %s error %q power %s", row.State, row.LastError, row.PowerState)
	}
	// Unreachable BMC: also not available, and says so.
	unreach := r.enrol(r.node("bm3", 9699).provide())
	row = r.settle(unreach.ID)
	if row.State != types.NodeEnroll || !strings.Contains(row.LastError, "unreachable") {
		t.Errorf("unreachable BMC: state %s error %q", row.State, row.LastError)
	}
}

// TestProvideInspects: providing a node without known hardware boots the
// ramdisk over PXE; the agent's report fills the inventory and the node
// becomes available, powered off.
func TestProvideInspects(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	m := r.bmcs.Add("127.0.0.1", 9631, "secret")
	n := r.enrol(r.node("bm1", 9631).provide())
	row := r.settle(n.ID)
	if row.State != types.NodeInspecting || row.Step != baremetal.StepWaitAgent || row.Attempt != 1 {
		t.Fatalf("after provide: %s/%s attempt %d", row.State, row.Step, row.Attempt)
	}
	r.bmcs.Do(m, func(m *fake.Machine) {
		if m.Boot != baremetal.BootPXE || m.Power != types.PowerOn {
			t.Errorf("machine boots %s, power %s; want pxe, on", m.Boot, m.Power)
		}
	})
	hw := types.NodeHardware{CPUs: 1, RAMMiB: 230, Disks: []types.NodeDisk{{Name: "vda", SizeBytes: 1 << 30}}}
	// A wrong token is refused.
	if _, err := baremetal.ApplyAgentReport(ctx, r.st, r.keys, n.ID, "forged", leaseIP, types.AgentReport{Mode: "inspect", Done: true, OK: true}); !errors.Is(err, baremetal.ErrBadToken) {
		t.Errorf("forged token: %v", err)
	}
	r.report(n.ID, types.AgentReport{Mode: "inspect", Hardware: hw, Done: true, OK: true})
	row = r.settle(n.ID)
	if row.State != types.NodeAvailable || !cmp.Equal(row.HardwareInfo(), hw) || row.PowerState != types.PowerOff || row.AgentToken != "" {
		t.Errorf("after inspection: %s hw %+v power %s", row.State, row.HardwareInfo(), row.PowerState)
	}
	want := []string{"enroll", "verifying", "manageable", "inspecting", "available"}
	if diff := cmp.Diff(want, r.events(n.ID)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if r.prov.Refreshes == 0 {
		t.Error("DHCP entries never refreshed before booting the ramdisk")
	}
	if row.LeaseOwner != "" {
		t.Errorf("lease kept on a resting node: %q", row.LeaseOwner)
	}
}

// deployed enrols an available node and claims it for a server.
func (r *rig) claimed(name string, port int) (types.Node, types.Server, *fake.Machine) {
	r.t.Helper()
	m := r.bmcs.Add("127.0.0.1", port, "secret")
	n := r.enrol(r.node(name, port).provide().hardware())
	if row := r.settle(n.ID); row.State != types.NodeAvailable {
		r.t.Fatalf("node %s is %s", name, row.State)
	}
	srv := must(r.t, func() (types.Server, error) {
		return r.st.ClaimNodeAndCreateServer(ctx, n.ID, types.Server{Name: "web-" + name, Kind: types.KindBaremetal,
			ProjectID: r.project.ID, FlavorID: r.flavor.ID, ImageID: r.image.ID, DesiredState: "active"}, nil, "test")
	})
	return n, srv, m
}

// TestDeployAndClean: a claimed node boots the ramdisk, the agent writes
// the image, the node boots from disk and its server is active with the
// node's MAC and address; deleting the server cleans the node back to
// available.
func TestDeployAndClean(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	n, srv, m := r.claimed("bm1", 9631)
	row := r.settle(n.ID)
	if row.State != types.NodeDeploying || row.Step != baremetal.StepWaitAgent {
		t.Fatalf("deploying: %s/%s", row.State, row.Step)
	}
	const mac1 = "52:54:00:00:00:01"
	if diff := cmp.Diff([]string{r.image.ID}, r.prov.Images); diff != "" {
		t.Errorf("images prepared: %s", diff)
	}
	if !r.sw.OnProvisioning(mac1) {
		t.Error("deploying node is off the provisioning network")
	}
	r.report(n.ID, types.AgentReport{Mode: "deploy", Done: true, OK: true, SHA256: "x"})
	row = r.settle(n.ID)
	if row.State != types.NodeActive {
		t.Fatalf("after deploy: %s (%s)", row.State, row.LastError)
	}
	if r.sw.OnProvisioning(mac1) {
		t.Error("active node is still on the provisioning network")
	}
	// Its port left the provisioning network while it was off: the
	// tenant's OS never saw it.
	var order []string
	r.bmcs.Do(m, func(m *fake.Machine) { order = m.Calls[len(m.Calls)-3:] })
	if diff := cmp.Diff([]string{"boot disk", "power off", "power on"}, order); diff != "" {
		t.Errorf("last BMC calls (-want +got):\n%s", diff)
	}
	r.bmcs.Do(m, func(m *fake.Machine) {
		if m.Boot != baremetal.BootDisk || m.Power != types.PowerOn {
			t.Errorf("machine boots %s, power %s; want disk, on", m.Boot, m.Power)
		}
	})
	got := must(t, func() (types.Server, error) { return r.st.GetServer(ctx, srv.ID) })
	if got.State != types.ServerActive || len(got.Addresses) != 0 || got.NodeID != n.ID {
		t.Errorf("server = %s %+v node %s (no provisioning address: the node left that network)", got.State, got.Addresses, got.NodeID)
	}

	must(t, func() (types.Server, error) { return r.st.BeginBaremetalDelete(ctx, srv.ID, 0, "test") })
	row = r.settle(n.ID)
	if row.State != types.NodeCleaning || row.Step != baremetal.StepWaitAgent || row.ServerID != "" {
		t.Fatalf("after delete: %s/%s server %q", row.State, row.Step, row.ServerID)
	}
	if _, err := r.st.GetServer(ctx, srv.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("server after delete: %v", err)
	}
	if !r.sw.OnProvisioning(mac1) {
		t.Error("node being cleaned is not back on the provisioning network")
	}
	work := must(t, func() (types.AgentWork, error) {
		return baremetal.ClaimWork(ctx, r.st, r.keys, n.ID, r.agentToken(n.ID), leaseIP, lease)
	})
	if work.Mode != types.AgentClean || work.Clean != types.CleanFull {
		t.Errorf("cleaning work = %+v, want a full clean by default", work)
	}
	must(t, func() (store.NodeRow, error) {
		return baremetal.ApplyAgentReport(ctx, r.st, r.keys, n.ID, work.Token, leaseIP, types.AgentReport{Mode: "clean", Done: true, OK: true})
	})
	row = r.settle(n.ID)
	if row.State != types.NodeAvailable || row.PowerState != types.PowerOff {
		t.Errorf("after cleaning: %s power %s", row.State, row.PowerState)
	}
	wantEv := []string{"enroll", "verifying", "manageable", "available", "deploying", "active", "deleting", "cleaning", "available"}
	if diff := cmp.Diff(wantEv, r.events(n.ID)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestAgentFailure: an agent that reports failure puts the node and its
// server in error with the agent's reason.
func TestAgentFailure(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	n, srv, _ := r.claimed("bm1", 9631)
	r.settle(n.ID)
	r.report(n.ID, types.AgentReport{Mode: "deploy", Done: true, Error: "checksum mismatch: got 1, want 2"})
	row := r.row(n.ID)
	got := must(t, func() (types.Server, error) { return r.st.GetServer(ctx, srv.ID) })
	if row.State != types.NodeError || !strings.Contains(row.LastError, "checksum mismatch") || got.State != types.ServerError ||
		got.Fault != row.LastError {
		t.Errorf("node %s %q, server %s %q", row.State, row.LastError, got.State, got.Fault)
	}
}

// TestDeployTimeout: no agent report before the deadline → error with a
// reason that says where to look, never stuck.
func TestDeployTimeout(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{DeployTimeout: time.Millisecond})
	n, srv, m := r.claimed("bm1", 9631)
	r.settle(n.ID)
	time.Sleep(5 * time.Millisecond)
	row := r.settle(n.ID)
	got := must(t, func() (types.Server, error) { return r.st.GetServer(ctx, srv.ID) })
	if row.State != types.NodeError || !strings.Contains(row.LastError, "timed out") || got.State != types.ServerError {
		t.Errorf("node %s %q, server %s", row.State, row.LastError, got.State)
	}
	r.bmcs.Do(m, func(m *fake.Machine) {
		if m.Power != types.PowerOff {
			t.Errorf("failed node left powered %s", m.Power)
		}
	})
}

// TestResumeAfterConductorDies: a conductor that dies mid-boot leaves a
// lease that expires; another conductor resumes with a new token (the old
// attempt's agent can no longer report), and gives up into error once
// attempts run out, never stuck.
func TestResumeAfterConductorDies(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{ID: "a", LeaseTTL: 50 * time.Millisecond})
	n, _, _ := r.claimed("bm1", 9631)
	// Conductor a gets as far as booting, then "dies": its lease stays.
	must(t, func() (store.NodeRow, error) { return r.st.AcquireNodeLease(ctx, n.ID, "a", 50*time.Millisecond) })
	must(t, func() (store.NodeRow, error) {
		return r.st.ChangeNode(ctx, n.ID, 0, "conductor:a", func(_ *store.Tx, row *store.NodeRow) (string, error) {
			tok, _ := r.keys.Seal("old-token")
			row.Step, row.AgentToken, row.Attempt = baremetal.StepBooting, tok, 1
			return "", nil
		})
	})
	b := baremetal.NewConductor(baremetal.ConductorConfig{ID: "b", LeaseTTL: time.Minute}, r.st, r.bmcs, r.prov, r.keys)
	if err := b.Step(ctx, n.ID); !errors.Is(err, store.ErrLeased) {
		t.Fatalf("b stepped a node a holds: %v", err)
	}
	time.Sleep(60 * time.Millisecond)
	if err := b.Step(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	row := r.row(n.ID)
	if row.Step != baremetal.StepWaitAgent || row.Attempt != 2 || row.LeaseOwner != "b" {
		t.Fatalf("after takeover: step %s attempt %d owner %s", row.Step, row.Attempt, row.LeaseOwner)
	}
	if _, err := baremetal.ClaimWork(ctx, r.st, r.keys, n.ID, "old-token", leaseIP, lease); !errors.Is(err, baremetal.ErrBadToken) {
		t.Errorf("the interrupted attempt's agent claimed work: %v", err)
	}
	if _, err := baremetal.ApplyAgentReport(ctx, r.st, r.keys, n.ID, "old-token", leaseIP, types.AgentReport{Mode: "deploy", Done: true, OK: true}); !errors.Is(err, baremetal.ErrBadToken) {
		t.Errorf("the interrupted attempt's agent reported: %v", err)
	}
	// b dies while booting too: the next conductor gives up cleanly.
	must(t, func() (store.NodeRow, error) {
		return r.st.ChangeNode(ctx, n.ID, 0, "conductor:b", func(_ *store.Tx, row *store.NodeRow) (string, error) {
			row.Step, row.LeaseOwner, row.LeaseExpires = baremetal.StepBooting, "", 0
			return "", nil
		})
	})
	if err := r.c.Step(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	row = r.row(n.ID)
	if row.State != types.NodeError || !strings.Contains(row.LastError, "gave up after 2 attempts") {
		t.Errorf("after a second interruption: %s %q", row.State, row.LastError)
	}
}

// TestPowerSync: the sync notices out-of-band power changes and flags a
// node whose BMC stops answering, clearing the flag when it answers.
func TestPowerSync(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	m := r.bmcs.Add("127.0.0.1", 9631, "secret")
	n := r.enrol(r.node("bm1", 9631).provide().hardware())
	r.settle(n.ID)
	r.bmcs.Do(m, func(m *fake.Machine) { m.Power = types.PowerOn })
	row := must(t, func() (store.NodeRow, error) { return r.c.SyncPower(ctx, n.ID) })
	if row.PowerState != types.PowerOn {
		t.Errorf("power after out-of-band on = %s", row.PowerState)
	}
	r.bmcs.Do(m, func(m *fake.Machine) { m.Unreachable = true })
	row = must(t, func() (store.NodeRow, error) { return r.c.SyncPower(ctx, n.ID) })
	if row.PowerState != types.PowerUnknown || !strings.Contains(row.BMCFault, "unreachable") {
		t.Errorf("unreachable BMC: power %s fault %q", row.PowerState, row.BMCFault)
	}
	if _, exp := baremetal.Match([]types.Node{row.API()}, baremetal.MatchRequest{VCPUs: 1}); exp.Reasons[baremetal.ReasonBMCFault] != 1 {
		t.Errorf("a node with a BMC fault is still placed: %s", exp)
	}
	r.bmcs.Do(m, func(m *fake.Machine) { m.Unreachable = false })
	row = must(t, func() (store.NodeRow, error) { return r.c.SyncPower(ctx, n.ID) })
	if row.PowerState != types.PowerOn || row.BMCFault != "" {
		t.Errorf("BMC back: power %s fault %q", row.PowerState, row.BMCFault)
	}
	l := must(t, func() (types.List[types.NodeEvent], error) {
		return r.st.ListNodeEvents(ctx, n.ID, store.ListOptions{})
	})
	var reasons []string
	for _, e := range l.Items {
		if e.Actor == "sync:a" {
			reasons = append(reasons, e.From+" → "+e.To)
		}
	}
	want := []string{"power off → power on", "power on → power unknown", "bmc ok → bmc fault", "power unknown → power on", "bmc fault → bmc ok"}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("sync events (-want +got):\n%s", diff)
	}
}

// TestPowerAPI: power operations on an idle node act on the BMC; a busy
// node refuses them.
func TestPowerAPI(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	n, _, m := r.claimed("bm1", 9631)
	if _, err := r.c.Power(ctx, n.ID, baremetal.PowerOn, "api:t"); !errors.Is(err, baremetal.ErrNotIdle) {
		t.Errorf("power on a deploying node: %v, want ErrNotIdle", err)
	}
	m2 := r.bmcs.Add("127.0.0.1", 9632, "secret")
	n2 := r.enrol(r.node("bm2", 9632))
	r.settle(n2.ID)
	row := must(t, func() (store.NodeRow, error) { return r.c.Power(ctx, n2.ID, baremetal.PowerOn, "api:t") })
	if row.PowerState != types.PowerOn {
		t.Errorf("power after on = %s", row.PowerState)
	}
	r.bmcs.Do(m2, func(m *fake.Machine) {
		if diff := cmp.Diff([]string{"power status", "power on", "power status"}, m.Calls); diff != "" {
			t.Errorf("BMC calls (-want +got):\n%s", diff)
		}
	})
	_ = m
}
