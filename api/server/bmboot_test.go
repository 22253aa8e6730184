package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal/pxe"
)

// TestBaremetalBootstrap: a bare-metal server takes key_name and
// user_data as a VM does (another project's keypair answers as a missing
// one, and claims no node); once the conductor has booted its node into the
// deploy ramdisk, the deploy agent's claim on the provisioning network
// carries a config drive rendered by cloudinit with the server's name, the
// key, the user data unchanged, and the network configuration of its port
// (matched by the node's MAC: IPAM address, gateway, DNS, host routes, the
// overlay's MTU).
func TestBaremetalBootstrap(t *testing.T) {
	ne := newNodeEnv(t)
	ne.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "q"}, nil)
	key := testPublicKey()
	ne.must(201, "POST", "/v1/keypairs", types.KeypairCreate{Name: "ops", Project: "p", PublicKey: key}, nil)
	ne.must(201, "POST", "/v1/keypairs", types.KeypairCreate{Name: "theirs", Project: "q", PublicKey: testPublicKey()}, nil)
	ne.must(201, "POST", "/v1/networks", types.NetworkCreate{Name: "tenant", Project: "p", SegmentType: "vxlan", SegmentID: 5210}, nil)
	ne.must(201, "POST", "/v1/subnets", types.SubnetCreate{Name: "tenant-v4", Network: "tenant", CIDR: "10.90.0.0/24",
		GatewayIP: "10.90.0.1", DNSServers: []string{"10.90.0.53"},
		HostRoutes: []types.HostRoute{{Destination: "172.16.0.0/12", NextHop: "10.90.0.254"}}}, nil)
	n := ne.available("bm01", 9631)

	userData := "#!/bin/sh\necho BM-USERDATA\n"
	in := types.ServerCreate{Name: "metal-1", Kind: types.KindBaremetal, Project: "p", Flavor: "metal", Image: "os",
		Networks: []string{"tenant"}, KeyName: "ops", UserData: base64.StdEncoding.EncodeToString([]byte(userData))}

	// Another project's keypair is a missing one, for bare metal too.
	answer := func(name string) (int, string) {
		bad := in
		bad.KeyName = name
		r := ne.call(ne.admin, "POST", "/v1/servers", bad)
		return r.status, strings.ReplaceAll(string(r.body), name, "NAME")
	}
	theirsCode, theirs := answer("theirs")
	missingCode, missing := answer("nope")
	if theirsCode != 400 || theirsCode != missingCode || theirs != missing || !strings.Contains(theirs, `"field":"key_name"`) {
		t.Errorf("another project's keypair: %d %s; a missing one: %d %s", theirsCode, theirs, missingCode, missing)
	}
	bad := in
	bad.UserData = "not base64!"
	if r := ne.call(ne.admin, "POST", "/v1/servers", bad); r.status != 400 || !strings.Contains(string(r.body), `"field":"user_data"`) {
		t.Errorf("user data not base64: %d %s", r.status, r.body)
	}
	var node types.Node
	if ne.must(200, "GET", "/v1/nodes/"+n.ID, nil, &node); node.State != types.NodeAvailable || node.ServerID != "" {
		t.Fatalf("a refused create claimed the node: %s %s", node.State, node.ServerID)
	}

	var srv types.Server
	ne.must(201, "POST", "/v1/servers", in, &srv)
	if srv.NodeID != n.ID || !slices.Equal(srv.KeyNames, []string{"ops"}) || srv.UserDataBytes != len(userData) {
		t.Fatalf("server = %+v, want on %s with key ops and %d bytes of user data", srv, n.ID, len(userData))
	}
	var ports types.List[types.Port]
	ne.must(200, "GET", "/v1/ports?device_id="+srv.ID, nil, &ports)
	if len(ports.Items) != 1 || len(ports.Items[0].FixedIPs) != 1 {
		t.Fatalf("ports = %+v", ports.Items)
	}
	ip := ports.Items[0].FixedIPs[0].IPAddress

	// The conductor boots the node into the deploy ramdisk; the agent,
	// from the node's lease, gets its boot token from the iPXE script and
	// claims its work from the provisioning service.
	dir := t.TempDir()
	for _, d := range []string{"ramdisk", "images", "pxe"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	for _, f := range []string{"vmlinuz", "initrd.gz"} {
		os.WriteFile(filepath.Join(dir, "ramdisk", f), []byte(f), 0o644)
	}
	_, subnet, _ := net.ParseCIDR("10.79.9.0/24")
	svc, err := pxe.New(pxe.Config{Interface: "br0", Address: net.ParseIP("10.79.9.1"), Subnet: subnet,
		RamdiskDir: filepath.Join(dir, "ramdisk"), ImageDir: filepath.Join(dir, "images"), StateDir: filepath.Join(dir, "pxe"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, ne.store, ne.keys)
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(svc.Handler())
	t.Cleanup(web.Close)
	mac := n.MACs[0]
	lease := fmt.Sprintf("%d %s 127.0.0.1 * 01:%s\n", time.Now().Add(time.Hour).Unix(), mac, mac)
	if err := os.WriteFile(filepath.Join(dir, "pxe", "leases"), []byte(lease), 0o644); err != nil {
		t.Fatal(err)
	}
	var token string
	for i := 0; i < 10 && token == ""; i++ {
		ne.cond.Step(t.Context(), n.ID)
		_, script := httpDo(t, "GET", web.URL+"/ipxe?mac="+mac, "")
		if _, after, ok := strings.Cut(script, "corral.token="); ok {
			token = strings.Fields(after)[0]
		}
	}
	if token == "" {
		t.Fatalf("the conductor never booted the node into the ramdisk: %+v", ne.settle(n.ID))
	}
	code, body := httpDo(t, "POST", web.URL+"/agent/claim?node="+n.ID, token)
	var work types.AgentWork
	if code != 200 || json.Unmarshal([]byte(body), &work) != nil || work.ConfigDrive == nil {
		t.Fatalf("claim: %d %s", code, body)
	}
	cd := work.ConfigDrive
	files := map[string][]byte{}
	for _, f := range cd.Files {
		files[f.Path] = f.Data
	}
	if cd.Label != "cidata" || len(files) != 3 {
		t.Fatalf("config drive %s with %d files, want cidata with meta-data, user-data, network-config", cd.Label, len(files))
	}
	var meta struct {
		InstanceID string   `json:"instance-id"`
		Hostname   string   `json:"local-hostname"`
		Keys       []string `json:"public-keys"`
	}
	if err := json.Unmarshal(files["meta-data"], &meta); err != nil || meta.InstanceID != srv.ID || meta.Hostname != "metal-1" ||
		!slices.Equal(meta.Keys, []string{key}) {
		t.Errorf("meta-data %s (%v), want the server's ID, name and the key %s", files["meta-data"], err, key)
	}
	if string(files["user-data"]) != userData {
		t.Errorf("user-data = %q, want %q", files["user-data"], userData)
	}
	var netcfg struct {
		Version   int
		Ethernets map[string]struct {
			Match struct {
				MAC string `json:"macaddress"`
			}
			DHCP4       bool
			Addresses   []string
			MTU         int
			Nameservers struct{ Addresses []string }
			Routes      []struct{ To, Via string }
		}
	}
	if err := json.Unmarshal(files["network-config"], &netcfg); err != nil || netcfg.Version != 2 || len(netcfg.Ethernets) != 1 {
		t.Fatalf("network-config %s (%v)", files["network-config"], err)
	}
	e := netcfg.Ethernets["eth0"]
	if e.Match.MAC != strings.ToLower(mac) || e.DHCP4 || !slices.Equal(e.Addresses, []string{ip + "/24"}) || e.MTU != 1450 ||
		!slices.Equal(e.Nameservers.Addresses, []string{"10.90.0.53"}) || len(e.Routes) != 2 ||
		e.Routes[0].To != "0.0.0.0/0" || e.Routes[0].Via != "10.90.0.1" || e.Routes[1].To != "172.16.0.0/12" || e.Routes[1].Via != "10.90.0.254" {
		t.Errorf("network-config %s, want %s at %s/24 via 10.90.0.1, DNS 10.90.0.53, the host route, MTU 1450", files["network-config"], mac, ip)
	}
}

func httpDo(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
