package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-cloud/corral/agent"
	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
)

// binDir holds the corrald and corral-agent binaries that the end-to-end
// test builds once.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "corral-agent-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// binaries builds corrald and corral-agent with one go build, the first
// time a test asks for them, and returns their paths.
func binaries(t *testing.T) (corrald, corralAgent string) {
	t.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "../corrald", ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "corrald"), filepath.Join(binDir, "corral-agent")
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// process is a binary the test started, with its log in a file.
type process struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited
	err     error         // set before exited is closed
	logPath string
}

// start runs bin with args until the test ends (or kill), logging to
// logPath; the log is shown when the test fails.
func start(t *testing.T, logPath, bin string, args ...string) *process {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	go func() { p.err = cmd.Wait(); logFile.Close(); close(p.exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			t.Errorf("%s did not stop within 5 s of SIGTERM", filepath.Base(bin))
			cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", filepath.Base(bin), log)
		}
	})
	return p
}

// cleanEnv is the test's environment without CORRAL_ variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CORRAL_") {
			env = append(env, kv)
		}
	}
	return env
}

// startCorrald runs corrald on a fresh data directory and returns its
// endpoint and an admin client.
func startCorrald(t *testing.T, bin string) (endpoint, tokenFile string, api *client.Client) {
	t.Helper()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	addr := freeAddr(t)
	p := start(t, filepath.Join(dir, "corrald.log"), bin, "--listen", addr, "--data-dir", dataDir)
	endpoint = "http://" + addr
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(endpoint + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("corrald exited before it was ready: %v", p.err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("corrald not ready at %s after 15 s: %v", endpoint, err)
		}
	}
	tokenFile = filepath.Join(dataDir, "admin-token")
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatalf("bootstrap token: %v", err)
	}
	return endpoint, tokenFile, client.New(endpoint, strings.TrimSpace(string(token)), nil)
}

// waitHost polls the host until ok accepts it, for at most 10 s.
func waitHost(t *testing.T, api *client.Client, name, what string, ok func(types.Host) bool) types.Host {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
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
			t.Fatalf("host %s: not %s after 10 s: last %+v, error %v", name, what, h, err)
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
	corrald, corralAgent := binaries(t)
	endpoint, tokenFile, api := startCorrald(t, corrald)
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
		"--region", "dc1", "--zone", "rack1", "--state-dir", filepath.Join(dir, "state"),
		"--heartbeat-interval", "500ms", "--log-level", "debug"}
	first := start(t, filepath.Join(dir, "agent-1.log"), corralAgent, args...)

	h := waitHost(t, api, name, "up", func(h types.Host) bool { return h.State == types.HostUp })
	if h.Inventory.CPUs < 1 || h.Inventory.RAMMiB < 1 {
		t.Errorf("inventory %+v: want cpus > 0 and ram_mib > 0", h.Inventory)
	}
	if slices.Contains(h.Capabilities, "kvm") {
		t.Errorf("capabilities %v claim kvm without a boot probe", h.Capabilities)
	}
	if !slices.Contains(h.Capabilities, agent.CapCgroupV1) && !slices.Contains(h.Capabilities, agent.CapCgroupV2) {
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
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	time.Sleep(200 * time.Millisecond) // let corrald finish a heartbeat sent just before the kill
	seen = waitHost(t, api, name, "readable", func(types.Host) bool { return true }).LastHeartbeat
	second := start(t, filepath.Join(dir, "agent-2.log"), corralAgent, args...)
	h2 := waitHost(t, api, name, "heartbeating again", func(h types.Host) bool {
		return h.LastHeartbeat.After(seen) && h.State == types.HostUp
	})
	if h2.ID != h.ID {
		t.Errorf("host ID after restart %s, want %s", h2.ID, h.ID)
	}
	if log, _ := os.ReadFile(second.logPath); !strings.Contains(string(log), "host_id="+h.ID) {
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
