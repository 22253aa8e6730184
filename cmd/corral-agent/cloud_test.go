package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
)

// cloudBootWait bounds a Debian cloud image's boot under TCG on a loaded
// two-core machine: about a minute when idle, over ten minutes at load 20.
const cloudBootWait = 30 * time.Minute

// cleanupDHCP stops the DHCP servers a rig's agent started (they outlive
// the agent on purpose) and removes their namespaces and veths, by the
// names kept in the agent's DHCP directory.
func (r *rig) cleanupDHCP() {
	dir := filepath.Join(r.dir, "agent", "dhcp")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join(dir, e.Name(), "pid")); err == nil {
			exec.Command("kill", strings.TrimSpace(string(b))).Run()
		}
		exec.Command("ip", "netns", "del", "cdhcp-"+e.Name()).Run()
		exec.Command("ip", "link", "del", "cdh"+e.Name()).Run()
	}
}

// sshEndpoint is a network namespace plugged into the rig's bridge as the
// guest of a Corral port bound to the rig's host, with the port's address:
// a machine on the tenant network to SSH from.
type sshEndpoint struct {
	ns, outer string
	ip        string
}

func (r *rig) sshEndpoint(network string) sshEndpoint {
	r.t.Helper()
	ctx := r.t.Context()
	p, err := client.Create[types.Port](ctx, r.api, "/v1/ports", types.PortCreate{Name: "ssh-client", Network: network, Project: "p1", Host: r.host}, "")
	if err != nil {
		r.t.Fatal(err)
	}
	sn, err := client.Get[types.Subnet](ctx, r.api, "/v1/subnets/"+p.FixedIPs[0].SubnetID)
	if err != nil {
		r.t.Fatal(err)
	}
	id := r.bridge[3:]
	e := sshEndpoint{ns: "hbs-" + id, outer: "hbs" + id + "o", ip: p.FixedIPs[0].IPAddress}
	inner := "hbs" + id + "i"
	r.t.Cleanup(func() {
		exec.Command("ip", "netns", "del", e.ns).Run()
		exec.Command("ip", "link", "del", e.outer).Run()
	})
	bits := sn.CIDR[strings.Index(sn.CIDR, "/"):]
	for _, c := range []string{
		"ip netns add " + e.ns,
		fmt.Sprintf("ip link add %s type veth peer name %s netns %s", e.outer, inner, e.ns),
		fmt.Sprintf("ip -n %s link set %s address %s", e.ns, inner, p.MACAddress),
		fmt.Sprintf("ovs-vsctl add-port %s %s -- set Interface %s external_ids:iface-id=%s", r.bridge, e.outer, e.outer, p.ID),
		fmt.Sprintf("ip link set %s up", e.outer),
		fmt.Sprintf("ip -n %s link set lo up; ip -n %s link set %s up; ip -n %s addr add %s%s dev %s", e.ns, e.ns, inner, e.ns, e.ip, bits, inner),
		// The userspace datapath does not complete offloaded checksums.
		fmt.Sprintf("ip netns exec %s ethtool -K %s tx off >/dev/null; ethtool -K %s tx off >/dev/null", e.ns, inner, e.outer),
	} {
		if out, err := exec.Command("sh", "-c", c).CombinedOutput(); err != nil {
			r.t.Fatalf("%s: %v: %s", c, err, out)
		}
	}
	return e
}

// ssh runs a command on debian@ip from the endpoint with the key; it
// returns the output (stdout and stderr) and whether it succeeded.
func (e sshEndpoint) ssh(key, ip, cmd string) (string, bool) {
	out, err := exec.Command("ip", "netns", "exec", e.ns, "ssh", "-i", key, "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
		"debian@"+ip, cmd).CombinedOutput()
	return string(out), err == nil
}

