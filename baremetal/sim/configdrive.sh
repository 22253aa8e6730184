# Early boot hook of the simulated nodes' test image (image.sh): reads a
# NoCloud config drive (an ISO 9660 partition labelled cidata, written by
# the deploy agent from package cloudinit's files, which are JSON) the way
# cloud-init would, since this busybox image has no cloud-init: the
# hostname and the SSH keys from meta-data, the user data's size, and from
# network-config the first address and the gateway of the NIC whose MAC is
# eth0's. Without a drive the command line's settings stay (ip=dhcp).
# Sourced by /init.
cd_dev= i=0
while [ -z "$cd_dev" ] && [ $i -lt 30 ]; do
  for b in /sys/class/block/vd*[0-9]; do
    [ -e "$b" ] || continue
    l=$(dd if=/dev/${b##*/} bs=2048 skip=16 count=1 2>/dev/null | dd bs=1 skip=40 count=32 2>/dev/null | tr -d ' ')
    [ "$l" != cidata ] || cd_dev=/dev/${b##*/}
  done
  [ -n "$cd_dev" ] || { sleep 0.1; i=$((i+1)); }
done
if [ -n "$cd_dev" ] && mkdir -p /cidata && mount -t iso9660 -o ro "$cd_dev" /cidata; then
  n=$(sed -n 's/^ *"local-hostname": *"\([^"]*\)".*/\1/p' /cidata/meta-data)
  [ -z "$n" ] || NAME=$n
  # public-keys: one "type key comment" string a line; the comment of the
  # first is printed.
  keys=$(awk '/"public-keys"/ { k = 1; next } k && /^ *\]/ { k = 0 } k { n++ } END { print n + 0 }' /cidata/meta-data)
  key1=$(awk '/"public-keys"/ { k = 1; next } k { gsub(/^ *"|",?$/, ""); sub(/^[^ ]* [^ ]* ?/, ""); print; exit }' /cidata/meta-data)
  ud=$(wc -c < /cidata/user-data)
  i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  if [ -r /cidata/network-config ] && [ -e /sys/class/net/eth0 ]; then
    mac=$(cat /sys/class/net/eth0/address)
    # Each "ethN": { … } block: its MAC, first address and first route's
    # gateway (the default route comes first); keys are sorted, so the
    # MAC is known only at the block's end.
    set -- $(awk -v mac="$mac" '
      function flush() { if (m == mac && ip == "") { ip = a; gw = g } }
      /^    "eth[0-9]+": \{/ { flush(); m = ""; a = ""; g = "" }
      /"macaddress":/ { v = $2; gsub(/[",]/, "", v); m = v }
      /^ *"[0-9.]+\/[0-9]+",?$/ && a == "" { v = $1; gsub(/[",]/, "", v); a = v }
      /"via":/ && g == "" { v = $2; gsub(/[",]/, "", v); g = v }
      END { flush(); print ip, gw }' /cidata/network-config)
    if [ -n "${1:-}" ]; then IP=$1 MASK= DHCP= GW=${2:-}; fi
  fi
  echo "CONFIG-DRIVE $cd_dev name=$NAME ip=${IP:-none} gw=${GW:-none} keys=$keys key1=${key1:-none} user-data=$ud" > /dev/console
elif [ -n "$cd_dev" ]; then
  echo "CONFIG-DRIVE $cd_dev: cannot mount it" > /dev/console
fi
