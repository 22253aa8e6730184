package compute

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/corral-cloud/corral/api/types"
	"github.com/digitalocean/go-openvswitch/ovs"
	"github.com/vishvananda/netlink"
)

// NetQoS applies a guest NIC's bandwidth limits.
type NetQoS interface {
	// Apply makes the limits on tap true, changing nothing that already
	// is: inKbps shapes traffic to the guest, outKbps polices traffic
	// from it; 0 lifts a limit.
	Apply(tap string, inKbps, outKbps int64) ([]types.AppliedQoS, error)
	// Sweep removes the policing of ports that are gone; live are the
	// taps of running guests.
	Sweep(live []string) error
	// Bind names tap's switch port after the guest's port, so that the
	// network agent finds it (external_ids:iface-id).
	Bind(tap, portID string) error
}

// Bind implements NetQoS.
func (q *OVSQoS) Bind(tap, portID string) error {
	b, err := q.vsctl("--if-exists", "get", "Interface", tap, "external_ids:iface-id")
	if err == nil && strings.Trim(strings.TrimSpace(string(b)), `"`) == portID {
		return nil
	}
	_, err = q.vsctl("set", "Interface", tap, "external_ids:iface-id="+portID)
	return err
}

// Corral's flows on the integration bridge carry this cookie in the top
// 16 bits; the low bits hold the guest port's OpenFlow number.
const (
	qosCookie     = uint64(0xc0a1) << 48
	qosCookieMask = uint64(0xffff) << 48
	// Meter IDs are meterBase + the port's OpenFlow number: one per port,
	// clear of meters other components make.
	meterBase = 1 << 20
)

// OVSQoS is the NetQoS of a host whose guests plug into an Open vSwitch
// bridge. Traffic to a guest is shaped by a tbf qdisc on its tap (tc
// through netlink). Traffic from a guest is policed by an OpenFlow meter:
// the kernel's tc police action and OVS ingress policing are absent or
// silently ineffective on some hosts (no act_police, userspace datapath),
// while meters work on both datapaths. The meter flow composes with any
// other pipeline on the bridge: it marks reg6 bit 0, meters, and resubmits
// to table 0, where it no longer matches.
type OVSQoS struct {
	Bridge string
	// OFCtl runs ovs-ofctl (default: the binary on PATH).
	OFCtl func(args ...string) ([]byte, error)
	// VSCtl runs ovs-vsctl (default: the binary on PATH).
	VSCtl func(args ...string) ([]byte, error)
}

func run(name string) func(args ...string) ([]byte, error) {
	return func(args ...string) ([]byte, error) {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return out, nil
	}
}

func (q *OVSQoS) ofctl(args ...string) ([]byte, error) {
	if q.OFCtl == nil {
		q.OFCtl = run("ovs-ofctl")
	}
	return q.OFCtl(append([]string{"-O", "OpenFlow13"}, args...)...)
}

func (q *OVSQoS) vsctl(args ...string) ([]byte, error) {
	if q.VSCtl == nil {
		q.VSCtl = run("ovs-vsctl")
	}
	return q.VSCtl(append([]string{"--timeout=10"}, args...)...)
}

// Apply implements NetQoS.
func (q *OVSQoS) Apply(tap string, inKbps, outKbps int64) ([]types.AppliedQoS, error) {
	var out []types.AppliedQoS
	if err := shapeTo(tap, inKbps); err != nil {
		return out, err
	}
	if inKbps > 0 {
		out = append(out, types.AppliedQoS{Limit: "net_in_kbps", Value: inKbps, Mechanism: "tc-tbf " + tap})
	}
	ofport, err := q.ofport(tap)
	if err != nil {
		return out, err
	}
	meter := meterBase + ofport
	if err := q.police(ofport, meter, outKbps); err != nil {
		return out, err
	}
	if outKbps > 0 {
		out = append(out, types.AppliedQoS{Limit: "net_out_kbps", Value: outKbps, Mechanism: fmt.Sprintf("ovs-meter %d", meter)})
	}
	return out, nil
}

// shapeTo sets (or removes) the tbf root qdisc on tap.
func shapeTo(tap string, kbps int64) error {
	link, err := netlink.LinkByName(tap)
	if err != nil {
		return fmt.Errorf("tap %s: %w", tap, err)
	}
	qds, err := netlink.QdiscList(link)
	if err != nil {
		return fmt.Errorf("list qdiscs of %s: %w", tap, err)
	}
	var cur *netlink.Tbf
	for _, qd := range qds {
		if t, ok := qd.(*netlink.Tbf); ok && t.Parent == netlink.HANDLE_ROOT {
			cur = t
		}
	}
	rate := uint64(kbps) * 1000 / 8 // bytes per second
	switch {
	case kbps <= 0 && cur == nil:
		return nil
	case kbps <= 0:
		if err := netlink.QdiscDel(cur); err != nil {
			return fmt.Errorf("remove shaping of %s: %w", tap, err)
		}
		return nil
	case cur != nil && cur.Rate == rate:
		return nil // already so: leave the guest's traffic alone
	}
	burst := uint32(max(rate/100, 4096))
	tbf := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       rate,
		Buffer:     netlink.Xmittime(rate, burst),
		// Queue up to 400 ms of traffic, like "latency 400ms".
		Limit: uint32(rate*4/10) + burst,
	}
	if err := netlink.QdiscReplace(tbf); err != nil {
		return fmt.Errorf("shape traffic to %s at %d kbit/s: %w", tap, kbps, err)
	}
	return nil
}

