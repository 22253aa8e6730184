package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/agent"
	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
)

// waitHost polls the host until ok accepts it, for at most 10 s.
func waitHost(t *testing.T, api *client.Client, name, what string, ok func(types.Host) bool) types.Host {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var (
		h   types.Host
		err error
	)
	for {
		h, err = client.Get[types.Host](t.Context(), api, "/v1/hosts/"+name)
		if err == nil && ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s: not %s after a minute: last %+v, error %v", name, what, h, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAgentEndToEnd runs the real corrald and corral-agent: the agent
// registers the host with real inventory, heartbeats, and after a SIGKILL
// and restart resumes as the same host.
func TestAgentEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs corrald and corral-agent")
	}
	bins := t.TempDir()
	testenv.Build(t, bins, "../corrald", ".")
	corralAgent := filepath.Join(bins, "corral-agent")
	cd := testenv.StartCorrald(t, filepath.Join(bins, "corrald"))
	endpoint, tokenFile, api := cd.Endpoint, cd.TokenFile, cd.Admin
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := client.Create[types.Region](ctx, api, "/v1/regions", types.RegionCreate{Name: "dc1"}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create[types.Zone](ctx, api, "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, ""); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	const name = "e2e-agent-host"
	args := []string{"--endpoint", endpoint, "--registration-token-file", tokenFile, "--name", name,
		"--region", "dc1", "--zone", "rack1", "--state-dir", filepath.Join(dir, "state"), "--compute=false",
		"--heartbeat-interval", "500ms", "--log-level", "debug"}
	first := testenv.Start(t, filepath.Join(dir, "agent-1.log"), corralAgent, args...)

	h := waitHost(t, api, name, "up", func(h types.Host) bool { return h.State == types.HostUp })
	if h.Inventory.CPUs < 1 || h.Inventory.RAMMiB < 1 {
		t.Errorf("inventory %+v: want cpus > 0 and ram_mib > 0", h.Inventory)
	}
	if slices.Contains(h.Capabilities, "kvm") {
		t.Errorf("capabilities %v claim kvm without a boot probe", h.Capabilities)
	}
	if !slices.Contains(h.Capabilities, types.CapCgroupV1) && !slices.Contains(h.Capabilities, types.CapCgroupV2) {
		t.Errorf("capabilities %v name no cgroup version", h.Capabilities)
	}
	if h.AgentVersion == "" {
		t.Error("agent_version is empty")
	}
	fi, err := os.Stat(filepath.Join(dir, "state", agent.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	// Heartbeats move last_heartbeat and bring usage.
	seen := h.LastHeartbeat
	h = waitHost(t, api, name, "heartbeating", func(h types.Host) bool {
		return h.LastHeartbeat.After(seen) && h.Usage.MemFreeMiB > 0
	})
	t.Logf("host %s: inventory %+v, capabilities %v, usage %+v", h.ID, h.Inventory, h.Capabilities, h.Usage)

	// SIGKILL: no chance to clean up. The restarted agent is the same host.
	if err := first.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.Exited
	seen = waitHost(t, api, name, "readable", func(types.Host) bool { return true }).LastHeartbeat
	second := testenv.Start(t, filepath.Join(dir, "agent-2.log"), corralAgent, args...)
	// The killed agent may have had one heartbeat in flight, which corrald
	// can still record after this point: the second new heartbeat is
	// certainly the restarted agent's.
	for i := 0; i < 2; i++ {
		seen = waitHost(t, api, name, "heartbeating again", func(h types.Host) bool {
			return h.LastHeartbeat.After(seen)
		}).LastHeartbeat
	}
	h2 := waitHost(t, api, name, "up", func(h types.Host) bool { return h.State == types.HostUp })
	if h2.ID != h.ID {
		t.Errorf("host ID after restart %s, want %s", h2.ID, h.ID)
	}
	if log, _ := os.ReadFile(second.LogPath); !strings.Contains(string(log), "host_id="+h.ID) {
		t.Errorf("the restarted agent's log does not name host %s:\n%s", h.ID, log)
	}
	hosts, err := client.ListAll[types.Host](ctx, api, "/v1/hosts", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 {
		t.Errorf("%d hosts after the restart, want 1", len(hosts))
	}
}
