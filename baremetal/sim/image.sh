#!/usr/bin/env bash
# Builds the test image deployed on simulated bare-metal nodes: the
# project's guest (compute/guestimage/build.sh) on a disk with an MBR
# partition table (partition 1: the FAT filesystem SYSLINUX boots from),
# so that the deploy agent can add its config drive as partition 2, as on
# a real cloud image. Its kernel command line configures the NIC by DHCP
# (a bare-metal OS without bootstrap asks the network), skips the IO-APIC
# timer check that panics under loaded TCG (no_timer_check, as in
# build.sh); an early hook (configdrive.sh) reads the config drive, as
# cloud-init would, for the hostname and the NIC's IPAM address. It prints
# "GUEST-READY NAME addr=…" on the console when ready, NAME being the
# server's name from the config drive (bm-image without one).
#
#   image.sh OUT_DIR     writes OUT_DIR/baremetal.qcow2
set -euo pipefail
out=${1:?usage: image.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -r "$mbr" ] || { echo "image.sh: $mbr is missing (apt-get install syslinux-common)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash "$repo/compute/guestimage/build.sh" "$work/img" --early-hook "$here/configdrive.sh" --modules "cdrom isofs" >/dev/null
printf 'DEFAULT linux\nSERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL vmlinuz\n  INITRD initrd.gz\n  APPEND console=ttyS0 quiet no_timer_check ip=dhcp hostname=bm-image\n' > "$work/syslinux.cfg"
# 1 MiB for the table and the boot code, then a 32 MiB FAT16 partition.
disk=$work/disk.img
truncate -s 33M "$disk"
mformat -i "$disk@@1M" -v CORRAL -T 65536 -h 64 -s 32 -H 2048 ::
syslinux --install --offset 1048576 "$disk"
mcopy -i "$disk@@1M" "$work/syslinux.cfg" ::syslinux.cfg
mcopy -i "$disk@@1M" "$work/img/vmlinuz" ::vmlinuz
mcopy -i "$disk@@1M" "$work/img/initrd.gz" ::initrd.gz
dd if="$mbr" of="$disk" bs=440 count=1 conv=notrunc status=none
# Partition 1: active, FAT16 LBA (0x0e), LBA 2048, 65536 sectors.
printf '\x80\xfe\xff\xff\x0e\xfe\xff\xff\x00\x08\x00\x00\x00\x00\x01\x00' | dd of="$disk" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$disk" bs=1 seek=510 conv=notrunc status=none
mkdir -p "$out"
qemu-img convert -f raw -O qcow2 "$disk" "$out/baremetal.qcow2"
chmod 0644 "$out/baremetal.qcow2"
echo "built $out/baremetal.qcow2"
