#!/usr/bin/env bash
# Builds the test image deployed on simulated bare-metal nodes: the
# project's guest image (compute/guestimage/build.sh, SYSLINUX on a FAT
# disk) with its kernel command line set to configure the NIC by DHCP (a
# bare-metal OS gets its address from the provisioning network's DHCP),
# to skip the IO-APIC timer check that panics under loaded TCG
# (no_timer_check, as in build.sh) and to print "GUEST-READY bm-image" on
# the console when ready.
#
#   image.sh OUT_DIR     writes OUT_DIR/baremetal.qcow2
set -euo pipefail
out=${1:?usage: image.sh OUT_DIR}
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash "$repo/compute/guestimage/build.sh" "$work/img" >/dev/null
qemu-img convert -f qcow2 -O raw "$work/img/boot.qcow2" "$work/boot.img"
printf 'DEFAULT linux\nSERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL vmlinuz\n  INITRD initrd.gz\n  APPEND console=ttyS0 quiet no_timer_check ip=dhcp hostname=bm-image\n' > "$work/syslinux.cfg"
mcopy -o -i "$work/boot.img" "$work/syslinux.cfg" ::syslinux.cfg
mkdir -p "$out"
qemu-img convert -f raw -O qcow2 "$work/boot.img" "$out/baremetal.qcow2"
chmod 0644 "$out/baremetal.qcow2"
echo "built $out/baremetal.qcow2"
