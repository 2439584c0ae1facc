#!/usr/bin/env bash
# Where a raft write's time goes (issue 6): ab.sh's clusters and load (one
# 3-node cluster per argument, --fsync always, 1 shard, CLIENTS clients of
# 100-byte SETs, rows alternating), and in every row a Go execution trace of
# each node (TRACE seconds from 2 s into the row, over --metrics'
# /debug/pprof/trace). After the last round tracepath.py reads the traces
# (slow: about a minute per trace; run after the rows so it does not load
# them) and prints, per row, the driver's writes/s, p50 and p99 and a table
# per node: the LogDB's fdatasync, the step worker's time split (running,
# runnable, in the LogDB save, idle), how long a received message waits for
# the step worker, and the wake delays of the send goroutine, the apply
# worker and the completion goroutine (tracepath.py's header).
#
#   DRIVER=/tmp/a/driver experiments/raft-vs-etcd/trace.sh main=/tmp/a/dialkv p1=/tmp/a/dialkv@GOMAXPROCS=1
#
# Arguments as ab.sh's: label=binary[@ENV][,param,value,...]. Ports
# PORTBASE+200*i (PORTBASE 20000 by default), each cluster P..P+125.
# The trace itself costs the nodes CPU: compare rows traced alike, not with
# ab.sh's figures.
set -euo pipefail
OUT=${OUT:-$(mktemp -d /tmp/raft-trace.XXXXXX)}
DURATION=${DURATION:-8}
TRACE=${TRACE:-3}
ROUNDS=${ROUNDS:-1}
CLIENTS=${CLIENTS:-50}
PORTBASE=${PORTBASE:-20000}
NSPARAMS=${NSPARAMS:-}
DRIVER=${DRIVER:?DRIVER=path of experiments/raft-vs-etcd/driver built}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
. "$HERE/lib.sh"
declare -A NODES ADDRS
LABELS=()
start_ab_clusters "$@"
ROWS=()
for r in $(seq "$ROUNDS"); do
  for label in "${LABELS[@]}"; do
    row="$OUT/r$r-$label"; mkdir -p "$row"
    l=$(cut -d' ' -f1 /proc/loadavg)
    curls=()
    i=0; for a in ${ADDRS[$label]//,/ }; do
      port=${a##*:}
      (sleep 2; curl -s -o "$row/n$i.trace" "http://127.0.0.1:$((port+5))/debug/pprof/trace?seconds=$TRACE") & curls+=($!); i=$((i+1))
    done
    "$DRIVER" --addrs "${ADDRS[$label]}" --namespace r1 --workload write-only --clients "$CLIENTS" --duration "${DURATION}s" --value-size 100 > "$row/out.json"
    for p in "${curls[@]}"; do wait "$p" || true; done
    echo "$l" > "$row/load1"
    ROWS+=("$r $label $row")
  done
done
for x in "${ROWS[@]}"; do
  set -- $x
  row=$3
  python3 - "$row/out.json" "$1" "$2" "$(cat "$row/load1")" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); w = j["writes"]
print(f'\nround {sys.argv[2]}, {sys.argv[3]}: {w["ops_per_sec"]:.0f} writes/s, p50 {w["p50_ms"]:.2f} ms, p99 {w["p99_ms"]:.2f} ms, errors {j["errors"]}, load1 {sys.argv[4]}\n')
PY
  python3 "$HERE/tracepath.py" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["writes"]["ops_per_sec"])' "$row/out.json")" \
    n1="$row/n0.trace" n2="$row/n1.trace" n3="$row/n2.trace" | tail -n +2
done | tee "$OUT/trace.md"
