package baremetal_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
)

// TestDeployTokenLifecycle: the boot token goes into the iPXE script only
// for a node in a ramdisk step and only to its leased address; it is
// exchanged once (a replay is refused, and the script no longer carries
// it); the session it buys works from the claiming address only; a token
// of an earlier attempt or step opens for nothing.
func TestDeployTokenLifecycle(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	r.bmcs.Add("127.0.0.1", 9632, "secret")
	idle := r.enrol(r.node("bm2", 9632).provide().hardware())
	if row := r.settle(idle.ID); row.State != types.NodeAvailable {
		t.Fatalf("idle node %s", row.State)
	}
	if _, err := baremetal.BootToken(r.row(idle.ID), r.keys, leaseIP, leaseIP, time.Now()); !errors.Is(err, baremetal.ErrNotProvisioning) {
		t.Errorf("script of an available node: %v, want no credential", err)
	}

	n, _, _ := r.claimed("bm1", 9631)
	row := r.settle(n.ID)
	for _, c := range []struct {
		name, src, leased string
	}{{"another address", "10.79.0.99", leaseIP}, {"no lease", leaseIP, ""}, {"lease of another node", leaseIP, "10.79.0.12"}} {
		if _, err := baremetal.BootToken(row, r.keys, c.src, c.leased, time.Now()); !errors.Is(err, baremetal.ErrWrongSource) {
			t.Errorf("script, %s: %v, want ErrWrongSource", c.name, err)
		}
	}
	boot := r.agentToken(n.ID)
	if _, err := baremetal.ClaimWork(ctx, r.st, r.keys, n.ID, boot, "10.79.0.99", lease); !errors.Is(err, baremetal.ErrWrongSource) {
		t.Errorf("claim from another address: %v", err)
	}
	if _, err := baremetal.ClaimWork(ctx, r.st, r.keys, n.ID, "forged", leaseIP, lease); !errors.Is(err, baremetal.ErrBadToken) {
		t.Errorf("claim with a forged token: %v", err)
	}
	work, err := baremetal.ClaimWork(ctx, r.st, r.keys, n.ID, boot, leaseIP, lease)
	if err != nil || work.Mode != types.AgentDeploy || work.Token == "" || work.Token == boot || work.Expires.IsZero() {
		t.Fatalf("claim: %+v, %v", work, err)
	}
	// Single use: a replay is refused, and the script carries no token.
	if _, err := baremetal.ClaimWork(ctx, r.st, r.keys, n.ID, boot, leaseIP, lease); !errors.Is(err, baremetal.ErrTokenUsed) {
		t.Errorf("replayed claim: %v, want ErrTokenUsed", err)
	}
	if _, err := baremetal.BootToken(r.row(n.ID), r.keys, leaseIP, leaseIP, time.Now()); !errors.Is(err, baremetal.ErrTokenUsed) {
		t.Errorf("script after the claim: %v, want no credential", err)
	}
	// The boot token is not a session token; the session works from the
	// claiming address only, and not after the step's deadline.
	rep := types.AgentReport{Mode: "deploy"}
	if _, err := baremetal.ApplyAgentReport(ctx, r.st, r.keys, n.ID, boot, leaseIP, rep); !errors.Is(err, baremetal.ErrBadToken) {
		t.Errorf("report with the boot token: %v", err)
	}
	if _, err := baremetal.ApplyAgentReport(ctx, r.st, r.keys, n.ID, work.Token, "10.79.0.99", rep); !errors.Is(err, baremetal.ErrWrongSource) {
		t.Errorf("report from another address: %v", err)
	}
	if _, err := baremetal.ApplyAgentReport(ctx, r.st, r.keys, n.ID, work.Token, leaseIP, rep); err != nil {
		t.Errorf("report with the session: %v", err)
	}
	row = r.row(n.ID)
	if err := baremetal.CheckAgentSession(row, r.keys, work.Token, leaseIP, row.DeadlineTime().Add(time.Second)); !errors.Is(err, baremetal.ErrTokenExpired) {
		t.Errorf("session after the deadline: %v, want ErrTokenExpired", err)
	}
	// Bound to the step: the same sealed token does not open for another
	// attempt or state.
	moved := row
	moved.Attempt++
	if err := baremetal.CheckAgentSession(moved, r.keys, work.Token, leaseIP, time.Now()); !errors.Is(err, baremetal.ErrBadToken) {
		t.Errorf("session of attempt %d used in attempt %d: %v", row.Attempt, moved.Attempt, err)
	}
	moved = row
	moved.State = types.NodeCleaning
	if err := baremetal.CheckAgentSession(moved, r.keys, work.Token, leaseIP, time.Now()); !errors.Is(err, baremetal.ErrBadToken) {
		t.Errorf("deploy session used for cleaning: %v", err)
	}
	// The final report ends the session.
	if _, err := baremetal.ApplyAgentReport(ctx, r.st, r.keys, n.ID, work.Token, leaseIP, types.AgentReport{Mode: "deploy", Done: true, OK: true}); err != nil {
		t.Fatal(err)
	}
	if row = r.row(n.ID); row.AgentToken != "" || row.AgentSession != "" {
		t.Errorf("credentials kept after the final report: token %q session %q", row.AgentToken, row.AgentSession)
	}
	if _, err := baremetal.ApplyAgentReport(ctx, r.st, r.keys, n.ID, work.Token, leaseIP, rep); !errors.Is(err, baremetal.ErrBadToken) {
		t.Errorf("report after the final one: %v", err)
	}
}

