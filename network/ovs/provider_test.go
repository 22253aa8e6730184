package ovs

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEnsurePatch: both ends in one transaction, with their access tags
// and marks; a peer left on another uplink moves in the same transaction;
// a peer in place is not deleted.
func TestEnsurePatch(t *testing.T) {
	spec := PatchSpec{Name: "cpi1", Peer: "cpo1", Uplink: "br-ex", Physnet: "datacentre", LocalVLAN: 4093, ProviderVLAN: 300}
	both := "--may-exist add-port br-int cpi1 -- set Interface cpi1 type=patch options:peer=cpo1 external_ids:corral-patch=true " +
		"external_ids:corral-physnet=datacentre -- set Port cpi1 tag=4093 -- --may-exist add-port br-ex cpo1 -- set Interface cpo1 " +
		"type=patch options:peer=cpi1 external_ids:corral-patch=true external_ids:corral-physnet=datacentre -- set Port cpo1 tag=300"
	for _, tc := range []struct {
		name, peerOn, want string
	}{
		{"new", "", "ovs-vsctl --timeout=10 " + both},
		{"in place", "br-ex\n", "ovs-vsctl --timeout=10 " + both},
		{"moved uplink", "br-old\n", "ovs-vsctl --timeout=10 --if-exists del-port br-old cpo1 -- " + both},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeOVS{answers: map[string]string{}}
			if tc.peerOn != "" {
				f.answers["ovs-vsctl --timeout=10 port-to-br cpo1"] = tc.peerOn
			}
			d := New("br-int", WithExec(f.exec, f.pipe))
			if err := d.EnsurePatch(spec); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, f.calls[len(f.calls)-1]); diff != "" {
				t.Errorf("transaction (-want +got):\n%s", diff)
			}
		})
	}
	// Flat: the uplink end is an access port of VLAN 0 (untagged).
	f := &fakeOVS{}
	spec.ProviderVLAN = 0
	if err := New("br-int", WithExec(f.exec, f.pipe)).EnsurePatch(spec); err != nil {
		t.Fatal(err)
	}
	if last := f.calls[len(f.calls)-1]; !strings.HasSuffix(last, "set Port cpo1 tag=0") {
		t.Errorf("flat patch = %s", last)
	}
	// DeletePatch removes both ends at once, tolerating missing ones.
	f = &fakeOVS{}
	if err := New("br-int", WithExec(f.exec, f.pipe)).DeletePatch("cpi1", "cpo1"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ovs-vsctl --timeout=10 --if-exists del-port br-int cpi1 -- --if-exists del-port cpo1"}, f.calls); diff != "" {
		t.Errorf("delete (-want +got):\n%s", diff)
	}
}
