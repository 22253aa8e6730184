package ansible

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal/sim"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

// needAnsible skips the test (fails it under CI=true) without
// CORRAL_TEST_ANSIBLE, and checks that the tools are there.
func needAnsible(t *testing.T, tools ...string) {
	t.Helper()
	testenv.Require(t, "CORRAL_TEST_ANSIBLE", "ansible and ansible-lint (Debian packages ansible, ansible-lint)")
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("CORRAL_TEST_ANSIBLE is set but %s is missing: %v", tool, err)
		}
	}
}

// ansibleDir is this directory (ansible/), where ansible.cfg is.
func ansibleDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// binaries builds corrald and corral-agent once for every test here.
func binaries(t *testing.T) string {
	return testenv.Binaries(t, "../cmd/corrald", "../cmd/corral-agent")
}

// ansibleCmd runs an Ansible tool from ansible/ with its ansible.cfg and
// without the caller's CORRAL_ variables (the plugin reads CORRAL_TOKEN).
func ansibleCmd(t *testing.T, env []string, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = ansibleDir(t)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CORRAL_") && !strings.HasPrefix(kv, "ANSIBLE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "ANSIBLE_CONFIG="+filepath.Join(cmd.Dir, "ansible.cfg"), "ANSIBLE_NOCOLOR=1",
		"ANSIBLE_FORCE_COLOR=0", "ANSIBLE_LOCAL_TEMP="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// prefix is a unique prefix for the resources of one test ("cans" for
// Corral Ansible, then 6 hex digits).
func prefix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return "cans" + hex.EncodeToString(b)
}

func mustCreate[T any](t *testing.T, c *client.Client, path string, in any) T {
	t.Helper()
	out, err := client.Create[T](context.Background(), c, path, in, "")
	if err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	return out
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inventory is ansible-inventory --list's output.
type inventory struct {
	hostvars map[string]map[string]any
	groups   map[string]struct {
		Hosts    []string `json:"hosts"`
		Children []string `json:"children"`
	}
}

func parseInventory(t *testing.T, out []byte) inventory {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("ansible-inventory --list: %v\n%s", err, out)
	}
	var inv inventory
	var meta struct {
		Hostvars map[string]map[string]any `json:"hostvars"`
	}
	if err := json.Unmarshal(raw["_meta"], &meta); err != nil {
		t.Fatal(err)
	}
	inv.hostvars = meta.Hostvars
	delete(raw, "_meta")
	body, _ := json.Marshal(raw)
	if err := json.Unmarshal(body, &inv.groups); err != nil {
		t.Fatal(err)
	}
	return inv
}

