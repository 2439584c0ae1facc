#!/usr/bin/env bash
# Three dialkv nodes (raft namespaces of 1 and 3 shards) against a
# three-member etcd (Debian's etcd-server), side by side in one run, on
# loopback, fsync on (dialkv: --fsync always, Dragonboat syncs its log;
# etcd syncs its WAL): writes (SET / put) and linearizable reads (GET /
# range --consistency l) at 1 and 50 clients, 16-byte keys, 100-byte
# values. dialkv is driven by ./driver (clients/bench's engine over the Go
# client library, which follows redirects to each shard's leader); etcd by
# its own tools/benchmark (etcd v3.5.11), built here in a temporary module
# so that dialkv's go.mod stays clean, pointed at the etcd leader.
# Then the failover time on these processes (failover.csv). Writes
# results.csv and summary.md under experiments/results/raft-vs-etcd/
# (or $OUT); every row carries the 1-minute load average before it ran.
#
#   experiments/raft-vs-etcd/run.sh               # DURATION=10s per dialkv row
#   DURATION=3s SCALE=0.3 experiments/raft-vs-etcd/run.sh   # a quick look
#   MEMBER_ENV=GOMAXPROCS=1 experiments/raft-vs-etcd/run.sh  # environment of every dialkv node and etcd member alike
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/experiments/results/raft-vs-etcd}
DURATION=${DURATION:-10s}
SCALE=${SCALE:-1}          # etcd request totals are scaled by this
SHARDS=${SHARDS:-"1 3"}
MEMBER_ENV=${MEMBER_ENV:-} # environment variables (space separated) of every node and member, both systems
mkdir -p "$OUT"
. experiments/raft-vs-etcd/lib.sh
start_work raft-vs-etcd

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  echo "installing etcd-server and etcd-client" >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client
fi

build_all

CSV=$OUT/results.csv
echo "system,shards,op,clients,ops_per_sec,p50_ms,p99_ms,errors,load1,command" > "$CSV"
load1() { cut -d' ' -f1 /proc/loadavg; }

# ---------------------------------------------------------------- dialkv
PEERS=n1=127.0.0.1:27379@127.0.0.1:27380,n2=127.0.0.1:27389@127.0.0.1:27390,n3=127.0.0.1:27399@127.0.0.1:27400
ADDRS=127.0.0.1:27379,127.0.0.1:27389,127.0.0.1:27399
raft_addrs() { # each namespace runs its own NodeHost: its own Raft ports
  local b=$((27381 + 100*$1)); echo 127.0.0.1:$b,127.0.0.1:$((b+10)),127.0.0.1:$((b+20)); }
declare -A NODEPID
start_node() { # i
  local i=$1
  env $MEMBER_ENV "$BIN" node --id n$i --listen 127.0.0.1:$((27379 + 10*(i-1))) --data "$WORK/n$i" --fsync always \
    --cluster rve --peers "$PEERS" --log-level warn >> "$WORK/n$i.log" 2>&1 &
  PIDS+=($!); NODEPID[$i]=$!
}
for i in 1 2 3; do start_node $i; done
for i in 1 2 3; do wait_up 127.0.0.1:$((27379 + 10*(i-1))) "$WORK/n$i.log"; done
for s in $SHARDS; do
  "$BIN" cli --addr 127.0.0.1:27379 NAMESPACE CREATE r$s raft nodes n1,n2,n3 raft-addrs "$(raft_addrs $s)" client-addrs $ADDRS shards $s >/dev/null
  for t in $(seq 100); do
    "$BIN" cli --addr 127.0.0.1:27389 --namespace r$s SET warm 1 2>/dev/null | grep -q OK && break; sleep 0.2
  done
done
drive() { # shards op clients workload [extra driver flags]
  local s=$1 op=$2 c=$3 w=$4; shift 4
  local cmd="driver --addrs $ADDRS --namespace r$s --workload $w --clients $c --duration $DURATION --value-size 100 $*"
  local l; l=$(load1)
  echo "dialkv r$s $op clients=$c (load $l)" >&2
  "$WORK/driver" --addrs "$ADDRS" --namespace "r$s" --workload "$w" --clients "$c" --duration "$DURATION" --value-size 100 "$@" > "$WORK/out.json"
  python3 - "$WORK/out.json" "$s" "$op" "$c" "$l" "$cmd" >> "$CSV" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["writes"] if sys.argv[3] == "write" else r["reads"]
print(f'dialkv,{sys.argv[2]},{sys.argv[3]},{sys.argv[4]},{s["ops_per_sec"]:.0f},{s["p50_ms"]:.3f},{s["p99_ms"]:.3f},{r["errors"]},{sys.argv[5]},"{sys.argv[6]}"')
PY
}
for s in $SHARDS; do
  drive "$s" write 1 write-only
  drive "$s" write 50 write-only
  drive "$s" read 1 read-only --keys 1000 --load
  drive "$s" read 50 read-only --keys 1000
