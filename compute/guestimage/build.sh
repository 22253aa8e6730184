#!/usr/bin/env bash
# Builds Corral's tiny test guest from Debian packages, offline apart from
# Debian's apt mirror: the cloud kernel plus a busybox initramfs whose /init
# configures the NIC, starts small servers and prints a readiness marker on
# the serial console.
#
#   build.sh OUT_DIR [--extra SRC:DEST]... [--hook FILE] [--early-hook FILE] [--modules "M..."]
#
# Writes OUT_DIR/vmlinuz, OUT_DIR/initrd.gz and OUT_DIR/boot.qcow2 (a 32 MiB
# FAT disk that SYSLINUX boots from under SeaBIOS, holding the two). Takes
# about a second once the packages are cached (CORRAL_DEB_CACHE, default
# /var/cache/corral/debs).
#
# --extra copies a file into the initramfs (e.g. a static deploy agent);
# --hook adds a shell fragment that /init sources after networking is up
# and before it prints the marker; --early-hook one that it sources before
# networking, after the command line and SMBIOS are read (it may change
# NAME, IP, MASK, GW and DHCP); --modules adds kernel modules (insmod'ed
# after the virtio ones, e.g. "isofs").
#
# The guest learns its name and address, in this order of precedence, from
#   * SMBIOS OEM strings (type 11) "corral.hostname=NAME", "corral.ip=CIDR",
#     "corral.gw=IP": corral-agent sets these from the control plane's port,
#     the way cloud-init's nocloud source reads SMBIOS;
#   * the kernel command line: hostname=NAME, ip=CLIENT::GW:MASK:NAME:DEV:off
#     or ip=dhcp.
# With neither it keeps only its IPv6 link-local address.
#
# Marker, on /dev/console:
#   GUEST-READY NAME addr=CIDR disks=[vda ...] uptime=SECONDS
set -euo pipefail

KVER=6.1.0-56-cloud-amd64
# The kernel command line of the disk image (SYSLINUX), for guests that
# boot from it; tests that boot the kernel directly should pass the same.
CMDLINE="console=ttyS0 quiet no_timer_check"
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net virtio_blk"

out=${1:?usage: build.sh OUT_DIR [--extra SRC:DEST]... [--hook FILE] [--early-hook FILE] [--modules "M..."]}
shift
extras=() hook= early=
while [ $# -gt 0 ]; do
  case $1 in
    --extra) extras+=("$2"); shift 2 ;;
    --hook) hook=$2; shift 2 ;;
    --early-hook) early=$2; shift 2 ;;
    --modules) MODULES="$MODULES $2"; shift 2 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

for t in dpkg-deb qemu-img mformat mcopy syslinux gzip; do
  command -v "$t" >/dev/null || { echo "build.sh: $t is missing (apt-get install qemu-utils mtools syslinux)" >&2; exit 1; }
done

cache=${CORRAL_DEB_CACHE:-/var/cache/corral/debs}
mkdir -p "$cache" "$out"
fetch() { # fetch PACKAGE: the .deb, downloaded once
  local f
  f=$(ls "$cache"/"$1"_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$f" ]; then
    (cd "$cache" && apt-get download "$1" >/dev/null 2>&1) || {
      apt-get update -qq && (cd "$cache" && apt-get download "$1" >/dev/null)
    }
    f=$(ls "$cache"/"$1"_*.deb | head -1)
  fi
  echo "$f"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$(fetch linux-image-$KVER)" "$work/k"
dpkg-deb -x "$(fetch busybox-static)" "$work/bb"
bb=$work/bb/bin/busybox

R=$work/root
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,tmp,lib/modules,www,etc/corral}
cp "$bb" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
for m in $MODULES; do
  f=$(find "$work/k/lib/modules/$KVER" -name "$m.ko*" | head -1)
  [ -n "$f" ] || { echo "build.sh: module $m not in the kernel package" >&2; exit 1; }
  case $f in *.xz) xz -dc "$f" > "$R/lib/modules/$m.ko" ;; *) cp "$f" "$R/lib/modules/$m.ko" ;; esac
done
if command -v iperf3 >/dev/null; then # throughput tests; optional
  cp -L "$(command -v iperf3)" "$R/bin/iperf3"
  for l in $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"; done
