#!/usr/bin/env bash
# Failover rounds on real processes (issue 6), the failover loop of run.sh
# on its own: three `dialkv node` processes per binary, a raft namespace r1
# of one shard (RTT 10 ms, election 10 RTT: the defaults); each round
# SIGKILLs the process leading r1's shard, `driver --failover` times the
# first successful write and linearizable read of it through the other two
# nodes (with a per-attempt timeline), and the killed node is restarted
# and given CATCHUP seconds. With two binaries (BIN="A B") each gets its own
# cluster and the rounds alternate between them (A, B, A, B, ...), so both
# see the same machine.
#
#   experiments/raft-vs-etcd/failover.sh                   # ROUNDS=10, bin/dialkv built here
#   BIN="/tmp/old/dialkv $PWD/bin/dialkv" ROUNDS=10 experiments/raft-vs-etcd/failover.sh
#
# Environment: BIN (binaries, space-separated; default: build bin/dialkv),
# DRIVER (the driver binary; default: built), ROUNDS (10, per binary), OUT
# (directory for failover.csv and one JSON per round with the timeline;
# default experiments/results/failover), PORTBASE (30000; cluster k uses
# PORTBASE+1000k ..+130), CATCHUP (seconds after a restart, 3 as run.sh),
# LOG_LEVEL (warn; node logs are under the work directory, KEEP=1 keeps it),
# NSPARAMS (extra NAMESPACE CREATE parameters, e.g. "transport dragonboat").
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/experiments/results/failover}
ROUNDS=${ROUNDS:-10}
PORTBASE=${PORTBASE:-30000}
CATCHUP=${CATCHUP:-3}
LOG_LEVEL=${LOG_LEVEL:-warn}
NSPARAMS=${NSPARAMS:-}
mkdir -p "$OUT"
. experiments/raft-vs-etcd/lib.sh
start_work failover
if [ -z "${BIN:-}" ]; then
  mkdir -p bin
  CGO_ENABLED=0 go build -o bin/dialkv ./cmd/dialkv
  BIN=$PWD/bin/dialkv
fi
if [ -z "${DRIVER:-}" ]; then
  go build -o "$WORK/driver" ./experiments/raft-vs-etcd/driver
  DRIVER=$WORK/driver
fi
read -r -a BINS <<< "$BIN"
load1() { cut -d' ' -f1 /proc/loadavg; }

# Cluster k (0-based, one per binary): node i's client port
# PORTBASE+1000k+10(i-1), its peer port +1 (gossip +3); r1's Raft ports
# +100.
declare -A NODEPID
base() { echo $((PORTBASE + 1000*$1)); }
caddr() { echo 127.0.0.1:$(($(base "$1") + 10*($2-1))); }
start_node() { # k i
  local k=$1 i=$2 b; b=$(base "$k")
  local peers="" j
  for j in 1 2 3; do peers+="${peers:+,}n$j=127.0.0.1:$((b + 10*(j-1)))@127.0.0.1:$((b + 10*(j-1) + 1))"; done
  "${BINS[$k]}" node --id n$i --listen "$(caddr "$k" "$i")" --data "$WORK/c$k/n$i" --fsync always \
    --cluster fo$k --peers "$peers" --log-level "$LOG_LEVEL" >> "$WORK/c$k/n$i.log" 2>&1 &
  PIDS+=($!); NODEPID[$k,$i]=$!
}
addrs() { echo "$(caddr "$1" 1),$(caddr "$1" 2),$(caddr "$1" 3)"; }

for k in "${!BINS[@]}"; do
  mkdir -p "$WORK/c$k"
  for i in 1 2 3; do start_node "$k" "$i"; done
done
for k in "${!BINS[@]}"; do
  b=$(base "$k")
  for t in $(seq 150); do "${BINS[$k]}" cli --addr "$(caddr "$k" 3)" PING >/dev/null 2>&1 && break; sleep 0.1; done
  # shellcheck disable=SC2086 # NSPARAMS is a list of parameters
  "${BINS[$k]}" cli --addr "$(caddr "$k" 1)" NAMESPACE CREATE r1 raft nodes n1,n2,n3 \
    raft-addrs "127.0.0.1:$((b+100)),127.0.0.1:$((b+110)),127.0.0.1:$((b+120))" \
    client-addrs "$(addrs "$k")" shards 1 $NSPARAMS >/dev/null
  ok=
  for t in $(seq 150); do
    if "${BINS[$k]}" cli --addr "$(caddr "$k" 2)" --namespace r1 SET warm 1 2>/dev/null | grep -q OK; then ok=1; break; fi
    sleep 0.2
  done
  if [ -z "$ok" ]; then
    echo "cluster $k (${BINS[$k]}): no successful write to r1 after 30 s; logs:" >&2
    tail -n 5 "$WORK/c$k"/n*.log >&2
    exit 1
  fi
done

CSV=$OUT/failover.csv
echo "round,bin,leader,write_ms,read_ms,attempts,breaker_trips,load1,utc" > "$CSV"
echo "bins: ${BINS[*]}; work: $WORK; rounds $ROUNDS per binary, catch-up ${CATCHUP}s" >&2
for r in $(seq "$ROUNDS"); do
  for k in "${!BINS[@]}"; do
    spec=""
    for i in 1 2 3; do spec+="${spec:+,}$(caddr "$k" "$i")=${NODEPID[$k,$i]}"; done
    l=$(load1); utc=$(date -u +%H:%M:%S)
    json=$OUT/round$r-bin$k.json
    if ! "$DRIVER" --addrs "$(addrs "$k")" --namespace r1 --failover "$spec" --key "failover$r" > "$json" 2> "$WORK/driver.err"; then
      echo "round $r bin $k: driver failed:" >&2; cat "$WORK/driver.err" >&2; exit 1
    fi
    row=$(python3 - "$json" "$r" "$k" "$l" "$utc" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f'{sys.argv[2]},{sys.argv[3]},{r["leader"]},{r["write_ms"]:.1f},{r["read_ms"]:.1f},{r["attempts"]},{r.get("breaker_trips", "")},{sys.argv[4]},{sys.argv[5]}')
PY
)
    echo "$row" >> "$CSV"
    echo "round $r bin $k: write_ms,read_ms,attempts = $(echo "$row" | cut -d, -f4-6) (load $l, $utc)" >&2
    leader=$(echo "$row" | cut -d, -f3)
    for i in 1 2 3; do
      if [ "$leader" = "$(caddr "$k" "$i")" ]; then
        { wait "${NODEPID[$k,$i]}" || true; } 2>/dev/null # without the shell's "Killed" notice
        echo "--- restart round $r" >> "$WORK/c$k/n$i.log"
        start_node "$k" "$i"
        for t in $(seq 100); do "${BINS[$k]}" cli --addr "$leader" PING >/dev/null 2>&1 && break; sleep 0.1; done
      fi
    done
    sleep "$CATCHUP" # the restarted node catches up
  done
done
stop_all
python3 - "$CSV" "${BINS[@]}" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for k, b in enumerate(sys.argv[2:]):
    w = sorted(float(x["write_ms"]) for x in rows if x["bin"] == str(k))
    rd = sorted(float(x["read_ms"]) for x in rows if x["bin"] == str(k))
    if w:
        print(f"bin {k} ({b}): {len(w)} rounds, write median {statistics.median(w):.0f} ms, max {w[-1]:.0f} ms; "
              f"read median {statistics.median(rd):.0f} ms, max {rd[-1]:.0f} ms; writes: " + ", ".join(f"{x:.0f}" for x in w))
PY
