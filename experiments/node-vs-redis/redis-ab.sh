#!/usr/bin/env bash
# ab.sh's twin for redis-server: a fresh server, keys loaded, one dialkv bench --protocol resp run
# (session 9, helper aof: Redis measured with the same load generator as the node, side by side).
# Usage: experiments/node-vs-redis/redis-ab.sh BIN PORT MODE(always|none) DURATION [extra bench flags]
set -euo pipefail
BIN=$1; PORT=$2; MODE=$3; DUR=$4; shift 4
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
ARGS=(--save "")
[ "$MODE" = always ] && ARGS+=(--appendonly yes --appendfsync always)
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$D" --daemonize no --loglevel warning "${ARGS[@]}" >"$D/r.log" 2>&1 &
NP=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
"$BIN" bench --addr 127.0.0.1:"$PORT" --protocol resp --clients 50 --keys 100000 --duration 1ms --load=true >/dev/null 2>&1
c0=$(awk '{print $14+$15}' /proc/$NP/stat)
OUT=$("$BIN" bench --addr 127.0.0.1:"$PORT" --protocol resp --clients 50 --keys 100000 --duration "$DUR" --load=false \
  --progress 100s --json "$@" 2>/dev/null)
c1=$(awk '{print $14+$15}' /proc/$NP/stat)
kill "$NP"; wait "$NP" 2>/dev/null || true
echo "$OUT" | python3 -c "
import json, sys
r = json.load(sys.stdin)
print('redis-%s ops/s=%.0f node_us/op=%.2f read_p50=%.3f read_p99=%.3f write_p99=%.3f load=%s' % (
    '$MODE', r['ops_per_sec'], ($c1 - $c0) * 1e4 / r['ops'],
    r['reads']['p50_ms'], r['reads']['p99_ms'], r['writes']['p99_ms'], open('/proc/loadavg').read().split()[0]))"
