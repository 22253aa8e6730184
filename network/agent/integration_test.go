package agent_test

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
)

// TestConnectivityAndIsolation (acceptance 1): two endpoints on one network
// reach each other; an endpoint on another network (another VLAN, even
// with an address of the same subnet) does not. Anti-spoofing drops a
// forged source address (acceptance 2, last part).
func TestConnectivityAndIsolation(t *testing.T) {
	r := newRig(t)
	r.network("blue", 101, "10.90.0.0/24")
	// Same subnet, another VLAN: only the VLAN keeps them apart.
	r.network("red", 102, "10.90.0.0/24", types.IPRange{Start: "10.90.0.100", End: "10.90.0.200"})
	a := r.endpoint("a", "blue")
	b := r.endpoint("b", "blue")
	c := r.endpoint("c", "red")
	r.runReconciler()

	took := eventually(t, 15*time.Second, "a pings b on the same network", func() bool { return r.ping(a, b.ip, 1) })
	t.Logf("flows in place %s after the reconciler started", took)
	if !r.ping(a, b.ip, 3) || !r.ping(b, a.ip, 3) {
		t.Fatal("a and b on blue do not reach each other")
	}
	r.listen(b, 8080)
	if !r.tcp(a, b.ip, 8080) {
		t.Error("TCP from a to b on blue fails")
	}
	if r.ping(a, c.ip, 3) {
		t.Errorf("a (blue, VLAN 101) reaches c (red, VLAN 102) at %s", c.ip)
	}
	if r.ping(c, a.ip, 2) {
		t.Error("c (red) reaches a (blue)")
	}

	// Anti-spoofing: a sends from an address that is not its own. Static
	// neighbour entries on both sides take ARP out of the picture, so only
	// the IP packet's source decides.
	r.sh("ip netns exec %s ip addr add 10.90.0.250/24 dev %s", a.ns, a.inner)
	r.sh("ip netns exec %s ip neigh replace %s lladdr %s dev %s", a.ns, b.ip, b.port.MACAddress, a.inner)
	r.sh("ip netns exec %s ip neigh replace 10.90.0.250 lladdr %s dev %s", b.ns, a.port.MACAddress, b.inner)
	if err := exec.Command("ip", "netns", "exec", a.ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", "-q", "-I", "10.90.0.250", b.ip).Run(); err == nil {
		t.Error("a ping with a forged source address 10.90.0.250 got through")
	}
	if !r.ping(a, b.ip, 2) {
		t.Error("a's own address stopped working")
	}
	// A forged MAC is dropped too.
	r.sh("ip netns exec %s ip link set %s address 02:de:ad:be:ef:01", a.ns, a.inner)
	if r.ping(a, b.ip, 2) {
		t.Error("a ping from a forged MAC got through")
	}
}

