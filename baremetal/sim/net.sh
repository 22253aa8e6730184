#!/usr/bin/env bash
# Creates or removes a provisioning network for simulated nodes: an Open
# vSwitch bridge (userspace datapath) standing in for the top-of-rack
# switch, with corrald's address on its own port (IPv4 for DHCP/TFTP/HTTP,
# and an IPv6 prefix so that dnsmasq can send router advertisements;
# without them iPXE waits 15 s for IPv6 autoconfiguration). corrald's port
# is an access port of the provisioning VLAN; each node's NIC is a port of
# the bridge (node.sh) that corrald's switch driver (baremetal/ovs) puts on
# that VLAN or on the parking VLAN. No DHCP here: corrald's dnsmasq
# answers for enrolled MACs only.
#
#   net.sh create BRIDGE 10.79.5.1/24 fd00:79:5::1/64 [PROVISIONING_VLAN]   (default 100)
#   net.sh destroy BRIDGE
set -euo pipefail
case $1 in
create)
  br=$2 v4=$3 v6=$4 vlan=${5:-100}
  ovs-vsctl --timeout=10 add-br "$br" -- set bridge "$br" datapath_type=netdev -- set port "$br" tag="$vlan"
  sysctl -qw "net.ipv6.conf.$br.accept_dad=0" || true
  ip addr add "$v4" dev "$br"
  ip -6 addr add "$v6" dev "$br" nodad
  ip link set "$br" up ;;
destroy)
  ovs-vsctl --timeout=10 --if-exists del-br "$2" 2>/dev/null || true ;;
*) echo "usage: net.sh create|destroy BRIDGE ..." >&2; exit 2 ;;
esac