// members returns the hosts of a group, its children's included, sorted.
func (inv inventory) members(group string) []string {
	var out []string
	g := inv.groups[group]
	out = append(out, g.Hosts...)
	for _, c := range g.Children {
		out = append(out, inv.members(c)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestInventory: ansible-inventory with the corral plugin, against a real
// corrald holding two hosts in two racks, a bare-metal node (its BMC an
// ipmi_sim), a VM with an address, a broker group of two VMs and a
// bare-metal server, lists every one of them in the groups of its region,
// rack, aggregate, kind, group role, group name and project, with their
// variables; it follows the pages of every list (page_size 2). A bad token
// and an unreachable corrald fail with a message saying so.
func TestInventory(t *testing.T) {
	t.Parallel()
	needAnsible(t, "ansible-inventory")
	testenv.Require(t, "CORRAL_TEST_IPMI", "ipmi_sim (the bare-metal node's BMC)")
	bin := binaries(t)
	d := testenv.StartCorrald(t, filepath.Join(bin, "corrald"), "--bmc-cipher-suites", "3", "--conductor-poll", "200ms",
		"--bmc-min-interval", "100ms", "--bmc-timeout", "20s")
	admin := d.Admin
	ctx := context.Background()

	mustCreate[types.Region](t, admin, "/v1/regions", types.RegionCreate{Name: "dc1"})
	mustCreate[types.Zone](t, admin, "/v1/zones", types.ZoneCreate{Name: "dc1-r01", Region: "dc1"})
	mustCreate[types.Zone](t, admin, "/v1/zones", types.ZoneCreate{Name: "dc1-r02", Region: "dc1"})
	mustCreate[types.Aggregate](t, admin, "/v1/aggregates", types.AggregateCreate{Name: "general"})
	mustCreate[types.Aggregate](t, admin, "/v1/aggregates", types.AggregateCreate{Name: "bm.large"})
	mustCreate[types.Flavor](t, admin, "/v1/flavors", types.FlavorCreate{Name: "c1", VCPUs: 1, RAMMiB: 256, DiskGiB: 1})
	mustCreate[types.Flavor](t, admin, "/v1/flavors", types.FlavorCreate{Name: "bm1", Kind: types.KindBaremetal, VCPUs: 4,
		RAMMiB: 8192, DiskGiB: 50})
	mustCreate[types.Project](t, admin, "/v1/projects", types.ProjectCreate{Name: "team-a"})
	img := mustCreate[types.Image](t, admin, "/v1/images", types.ImageCreate{Name: "tiny", DiskFormat: "raw"})
	if _, err := admin.UploadImage(ctx, img.ID, strings.NewReader("bytes")); err != nil {
		t.Fatal(err)
	}
	mustCreate[types.Network](t, admin, "/v1/networks", types.NetworkCreate{Name: "prod", Project: "team-a",
		SegmentType: "vlan", SegmentID: 100})
	mustCreate[types.Subnet](t, admin, "/v1/subnets", types.SubnetCreate{Name: "prod-v4", Network: "prod", CIDR: "10.61.0.0/24"})

	// Two fake hosts, registered over the API and kept alive by heartbeats.
	type fakeHost struct{ id, token string }
	var hosts []fakeHost
	usage := types.Usage{MemFreeMiB: 1 << 20}
	for i, zone := range []string{"dc1-r01", "dc1-r02"} {
		reg, err := admin.RegisterHost(ctx, types.HostRegister{Name: fmt.Sprintf("hv-%d", i+1), Region: "dc1", Zone: zone,
			Aggregates: []string{"general"}, Inventory: types.Inventory{CPUs: 64, RAMMiB: 1 << 20, DiskGiB: 1000}}, "")
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, fakeHost{reg.Host.ID, reg.Token})
	}
	hbCtx, stopHB := context.WithCancel(ctx)
	t.Cleanup(stopHB)
	beat := func() {
		for _, h := range hosts {
			if err := admin.WithToken(h.token).Heartbeat(hbCtx, h.id, usage); err != nil && hbCtx.Err() == nil {
				t.Errorf("heartbeat: %v", err)
			}
		}
	}
	beat()
	go func() {
		for hbCtx.Err() == nil {
			select {
			case <-hbCtx.Done():
			case <-time.After(2 * time.Second):
				beat()
			}
		}
	}()

	// A bare-metal node whose BMC is ipmi_sim (chassis power reads "off";
	// no machine behind it), enrolled with known hardware and provided.
	p := prefix()
	bmcDir := filepath.Join(t.TempDir(), "bmc")
	port := sim.FreeUDPPort(t)
	sim.Run(t, "bmc.sh", "start", bmcDir, p+"-bm-1", filepath.Join(bmcDir, "none.xml"), fmt.Sprint(port), "admin", "secret")
	t.Cleanup(func() { exec.Command(filepath.Join(sim.Dir(), "bmc.sh"), "stop", bmcDir).Run() })
	node := mustCreate[types.Node](t, admin, "/v1/nodes", types.NodeCreate{Name: "bm-1", Region: "dc1", Zone: "dc1-r02",
		Aggregate: "bm.large", BMC: types.NodeBMCCreate{Address: "127.0.0.1", Port: port, Username: "admin", Password: "secret"},
		MACs: []string{"52:54:00:6a:00:01"}, Provide: true,
		Hardware: &types.NodeHardware{CPUs: 8, RAMMiB: 16384, Disks: []types.NodeDisk{{Name: "sda", SizeBytes: 100 << 30}}}})
	waitFor(t, 90*time.Second, "node bm-1 available", func() (bool, string) {
		var n types.Node
		_, err := admin.Do(ctx, client.Request{Method: "GET", Path: "/v1/nodes/" + node.ID}, &n)
		return err == nil && n.State == types.NodeAvailable, fmt.Sprintf("%s %s %v", n.State, n.LastError, err)
	})

	web := mustCreate[types.Server](t, admin, "/v1/servers", types.ServerCreate{Name: "web-1", Kind: types.KindVM,
		Project: "team-a", Flavor: "c1", Image: "tiny", Zone: "dc1-r01", Networks: []string{"prod"}})
	db := mustCreate[types.Server](t, admin, "/v1/servers", types.ServerCreate{Name: "db-1", Kind: types.KindBaremetal,
		Project: "team-a", Flavor: "bm1", Image: "tiny"})
	grp := mustCreate[types.Group](t, admin, "/v1/groups", types.GroupCreate{Name: "kafka", Role: types.GroupBroker,
		Project: "team-a", Region: "dc1", GroupSpec: types.GroupSpec{Members: 2, Flavor: "c1", Image: "tiny"}})
	var brokers []string
	for _, m := range grp.Members {
		brokers = append(brokers, m.Name)
	}
	slices.Sort(brokers)
	if len(brokers) != 2 {
		t.Fatalf("group members %+v", grp.Members)
	}
	waitFor(t, 30*time.Second, "web-1's address", func() (bool, string) {
		_, err := admin.Do(ctx, client.Request{Method: "GET", Path: "/v1/servers/" + web.ID}, &web)
		return err == nil && len(web.Addresses) > 0, fmt.Sprintf("%+v %v", web.Addresses, err)
	})

	dir := t.TempDir()
	config := filepath.Join(dir, "test.corral.yml")
	write := func(path, body string) {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(config, fmt.Sprintf("plugin: corral\nurl: %s\ntoken_file: %s\npage_size: 2\n", d.Endpoint, d.TokenFile))
	cmd := ansibleCmd(t, []string{"ANSIBLE_INVENTORY_UNPARSED_FAILED=true"}, "ansible-inventory", "-i", config, "--list")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ansible-inventory: %v\n%s", err, stderr.String())
	}
	inv := parseInventory(t, out)

	vms := append([]string{"web-1"}, brokers...)
	slices.Sort(vms)
	servers := append(slices.Clone(vms), "db-1")
	slices.Sort(servers)
	all := append(slices.Clone(servers), "bm-1", "hv-1", "hv-2")
	slices.Sort(all)
	for group, want := range map[string][]string{
		"corral_servers":     servers,
		"corral_hosts":       {"hv-1", "hv-2"},
		"corral_nodes":       {"bm-1"},
		"region_dc1":         all,
		"kind_vm":            vms,
		"kind_baremetal":     {"db-1"},
		"kind_host":          {"hv-1", "hv-2"},
		"kind_node":          {"bm-1"},
		"role_broker":        brokers,
		"group_kafka":        brokers,
		"project_team_a":     servers,
		"aggregate_bm_large": {"bm-1", "db-1"},
	} {
		if got := inv.members(group); !slices.Equal(got, want) {
			t.Errorf("group %s = %v, want %v", group, got, want)
		}
	}
	// Racks: each host and the node in its own; every server in the rack
	// it was placed in (brokers spread over both).
	r1, r2 := inv.members("zone_dc1_r01"), inv.members("zone_dc1_r02")
	for _, h := range []string{"hv-1", "web-1"} {
		if !slices.Contains(r1, h) {
			t.Errorf("zone_dc1_r01 = %v, want %s in it", r1, h)
		}
	}
	for _, h := range []string{"hv-2", "bm-1", "db-1"} {
		if !slices.Contains(r2, h) {
			t.Errorf("zone_dc1_r02 = %v, want %s in it", r2, h)
		}
	}
	if !slices.Contains(r1, brokers[0]) && !slices.Contains(r1, brokers[1]) || !slices.Contains(r2, brokers[0]) && !slices.Contains(r2, brokers[1]) {
		t.Errorf("brokers %v not spread over both racks: r01 %v, r02 %v", brokers, r1, r2)
	}
	if got := inv.members("aggregate_general"); !slices.Contains(got, "hv-1") || !slices.Contains(got, "hv-2") {
		t.Errorf("aggregate_general = %v, want hv-1 and hv-2 in it", got)
	}

	check := func(host string, want map[string]any) {
		t.Helper()
		hv, ok := inv.hostvars[host]
		if !ok {
			t.Errorf("no hostvars for %s", host)
			return
		}
		for k, v := range want {
			if fmt.Sprint(hv[k]) != fmt.Sprint(v) {
				t.Errorf("%s: %s = %v, want %v", host, k, hv[k], v)
			}
		}
	}
	check("web-1", map[string]any{"ansible_host": web.Addresses[0].IP, "corral_kind": "vm", "corral_flavor": "c1",
		"corral_project": "team-a", "corral_region": "dc1", "corral_zone": "dc1-r01", "corral_rack": "dc1-r01",
		"corral_image": "tiny", "corral_id": web.ID, "corral_host": "hv-1", "corral_state": web.State,
		"corral_ips": []string{web.Addresses[0].IP}})
	if !strings.HasPrefix(web.Addresses[0].IP, "10.61.0.") {
		t.Errorf("web-1 address %s not from its subnet", web.Addresses[0].IP)
	}
	check(brokers[0], map[string]any{"corral_group": "kafka", "corral_group_role": "broker", "corral_kind": "vm"})
	check("db-1", map[string]any{"corral_kind": "baremetal", "corral_flavor": "bm1", "corral_node": "bm-1",
		"corral_id": db.ID, "corral_aggregate": "bm.large", "corral_region": "dc1", "corral_zone": "dc1-r02"})
	check("bm-1", map[string]any{"corral_kind": "node", "corral_bmc_address": "127.0.0.1", "corral_bmc_port": port,
		"corral_server": "db-1", "corral_macs": []string{"52:54:00:6a:00:01"}, "corral_aggregate": "bm.large"})
	check("hv-1", map[string]any{"corral_kind": "host", "corral_state": "up", "corral_zone": "dc1-r01",
		"corral_aggregates": []string{"general"}, "corral_id": hosts[0].id})

	// A bad token and an unreachable corrald: a clear error, a failure.
	bad := filepath.Join(dir, "bad-token")
	write(bad, "not-a-token\n")
	write(config, fmt.Sprintf("plugin: corral\nurl: %s\ntoken_file: %s\n", d.Endpoint, bad))
	failing := func(want string) {
		t.Helper()
		out, err := ansibleCmd(t, []string{"ANSIBLE_INVENTORY_UNPARSED_FAILED=true"}, "ansible-inventory", "-i", config,
			"--list").CombinedOutput()
		flat := strings.Join(strings.Fields(string(out)), " ")
		if err == nil || !strings.Contains(flat, want) {
			t.Errorf("ansible-inventory: %v, want a failure saying %q:\n%s", err, want, out)
		}
	}
	failing("corrald refused the token (401 Unauthorized")
	write(config, fmt.Sprintf("plugin: corral\nurl: http://%s\ntoken_file: %s\n", testenv.FreeAddr(t), d.TokenFile))
	failing("cannot reach corrald at http://127.0.0.1:")
}

// TestAnsibleLint: ansible-lint (its production profile, .ansible-lint)
// passes on the roles and playbooks, the syntax check of site.yml with the
// example inventory passes, and ansible-doc reads the inventory plugin's
// documentation.
func TestAnsibleLint(t *testing.T) {
	t.Parallel()
	needAnsible(t, "ansible-lint", "ansible-playbook", "ansible-doc")
	if out, err := ansibleCmd(t, nil, "ansible-lint", "--profile", "production").CombinedOutput(); err != nil {
		t.Errorf("ansible-lint: %v\n%s", err, out)
	}
	if out, err := ansibleCmd(t, nil, "ansible-playbook", "-i", "inventory.example.ini", "site.yml",
		"--syntax-check").CombinedOutput(); err != nil {
		t.Errorf("ansible-playbook --syntax-check: %v\n%s", err, out)
	}
	// The plugin's DOCUMENTATION parses (ansible-doc reads it as Ansible does).
	out, err := ansibleCmd(t, nil, "ansible-doc", "-t", "inventory", "-M", "plugins/inventory", "corral").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "token_file") {
		t.Errorf("ansible-doc corral: %v\n%s", err, out)
	}
	// Both roles install corral-daemon: the copies must not drift apart.
	a, _ := os.ReadFile("roles/corrald/files/corral-daemon")
	b, _ := os.ReadFile("roles/corral_agent/files/corral-daemon")
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("roles/corrald/files/corral-daemon and roles/corral_agent/files/corral-daemon differ (or are empty)")
	}
}

