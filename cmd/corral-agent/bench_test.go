package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/compute"
)

// Benchmarks of the compute path against real libvirt. Run with
//
//	CORRAL_TEST_LIBVIRT=qemu:///system CORRAL_TEST_OVS=1 CORRAL_TEST_GUEST_IMAGE=/var/cache/corral/guest \
//	  go test -run '^$' -bench 'CreateToReady|Concurrent20' -benchtime 20x -timeout 60m ./cmd/corral-agent
//
// (BenchmarkConcurrent20 makes 20 guests per iteration; run it with
// -benchtime 1x.) Results and commands are in docs/benchmarks.md.

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func gone(name string) bool {
	return exec.Command("virsh", "-q", "domstate", name).Run() != nil
}

// BenchmarkCreateToReady measures, side by side and alternating, the time
// from an API create to the guest's readiness marker (warm image cache)
// and the time from defining and starting the same guest with virsh to
// its marker. The difference is Corral's overhead over raw libvirt.
func BenchmarkCreateToReady(b *testing.B) {
	r := newRig(b)
	r.flavor("bench", types.FlavorCreate{VCPUs: 1, RAMMiB: 128, DiskGiB: 1})
	// Warm the cache: one guest, then delete it.
	warm := r.create("warm", "bench")
	r.waitMarker(warm.ID, "warm", 5*time.Minute)
	r.api.Delete(b.Context(), "/v1/servers/"+warm.ID)
	for !gone(compute.DomainName(warm.ID)) {
		time.Sleep(100 * time.Millisecond)
	}
	base, _ := filepath.Glob(filepath.Join(r.dir, "agent", "images", "*.img"))
	if len(base) != 1 {
		b.Fatalf("cached images %v", base)
	}
	rawDir := filepath.Join(r.dir, "raw")
	os.MkdirAll(rawDir, 0o755)

	var corral, raw []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Corral: API create → marker.
		name := fmt.Sprintf("c%d", i)
		start := time.Now()
		srv, err := client.Create[types.Server](b.Context(), r.api, "/v1/servers",
			types.ServerCreate{Name: name, Kind: types.KindVM, Project: "p1", Flavor: "bench", Image: "tiny"}, "")
		if err != nil {
			b.Fatal(err)
		}
		r.track(srv.ID)
		if _, err := waitForMarker(r.consoleLog(srv.ID), "GUEST-READY "+name, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
		corral = append(corral, time.Since(start))
		r.api.Delete(b.Context(), "/v1/servers/"+srv.ID)

		// Raw libvirt: overlay, virsh define, virsh start → marker.
		rawName := fmt.Sprintf("corral-bench-raw-%s-%d", r.host, i)
		disk := filepath.Join(rawDir, rawName+".qcow2")
		logPath := filepath.Join(rawDir, rawName+".log")
		cfg := compute.DomainConfig{Name: rawName, Type: "qemu", VCPUs: 1, RAMMiB: 128, Disk: disk,
			ConsoleSocket: filepath.Join(rawDir, rawName+".sock"), ConsoleLog: logPath,
			NICs:       []compute.NIC{{MAC: fmt.Sprintf("02:be:00:00:%02x:%02x", i/256, i%256), Bridge: r.bridge}},
			OEMStrings: []string{"corral.hostname=" + rawName}}
		dom, err := compute.BuildDomain(cfg)
		if err != nil {
			b.Fatal(err)
		}
		xmlText, _ := dom.Marshal()
		xmlPath := filepath.Join(rawDir, rawName+".xml")
		os.WriteFile(xmlPath, []byte(xmlText), 0o644)
		start = time.Now()
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", base[0], "-F", "qcow2", disk, "1G").CombinedOutput(); err != nil {
			b.Fatalf("%v %s", err, out)
		}
		os.Chmod(disk, 0o644)
		if out, err := exec.Command("virsh", "define", xmlPath).CombinedOutput(); err != nil {
			b.Fatalf("%v %s", err, out)
		}
		if out, err := exec.Command("virsh", "start", rawName).CombinedOutput(); err != nil {
			b.Fatalf("%v %s", err, out)
		}
		if _, err := waitForMarker(logPath, "GUEST-READY "+rawName, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
		raw = append(raw, time.Since(start))
		exec.Command("virsh", "destroy", rawName).Run()
		exec.Command("virsh", "undefine", rawName).Run()
		for !gone(compute.DomainName(srv.ID)) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	b.StopTimer()
	over50 := percentile(corral, 0.5) - percentile(raw, 0.5)
	over95 := percentile(corral, 0.95) - percentile(raw, 0.95)
	b.ReportMetric(percentile(corral, 0.5).Seconds(), "corral-p50-s")
	b.ReportMetric(percentile(corral, 0.95).Seconds(), "corral-p95-s")
	b.ReportMetric(percentile(raw, 0.5).Seconds(), "virsh-p50-s")
	b.ReportMetric(percentile(raw, 0.95).Seconds(), "virsh-p95-s")
	b.ReportMetric(over50.Seconds(), "overhead-p50-s")
	b.ReportMetric(over95.Seconds(), "overhead-p95-s")
	b.Logf("corral %v", corral)
	b.Logf("virsh  %v", raw)
}

// BenchmarkConcurrent20 creates 20 guests at once on one host, waits until
// all are active and booted, then measures the agent's memory and CPU
// while it idles (resyncs included) for a minute.
func BenchmarkConcurrent20(b *testing.B) {
	r := newRig(b, "--resync", "30s")
	r.flavor("bench", types.FlavorCreate{VCPUs: 1, RAMMiB: 128, DiskGiB: 1})
	for it := 0; it < b.N; it++ {
		start := time.Now()
		var wg sync.WaitGroup
		ids := make([]string, 20)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv, err := client.Create[types.Server](b.Context(), r.api, "/v1/servers",
					types.ServerCreate{Name: fmt.Sprintf("x%d-%d", it, i), Kind: types.KindVM, Project: "p1", Flavor: "bench", Image: "tiny"}, "")
				if err != nil {
					b.Error(err)
					return
				}
				r.track(srv.ID)
				ids[i] = srv.ID
			}()
		}
		wg.Wait()
		var active time.Duration
		for _, id := range ids {
			r.waitServer(id, 10*time.Minute, "active", func(s types.Server) bool { return s.State == types.ServerActive })
		}
		active = time.Since(start)
		for i, id := range ids {
			if _, err := waitForMarker(r.consoleLog(id), fmt.Sprintf("GUEST-READY x%d-%d", it, i), 15*time.Minute); err != nil {
				b.Fatal(err)
			}
		}
		ready := time.Since(start)
		pid := r.agent.Cmd.Process.Pid
		cpu0, _ := procCPU(pid)
		time.Sleep(60 * time.Second)
		cpu1, _ := procCPU(pid)
		rss := procRSS(pid)
		b.ReportMetric(active.Seconds(), "all-active-s")
		b.ReportMetric(ready.Seconds(), "all-ready-s")
		b.ReportMetric(float64(rss)/1024, "agent-rss-MiB")
		b.ReportMetric((cpu1-cpu0).Seconds()/60*100, "agent-idle-cpu-%")
		for _, id := range ids {
			r.api.Delete(b.Context(), "/v1/servers/"+id)
		}
	}
}

// procCPU returns a process's user+system CPU time.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// procRSS returns a process's resident memory in KiB.
func procRSS(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}
