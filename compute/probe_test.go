package compute

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/testenv"
)

// TestKVMProbe boots the probe guest under KVM for real. On hosts whose
// /dev/kvm cannot run ordinary guests (kvm_pvm: they die in KVM's
// instruction emulator) it must say no, with the reason; the result is
// cached for the next agent start.
func TestKVMProbe(t *testing.T) {
	uri := testenv.Require(t, "CORRAL_TEST_LIBVIRT", "libvirt (libvirtd running)")
	img := testenv.Require(t, "CORRAL_TEST_GUEST_IMAGE", "the test guest (compute/guestimage/build.sh)")
	cache := filepath.Join(t.TempDir(), "probe.json")
	p := KVMProbe{URI: uri, Kernel: filepath.Join(img, "vmlinuz"), Initrd: filepath.Join(img, "initrd.gz"),
		CacheFile: cache, Timeout: 45 * time.Second}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		// Nothing to boot: the answer is no, with the reason.
		res, err := p.Run(context.Background())
		if err != nil || res.KVM || res.Reason == "" {
			t.Fatalf("without /dev/kvm: %+v, %v", res, err)
		}
		return
	}
	start := time.Now()
	res, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probe: kvm=%v (%s) in %s", res.KVM, res.Reason, time.Since(start).Round(time.Millisecond))
	if _, pvm := os.Stat("/sys/module/kvm_pvm"); pvm == nil && res.KVM {
		t.Errorf("kvm_pvm host: the probe says KVM runs guests (%s)", res.Reason)
	}
	typ, why, err := ChooseDomainType(context.Background(), "auto", true, p)
	if err != nil {
		t.Fatal(err)
	}
	if (typ == "kvm") != res.KVM {
		t.Errorf("auto chose %s (%s) after a probe that said kvm=%v", typ, why, res.KVM)
	}
	if !res.KVM {
		if _, _, err := ChooseDomainType(context.Background(), "auto", false, p); err == nil {
			t.Error("auto without --allow-tcg accepted a host where KVM does not run guests")
		}
	}
	// The second run answers from the cache at once.
	start = time.Now()
	again, err := p.Run(context.Background())
	if err != nil || again.KVM != res.KVM || time.Since(start) > time.Second {
		t.Errorf("cached probe: %+v %v in %s", again, err, time.Since(start))
	}
}
