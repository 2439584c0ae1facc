#!/usr/bin/env bash
# Per-request syscalls and context switches of a node (issue 3 profiling): one
# fresh node of BIN, keys loaded, a 16 s `dialkv bench --io loop` (50 clients),
# and `perf stat` of the node for 8 s of it:
# counts per operation (operations = bench ops/s x 8 s; divide by the `read`
# column for per-request figures, one read per request on the event loop) and
# the node CPU µs per operation over the whole bench. Alternate binaries as
# with ab.sh:
#
#   for b in old new old new; do experiments/node-vs-redis/syscalls.sh bin/dialkv-$b always $b; done
#
# Usage: syscalls.sh BIN FSYNC TAG [PORT] (needs perf and its syscall tracepoints).
# The measurement is syscalls-vs-redis.sh's (KIND node, a 16 s run).
set -euo pipefail
B=$1; F=$2; T=$3; P=${4:-18441}
FSYNC=$F exec "$(dirname "$0")/syscalls-vs-redis.sh" node "$B" "$T" "$P" 16s
