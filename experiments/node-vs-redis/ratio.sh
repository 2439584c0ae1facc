#!/usr/bin/env bash
# The experiment's batching gain under --fsync never, for A/B work on the
# batch path (issue 3, session 9): one fresh node of BIN, every key loaded
# (batches of 100), then `dialkv bench --io loop` single commands for
# DURATION, then --batch 100 for DURATION, on the same node (as main.go does,
# 70/30 GET/SET, 50 connections, 100-byte values, 100,000 keys). Prints both
# ops/s, the node's CPU µs per operation (/proc/PID/stat) and the bench's
# (its rusage, read by a Python parent) for each, the batch ÷ single ratio
# and the load average. Alternate binaries in one session:
#
#   for b in old new old new; do experiments/node-vs-redis/ratio.sh bin/dialkv-$b 18311 10s; done
#
# Usage: ratio.sh BIN PORT DURATION (needs python3).
set -euo pipefail
BIN=$1; PORT=$2; DUR=$3
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
"$BIN" node --id bench --listen 127.0.0.1:"$PORT" --data "$D" --fsync never --log-level warn >"$D/node.log" 2>&1 &
NP=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
common=(--addr "127.0.0.1:$PORT" --protocol binary --workload 70/30 --clients 50 --value-size 100
  --keys 100000 --rate 0 --progress 5s --json --io loop)
"$BIN" bench "${common[@]}" --batch 100 --duration 1ms --load=true >/dev/null 2>&1
res=""
for batch in 1 100; do
  c0=$(awk '{print $14+$15}' "/proc/$NP/stat")
  out=$(python3 - "$BIN" "$batch" "$DUR" "${common[@]}" <<'PY'
import subprocess, sys, resource, json
b, batch, dur = sys.argv[1:4]
out = subprocess.run([b, "bench"] + sys.argv[4:] + ["--batch", batch, "--duration", dur, "--load=false"], capture_output=True, text=True, check=True).stdout
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
r = json.loads(out)
print(r["ops_per_sec"], r["ops"], ru.ru_utime + ru.ru_stime)
PY
)
  c1=$(awk '{print $14+$15}' "/proc/$NP/stat")
  res="$res $out $((c1 - c0))"
done
kill "$NP"; wait "$NP" 2>/dev/null || true
python3 -c "
v = [float(x) for x in '$res'.split()]
o1, n1, b1, c1, o100, n100, b100, c100 = v
print('%s single %.0f ops/s (node %.1f, bench %.1f us/op)  batch100 %.0f ops/s (node %.2f, bench %.2f us/op)  ratio %.2fx  load %s' % (
    '$(basename "$BIN")', o1, c1*1e4/n1, b1*1e6/n1, o100, c100*1e4/n100, b100*1e6/n100, o100/o1, open('/proc/loadavg').read().split()[0]))"
