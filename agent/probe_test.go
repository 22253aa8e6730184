package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// tree builds a fake host root file system.
type tree fstest.MapFS

func newTree() tree { return tree{} }

func (t tree) file(name, content string) tree {
	t[name] = &fstest.MapFile{Data: []byte(content), Mode: 0o444}
	return t
}

// cpus writes an x86 /proc/cpuinfo with n processors of model.
func (t tree) cpus(model string, n int) tree {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "processor\t: %d\nvendor_id\t: GenuineIntel\nmodel name\t: %s\nflags\t\t: fpu vme\n\n", i, model)
	}
	return t.file("proc/cpuinfo", b.String())
}

func (t tree) meminfo(lines ...string) tree {
	return t.file("proc/meminfo", strings.Join(lines, "\n")+"\n")
}

func (t tree) numaNodes(n int) tree {
	t.file("sys/devices/system/node/online", "0\n")
	for i := range n {
		t.file(fmt.Sprintf("sys/devices/system/node/node%d/cpulist", i), "0\n")
	}
	return t
}

func (t tree) hugepages(sizeKiB string, nr, free int64) tree {
	dir := "sys/kernel/mm/hugepages/hugepages-" + sizeKiB + "kB/"
	return t.file(dir+"nr_hugepages", fmt.Sprintln(nr)).file(dir+"free_hugepages", fmt.Sprintln(free))
}

// reserved adds resv_hugepages for a size: pages mapped but not yet touched.
func (t tree) reserved(sizeKiB string, resv int64) tree {
	return t.file("sys/kernel/mm/hugepages/hugepages-"+sizeKiB+"kB/resv_hugepages", fmt.Sprintln(resv))
}

// nic adds a network interface: "physical" has a device link, "bond" a
// bonding directory, anything else is virtual.
func (t tree) nic(name, kind string) tree {
	t.file("sys/class/net/"+name+"/address", "52:54:00:12:34:56\n")
	switch kind {
	case "physical":
		t.file("sys/class/net/"+name+"/device/vendor", "0x1af4\n")
	case "bond":
		t.file("sys/class/net/"+name+"/bonding/mode", "802.3ad 4\n")
	}
	return t
}

func (t tree) mounts(lines ...string) tree {
	return t.file("proc/self/mounts", strings.Join(lines, "\n")+"\n")
}

func (t tree) dev(names ...string) tree {
	for _, n := range names {
		t.file("dev/"+n, "")
	}
	return t
}

// Mount table lines.
const (
	mountCgroup2Root    = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0"
	mountCgroup2Unified = "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0"
	mountCgroupTmpfs    = "tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0"
	mountCgroupCPU      = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0"
	mountCgroupMemory   = "cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0"
	mountRoot           = "/dev/vda / ext4 rw,relatime 0 0"
	mountProc           = "proc /proc proc rw,relatime 0 0"
)

func TestProbeCPU(t *testing.T) {
	tests := []struct {
		name      string
		fs        tree
		wantModel string
		wantCPUs  int64
		wantErr   bool
	}{
		{name: "x86 two CPUs", fs: newTree().cpus("Intel(R) Xeon(R) Processor @ 2.50GHz", 2),
			wantModel: "Intel(R) Xeon(R) Processor @ 2.50GHz", wantCPUs: 2},
		{name: "64 CPUs", fs: newTree().cpus("AMD EPYC 7543 32-Core Processor", 64),
			wantModel: "AMD EPYC 7543 32-Core Processor", wantCPUs: 64},
		{name: "arm64 has no model name", fs: newTree().file("proc/cpuinfo",
			"processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n\nprocessor\t: 1\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n"),
			wantCPUs: 2},
		{name: "no processors", fs: newTree().file("proc/cpuinfo", "\n"), wantErr: true},
		{name: "no cpuinfo", fs: newTree(), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, cpus, err := probeCPU(fstest.MapFS(tt.fs))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if model != tt.wantModel || cpus != tt.wantCPUs {
				t.Errorf("got (%q, %d), want (%q, %d)", model, cpus, tt.wantModel, tt.wantCPUs)
			}
		})
	}
}

