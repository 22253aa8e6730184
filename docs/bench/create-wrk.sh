#!/usr/bin/env bash
# Measures server creates against the real corrald binary on SQLite, with
# wrk (Debian's package) as the load generator in its own process: 8
# connections, each create placed on one of 100 hosts and claimed.
#   bash docs/bench/create-wrk.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
[ "$SECS" -le 60 ] || { echo "at most 60 s: the hosts' heartbeats go stale after that" >&2; exit 2; }
export PATH=/usr/local/go/bin:$PATH
command -v wrk >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
go build -o "$W/" ./cmd/corrald ./cmd/corralctl
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export CORRAL_ENDPOINT=http://127.0.0.1:$PORT CORRAL_TOKEN_FILE=$W/data/admin-token
"$W/corrald" --listen 127.0.0.1:$PORT --data-dir "$W/data" --log-level warn 2>"$W/corrald.log" &
for _ in $(seq 100); do curl -fs "$CORRAL_ENDPOINT/readyz" >/dev/null && break; sleep 0.1; done
C="$W/corralctl"
$C region create dc1 >/dev/null
$C zone create rack1 --region dc1 >/dev/null
$C aggregate create std --cpu-allocation-ratio 4 >/dev/null
$C project create bench >/dev/null
$C flavor create m1 --vcpus 1 --ram-mib 512 --disk-gib 1 >/dev/null
echo data >"$W/img"; $C image create tiny --disk-format raw --file "$W/img" >/dev/null
TOKEN=$(cat "$CORRAL_TOKEN_FILE")
# 100 hosts of 128 CPUs and 256 GiB, registered and heartbeating as agents.
for i in $(seq 100); do
  out=$(curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$CORRAL_ENDPOINT/v1/hosts/register" \
    -d "{\"name\":\"hv$i\",\"region\":\"dc1\",\"zone\":\"rack1\",\"aggregates\":[\"std\"],\"inventory\":{\"cpus\":128,\"ram_mib\":262144,\"disk_gib\":8000}}")
  id=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["host"]["id"], d["token"])')
  set -- $id
  curl -fsS -H "Authorization: Bearer $2" -H 'Content-Type: application/json' "$CORRAL_ENDPOINT/v1/hosts/$1/heartbeat" \
    -d '{"usage":{"mem_free_mib":250000}}'
done
cat >"$W/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"name":"bench","kind":"vm","project":"bench","flavor":"m1","image":"tiny"}'
local bad = 0
response = function(status) if status ~= 201 then bad = bad + 1 end end
done = function() if bad > 0 then io.stderr:write("non-201 answers: " .. bad .. "\n") end end
LUA
# The heartbeats above stay fresh (60 s) for a run of up to a minute.
wrk -t2 -c8 -d"${SECS}s" --latency -s "$W/post.lua" "$CORRAL_ENDPOINT/v1/servers"
echo "servers scheduled: $($C server list --all --state scheduled -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
