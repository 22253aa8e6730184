#!/usr/bin/env bash
# Creates or removes a provisioning network for simulated nodes: a Linux
# bridge with corrald's address on it (IPv4 for DHCP/TFTP/HTTP, and an IPv6
# prefix so that dnsmasq can send router advertisements; without them iPXE
# waits 15 s for IPv6 autoconfiguration). No DHCP here: corrald's dnsmasq
# answers for enrolled MACs only.
#
#   net.sh create BRIDGE 10.79.5.1/24 fd00:79:5::1/64
#   net.sh destroy BRIDGE
set -euo pipefail
case $1 in
create)
  br=$2 v4=$3 v6=$4
  ip link add "$br" type bridge stp_state 0 forward_delay 0
  sysctl -qw "net.ipv6.conf.$br.accept_dad=0" || true
  ip addr add "$v4" dev "$br"
  ip -6 addr add "$v6" dev "$br" nodad
  ip link set "$br" up ;;
destroy)
  ip link del "$2" 2>/dev/null || true ;;
*) echo "usage: net.sh create|destroy BRIDGE ..." >&2; exit 2 ;;
esac
