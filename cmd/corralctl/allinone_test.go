package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
)

// TestAllInOneDemoServerRerun runs the all-in-one's demo-server step
// (.ci/demo-server, with the real corralctl against a real corrald) the
// way a user does: once, again (nothing to do), and again after
// "server delete demo-1", which must create a new demo-1 (with a fixed
// Idempotency-Key the create replayed the deleted server's answer and the
// script failed with `server "demo-1": not found`).
func TestAllInOneDemoServerRerun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs corrald")
	}
	corrald, corralctl := binaries(t)
	cd := testenv.StartCorrald(t, corrald)
	ctl := newCtlRunner(t, corralctl, cd.Endpoint, cd.TokenFile)
	ctl.ok("region", "create", "local")
	ctl.ok("zone", "create", "rack1", "--region", "local")
	ctl.ok("aggregate", "create", "allinone")
	ctl.ok("flavor", "create", "demo-tiny", "--vcpus", "1", "--ram-mib", "128", "--disk-gib", "1")
	ctl.ok("project", "create", "demo")
	img := filepath.Join(t.TempDir(), "boot.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	ctl.ok("image", "create", "demo-guest", "--disk-format", "qcow2", "--file", img)
	tok, err := os.ReadFile(cd.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	api := client.New(cd.Endpoint, strings.TrimSpace(string(tok)), nil)
	reg, err := api.RegisterHost(context.Background(), types.HostRegister{Name: "local-hv", Region: "local", Zone: "rack1",
		Aggregates: []string{"allinone"}, Inventory: types.Inventory{CPUs: 4, RAMMiB: 8192, DiskGiB: 50}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := api.WithToken(reg.Token).Heartbeat(context.Background(), reg.Host.ID, types.Usage{MemFreeMiB: 7000}); err != nil {
		t.Fatal(err)
	}

	script, err := filepath.Abs("../../.ci/demo-server")
	if err != nil {
		t.Fatal(err)
	}
	demo := func(want string) types.Server {
		t.Helper()
		cmd := exec.Command("bash", script, corralctl, "demo-1", "--kind", "vm", "--flavor", "demo-tiny", "--image", "demo-guest", "--project", "demo")
		cmd.Env = ctl.env
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf(".ci/demo-server: %v, want %q in\n%s", err, want, out)
		}
		var srv types.Server
		ctl.okJSON(&srv, "server", "show", "demo-1")
		return srv
	}
	first := demo("created server demo-1")
	if again := demo("server demo-1 exists"); again.ID != first.ID {
		t.Errorf("second run made %s, want the existing %s", again.ID, first.ID)
	}
	ctl.ok("server", "delete", "demo-1")
	if second := demo("created server demo-1"); second.ID == first.ID {
		t.Errorf("after the delete the script showed the deleted server %s again", first.ID)
	}
}

// TestBuildScriptSaysWhatItDoes: .ci/build (what the all-in-one runs
// before anything else can start) announces the build and that the first
// one is slow, shows each package as go build compiles it, and fails when
// the build fails. A stand-in go command plays the compiler.
func TestBuildScriptSaysWhatItDoes(t *testing.T) {
	script, err := filepath.Abs("../../.ci/build")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fakeGo := filepath.Join(dir, "go")
	if err := os.WriteFile(fakeGo, []byte(`#!/bin/sh
echo "$@" > "$FAKE_GO_ARGS"
echo "github.com/jackc/pgx/v5" >&2
echo "modernc.org/sqlite/lib" >&2
echo "github.com/corral-cloud/corral/cmd/corrald" >&2
exit "${FAKE_GO_EXIT:-0}"
`), 0o755); err != nil {
		t.Fatal(err)
	}
	argsFile := filepath.Join(dir, "args")
	run := func(exit string) (string, error) {
		cmd := exec.Command("bash", script, filepath.Join(dir, "bin"))
		cmd.Env = append(os.Environ(), "GO="+fakeGo, "FAKE_GO_ARGS="+argsFile, "FAKE_GO_EXIT="+exit)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("0")
	if err != nil {
		t.Fatalf(".ci/build: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 5 || !strings.HasPrefix(lines[0], "building corrald, corral-agent and corralctl") ||
		!strings.Contains(lines[0], "several minutes") {
		t.Fatalf("output does not start by saying what it builds and how long it takes:\n%s", out)
	}
	for i, pkg := range []string{"github.com/jackc/pgx/v5", "modernc.org/sqlite/lib", "github.com/corral-cloud/corral/cmd/corrald"} {
		if !strings.Contains(lines[1+i], pkg) {
			t.Errorf("line %d = %q, want progress naming %s", 2+i, lines[1+i], pkg)
		}
	}
	args, _ := os.ReadFile(argsFile)
	if !strings.Contains(string(args), "build -v") || !strings.Contains(string(args), "./cmd/corral-agent") {
		t.Errorf("go called with %q, want build -v of the three commands", args)
	}
	if out, err := run("2"); err == nil || !strings.Contains(out, "go build failed") {
		t.Errorf("a failed build: %v\n%s", err, out)
	}
}
