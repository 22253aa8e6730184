#!/usr/bin/env bash
# Creates or removes a simulated bare-metal node: a libvirt guest (TCG,
# qemu64) with an empty disk, booting from the network then the disk,
# SeaBIOS and iPXE on a serial console logged to DIR/NAME.serial.log, its
# NIC (fixed MAC) cabled to a switch port of the provisioning bridge, and
# its BMC: ipmi_sim on 127.0.0.1:PORT (see bmc.sh). The domain is
# transient and not started: the BMC powers it on (virsh create) and off
# (virsh destroy).
#
# The switch port is a persistent tap, NAMEt (at most 15 characters),
# added to the OVS bridge as an access port of the provisioning VLAN with
# external_ids:attached-mac=MAC; the guest's NIC opens it (interface type
# ethernet, managed='no'). Like a real switch port it outlives the
# machine's power cycles, so the VLAN corrald's switch driver gives it
# holds across them (a port libvirt adds at each start would not).
#
#   node.sh create DIR NAME MAC BRIDGE PORT USER PASSWORD [DISK_MIB] [VLAN]
#   node.sh destroy DIR NAME
#
# DIR must be reachable by libvirt's qemu user (not a 0700 test temp dir).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
V() { virsh -c qemu:///system -q "$@"; }
cmd=$1 dir=$2 name=$3
case $cmd in
create)
  mac=$4 br=$5 port=$6 user=$7 pass=$8 disk=${9:-1024} vlan=${10:-100}
  tap=${name:0:14}t
  ip tuntap add dev "$tap" mode tap
  ip link set "$tap" up
  ovs-vsctl --timeout=10 add-port "$br" "$tap" tag="$vlan" -- set interface "$tap" "external_ids:attached-mac=\"$mac\""
  mkdir -p "$dir"
  chmod 0755 "$dir"
  qemu-img create -q -f qcow2 "$dir/$name.qcow2" "${disk}M"
  chmod 0666 "$dir/$name.qcow2"
  cat > "$dir/$name.xml" <<XML
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='network'/><boot dev='hd'/><bios useserial='yes'/></os>
  <features><acpi/></features>
  <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/><source file='$dir/$name.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <interface type='ethernet'><mac address='$mac'/><target dev='$tap' managed='no'/><model type='virtio'/><driver name='qemu'><host csum='off'/></driver></interface>
    <serial type='unix'><source mode='bind' path='$dir/$name.sock'/><log file='$dir/$name.serial.log' append='on'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
XML
  "$here/bmc.sh" start "$dir/$name.bmc" "$name" "$dir/$name.xml" "$port" "$user" "$pass" ;;
destroy)
  "$here/bmc.sh" stop "$dir/$name.bmc" || true
  V destroy "$name" >/dev/null 2>&1 || true
  tap=${name:0:14}t
  ovs-vsctl --timeout=10 --if-exists del-port "$tap" >/dev/null 2>&1 || true
  ip link del "$tap" >/dev/null 2>&1 || true
  rm -f "$dir/$name.qcow2" "$dir/$name.sock" ;;
*) echo "usage: node.sh create|destroy DIR NAME ..." >&2; exit 2 ;;
esac