done
# The same writes with the namespace parameter batch=true (proposal batching
# in consistency/raft; off by default).
"$BIN" cli --addr 127.0.0.1:27379 NAMESPACE CREATE r1batch raft nodes n1,n2,n3 raft-addrs "$(raft_addrs 9)" client-addrs $ADDRS shards 1 batch true >/dev/null
for t in $(seq 100); do "$BIN" cli --addr 127.0.0.1:27389 --namespace r1batch SET warm 1 2>/dev/null | grep -q OK && break; sleep 0.2; done
for c in 1 50; do
  l=$(load1)
  echo "dialkv r1batch write clients=$c (load $l)" >&2
  "$WORK/driver" --addrs "$ADDRS" --namespace r1batch --workload write-only --clients $c --duration "$DURATION" --value-size 100 > "$WORK/out.json"
  python3 - "$WORK/out.json" "$c" "$l" >> "$CSV" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = r["writes"]
print(f'dialkv batch=true,1,write,{sys.argv[2]},{s["ops_per_sec"]:.0f},{s["p50_ms"]:.3f},{s["p99_ms"]:.3f},{r["errors"]},{sys.argv[3]},"driver --namespace r1batch (batch true) --workload write-only --clients {sys.argv[2]}"')
PY
done

# Failover: SIGKILL the process of the leader of namespace r1's shard, then
# time the first successful write (and linearizable read of it) through the
# other two nodes; restart the killed node; ROUNDS times.
FCSV=$OUT/failover.csv
echo "round,leader,write_ms,read_ms,attempts,load1,rtt_ms,election_rtt" > "$FCSV"
for r in $(seq "${ROUNDS:-5}"); do
  spec=""
  for i in 1 2 3; do spec+="${spec:+,}127.0.0.1:$((27379 + 10*(i-1)))=${NODEPID[$i]}"; done
  l=$(load1)
  "$WORK/driver" --addrs "$ADDRS" --namespace r1 --failover "$spec" --key "failover$r" > "$WORK/fo.json"
  python3 - "$WORK/fo.json" "$r" "$l" >> "$FCSV" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f'{sys.argv[2]},{r["leader"]},{r["write_ms"]:.1f},{r["read_ms"]:.1f},{r["attempts"]},{sys.argv[3]},10,10')
PY
  echo "failover round $r: $(tail -1 "$FCSV")" >&2
  leader=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["leader"])' "$WORK/fo.json")
  for i in 1 2 3; do
    if [ "$leader" = "127.0.0.1:$((27379 + 10*(i-1)))" ]; then
      wait "${NODEPID[$i]}" 2>/dev/null || true
      start_node $i
      for t in $(seq 100); do "$BIN" cli --addr "$leader" PING >/dev/null 2>&1 && break; sleep 0.1; done
    fi
  done
  sleep 3 # the restarted node catches up
done
stop_all

# ---------------------------------------------------------------- etcd
export ETCDCTL_API=3
EPS=127.0.0.1:23790,127.0.0.1:23792,127.0.0.1:23794
CLUSTER=m1=http://127.0.0.1:23791,m2=http://127.0.0.1:23793,m3=http://127.0.0.1:23795
for i in 1 2 3; do
  c=$((23790 + (i-1)*2)); p=$((c+1))
  env $MEMBER_ENV etcd --name m$i --data-dir "$WORK/m$i.etcd" \
    --listen-client-urls http://127.0.0.1:$c --advertise-client-urls http://127.0.0.1:$c \
    --listen-peer-urls http://127.0.0.1:$p --initial-advertise-peer-urls http://127.0.0.1:$p \
    --initial-cluster $CLUSTER --initial-cluster-token rve --initial-cluster-state new \
    --log-level warn > "$WORK/m$i.log" 2>&1 &
  PIDS+=($!)
