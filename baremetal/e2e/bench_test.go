package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
)

// BenchmarkBaremetalDeploy measures server create → active on simulated
// nodes (TCG guests: PXE, ramdisk, 32 MiB image written and read back,
// reboot from disk): one node alone, then four in parallel. Nodes are
// enrolled with their hardware, so no inspection is counted.
//
//	CORRAL_TEST_IPMI=1 CORRAL_TEST_LIBVIRT=qemu:///system go test -run '^$' -bench BaremetalDeploy -benchtime=1x -timeout 30m ./baremetal/e2e
func BenchmarkBaremetalDeploy(b *testing.B) {
	r := newRig(b, true)
	var names []string
	for i := range 5 {
		name := fmt.Sprintf("bm%d", i)
		r.node(name, fmt.Sprintf("52:54:00:7f:00:%02x", i+1), "secret", "--provide", "--cpus", "1", "--ram-mib", "200", "--disk-gib", "1")
		names = append(names, name)
	}
	for _, n := range names {
		r.wait(n, 3*time.Minute, "available", func(n types.Node) bool { return n.State == types.NodeAvailable })
	}
	deploy := func(name string) time.Duration {
		start := time.Now()
		srv, err := client.Create[types.Server](ctx, r.admin, "/v1/servers", types.ServerCreate{Name: name, Kind: types.KindBaremetal,
			Project: "p", Flavor: "metal", Image: "bm-image"}, "")
		if err != nil {
			b.Error(err)
			return 0
		}
		for time.Since(start) < 10*time.Minute {
			s, err := client.Get[types.Server](ctx, r.admin, "/v1/servers/"+srv.ID)
			if err == nil && (s.State == types.ServerActive || s.State == types.ServerError) {
				if s.State == types.ServerError {
					b.Errorf("%s: %s", name, s.Fault)
				}
				return time.Since(start)
			}
			time.Sleep(200 * time.Millisecond)
		}
		b.Errorf("%s: not active within 10 minutes", name)
		return 0
	}
	for range b.N {
		one := deploy("single")
		b.ReportMetric(one.Seconds(), "single-create-to-active-s")
		b.Logf("one node: create → active %s", one.Round(100*time.Millisecond))
		var wg sync.WaitGroup
		d := make([]time.Duration, 4)
		start := time.Now()
		for i := range d {
			wg.Add(1)
			go func() { defer wg.Done(); d[i] = deploy(fmt.Sprintf("par-%d", i)) }()
		}
		wg.Wait()
		all := time.Since(start)
		b.ReportMetric(all.Seconds(), "parallel4-all-active-s")
		b.Logf("four nodes in parallel: each %v, all active after %s", roundAll(d), all.Round(100*time.Millisecond))
	}
}

func roundAll(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, v := range d {
		out[i] = v.Round(100 * time.Millisecond)
	}
	return out
}
