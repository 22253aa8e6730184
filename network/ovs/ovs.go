// Package ovs is the Open vSwitch driver of the network agent: the
// integration bridge, its ports and its OpenFlow rules.
//
// Bridge and port calls that go-openvswitch covers (ListBridges,
// DeletePort, fail mode, setting protocols) go through it. The rest is run with
// ovs-vsctl and ovs-ofctl directly, through the same exec function, for
// reasons go-openvswitch cannot serve:
//
//   - the bridge is created with its datapath type, fail mode and
//     protocols in one OVSDB transaction, and a tunnel port with its type,
//     options and tag in one, so that no half-made bridge or port exists;
//   - one JSON "list" of interfaces, ports and the bridge finds guest
//     ports by external_ids:iface-id (go-openvswitch has no "list"/"find");
//   - flows are changed with an OpenFlow 1.4 bundle (ovs-ofctl --bundle)
//     that adds flows and deletes others by exact cookie, atomically:
//     go-openvswitch's bundle only takes its own Flow type, whose parser
//     cannot round-trip ct(), NXM register loads or output:NXM_NX_REG7,
//     and the diff needs only the cookies of installed flows.
package ovs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral-cloud/corral/network"
	"github.com/corral-cloud/corral/network/flows"
	"github.com/digitalocean/go-openvswitch/ovs"
)

// Datapath types.
const (
	DatapathSystem = "system" // the openvswitch kernel module
	DatapathNetdev = "netdev" // the userspace datapath
)

// protocols are the OpenFlow versions the bridge speaks; bundles need 1.4.
var protocols = []string{"OpenFlow10", "OpenFlow13", "OpenFlow14", "OpenFlow15"}

// ExecFunc runs an OVS command and returns its output; it is
// go-openvswitch's ovs.ExecFunc, so tests can run the real library over a
// fake.
type ExecFunc = ovs.ExecFunc

// PipeFunc runs an OVS command with stdin.
type PipeFunc func(stdin io.Reader, cmd string, args ...string) ([]byte, error)

// Driver manages one integration bridge. It is safe for use by one
// goroutine at a time.
type Driver struct {
	bridge   string
	datapath string
	rundir   string
	exec     ExecFunc
	pipe     PipeFunc
	lib      *ovs.Client
}

// Option configures a Driver.
type Option func(*Driver)

// WithExec replaces how commands are run (tests).
func WithExec(e ExecFunc, p PipeFunc) Option {
	return func(d *Driver) { d.exec, d.pipe = e, p }
}

// WithDatapath forces the datapath type of a bridge the driver creates,
// instead of probing the host.
func WithDatapath(dp string) Option {
	return func(d *Driver) { d.datapath = dp }
}

// WithRunDir talks to the Open vSwitch whose run directory (OVS_RUNDIR:
// db.sock, BRIDGE.mgmt, the daemons' pidfiles) is dir, instead of the
// system's: a host's private OVS instance. Commands run with OVS_RUNDIR
// set, which ovs-vsctl, ovs-ofctl, ovs-appctl and ovsdb-client all honour.
func WithRunDir(dir string) Option {
	return func(d *Driver) { d.rundir = dir }
}

// New returns a driver for bridge.
func New(bridge string, opts ...Option) *Driver {
	d := &Driver{bridge: bridge}
	d.exec = func(cmd string, args ...string) ([]byte, error) { return d.runStdin(nil, cmd, args...) }
	d.pipe = d.runStdin
	for _, o := range opts {
		o(d)
	}
	d.lib = ovs.New(ovs.Timeout(10), ovs.Exec(d.exec))
	return d
}

// Bridge returns the bridge's name.
func (d *Driver) Bridge() string { return d.bridge }

const cmdTimeout = 30 * time.Second

// env is the environment of OVS commands: the agent's, with OVS_RUNDIR
// when the driver talks to a private instance.
func (d *Driver) env() []string {
	if d.rundir == "" {
		return nil // inherit
	}
	return append(os.Environ(), "OVS_RUNDIR="+d.rundir)
}

func (d *Driver) runStdin(stdin io.Reader, cmd string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, cmd, args...)
	c.Env = d.env()
	c.Stdin = stdin
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", cmd, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

func (d *Driver) vsctl(args ...string) ([]byte, error) {
	return d.exec("ovs-vsctl", append([]string{"--timeout=10"}, args...)...)
}

