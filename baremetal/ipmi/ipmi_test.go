package ipmi_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/baremetal"
	"github.com/corral-cloud/corral/baremetal/ipmi"
	"github.com/corral-cloud/corral/baremetal/sim"
)

var ctx = context.Background()

// fakeBMC answers the presence probe on a loopback UDP port, the way a
// live BMC does, and stops when the test ends.
func fakeBMC(t *testing.T) int {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if n > 4 && buf[0] == 0x06 {
				conn.WriteTo([]byte{0x06, 0x00, 0xff, 0x07, 0x00}, addr)
			}
		}
	}()
	return conn.LocalAddr().(*net.UDPAddr).Port
}

// fakeIpmitool writes an ipmitool stand-in that logs each call (cipher
// suite, start and end in Unix nanoseconds) and behaves as body says.
func fakeIpmitool(t *testing.T, body string) (path, log string) {
	t.Helper()
	dir := t.TempDir()
	path, log = filepath.Join(dir, "ipmitool"), filepath.Join(dir, "calls.log")
	script := `#!/bin/bash
C=; while [ $# -gt 0 ]; do case $1 in -C) C=$2; shift 2;; *) ARGS="$ARGS $1"; shift;; esac; done
start=$(date +%s%N)
` + body + `
rc=$?
echo "$C $start $(date +%s%N) $rc" >> ` + log + `
exit $rc
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, log
}

type call struct {
	suite      string
	start, end int64
	rc         int
}

func calls(t *testing.T, log string) []call {
	t.Helper()
	b, _ := os.ReadFile(log)
	var out []call
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 {
			continue
		}
		s, _ := strconv.ParseInt(f[1], 10, 64)
		e, _ := strconv.ParseInt(f[2], 10, 64)
		rc, _ := strconv.Atoi(f[3])
		out = append(out, call{f[0], s, e, rc})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out
}

func creds(port int) baremetal.Credentials {
	return baremetal.Credentials{Address: "127.0.0.1", Port: port, Username: "admin", Password: "secret"}
}

// TestSerialisedAndSpaced: commands to one BMC never overlap and are at
// least MinInterval apart, whoever sends them (the real bmclib over a
// stand-in ipmitool).
func TestSerialisedAndSpaced(t *testing.T) {
	port := fakeBMC(t)
	bin, log := fakeIpmitool(t, `sleep 0.05; echo "Chassis Power is on"`)
	const gap = 150 * time.Millisecond
	d := ipmi.New(ipmi.Config{IpmitoolPath: bin, MinInterval: gap})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := d.BMC(creds(port)).PowerState(ctx) // a new handle each time: same BMC
			if err != nil || p != "on" {
				t.Errorf("power state = %q, %v", p, err)
			}
		}()
	}
	wg.Wait()
	cs := calls(t, log)
	if len(cs) != 4 {
		t.Fatalf("%d ipmitool calls, want 4", len(cs))
	}
	for i := 1; i < len(cs); i++ {
		if got := time.Duration(cs[i].start - cs[i-1].end); got < gap {
			t.Errorf("call %d started %s after the previous one ended, want at least %s", i, got, gap)
		}
	}
}

// TestCipherSuiteFallback: a BMC that refuses the first suite is tried with
// the next; the one that worked is used first from then on.
func TestCipherSuiteFallback(t *testing.T) {
	port := fakeBMC(t)
	bin, log := fakeIpmitool(t, `if [ "$C" = 3 ]; then echo "Error: Unable to establish IPMI v2 / RMCP+ session" >&2; false; else echo "Chassis Power is off"; fi`)
	d := ipmi.New(ipmi.Config{IpmitoolPath: bin, MinInterval: time.Millisecond, CipherSuites: []string{"3", "17"}})
	for range 2 {
		if p, err := d.BMC(creds(port)).PowerState(ctx); err != nil || p != "off" {
			t.Fatalf("power state = %q, %v", p, err)
		}
	}
	if s := d.CipherSuite("127.0.0.1", port); s != "17" {
		t.Errorf("remembered suite = %q, want 17", s)
	}
	var suites []string
	for _, c := range calls(t, log) {
		suites = append(suites, c.suite)
	}
	if got := strings.Join(suites, ","); got != "3,17,17" {
		t.Errorf("suites tried = %s, want 3,17,17", got)
	}
}

// TestRejectedNotRetried: a BMC that answers but refuses every suite is
// ErrRejected at once, without the retries meant for silent BMCs.
func TestRejectedNotRetried(t *testing.T) {
	port := fakeBMC(t)
	bin, log := fakeIpmitool(t, `echo "Error: Unable to establish IPMI v2 / RMCP+ session" >&2; false`)
	d := ipmi.New(ipmi.Config{IpmitoolPath: bin, MinInterval: time.Millisecond, Attempts: 3})
	_, err := d.BMC(creds(port)).PowerState(ctx)
	if !errors.Is(err, baremetal.ErrRejected) || errors.Is(err, baremetal.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrRejected", err)
	}
	if n := len(calls(t, log)); n != 2 {
		t.Errorf("%d ipmitool calls, want 2 (one per suite, no retries)", n)
	}
}

// TestUnreachableBounded: a BMC that does not answer is ErrUnreachable
// after the configured attempts, and ipmitool is never left to its own
// (much longer) timeouts; a hung ipmitool is cut off by the call timeout.
func TestUnreachableBounded(t *testing.T) {
	bin, log := fakeIpmitool(t, `echo "Chassis Power is on"`)
	silent := sim.FreeUDPPort(t) // nothing listens
	d := ipmi.New(ipmi.Config{IpmitoolPath: bin, MinInterval: time.Millisecond, Attempts: 2, Backoff: 10 * time.Millisecond,
		ProbeTimeout: 100 * time.Millisecond})
	if _, err := d.BMC(creds(silent)).PowerState(ctx); !errors.Is(err, baremetal.ErrUnreachable) {
		t.Fatalf("silent BMC: %v, want ErrUnreachable", err)
	}
	if n := len(calls(t, log)); n != 0 {
		t.Errorf("ipmitool ran %d times against a BMC that does not answer", n)
	}
	// Answers the probe, then hangs in the session.
	port := fakeBMC(t)
	hung, _ := fakeIpmitool(t, `exec sleep 30`)
	d = ipmi.New(ipmi.Config{IpmitoolPath: hung, MinInterval: time.Millisecond, Attempts: 2, Backoff: 10 * time.Millisecond,
		CallTimeout: 200 * time.Millisecond})
	if _, err := d.BMC(creds(port)).PowerState(ctx); !errors.Is(err, baremetal.ErrUnreachable) {
		t.Fatalf("hung BMC: %v, want ErrUnreachable", err)
	}
}

// simNode starts a simulated node (libvirt guest + ipmi_sim).
func simNode(t *testing.T) *sim.Node {
	t.Helper()
	testenv.Require(t, "CORRAL_TEST_IPMI", "ipmi_sim")
	testenv.Require(t, "CORRAL_TEST_LIBVIRT", "libvirt")
	p := sim.Prefix()
	dir := sim.WorkDir(t, p)
	net := sim.NewNetwork(t, p)
	return sim.NewNode(t, dir, p+"n1", "52:54:00:7a:00:01", net.Bridge)
}

// simConfig is the driver's configuration against ipmi_sim: its chassis
// control runs virsh, which is slow when libvirtd is busy.
func simConfig() ipmi.Config {
	return ipmi.Config{CallTimeout: 30 * time.Second, MinInterval: 200 * time.Millisecond, Attempts: 2, Backoff: 200 * time.Millisecond}
}

// TestIPMISimCredentials: wrong credentials are ErrRejected (the BMC
// answers); right ones read the power state; the cipher-suite fallback
// gets past a suite ipmi_sim does not support.
func TestIPMISimCredentials(t *testing.T) {
	n := simNode(t)
	cfg := simConfig()
	cfg.CipherSuites = []string{"17", "3"} // ipmi_sim refuses 17
	d := ipmi.New(cfg)
	wrong := creds(n.Port)
	wrong.Password = "wrong"
	if _, err := d.BMC(wrong).PowerState(ctx); !errors.Is(err, baremetal.ErrRejected) {
		t.Errorf("wrong password: %v, want ErrRejected", err)
	}
	p, err := d.BMC(creds(n.Port)).PowerState(ctx)
	if err != nil || p != "off" {
		t.Fatalf("power state = %q, %v", p, err)
	}
	if s := d.CipherSuite("127.0.0.1", n.Port); s != "3" {
		t.Errorf("suite = %q, want 3", s)
	}
}

// TestIPMISimPower: power on, off and cycle change the guest's real state;
// a change made behind the BMC's back (virsh) is what the BMC reports; the
// boot device reaches the simulated BMC.
func TestIPMISimPower(t *testing.T) {
	n := simNode(t)
	b := ipmi.New(simConfig()).BMC(creds(n.Port))
	step := func(op baremetal.PowerOp, want string) {
		t.Helper()
		if err := b.SetPower(ctx, op); err != nil {
			t.Fatalf("power %s: %v", op, err)
		}
		if got := n.DomState(); got != want {
			t.Errorf("after power %s the domain is %q, want %q", op, got, want)
		}
	}
	if err := b.SetBootDevice(ctx, baremetal.BootDisk); err != nil || n.BootDevice() != "default" {
		t.Errorf("boot disk: %v, device %q", err, n.BootDevice())
	}
	if err := b.SetBootDevice(ctx, baremetal.BootPXE); err != nil || n.BootDevice() != "pxe" {
		t.Errorf("boot pxe: %v, device %q", err, n.BootDevice())
	}
	step(baremetal.PowerOn, "running")
	step(baremetal.PowerOn, "running") // idempotent
	step(baremetal.PowerCycle, "running")
	step(baremetal.PowerOff, "off")
	step(baremetal.PowerCycle, "running") // cycle of an off node powers it on
	if _, err := sim.Virsh("destroy", n.Name); err != nil {
		t.Fatal(err)
	}
	if p, err := b.PowerState(ctx); err != nil || p != "off" {
		t.Errorf("after an out-of-band destroy: %q, %v; want off", p, err)
	}
}

// TestIPMISimBMCDies: a killed ipmi_sim gives ErrUnreachable after bounded
// retries (no hang), and the BMC works again once restarted.
func TestIPMISimBMCDies(t *testing.T) {
	n := simNode(t)
	cfg := simConfig()
	cfg.ProbeTimeout = 300 * time.Millisecond
	b := ipmi.New(cfg).BMC(creds(n.Port))
	if _, err := b.PowerState(ctx); err != nil {
		t.Fatal(err)
	}
	n.KillBMC(t)
	cctx, cancel := context.WithTimeout(ctx, time.Minute) // a hang fails the test instead of blocking it
	defer cancel()
	_, err := b.PowerState(cctx)
	if !errors.Is(err, baremetal.ErrUnreachable) || cctx.Err() != nil {
		t.Fatalf("dead BMC: %v (context %v), want ErrUnreachable before the deadline", err, cctx.Err())
	}
	n.StartBMC(t)
	if p, err := b.PowerState(ctx); err != nil || p != "off" {
		t.Errorf("BMC back: %q, %v", p, err)
	}
}
