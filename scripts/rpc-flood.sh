#!/usr/bin/env bash
# The local API under a client that pipelines 200,000 contacts.list
# requests and never reads the answers, once one request per line and once
# in batches of 64: the daemon's RSS before, during and after, another
# client's latency meanwhile, and what connections beyond the cap see
# (scripts/rpcflood/main.go says what it checks; it exits 1 on a failure).
#
# Usage: scripts/rpc-flood.sh [BINARY|-] [rpcflood flags...]
# Without BINARY (or with "-"), builds ./cmd/p2pmsg without -race into a
# temporary directory: the daemon under test must be a plain build. The
# flags go to both runs (rpcflood -h lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf $tmp' EXIT
bin=${1:--}; [ $# -gt 0 ] && shift
if [ "$bin" = - ]; then go build -o $tmp/p2pmsg ./cmd/p2pmsg; bin=$tmp/p2pmsg; fi
go build -o $tmp/rpcflood ./scripts/rpcflood
status=0
for batch in 1 64; do
  echo "=== one flooding client, $([ $batch = 1 ] && echo 'one request per line' || echo "batches of $batch")"
  $tmp/rpcflood -bin "$bin" -batch $batch "$@" || status=1
  echo
done
exit $status
