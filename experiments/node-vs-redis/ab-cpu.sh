#!/usr/bin/env bash
# A/B helper for the batch path (issue 3, session 9): ab.sh with --fsync never
# and --io loop, plus the load generator's CPU. One fresh node of BIN, keys
# loaded, one measured `dialkv bench --batch BATCH --io loop` run of DURATION;
# prints ops/s, the node's CPU µs per operation (from /proc/PID/stat), the
# bench's CPU µs per operation (its rusage, read by a Python parent) and the
# load average. Alternate binaries in one session and compare the two CPU
# columns (ops/s depends on the share of the shared machine a run got):
#
#   for b in old new old new; do experiments/node-vs-redis/ab-cpu.sh bin/dialkv-$b 18311 100 8s; done
#
# Usage: ab-cpu.sh BIN PORT BATCH DURATION (needs python3).
set -euo pipefail
BIN=$1; PORT=$2; BATCH=$3; DUR=$4
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
"$BIN" node --id ab --listen 127.0.0.1:"$PORT" --data "$D" --fsync never --log-level warn >"$D/node.log" 2>&1 &
NP=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
"$BIN" bench --addr 127.0.0.1:"$PORT" --clients 50 --keys 100000 --duration 1ms --load=true >/dev/null 2>&1
c0=$(awk '{print $14+$15}' "/proc/$NP/stat")
OUT=$(python3 - "$BIN" "$PORT" "$BATCH" "$DUR" <<'PY'
import subprocess, sys, resource, json
b, port, batch, dur = sys.argv[1:]
out = subprocess.run([b, "bench", "--addr", "127.0.0.1:"+port, "--clients", "50", "--keys", "100000", "--duration", dur,
    "--load=false", "--batch", batch, "--progress", "100s", "--json", "--io", "loop"], capture_output=True, text=True, check=True).stdout
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
r = json.loads(out); r["bench_cpu_s"] = ru.ru_utime + ru.ru_stime
print(json.dumps(r))
PY
)
c1=$(awk '{print $14+$15}' "/proc/$NP/stat")
kill "$NP"; wait "$NP" 2>/dev/null || true
echo "$OUT" | python3 -c "
import json, sys
r = json.load(sys.stdin)
print('%s batch=%s ops/s=%.0f node_us/op=%.2f bench_us/op=%.2f read_p99=%.3f load=%s' % (
    '$(basename "$BIN")', $BATCH, r['ops_per_sec'], ($c1 - $c0) * 1e4 / r['ops'], r['bench_cpu_s']*1e6/r['ops'],
    r['reads']['p99_ms'], open('/proc/loadavg').read().split()[0]))"
