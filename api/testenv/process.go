package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
)

// Build compiles the Go packages (e.g. "../corrald", ".") into dir with
// one go build, and fails the test if it does not compile.
func Build(t testing.TB, dir string, pkgs ...string) {
	t.Helper()
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", pkgs, err, out)
	}
}

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Process is a binary a test started, logging to a file.
type Process struct {
	Cmd *exec.Cmd
	// Exited is closed when the process has exited; Err is set before.
	Exited  chan struct{}
	Err     error
	LogPath string
}

// Start runs bin with args, without the caller's CORRAL_ variables, until
// the test ends: then it sends SIGTERM (SIGKILL after 5 s) and, if the test
// failed, shows the log.
func Start(t testing.TB, logPath, bin string, args ...string) *Process {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CORRAL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{Cmd: cmd, Exited: make(chan struct{}), LogPath: logPath}
	go func() { p.Err = cmd.Wait(); logFile.Close(); close(p.Exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.Exited:
		case <-time.After(stopGrace):
			t.Errorf("%s did not stop within %s of SIGTERM", filepath.Base(bin), stopGrace)
			cmd.Process.Kill()
			<-p.Exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", filepath.Base(bin), log)
		}
	})
	return p
}

// stopGrace is how long a process has to exit after SIGTERM before the
// test fails it: longer than corrald's own drain (15 s for requests in
// flight, then the store's close), so that a loaded machine's slow
// shutdown is not taken for a hang.
const stopGrace = 30 * time.Second

// Corrald is a running corrald.
type Corrald struct {
	*Process
	Endpoint string
	DataDir  string
	// TokenFile holds the bootstrap admin token; Admin uses it.
	TokenFile string
	Admin     *client.Client
}

// StartCorrald runs the corrald binary bin on a free loopback port until
// the test ends, with a fresh data directory and extra flags, and waits
// until /readyz answers 200.
func StartCorrald(t testing.TB, bin string, extra ...string) *Corrald {
	t.Helper()
	dir := t.TempDir()
	c := &Corrald{DataDir: filepath.Join(dir, "data")}
	addr := FreeAddr(t)
	c.Endpoint = "http://" + addr
	c.TokenFile = filepath.Join(c.DataDir, "admin-token")
	args := append([]string{"--listen", addr, "--data-dir", c.DataDir, "--bootstrap-token-file", c.TokenFile}, extra...)
	c.Process = Start(t, filepath.Join(dir, "corrald.log"), bin, args...)
	if err := WaitReady(c.Endpoint, c.Exited, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if token, err := os.ReadFile(c.TokenFile); err == nil {
		c.Admin = client.New(c.Endpoint, strings.TrimSpace(string(token)), nil)
	}
	return c
}

// WaitReady polls endpoint's /readyz until it answers 200, the process
// exits (exited closes) or the timeout passes.
func WaitReady(endpoint string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(endpoint + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("corrald at %s exited before it was ready", endpoint)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("corrald not ready at %s after %s: %v", endpoint, timeout, err)
		}
	}
}
