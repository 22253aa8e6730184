# Early boot hook of the simulated nodes' test image (image.sh): reads a
# NoCloud config drive (an ISO 9660 partition labelled cidata, written by
# the deploy agent) the way cloud-init would, since this busybox image has
# no cloud-init: the hostname from meta-data, and from network-config the
# first address and the gateway of the NIC whose MAC is eth0's. Without a
# drive the command line's settings stay (ip=dhcp). Sourced by /init.
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
  n=$(sed -n 's/^local-hostname: *//p' /cidata/meta-data)
  [ -z "$n" ] || NAME=$n
  i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  if [ -r /cidata/network-config ] && [ -e /sys/class/net/eth0 ]; then
    mac=$(cat /sys/class/net/eth0/address)
    set -- $(awk -v mac="\"$mac\"" '
      /macaddress:/ { m = ($2 == mac) }
      m && /^ *- [0-9.]+\/[0-9]+$/ && ip == "" { ip = $2 }
      m && /via:/ { gw = $2 }
      END { print ip, gw }' /cidata/network-config)
    if [ -n "${1:-}" ]; then IP=$1 MASK= DHCP= GW=${2:-}; fi
  fi
  echo "CONFIG-DRIVE $cd_dev name=$NAME ip=${IP:-none} gw=${GW:-none}" > /dev/console
elif [ -n "$cd_dev" ]; then
  echo "CONFIG-DRIVE $cd_dev: cannot mount it" > /dev/console
fi
