package ovs

import (
	"io"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/network"
	"github.com/corral-cloud/corral/network/flows"
	"github.com/google/go-cmp/cmp"
)

// fakeOVS records commands and answers from a table; go-openvswitch runs
// over it too.
type fakeOVS struct {
	calls   []string
	stdin   []string
	answers map[string]string
}

func (f *fakeOVS) exec(cmd string, args ...string) ([]byte, error) {
	line := cmd + " " + strings.Join(args, " ")
	f.calls = append(f.calls, line)
	for prefix, out := range f.answers {
		if strings.HasPrefix(line, prefix) {
			return []byte(out), nil
		}
	}
	return nil, nil
}

func (f *fakeOVS) pipe(r io.Reader, cmd string, args ...string) ([]byte, error) {
	b, _ := io.ReadAll(r)
	f.stdin = append(f.stdin, string(b))
	return f.exec(cmd, args...)
}

func TestEnsureBridgeCreatesOnce(t *testing.T) {
	f := &fakeOVS{answers: map[string]string{
		"ovs-vsctl --timeout=10 list-br":                         "br-other\n",
		"ovs-vsctl --timeout=10 get Bridge br-int protocols":     `["OpenFlow10", "OpenFlow13", "OpenFlow14", "OpenFlow15"]`,
		"ovs-vsctl --timeout=10 get-fail-mode br-int":            "secure\n",
		"ovs-vsctl --timeout=10 get Bridge br-int datapath_type": "netdev\n",
	}}
	d := New("br-int", WithExec(f.exec, f.pipe), WithDatapath(DatapathNetdev))
	created, dp, err := d.EnsureBridge()
	if err != nil || !created || dp != DatapathNetdev {
		t.Fatalf("EnsureBridge = %v %q %v", created, dp, err)
	}
	want := "ovs-vsctl --timeout=10 --may-exist add-br br-int -- set Bridge br-int datapath_type=netdev fail_mode=secure " +
		"protocols=OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15 external_ids:corral-managed=true"
	if f.calls[1] != want {
		t.Errorf("create = %q\nwant     %q", f.calls[1], want)
	}
	// An existing bridge is left alone: no add-br, no datapath change.
	f.calls = nil
	f.answers["ovs-vsctl --timeout=10 list-br"] = "br-int\n"
	if created, _, err := d.EnsureBridge(); err != nil || created {
		t.Fatalf("second EnsureBridge = %v %v", created, err)
	}
	for _, c := range f.calls {
		if strings.Contains(c, "add-br") || strings.Contains(c, "datapath_type=") || strings.Contains(c, "set Bridge") {
			t.Errorf("existing bridge touched: %s", c)
		}
	}
}

func TestApply(t *testing.T) {
	f := &fakeOVS{}
	d := New("br-int", WithExec(f.exec, f.pipe))
	fl := []flows.Flow{{Table: 0, Priority: 100, Match: "in_port=3", Actions: "resubmit(,10)", Cookie: 0xc0aa000100000001},
		{Table: 10, Priority: 100, Match: "ip,in_port=3", Actions: "drop", Cookie: 0xc0aa000100000002}}
	if err := d.Apply(fl, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(fl[:1], []uint64{0xc0aa000100000009}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ovs-ofctl -O OpenFlow14 add-flows br-int -",
		"ovs-ofctl -O OpenFlow14 --bundle add-flows br-int -",
	}
	if diff := cmp.Diff(want, f.calls); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	wantIn := []string{
		// Additions alone: table 0 (what lets a port's traffic in) last.
		"table=10,priority=100,cookie=0xc0aa000100000002,ip,in_port=3,actions=drop\n" +
			"table=0,priority=100,cookie=0xc0aa000100000001,in_port=3,actions=resubmit(,10)\n",
		"add table=0,priority=100,cookie=0xc0aa000100000001,in_port=3,actions=resubmit(,10)\n" +
			"delete cookie=0xc0aa000100000009/-1\n",
	}
	if diff := cmp.Diff(wantIn, f.stdin); diff != "" {
		t.Errorf("flows sent (-want +got):\n%s", diff)
	}
}

// A trimmed answer of the real ovs-vsctl (OVS 3.1) to Interfaces' query:
// br-int holds vnet0 (tag 100) and a tunnel; br-other's port is ignored.
const listAnswer = `{"data":[[["uuid","i1"],"vnet0",3,"",["map",[["attached-mac","02:c0:00:00:00:01"],["iface-id","port-1"]]],["map",[]]],[["uuid","i2"],"cvx1",4,"vxlan",["map",[["corral-tunnel","true"]]],["map",[["key","5001"],["remote_ip","192.0.2.2"]]]],[["uuid","i3"],"other0",7,"",["map",[]],["map",[]]],[["uuid","i4"],"new0",["set",[]],"",["map",[["iface-id","port-2"]]],["map",[]]]],"headings":["_uuid","name","ofport","type","external_ids","options"]}
{"data":[[["uuid","p1"],"vnet0",100,["uuid","i1"]],[["uuid","p2"],"cvx1",4094,["set",[["uuid","i2"]]]],[["uuid","p3"],"other0",["set",[]],["uuid","i3"]],[["uuid","p4"],"new0",["set",[]],["uuid","i4"]]],"headings":["_uuid","name","tag","interfaces"]}
{"data":[[["set",[["uuid","p1"],["uuid","p2"],["uuid","p4"]]]]],"headings":["ports"]}
`

func TestParseInterfaces(t *testing.T) {
	got, err := parseInterfaces([]byte(listAnswer))
	if err != nil {
		t.Fatal(err)
	}
	want := []network.Interface{
		{Name: "cvx1", OFPort: 4, Type: "vxlan", ExternalIDs: map[string]string{"corral-tunnel": "true"},
			Options: map[string]string{"key": "5001", "remote_ip": "192.0.2.2"}, Tag: 4094},
		{Name: "new0", OFPort: -1, ExternalIDs: map[string]string{"iface-id": "port-2"}, Options: map[string]string{}},
		{Name: "vnet0", OFPort: 3, ExternalIDs: map[string]string{"attached-mac": "02:c0:00:00:00:01", "iface-id": "port-1"},
			Options: map[string]string{}, Tag: 100},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("interfaces (-want +got):\n%s", diff)
	}
}
