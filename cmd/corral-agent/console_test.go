package main

import (
	"bufio"
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// TestGuestConsoleThroughAPI (issue 15, acceptance 6, the console half): a
// real guest under libvirt prints its readiness marker on its serial
// console; "corralctl server console NAME --log" shows that line, read
// from corrald (the agent uploaded it), and the follow mode prints it too.
// A line typed with --send runs in the guest's shell.
// The agent's reports carry the guest's CPU time and memory in use from
// libvirt, which corrald keeps as usage history: the right-sizing report
// judges the guest once thresholds let every server through.
func TestGuestConsoleThroughAPI(t *testing.T) {
	r := newRig(t, "--resync", "2s")
	r.flavor("small", types.FlavorCreate{VCPUs: 1, RAMMiB: 128, DiskGiB: 1})
	srv := r.create("con1", "small")
	srv = r.waitActive(srv.ID)
	line := r.waitMarker(srv.ID, "con1", 6*time.Minute) // TCG on a shared, loaded machine
	t.Logf("console log on the host: %s", line)

	ctl := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(r.bins, "corralctl"), args...)
		cmd.Env = append(os.Environ(), "CORRAL_ENDPOINT="+r.cd.Endpoint, "CORRAL_TOKEN_FILE="+r.cd.TokenFile)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		if err != nil {
			return out.String(), &exec.ExitError{ProcessState: cmd.ProcessState, Stderr: errOut.Bytes()}
		}
		return out.String(), nil
	}
	// The agent uploads every second: the marker line reaches corrald
	// soon after it is whole in the log.
	deadline := time.Now().Add(time.Minute)
	var out string
	for {
		var err error
		out, err = ctl(t.Context(), "server", "console", "con1", "--log")
		if err == nil && hasLine(out, line) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("corralctl server console con1 --log never showed %q (error %v); it printed:\n%s", line, err, tail(out, 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("corralctl server console con1 --log shows: %s", line)

	// Follow mode prints the tail (with the marker) and keeps running
	// until interrupted.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, _ = ctl(ctx, "server", "console", "con1", "--tail", "200")
	if !hasLine(out, line) {
		t.Errorf("follow mode did not print the marker line %q:\n%s", line, tail(out, 20))
	}
	if ctx.Err() == nil {
		t.Errorf("follow mode exited by itself instead of following:\n%s", tail(out, 20))
	}

	// Typing through the API: the guest's shell runs the line; its output
	// (not the echoed command, which shows the unexpanded $((6*7))) comes
	// back through the console.
	if _, err := ctl(t.Context(), "server", "console", "con1", "--log", "--send", "echo IN-$((6*7))-con1"); err != nil {
		t.Fatalf("corralctl server console --send: %v", err)
	}
	deadline = time.Now().Add(time.Minute)
	for {
		out, err := ctl(t.Context(), "server", "console", "con1", "--log", "--tail", "50")
		if err == nil && hasExactLine(out, "IN-42-con1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the typed command's output never showed (error %v):\n%s", err, tail(out, 20))
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Log("input typed with corralctl server console --send ran in the guest")

	// Usage history from the agent's reports (every 2 s here): CPU time
	// and memory in use come from libvirt. The tiny guest has no balloon
	// driver, so memory in use is its qemu process's resident size,
	// capped at the flavor's RAM: thresholds above 100 % let it through.
	s := r.waitServer(srv.ID, time.Minute, "reporting memory in use", func(s types.Server) bool {
		return s.Observed != nil && s.Observed.Counters.MemoryUsedKiB > 0 && s.Observed.Counters.CPUTimeNs > 0
	})
	t.Logf("observed counters: %+v", s.Observed.Counters)
	q := url.Values{"min_hours": {"1"}, "cpu_p95_below": {"1000"}, "mem_below": {"1000"}}
	deadline = time.Now().Add(time.Minute)
	for {
		rep, err := r.api.Rightsizing(t.Context(), q)
		if err == nil && len(rep.Servers) == 1 && rep.Servers[0].ServerID == srv.ID && rep.Servers[0].MemP95MiB > 0 {
			t.Logf("right-sizing sees con1: %+v", rep.Servers[0])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the right-sizing report never judged con1: %+v (error %v)", rep, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// hasLine reports whether out holds a line that ends with want (the
// marker up to its line end, as waitMarker returns it).
func hasLine(out, want string) bool {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.HasSuffix(strings.TrimSpace(sc.Text()), want) {
			return true
		}
	}
	return false
}

// hasExactLine reports whether out holds want as a whole line.
func hasExactLine(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}