// ProbeDatapath returns "system" when the openvswitch kernel datapath
// works on this host, else "netdev". It tries a throw-away bridge of type
// system when the module is loaded: a loaded module proves nothing.
func (d *Driver) ProbeDatapath() string {
	if _, err := os.Stat("/sys/module/openvswitch"); err != nil {
		return DatapathNetdev
	}
	probe := fmt.Sprintf("corral-probe%d", os.Getpid()%10000)
	defer d.vsctl("--if-exists", "del-br", probe)
	if _, err := d.vsctl("add-br", probe, "--", "set", "Bridge", probe, "datapath_type=system"); err != nil {
		return DatapathNetdev
	}
	out, err := d.vsctl("get", "Interface", probe, "ofport")
	if err != nil || strings.TrimSpace(string(out)) == "-1" {
		return DatapathNetdev
	}
	return DatapathSystem
}

// EnsureBridge creates the integration bridge if it is missing, with the
// probed (or configured) datapath type, fail mode secure (no NORMAL flow
// of its own: only Corral's flows forward) and OpenFlow 1.4. An existing
// bridge is never re-created, and its datapath type is left alone; only a
// missing protocol or fail mode is set. It returns whether it created the
// bridge and the bridge's datapath type.
func (d *Driver) EnsureBridge() (created bool, datapath string, err error) {
	bridges, err := d.lib.VSwitch.ListBridges()
	if err != nil {
		return false, "", fmt.Errorf("list bridges: %w", err)
	}
	if !slices.Contains(bridges, d.bridge) {
		dp := d.datapath
		if dp == "" {
			dp = d.ProbeDatapath()
		}
		if _, err := d.vsctl("--may-exist", "add-br", d.bridge, "--", "set", "Bridge", d.bridge,
			"datapath_type="+dp, "fail_mode=secure", "protocols="+strings.Join(protocols, ","),
			"external_ids:corral-managed=true"); err != nil {
			return false, "", fmt.Errorf("create bridge %s: %w", d.bridge, err)
		}
		created = true
	}
	// go-openvswitch's Get.Bridge parses "ovs-vsctl get" output as JSON,
	// which it is not ([OpenFlow10, OpenFlow14]), so read it here.
	proto, err := d.vsctl("get", "Bridge", d.bridge, "protocols")
	if err != nil {
		return created, "", fmt.Errorf("read bridge %s protocols: %w", d.bridge, err)
	}
	if !strings.Contains(string(proto), "OpenFlow14") {
		if err := d.lib.VSwitch.Set.Bridge(d.bridge, ovs.BridgeOptions{Protocols: protocols}); err != nil {
			return created, "", fmt.Errorf("set bridge %s protocols: %w", d.bridge, err)
		}
	}
	if mode, err := d.lib.VSwitch.GetFailMode(d.bridge); err != nil || mode != ovs.FailModeSecure {
		if err := d.lib.VSwitch.SetFailMode(d.bridge, ovs.FailModeSecure); err != nil {
			return created, "", fmt.Errorf("set bridge %s fail mode: %w", d.bridge, err)
		}
	}
	out, err := d.vsctl("get", "Bridge", d.bridge, "datapath_type")
	if err != nil {
		return created, "", fmt.Errorf("read bridge %s datapath type: %w", d.bridge, err)
	}
	datapath = strings.Trim(strings.TrimSpace(string(out)), `"`)
	if datapath == "" {
		datapath = DatapathSystem
	}
	return created, datapath, nil
}

// Interface is an interface on the bridge.
type Interface = network.Interface

// Interfaces lists the interfaces on the bridge, with their ports' tags, in
// one OVSDB read.
func (d *Driver) Interfaces() ([]Interface, error) {
	out, err := d.vsctl("--format=json", "--", "--columns=_uuid,name,ofport,type,external_ids,options", "list", "Interface",
		"--", "--columns=_uuid,name,tag,interfaces", "list", "Port", "--", "--columns=ports", "list", "Bridge", d.bridge)
	if err != nil {
		return nil, fmt.Errorf("list interfaces of %s: %w", d.bridge, err)
	}
	return parseInterfaces(out)
}

// table is one ovs-vsctl --format=json answer.
type jsonTable struct {
	Data     [][]json.RawMessage `json:"data"`
	Headings []string            `json:"headings"`
}