// recap reads the counters of PLAY RECAP for localhost.
func recap(t *testing.T, out string) map[string]int {
	t.Helper()
	i := strings.LastIndex(out, "PLAY RECAP")
	if i < 0 {
		t.Fatalf("no PLAY RECAP in the output:\n%s", tail(out, 4000))
	}
	counts := map[string]int{}
	for _, f := range strings.Fields(out[i:]) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		var n int
		if _, err := fmt.Sscan(v, &n); err == nil {
			counts[k] = n
		}
	}
	return counts
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// pidOf reads a PID file and returns the PID if the process is alive.
func pidOf(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 0 {
		return 0, false
	}
	_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
	return pid, err == nil
}

// TestLocalDeployment runs site.yml for real against localhost, as CI
// does without systemd: the roles' "background" supervisor starts corrald
// (as a service user of its own) and corral-agent (libvirt, an Open vSwitch
// bridge of its own) from the binaries built for the test, with every path
// in a directory of the test and unique ports. The playbook creates the
// region, rack and aggregate, so the agent registers: GET /v1/hosts shows
// it up, and corrald answers /readyz. A second run changes and fails
// nothing. The processes are stopped by their PID files at the end.
func TestLocalDeployment(t *testing.T) {
	t.Parallel()
	needAnsible(t, "ansible-playbook", "start-stop-daemon", "setpriv")
	testenv.Require(t, "CORRAL_TEST_LIBVIRT", "libvirt (corral-agent drives it)")
	testenv.Require(t, "CORRAL_TEST_OVS", "Open vSwitch (corral-agent's bridge)")
	guest := testenv.Require(t, "CORRAL_TEST_GUEST_IMAGE", "the probe guest (compute/guestimage/build.sh)")
	if os.Geteuid() != 0 {
		if testenv.CI() {
			t.Fatal("the local deployment runs as root (it creates a service user and starts daemons)")
		}
		t.Skip("the local deployment runs as root")
	}
	bin := binaries(t)
	p := prefix()
	// Under /var/tmp with mode 0755: corrald runs as the service user, which
	// must reach its data directory (test temporary directories are 0700).
	dir := filepath.Join("/var/tmp", "corral-"+p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	for _, sub := range []string{"bin", "sbin"} { // as /usr/local/bin and /usr/local/sbin exist
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	user, bridge := p, p+"br"
	addr := testenv.FreeAddr(t)
	endpoint := "http://" + addr
	path := func(rel string) string { return filepath.Join(dir, rel) }

	// A provisioning network of the test's own (a veth pair), so that
	// corrald starts dnsmasq: as the service user, with the capabilities
	// the role gives it.
	pxeIf := p + "v0"
	out, _ := exec.Command("ip", "-4", "-o", "addr").Output()
	x := 10
	for ; x < 250 && strings.Contains(string(out), fmt.Sprintf(" 10.198.%d.", x)); x++ {
	}
	pxeIP := fmt.Sprintf("10.198.%d.1", x)
	for _, args := range [][]string{{"link", "add", pxeIf, "type", "veth", "peer", "name", p + "v1"},
		{"addr", "add", pxeIP + "/24", "dev", pxeIf}, {"link", "set", pxeIf, "up"}, {"link", "set", p + "v1", "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			exec.Command("ip", "link", "del", pxeIf).Run()
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", pxeIf).Run() })
	ramdisk := t.TempDir() // the role copies it; dnsmasq never serves it here
	for _, f := range []string{"vmlinuz", "initrd.gz"} {
		if err := os.WriteFile(filepath.Join(ramdisk, f), []byte("not a kernel"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, pxePort, _ := strings.Cut(testenv.FreeAddr(t), ":")
	t.Cleanup(func() {
		// Stop what the playbook started, by PID file, with the role's own script.
		for _, pf := range []string{"run/corral-agent.pid", "run/corrald.pid"} {
			if _, err := os.Stat(path("sbin/corral-daemon")); err != nil {
				break // the playbook stopped before installing it, and started nothing
			}
			if out, err := exec.Command(path("sbin/corral-daemon"), "stop", path(pf)).CombinedOutput(); err != nil {
				t.Errorf("corral-daemon stop %s: %v\n%s", pf, err, out)
			}
		}
		exec.Command("ovs-vsctl", "--if-exists", "del-br", bridge).Run()
		exec.Command("userdel", user).Run()
		exec.Command("groupdel", user).Run()
		if t.Failed() {
			for _, log := range []string{"log/corrald.log", "log/corral-agent.log"} {
				b, _ := os.ReadFile(path(log))
				t.Logf("%s:\n%s", log, tail(string(b), 3000))
			}
		}
		// corrald stops its dnsmasq; make sure, by dnsmasq's PID file.
		if pid, ok := pidOf(path("data/pxe/dnsmasq.pid")); ok {
			t.Errorf("dnsmasq (PID %d) still runs after corrald stopped", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		os.RemoveAll(dir)
	})

	inventory := path("inventory.yml")
	vars := map[string]any{
		"ansible_python_interpreter": "/usr/bin/python3",
		// corrald, as user p, on a free port, with everything in dir.
		"corrald_binary_src":           filepath.Join(bin, "corrald"),
		"corrald_binary_dest":          path("bin/corrald"),
		"corrald_user":                 user,
		"corrald_group":                user,
		"corrald_config_dir":           path("etc"),
		"corrald_data_dir":             path("data"),
		"corrald_listen":               addr,
		"corrald_supervisor":           "background",
		"corrald_pid_file":             path("run/corrald.pid"),
		"corrald_log_file":             path("log/corrald.log"),
		"corrald_run_script":           path("sbin/corrald-run"),
		"corral_daemon_script":         path("sbin/corral-daemon"),
		"corrald_bootstrap_token_dest": path("credentials/admin-token"),
		"corrald_install_packages":     false,
		"corrald_regions":              []map[string]any{{"name": "dc1"}},
		"corrald_zones":                []map[string]any{{"name": "dc1-r01", "region": "dc1"}},
		"corrald_aggregates":           []map[string]any{{"name": "general", "cpu_allocation_ratio": 4}},
		"corrald_pxe_interface":        pxeIf,
		"corrald_pxe_address":          pxeIP + "/24",
		"corrald_pxe_http_port":        pxePort,
		"corrald_pxe_ramdisk_src":      ramdisk,
		"corrald_pxe_ramdisk_dir":      path("ramdisk"),
		// corral-agent, registering with the bootstrap admin token.
		"corral_endpoint":                     endpoint,
		"corral_region":                       "dc1",
		"corral_zone":                         "dc1-r01",
		"corral_aggregates":                   []string{"general"},
		"corral_agent_name":                   p + "-hv",
		"corral_agent_binary_src":             filepath.Join(bin, "corral-agent"),
		"corral_agent_binary_dest":            path("bin/corral-agent"),
		"corral_agent_config_dir":             path("etc"),
		"corral_agent_registration_token_src": path("credentials/admin-token"),
		"corral_agent_state_dir":              path("agent"),
		"corral_agent_run_script":             path("sbin/corral-agent-run"),
		"corral_agent_supervisor":             "background",
		"corral_agent_pid_file":               path("run/corral-agent.pid"),
		"corral_agent_log_file":               path("log/corral-agent.log"),
		"corral_agent_install_packages":       false,
		"corral_agent_guest_src":              guest,
		"corral_agent_guest_dir":              path("guest"),
		"corral_agent_domain_type":            "qemu",
		"corral_agent_bridge":                 bridge,
	}
	varsJSON, _ := json.Marshal(vars)
	if err := os.WriteFile(path("vars.json"), varsJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	inv := "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n" +
		"  children:\n    corrald:\n      hosts:\n        localhost: {}\n    compute:\n      hosts:\n        localhost: {}\n"
	if err := os.WriteFile(inventory, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	play := func(run int) map[string]int {
		t.Helper()
		start := time.Now()
		out, err := ansibleCmd(t, nil, "ansible-playbook", "-i", inventory, "-e", "@"+path("vars.json"),
			"site.yml").CombinedOutput()
		if err != nil {
			t.Fatalf("run %d of site.yml: %v\n%s", run, err, tail(string(out), 6000))
		}
		counts := recap(t, string(out))
		t.Logf("run %d: %v in %s", run, counts, time.Since(start).Round(time.Second))
		if counts["failed"] != 0 || counts["unreachable"] != 0 || counts["ok"] == 0 {
			t.Fatalf("run %d: %v\n%s", run, counts, tail(string(out), 6000))
		}
		return counts
	}
	play(1)

	if err := testenv.WaitReady(endpoint, nil, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(path("credentials/admin-token"))
	if err != nil {
		t.Fatalf("the bootstrap admin token was not fetched: %v", err)
	}
	admin := client.New(endpoint, strings.TrimSpace(string(token)), nil)
	waitFor(t, 60*time.Second, "the agent's host up in GET /v1/hosts", func() (bool, string) {
		hosts, err := client.ListAll[types.Host](context.Background(), admin, "/v1/hosts", nil)
		for _, h := range hosts {
			if h.Name == p+"-hv" && h.State == types.HostUp {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v %v", hosts, err)
	})
	// corrald runs as the service user, not root.
	pid, ok := pidOf(path("run/corrald.pid"))
	if !ok {
		t.Fatal("corrald's PID file names no live process")
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var uidLine string
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Uid:") {
			uidLine = l
		}
	}
	if f := strings.Fields(uidLine); len(f) < 2 || f[1] == "0" {
		t.Fatalf("corrald runs as %q, want the service user %s", uidLine, user)
	}
	// dnsmasq, corrald's child, runs as the service user too and holds the
	// DHCP port on the provisioning interface: the capabilities reached it.
	waitFor(t, 30*time.Second, "dnsmasq on "+pxeIf, func() (bool, string) {
		dpid, ok := pidOf(path("data/pxe/dnsmasq.pid"))
		if !ok {
			return false, "no dnsmasq PID file or process"
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", dpid))
		if !strings.Contains(string(st), "\nUid:\t"+strings.Fields(uidLine)[1]+"\t") {
			return false, "dnsmasq runs as another user:\n" + string(st)
		}
		ss, _ := exec.Command("ss", "-lunp").Output()
		for _, l := range strings.Split(string(ss), "\n") {
			if strings.Contains(l, "%"+pxeIf+":67 ") && strings.Contains(l, fmt.Sprintf("pid=%d,", dpid)) {
				return true, ""
			}
		}
		log, _ := os.ReadFile(path("data/pxe/dnsmasq.log"))
		return false, "dnsmasq does not listen on port 67 of " + pxeIf + ":\n" + string(ss) + "\n" + tail(string(log), 1000)
	})
	agentPID, ok := pidOf(path("run/corral-agent.pid"))
	if !ok {
		t.Fatal("corral-agent's PID file names no live process")
	}

	// Idempotent: nothing changes, nothing restarts.
	if counts := play(2); counts["changed"] != 0 {
		t.Errorf("second run changed %d things, want 0", counts["changed"])
	}
	if now, _ := pidOf(path("run/corrald.pid")); now != pid {
		t.Errorf("corrald restarted by the second run: PID %d, then %d", pid, now)
	}
	if now, _ := pidOf(path("run/corral-agent.pid")); now != agentPID {
		t.Errorf("corral-agent restarted by the second run: PID %d, then %d", agentPID, now)
	}
	if err := testenv.WaitReady(endpoint, nil, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
