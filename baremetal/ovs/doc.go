// Package ovs is a baremetal.SwitchPort on Open vSwitch: the simulated
// top-of-rack switch of the tests and the all-in-one setup. A node's NIC
// is a port of an OVS bridge (a persistent tap of the simulated node, or
// the port libvirt adds for a guest), found by its interface's
// external_ids:attached-mac. On the provisioning network, the port is an
// access port of the provisioning VLAN (the VLAN of corrald's own port,
// where dnsmasq and the HTTP server listen); off it, an access port of
// the parking VLAN, where nothing answers, until the fabric driver puts
// it on a tenant network.
//
// Commands run through ovs-vsctl with a timeout (go-openvswitch has no
// "find" and no port tag), through an exec function that tests replace.
package ovs
