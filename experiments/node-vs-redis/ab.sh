#!/usr/bin/env bash
# A/B helper for node performance work: one fresh node of BIN, keys loaded,
# one measured `dialkv bench` run; prints ops/s, the node's CPU µs per
# operation (from /proc/PID/stat) and the load average. Alternate binaries
# in one session and compare the CPU column (ops/s depends on the share of
# the shared machine a run got):
#
#   for b in old new old new; do experiments/node-vs-redis/ab.sh bin/dialkv-$b 18311 never 1 8s; done
#
# Usage: ab.sh BIN PORT FSYNC BATCH DURATION [extra dialkv bench flags]
# (node-vs-redis runs the bench with --io loop; pass it here to match.)
set -euo pipefail
BIN=$1; PORT=$2; FSYNC=$3; BATCH=$4; DUR=$5; shift 5
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
"$BIN" node --id ab --listen 127.0.0.1:"$PORT" --data "$D" --fsync "$FSYNC" --log-level warn >"$D/node.log" 2>&1 &
NP=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
"$BIN" bench --addr 127.0.0.1:"$PORT" --clients 50 --keys 100000 --duration 1ms --load=true >/dev/null 2>&1
c0=$(awk '{print $14+$15}' /proc/$NP/stat)
OUT=$("$BIN" bench --addr 127.0.0.1:"$PORT" --clients 50 --keys 100000 --duration "$DUR" --load=false \
  --batch "$BATCH" --progress 100s --json "$@" 2>/dev/null)
c1=$(awk '{print $14+$15}' /proc/$NP/stat)
kill "$NP"; wait "$NP" 2>/dev/null || true
echo "$OUT" | python3 -c "
import json, sys
r = json.load(sys.stdin)
print('%s fsync=%s batch=%s ops/s=%.0f node_us/op=%.2f read_p50=%.3f read_p99=%.3f write_p99=%.3f load=%s' % (
    '$(basename "$BIN")', '$FSYNC', $BATCH, r['ops_per_sec'], ($c1 - $c0) * 1e4 / r['ops'],
    r['reads']['p50_ms'], r['reads']['p99_ms'], r['writes']['p99_ms'], open('/proc/loadavg').read().split()[0]))"