done
# Under load etcd may take a while to elect a leader, and endpoint status
# fails while a member is not up: wait up to a minute, and say why the run
# stops instead of ending silently (set -e).
LEADER=
for t in $(seq 300); do
  LEADER=$(etcdctl --endpoints=$EPS endpoint status -w json 2>/dev/null | python3 -c '
import json,sys
for e in json.load(sys.stdin):
    if e["Status"]["leader"]==e["Status"]["header"]["member_id"]: print(e["Endpoint"])' 2>/dev/null) || true
  [ -n "$LEADER" ] && break
  sleep 0.2
done
if [ -z "$LEADER" ]; then
  echo "etcd: no leader after 60 s; members' logs:" >&2
  tail -n 5 "$WORK"/m*.log >&2
  exit 1
fi
ETCD_VERSION=$(etcd --version | head -1)
etcdctl --endpoints=$EPS put foo "$(head -c 100 /dev/zero | tr '\0' v)" >/dev/null
bench() { # op clients total args...
  local op=$1 c=$2 total; total=$(python3 -c "print(max(500, int($3 * $SCALE)))"); shift 3
  local cmd="benchmark --endpoints=$LEADER --conns $c --clients $c $* --total $total"
  local l; l=$(load1)
  echo "etcd $op clients=$c (load $l)" >&2
  "$WORK/benchmark" --endpoints="$LEADER" --conns "$c" --clients "$c" "$@" --total "$total" > "$WORK/etcd.txt" 2>&1
  python3 - "$WORK/etcd.txt" "$op" "$c" "$l" "$cmd" >> "$CSV" <<'PY'
import re, sys
t = open(sys.argv[1]).read().replace("\r", "\n")
rps = float(re.search(r"Requests/sec:\s*([\d.]+)", t).group(1))
q = lambda p: float(re.search(r"\s%s%% in ([\d.]+) secs" % p, t).group(1)) * 1000
errs = len(re.findall(r"Error distribution", t))
print(f'etcd,1,{sys.argv[2]},{sys.argv[3]},{rps:.0f},{q(50):.3f},{q(99):.3f},{errs},{sys.argv[4]},"{sys.argv[5]}"')
PY
}
bench write 1 5000 put --key-size 16 --val-size 100 --key-space-size 100000
bench write 50 40000 put --key-size 16 --val-size 100 --key-space-size 100000
bench read 1 10000 range foo --consistency l
bench read 50 50000 range foo --consistency l
stop_all

# ---------------------------------------------------------------- summary
python3 - "$CSV" "$OUT/summary.md" "$DURATION" "$ETCD_VERSION" "$MEMBER_ENV" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
etcd = {(r["op"], r["clients"]): r for r in rows if r["system"] == "etcd"}
out = ["# dialkv raft vs etcd (experiments/raft-vs-etcd/run.sh)", "",
       f"Three nodes / members on loopback, fsync on, 16-byte keys, 100-byte values; dialkv rows {sys.argv[3]} each;",
       f"etcd: {sys.argv[4]}, driven at its leader by tools/benchmark v3.5.11. load1 = 1-minute load average before the row.",
       f"Environment of every node and member: {sys.argv[5] or '(none)'} (MEMBER_ENV).", "",
       "| system | shards | op | clients | ops/s | p50 ms | p99 ms | errors | load1 | ops/s ratio vs etcd | p99 ratio vs etcd |",
       "|---|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    e = etcd.get((r["op"], r["clients"]))
    ratio = p99r = ""
    if e and r["system"].startswith("dialkv"):
        ratio = f'{float(r["ops_per_sec"]) / max(float(e["ops_per_sec"]), 1e-9):.2f}x'
        p99r = f'{float(r["p99_ms"]) / max(float(e["p99_ms"]), 1e-9):.2f}x'
    out.append(f'| {r["system"]} | {r["shards"]} | {r["op"]} | {r["clients"]} | {r["ops_per_sec"]} | {r["p50_ms"]} | {r["p99_ms"]} | {r["errors"]} | {r["load1"]} | {ratio} | {p99r} |')
out += ["", "Commands: the `command` column of results.csv."]
import os
fo = os.path.join(os.path.dirname(sys.argv[1]), "failover.csv")
if os.path.exists(fo):
    f = list(csv.DictReader(open(fo)))
    if f:
        w = sorted(float(x["write_ms"]) for x in f)
        out += ["", "## Failover (failover.csv)", "",
                "SIGKILL of the process leading namespace r1's shard (RTT 10 ms, election timeout 10 RTT), then a write",
                "every millisecond through the other two nodes: time from the kill to the first successful write.", "",
                f"rounds {len(w)}: min {w[0]:.0f} ms, median {w[len(w)//2]:.0f} ms, max {w[-1]:.0f} ms; per round: " +
                ", ".join(f'{x["write_ms"]} ms (read {x["read_ms"]} ms, load {x["load1"]})' for x in f)]
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
