package compute

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// VhostNetAvailable reports whether /dev/vhost-net exists. Where it does
// not, guest NICs use qemu's own virtio backend: slower, never a failed
// boot.
func VhostNetAvailable() bool {
	_, err := os.Stat("/dev/vhost-net")
	return err == nil
}

// KVMProbe decides whether guests really run under KVM on this host.
// /dev/kvm existing and "virsh start" succeeding prove nothing (on some
// hosts every guest goes "paused" with a KVM emulation failure within a
// minute), so the probe boots a small guest with <domain type='kvm'> and
// waits for its readiness marker on the serial console.
type KVMProbe struct {
	URI string
	// Kernel and Initrd boot the probe guest; its /init must print
	// Marker on the console (compute/guestimage/build.sh's does).
	Kernel, Initrd string
	Marker         string // default "GUEST-READY"
	Timeout        time.Duration
	// CacheFile remembers the result per kernel, libvirt and probe image,
	// so that agent restarts do not probe again.
	CacheFile string
}

// ProbeResult is the outcome of a KVM probe.
type ProbeResult struct {
	KVM     bool      `json:"kvm"`
	Reason  string    `json:"reason"`
	Key     string    `json:"key"`
	ProbeAt time.Time `json:"probed_at"`
}

// Run boots the probe guest, or returns the cached result.
func (p KVMProbe) Run(ctx context.Context) (ProbeResult, error) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return ProbeResult{Reason: "/dev/kvm does not exist"}, nil
	}
	if p.Kernel == "" || p.Initrd == "" {
		return ProbeResult{}, errors.New("kvm probe: a probe kernel and initrd are required")
	}
	if p.Marker == "" {
		p.Marker = "GUEST-READY"
	}
	if p.Timeout <= 0 {
		p.Timeout = 60 * time.Second
	}
	key := probeKey(p.Kernel, p.Initrd)
	if p.CacheFile != "" {
		var cached ProbeResult
		if b, err := os.ReadFile(p.CacheFile); err == nil && json.Unmarshal(b, &cached) == nil && cached.Key == key {
			return cached, nil
		}
	}
	res, err := p.boot(ctx)
	if err != nil {
		return res, err
	}
	res.Key, res.ProbeAt = key, time.Now().UTC()
	if p.CacheFile != "" {
		b, _ := json.Marshal(res)
		_ = os.WriteFile(p.CacheFile, b, 0o644)
	}
	return res, nil
}

func probeKey(files ...string) string {
	var b strings.Builder
	if u, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		b.Write(bytes.TrimSpace(u))
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "|%s:%d:%d", f, fi.Size(), fi.ModTime().Unix())
		}
	}
	if v, err := libvirt.GetVersion(); err == nil {
		fmt.Fprintf(&b, "|libvirt:%d", v)
	}
	return b.String()
}

func (p KVMProbe) boot(ctx context.Context) (ProbeResult, error) {
	conn, err := libvirt.NewConnect(p.URI)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("kvm probe: connect to libvirt: %w", err)
	}
	defer conn.Close()
	dir, err := os.MkdirTemp("", "corral-kvm-probe-")
	if err != nil {
		return ProbeResult{}, err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	logPath := filepath.Join(dir, "console.log")
	name := fmt.Sprintf("corral-probe-%d", time.Now().UnixNano())
	port := uint(0)
	dom := &libvirtxml.Domain{
		Type: "kvm", Name: name,
		Memory: &libvirtxml.DomainMemory{Value: 128, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS: &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
			Kernel: p.Kernel, Initrd: p.Initrd, Cmdline: "console=ttyS0 quiet hostname=kvm-probe"},
		CPU:      &libvirtxml.DomainCPU{Mode: "host-model"},
		Features: &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		Devices: &libvirtxml.DomainDeviceList{
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind", Path: filepath.Join(dir, "console.sock")}},
				Log:    &libvirtxml.DomainChardevLog{File: logPath, Append: "off"},
				Target: &libvirtxml.DomainSerialTarget{Port: &port},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	raw, err := dom.Marshal()
	if err != nil {
		return ProbeResult{}, err
	}
	d, err := conn.DomainCreateXML(raw, 0) // transient: gone once destroyed
	if err != nil {
		return ProbeResult{KVM: false, Reason: "a KVM guest does not start: " + err.Error()}, nil
	}
	defer func() { d.Destroy(); d.Free() }()
	deadline := time.Now().Add(p.Timeout)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(logPath); bytes.Contains(b, []byte(p.Marker)) {
			return ProbeResult{KVM: true, Reason: "a KVM guest booted to its readiness marker"}, nil
		}
		st, reason, err := d.GetState()
		if err != nil {
			return ProbeResult{KVM: false, Reason: "the KVM guest vanished: " + err.Error()}, nil
		}
		if st != libvirt.DOMAIN_RUNNING {
			return ProbeResult{KVM: false, Reason: fmt.Sprintf("the KVM guest went %s (reason %d) before booting, "+
				"e.g. an emulation failure", stateNames[st], reason)}, nil
		}
		select {
		case <-ctx.Done():
			return ProbeResult{}, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return ProbeResult{KVM: false, Reason: fmt.Sprintf("the KVM guest printed no readiness marker within %s", p.Timeout)}, nil
}

// ChooseDomainType decides the guests' domain type. configured is "kvm",
// "qemu" or "auto"; under "auto" a real boot probe decides, and "qemu"
// (TCG emulation, many times slower) is used only if allowTCG.
func ChooseDomainType(ctx context.Context, configured string, allowTCG bool, probe KVMProbe) (string, string, error) {
	switch configured {
	case "kvm", "qemu":
		return configured, "configured", nil
	case "", "auto":
	default:
		return "", "", fmt.Errorf("domain type %q: want kvm, qemu or auto", configured)
	}
	res, err := probe.Run(ctx)
	if err != nil {
		return "", "", err
	}
	if res.KVM {
		return "kvm", res.Reason, nil
	}
	if !allowTCG {
		return "", res.Reason, fmt.Errorf("KVM does not run guests on this host (%s) and TCG emulation is not allowed "+
			"(--allow-tcg)", res.Reason)
	}
	return "qemu", "KVM unusable (" + res.Reason + "); TCG emulation allowed by configuration", nil
}