func parseInterfaces(out []byte) ([]Interface, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	var tabs [3]jsonTable
	for i := range tabs {
		if err := dec.Decode(&tabs[i]); err != nil {
			return nil, fmt.Errorf("parse ovs-vsctl list output: %w", err)
		}
	}
	ifaces, ports, bridge := tabs[0], tabs[1], tabs[2]
	if len(bridge.Data) != 1 {
		return nil, errors.New("parse ovs-vsctl list output: bridge not found")
	}
	onBridge := map[string]bool{}
	for _, u := range ovsSet(bridge.Data[0][0]) {
		onBridge[u] = true
	}
	ifaceTag := map[string]int{}
	ifaceOnBridge := map[string]bool{}
	for _, row := range ports.Data {
		uuid := ovsUUID(row[0])
		if !onBridge[uuid] {
			continue
		}
		tag := 0
		_ = json.Unmarshal(row[2], &tag) // an empty set means no tag
		for _, iu := range ovsSet(row[3]) {
			ifaceTag[iu] = tag
			ifaceOnBridge[iu] = true
		}
	}
	var outl []Interface
	for _, row := range ifaces.Data {
		uuid := ovsUUID(row[0])
		if !ifaceOnBridge[uuid] {
			continue
		}
		var it Interface
		_ = json.Unmarshal(row[1], &it.Name)
		if err := json.Unmarshal(row[2], &it.OFPort); err != nil {
			it.OFPort = -1 // not assigned yet
		}
		_ = json.Unmarshal(row[3], &it.Type)
		it.ExternalIDs = ovsMap(row[4])
		it.Options = ovsMap(row[5])
		it.Tag = ifaceTag[uuid]
		outl = append(outl, it)
	}
	slices.SortFunc(outl, func(a, b Interface) int { return strings.Compare(a.Name, b.Name) })
	return outl, nil
}

// ovsUUID decodes ["uuid","…"].
func ovsUUID(raw json.RawMessage) string {
	var v []string
	if json.Unmarshal(raw, &v) == nil && len(v) == 2 {
		return v[1]
	}
	return ""
}

// ovsSet decodes a set of UUIDs: ["uuid","…"] or ["set",[["uuid","…"],…]].
func ovsSet(raw json.RawMessage) []string {
	if u := ovsUUID(raw); u != "" {
		return []string{u}
	}
	var v []json.RawMessage
	if json.Unmarshal(raw, &v) != nil || len(v) != 2 {
		return nil
	}
	var items []json.RawMessage
	_ = json.Unmarshal(v[1], &items)
	var out []string
	for _, it := range items {
		if u := ovsUUID(it); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// ovsMap decodes ["map",[[k,v],…]].
func ovsMap(raw json.RawMessage) map[string]string {
	out := map[string]string{}
	var v []json.RawMessage
	if json.Unmarshal(raw, &v) != nil || len(v) != 2 {
		return out
	}
	var pairs [][2]string
	_ = json.Unmarshal(v[1], &pairs)
	for _, p := range pairs {
		out[p[0]] = p[1]
	}
	return out
}

// SetTag makes port an access port of vlan. It is idempotent.
func (d *Driver) SetTag(port string, vlan int) error {
	if _, err := d.vsctl("set", "Port", port, fmt.Sprintf("tag=%d", vlan)); err != nil {
		return fmt.Errorf("tag port %s with VLAN %d: %w", port, vlan, err)
	}
	return nil
}

// TunnelSpec is a VXLAN port to a remote host for one VNI.
type TunnelSpec = network.TunnelSpec

// EnsureTunnel creates or updates a VXLAN tunnel port in one transaction.
// It marks the interface with external_ids:corral-tunnel so stale tunnels
// can be found and removed.
func (d *Driver) EnsureTunnel(t TunnelSpec) error {
	args := []string{"--may-exist", "add-port", d.bridge, t.Name, "--", "set", "Interface", t.Name, "type=vxlan",
		"options:remote_ip=" + t.RemoteIP, fmt.Sprintf("options:key=%d", t.VNI), "external_ids:corral-tunnel=true"}
	if t.LocalIP != "" {
		args = append(args, "options:local_ip="+t.LocalIP)
	}
	args = append(args, "--", "set", "Port", t.Name, fmt.Sprintf("tag=%d", t.VLAN))
	if _, err := d.vsctl(args...); err != nil {
		return fmt.Errorf("ensure tunnel %s to %s VNI %d: %w", t.Name, t.RemoteIP, t.VNI, err)
	}
	return nil
}

// DeletePort removes a port from the bridge.
func (d *Driver) DeletePort(name string) error {
	if err := d.lib.VSwitch.DeletePort(d.bridge, name); err != nil {
		return fmt.Errorf("delete port %s: %w", name, err)
	}
	return nil
}

// ExternalIDs returns the bridge's external_ids, where the agent keeps the
// local VLANs of VXLAN networks.
func (d *Driver) ExternalIDs() (map[string]string, error) {
	out, err := d.vsctl("--format=json", "--columns=external_ids", "list", "Bridge", d.bridge)
	if err != nil {
		return nil, fmt.Errorf("read external_ids of %s: %w", d.bridge, err)
	}
	var t jsonTable
	if err := json.Unmarshal(out, &t); err != nil || len(t.Data) != 1 {
		return nil, fmt.Errorf("parse external_ids of %s: %v", d.bridge, err)
	}
	return ovsMap(t.Data[0][0]), nil
}

// SetExternalIDs sets keys of the bridge's external_ids (others stay).
func (d *Driver) SetExternalIDs(kv map[string]string) error {
	if len(kv) == 0 {
		return nil
	}
	args := []string{"set", "Bridge", d.bridge}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, fmt.Sprintf("external_ids:%s=%s", k, kv[k]))
	}
	if _, err := d.vsctl(args...); err != nil {
		return fmt.Errorf("set external_ids of %s: %w", d.bridge, err)
	}
	return nil
}

