package server

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
	"github.com/corral-cloud/corral/baremetal/fake"
)

// nodeEnv is the API with bare metal wired to a fake BMC driver and a
// fake provisioning network; tests step the conductor by hand.
type nodeEnv struct {
	*env
	keys *baremetal.Keyring
	bmcs *fake.Driver
	cond *baremetal.Conductor
}

func newNodeEnv(t *testing.T) *nodeEnv {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{SQLitePath: filepath.Join(t.TempDir(), "corral.db")})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := baremetal.NewKeyring([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	ne := &nodeEnv{keys: keys, bmcs: fake.NewDriver()}
	ne.cond = baremetal.NewConductor(baremetal.ConductorConfig{ID: "api-test"}, st, ne.bmcs, &fake.Provisioner{}, keys)
	e := &env{t: t, store: st, now: time.Now()}
	e.srv, err = New(Config{Store: st, ImageDir: filepath.Join(t.TempDir(), "images"), MaxBodyBytes: 64 << 10, MaxImageBytes: 1 << 20,
		Now: e.clock, Baremetal: BaremetalConfig{Keyring: keys, Conductor: ne.cond}})
	if err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(e.srv.Handler())
	t.Cleanup(func() { e.http.Close(); st.Close() })
	if _, e.admin, err = st.CreateToken(context.Background(), types.Token{Name: "admin", Role: types.RoleAdmin}, nil); err != nil {
		t.Fatal(err)
	}
	ne.env = e
	e.must(201, "POST", "/v1/regions", types.RegionCreate{Name: "dc1"}, nil)
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, nil)
	e.must(201, "POST", "/v1/zones", types.ZoneCreate{Name: "rack2", Region: "dc1"}, nil)
	e.must(201, "POST", "/v1/flavors", types.FlavorCreate{Name: "metal", Kind: "baremetal", VCPUs: 1, RAMMiB: 128, DiskGiB: 1}, nil)
	e.must(201, "POST", "/v1/flavors", types.FlavorCreate{Name: "metal.big", Kind: "baremetal", VCPUs: 1, RAMMiB: 4096, DiskGiB: 1}, nil)
	var img types.Image
	e.must(201, "POST", "/v1/images", types.ImageCreate{Name: "os", DiskFormat: "raw"}, &img)
	e.must(200, "PUT", "/v1/images/"+img.ID+"/file", "raw bytes", nil)
	e.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "p"}, nil)
	return ne
}

func nodeCreate(name string, port int, password string) types.NodeCreate {
	return types.NodeCreate{Name: name, Region: "dc1", Zone: "rack1",
		BMC:  types.NodeBMCCreate{Address: "127.0.0.1", Port: port, Username: "admin", Password: password},
		MACs: []string{"52:54:00:AA:00:" + name[len(name)-2:]}, Provide: true,
		Hardware: &types.NodeHardware{CPUs: 1, RAMMiB: 230, Disks: []types.NodeDisk{{Name: "vda", SizeBytes: 1 << 30}}}}
}

// settle steps a node until it rests.
func (ne *nodeEnv) settle(id string) types.Node {
	ne.t.Helper()
	var n types.Node
	for range 10 {
		ne.cond.Step(context.Background(), id)
		ne.must(200, "GET", "/v1/nodes/"+id, nil, &n)
		if n.Conductor == "" {
			return n
		}
	}
	return n
}

// available enrols a node the fake BMC accepts and makes it available.
func (ne *nodeEnv) available(name string, port int) types.Node {
	ne.t.Helper()
	ne.bmcs.Add("127.0.0.1", port, "secret")
	var n types.Node
	ne.must(201, "POST", "/v1/nodes", nodeCreate(name, port, "secret"), &n)
	if n = ne.settle(n.ID); n.State != types.NodeAvailable {
		ne.t.Fatalf("node %s is %s (%s)", name, n.State, n.LastError)
	}
	return n
}

