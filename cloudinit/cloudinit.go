package cloudinit

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Labels of the filesystems cloud-init looks for.
const (
	LabelNoCloud     = "cidata"
	LabelConfigDrive = "config-2"
)

// Instance is what a guest learns at first boot.
type Instance struct {
	// ID is the instance-id: cloud-init runs its once-per-instance
	// modules again when it changes. Corral uses the server's ID.
	ID       string
	Hostname string
	// PublicKeys are authorized for the image's default user.
	PublicKeys []string
	// UserData is passed through unchanged (a #cloud-config document, a
	// script, a MIME multipart...); empty means none.
	UserData []byte
	NICs     []NIC
}

// NIC is one network interface, known by its MAC.
type NIC struct {
	MAC string
	// DHCP makes the guest ask DHCP for its address (the host answers
	// with exactly the addresses below); otherwise they are configured
	// statically.
	DHCP bool
	// Addresses are CIDRs ("10.0.0.5/24"); the first is the primary.
	Addresses  []string
	Gateway    string
	DNSServers []string
	// MTU, 0 for the default.
	MTU    int
	Routes []Route
}

// Route is a static route.
type Route struct {
	To  string // CIDR
	Via string
}

// Check validates an instance; Render and RenderConfigDrive call it.
func (in Instance) Check() error {
	if in.ID == "" || in.Hostname == "" {
		return fmt.Errorf("cloud-init instance: id and hostname are required")
	}
	for i, n := range in.NICs {
		if n.MAC == "" {
			return fmt.Errorf("cloud-init instance %s: nic %d has no MAC", in.ID, i)
		}
		for _, a := range n.Addresses {
			if _, err := netip.ParsePrefix(a); err != nil {
				return fmt.Errorf("cloud-init instance %s: nic %s: address %q: %w", in.ID, n.MAC, a, err)
			}
		}
		for _, r := range n.Routes {
			if _, err := netip.ParsePrefix(r.To); err != nil {
				return fmt.Errorf("cloud-init instance %s: nic %s: route to %q: %w", in.ID, n.MAC, r.To, err)
			}
		}
	}
	return nil
}

// Hostname returns a name valid as a hostname label: lower case, letters,
// digits and hyphens, at most 63 characters ("web_1.Prod" → "web-1-prod").
func Hostname(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	h := strings.Trim(b.String(), "-")
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-")
	}
	if h == "" {
		h = "guest"
	}
	return h
}

// Render returns the files of a NoCloud seed: "meta-data", "user-data"
// and "network-config" (omitted when the instance has no NIC).
func Render(in Instance) (map[string][]byte, error) {
	if err := in.Check(); err != nil {
		return nil, err
	}
	meta := struct {
		InstanceID    string   `json:"instance-id"`
		LocalHostname string   `json:"local-hostname"`
		PublicKeys    []string `json:"public-keys,omitempty"`
	}{in.ID, Hostname(in.Hostname), in.PublicKeys}
	files := map[string][]byte{"meta-data": mustJSON(meta), "user-data": in.UserData}
	if len(in.UserData) == 0 {
		// An empty file is valid, but some cloud-init versions warn
		// about it; an empty cloud-config says the same.
		files["user-data"] = []byte("#cloud-config\n{}\n")
	}
	if len(in.NICs) > 0 {
		files["network-config"] = mustJSON(NetworkConfig(in.NICs))
	}
	return files, nil
}

// NetworkConfig is cloud-init's network configuration version 2 (netplan
// form) of the NICs: each matched by MAC (the
// guest keeps its own interface names; eth0, eth1... are only keys).
func NetworkConfig(nics []NIC) map[string]any {
	eth := map[string]any{}
	for i, n := range nics {
		e := map[string]any{"match": map[string]string{"macaddress": strings.ToLower(n.MAC)}}
		if n.MTU > 0 {
			e["mtu"] = n.MTU
		}
		if n.DHCP {
			e["dhcp4"] = true
		} else {
			e["dhcp4"] = false
			if len(n.Addresses) > 0 {
				e["addresses"] = n.Addresses
			}
			var routes []map[string]string
			if n.Gateway != "" {
				routes = append(routes, map[string]string{"to": "0.0.0.0/0", "via": n.Gateway})
			}
			for _, r := range n.Routes {
				routes = append(routes, map[string]string{"to": r.To, "via": r.Via})
			}
			if len(routes) > 0 {
				e["routes"] = routes
			}
			if len(n.DNSServers) > 0 {
				e["nameservers"] = map[string][]string{"addresses": n.DNSServers}
			}
		}
		eth[fmt.Sprintf("eth%d", i)] = e
	}
	return map[string]any{"version": 2, "ethernets": eth}
}

