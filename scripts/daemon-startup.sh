#!/usr/bin/env bash
# Start-up to "ready" (listening, DHT bootstrapped against a local peer)
# and idle RSS of the p2pmsg daemon. Usage: startup.sh BINARY RUNS
set -euo pipefail
bin=$1; runs=${2:-5}
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf $tmp' EXIT
$bin --data $tmp/boot daemon --listen /ip4/127.0.0.1/tcp/0 --no-mdns --no-port-map --dht-mode server 2>$tmp/boot.log &
until $bin --data $tmp/boot id --json >$tmp/boot.json 2>/dev/null && grep -q tcp $tmp/boot.json; do sleep 0.05; done
boot=$(python3 -c 'import json;print(json.load(open("'$tmp'/boot.json"))["addrs"][0])')
for i in $(seq $runs); do
  d=$tmp/n$i
  $bin --data $d init >/dev/null   # identity made beforehand: start-up, not key generation
  start=$(date +%s%N)
  $bin --data $d daemon --listen /ip4/127.0.0.1/tcp/0 --no-mdns --no-port-map --bootstrap $boot 2>$d.log &
  pid=$!
  until grep -q 'msg=ready' $d.log 2>/dev/null; do sleep 0.005; done
  ready=$(( ($(date +%s%N) - start) / 1000000 ))
  sleep 10   # idle: bundle published, DHT refreshed
  rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  echo "run $i: ready after ${ready} ms; idle RSS after 10 s: $((rss/1024)) MB"
  kill -INT $pid; wait $pid
done
