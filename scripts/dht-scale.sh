#!/usr/bin/env bash
# The scale benchmark of issue 12 (item 7): networks of 100, 300 and 1,000
# real nodes on this machine, in several worker processes, all on
# 127.0.0.1 over TCP: DHT lookup and first-contact latency (p50, p95),
# RSS, Go heap and file descriptors per node, join time, how each grows
# with N, and the targets (scripts/dhtscale/main.go says how it measures;
# it exits 1 when a target is missed or a network could not be measured).
#
# Usage: scripts/dht-scale.sh [dhtscale flags...]
#   scripts/dht-scale.sh                      # N = 100, 300, 1000 (over 90 minutes on 2 cores: 1,000 nodes
#                                             # took an hour to join; BENCHMARKS.md)
#   scripts/dht-scale.sh -n 100,300           # other sizes
#   scripts/dht-scale.sh -dht-mode server     # every node a server of both DHTs (by default
#                                             # a node on loopback serves only the LAN DHT)
#   scripts/dht-scale.sh -profile /tmp/prof   # CPU profiles of each phase, heap at the end
# Builds scripts/dhtscale without -race (memory and latency are what is
# measured) into a temporary directory. Run it on a quiet machine: the
# nodes share its cores, and each network's report gives the CPU the
# whole machine used beside the bench's own.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf $tmp' EXIT
go build -o $tmp/dhtscale ./scripts/dhtscale
at='not a git checkout'
if git rev-parse --git-dir >/dev/null 2>&1; then
  at="commit $(git rev-parse --short HEAD)"
  git diff --quiet HEAD -- node dht db e2e || at="$at, node/dht/db/e2e modified"
fi
echo "=== dht-scale ($at), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), ulimit -n $(ulimit -n)"
$tmp/dhtscale "$@"