var cookieRE = regexp.MustCompile(`cookie=(0x[0-9a-f]+)`)

// InstalledCookies returns the cookies of Corral's flows on the bridge
// (one per flow).
func (d *Driver) InstalledCookies() ([]uint64, error) {
	out, err := d.exec("ovs-ofctl", "-O", "OpenFlow14", "--no-stats", "dump-flows", d.bridge,
		fmt.Sprintf("cookie=%#x/%#x", flows.CookieMark, flows.CookieMarkMask))
	if err != nil {
		return nil, fmt.Errorf("dump flows of %s: %w", d.bridge, err)
	}
	var cookies []uint64
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := cookieRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		c, err := strconv.ParseUint(m[1], 0, 64)
		if err != nil {
			return nil, fmt.Errorf("dump flows of %s: bad cookie %q", d.bridge, m[1])
		}
		cookies = append(cookies, c)
	}
	return cookies, sc.Err()
}

// Apply adds flows and deletes the flows with the given cookies. With
// deletions, all of it goes in one OpenFlow bundle, so it takes effect at
// once or not at all. Additions alone go without a bundle (a bundle commit
// costs ~40 ms on the userspace datapath), in an order that is safe at
// every step: table 0 last, because a port's classify flow is what lets
// its traffic in, and until then the pipeline drops it. An added flow with
// the match and priority of an installed one replaces it in place (new
// actions and cookie, no gap).
func (d *Driver) Apply(add []flows.Flow, del []uint64) error {
	if len(add) == 0 && len(del) == 0 {
		return nil
	}
	add = slices.Clone(add)
	slices.SortStableFunc(add, func(x, y flows.Flow) int {
		return boolInt(x.Table == flows.TableClassify) - boolInt(y.Table == flows.TableClassify)
	})
	var b bytes.Buffer
	for _, f := range add {
		if len(del) > 0 {
			b.WriteString("add ")
		}
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	for _, c := range del {
		fmt.Fprintf(&b, "delete cookie=%#x/-1\n", c)
	}
	args := []string{"-O", "OpenFlow14", "add-flows", d.bridge, "-"}
	if len(del) > 0 {
		args = []string{"-O", "OpenFlow14", "--bundle", "add-flows", d.bridge, "-"}
	}
	if _, err := d.pipe(&b, "ovs-ofctl", args...); err != nil {
		return fmt.Errorf("apply %d added and %d deleted flows to %s: %w", len(add), len(del), d.bridge, err)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Changes signals (coalesced) whenever an interface is added, removed or
// changed in OVSDB, so that a guest NIC plugged after its port was bound
// gets its flows at once rather than at the next poll. It runs
// ovsdb-client monitor until ctx ends, restarting it if it exits.
func (d *Driver) Changes(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		for ctx.Err() == nil {
			cmd := exec.CommandContext(ctx, "ovsdb-client", "monitor", "Open_vSwitch", "Interface", "name,ofport,external_ids", "--format=json")
			cmd.Env = d.env()
			out, err := cmd.StdoutPipe()
			if err == nil && cmd.Start() == nil {
				sc := bufio.NewScanner(out)
				sc.Buffer(make([]byte, 1<<20), 16<<20)
				for sc.Scan() {
					select {
					case ch <- struct{}{}:
					default:
					}
				}
				cmd.Wait()
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return ch
}
