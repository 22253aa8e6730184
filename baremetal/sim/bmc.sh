#!/usr/bin/env bash
# Starts or stops the virtual BMC (OpenIPMI's ipmi_sim) of a simulated
# bare-metal node: IPMI 2.0 lanplus on 127.0.0.1:PORT, user USER/PASSWORD,
# chassis control mapped to libvirt DOMAIN by vbmc.sh.
#
#   bmc.sh start DIR DOMAIN XML PORT USER PASSWORD   (prints the ipmi_sim PID)
#   bmc.sh stop DIR
#
# Use ipmitool with -C 3: without it ipmitool asks for cipher suites,
# which ipmi_sim never answers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=$1 dir=$2
case $cmd in
start)
  dom=$3 xml=$4 port=$5 user=$6 pass=$7
  mkdir -p "$dir/state"
  guid=$(printf 'c0a1%028x' "$port")  # 32 hex digits, or ipmi_sim exits
  cat > "$dir/lan.conf" <<CONF
name "$dom"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 $port
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid $guid
  endlan
  chassis_control "$here/vbmc.sh $dom $xml $dir/bootdev 0x20"
  user 2 true  "$user"   "$pass" admin    10       none md2 md5 straight
CONF
  printf 'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n' > "$dir/cmds.emu"
  cd "$dir"
  setsid ipmi_sim -c "$dir/lan.conf" -f "$dir/cmds.emu" -n -s "$dir/state" > "$dir/sim.log" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$dir/ipmi_sim.pid"
  for _ in $(seq 50); do
    ss -lun | grep -q "127.0.0.1:$port " && break
    kill -0 "$pid" 2>/dev/null || { echo "bmc.sh: ipmi_sim exited: $(cat "$dir/sim.log")" >&2; exit 1; }
    sleep 0.1
  done
  ss -lun | grep -q "127.0.0.1:$port " || { echo "bmc.sh: ipmi_sim does not listen on $port" >&2; exit 1; }
  echo "$pid" ;;
stop)
  if [ -f "$dir/ipmi_sim.pid" ]; then
    pid=$(cat "$dir/ipmi_sim.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/ipmi_sim.pid"
  fi ;;
*) echo "usage: bmc.sh start|stop DIR ..." >&2; exit 2 ;;
esac
