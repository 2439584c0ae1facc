#!/usr/bin/env bash
# Side-by-side A/B of dialkv builds or namespace parameters under the raft
# write load of run.sh (issue 6): one 3-node cluster per argument (raft
# namespace r1, 1 shard, --fsync always), all started at once on loopback;
# rows alternate between the clusters, ROUNDS rounds of DURATION seconds of
# CLIENTS-client SETs (16-byte keys over 100,000, 100-byte values, the
# driver of run.sh). Per row: writes/s, p50/p99, CPU µs per write of the
# three node processes together and of each (user+system from /proc:
# steadier than writes/s on a shared machine; the leader is the busiest),
# errors, load1, each node's thread context switches per write (voluntary
# + involuntary, every thread: the goroutine hand-offs that wake a
# thread). PROFILE=1: a CPU profile of
# every node during the first round ($OUT/pprof-<label>-n<j>.pprof).
#
#   go build -o /tmp/a/dialkv ./cmd/dialkv     # each build to compare (e.g. from git archive)
#   go build -o /tmp/a/driver ./experiments/raft-vs-etcd/driver
#   DRIVER=/tmp/a/driver experiments/raft-vs-etcd/ab.sh before=/tmp/a/dialkv-old after=/tmp/a/dialkv
#   DRIVER=/tmp/a/driver experiments/raft-vs-etcd/ab.sh s1k=/tmp/a/dialkv s10k=/tmp/a/dialkv,snapshot-entries,10000
#
# An argument is label=binary[@ENV][,param,value,...] (environment
# variables of that cluster's nodes, space separated, e.g.
# GOMAXPROCS=1; namespace parameters of that cluster; NSPARAMS, comma
# separated, for those without). Ports
# PORTBASE+200*i, PORTBASE 20000 by default (below the kernel's ephemeral
# range; run.sh and profile.sh use 23790-27500): give two A/B runs at once
# different bases, e.g. PORTBASE=10000.
set -euo pipefail
OUT=${OUT:-$(mktemp -d /tmp/raft-ab.XXXXXX)}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-50}
PORTBASE=${PORTBASE:-20000}
NSPARAMS=${NSPARAMS:-}
DRIVER=${DRIVER:?DRIVER=path of experiments/raft-vs-etcd/driver built}
mkdir -p "$OUT"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
. "$(dirname "$0")/lib.sh"
declare -A NODES ADDRS
LABELS=()
start_ab_clusters "$@"
echo "| round | build | writes/s | p50 ms | p99 ms | node CPU µs/write | each node (n1 / n2 / n3) | errors | load1 | context switches/write, each node |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  for label in "${LABELS[@]}"; do
    curls=()
    if [ -n "${PROFILE:-}" ] && [ "$r" = 1 ]; then
      i=0; for a in ${ADDRS[$label]//,/ }; do
        port=${a##*:}; curl -s -o "$OUT/pprof-$label-n$i.pprof" "http://127.0.0.1:$((port+5))/debug/pprof/profile?seconds=$DURATION" & curls+=($!); i=$((i+1))
      done
    fi
    l=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(ticks ${NODES[$label]}); s0=$(switches ${NODES[$label]})
    "$DRIVER" --addrs "${ADDRS[$label]}" --namespace r1 --workload write-only --clients "$CLIENTS" --duration "${DURATION}s" --value-size 100 > "$OUT/out.json"
    t1=$(ticks ${NODES[$label]}); s1=$(switches ${NODES[$label]})
    for p in "${curls[@]}"; do wait "$p" || true; done
    python3 - "$OUT/out.json" "$r" "$label" "$t0" "$t1" "$TICK_US" "$l" "$s0" "$s1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); w = j["writes"]
r, label, t0, t1, tick, l, s0, s1 = sys.argv[2:]
ops = max(w["ops"], 1)
each = [(int(b) - int(a)) * int(tick) / ops for a, b in zip(t0.split(), t1.split())]
print(f'| {r} | {label} | {w["ops_per_sec"]:.0f} | {w["p50_ms"]:.2f} | {w["p99_ms"]:.2f} | {sum(each):.0f} | ' +
      " / ".join(f"{x:.0f}" for x in each) + f' | {j["errors"]} | {l} | ' +
      " / ".join(f"{(int(b) - int(a)) / ops:.1f}" for a, b in zip(s0.split(), s1.split())) + ' |')
PY
  done
done
