#!/usr/bin/env bash
# Builds Corral's deploy ramdisk: the project's guest kernel and busybox
# initramfs (compute/guestimage/build.sh, from Debian packages) with the
# static deploy agent added. The initramfs's /init brings the NIC up by
# DHCP (ip=dhcp on the command line the iPXE script gives) and then runs
# the agent when the command line says corral.mode=.
#
#   build.sh OUT_DIR     writes OUT_DIR/vmlinuz and OUT_DIR/initrd.gz
set -euo pipefail
out=${1:?usage: build.sh OUT_DIR}
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/corral-deploy" ./baremetal/cmd/corral-deploy)
cat > "$work/hook.sh" <<'HOOK'
# corral deploy ramdisk: run the deploy agent when corrald asked for it.
if grep -q 'corral.mode=' /proc/cmdline; then
  /bin/corral-deploy
fi
HOOK
mkdir -p "$out"
bash "$repo/compute/guestimage/build.sh" "$work/img" --extra "$work/corral-deploy:/bin/corral-deploy" --hook "$work/hook.sh" >/dev/null
cp "$work/img/vmlinuz" "$work/img/initrd.gz" "$out/"
chmod 0644 "$out/vmlinuz" "$out/initrd.gz"
echo "built $out/vmlinuz and $out/initrd.gz ($(du -h "$out/initrd.gz" | cut -f1))"
