#!/usr/bin/env bash
# Start-up to "ready" (listening, DHT bootstrapped against a local peer)
# and idle RSS of the p2pmsg daemon, on an unsealed store and on a sealed
# one (keys under a passphrase: the daemon runs Argon2id, 64 MiB, when it
# opens the store, and that memory must not stay with it).
#
# Usage: daemon-startup.sh BINARY [RUNS] [IDLE_SECONDS]
# Each run starts one unsealed and one sealed daemon, in alternating order,
# so that both see the same machine. Build BINARY without -race.
set -euo pipefail
bin=$1; runs=${2:-5}; idle=${3:-10}
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf $tmp' EXIT
pass=$tmp/passphrase
printf 'correct horse battery staple' >$pass; chmod 600 $pass

$bin --data $tmp/boot daemon --listen /ip4/127.0.0.1/tcp/0 --no-mdns --no-port-map --dht-mode server 2>$tmp/boot.log &
until $bin --data $tmp/boot id --json >$tmp/boot.json 2>/dev/null && grep -q tcp $tmp/boot.json; do sleep 0.05; done
boot=$(python3 -c 'import json;print(json.load(open("'$tmp'/boot.json"))["addrs"][0])')

# measure MODE RUN: one daemon from init to idle; prints one line.
measure() {
  local mode=$1 i=$2 d=$tmp/$1$2 seal=()
  [ $mode = sealed ] && seal=(--passphrase-file $pass)
  $bin --data $d "${seal[@]}" init >/dev/null   # identity made beforehand: start-up, not key generation
  local start=$(date +%s%N)
  $bin --data $d "${seal[@]}" daemon --listen /ip4/127.0.0.1/tcp/0 --no-mdns --no-port-map --bootstrap $boot 2>$d.log &
  local pid=$!
  until grep -q 'msg=ready' $d.log 2>/dev/null; do
    kill -0 $pid 2>/dev/null || { echo "daemon ($mode) died:"; cat $d.log; exit 1; }
    sleep 0.005
  done
  local ready=$(( ($(date +%s%N) - start) / 1000000 ))
  # The daemon warns at start when its keys are unsealed: check the store
  # is what this line claims.
  if grep -q 'stored unsealed' $d.log; then [ $mode = unsealed ]; else [ $mode = sealed ]; fi ||
    { echo "run $i: the $mode daemon's log disagrees:"; cat $d.log; exit 1; }
  local rss1=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  sleep $idle   # idle: bundle published, DHT refreshed
  # RssFile is the binary's pages, which vary with the page cache; RssAnon
  # is the heap, stacks and runtime: what a change of ours moves.
  local st; st=$(awk '{v[$1]=int($2/1024)} END {printf "RSS %3d MB (anon %3d, file %2d), peak %3d MB",
    v["VmRSS:"], v["RssAnon:"], v["RssFile:"], v["VmHWM:"]}' /proc/$pid/status)
  printf 'run %d %-8s ready after %4d ms; RSS at ready %3d MB; after %d s idle: %s\n' \
    $i $mode $ready $((rss1/1024)) $idle "$st"
  kill -INT $pid; wait $pid
}

for i in $(seq $runs); do
  if [ $((i % 2)) = 1 ]; then measure unsealed $i; measure sealed $i
  else measure sealed $i; measure unsealed $i; fi
done
