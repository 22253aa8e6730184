package ipmi_test

import (
	"sort"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/baremetal"
	"github.com/corral-cloud/corral/baremetal/ipmi"
	"github.com/corral-cloud/corral/baremetal/sim"
)

// BenchmarkIPMISimPower measures the latency of power operations against
// ipmi_sim over real IPMI lanplus (cipher suite 3), through the driver
// (bmclib, ipmitool, the presence probe), with a 1 ms minimum interval so
// that the spacing does not count. Run with -benchtime=1x: each run takes
// a fixed sample.
//
//	CORRAL_TEST_IPMI=1 CORRAL_TEST_LIBVIRT=qemu:///system go test -run '^$' -bench IPMISimPower -benchtime=1x ./baremetal/ipmi
func BenchmarkIPMISimPower(b *testing.B) {
	testenv.Require(b, "CORRAL_TEST_IPMI", "ipmi_sim")
	testenv.Require(b, "CORRAL_TEST_LIBVIRT", "libvirt")
	p := sim.Prefix()
	n := sim.NewNode(b, sim.WorkDir(b, p), p+"n1", "52:54:00:7e:00:01", sim.NewNetwork(b, p).Bridge)
	cfg := simConfig()
	cfg.MinInterval = time.Millisecond
	bmc := ipmi.New(cfg).BMC(creds(n.Port))
	measure := func(name string, samples int, op func() error) {
		var d []time.Duration
		for range samples {
			start := time.Now()
			if err := op(); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			d = append(d, time.Since(start))
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		p50, p99 := d[len(d)/2], d[min(len(d)-1, len(d)*99/100)]
		b.ReportMetric(float64(p50.Milliseconds()), name+"-p50-ms")
		b.ReportMetric(float64(p99.Milliseconds()), name+"-p99-ms")
		b.Logf("%s: %d samples, p50 %s, p99 %s, max %s", name, len(d), p50.Round(time.Millisecond), p99.Round(time.Millisecond),
			d[len(d)-1].Round(time.Millisecond))
	}
	for range b.N {
		measure("status", 100, func() error { _, err := bmc.PowerState(ctx); return err })
		measure("on+off", 10, func() error {
			if err := bmc.SetPower(ctx, baremetal.PowerOn); err != nil {
				return err
			}
			return bmc.SetPower(ctx, baremetal.PowerOff)
		})
		measure("bootdev", 20, func() error { return bmc.SetBootDevice(ctx, baremetal.BootPXE) })
	}
}