// TestDeployTokenExpires: a boot token not exchanged within its time to
// live is refused, and the script no longer carries it.
func TestDeployTokenExpires(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{TokenTTL: 20 * time.Millisecond})
	n, _, _ := r.claimed("bm1", 9631)
	row := r.settle(n.ID)
	boot, err := baremetal.BootToken(row, r.keys, leaseIP, leaseIP, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Until(time.UnixMicro(row.AgentTokenExpires)); got > 20*time.Millisecond {
		t.Errorf("token lives %s, want at most the TTL", got)
	}
	time.Sleep(30 * time.Millisecond)
	if _, err := baremetal.BootToken(r.row(n.ID), r.keys, leaseIP, leaseIP, time.Now()); !errors.Is(err, baremetal.ErrTokenExpired) {
		t.Errorf("script with an expired token: %v", err)
	}
	if _, err := baremetal.ClaimWork(ctx, r.st, r.keys, n.ID, boot, leaseIP, lease); !errors.Is(err, baremetal.ErrTokenExpired) {
		t.Errorf("claim with an expired token: %v, want ErrTokenExpired", err)
	}
}

// TestCleanModes: a node's quick-clean option makes the cleaning after a
// delete quick; an operator's clean of an idle node is full unless asked
// quick, and returns the node to the state it was in.
func TestCleanModes(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	n, srv, _ := r.claimed("bm1", 9631)
	r.settle(n.ID)
	must(t, func() (store.NodeRow, error) {
		return r.st.ChangeNode(ctx, n.ID, 0, "t", func(_ *store.Tx, row *store.NodeRow) (string, error) {
			row.QuickClean = 1
			return "", nil
		})
	})
	must(t, func() (types.Server, error) { return r.st.BeginBaremetalDelete(ctx, srv.ID, 0, "test") })
	r.settle(n.ID)
	work := must(t, func() (types.AgentWork, error) {
		return baremetal.ClaimWork(ctx, r.st, r.keys, n.ID, r.agentToken(n.ID), leaseIP, lease)
	})
	if work.Clean != types.CleanQuick {
		t.Errorf("clean after delete of a quick-clean node: %+v", work)
	}
	must(t, func() (store.NodeRow, error) {
		return baremetal.ApplyAgentReport(ctx, r.st, r.keys, n.ID, work.Token, leaseIP, types.AgentReport{Mode: "clean", Done: true, OK: true})
	})
	if row := r.settle(n.ID); row.State != types.NodeAvailable {
		t.Fatalf("after cleaning: %s %q", row.State, row.LastError)
	}

	for _, c := range []struct {
		from  string
		quick bool
		want  string
	}{{types.NodeAvailable, false, types.CleanFull}, {types.NodeManageable, true, types.CleanQuick}} {
		if c.from == types.NodeManageable {
			must(t, func() (store.NodeRow, error) {
				return r.st.ChangeNode(ctx, n.ID, 0, "t", func(_ *store.Tx, row *store.NodeRow) (string, error) {
					row.State = types.NodeManageable
					return "", nil
				})
			})
		}
		row := must(t, func() (store.NodeRow, error) {
			return r.st.ChangeNode(ctx, n.ID, 0, "t", func(_ *store.Tx, row *store.NodeRow) (string, error) {
				return baremetal.Provision(row, types.TargetClean, c.quick)
			})
		})
		if row.State != types.NodeCleaning || row.CleanMode != c.want {
			t.Fatalf("clean from %s: %s %q", c.from, row.State, row.CleanMode)
		}
		r.settle(n.ID)
		r.report(n.ID, types.AgentReport{Mode: "clean", Done: true, OK: true})
		if row := r.settle(n.ID); row.State != c.from || row.CleanMode != "" {
			t.Errorf("after a clean from %s: %s mode %q", c.from, row.State, row.CleanMode)
		}
	}
	// Not with a server.
	_, _, _ = r.claimed("bm2", 9632)
	rows := must(t, func() ([]store.NodeRow, error) { return r.st.ListNodeRows(ctx, types.NodeDeploying) })
	if _, err := baremetal.Provision(&rows[0], types.TargetClean, false); !errors.Is(err, store.ErrNodeState) {
		t.Errorf("clean of a deploying node: %v", err)
	}
}

// TestSwitchFailureFailsDeploy: a node that cannot be taken off the
// provisioning network is never handed to its tenant.
func TestSwitchFailureFailsDeploy(t *testing.T) {
	r := newRig(t, baremetal.ConductorConfig{})
	n, srv, _ := r.claimed("bm1", 9631)
	r.settle(n.ID)
	r.report(n.ID, types.AgentReport{Mode: "deploy", Done: true, OK: true})
	r.sw.Fail = errors.New("switch timed out")
	row := r.settle(n.ID)
	got := must(t, func() (types.Server, error) { return r.st.GetServer(ctx, srv.ID) })
	if row.State != types.NodeError || !strings.Contains(row.LastError, "move the node's switch ports to its networks") ||
		got.State != types.ServerError {
		t.Errorf("node %s %q, server %s", row.State, row.LastError, got.State)
	}
}
