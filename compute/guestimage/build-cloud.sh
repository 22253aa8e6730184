#!/usr/bin/env bash
# Builds a stock-style Debian 12 cloud image for Corral's tests from Debian
# packages only (debootstrap from the host's apt mirror): systemd,
# cloud-init (NoCloud and ConfigDrive datasources), openssh-server,
# systemd-networkd + systemd-resolved, linux-image-cloud-amd64, on one ext4
# partition booted by EXTLINUX from an MBR.
#
#   build-cloud.sh OUT_DIR
#
# Writes OUT_DIR/debian-12.qcow2 (compressed, 2 GiB virtual). Takes 2-5
# minutes and ~1.2 GiB of scratch space (CORRAL_BUILD_DIR, default a
# temporary directory under /var/tmp). Needs root, debootstrap, sfdisk
# (fdisk), extlinux, syslinux-common, e2fsprogs and qemu-utils.
#
# The image is a stock cloud image with a few rig choices that make it boot
# faster under TCG (documented in docs/compute.md): ed25519 host keys only,
# no growpart/resize, no keys printed to the console, no timers, and
# datasource_list [NoCloud, ConfigDrive, None] so cloud-init does not probe
# a metadata service. Users log in as "debian" with the instance's keys.
set -euo pipefail

out=${1:?usage: build-cloud.sh OUT_DIR}
mirror=${MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}
size=${SIZE:-2G}
# TCG: no_timer_check skips the APIC timer check that fails on slow
# emulated CPUs; quiet saves ~6 s of serial output under TCG.
cmdline="console=tty0 console=ttyS0,115200 no_timer_check quiet"

work=${CORRAL_BUILD_DIR:-$(mktemp -d /var/tmp/corral-cloud.XXXXXX)}
mkdir -p "$work"
cleanup() { set +e; mountpoint -q "$work/mnt" && umount "$work/mnt"; rm -rf "$work"; }
trap cleanup EXIT
r=$work/rootfs

pkgs=linux-image-cloud-amd64,systemd-sysv,udev,dbus,iproute2,netbase,systemd-resolved,openssh-server,sudo
# python3-cffi-backend: debootstrap cannot resolve cryptography's virtual dependency.
pkgs=$pkgs,cloud-init,cloud-guest-utils,python3-cffi-backend
echo "debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase --include=$pkgs bookworm "$r" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; exit 1; }

# Generalize like a stock image: debootstrap copied the host's name and
# resolver; host keys and machine-id would be shared by every clone.
echo localhost >"$r/etc/hostname"
ln -sf ../run/systemd/resolve/stub-resolv.conf "$r/etc/resolv.conf"
echo LANG=C.UTF-8 >"$r/etc/default/locale"
: >"$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id" "$r"/etc/ssh/ssh_host_*
cat >"$r/etc/cloud/cloud.cfg.d/01_image.cfg" <<'EOF'
# Corral test image (compute/guestimage/build-cloud.sh).
locale: C.UTF-8
manage_etc_hosts: true
grub_dpkg: {enabled: false}
datasource_list: [NoCloud, ConfigDrive, None]
# Rig choices for TCG: one host key type, no disk growing, no keys on the console.
ssh_genkeytypes: [ed25519]
growpart: {mode: "off"}
resize_rootfs: false
ssh: {emit_keys_to_console: false}
no_ssh_fingerprints: true
ssh_pwauth: false
EOF
# cloud-init renders systemd-networkd files; Debian leaves networkd disabled.
chroot "$r" systemctl enable systemd-networkd systemd-resolved >/dev/null 2>&1
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
  man-db.timer systemd-networkd-wait-online.service getty@tty1.service; do
  chroot "$r" systemctl mask "$u" >/dev/null 2>&1 || true
done
chroot "$r" apt-get clean
rm -rf "$r"/var/lib/apt/lists/* "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/var/cache/debconf/*-old

uuid=$(cat /proc/sys/kernel/random/uuid)
echo "UUID=$uuid / ext4 rw,discard,errors=remount-ro 0 1" >"$r/etc/fstab"
mkdir -p "$r/boot/extlinux"
printf 'SERIAL 0 115200\nDEFAULT debian\nPROMPT 0\nTIMEOUT 0\nLABEL debian\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND root=UUID=%s ro %s\n' \
  "$uuid" "$cmdline" >"$r/boot/extlinux/extlinux.conf"

# Disk: MBR + one bootable partition at 1 MiB, filled by mke2fs -d (no
# mount); only extlinux --install needs a loop mount.
img=$work/disk.raw
truncate -s "$size" "$img"
echo 'start=2048, type=83, bootable' | sfdisk -q "$img"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$img" bs=440 count=1 conv=notrunc status=none
kib=$(($(stat -c %s "$img") / 1024 - 1024))
mkfs.ext4 -q -F -L cloudimg-rootfs -U "$uuid" -O ^64bit -E offset=1048576 -d "$r" "$img" "${kib}k"
mkdir -p "$work/mnt"
mount -o loop,offset=1048576 "$img" "$work/mnt"
extlinux --install "$work/mnt/boot/extlinux" >/dev/null 2>&1
umount "$work/mnt"
mkdir -p "$out"
qemu-img convert -c -O qcow2 "$img" "$out/debian-12.qcow2.tmp"
chmod 644 "$out/debian-12.qcow2.tmp"
mv "$out/debian-12.qcow2.tmp" "$out/debian-12.qcow2"
ls -l "$out/debian-12.qcow2" >&2