// TestNodeEnrolment: validation, the password sealed at rest and never
// returned, wrong credentials kept out of available with a reason, the
// audit log and the node's history.
func TestNodeEnrolment(t *testing.T) {
	ne := newNodeEnv(t)
	for name, tc := range map[string]struct {
		edit  func(*types.NodeCreate)
		field string
	}{
		"no password":  {func(n *types.NodeCreate) { n.BMC.Password = "" }, "bmc.password"},
		"bad MAC":      {func(n *types.NodeCreate) { n.MACs = []string{"nope"} }, "macs"},
		"no MAC":       {func(n *types.NodeCreate) { n.MACs = nil }, "macs"},
		"bad port":     {func(n *types.NodeCreate) { n.BMC.Port = 70000 }, "bmc.port"},
		"bad address":  {func(n *types.NodeCreate) { n.BMC.Address = "http://x" }, "bmc.address"},
		"bad ip":       {func(n *types.NodeCreate) { n.ProvisionIP = "10.0.0" }, "provision_ip"},
		"no zone":      {func(n *types.NodeCreate) { n.Zone = "" }, "zone"},
		"unknown zone": {func(n *types.NodeCreate) { n.Zone = "rack9" }, "zone"},
	} {
		t.Run(name, func(t *testing.T) {
			in := nodeCreate("bm01", 9631, "secret")
			tc.edit(&in)
			r := ne.call(ne.admin, "POST", "/v1/nodes", in)
			if r.status != 400 || r.apiErr(t).Details["field"] != tc.field {
				t.Errorf("%d %s, want 400 on %s", r.status, r.body, tc.field)
			}
		})
	}
	member := ne.token(types.RoleMember, "p")
	if r := ne.call(member, "POST", "/v1/nodes", nodeCreate("bm01", 9631, "secret")); r.status != 403 {
		t.Errorf("member enrols: %d", r.status)
	}

	ne.bmcs.Add("127.0.0.1", 9631, "secret")
	var n types.Node
	r := ne.must(201, "POST", "/v1/nodes", nodeCreate("bm01", 9631, "wrong-password"), &n)
	if strings.Contains(string(r.body), "wrong-password") || strings.Contains(string(r.body), `"password"`) {
		t.Errorf("the answer shows the password: %s", r.body)
	}
	if n.State != types.NodeEnroll || n.MACs[0] != "52:54:00:aa:00:01" {
		t.Errorf("enrolled node = %+v", n)
	}
	row, err := ne.store.GetNodeRow(context.Background(), n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(row.BMCPassword, "wrong-password") {
		t.Errorf("password stored in the clear: %q", row.BMCPassword)
	}
	if pw, err := ne.keys.Open(row.BMCPassword); err != nil || pw != "wrong-password" {
		t.Errorf("sealed password opens to %q, %v", pw, err)
	}
	// The same MAC again is refused.
	dup := nodeCreate("bm02", 9632, "secret")
	dup.MACs = []string{"52:54:00:aa:00:01"}
	if r := ne.call(ne.admin, "POST", "/v1/nodes", dup); r.status != 409 || r.apiErr(t).Code != types.CodeAlreadyExists {
		t.Errorf("duplicate MAC: %d %s", r.status, r.body)
	}

	// Wrong credentials: out of available, with the reason.
	n = ne.settle(n.ID)
	if n.State != types.NodeEnroll || !strings.Contains(n.LastError, "credentials rejected") {
		t.Fatalf("wrong credentials: %s %q", n.State, n.LastError)
	}
	r = ne.must(200, "GET", "/v1/nodes/"+n.ID, nil, nil)
	if strings.Contains(string(r.body), "wrong-password") || strings.Contains(string(r.body), `"password"`) {
		t.Errorf("GET shows the password: %s", r.body)
	}
	// Right credentials: verified again, then manageable and on to available.
	ne.must(200, "PATCH", "/v1/nodes/"+n.ID, types.NodeUpdate{BMC: &types.NodeBMCCreate{Address: "127.0.0.1", Port: 9631,
		Username: "admin", Password: "secret"}}, nil)
	n = ne.settle(n.ID)
	if n.State != types.NodeManageable || n.LastError != "" {
		t.Errorf("right credentials: %s %q", n.State, n.LastError)
	}
	ne.must(202, "POST", "/v1/nodes/"+n.ID+"/provision", types.NodeProvision{Target: types.TargetProvide}, nil)
	if n = ne.settle(n.ID); n.State != types.NodeAvailable {
		t.Errorf("after provide: %s", n.State)
	}
	var ev types.List[types.NodeEvent]
	ne.must(200, "GET", "/v1/nodes/"+n.ID+"/events", nil, &ev)
	var states []string
	for _, e := range ev.Items {
		if !strings.HasPrefix(e.To, "power") {
			states = append(states, e.To)
		}
	}
	want := "enroll verifying enroll verifying manageable available"
	if strings.Join(states, " ") != want {
		t.Errorf("history = %v, want %s", states, want)
	}
	var audit types.List[types.AuditEntry]
	ne.must(200, "GET", "/v1/audit", nil, &audit)
	found := false
	for _, a := range audit.Items {
		found = found || a.Path == "/v1/nodes" && a.Method == "POST" && a.ResourceID == n.ID
	}
	if !found {
		t.Errorf("enrolment not in the audit log: %+v", audit.Items)
	}
	// An idle node refuses nothing; a node with a server cannot be deleted.
	if r := ne.call(ne.admin, "POST", "/v1/nodes/"+n.ID+"/provision", types.NodeProvision{Target: "explode"}); r.status != 400 {
		t.Errorf("unknown target: %d", r.status)
	}
}

// TestNodeBaremetalServers: kind baremetal goes to an available node that
// fits, explains refusals, never gives one node to two servers, and a
// delete cleans the node.
func TestNodeBaremetalServers(t *testing.T) {
	ne := newNodeEnv(t)
	srv := types.ServerCreate{Name: "m1", Kind: types.KindBaremetal, Project: "p", Flavor: "metal", Image: "os"}
	r := ne.call(ne.admin, "POST", "/v1/servers", srv)
	if r.status != 409 || r.apiErr(t).Code != types.CodeNoValidHost || !strings.Contains(r.apiErr(t).Message, "0/0 nodes fit") {
		t.Fatalf("no nodes: %d %s", r.status, r.body)
	}
	n1 := ne.available("bm01", 9631)
	n2 := ne.available("bm02", 9632)
	big := srv
	big.Flavor = "metal.big"
	r = ne.call(ne.admin, "POST", "/v1/servers", big)
	if r.status != 409 || !strings.Contains(r.apiErr(t).Message, "2 too little ram") {
		t.Errorf("too big: %d %s", r.status, r.body)
	}
	inRack2 := srv
	inRack2.Zone = "rack2"
	if r := ne.call(ne.admin, "POST", "/v1/servers", inRack2); r.status != 409 || !strings.Contains(r.apiErr(t).Message, "2 wrong zone") {
		t.Errorf("wrong zone: %d %s", r.status, r.body)
	}

	// Concurrent creates: each node goes to exactly one server.
	var wg sync.WaitGroup
	results := make([]resp, 6)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := srv
			in.Name = "race-" + string(rune('a'+i))
			results[i] = ne.call(ne.admin, "POST", "/v1/servers", in)
		}()
	}
	wg.Wait()
	nodes := map[string]string{}
	for _, r := range results {
		switch r.status {
		case 201:
			var s types.Server
			r.decode(t, &s)
			if other, dup := nodes[s.NodeID]; dup {
				t.Errorf("node %s given to %s and %s", s.NodeID, other, s.ID)
			}
			nodes[s.NodeID] = s.ID
			if s.State != types.ServerBuilding || s.HostID != "" {
				t.Errorf("new baremetal server = %+v", s)
			}
		case 409:
		default:
			t.Errorf("concurrent create: %d %s", r.status, r.body)
		}
	}
	if len(nodes) != 2 || nodes[n1.ID] == "" || nodes[n2.ID] == "" {
		t.Fatalf("servers per node = %v, want one on each of 2 nodes", nodes)
	}
	// A node with a server cannot be deleted or powered by the API.
	if r := ne.call(ne.admin, "DELETE", "/v1/nodes/"+n1.ID, nil); r.status != 409 {
		t.Errorf("delete a node with a server: %d %s", r.status, r.body)
	}
	if r := ne.call(ne.admin, "PUT", "/v1/nodes/"+n1.ID+"/power", types.NodePower{State: "off"}); r.status != 409 {
		t.Errorf("power off a deploying node: %d %s", r.status, r.body)
	}
	// Delete: 202 deleting, the node goes deleting → cleaning.
	var del types.Server
	ne.must(202, "DELETE", "/v1/servers/"+nodes[n1.ID], nil, &del)
	if del.State != types.ServerDeleting {
		t.Errorf("deleted server = %s", del.State)
	}
	var n types.Node
	ne.must(200, "GET", "/v1/nodes/"+n1.ID, nil, &n)
	if n.State != types.NodeDeleting {
		t.Errorf("node after delete = %s", n.State)
	}
	if err := ne.cond.Step(context.Background(), n1.ID); err != nil {
		t.Fatal(err)
	}
	n = types.Node{}
	ne.must(200, "GET", "/v1/nodes/"+n1.ID, nil, &n)
	if n.State != types.NodeCleaning || n.ServerID != "" {
		t.Errorf("node after teardown = %s server %q", n.State, n.ServerID)
	}
	if r := ne.call(ne.admin, "GET", "/v1/servers/"+nodes[n1.ID], nil); r.status != 404 {
		t.Errorf("server after teardown: %d", r.status)
	}
}