func TestProbeNUMANodes(t *testing.T) {
	tests := []struct {
		name string
		fs   tree
		want int64
	}{
		{name: "one node", fs: newTree().numaNodes(1), want: 1},
		{name: "two nodes", fs: newTree().numaNodes(2), want: 2},
		{name: "kernel without NUMA", fs: newTree(), want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := probeNUMANodes(fstest.MapFS(tt.fs))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %d NUMA nodes, want %d", got, tt.want)
			}
		})
	}
}

func TestProbeMeminfo(t *testing.T) {
	tests := []struct {
		name    string
		fs      tree
		want    meminfo
		wantErr bool
	}{
		{name: "total and available",
			fs:   newTree().meminfo("MemTotal:       24684096 kB", "MemFree:        23730600 kB", "MemAvailable:   24286576 kB", "HugePages_Total:       0"),
			want: meminfo{TotalKiB: 24684096, AvailableKiB: 24286576}},
		{name: "old kernel without MemAvailable",
			fs:   newTree().meminfo("MemTotal:        2048000 kB", "MemFree:          512000 kB"),
			want: meminfo{TotalKiB: 2048000, AvailableKiB: 512000}},
		{name: "no MemTotal", fs: newTree().meminfo("MemFree: 1 kB"), wantErr: true},
		{name: "garbage", fs: newTree().meminfo("MemTotal: lots kB"), wantErr: true},
		{name: "no meminfo", fs: newTree(), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := probeMeminfo(fstest.MapFS(tt.fs))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("meminfo (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProbeHugepages(t *testing.T) {
	tests := []struct {
		name      string
		fs        tree
		wantTotal map[string]int64
		wantFree  map[string]int64
		wantCap   bool
		wantErr   bool
	}{
		{name: "none configured", fs: newTree().hugepages("2048", 0, 0).hugepages("1048576", 0, 0)},
		{name: "no hugetlbfs support", fs: newTree()},
		{name: "2 MiB pages, some used", fs: newTree().hugepages("2048", 512, 500).hugepages("1048576", 0, 0),
			wantTotal: map[string]int64{"2048": 512}, wantFree: map[string]int64{"2048": 500}, wantCap: true},
		{name: "both sizes", fs: newTree().hugepages("2048", 64, 0).hugepages("1048576", 4, 4),
			wantTotal: map[string]int64{"2048": 64, "1048576": 4}, wantFree: map[string]int64{"2048": 0, "1048576": 4}, wantCap: true},
		{name: "reserved pages are not free", fs: newTree().hugepages("2048", 256, 256).reserved("2048", 64),
			wantTotal: map[string]int64{"2048": 256}, wantFree: map[string]int64{"2048": 192}, wantCap: true},
		{name: "unreadable count", fs: newTree().file("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "x\n"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hp, err := probeHugepages(fstest.MapFS(tt.fs))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantTotal, hp.total()); diff != "" {
				t.Errorf("total (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantFree, hp.free()); diff != "" {
				t.Errorf("free (-want +got):\n%s", diff)
			}
			gotCap := slices.Contains(capabilities(fstest.MapFS(tt.fs), CgroupUnknown, hp), types.CapHugepages)
			if gotCap != tt.wantCap {
				t.Errorf("hugepages capability = %v, want %v", gotCap, tt.wantCap)
			}
		})
	}
}

func TestProbeNICs(t *testing.T) {
	tests := []struct {
		name string
		fs   tree
		want []string
	}{
		{name: "physical and bonds, sorted",
			fs: newTree().nic("lo", "virtual").nic("eth0", "physical").nic("ens1f0", "physical").nic("ens1f1", "physical").
				nic("bond0", "bond").nic("veth12ab", "virtual").nic("vnet0", "virtual").nic("ovs-system", "virtual").
				nic("br-int", "virtual").nic("virbr0", "virtual").nic("tap3", "virtual").nic("ifb0", "virtual"),
			want: []string{"bond0", "ens1f0", "ens1f1", "eth0"}},
		{name: "only loopback", fs: newTree().nic("lo", "virtual")},
		{name: "no sysfs", fs: newTree()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := probeNICs(fstest.MapFS(tt.fs))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NICs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProbeCgroup(t *testing.T) {
	tests := []struct {
		name    string
		fs      tree
		want    CgroupMode
		wantCap string
		wantErr bool
	}{
		{name: "unified v2", fs: newTree().mounts(mountRoot, mountProc, mountCgroup2Root),
			want: CgroupV2, wantCap: types.CapCgroupV2},
		{name: "hybrid: v1 controllers, cgroup2 at unified",
			fs:   newTree().mounts(mountRoot, mountCgroupTmpfs, mountCgroupCPU, mountCgroupMemory, mountCgroup2Unified),
			want: CgroupHybrid, wantCap: types.CapCgroupV1},
		{name: "legacy v1 only", fs: newTree().mounts(mountRoot, mountCgroupTmpfs, mountCgroupCPU, mountCgroupMemory),
			want: CgroupV1, wantCap: types.CapCgroupV1},
		{name: "v2 wins over a stray v1 mount", fs: newTree().mounts(mountCgroup2Root, "cgroup /run/x cgroup rw,name=x 0 0"),
			want: CgroupV2, wantCap: types.CapCgroupV2},
		{name: "no cgroups mounted", fs: newTree().mounts(mountRoot, mountProc), want: CgroupUnknown},
		{name: "no mount table", fs: newTree(), want: CgroupUnknown, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := probeCgroup(fstest.MapFS(tt.fs))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want || got.Capability() != tt.wantCap {
				t.Errorf("got %q (capability %q), want %q (%q)", got, got.Capability(), tt.want, tt.wantCap)
			}
		})
	}
}

func TestCapabilities(t *testing.T) {
	tests := []struct {
		name string
		fs   tree
		cg   CgroupMode
		hp   hugepages
		want []string
	}{
		{name: "nothing", fs: newTree(), want: []string{}},
		// /dev/kvm proves nothing about KVM guests: never "kvm".
		{name: "this test machine", fs: newTree().dev("kvm"), cg: CgroupHybrid,
			want: []string{types.CapCgroupV1, types.CapKVMDevice}},
		{name: "full host", fs: newTree().dev("kvm", "vhost-net"), cg: CgroupV2,
			hp:   hugepages{"2048": {Total: 1024, Free: 1024}},
			want: []string{types.CapCgroupV2, types.CapHugepages, types.CapKVMDevice, types.CapVhostNet}},
		{name: "hugepage sizes known but none configured", fs: newTree(), cg: CgroupV1,
			hp: hugepages{"2048": {}}, want: []string{types.CapCgroupV1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := capabilities(fstest.MapFS(tt.fs), tt.cg, tt.hp)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("capabilities (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeDisk is a DiskStater with fixed figures, or an error.
type fakeDisk struct {
	space DiskSpace
	err   error
}

func (d fakeDisk) DiskSpace(string) (DiskSpace, error) { return d.space, d.err }

// fakeGuests is a GuestCounter with a fixed answer.
type fakeGuests struct {
	n   int64
	err error
}

func (g fakeGuests) Guests(context.Context) (int64, error) { return g.n, g.err }

// TestHostProbeTestdata probes a tree captured from a Debian 12 test
// machine (cgroup v1 hybrid, /dev/kvm, no /dev/vhost-net), with 64 2 MiB
// hugepages configured on top.
func TestHostProbeTestdata(t *testing.T) {
	p := &HostProbe{
		FS:      os.DirFS("testdata/debian12-hybrid"),
		DataDir: "/var/lib/corral-agent",
		Disk:    fakeDisk{space: DiskSpace{Total: 100<<30 + 512<<20, Avail: 40<<30 + 1}},
		Guests:  fakeGuests{n: 3},
	}
	inv, caps, err := p.Inventory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantInv := types.Inventory{
		CPUModel:  "Intel(R) Xeon(R) Processor @ 2.50GHz",
		CPUs:      2,
		NUMANodes: 1,
		RAMMiB:    24684096 / 1024,
		DiskGiB:   100,
		Hugepages: map[string]int64{"2048": 64},
		NICs:      []string{"eth0"},
	}
	if diff := cmp.Diff(wantInv, inv); diff != "" {
		t.Errorf("inventory (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{types.CapCgroupV1, types.CapHugepages, types.CapKVMDevice}, caps); diff != "" {
		t.Errorf("capabilities (-want +got):\n%s", diff)
	}
	u, err := p.Usage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantUsage := types.Usage{MemFreeMiB: 24239596 / 1024, Load1: 0.69, DiskFreeGiB: 40,
		HugepagesFree: map[string]int64{"2048": 16}, Guests: 3}
	if diff := cmp.Diff(wantUsage, u); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
}

func TestHostProbeErrors(t *testing.T) {
	base := func() tree {
		return newTree().cpus("x", 4).meminfo("MemTotal: 8388608 kB", "MemAvailable: 4194304 kB").
			file("proc/loadavg", "1.50 1.00 0.50 2/100 42\n").mounts(mountCgroup2Root)
	}
	diskErr := errors.New("statfs /data: no such file or directory")
	t.Run("inventory needs the disk", func(t *testing.T) {
		p := &HostProbe{FS: fstest.MapFS(base()), DataDir: "/data", Disk: fakeDisk{err: diskErr}, Guests: NoGuests{}}
		if _, _, err := p.Inventory(t.Context()); !errors.Is(err, diskErr) {
			t.Errorf("err = %v, want %v", err, diskErr)
		}
	})
	t.Run("usage sends what it measured", func(t *testing.T) {
		fs := base()
		delete(fs, "proc/loadavg")
		guestErr := errors.New("libvirt down")
		p := &HostProbe{FS: fstest.MapFS(fs), DataDir: "/data", Disk: fakeDisk{err: diskErr}, Guests: fakeGuests{err: guestErr}}
		u, err := p.Usage(t.Context())
		if !errors.Is(err, diskErr) || !errors.Is(err, guestErr) {
			t.Errorf("err = %v, want it to hold %v and %v", err, diskErr, guestErr)
		}
		if diff := cmp.Diff(types.Usage{MemFreeMiB: 4096}, u); diff != "" {
			t.Errorf("usage (-want +got):\n%s", diff)
		}
	})
}

// TestHostProbeRealHost probes the machine the test runs on.
func TestHostProbeRealHost(t *testing.T) {
	if _, err := os.Stat("/proc/cpuinfo"); err != nil {
		t.Skip("no /proc/cpuinfo: not Linux")
	}
	p := NewHostProbe(t.TempDir())
	inv, caps, err := p.Inventory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if inv.CPUs < 1 || inv.RAMMiB < 1 || inv.NUMANodes < 1 {
		t.Errorf("implausible inventory %+v", inv)
	}
	if slices.Contains(caps, "kvm") {
		t.Errorf("capabilities %v claim kvm without a boot probe", caps)
	}
	if _, err := os.Stat("/dev/kvm"); err == nil && !slices.Contains(caps, types.CapKVMDevice) {
		t.Errorf("capabilities %v lack %s although /dev/kvm exists", caps, types.CapKVMDevice)
	}
	u, err := p.Usage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if u.MemFreeMiB < 1 || u.MemFreeMiB > inv.RAMMiB {
		t.Errorf("mem_free_mib %d not in [1, %d]", u.MemFreeMiB, inv.RAMMiB)
	}
	t.Logf("inventory %+v, capabilities %v, usage %+v", inv, caps, u)
}
