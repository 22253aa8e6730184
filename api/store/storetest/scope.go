package storetest

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// testProjectScope: a context of store.WithProject sees its project's
// objects, shared networks and their subnets; another project's object is
// ErrNotFound with the text of a missing one, for reads, updates and
// deletes; names resolve within the project.
func testProjectScope(t *testing.T, s *store.Store) {
	a := must[types.Project](t)(s.CreateProject(ctx, types.ProjectCreate{Name: "alpha"}))
	b := must[types.Project](t)(s.CreateProject(ctx, types.ProjectCreate{Name: "beta"}))
	nets := map[string]types.Network{}
	subnets := map[string]types.Subnet{}
	for i, n := range []struct{ name, project string }{{"shared", ""}, {"a-net", a.ID}, {"b-net", b.ID}} {
		nets[n.name] = must[types.Network](t)(s.CreateNetwork(ctx, types.Network{Name: n.name, ProjectID: n.project,
			SegmentType: types.SegmentVLAN, SegmentID: int64(10 + i)}))
		pfx := fmt.Sprintf("10.%d.0", 10+i)
		subnets[n.name] = must[types.Subnet](t)(s.CreateSubnet(ctx, types.Subnet{Name: n.name + "-v4", NetworkID: nets[n.name].ID,
			CIDR: pfx + ".0/24", GatewayIP: pfx + ".1", AllocationPools: []types.IPRange{{Start: pfx + ".2", End: pfx + ".9"}}}))
	}
	webA := must[types.SecurityGroup](t)(s.CreateSecurityGroup(ctx, types.SecurityGroup{Name: "web", ProjectID: a.ID}))
	webB := must[types.SecurityGroup](t)(s.CreateSecurityGroup(ctx, types.SecurityGroup{Name: "web", ProjectID: b.ID}))
	inA := store.WithProject(ctx, a.ID)

	// Another project's object and a missing one: one error, one text.
	for _, tc := range []struct {
		name, ref string
		try       func(ref string) error
	}{
		{"network", nets["b-net"].ID, func(r string) error { _, err := s.GetNetwork(inA, r); return err }},
		{"network by name", "b-net", func(r string) error { _, err := s.GetNetwork(inA, r); return err }},
		{"subnet", subnets["b-net"].ID, func(r string) error { _, err := s.GetSubnet(inA, r); return err }},
		{"security group", webB.ID, func(r string) error { _, err := s.GetSecurityGroup(inA, r); return err }},
		{"project", b.ID, func(r string) error { _, err := s.GetProject(inA, r); return err }},
		{"project by name", "beta", func(r string) error { _, err := s.GetProject(inA, r); return err }},
		{"update", webB.ID, func(r string) error {
			d := "x"
			_, err := s.UpdateSecurityGroup(inA, r, 0, types.SecurityGroupUpdate{Description: &d})
			return err
		}},
		{"delete", webB.ID, func(r string) error { return s.DeleteSecurityGroup(inA, r, 0) }},
	} {
		missing := tc.ref[:len(tc.ref)-2] + "zz"
		eb, em := tc.try(tc.ref), tc.try(missing)
		if !errors.Is(eb, store.ErrNotFound) || !errors.Is(em, store.ErrNotFound) {
			t.Errorf("%s: beta's = %v, missing = %v; want both not found", tc.name, eb, em)
			continue
		}
		if b, m := strings.ReplaceAll(eb.Error(), tc.ref, "<ref>"), strings.ReplaceAll(em.Error(), missing, "<ref>"); b != m {
			t.Errorf("%s: beta's says %q, a missing one %q", tc.name, eb, em)
		}
	}
	if _, err := s.GetSecurityGroup(ctx, webB.ID); err != nil {
		t.Errorf("beta's group after alpha's update and delete: %v", err)
	}

	// Names resolve within the project; unconfined, "web" is ambiguous.
	if g, err := s.GetSecurityGroup(inA, "web"); err != nil || g.ID != webA.ID {
		t.Errorf("alpha's web = %v %v, want %s", g.ID, err, webA.ID)
	}
	if _, err := s.GetSecurityGroup(ctx, "web"); !errors.Is(err, store.ErrAmbiguous) {
		t.Errorf("unconfined web = %v, want ambiguous", err)
	}

	// Lists: shared networks and alpha's, and their subnets.
	nl := must[types.List[types.Network]](t)(s.ListNetworks(inA, store.ListOptions{Limit: 10}))
	sl := must[types.List[types.Subnet]](t)(s.ListSubnets(inA, store.ListOptions{Limit: 10}))
	gl := must[types.List[types.SecurityGroup]](t)(s.ListSecurityGroups(inA, store.ListOptions{Limit: 10}))
	var got []string
	for _, n := range nl.Items {
		got = append(got, n.Name)
	}
	for _, n := range sl.Items {
		got = append(got, n.Name)
	}
	for _, g := range gl.Items {
		got = append(got, g.ID)
	}
	sort.Strings(got)
	want := []string{"a-net", "a-net-v4", "shared", "shared-v4", webA.ID}
	sort.Strings(want)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("alpha's lists (-want +got):\n%s", d)
	}
}
