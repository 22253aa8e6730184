package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/compute"
)

// stopCorrald stops the rig's corrald (SIGTERM) and waits until it is gone.
func (r *rig) stopCorrald() {
	r.t.Helper()
	r.cd.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.cd.Exited:
	case <-time.After(20 * time.Second):
		r.t.Fatal("corrald did not stop within 20 s of SIGTERM")
	}
}

// startCorraldAgain starts corrald on the same address and data directory.
func (r *rig) startCorraldAgain(n int) {
	r.t.Helper()
	addr := strings.TrimPrefix(r.cd.Endpoint, "http://")
	p := testenv.Start(r.t, filepath.Join(r.dir, "corrald-"+strconv.Itoa(n)+".log"), filepath.Join(r.bins, "corrald"),
		"--listen", addr, "--data-dir", r.cd.DataDir, "--bootstrap-token-file", r.cd.TokenFile)
	if err := testenv.WaitReady(r.cd.Endpoint, p.Exited, 30*time.Second); err != nil {
		b, _ := os.ReadFile(p.LogPath)
		r.t.Fatalf("%v\n%s", err, b)
	}
	r.cd.Process = p
}

// dbFiles are the SQLite database and its journal files.
func dbFiles(dataDir string) []string {
	db := filepath.Join(dataDir, "corral.db")
	return []string{db, db + "-wal", db + "-shm"}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if errors.Is(err, os.ErrNotExist) {
		os.Remove(dst)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// createPlaced creates a VM, retrying while placement cannot use the host
// yet (corrald just started: no heartbeat measured since).
func (r *rig) createPlaced(name, flavor string) types.Server {
	r.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		srv, err := client.Create[types.Server](r.t.Context(), r.api, "/v1/servers",
			types.ServerCreate{Name: name, Kind: types.KindVM, Project: "p1", Flavor: flavor, Image: "tiny"}, "")
		if err == nil {
			r.track(srv.ID)
			return srv
		}
		if client.Code(err) != types.CodeNoValidHost || time.Now().After(deadline) {
			r.t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// guestProcess is what proves a guest was not touched: libvirt's domain
// ID and the qemu process.
type guestProcess struct {
	domID string
	pid   string
}

func processOf(t *testing.T, id string) guestProcess {
	t.Helper()
	name := compute.DomainName(id)
	out, err := exec.Command("virsh", "domid", name).CombinedOutput()
	if err != nil {
		t.Fatalf("domain %s is gone: %v: %s", name, err, out)
	}
	pid, err := os.ReadFile("/run/libvirt/qemu/" + name + ".pid")
	if err != nil {
		t.Fatalf("qemu of %s: %v", name, err)
	}
	return guestProcess{domID: strings.TrimSpace(string(out)), pid: strings.TrimSpace(string(pid))}
}

// TestRestoreBackupKeepsGuests is the restore drill of docs/operations.md:
// back up the database, create two servers, restore the backup and start
// corrald. The agent must leave both guests running (same domain ID and
// qemu process) with their disks, and report them as unknown guests. One
// is adopted (its server back, the host's allocation counting its claim,
// the agent reporting it active without touching it), the other deleted
// explicitly (its domain gone, its disk in the trash). Then the agent
// loses its state and registers again from the same machine: it gets its
// old host ID back.
func TestRestoreBackupKeepsGuests(t *testing.T) {
	r := newRig(t, "--resync", "2s")
	r.flavor("small", types.FlavorCreate{VCPUs: 1, RAMMiB: 128, DiskGiB: 1})
	ctx := t.Context()
	host, err := client.Get[types.Host](ctx, r.api, "/v1/hosts/"+r.host)
	if err != nil {
		t.Fatal(err)
	}
	if host.MachineID == "" {
		t.Errorf("the host registered without a machine identity")
	}

	// The backup: a copy of the database with corrald stopped.
	backup := filepath.Join(r.dir, "backup")
	os.MkdirAll(backup, 0o700)
	r.stopCorrald()
	for _, f := range dbFiles(r.cd.DataDir) {
		copyFile(t, f, filepath.Join(backup, filepath.Base(f)))
	}
	r.startCorraldAgain(2)

	keep, drop := r.createPlaced("keep", "small"), r.createPlaced("drop", "small")
	keepSrv := r.waitActive(keep.ID)
	r.waitActive(drop.ID)
	r.waitMarker(keep.ID, "keep", 3*time.Minute)
	r.waitMarker(drop.ID, "drop", 3*time.Minute)
	procs := map[string]guestProcess{keep.ID: processOf(t, keep.ID), drop.ID: processOf(t, drop.ID)}
	disks := filepath.Join(r.dir, "agent", "instances", "disks")
	for id := range procs {
		if _, err := os.Stat(filepath.Join(disks, id+".qcow2")); err != nil {
			t.Fatalf("overlay of %s: %v", id, err)
		}
	}

	// Restore the backup: corrald no longer knows either server.
	r.stopCorrald()
	for _, f := range dbFiles(r.cd.DataDir) {
		copyFile(t, filepath.Join(backup, filepath.Base(f)), f)
	}
	r.startCorraldAgain(3)
	for _, id := range []string{keep.ID, drop.ID} {
		if _, err := client.Get[types.Server](ctx, r.api, "/v1/servers/"+id); client.Code(err) != types.CodeNotFound {
			t.Fatalf("server %s after the restore: %v, want not found", id, err)
		}
	}
	var unknown []types.UnknownGuest
	deadline := time.Now().Add(90 * time.Second)
	for {
		unknown, err = r.api.UnknownGuests(ctx, host.ID)
		if err == nil && len(unknown) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unknown guests after the restore: %+v (%v), want keep and drop", unknown, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, g := range unknown {
		if _, ok := procs[g.ServerID]; !ok || g.State != "running" || g.FlavorID == "" || g.ProjectID == "" || g.VCPUs != 1 {
			t.Errorf("unknown guest %+v", g)
		}
	}
	if n := r.metric("corral_unknown_guests", `host="`+r.host+`"`); n != 2 {
		t.Errorf("corral_unknown_guests = %v, want 2", n)
	}
	// Several resyncs (every 2 s) later the guests still run untouched,
	// with their disks.
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		for id, p := range procs {
			if got := processOf(t, id); got != p {
				t.Fatalf("guest %s was restarted after the restore: %+v → %+v", id, p, got)
			}
		}
	}
	for id := range procs {
		if _, err := os.Stat(filepath.Join(disks, id+".qcow2")); err != nil {
			t.Fatalf("overlay of %s after the restore: %v", id, err)
		}
	}

	// Adopt one with corralctl: the server is back, its claim counted,
	// and the agent reports it active without touching it.
	before, _ := client.Get[types.Host](ctx, r.api, "/v1/hosts/"+host.ID)
	var adopted types.Server
	if err := json.Unmarshal(r.ctl("host", "adopt", r.host, keep.ID, "-o", "json"), &adopted); err != nil {
		t.Fatal(err)
	}
	if adopted.ID != keep.ID || adopted.Name != "keep" || adopted.HostID != host.ID {
		t.Errorf("adopted %+v", adopted)
	}
	after, _ := client.Get[types.Host](ctx, r.api, "/v1/hosts/"+host.ID)
	if after.Allocated.Guests != before.Allocated.Guests+1 || after.Allocated.VCPUs != before.Allocated.VCPUs+1 {
		t.Errorf("host allocation %+v → %+v: the adopted guest's claim is not counted", before.Allocated, after.Allocated)
	}
	back := r.waitServer(keep.ID, time.Minute, "reported active", func(s types.Server) bool {
		return s.State == types.ServerActive && s.Observed != nil && s.Observed.DomainID > 0
	})
	if back.Observed.DomainID != keepSrv.Observed.DomainID {
		t.Errorf("adopted guest's domain ID %d, was %d", back.Observed.DomainID, keepSrv.Observed.DomainID)
	}

	// Delete the other explicitly: the agent destroys it and keeps its
	// disk in the trash.
	r.ctl("host", "delete-guest", r.host, drop.ID)
	deadline = time.Now().Add(60 * time.Second)
	for {
		if out, err := exec.Command("virsh", "dominfo", compute.DomainName(drop.ID)).CombinedOutput(); err != nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("domain of the deleted guest still there:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(disks, drop.ID+".qcow2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("overlay of the deleted guest still in place: %v", err)
	}
	trashed, _ := filepath.Glob(filepath.Join(r.dir, "agent", "instances", "trash", drop.ID+".deleted-*.qcow2"))
	if len(trashed) != 1 {
		t.Errorf("trash holds %v, want the deleted guest's overlay", trashed)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		l, err := r.api.UnknownGuests(ctx, host.ID)
		if err == nil && len(l) == 0 && r.metric("corral_unknown_guests", `host="`+r.host+`"`) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unknown guests after adopt and delete: %+v (%v)", l, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := processOf(t, keep.ID); got != procs[keep.ID] {
		t.Errorf("the adopted guest was restarted: %+v → %+v", procs[keep.ID], got)
	}

	// The agent loses its state (credential and host ID) and registers
	// again from the same machine: same host.
	r.killAgent()
	if err := os.Remove(filepath.Join(r.dir, "agent", "state.json")); err != nil {
		t.Fatal(err)
	}
	r.startAgent()
	deadline = time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(r.agent.LogPath)
		if strings.Contains(string(b), `msg=registered`) {
			if !strings.Contains(string(b), "host_id="+host.ID) {
				t.Fatalf("the agent registered as another host, not %s:\n%s", host.ID, tail(string(b), 20))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not register again:\n%s", tail(string(b), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	hosts, err := client.List[types.Host](ctx, r.api, "/v1/hosts", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts.Items) != 1 || hosts.Items[0].ID != host.ID {
		t.Errorf("hosts after re-registration: %+v, want only %s", hosts.Items, host.ID)
	}
	r.waitServer(keep.ID, time.Minute, "re-reported", func(s types.Server) bool {
		return s.Observed != nil && s.Observed.UpdatedAt.After(back.Observed.UpdatedAt) && s.State == types.ServerActive
	})
	if got := processOf(t, keep.ID); got != procs[keep.ID] {
		t.Errorf("the guest was restarted across the re-registration: %+v → %+v", procs[keep.ID], got)
	}
}
