#!/usr/bin/env bash
# Where a raft write's time and CPU go, side by side with etcd (issue 6):
# three dialkv nodes (one raft namespace, 1 shard, --fsync always) and then
# three etcd members, each loaded with writes (SET / put, 16-byte keys,
# 100-byte values) at 1 and at 50 clients. For every member it reports
#   - fsync-family calls (fsync + fdatasync) per acknowledged write and
#     their median duration, counted with `perf trace` (skipped when perf
#     is missing or not permitted), and
#   - CPU time (user + system, /proc/PID/stat) per write, in µs: more
#     robust than ops/s on a loaded machine;
# and, with PROFILE=1, a 50-client CPU profile of every dialkv node
# (pprof over --metrics) under $OUT/pprof/. Prints a Markdown table and
# writes it to $OUT/profile.md.
#
#   experiments/raft-vs-etcd/profile.sh                  # DURATION=5s per row
#   NSPARAMS=snapshot-entries,10000 experiments/raft-vs-etcd/profile.sh   # namespace parameters (comma separated)
#
# Ports PORTBASE to PORTBASE+230 (PORTBASE 26379 by default: below the
# kernel's ephemeral range, apart from run.sh's); give runs at once
# different bases. The load generator's own CPU per write (the driver /
# etcd's benchmark, user+system) is a column of its own: on 2 cores it
# competes with the members.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/raft-profile.XXXXXX)}
DURATION=${DURATION:-5}
CLIENTS=${CLIENTS:-"1 50"}
mkdir -p "$OUT"
. experiments/raft-vs-etcd/lib.sh
start_work raft-profile-work
PERF=1
if ! command -v perf >/dev/null || ! timeout 2 perf trace -e fdatasync -- true >/dev/null 2>&1; then
  echo "perf trace not usable: no fsync counts" >&2; PERF=
fi

build_all

# measure NAME CLIENTS OPSFILE PIDS... -- COMMAND...: runs COMMAND (the load)
# while counting fsyncs and CPU of PIDS; the load writes its op count to
# OPSFILE (one number); appends a row to $WORK/rows.
measure() {
  local name=$1 c=$2 opsf=$3; shift 3
  local pids=()
  while [ "$1" != "--" ]; do pids+=("$1"); shift; done; shift
  local tracers=() i=0
  if [ -n "$PERF" ]; then
    for p in "${pids[@]}"; do
      perf trace -p "$p" -e fsync,fdatasync -o "$WORK/pt.$i" >/dev/null 2>&1 & tracers+=($!); i=$((i+1))
    done
    sleep 0.5
  fi
  local l; l=$(cut -d' ' -f1 /proc/loadavg)
  local t0; t0=$(ticks "${pids[@]}")
  "$@"
  local t1; t1=$(ticks "${pids[@]}")
  for t in "${tracers[@]}"; do kill -INT "$t" 2>/dev/null || true; done
  for t in "${tracers[@]}"; do wait "$t" 2>/dev/null || true; done
  python3 - "$name" "$c" "$(cat "$opsf")" "$t0" "$t1" "$TICK_US" "$l" "$WORK" "${#pids[@]}" "$PERF" "$(cat "$WORK/loadcpu")" >> "$WORK/rows" <<'PY'
import re, sys
name, c, line, t0, t1, tick, load, work, n, perf, loadcpu = sys.argv[1:]
ops, ops_s, p50, p99 = line.split()
ops = max(int(ops), 1)
cpu = [(int(b) - int(a)) * int(tick) / ops for a, b in zip(t0.split(), t1.split())]
fs = []
for i in range(int(n)):
    if not perf:
        fs.append("n/a"); continue
    d = sorted(float(m.group(1)) for m in re.finditer(r'\(\s*([\d.]+) ms\): \S+ f(?:data)?sync', open(f"{work}/pt.{i}").read()))
    fs.append(f"{len(d)/ops:.2f} (med {d[len(d)//2]:.2f} ms)" if d else "0")
print(f"| {name} | {c} | {float(ops_s):.0f} | {float(p50):.2f} | {float(p99):.2f} | " +
      " / ".join(f"{x:.0f}" for x in cpu) + f" (sum {sum(cpu):.0f}) | " +
      f"{sum(float(x) for x in loadcpu.split()) * 1e6 / ops:.0f} | " + " / ".join(fs) + f" | {load} |")
PY
}
echo "| system | clients | writes/s | p50 ms | p99 ms | CPU µs per write, each member (sum) | load generator CPU µs per write | fsyncs per write (median duration), each member | load1 |" > "$WORK/rows"
echo "|---|---|---|---|---|---|---|---|---|" >> "$WORK/rows"

# ---------------------------------------------------------------- dialkv
PB=${PORTBASE:-26379}
# node j (0..2): client port PB+10j, peer port PB+10j+1, raft PB+102+10j,
# metrics PB+151+j; etcd member j: client PB+221+2j, peer PB+222+2j.
PEERS=n1=127.0.0.1:$PB@127.0.0.1:$((PB+1)),n2=127.0.0.1:$((PB+10))@127.0.0.1:$((PB+11)),n3=127.0.0.1:$((PB+20))@127.0.0.1:$((PB+21))
ADDRS=127.0.0.1:$PB,127.0.0.1:$((PB+10)),127.0.0.1:$((PB+20))
NODES=()
for i in 1 2 3; do
  "$BIN" node --id n$i --listen 127.0.0.1:$((PB + 10*(i-1))) --data "$WORK/n$i" --fsync always \
    --cluster rpf --peers "$PEERS" --log-level warn --metrics 127.0.0.1:$((PB + 150 + i)) >> "$WORK/n$i.log" 2>&1 &
  PIDS+=($!); NODES+=($!)