fi
echo 'root:x:0:0:root:/:/bin/sh' > "$R/etc/passwd"
for e in "${extras[@]}"; do
  mkdir -p "$R$(dirname "${e#*:}")"; cp -L "${e%%:*}" "$R${e#*:}"; chmod +x "$R${e#*:}"
done
[ -z "$hook" ] || cp "$hook" "$R/etc/corral/hook.sh"
[ -z "$early" ] || cp "$early" "$R/etc/corral/early.sh"

cat > "$R/bin/udhcpc.script" <<'SCRIPT'
#!/bin/sh
case $1 in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -z "$router" ] || ip route replace default via "${router%% *}" dev "$interface"
    [ -z "$hostname" ] || hostname "$hostname"
    echo "$ip/$mask" > /tmp/addr ;;
esac
exit 0
SCRIPT
chmod +x "$R/bin/udhcpc.script"

cat > "$R/init" <<SCRIPT
#!/bin/sh
export PATH=/bin:/sbin
MODULES="$MODULES"
SCRIPT
cat >> "$R/init" <<'SCRIPT'
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts; mount -t devpts devpts /dev/pts
for m in $MODULES; do insmod /lib/modules/$m.ko 2>/dev/null; done
ip link set lo up

NAME=guest IP= GW= MASK= DHCP=
for a in $(cat /proc/cmdline); do
  case $a in
    hostname=*) NAME=${a#hostname=} ;;
    ip=dhcp) DHCP=1 ;;
    ip=*) IFS=: read -r IP _ GW MASK _ <<EOF2
${a#ip=}
EOF2
      ;;
  esac
done
OEM=/sys/firmware/dmi/entries/11-0/raw
if [ -r $OEM ]; then
  for kv in $(strings -n 3 $OEM | grep '^corral\.'); do
    case $kv in
      corral.hostname=*) NAME=${kv#corral.hostname=} ;;
      corral.ip=*) IP=${kv#corral.ip=}; MASK=; DHCP= ;;
      corral.gw=*) GW=${kv#corral.gw=} ;;
    esac
  done
fi
[ ! -r /etc/corral/early.sh ] || . /etc/corral/early.sh
hostname "$NAME"

i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ADDR=none
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  if [ -n "$DHCP" ]; then
    udhcpc -i eth0 -q -n -t 10 -s /bin/udhcpc.script >/dev/null 2>&1 && ADDR=$(cat /tmp/addr)
  elif [ -n "$IP" ]; then
    if [ -n "$MASK" ]; then eval $(ipcalc -p "$IP" "$MASK"); IP=$IP/$PREFIX; fi
    case $IP in */*) ;; *) IP=$IP/24 ;; esac
    ip addr add "$IP" dev eth0 && ADDR=$IP
    [ -z "$GW" ] || ip route add default via "$GW" dev eth0
  fi
fi

mkdir -p /www; echo "hello from $NAME" > /www/index.html
httpd -p 80 -h /www
command -v iperf3 >/dev/null && iperf3 -s -D >/dev/null 2>&1
(while :; do nc -l -p 5001 > /dev/null; done) &
(while :; do nc -l -p 7 -e /bin/cat; done) &
[ ! -r /etc/corral/hook.sh ] || . /etc/corral/hook.sh

DISKS=$(cd /sys/block && ls -d vd* 2>/dev/null | tr '\n' ' ')
echo "GUEST-READY $NAME addr=$ADDR disks=[${DISKS% }] uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console
stty -F /dev/ttyS0 cols 400 2>/dev/null
while :; do setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'; done
SCRIPT
chmod +x "$R/init"

cp "$work/k/boot/vmlinuz-$KVER" "$out/vmlinuz"
(cd "$R" && find . | "$bb" cpio -o -H newc 2>/dev/null | gzip -9) > "$out/initrd.gz"

img=$work/boot.img
truncate -s 32M "$img"
mformat -i "$img" -v CORRAL -T 65536 -h 64 -s 32 ::
syslinux --install "$img"
# no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
# check can miss its ticks and panic ("IO-APIC + timer doesn't work");
# the emulated timer works, so skip the check (cloud images do the same).
printf 'DEFAULT linux\nSERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL vmlinuz\n  INITRD initrd.gz\n  APPEND %s\n' "$CMDLINE" > "$work/syslinux.cfg"
mcopy -i "$img" "$work/syslinux.cfg" ::syslinux.cfg
mcopy -i "$img" "$out/vmlinuz" ::vmlinuz
mcopy -i "$img" "$out/initrd.gz" ::initrd.gz
qemu-img convert -O qcow2 "$img" "$out/boot.qcow2.tmp"
mv "$out/boot.qcow2.tmp" "$out/boot.qcow2"
chmod 0644 "$out/vmlinuz" "$out/initrd.gz" "$out/boot.qcow2"
echo "built $out/boot.qcow2 ($(du -h "$out/boot.qcow2" | cut -f1)), vmlinuz, initrd.gz"
