#!/usr/bin/env bash
# The attacks of issue 11's acceptance (items 1 and 2) against a p2pmsg
# daemon in a process of its own (scripts/attack/main.go says what each
# measures; it exits 1 when a bound is not met):
#   streams            20 peers keep idle, prefix-only and trickling message
#                      streams open for 30 s
#   streams (burst)    20 peers open 60 such streams each at once, as
#                      node's TestIdleStreamsCannotCutANodeOff does
#   strangers          2,000 fresh identities, a first message of 100 bytes each
#   strangers (60 KB)  the same with 60 KB bodies
# With --extra, two attacks beyond the acceptance's: streams that send a
# 64 KiB frame at just above the victim's minimum rate, and strangers
# whose first message is the largest let through (8 KiB).
#
# Usage: scripts/attack.sh [--extra] [BINARY|-] [attack flags...]
# Without BINARY (or with "-"), builds ./cmd/p2pmsg without -race into a
# temporary directory: the victim's memory and latency are what is
# measured. The flags go to every run.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=0; [ "${1:-}" = --extra ] && { extra=1; shift; }
tmp=$(mktemp -d); trap 'rm -rf $tmp' EXIT
bin=${1:--}; [ $# -gt 0 ] && shift
if [ "$bin" = - ]; then go build -o $tmp/p2pmsg ./cmd/p2pmsg; bin=$tmp/p2pmsg; fi
go build -o $tmp/attack ./scripts/attack
status=0
run() {
  echo "=== attack $* ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
  $tmp/attack "$@" || status=1
  echo
}
run streams -bin "$bin" "$@"
run streams -bin "$bin" -conc 60 -per 60 "$@"
# Strangers past the victim's handshake budget (one per 5 s, 50 at once)
# are told to retry later: a flood does not wait, so each tries 3 times.
run strangers -bin "$bin" -retries 2 "$@"
run strangers -bin "$bin" -body 61440 "$@"
if [ $extra = 1 ]; then
  run streams -bin "$bin" -kinds paced -duration 20s "$@"
  run strangers -bin "$bin" -body 8192 "$@"
fi
exit $status
