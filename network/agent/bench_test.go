package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/network"
	"github.com/corral-cloud/corral/network/agent"
	"github.com/corral-cloud/corral/network/flows"
	"github.com/corral-cloud/corral/network/ovs"
)

// BenchmarkPortCreateToFlows measures, per port, the time from the API
// call until the port's flows are on the bridge, through real corrald, the
// agent's watch and the reconciler:
//
//   - bind: the port exists and its interface is plugged (as when a guest
//     was defined before its port was bound); the timed call binds it to
//     the host (PATCH host_id). This is the control plane and agent path.
//   - create-and-plug: the timed call creates the port bound to the host,
//     and the interface is plugged right after it answers (as the compute
//     agent would); this adds Open vSwitch's own port creation and a
//     second reconcile.
//
// Every port is in the project's default group, so each new port also
// changes the other ports' flows (their "ingress from members" rule).
// It reports p50 and p95.
//
//	CORRAL_TEST_OVS=1 go test -run '^$' -bench PortCreateToFlows -benchtime 50x ./network/agent/
func BenchmarkPortCreateToFlows(b *testing.B) {
	for _, mode := range []string{"bind", "create-and-plug"} {
		b.Run(mode, func(b *testing.B) {
			r := newRig(b)
			r.network("blue", 501, "10.94.0.0/20")
			// Each reconcile signals; the port's cookie is looked for after
			// each one (polling OVS meanwhile would compete with it).
			done := make(chan struct{}, 100)
			r.runReconciler(func(agent.Result) { done <- struct{}{} })
			ctx := context.Background()
			var lat []time.Duration
			plug := func(i int, id string) {
				name := fmt.Sprintf("%sp%d", r.prefix, i)
				if out, err := exec.Command("ovs-vsctl", "add-port", r.bridge, name, "--", "set", "Interface", name, "type=internal",
					"external_ids:iface-id="+id).CombinedOutput(); err != nil {
					b.Fatalf("plug %s: %v %s", name, err, out)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var p types.Port
				var start time.Time
				if mode == "bind" {
					b.StopTimer()
					must(b, create(ctx, r.api, "/v1/ports", types.PortCreate{Network: "blue", Project: "games"}, &p))
					plug(i, p.ID)
					time.Sleep(300 * time.Millisecond)
					for len(done) > 0 {
						<-done // the reconciles of the create and the plug
					}
					b.StartTimer()
					start = time.Now()
					host := r.hostID
					_, err := r.api.Do(ctx, client.Request{Method: "PATCH", Path: "/v1/ports/" + p.ID, Body: types.PortUpdate{Host: &host}}, &p)
					must(b, err)
				} else {
					start = time.Now()
					must(b, create(ctx, r.api, "/v1/ports", types.PortCreate{Network: "blue", Project: "games", Host: r.hostID}, &p))
					plug(i, p.ID)
				}
				want := flows.PortCookie(p.ID)
				for installed := false; !installed; {
					select {
					case <-done:
					case <-time.After(10 * time.Second):
						b.Fatalf("port %s: no flows after 10 s", p.ID)
					}
					at := time.Now()
					cookies, err := r.driver.InstalledCookies()
					must(b, err)
					if installed = slices.ContainsFunc(cookies, func(c uint64) bool { return c&flows.CookiePortMask == want }); installed {
						lat = append(lat, at.Sub(start))
					}
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[(len(lat)*95+99)/100-1].Microseconds())/1000, "p95-ms")
		})
	}
}

// fakeGuests is the real bridge with 500 guest interfaces that exist only
// in its answers: flows naming absent port numbers install normally, so
// the flow work is real without 500 veths.
type fakeGuests struct {
	*ovs.Driver
	ifaces []network.Interface
}

func (f *fakeGuests) Interfaces() ([]network.Interface, error) { return f.ifaces, nil }
func (f *fakeGuests) SetTag(string, int) error                 { return nil }

// BenchmarkReconcile500Ports2000Rules measures reconciles of a host with
// 500 ports in 50 security groups of 40 rules each (2,000 rules): the
// first one (an empty bridge, every flow added), a restart (nothing to
// change), and one rule changed in one group (its 10 ports' flows).
//
//	CORRAL_TEST_OVS=1 go test -run '^$' -bench Reconcile500 -benchtime 3x ./network/agent/
func BenchmarkReconcile500Ports2000Rules(b *testing.B) {
	r := newRig(b)
	sw := &fakeGuests{Driver: r.driver}
	st := types.HostNetwork{HostID: "host-bench", Version: "v1"}
	groups := make([][]types.ResolvedRule, 50)
	for g := range groups {
		for j := 0; j < 40; j++ {
			groups[g] = append(groups[g], types.ResolvedRule{Direction: "ingress", Protocol: "tcp", PortRangeMin: int64(1000 + j),
				PortRangeMax: int64(1000 + j), RemoteCIDRs: []string{fmt.Sprintf("10.%d.0.0/16", g)}})
		}
	}
	for i := 0; i < 500; i++ {
		id := fmt.Sprintf("port-bench%05d", i)
		ip := netip.AddrFrom4([4]byte{10, 200, byte(i / 250), byte(i%250 + 2)})
		st.Ports = append(st.Ports, types.BoundPort{ID: id, NetworkID: "net-bench", SegmentType: "vlan", SegmentID: 600,
			MACAddress: fmt.Sprintf("02:c0:00:00:%02x:%02x", i/256, i%256), IPs: []string{ip.String() + "/16"}, Rules: groups[i%50]})
		sw.ifaces = append(sw.ifaces, network.Interface{Name: fmt.Sprintf("vnet%d", i), OFPort: 100 + i, Tag: 600,
			ExternalIDs: map[string]string{"iface-id": id}})
	}
	changed := st
	changed.Version = "v2"
	changed.Ports = slices.Clone(st.Ports)
	rules := slices.Clone(groups[7])
	rules[0].PortRangeMin, rules[0].PortRangeMax = 2222, 2222
	for i := 7; i < 500; i += 50 {
		changed.Ports[i].Rules = rules
	}
	rec := &agent.Reconciler{Switch: sw, HostID: st.HostID}
	var first, noop, one time.Duration
	var res agent.Result
	for i := 0; i < b.N; i++ {
		must(b, exec.Command("ovs-ofctl", "del-flows", r.bridge).Run()) // start from an empty table
		var err error
		res, err = rec.ReconcileOnce(st)
		must(b, err)
		first += res.Duration
		res, err = rec.ReconcileOnce(st)
		must(b, err)
		if res.Added+res.Deleted != 0 {
			b.Fatalf("a second reconcile changed flows: %+v", res)
		}
		noop += res.Duration
		res, err = rec.ReconcileOnce(changed)
		must(b, err)
		one += res.Duration
	}
	b.ReportMetric(float64(res.Flows), "flows")
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "full-ms")
	b.ReportMetric(float64(noop.Milliseconds())/float64(b.N), "restart-ms")
	b.ReportMetric(float64(one.Milliseconds())/float64(b.N), "one-rule-ms")
}