// TestCloudImageBootstrap is acceptance 1 of issue 11: a VM of the Debian
// cloud image (compute/guestimage/build-cloud.sh), created through the API
// with a keypair and user data on a VLAN tenant network, takes its IPAM
// address by DHCP (the host's dnsmasq acknowledged it; the user data prints
// the guest's addresses on the console), runs its user data (a marker on
// the console) and accepts SSH with the key from another machine on the
// network; a second VM created without the key refuses it.
func TestCloudImageBootstrap(t *testing.T) {
	imageDir := testenv.Require(t, "CORRAL_TEST_CLOUD_IMAGE", "the Debian cloud image (compute/guestimage/build-cloud.sh)")
	// CORRAL_TEST_CONFIG_DRIVE=configdrive runs the same test with an
	// OpenStack config drive (label config-2) instead of a NoCloud seed.
	seed := os.Getenv("CORRAL_TEST_CONFIG_DRIVE")
	if seed == "" {
		seed = "nocloud"
	}
	r := newRigWith(t, true, "--config-drive", seed)
	t.Cleanup(r.cleanupDHCP)
	ctx := t.Context()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	img, err := client.Create[types.Image](ctx, r.api, "/v1/images", types.ImageCreate{Name: "debian-12", DiskFormat: "qcow2"}, "")
	must(img, err)
	f, err := os.Open(filepath.Join(imageDir, "debian-12.qcow2"))
	must(f, err)
	defer f.Close()
	must(r.api.UploadImage(ctx, img.ID, f))
	r.flavor("cloud", types.FlavorCreate{VCPUs: 2, RAMMiB: 512, DiskGiB: 3})
	must(client.Create[types.Network](ctx, r.api, "/v1/networks", types.NetworkCreate{Name: "tenant", Project: "p1",
		SegmentType: "vlan", SegmentID: 731}, ""))
	must(client.Create[types.Subnet](ctx, r.api, "/v1/subnets", types.SubnetCreate{Name: "tenant-v4", Network: "tenant",
		CIDR: "10.83.0.0/24", DNSServers: []string{"10.83.0.53"}}, ""))

	keyDir := t.TempDir()
	key := filepath.Join(keyDir, "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "corral-test", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	must(pub, err)
	must(client.Create[types.Keypair](ctx, r.api, "/v1/keypairs", types.KeypairCreate{Name: "ops", Project: "p1", PublicKey: string(pub)}, ""))

	userData := func(name string) string {
		return base64.StdEncoding.EncodeToString([]byte(`#cloud-config
runcmd:
  - echo "CORRAL-USERDATA ` + name + ` host=$(hostname) addrs=$(ip -4 -o addr show scope global | awk '{print $4}' | tr '\n' ' ')" > /dev/ttyS0
`))
	}
	sshFrom := r.sshEndpoint("tenant")
	create := func(name, keyName string) (types.Server, time.Time) {
		in := types.ServerCreate{Name: name, Kind: types.KindVM, Project: "p1", Flavor: "cloud", Image: "debian-12",
			Networks: []string{"tenant"}, KeyName: keyName, UserData: userData(name)}
		r.waitPlaceable(in)
		t0 := time.Now()
		srv, err := client.Create[types.Server](ctx, r.api, "/v1/servers", in, "")
		must(srv, err)
		r.track(srv.ID)
		return srv, t0
	}
	withKey, t0 := create("cloud-key", "ops")
	without, _ := create("cloud-nokey", "")
	if len(withKey.KeyNames) != 1 || withKey.UserDataBytes == 0 || len(withKey.Addresses) != 1 {
		t.Fatalf("server %+v: want key ops, user data and one address", withKey)
	}
	ip, ip2 := withKey.Addresses[0].IP, without.Addresses[0].IP
	r.waitActive(withKey.ID)
	r.waitActive(without.ID)

	// SSH with the key: polled until sshd is up and has the key.
	var sshAt time.Duration
	deadline := time.Now().Add(cloudBootWait)
	for {
		out, ok := sshFrom.ssh(key, ip, "hostname; ip -4 -o addr show scope global")
		if ok {
			sshAt = time.Since(t0)
			if !strings.Contains(out, "cloud-key") || !strings.Contains(out, ip+"/24") {
				t.Errorf("the guest answered %q: want its hostname cloud-key and address %s/24", out, ip)
			}
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(r.consoleLog(withKey.ID))
			t.Fatalf("no SSH to %s with the key within %s: %s\nconsole:\n%s", ip, cloudBootWait, out, tail(string(b), 40))
		}
		time.Sleep(2 * time.Second)
	}
	line, err := waitForMarker(r.consoleLog(withKey.ID), "CORRAL-USERDATA cloud-key", cloudBootWait)
	must(nil, err)
	if !strings.Contains(line, "host=cloud-key") || !strings.Contains(line, ip+"/24") {
		t.Errorf("user data marker %q: want host=cloud-key and %s/24", line, ip)
	}
	markerAt := time.Since(t0)
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("cloud image, %s seed, 2 vCPU, 512 MiB, TCG: create → SSH accepted %.1f s, → user data marker %.1f s; load %s", seed,
		sshAt.Seconds(), markerAt.Seconds(), strings.Join(strings.Fields(string(load))[:3], " "))

	// The address came by DHCP: the host's server acknowledged exactly it.
	logs, _ := filepath.Glob(filepath.Join(r.dir, "agent", "dhcp", "*", "dnsmasq.log"))
	var acked bool
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		acked = acked || bytes.Contains(b, []byte("DHCPACK")) && bytes.Contains(b, []byte(ip+" "))
	}
	if !acked {
		t.Errorf("no DHCPACK of %s in the DHCP servers' logs %v", ip, logs)
	}

	// The VM without the key: up (its user data ran, with its own IPAM
	// address from DHCP), and refusing the key.
	line, err = waitForMarker(r.consoleLog(without.ID), "CORRAL-USERDATA cloud-nokey", cloudBootWait)
	must(nil, err)
	if !strings.Contains(line, ip2+"/24") {
		t.Errorf("user data marker %q: want the address %s/24", line, ip2)
	}
	deadline = time.Now().Add(cloudBootWait)
	for {
		out, ok := sshFrom.ssh(key, ip2, "true")
		if ok {
			t.Fatalf("the VM created without a keypair accepted the key")
		}
		if strings.Contains(out, "Permission denied") {
			t.Logf("the VM without the key refused it: %s", strings.TrimSpace(out))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh to %s neither refused nor accepted within %s: %s", ip2, cloudBootWait, out)
		}
		time.Sleep(2 * time.Second)
	}
}
