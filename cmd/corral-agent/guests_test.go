package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
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
	"libvirt.org/go/libvirtxml"
)

// ctl runs the real corralctl against the rig's corrald.
func (r *rig) ctl(args ...string) []byte {
	r.t.Helper()
	cmd := exec.Command(filepath.Join(r.bins, "corralctl"), args...)
	cmd.Env = append(os.Environ(), "CORRAL_ENDPOINT="+r.cd.Endpoint, "CORRAL_TOKEN_FILE="+r.cd.TokenFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("corralctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func domainXML(t *testing.T, name string) libvirtxml.Domain {
	t.Helper()
	var d libvirtxml.Domain
	if err := d.Unmarshal(virsh(t, "dumpxml", name)); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestGuestEndToEnd: corralctl creates a VM that boots to its readiness
// marker; its domain has virtio disk and NIC, vhost only where the host
// has it; a second guest of the image downloads nothing; stop, start and
// reboot work; delete removes every trace.
func TestGuestEndToEnd(t *testing.T) {
	r := newRig(t)
	r.flavor("small", types.FlavorCreate{VCPUs: 1, RAMMiB: 128, DiskGiB: 1})

	var srv types.Server
	if err := json.Unmarshal(r.ctl("server", "create", "g1", "--kind", "vm", "--flavor", "small", "--image", "tiny",
		"--project", "p1", "-o", "json"), &srv); err != nil {
		t.Fatal(err)
	}
	r.track(srv.ID)
	srv = r.waitActive(srv.ID)
	line := r.waitMarker(srv.ID, "g1", 3*time.Minute)
	t.Logf("console: %s", line)

	// The domain as libvirt has it.
	name := compute.DomainName(srv.ID)
	x := domainXML(t, name)
	if x.Type != "qemu" || srv.Observed.DomainType != "qemu" {
		t.Errorf("domain type %q (observed %q), want qemu as configured", x.Type, srv.Observed.DomainType)
	}
	if d := x.Devices.Disks[0]; d.Target.Bus != "virtio" || d.Driver.Type != "qcow2" {
		t.Errorf("disk %+v %+v, want virtio qcow2", d.Target, d.Driver)
	}
	iface := x.Devices.Interfaces[0]
	if iface.Model.Type != "virtio" || iface.Source.Bridge == nil || iface.Source.Bridge.Bridge != r.bridge {
		t.Errorf("NIC model %+v source %+v, want virtio on %s", iface.Model, iface.Source.Bridge, r.bridge)
	}
	vhost := compute.VhostNetAvailable()
	if got := iface.Driver != nil && iface.Driver.Name == "vhost"; got != vhost || srv.Observed.Vhost != vhost {
		t.Errorf("vhost in XML %v, observed %v; /dev/vhost-net present: %v", got, srv.Observed.Vhost, vhost)
	}
	if iface.Driver == nil || iface.Driver.Host == nil || iface.Driver.Host.CSum != "off" {
		t.Errorf("NIC driver %+v: the userspace datapath needs <host csum='off'/>", iface.Driver)
	}
	if x.MemoryBacking != nil {
		t.Errorf("memory backing %+v for a flavor without hugepages", x.MemoryBacking)
	}
	h, err := client.Get[types.Host](t.Context(), r.api, "/v1/hosts/"+r.host)
	if err != nil {
		t.Fatal(err)
	}
	if !contains(h.Capabilities, types.CapTCG) || contains(h.Capabilities, types.CapKVM) ||
		contains(h.Capabilities, types.CapVhostNet) != vhost {
		t.Errorf("host capabilities %v: want tcg, no kvm, vhost_net only if present", h.Capabilities)
	}

	// A second guest of the same image: no second download.
	downloads := func() float64 {
		return r.metric("corral_http_requests_total", `route="/v1/images/:id/file"`, `method="GET"`, `status="200"`)
	}
	if n := downloads(); n != 1 {
		t.Errorf("image downloads after the first guest = %v, want 1", n)
	}
	g2 := r.create("g2", "small")
	r.waitActive(g2.ID)
	if n := downloads(); n != 1 {
		t.Errorf("image downloads after the second guest = %v, want still 1", n)
	}

	// Stop (the busybox guest ignores ACPI: forced after --stop-timeout),
	// start, reboot.
	r.ctl("server", "stop", g2.ID)
	r.waitServer(g2.ID, 60*time.Second, "stopped", func(s types.Server) bool { return s.State == types.ServerStopped })
	if st := strings.TrimSpace(virsh(t, "domstate", compute.DomainName(g2.ID))); st != "shut off" {
		t.Errorf("domain state after stop %q", st)
	}
	r.ctl("server", "start", "g2")
	r.waitActive(g2.ID)
	before := r.waitActive(srv.ID)
	if _, err := r.api.ServerAction(t.Context(), srv.ID, types.ActionReboot); err != nil {
		t.Fatal(err)
	}
	after := r.waitServer(srv.ID, 60*time.Second, "rebooted", func(s types.Server) bool {
		return s.Observed != nil && s.Observed.RebootSeq == 1
	})
	if after.Observed.DomainID != before.Observed.DomainID {
		t.Errorf("a reboot resets the guest in place: domain ID %d → %d", before.Observed.DomainID, after.Observed.DomainID)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		b, _ := os.ReadFile(r.consoleLog(srv.ID))
		if strings.Count(string(b), "GUEST-READY g1") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no second readiness marker after the reboot:\n%s", tail(string(b), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Delete: 202, then gone, with everything it left on the host.
	taps := after.Observed.Taps
	overlay := filepath.Join(r.dir, "agent", "instances", "disks", srv.ID+".qcow2")
	if _, err := os.Stat(overlay); err != nil {
		t.Fatalf("overlay: %v", err)
	}
	r.ctl("server", "delete", srv.ID)
	deadline = time.Now().Add(60 * time.Second)
	for {
		_, err := client.Get[types.Server](t.Context(), r.api, "/v1/servers/"+srv.ID)
		var apiErr *client.Error
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server still there 60 s after delete: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := exec.Command("virsh", "dominfo", name).CombinedOutput(); err == nil {
		t.Errorf("domain %s still defined after delete:\n%s", name, out)
	}
	for _, p := range []string{overlay, r.consoleLog(srv.ID)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind after delete (%v)", p, err)
		}
	}
	for _, tap := range taps {
		if out, err := exec.Command("tc", "qdisc", "show", "dev", tap).CombinedOutput(); err == nil && strings.Contains(string(out), "tbf") {
			t.Errorf("tc qdisc on %s left behind: %s", tap, out)
		}
	}
	h, _ = client.Get[types.Host](t.Context(), r.api, "/v1/hosts/"+r.host)
	if h.Allocated.Guests != 1 {
		t.Errorf("host allocation counts %d guests after the delete, want 1", h.Allocated.Guests)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// hugepagesAvailable counts the host's 2 MiB pages that a new mapping can
// still get: free pages minus those reserved by mappings that have not
// touched them yet. Free alone moves on its own, whenever another process
// (a PostgreSQL started with huge_pages=try, say) touches pages it
// reserved earlier.
func hugepagesAvailable(t *testing.T) int {
	t.Helper()
	read := func(name string) int {
		b, err := os.ReadFile("/sys/kernel/mm/hugepages/hugepages-2048kB/" + name)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return read("free_hugepages") - read("resv_hugepages")
}

// TestGuestHugepages: a flavor that asks for hugepages gets hugepage
// memory backing, and the host's available hugepages drop by the guest's
// memory; they come back on delete.
func TestGuestHugepages(t *testing.T) {
	r := newRig(t)
	if n := hugepagesAvailable(t); n < 64 {
		t.Fatalf("need at least 64 available 2 MiB hugepages (.ci/services sets vm.nr_hugepages), have %d", n)
	}
	r.flavor("huge", types.FlavorCreate{VCPUs: 1, RAMMiB: 128, DiskGiB: 1, Hugepages: true})
	before := hugepagesAvailable(t)
	srv := r.create("hp1", "huge")
	srv = r.waitActive(srv.ID)
	x := domainXML(t, compute.DomainName(srv.ID))
	if x.MemoryBacking == nil || x.MemoryBacking.MemoryHugePages == nil || !srv.Observed.Hugepages {
		t.Fatalf("no hugepage backing: %+v, observed %v", x.MemoryBacking, srv.Observed.Hugepages)
	}
	if drop := before - hugepagesAvailable(t); drop < 64 {
		t.Errorf("available hugepages dropped by %d, want ≥ 64 (128 MiB in 2 MiB pages)", drop)
	}
	if err := r.api.Delete(t.Context(), "/v1/servers/"+srv.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for hugepagesAvailable(t) < before {
		if time.Now().After(deadline) {
			t.Fatalf("hugepages not given back: %d available, %d before", hugepagesAvailable(t), before)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// linkLocal is the IPv6 link-local address a Linux guest derives from its
// MAC (EUI-64): the test reaches guests without any IP plumbing.
func linkLocal(t *testing.T, mac string) string {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("fe80::%02x%02x:%02xff:fe%02x:%02x%02x", hw[0]^2, hw[1], hw[2], hw[3], hw[4], hw[5])
}

// iperf runs iperf3 from the host to addr for 4 s and returns the
// receiver's rate in Mbit/s; reverse makes the guest send. It retries
// for up to 2 minutes while the guest refuses (its address may still be
// tentative, or its iperf3 server still busy with the previous run under
// emulation).
func iperf(t *testing.T, addr string, reverse bool) float64 {
	t.Helper()
	args := []string{"-c", addr, "-t", "4", "-J"}
	if reverse {
		args = append(args, "-R")
	}
	var last error
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		out, err := exec.Command("iperf3", args...).Output()
		if err == nil {
			var res struct {
				End struct {
					SumReceived struct {
						BitsPerSecond float64 `json:"bits_per_second"`
					} `json:"sum_received"`
				} `json:"end"`
				// Error is set, with exit status 0 under -J, when the
				// test did not run, e.g. "unable to connect to server:
				// Connection refused" while the guest's server still
				// winds down the previous test.
				Error string `json:"error"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatal(err)
			}
			if res.Error != "" {
				last = errors.New(res.Error)
				continue
			}
			if res.End.SumReceived.BitsPerSecond == 0 {
				t.Logf("iperf3 %v:\n%s", args, tail(string(out), 80))
			}
			return res.End.SumReceived.BitsPerSecond / 1e6
		}
		last = fmt.Errorf("%v: %s", err, out)
	}
	t.Fatalf("iperf3 %v: %v", args, last)
	return 0
}

// TestGuestQoS: a guest limited to 10 Mbit/s each way measures at most
// 11 Mbit/s in both directions (tc tbf on its tap towards it, an OpenFlow
// meter from it), and a 50 IOPS disk limit (libvirt iotune) slows its
// direct writes against an unlimited guest.
func TestGuestQoS(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Fatal("iperf3 is required (apt-get install iperf3; .ci/test installs it)")
	}
	r := newRig(t)
	r.flavor("limited", types.FlavorCreate{VCPUs: 1, RAMMiB: 128, DiskGiB: 1,
		QoS: types.QoS{NetInKbps: 10000, NetOutKbps: 10000, DiskIOPS: 50}})
	r.flavor("free", types.FlavorCreate{VCPUs: 1, RAMMiB: 128, DiskGiB: 1})
	free := r.create("free", "free")
	lim := r.create("lim", "limited")
	lim = r.waitActive(lim.ID)
	r.waitActive(free.ID)
	r.waitMarker(lim.ID, "lim", 3*time.Minute)
	r.waitMarker(free.ID, "free", 3*time.Minute)

	// What the agent applied, as it reports it and as the host has it.
	mech := map[string]string{}
	for _, q := range lim.Observed.QoS {
		mech[q.Limit] = q.Mechanism
	}
	tap := lim.Observed.Taps[0]
	if !strings.HasPrefix(mech["net_in_kbps"], "tc-tbf") || !strings.HasPrefix(mech["net_out_kbps"], "ovs-meter") ||
		!strings.HasPrefix(mech["disk_iops"], "libvirt-iotune") {
		t.Errorf("observed QoS %+v", lim.Observed.QoS)
	}
	if out, _ := exec.Command("tc", "qdisc", "show", "dev", tap).CombinedOutput(); !strings.Contains(string(out), "tbf") ||
		!strings.Contains(string(out), "10Mbit") {
		t.Errorf("tc on %s: %s", tap, out)
	}
	if out, _ := exec.Command("ovs-ofctl", "-O", "OpenFlow13", "dump-meters", r.bridge).CombinedOutput(); !strings.Contains(string(out), "rate=10000") {
		t.Errorf("meters on %s: %s", r.bridge, out)
	}
	if out := virsh(t, "blkdeviotune", compute.DomainName(lim.ID), "vda"); !strings.Contains(out, "total_iops_sec : 50") {
		t.Errorf("iotune: %s", out)
	}

	// Network, both directions, from the host's end of the bridge.
	x := domainXML(t, compute.DomainName(lim.ID))
	addr := linkLocal(t, x.Devices.Interfaces[0].MAC.Address) + "%" + r.bridge
	from := iperf(t, addr, true)
	to := iperf(t, addr, false)
	t.Logf("limited guest: to %.2f Mbit/s, from %.2f Mbit/s", to, from)
	if to > 11 || from > 11 {
		t.Errorf("limited to 10 Mbit/s, measured to %.2f, from %.2f Mbit/s", to, from)
	}
	if to < 3 || from < 3 {
		t.Errorf("suspiciously slow (to %.2f, from %.2f Mbit/s): is traffic flowing at all?", to, from)
	}
	xf := domainXML(t, compute.DomainName(free.ID))
	freeAddr := linkLocal(t, xf.Devices.Interfaces[0].MAC.Address) + "%" + r.bridge
	freeFrom := iperf(t, freeAddr, true)
	freeRate := iperf(t, freeAddr, false)
	t.Logf("unlimited guest: to %.2f Mbit/s, from %.2f Mbit/s", freeRate, freeFrom)
	if freeRate < 20 || freeFrom < 20 {
		t.Errorf("the unlimited guest runs at %.2f / %.2f Mbit/s: the limit is not what makes the difference", freeRate, freeFrom)
	}

	// Disk: 200 direct 4 KiB writes, timed by the guest.
	write := func(id string) time.Duration {
		out, code, took := r.guestTimed(id, "dd if=/dev/zero of=/dev/vda bs=4k count=200 seek=100000 oflag=direct 2>&1", 5*time.Minute)
		if code != 0 {
			t.Fatalf("dd on %s: exit %d: %s", id, code, out)
		}
		return took
	}
	limited, unlimited := write(lim.ID), write(free.ID)
	t.Logf("200 direct writes: %s at 50 IOPS, %s unlimited", limited, unlimited)
	if limited < 2500*time.Millisecond || limited < 2*unlimited {
		t.Errorf("50 IOPS did not slow the writes: %s limited, %s unlimited", limited, unlimited)
	}
}

// TestAgentRestartKeepsGuests: SIGKILL the agent while 5 guests run and
// start it again: same domain IDs and qemu processes, no guest restarted
// (uptime continues), QoS still in place, and the new agent adopts them.
func TestAgentRestartKeepsGuests(t *testing.T) {
	r := newRig(t)
	r.flavor("small", types.FlavorCreate{VCPUs: 1, RAMMiB: 128, DiskGiB: 1, QoS: types.QoS{NetInKbps: 20000, NetOutKbps: 20000}})
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, r.create(fmt.Sprintf("k%d", i), "small").ID)
	}
	before := map[string]types.Server{}
	for i, id := range ids {
		before[id] = r.waitActive(id)
		r.waitMarker(id, fmt.Sprintf("k%d", i), 5*time.Minute)
	}
	uptime := func(id string) float64 {
		out, code := r.guestRun(id, "cut -d' ' -f1 /proc/uptime", 3*time.Minute)
		if code != 0 {
			t.Fatalf("uptime of %s: %d %s", id, code, out)
		}
		var v float64
		fmt.Sscanf(strings.TrimSpace(out), "%g", &v)
		return v
	}
	up0 := uptime(ids[0])
	// The image's kernel command line skips the timer check that can
	// panic a TCG guest on a loaded host.
	if out, _ := r.guestRun(ids[0], "cat /proc/cmdline", 3*time.Minute); !strings.Contains(out, "no_timer_check") {
		t.Errorf("guest kernel command line %q lacks no_timer_check", strings.TrimSpace(out))
	}
	flows := func() string {
		out, _ := exec.Command("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "--no-stats", r.bridge).Output()
		return string(out)
	}
	flows0 := flows()

	r.killAgent()
	// Observations carry the agent's clock: any taken after this instant
	// come from the new agent, whatever the old one had in flight.
	killed := time.Now()
	r.startAgent()
	// The new agent reports on every guest once it has adopted them.
	for _, id := range ids {
		b := before[id]
		after := r.waitServer(id, 3*time.Minute, "re-reported", func(s types.Server) bool {
			return s.Observed != nil && s.Observed.UpdatedAt.After(killed)
		})
		if after.Observed.DomainID != b.Observed.DomainID || !after.Observed.StartedAt.Equal(*b.Observed.StartedAt) ||
			after.State != types.ServerActive {
			t.Errorf("server %s: domain %d started %v before, %d started %v after (state %s)", id, b.Observed.DomainID,
				b.Observed.StartedAt, after.Observed.DomainID, after.Observed.StartedAt, after.State)
		}
	}
	if up1 := uptime(ids[0]); up1 <= up0 {
		t.Errorf("guest uptime went from %.2f to %.2f: it was restarted", up0, up1)
	}
	if f := flows(); f != flows0 {
		t.Errorf("flows changed across the restart:\nbefore\n%s\nafter\n%s", flows0, f)
	}
	log, _ := os.ReadFile(r.agent.LogPath)
	for _, bad := range []string{"guest started", "guest removed", "guest rebooted", "forcing"} {
		if strings.Contains(string(log), bad) {
			t.Errorf("the restarted agent logged %q: it touched a running guest", bad)
		}
	}
}

// TestGuestOnNetwork: a VM with a port learns the port's static address
// from the control plane (SMBIOS OEM strings) and shows it in its
// readiness marker; its switch port carries the port's ID, so the network
// loop wires it (VLAN tag of the network).
func TestGuestOnNetwork(t *testing.T) {
	r := newRigWith(t, true)
	ctx := t.Context()
	r.flavor("small", types.FlavorCreate{VCPUs: 1, RAMMiB: 128, DiskGiB: 1})
	if _, err := client.Create[types.Network](ctx, r.api, "/v1/networks",
		types.NetworkCreate{Name: "n1", Project: "p1", SegmentType: "vlan", SegmentID: 321}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create[types.Subnet](ctx, r.api, "/v1/subnets",
		types.SubnetCreate{Name: "s1", Network: "n1", CIDR: "10.80.0.0/24", GatewayIP: "10.80.0.1"}, ""); err != nil {
		t.Fatal(err)
	}
	in := types.ServerCreate{Name: "net1", Kind: types.KindVM, Project: "p1", Flavor: "small", Image: "tiny",
		DesiredState: types.DesiredStopped}
	r.waitPlaceable(in)
	srv, err := client.Create[types.Server](ctx, r.api, "/v1/servers", in, "")
	if err != nil {
		t.Fatal(err)
	}
	r.track(srv.ID)
	r.waitServer(srv.ID, 3*time.Minute, "stopped", func(s types.Server) bool { return s.State == types.ServerStopped })
	port, err := client.Create[types.Port](ctx, r.api, "/v1/ports", types.PortCreate{Network: "n1", Project: "p1", Server: srv.ID}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(port.FixedIPs) != 1 {
		t.Fatalf("port %+v", port)
	}
	if _, err := r.api.ServerAction(ctx, srv.ID, types.ActionStart); err != nil {
		t.Fatal(err)
	}
	srv = r.waitActive(srv.ID)
	line := r.waitMarker(srv.ID, "net1", 3*time.Minute)
	if want := "addr=" + port.FixedIPs[0].IPAddress + "/24"; !strings.Contains(line, want) {
		t.Errorf("marker %q: want %s, the port's address", line, want)
	}
	x := domainXML(t, compute.DomainName(srv.ID))
	if mac := x.Devices.Interfaces[0].MAC.Address; mac != port.MACAddress {
		t.Errorf("guest MAC %s, port MAC %s", mac, port.MACAddress)
	}
	tap := srv.Observed.Taps[0]
	if out, _ := exec.Command("ovs-vsctl", "get", "Interface", tap, "external_ids:iface-id").Output(); strings.Trim(strings.TrimSpace(string(out)), `"`) != port.ID {
		t.Errorf("iface-id of %s = %s, want the port %s", tap, out, port.ID)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := exec.Command("ovs-vsctl", "get", "Port", tap, "tag").Output()
		if strings.TrimSpace(string(out)) != "[]" && len(strings.TrimSpace(string(out))) > 0 {
			t.Logf("port %s tag %s", tap, strings.TrimSpace(string(out)))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the network loop did not tag %s within 30 s", tap)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestGuestDiskQoSCgroup: with --disk-qos cgroup the 50 IOPS limit is
// written to the qemu process's blkio (v1) or io.max (v2) cgroup file, not
// to libvirt's iotune, and slows the guest's direct writes.
func TestGuestDiskQoSCgroup(t *testing.T) {
	r := newRig(t, "--disk-qos", "cgroup")
	r.flavor("limited", types.FlavorCreate{VCPUs: 1, RAMMiB: 128, DiskGiB: 1, QoS: types.QoS{DiskIOPS: 50}})
	srv := r.create("cg1", "limited")
	srv = r.waitActive(srv.ID)
	r.waitMarker(srv.ID, "cg1", 3*time.Minute)
	mech := ""
	for _, q := range srv.Observed.QoS {
		if q.Limit == "disk_iops" {
			mech = q.Mechanism
		}
	}
	if !strings.HasPrefix(mech, "cgroup-v") {
		t.Fatalf("disk_iops mechanism %q, want a cgroup", mech)
	}
	dev := mech[strings.LastIndex(mech, " ")+1:]
	name := compute.DomainName(srv.ID)
	if out := virsh(t, "blkdeviotune", name, "vda"); !strings.Contains(out, "total_iops_sec : 0") {
		t.Errorf("iotune set although cgroup limits were asked for:\n%s", out)
	}
	pidText, err := os.ReadFile("/run/libvirt/qemu/" + name + ".pid")
	if err != nil {
		t.Fatal(err)
	}
	cg, _ := os.ReadFile("/proc/" + strings.TrimSpace(string(pidText)) + "/cgroup")
	var file string
	for _, line := range strings.Split(string(cg), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && strings.Contains(parts[1], "blkio") {
			file = filepath.Join("/sys/fs/cgroup/blkio", parts[2], "blkio.throttle.write_iops_device")
		}
	}
	if strings.HasPrefix(mech, "cgroup-v1") {
		if b, err := os.ReadFile(file); err != nil || !strings.Contains(string(b), dev+" 50") {
			t.Errorf("%s = %q (%v), want %s 50", file, b, err, dev)
		}
	}
	out, code, took := r.guestTimed(srv.ID, "dd if=/dev/zero of=/dev/vda bs=4k count=200 seek=100000 oflag=direct 2>&1", 5*time.Minute)
	if code != 0 {
		t.Fatalf("dd: %d %s", code, out)
	}
	t.Logf("200 direct writes at 50 IOPS (cgroup): %s", took)
	if took < 2500*time.Millisecond {
		t.Errorf("the cgroup limit did not slow the writes: %s", took)
	}
}

// TestAgentWaitsForLibvirtd: with libvirtd unreachable the agent neither
// exits nor registers a host that cannot run guests; it says why, retries,
// and stops cleanly on SIGTERM.
func TestAgentWaitsForLibvirtd(t *testing.T) {
	bins := rigBinaries(t)
	dir := t.TempDir()
	p := testenv.Start(t, filepath.Join(dir, "agent.log"), filepath.Join(bins, "corral-agent"),
		"--endpoint", "http://127.0.0.1:9", "--name", "lv-down", "--region", "r", "--zone", "z",
		"--state-dir", filepath.Join(dir, "state"), "--registration-token-file", filepath.Join(dir, "token"),
		"--libvirt-uri", "qemu+unix:///system?socket="+filepath.Join(dir, "no-libvirtd.sock"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(p.LogPath)
		if strings.Count(string(b), "libvirtd is not reachable") >= 2 {
			break
		}
		select {
		case <-p.Exited:
			t.Fatalf("the agent exited while libvirtd was down: %v\n%s", p.Err, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retried complaint about libvirtd within 20 s:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if b, _ := os.ReadFile(p.LogPath); strings.Contains(string(b), "registered") {
		t.Errorf("the agent registered a host without libvirt:\n%s", b)
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited:
		if p.Err != nil {
			t.Errorf("exit after SIGTERM: %v", p.Err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the agent did not stop within 5 s of SIGTERM")
	}
}
