#!/usr/bin/env bash
# One open-loop run against a fresh dialkv node or a fresh redis-server, both
# processes measured (docs/performance.md, issue 3, session 10, helper tail2):
# keys loaded, `dialkv bench --io loop --rate RATE` (RESP for Redis, same
# generator and flags), and per operation: the server's and the generator's
# CPU µs and context switches (server from /proc, generator from `perf stat`),
# the server's thread count at the end, read p50/p99/p99.9, missed sends and
# the load average. With PERF=1, `perf sched record -a` covers the run and the
# run directory is kept for schedwaits.py (KEEP=1 keeps it without perf).
# Alternate servers and builds in one sitting, as with ab.sh:
#
#   for i in 1 2 3 4 5; do
#     experiments/node-vs-redis/openab.sh bin/dialkv 14010 11263 8s dialkv
#     experiments/node-vs-redis/openab.sh redis 14020 11263 8s redis
#   done
#
# Usage: openab.sh BIN|redis PORT RATE DURATION TAG [GENERATOR_BIN]
# Environment: NODE_ENV (e.g. "GOGC=400 GODEBUG=gctrace=1", the node's),
# BENCH_ENV (the generator's), NODE_FLAGS (extra `dialkv node` flags), PERF,
# KEEP, PROGRESS (the bench's --progress, default 100s; with PROGRESS=1s the
# line also gives the median over the run's seconds of each second's read p99,
# sec_p99, which one VM stall of ~100 ms moves by one second only, not the
# whole run's p99). fsync never; Redis
# without persistence. GENERATOR_BIN defaults to BIN (to dialkv on PATH for
# redis).
set -euo pipefail
S=$1; PORT=$2; RATE=$3; DUR=$4; TAG=$5
if [ "$S" = redis ]; then GB=${6:-dialkv}; else GB=${6:-$S}; fi
D=$(mktemp -d)
if [ "$S" = redis ]; then
  redis-server --port "$PORT" --bind 127.0.0.1 --dir "$D" --daemonize no --loglevel warning \
    --save "" --appendonly no >"$D/server.log" 2>&1 &
  PROTO=(--protocol resp)
else
  env ${NODE_ENV:-} "$S" node --id ab --listen 127.0.0.1:"$PORT" --data "$D" --fsync never \
    --log-level warn ${NODE_FLAGS:-} >"$D/server.log" 2>&1 &
  PROTO=()
fi
NP=$!
# A failing step (set -e) must not leave the server or a recorder running.
trap 'kill "$NP" ${PP:-} 2>/dev/null || true' EXIT
echo "$NP" >"$D/server.pid"
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
"$GB" bench --addr 127.0.0.1:"$PORT" "${PROTO[@]}" --clients 50 --keys 100000 --batch 100 \
  --duration 1ms --load=true >/dev/null 2>&1
sleep 0.5
cpu() { awk '{print $14+$15}' /proc/$NP/stat; }
switches() { cat /proc/$NP/task/*/status | awk '/ctxt_switches/{s+=$2} END{print s}'; }
c0=$(cpu); s0=$(switches)
if [ "${PERF:-0}" = 1 ]; then
  perf sched record -a -o "$D/sched.data" -- sleep 600 >/dev/null 2>&1 &
  PP=$!
  sleep 1
fi
env ${BENCH_ENV:-} perf stat -x, -e task-clock,context-switches -o "$D/generator.stat" -- \
  "$GB" bench --addr 127.0.0.1:"$PORT" "${PROTO[@]}" --clients 50 --keys 100000 --duration "$DUR" \
  --load=false --io loop --rate "$RATE" --progress "${PROGRESS:-100s}" --json >"$D/bench.json" 2>"$D/bench.err" &
PS=$!
sleep 0.2
pgrep -P "$PS" >"$D/generator.pid" || true # perf stat's child: the generator
wait "$PS"
threads=$(ls /proc/$NP/task | wc -l)
c1=$(cpu); s1=$(switches)
if [ "${PERF:-0}" = 1 ]; then kill -INT "$PP"; wait "$PP" 2>/dev/null || true; fi
kill "$NP"; wait "$NP" 2>/dev/null || true
python3 - "$D" "$c0" "$c1" "$s0" "$s1" "$threads" "$TAG" <<'PY'
import json, sys, time
d, c0, c1, s0, s1, threads, tag = sys.argv[1:]
r = json.load(open(d + '/bench.json'))
g = {}
for line in open(d + '/generator.stat'):
    p = line.strip().split(',')
    if len(p) > 3 and p[0][:1].isdigit():
        g[p[2]] = float(p[0])
ops = r['ops']
secs = sorted(i['read_p99_ms'] for i in r.get('intervals') or [])
sec_p99 = (secs[(len(secs) - 1) // 2] + secs[len(secs) // 2]) / 2 if len(secs) > 1 else r['reads']['p99_ms']
print('%s %s ops/s=%.0f read p50/p99/p99.9=%.3f/%.3f/%.3f sec_p99=%.3f write_p99=%.3f server_us/op=%.2f '
      'generator_us/op=%.2f server_cs/op=%.3f generator_cs/op=%.3f server_threads=%s missed=%s load=%s' % (
          tag, time.strftime('%H:%M:%S', time.gmtime()), r['ops_per_sec'], r['reads']['p50_ms'],
          r['reads']['p99_ms'], r['reads']['p999_ms'], sec_p99, r['writes']['p99_ms'],
          (int(c1) - int(c0)) * 1e4 / ops, g.get('task-clock', 0) * 1e3 / ops,
          (int(s1) - int(s0)) / ops, g.get('context-switches', 0) / ops, threads, r.get('missed', '?'),
          open('/proc/loadavg').read().split()[0]))
PY
if [ "${PERF:-0}" = 1 ] || [ "${KEEP:-0}" = 1 ]; then echo "kept: $D"; else rm -rf "$D"; fi
