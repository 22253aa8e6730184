// Package sim sets up simulated bare-metal nodes for tests and the demo:
// a libvirt guest whose BMC is ipmi_sim on a loopback port, on a
// provisioning bridge. It drives the scripts next to it (node.sh, bmc.sh,
// net.sh, vbmc.sh) and names everything with a unique prefix, removed when
// the test ends.
package sim

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Dir is the directory of the scripts.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Prefix returns a unique prefix for test resources, e.g. "cbm3f9a1".
func Prefix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return "cbm" + hex.EncodeToString(b)
}

// Run runs a script of the package and fails the test on error.
func Run(t testing.TB, script string, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(Dir(), script), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", script, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// WorkDir makes a directory libvirt's qemu user can reach (test temp dirs
// are 0700), removed when the test ends.
func WorkDir(t testing.TB, prefix string) string {
	t.Helper()
	dir := filepath.Join("/var/tmp", "corral-"+prefix)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	return dir
}

// FreeUDPPort returns a loopback UDP port that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// VLANs of the simulated switch: corrald's port and nodes on the
// provisioning network are access ports of ProvisioningVLAN; a node off
// it (active) is parked on ParkingVLAN.
const (
	ProvisioningVLAN = 100
	ParkingVLAN      = 4094
)

// Network is a provisioning bridge (an OVS bridge: the simulated switch).
type Network struct {
	Bridge string
	// HostIP is corrald's address on it; Subnet its /24.
	HostIP string
	Subnet *net.IPNet
}

// NewNetwork creates a bridge named prefix+"br" with a free 10.79.X.0/24
// and an IPv6 /64 for router advertisements, corrald's port on
// ProvisioningVLAN.
func NewNetwork(t testing.TB, prefix string) *Network {
	t.Helper()
	out, _ := exec.Command("ip", "-4", "-o", "addr").Output()
	var x int
	for x = 10; x < 250; x++ {
		if !strings.Contains(string(out), fmt.Sprintf(" 10.79.%d.", x)) {
			break
		}
	}
	n := &Network{Bridge: prefix + "br", HostIP: fmt.Sprintf("10.79.%d.1", x)}
	_, n.Subnet, _ = net.ParseCIDR(fmt.Sprintf("10.79.%d.0/24", x))
	Run(t, "net.sh", "create", n.Bridge, n.HostIP+"/24", fmt.Sprintf("fd00:79:%x::1/64", x), fmt.Sprint(ProvisioningVLAN))
	t.Cleanup(func() { exec.Command(filepath.Join(Dir(), "net.sh"), "destroy", n.Bridge).Run() })
	return n
}

// Node is a simulated bare-metal node.
type Node struct {
	Name     string
	MAC      string
	Port     int
	User     string
	Password string
	Dir      string
	// Serial is the serial console's log.
	Serial string
	// Tap is the node's switch port on the bridge.
	Tap string
}

// NewNode creates a node (domain defined, powered off) and its BMC.
func NewNode(t testing.TB, dir, name, mac, bridge string) *Node {
	t.Helper()
	n := &Node{Name: name, MAC: mac, Port: FreeUDPPort(t), User: "admin", Password: "secret", Dir: dir,
		Serial: filepath.Join(dir, name+".serial.log"), Tap: name[:min(len(name), 14)] + "t"}
	Run(t, "node.sh", "create", dir, name, mac, bridge, fmt.Sprint(n.Port), n.User, n.Password)
	t.Cleanup(func() { exec.Command(filepath.Join(Dir(), "node.sh"), "destroy", dir, name).Run() })
	return n
}

// KillBMC stops the node's ipmi_sim (the BMC stops answering).
func (n *Node) KillBMC(t testing.TB) { Run(t, "bmc.sh", "stop", n.bmcDir()) }

// StartBMC starts the node's ipmi_sim again.
func (n *Node) StartBMC(t testing.TB) {
	Run(t, "bmc.sh", "start", n.bmcDir(), n.Name, filepath.Join(n.Dir, n.Name+".xml"), fmt.Sprint(n.Port), n.User, n.Password)
}

func (n *Node) bmcDir() string { return filepath.Join(n.Dir, n.Name+".bmc") }

// Virsh runs virsh on the system connection.
func Virsh(args ...string) (string, error) {
	out, err := exec.Command("virsh", append([]string{"-c", "qemu:///system", "-q"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// PortVLAN returns the access VLAN of the node's switch port (0: none).
func (n *Node) PortVLAN(t testing.TB) int {
	t.Helper()
	out, err := exec.Command("ovs-vsctl", "--timeout=10", "get", "port", n.Tap, "tag").CombinedOutput()
	if err != nil {
		t.Fatalf("ovs-vsctl get port %s tag: %v: %s", n.Tap, err, out)
	}
	var tag int
	fmt.Sscan(strings.TrimSpace(string(out)), &tag)
	return tag
}

// DomState returns the domain's state: "running", or "off" when the
// (transient) domain does not exist.
func (n *Node) DomState() string {
	s, err := Virsh("domstate", n.Name)
	if err != nil {
		return "off"
	}
	return s
}

// BootDevice returns the boot device last set through the BMC, as
// ipmi_sim names it: "pxe" or "default" (disk).
func (n *Node) BootDevice() string {
	b, err := os.ReadFile(filepath.Join(n.bmcDir(), "bootdev"))
	if err != nil {
		return "pxe"
	}
	return strings.TrimSpace(string(b))
}

// WaitSerial waits until the serial log holds a line containing marker
// and returns that line.
func (n *Node) WaitSerial(t testing.TB, marker string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if line := n.SerialLine(marker); line != "" {
			return line
		}
		time.Sleep(200 * time.Millisecond)
	}
	log, _ := os.ReadFile(n.Serial)
	t.Fatalf("%s: no %q on the console within %s; console:\n%s", n.Name, marker, timeout, tail(string(log), 3000))
	return ""
}

// SerialLine returns the last whole console line containing marker, or "".
func (n *Node) SerialLine(marker string) string {
	b, _ := os.ReadFile(n.Serial)
	lines := strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n")
	// The last piece has no newline yet: the console writes a byte at a
	// time, so it may be half a line. Only whole lines count.
	lines = lines[:len(lines)-1]
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], marker) {
			return lines[i]
		}
	}
	return ""
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
