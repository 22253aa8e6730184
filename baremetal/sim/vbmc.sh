#!/usr/bin/env bash
# ipmi_sim's chassis_control for a simulated bare-metal node: maps IPMI
# chassis commands to a libvirt domain, the way OpenStack's VirtualBMC does.
#
#   vbmc.sh DOMAIN XML BOOTFILE MC get NAME...        prints name:value lines
#   vbmc.sh DOMAIN XML BOOTFILE MC set NAME VALUE...
#
# The domain is transient: power on creates it from XML (virsh create),
# power off destroys it. Nothing is ever defined, so no persistent state
# is left behind in libvirt.
#
# power 0|1, reset 1, shutdown 1, identify, boot none|pxe|default|cdrom|bios.
# Idempotent: a retransmitted "power 1" on a running domain succeeds. A
# non-zero exit is an IPMI error.
#
# The boot device is recorded in BOOTFILE, not written into the domain:
# the domain always tries the network first and then its disk, and the
# provisioning network decides (corrald's iPXE script boots the deploy
# ramdisk only for a node it is provisioning, and otherwise exits to the
# next boot device, the disk; DHCP answers enrolled MACs only). Rewriting
# the domain XML (virsh define) on every boot-device change was tried
# first: libvirtd 9.0 on the test machines sometimes took minutes over a
# define while other tests ran, and a BMC that hangs is worse than one
# that records.
dom=$1 xml=$2 bootfile=$3 mc=$4 op=$5
shift 5
V() { virsh -c qemu:///system -q "$@"; }
running() { [ "$(V domstate "$dom" 2>/dev/null)" = running ]; }
case $op in
get)
  for name in "$@"; do
    case $name in
      power) if running; then echo power:1; else echo power:0; fi ;;
      boot) echo "boot:$(cat "$bootfile" 2>/dev/null || echo pxe)" ;;
    esac
  done ;;
set)
  while [ $# -ge 2 ]; do
    name=$1 val=$2
    shift 2
    case $name in
      power)
        if [ "$val" = 1 ]; then running || V create "$xml" >/dev/null || running || exit 1
        elif running && ! V destroy "$dom" >/dev/null; then running && exit 1; fi ;;
      reset) V reset "$dom" >/dev/null || exit 1 ;;
      shutdown) V shutdown "$dom" >/dev/null || exit 1 ;;
      boot) case $val in pxe|default|cdrom|bios) echo "$val" > "$bootfile" || exit 1 ;; esac ;;
    esac
  done ;;
esac
exit 0
