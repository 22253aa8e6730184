package baremetal

import (
	"fmt"
	"net"
	"sort"
	"strings"
)

// RamdiskBoot is what the iPXE script of a node being provisioned needs.
type RamdiskBoot struct {
	// BaseURL is corrald's provisioning HTTP server, e.g.
	// "http://10.79.0.1:8089".
	BaseURL string
	NodeID  string
	Name    string
	State   string
	Mode    string // types.Agent*
	Token   string
}

// IPXEChain is the script DHCP hands iPXE: it asks corrald for the
// script of the NIC it booted from.
func IPXEChain(baseURL string) string {
	return "#!ipxe\nchain " + baseURL + "/ipxe?mac=${netX/mac}\n"
}

// IPXERamdisk is the script of a node corrald is provisioning: it boots
// the deploy ramdisk, telling the agent where to report, as which node,
// with which token and for what.
func IPXERamdisk(b RamdiskBoot) string {
	args := []string{"console=ttyS0", "quiet", "ip=dhcp", "hostname=corral-deploy",
		"corral.url=" + b.BaseURL, "corral.node=" + b.NodeID, "corral.token=" + b.Token, "corral.mode=" + b.Mode}
	return fmt.Sprintf("#!ipxe\necho corral: node %s is %s: booting the deploy ramdisk (%s)\n"+
		"kernel %s/ramdisk/vmlinuz initrd=initrd.gz %s\ninitrd --name initrd.gz %s/ramdisk/initrd.gz\nboot\n",
		b.Name, b.State, b.Mode, b.BaseURL, strings.Join(args, " "), b.BaseURL)
}

// IPXELocal is the script of a node corrald is not provisioning: iPXE
// exits, and the firmware boots the next device (the disk).
func IPXELocal(name, state string) string {
	return fmt.Sprintf("#!ipxe\necho corral: node %s is %s: booting from the local disk\nexit\n", name, state)
}

// DHCPHost is one enrolled NIC and its fixed provisioning address.
type DHCPHost struct {
	MAC string
	IP  string
}

// DHCPHosts renders a dnsmasq dhcp-hostsfile: one "MAC,IP" line per
// enrolled NIC, sorted so that an unchanged set gives identical bytes.
func DHCPHosts(hosts []DHCPHost) string {
	lines := make([]string, 0, len(hosts))
	for _, h := range hosts {
		lines = append(lines, h.MAC+","+h.IP)
	}
	sort.Strings(lines)
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// DnsmasqConfig is the provisioning network's DHCP, TFTP and RA service.
type DnsmasqConfig struct {
	Interface string
	// Subnet is the provisioning IPv4 subnet; only its hosts file's
	// entries get addresses ("static" range: unknown MACs get no answer).
	Subnet    *net.IPNet
	BootURL   string // the iPXE chain script's URL
	TFTPRoot  string // holds undionly.kpxe for NICs without iPXE
	HostsFile string
	LeaseFile string
	PIDFile   string
	LogFile   string
}

// Dnsmasq renders dnsmasq's configuration.
func Dnsmasq(c DnsmasqConfig) string {
	mask := net.IP(c.Subnet.Mask).String()
	lines := []string{
		"# written by corrald: the provisioning network. Only enrolled MACs get an answer.",
		"port=0", // no DNS
		// Stay root: the hosts file, re-read on SIGHUP, lives in corrald's
		// private data directory, which the "nobody" dnsmasq drops to cannot
		// read. DNS, the usual attack surface, is off.
		"user=root",
		"interface=" + c.Interface,
		"bind-interfaces",
		"except-interface=lo",
		"dhcp-range=" + c.Subnet.IP.String() + ",static," + mask + ",1h",
		"dhcp-hostsfile=" + c.HostsFile,
		"dhcp-option=option:router", // no default route on the provisioning network
		// iPXE waits 15 s for IPv6 autoconfiguration without router
		// advertisements on the link.
		"dhcp-range=::,constructor:" + c.Interface + ",ra-only",
		"enable-ra",
		"dhcp-userclass=set:ipxe,iPXE",
		"dhcp-boot=tag:ipxe," + c.BootURL,
		"dhcp-boot=tag:!ipxe,undionly.kpxe",
		"enable-tftp",
		"tftp-root=" + c.TFTPRoot,
		"dhcp-leasefile=" + c.LeaseFile,
		"pid-file=" + c.PIDFile,
		"log-dhcp",
		"log-facility=" + c.LogFile,
	}
	return strings.Join(lines, "\n") + "\n"
}
