#!/usr/bin/env bash
# Acknowledged raft writes survive kill -9 of every node at once (issue 6):
# three `dialkv node` processes with a raft namespace (1 shard, snapshots
# every SNAPSHOT entries, so snapshots and log compaction happen during the
# run), WRITERS concurrent writers (one `dialkv cli` each, one SET per
# line, each to its own node), SIGKILL of all three nodes after WRITE_SECONDS,
# restart on the same directories, then every acknowledged key is read
# back (linearizable GET) and must hold its value. ROUNDS rounds on the
# same directories. Exit status 1 if an acknowledged write is missing.
# CONTROL=1 deletes one acknowledged key per round before the check (which
# must then report one missing per round).
#
#   experiments/raft-vs-etcd/kill9.sh
#   NSPARAMS="logdb pebble-sync" ROUNDS=3 experiments/raft-vs-etcd/kill9.sh
#
# Ports 28379-28700.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
SECONDS_UP=${WRITE_SECONDS:-4}
WRITERS=${WRITERS:-6}
SNAPSHOT=${SNAPSHOT:-50}
. experiments/raft-vs-etcd/lib.sh
start_work raft-kill9
echo "building dialkv" >&2
mkdir -p bin
CGO_ENABLED=0 go build -o bin/dialkv ./cmd/dialkv
BIN=$PWD/bin/dialkv
PEERS=n1=127.0.0.1:28379@127.0.0.1:28380,n2=127.0.0.1:28389@127.0.0.1:28390,n3=127.0.0.1:28399@127.0.0.1:28400
ADDRS=127.0.0.1:28379,127.0.0.1:28389,127.0.0.1:28399
NODES=()
start_nodes() {
  NODES=()
  for i in 1 2 3; do
    "$BIN" node --id n$i --listen 127.0.0.1:$((28379 + 10*(i-1))) --data "$WORK/n$i" --fsync always \
      --cluster rk9 --peers "$PEERS" --log-level warn >> "$WORK/n$i.log" 2>&1 &
    PIDS+=($!); NODES+=($!)
  done
  for i in 1 2 3; do
    for t in $(seq 300); do "$BIN" cli --addr 127.0.0.1:$((28379 + 10*(i-1))) PING >/dev/null 2>&1 && break; sleep 0.1; done
  done
}
wait_ready() {
  for t in $(seq 150); do
    "$BIN" cli --addr 127.0.0.1:28389 --namespace r1 SET warm 1 2>/dev/null | grep -q OK && return 0; sleep 0.2
  done
  echo "namespace r1 not writable" >&2; return 1
}
start_nodes
"$BIN" cli --addr 127.0.0.1:28379 NAMESPACE CREATE r1 raft nodes n1,n2,n3 \
  raft-addrs 127.0.0.1:28481,127.0.0.1:28491,127.0.0.1:28501 client-addrs $ADDRS shards 1 \
  snapshot-entries "$SNAPSHOT" ${NSPARAMS:-} >/dev/null
wait_ready
total=0; lost=0
for r in $(seq "$ROUNDS"); do
  ws=()
  for j in $(seq "$WRITERS"); do
    addr=127.0.0.1:$((28379 + 10*((j-1)%3)))
    # One SET per line; the n-th output line is the reply to the n-th SET.
    seq 1 1000000 | sed "s/.*/SET r$r-w$j-& v&/" | "$BIN" cli --addr "$addr" --namespace r1 --timeout 2s > "$WORK/out.$r.$j" 2>/dev/null &
    ws+=($!)
  done
  sleep "$SECONDS_UP"
  kill -9 "${NODES[@]}"
  for p in "${NODES[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${ws[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PIDS=()
  start_nodes
  wait_ready
  : > "$WORK/acked.$r"
  for j in $(seq "$WRITERS"); do
    awk -v p="r$r-w$j-" '$0 == "OK" { print p NR, "\"v" NR "\"" }' "$WORK/out.$r.$j" >> "$WORK/acked.$r"
  done
  n=$(wc -l < "$WORK/acked.$r")
  if [ -n "${CONTROL:-}" ]; then # negative control: the check must see a deleted acknowledged key
    "$BIN" cli --addr 127.0.0.1:28379 --namespace r1 DEL "$(head -1 "$WORK/acked.$r" | cut -d' ' -f1)" >/dev/null
  fi
  cut -d' ' -f1 "$WORK/acked.$r" | sed 's/^/GET /' | "$BIN" cli --addr 127.0.0.1:28379 --namespace r1 > "$WORK/got.$r" 2>&1 || true
  m=$(paste -d' ' <(cut -d' ' -f2 "$WORK/acked.$r") "$WORK/got.$r" | awk '$1 != $2' | wc -l)
  echo "round $r: $n acknowledged writes, $m missing or wrong after kill -9 of all nodes (load $(cut -d' ' -f1 /proc/loadavg))"
  total=$((total + n)); lost=$((lost + m))
done
echo "total: $total acknowledged, $lost missing or wrong"
[ "$lost" = 0 ]
