package compute

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// CgroupDiskLimiter throttles a guest's disk through the cgroup of its
// qemu process, with containerd/cgroups: blkio throttle files on cgroup v1
// (and hybrid hosts), io.max on cgroup v2. The limit applies to the block
// device that holds the guest's disk file. It only takes effect for
// uncached I/O (disk cache "none"): page-cache writes escape v1 throttling.
// libvirt's <iotune> (the default) works with any cache mode; this is for
// operators who account disk I/O per cgroup.
type CgroupDiskLimiter struct{}

// qemuPID returns the PID of a running domain's qemu process.
func qemuPID(domain string) (int, error) {
	b, err := os.ReadFile("/run/libvirt/qemu/" + domain + ".pid")
	if err != nil {
		return 0, fmt.Errorf("pid of %s: %w", domain, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// deviceOf returns the major and minor numbers of the device holding path.
func deviceOf(path string) (int64, int64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, err
	}
	return int64(unix.Major(st.Dev)), int64(unix.Minor(st.Dev)), nil
}

// Apply sets the total IOPS and bytes per second of the domain's disk file
// (0 lifts a limit) and returns the mechanism, e.g.
// "cgroup-v1-blkio 254:0".
func (CgroupDiskLimiter) Apply(domain, diskFile string, iops, bytesSec int64) (string, error) {
	pid, err := qemuPID(domain)
	if err != nil {
		return "", err
	}
	major, minor, err := deviceOf(diskFile)
	if err != nil {
		return "", err
	}
	dev := fmt.Sprintf("%d:%d", major, minor)
	if cgroups.Mode() == cgroups.Unified {
		group, err := cgroup2.PidGroupPath(pid)
		if err != nil {
			return "", err
		}
		// libvirt puts qemu's threads in emulator/ and vcpuN/ below the
		// domain's group: limit the domain's group, which holds them all.
		if base := filepath.Base(group); base == "emulator" || strings.HasPrefix(base, "vcpu") {
			group = filepath.Dir(group)
		}
		m, err := cgroup2.Load(group)
		if err != nil {
			return "", err
		}
		entry := func(t cgroup2.IOType, v int64) cgroup2.Entry {
			return cgroup2.Entry{Type: t, Major: major, Minor: minor, Rate: uint64(v)}
		}
		// io.max takes "max" to lift a limit; a rate of 0 is refused.
		var max []cgroup2.Entry
		for _, e := range []cgroup2.Entry{entry(cgroup2.ReadIOPS, iops), entry(cgroup2.WriteIOPS, iops),
			entry(cgroup2.ReadBPS, bytesSec), entry(cgroup2.WriteBPS, bytesSec)} {
			if e.Rate > 0 {
				max = append(max, e)
			}
		}
		if len(max) == 0 {
			return "cgroup-v2-io.max " + dev, os.WriteFile(filepath.Join("/sys/fs/cgroup", group, "io.max"),
				[]byte(dev+" riops=max wiops=max rbps=max wbps=max"), 0)
		}
		if err := m.Update(&cgroup2.Resources{IO: &cgroup2.IO{Max: max}}); err != nil {
			return "", fmt.Errorf("io.max of %s: %w", domain, err)
		}
		return "cgroup-v2-io.max " + dev, nil
	}
	blkioOnly := func() ([]cgroup1.Subsystem, error) {
		return []cgroup1.Subsystem{cgroup1.NewBlkio("/sys/fs/cgroup")}, nil
	}
	cg, err := cgroup1.Load(cgroup1.PidPath(pid), cgroup1.WithHierarchy(blkioOnly))
	if err != nil {
		return "", fmt.Errorf("blkio cgroup of %s: %w", domain, err)
	}
	dv := specs.LinuxBlockIODevice{Major: major, Minor: minor}
	td := func(v int64) []specs.LinuxThrottleDevice {
		return []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dv, Rate: uint64(v)}}
	}
	err = cg.Update(&specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
		ThrottleReadIOPSDevice: td(iops), ThrottleWriteIOPSDevice: td(iops),
		ThrottleReadBpsDevice: td(bytesSec), ThrottleWriteBpsDevice: td(bytesSec)}})
	if err != nil {
		return "", fmt.Errorf("blkio limits of %s: %w", domain, err)
	}
	return "cgroup-v1-blkio " + dev, nil
}