// TestSecurityGroup (acceptance 2): a group allowing only TCP 22 from one
// CIDR: that traffic passes, TCP to another port, ICMP and TCP 22 from
// outside the CIDR are dropped; removing the rule stops new connections
// within about a second (logged; the bound is the test's timeout).
func TestSecurityGroup(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.network("blue", 201, "10.91.0.0/24")
	var ssh types.SecurityGroup
	must(t, create(ctx, r.api, "/v1/security-groups", types.SecurityGroupCreate{Name: "ssh-only", Project: "games",
		Rules: []types.SecurityGroupRuleCreate{
			{Direction: "ingress", Protocol: "tcp", PortRangeMin: 22, PortRangeMax: 22, RemoteCIDR: "10.91.0.0/28"},
			{Direction: "egress", Protocol: "any"},
		}}, &ssh))
	var open types.SecurityGroup
	must(t, create(ctx, r.api, "/v1/security-groups", types.SecurityGroupCreate{Name: "clients", Project: "games",
		Rules: []types.SecurityGroupRuleCreate{{Direction: "egress", Protocol: "any"}, {Direction: "ingress", Protocol: "any"}}}, &open))
	srv := r.endpoint("srv", "blue", ssh.ID) // 10.91.0.2
	in := r.endpoint("in", "blue", open.ID)  // 10.91.0.3, inside 10.91.0.0/28
	r.sh("true")                             // keep the order of allocation explicit
	pad := make([]types.Port, 0, 12)         // push the next address out of the /28
	for i := 0; i < 12; i++ {
		var p types.Port
		must(t, create(ctx, r.api, "/v1/ports", types.PortCreate{Network: "blue", Project: "games"}, &p))
		pad = append(pad, p)
	}
	out := r.endpoint("out", "blue", open.ID) // 10.91.0.16, outside the /28
	if out.ip != "10.91.0.16" || in.ip != "10.91.0.3" {
		t.Fatalf("addresses: in %s out %s, want 10.91.0.3 and 10.91.0.16", in.ip, out.ip)
	}
	r.listen(srv, 22, 80)
	r.runReconciler()

	eventually(t, 15*time.Second, "TCP 22 from inside the CIDR", func() bool { return r.tcp(in, srv.ip, 22) })
	if r.tcp(in, srv.ip, 80) {
		t.Error("TCP 80 passed; only 22 is allowed")
	}
	if r.ping(in, srv.ip, 2) {
		t.Error("ICMP passed; only TCP 22 is allowed")
	}
	if r.tcp(out, srv.ip, 22) {
		t.Errorf("TCP 22 from %s (outside 10.91.0.0/28) passed", out.ip)
	}
	// The server's egress is open: it reaches the clients.
	if !r.ping(srv, in.ip, 2) {
		t.Error("egress from the server failed")
	}
	// Remove the rule: new connections stop.
	start := time.Now()
	must(t, r.api.Delete(ctx, "/v1/security-groups/"+ssh.ID+"/rules/"+ssh.Rules[0].ID))
	eventually(t, 10*time.Second, "TCP 22 refused after the rule's removal", func() bool { return !r.tcp(in, srv.ip, 22) })
	t.Logf("rule removal took effect %s after the API call", time.Since(start).Round(10*time.Millisecond))
	// And adding it back restores them.
	must(t, create(ctx, r.api, "/v1/security-groups/"+ssh.ID+"/rules",
		types.SecurityGroupRuleCreate{Direction: "ingress", Protocol: "tcp", PortRangeMin: 22, RemoteCIDR: "10.91.0.0/28"}, nil))
	eventually(t, 10*time.Second, "TCP 22 allowed again", func() bool { return r.tcp(in, srv.ip, 22) })
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// TestRestartWithoutLoss (acceptance 4): a ping at 20 per second between
// two endpoints loses nothing while the agent process is killed with
// SIGKILL and restarted 5 times, each restart changes no flow, and the
// flow table (without counters) is the same before and after.
func TestRestartWithoutLoss(t *testing.T) {
	r := newRig(t)
	r.network("blue", 301, "10.92.0.0/24")
	a := r.endpoint("a", "blue")
	b := r.endpoint("b", "blue")
	cmd, lines := r.startAgentProcess()
	first := <-lines
	if !strings.Contains(first, "err=<nil>") {
		t.Fatalf("first reconcile: %s", first)
	}
	eventually(t, 10*time.Second, "a pings b", func() bool { return r.ping(a, b.ip, 1) })
	before := r.flowTable()

	const cycles = 5
	pinger := exec.Command("ip", "netns", "exec", a.ns, "ping", "-i", "0.05", "-c", "240", "-W", "1", b.ip)
	var pingOut strings.Builder
	pinger.Stdout = &pingOut
	must(t, pinger.Start())
	for i := 0; i < cycles; i++ {
		time.Sleep(700 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		time.Sleep(200 * time.Millisecond)
		cmd, lines = r.startAgentProcess()
		select {
		case l := <-lines:
			if !strings.Contains(l, "added=0 deleted=0 err=<nil>") {
				t.Errorf("restart %d changed flows: %s", i+1, l)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("restart %d: no reconcile", i+1)
		}
	}
	pinger.Wait()
	m := pingSummary.FindStringSubmatch(pingOut.String())
	if m == nil {
		t.Fatalf("ping output: %s", pingOut.String())
	}
	sent, got := atoi(m[1]), atoi(m[2])
	t.Logf("ping during %d agent restarts: %d sent, %d received", cycles, sent, got)
	if sent != 240 || got != sent {
		t.Errorf("lost %d of %d packets across agent restarts", sent-got, sent)
	}
	if after := r.flowTable(); after != before {
		t.Errorf("flow table changed across restarts:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// TestPortMovesBetweenNetworksState: unbinding a port removes its flows
// (and only its), and the bridge keeps nobody else's traffic from flowing.
func TestUnbindRemovesOnlyThatPort(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.network("blue", 401, "10.93.0.0/24")
	a := r.endpoint("a", "blue")
	b := r.endpoint("b", "blue")
	c := r.endpoint("c", "blue")
	r.runReconciler()
	eventually(t, 15*time.Second, "a pings b", func() bool { return r.ping(a, b.ip, 1) })
	if !r.ping(a, c.ip, 2) {
		t.Fatal("a does not reach c")
	}
	empty := ""
	var p types.Port
	_, err := r.api.Do(ctx, client.Request{Method: "PATCH", Path: "/v1/ports/" + c.port.ID, Body: types.PortUpdate{Host: &empty}}, &p)
	must(t, err)
	eventually(t, 10*time.Second, "c cut off after its unbinding", func() bool { return !r.ping(a, c.ip, 1) })
	if !r.ping(a, b.ip, 3) {
		t.Error("a and b lost each other when c was unbound")
	}
	t.Log("body done")
}