// ofport returns the OpenFlow port number of an interface on the bridge.
func (q *OVSQoS) ofport(iface string) (int, error) {
	b, err := q.vsctl("get", "Interface", iface, "ofport")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("interface %s has no OpenFlow port yet (%q)", iface, strings.TrimSpace(string(b)))
	}
	return n, nil
}

var (
	meterRE  = regexp.MustCompile(`meter=(\d+)\s+kbps.*?rate=(\d+)`)
	inPortRE = regexp.MustCompile(`in_port=(\d+)`)
)

// meters returns Corral's meters on the bridge: ID → rate in kbit/s.
func (q *OVSQoS) meters() (map[int]int64, error) {
	b, err := q.ofctl("dump-meters", q.Bridge)
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	flat := strings.ReplaceAll(string(b), "\n", " ")
	for _, part := range strings.Split(flat, "meter=")[1:] {
		m := meterRE.FindStringSubmatch("meter=" + part)
		if m == nil {
			continue
		}
		id, _ := strconv.Atoi(m[1])
		rate, _ := strconv.ParseInt(m[2], 10, 64)
		if id >= meterBase {
			out[id] = rate
		}
	}
	return out, nil
}

func qosFlowMatch(ofport int) string {
	return fmt.Sprintf("table=0,priority=65000,in_port=%d,reg6=0/0x1", ofport)
}

// police makes the meter and flow of one port true.
func (q *OVSQoS) police(ofport, meter int, kbps int64) error {
	ms, err := q.meters()
	if err != nil {
		return err
	}
	cookie := fmt.Sprintf("0x%x", qosCookie|uint64(ofport))
	flows, err := q.ofctl("dump-flows", "--no-stats", q.Bridge, "cookie="+cookie+"/-1")
	if err != nil {
		return err
	}
	hasFlow := strings.Contains(string(flows), fmt.Sprintf("meter:%d", meter))
	if kbps <= 0 {
		if hasFlow {
			if _, err := q.ofctl("--strict", "del-flows", q.Bridge, qosFlowMatch(ofport)); err != nil {
				return err
			}
		}
		if _, ok := ms[meter]; ok {
			_, err = q.ofctl("del-meter", q.Bridge, fmt.Sprintf("meter=%d", meter))
		}
		return err
	}
	// A drop band with 200 ms of burst, so TCP settles near the rate.
	spec := fmt.Sprintf("meter=%d,kbps,burst,band=type=drop,rate=%d,burst_size=%d", meter, kbps, max(kbps/5, 1000))
	switch rate, ok := ms[meter]; {
	case !ok:
		_, err = q.ofctl("add-meter", q.Bridge, spec)
	case rate != kbps:
		_, err = q.ofctl("mod-meter", q.Bridge, spec)
	}
	if err != nil {
		return err
	}
	if hasFlow {
		return nil
	}
	_, err = q.ofctl("add-flow", q.Bridge, fmt.Sprintf("cookie=%s,%s,actions=meter:%d,load:1->NXM_NX_REG6[0],resubmit(,0)",
		cookie, qosFlowMatch(ofport), meter))
	return err
}

// Sweep implements NetQoS: flows and meters of ports that are no longer
// among the live taps go.
func (q *OVSQoS) Sweep(live []string) error {
	keep := map[int]bool{}
	for _, tap := range live {
		if n, err := q.ofport(tap); err == nil {
			keep[n] = true
		}
	}
	b, err := q.ofctl("dump-flows", "--no-stats", q.Bridge, fmt.Sprintf("cookie=0x%x/0x%x", qosCookie, qosCookieMask))
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		m := inPortRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		if !keep[n] {
			if _, err := q.ofctl("--strict", "del-flows", q.Bridge, qosFlowMatch(n)); err != nil {
				return err
			}
		}
	}
	ms, err := q.meters()
	if err != nil {
		return err
	}
	for id := range ms {
		if !keep[id-meterBase] {
			if _, err := q.ofctl("del-meter", q.Bridge, fmt.Sprintf("meter=%d", id)); err != nil {
				return err
			}
		}
	}
	return nil
}

// EnsureBridge creates the integration bridge if it is missing, with the
// datapath type given ("system" where the openvswitch kernel module is
// loaded, "netdev" for the userspace datapath), and brings it up. An
// existing bridge is left as it is: re-creating it would cut every guest
// off.
func EnsureBridge(name, datapath string) error {
	c := ovs.New(ovs.Timeout(10))
	brs, err := c.VSwitch.ListBridges()
	if err != nil {
		return fmt.Errorf("list OVS bridges (is ovs-vswitchd running?): %w", err)
	}
	for _, b := range brs {
		if b == name {
			return nil
		}
	}
	if err := c.VSwitch.AddBridge(name); err != nil {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	if _, err := run("ovs-vsctl")("set", "bridge", name, "datapath_type="+datapath,
		"protocols=OpenFlow10,OpenFlow13"); err != nil {
		return err
	}
	if l, err := netlink.LinkByName(name); err == nil {
		netlink.LinkSetUp(l)
	}
	return nil
}

// DatapathType returns "system" when the openvswitch kernel module is
// loaded, else "netdev" (the userspace datapath).
func DatapathType() string {
	if _, err := os.Stat("/sys/module/openvswitch"); err == nil {
		return "system"
	}
	return "netdev"
}