done
for t in $(seq 100); do "$BIN" cli --addr 127.0.0.1:$((PB+20)) PING >/dev/null 2>&1 && break; sleep 0.1; done
NSP=${NSPARAMS:-}
"$BIN" cli --addr 127.0.0.1:$PB NAMESPACE CREATE r1 raft nodes n1,n2,n3 \
  raft-addrs 127.0.0.1:$((PB+102)),127.0.0.1:$((PB+112)),127.0.0.1:$((PB+122)) client-addrs $ADDRS shards 1 ${NSP//,/ } >/dev/null
for t in $(seq 100); do "$BIN" cli --addr 127.0.0.1:$((PB+10)) --namespace r1 SET warm 1 2>/dev/null | grep -q OK && break; sleep 0.2; done
dialkv_load() { # clients
  /usr/bin/time -o "$WORK/loadcpu" -f '%U %S' "$WORK/driver" --addrs "$ADDRS" --namespace r1 --workload write-only --clients "$1" --duration "${DURATION}s" --value-size 100 > "$WORK/out.json"
  python3 -c 'import json,sys; w=json.load(open(sys.argv[1]))["writes"]; print(w["ops"], w["ops_per_sec"], w["p50_ms"], w["p99_ms"])' "$WORK/out.json" > "$WORK/ops"
}
for c in $CLIENTS; do
  echo "dialkv clients=$c" >&2
  CURLS=()
  if [ -n "${PROFILE:-}" ] && [ "$c" = 50 ]; then
    mkdir -p "$OUT/pprof"
    for i in 1 2 3; do curl -s -o "$OUT/pprof/n$i.pprof" "http://127.0.0.1:$((PB + 150 + i))/debug/pprof/profile?seconds=$DURATION" & CURLS+=($!); done
  fi
  measure "dialkv${NSP:+ ($NSP)}" "$c" "$WORK/ops" "${NODES[@]}" -- dialkv_load "$c"
  for p in "${CURLS[@]}"; do wait "$p" || true; done
done
stop_all

# ---------------------------------------------------------------- etcd
export ETCDCTL_API=3
EB=$((PB+221))
EPS=127.0.0.1:$EB,127.0.0.1:$((EB+2)),127.0.0.1:$((EB+4))
CLUSTER=m1=http://127.0.0.1:$((EB+1)),m2=http://127.0.0.1:$((EB+3)),m3=http://127.0.0.1:$((EB+5))
MEMBERS=()
for i in 1 2 3; do
  c=$((EB + (i-1)*2)); p=$((c+1))
  etcd --name m$i --data-dir "$WORK/m$i.etcd" \
    --listen-client-urls http://127.0.0.1:$c --advertise-client-urls http://127.0.0.1:$c \
    --listen-peer-urls http://127.0.0.1:$p --initial-advertise-peer-urls http://127.0.0.1:$p \
    --initial-cluster $CLUSTER --initial-cluster-token rpf --initial-cluster-state new \
    --log-level warn > "$WORK/m$i.log" 2>&1 &
  PIDS+=($!); MEMBERS+=($!)
done
for t in $(seq 100); do etcdctl --endpoints=$EPS endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
LEADER=$(etcdctl --endpoints=$EPS endpoint status -w json | python3 -c '
import json,sys
for e in json.load(sys.stdin):
    if e["Status"]["leader"]==e["Status"]["header"]["member_id"]: print(e["Endpoint"])')
etcd_load() { # clients: about DURATION seconds of puts (totals from the dialkv rate)
  local total=$(( $1 == 1 ? 400 * DURATION : 3000 * DURATION ))
  /usr/bin/time -o "$WORK/loadcpu" -f '%U %S' "$WORK/benchmark" --endpoints="$LEADER" --conns "$1" --clients "$1" put --key-size 16 --val-size 100 \
    --key-space-size 100000 --total "$total" > "$WORK/etcd.txt" 2>&1
  python3 - "$WORK/etcd.txt" "$total" > "$WORK/ops" <<'PY'
import re, sys
t = open(sys.argv[1]).read().replace("\r", "\n")
q = lambda p: float(re.search(r"\s%s%% in ([\d.]+) secs" % p, t).group(1)) * 1000
print(sys.argv[2], re.search(r"Requests/sec:\s*([\d.]+)", t).group(1), q(50), q(99))
PY
}
for c in $CLIENTS; do
  echo "etcd clients=$c" >&2
  measure "etcd" "$c" "$WORK/ops" "${MEMBERS[@]}" -- etcd_load "$c"
done
stop_all

cp "$WORK/rows" "$OUT/profile.md"
cat "$OUT/profile.md"
echo "results in $OUT" >&2
