#!/usr/bin/env bash
# dialkv against etcd in one sitting (issue 6): 3-node dialkv clusters (as
# ab.sh: raft namespace r1, 1 shard, --fsync always, driven by ./driver)
# and 3-member etcd clusters (Debian's etcd, driven at its leader by etcd's
# tools/benchmark as run.sh does), all started at once on loopback, rows
# alternating over every cluster, ROUNDS rounds. dialkv rows run DURATION
# seconds, etcd rows TOTAL puts; both 50 clients (CLIENTS), 16-byte keys
# over 100,000, 100-byte values. Per row: writes/s, p50/p99, the members'
# CPU µs per write (user+system from /proc) together and each, their
# thread context switches per write (voluntary + involuntary, every
# thread), load1. On a shared machine compare rows of one round, not runs.
#
#   go build -o /tmp/a/driver ./experiments/raft-vs-etcd/driver   # and etcd's benchmark: see lib.sh build_all
#   BENCH=/tmp/a/benchmark DRIVER=/tmp/a/driver experiments/raft-vs-etcd/vs-ab.sh \
#     d:dk=bin/dialkv e:etcd= d:dk1=bin/dialkv@GOMAXPROCS=1 e:etcd1=GOMAXPROCS=1
#
# An argument is d:LABEL=BINARY[@ENV][,param,value...] (a dialkv cluster:
# its node binary, environment variables for its nodes, namespace
# parameters) or e:LABEL=[ENV] (an etcd cluster; ENV space separated, e.g.
# GOMAXPROCS=1). Ports PORTBASE+200*i (PORTBASE 20000 by default; give
# runs at once different bases).
set -euo pipefail
OUT=${OUT:-$(mktemp -d /tmp/raft-vs-ab.XXXXXX)}
ROUNDS=${ROUNDS:-3}; CLIENTS=${CLIENTS:-50}; DURATION=${DURATION:-8}; TOTAL=${TOTAL:-20000}
PORTBASE=${PORTBASE:-20000}
BENCH=${BENCH:?BENCH=path of etcd tools/benchmark built (lib.sh build_all)}
DRIVER=${DRIVER:?DRIVER=path of experiments/raft-vs-etcd/driver built}
export ETCDCTL_API=3
mkdir -p "$OUT"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
declare -A NODES TARGET KIND
LABELS=(); c=0
. "$(dirname "$0")/lib.sh"
start_etcd() { # label P env
  local label=$1 P=$2 envs=$3 cluster="" eps="" i cp pp L=""
  for i in 1 2 3; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$((P+2*i-1))"; eps+="${eps:+,}127.0.0.1:$((P+2*i-2))"; done
  for i in 1 2 3; do
    cp=$((P+2*i-2)); pp=$((cp+1)); rm -rf "$OUT/$label-m$i.etcd"
    env $envs etcd --name m$i --data-dir "$OUT/$label-m$i.etcd" \
      --listen-client-urls http://127.0.0.1:$cp --advertise-client-urls http://127.0.0.1:$cp \
      --listen-peer-urls http://127.0.0.1:$pp --initial-advertise-peer-urls http://127.0.0.1:$pp \
      --initial-cluster "$cluster" --initial-cluster-token ab$label --initial-cluster-state new \
      --log-level warn > "$OUT/$label-m$i.log" 2>&1 &
    PIDS+=($!); NODES[$label]+="$! "
  done
  for _ in $(seq 300); do
    L=$(etcdctl --endpoints="$eps" endpoint status -w json 2>/dev/null | python3 -c '
import json,sys
for e in json.load(sys.stdin):
    if e["Status"]["leader"]==e["Status"]["header"]["member_id"]: print(e["Endpoint"])' 2>/dev/null) || true
    [ -n "$L" ] && break; sleep 0.2
  done
  [ -n "$L" ] || { echo "etcd cluster $label: no leader after 60 s" >&2; tail -n 5 "$OUT/$label"-m*.log >&2; exit 1; }
  TARGET[$label]=$L
}
for arg in "$@"; do
  kind=${arg%%:*}; arg=${arg#*:}; label=${arg%%=*}; rest=${arg#*=}
  LABELS+=("$label"); KIND[$label]=$kind; NODES[$label]=""
  P=$((PORTBASE + 200*c)); c=$((c+1))
  if [ "$kind" = d ]; then
    start_ab_spec "$label" "$P" "$rest" ""
    NODES[$label]=$AB_PIDS; TARGET[$label]=$AB_ADDRS
  else
    start_etcd "$label" "$P" "$rest"
  fi
done
echo "| round | cluster | writes/s | p50 ms | p99 ms | member CPU µs/write | each member | context switches/write, each | load1 |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  for label in "${LABELS[@]}"; do
    l=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(ticks ${NODES[$label]}); s0=$(switches ${NODES[$label]})
    if [ "${KIND[$label]}" = d ]; then
      "$DRIVER" --addrs "${TARGET[$label]}" --namespace r1 --workload write-only --clients "$CLIENTS" \
        --duration "${DURATION}s" --value-size 100 > "$OUT/out.json"
    else
      "$BENCH" --endpoints="${TARGET[$label]}" --conns "$CLIENTS" --clients "$CLIENTS" put --key-size 16 --val-size 100 \
        --key-space-size 100000 --total "$TOTAL" > "$OUT/out.txt" 2>&1
    fi
    t1=$(ticks ${NODES[$label]}); s1=$(switches ${NODES[$label]})
    python3 - "$OUT" "${KIND[$label]}" "$r" "$label" "$t0" "$t1" "$TICK_US" "$l" "$TOTAL" "$s0" "$s1" <<'PY'
import json, re, sys
out, kind, r, label, t0, t1, tick, l, total, s0, s1 = sys.argv[1:]
if kind == "d":
    j = json.load(open(out + "/out.json")); w = j["writes"]
    rps, p50, p99, ops = w["ops_per_sec"], w["p50_ms"], w["p99_ms"], max(w["ops"], 1)
else:
    t = open(out + "/out.txt").read().replace("\r", "\n")
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", t).group(1))
    q = lambda p: float(re.search(r"\s%s%% in ([\d.]+) secs" % p, t).group(1)) * 1000
    p50, p99, ops = q(50), q(99), int(total)
each = [(int(b) - int(a)) * int(tick) / ops for a, b in zip(t0.split(), t1.split())]
cs = [(int(b) - int(a)) / ops for a, b in zip(s0.split(), s1.split())]
print(f'| {r} | {label} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {sum(each):.0f} | ' + " / ".join(f"{x:.0f}" for x in each) +
      " | " + " / ".join(f"{x:.1f}" for x in cs) + f' | {l} |', flush=True)
PY
  done
done