// RenderConfigDrive returns the files of an OpenStack config drive (label
// "config-2"), by path: openstack/latest/meta_data.json, user_data (only
// with user data) and network_data.json.
func RenderConfigDrive(in Instance) (map[string][]byte, error) {
	if err := in.Check(); err != nil {
		return nil, err
	}
	keys := map[string]string{}
	for i, k := range in.PublicKeys {
		keys[fmt.Sprintf("key-%d", i)] = k
	}
	meta := map[string]any{"uuid": in.ID, "hostname": Hostname(in.Hostname), "name": in.Hostname, "public_keys": keys}
	type link struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		MAC  string `json:"ethernet_mac_address"`
		MTU  int    `json:"mtu,omitempty"`
	}
	type route struct {
		Network string `json:"network"`
		Netmask string `json:"netmask"`
		Gateway string `json:"gateway"`
	}
	type netw struct {
		ID       string  `json:"id"`
		Type     string  `json:"type"`
		Link     string  `json:"link"`
		IP       string  `json:"ip_address,omitempty"`
		Netmask  string  `json:"netmask,omitempty"`
		Routes   []route `json:"routes,omitempty"`
		Services []any   `json:"services,omitempty"`
	}
	nd := struct {
		Links    []link `json:"links"`
		Networks []netw `json:"networks"`
		Services []any  `json:"services"`
	}{Links: []link{}, Networks: []netw{}, Services: []any{}}
	for i, n := range in.NICs {
		id := fmt.Sprintf("eth%d", i)
		nd.Links = append(nd.Links, link{ID: id, Type: "phy", MAC: strings.ToLower(n.MAC), MTU: n.MTU})
		if n.DHCP || len(n.Addresses) == 0 {
			nd.Networks = append(nd.Networks, netw{ID: fmt.Sprintf("network%d", i), Type: "ipv4_dhcp", Link: id})
			continue
		}
		p := netip.MustParsePrefix(n.Addresses[0])
		nw := netw{ID: fmt.Sprintf("network%d", i), Type: "ipv4", Link: id, IP: p.Addr().String(), Netmask: netmask(p.Bits())}
		if n.Gateway != "" {
			nw.Routes = append(nw.Routes, route{Network: "0.0.0.0", Netmask: "0.0.0.0", Gateway: n.Gateway})
		}
		for _, r := range n.Routes {
			rp := netip.MustParsePrefix(r.To)
			nw.Routes = append(nw.Routes, route{Network: rp.Masked().Addr().String(), Netmask: netmask(rp.Bits()), Gateway: r.Via})
		}
		for _, d := range n.DNSServers {
			nw.Services = append(nw.Services, map[string]string{"type": "dns", "address": d})
		}
		nd.Networks = append(nd.Networks, nw)
	}
	files := map[string][]byte{
		"openstack/latest/meta_data.json":    mustJSON(meta),
		"openstack/latest/network_data.json": mustJSON(nd),
	}
	if len(in.UserData) > 0 {
		files["openstack/latest/user_data"] = in.UserData
	}
	return files, nil
}

// Paths returns the files' paths sorted, for writing them in a stable
// order.
func Paths(files map[string][]byte) []string {
	out := make([]string, 0, len(files))
	for p := range files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func netmask(bits int) string {
	var b [4]byte
	for i := 0; i < bits; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b).String()
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // plain data only
	}
	return append(b, '\n')
}

// Layouts of a config drive, as corral-agent's --config-drive and bare
// metal's baremetal.CloudInit name them.
const (
	LayoutNoCloud     = "nocloud"     // label cidata: meta-data, user-data, network-config
	LayoutConfigDrive = "configdrive" // label config-2: openstack/latest/*
)

// RenderLayout renders an instance in a layout ("" is NoCloud) and returns
// the label of the filesystem to write the files to, and the files.
func RenderLayout(layout string, in Instance) (string, map[string][]byte, error) {
	switch layout {
	case "", LayoutNoCloud:
		files, err := Render(in)
		return LabelNoCloud, files, err
	case LayoutConfigDrive:
		files, err := RenderConfigDrive(in)
		return LabelConfigDrive, files, err
	}
	return "", nil, fmt.Errorf("config drive layout %q: want %s or %s", layout, LayoutNoCloud, LayoutConfigDrive)
}