// TestNodePowerAPI: power operations act on the BMC and answer with the
// state read back; an unreachable BMC answers 503 and flags the node.
func TestNodePowerAPI(t *testing.T) {
	ne := newNodeEnv(t)
	n := ne.available("bm01", 9631)
	var got types.Node
	ne.must(200, "PUT", "/v1/nodes/"+n.ID+"/power", types.NodePower{State: "on"}, &got)
	if got.PowerState != types.PowerOn {
		t.Errorf("after on: %s", got.PowerState)
	}
	ne.must(200, "PUT", "/v1/nodes/"+n.ID+"/power", types.NodePower{State: "off"}, &got)
	if got.PowerState != types.PowerOff {
		t.Errorf("after off: %s", got.PowerState)
	}
	if r := ne.call(ne.admin, "PUT", "/v1/nodes/"+n.ID+"/power", types.NodePower{State: "explode"}); r.status != 400 {
		t.Errorf("bad op: %d", r.status)
	}
	m := ne.bmcs.Add("127.0.0.1", 9631, "secret") // replace with an unreachable one
	ne.bmcs.Do(m, func(m *fake.Machine) { m.Unreachable = true })
	r := ne.call(ne.admin, "PUT", "/v1/nodes/"+n.ID+"/power", types.NodePower{State: "on"})
	if r.status != 503 || r.apiErr(t).Details["reason"] != "bmc_unreachable" {
		t.Errorf("unreachable BMC: %d %s", r.status, r.body)
	}
	ne.must(200, "GET", "/v1/nodes/"+n.ID, nil, &got)
	if got.BMCFault == "" || got.PowerState != types.PowerUnknown {
		t.Errorf("node not flagged: power %s fault %q", got.PowerState, got.BMCFault)
	}
}
