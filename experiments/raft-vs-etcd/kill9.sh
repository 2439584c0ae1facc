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
# must then report one missing per round). A round without an acknowledged
# write fails. The writers and the check are experiments/kill9lib.sh's.
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
. experiments/kill9lib.sh
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
for r in $(seq "$ROUNDS"); do
  kill9_writers "$r" "${ADDRS//,/ }" --namespace r1 # writer j on node ((j-1) mod 3)+1
  sleep "$SECONDS_UP"
  kill -9 "${NODES[@]}"
  for p in "${NODES[@]}"; do wait "$p" 2>/dev/null || true; done
  kill9_stop_writers
  PIDS=()
  start_nodes
  wait_ready
  kill9_check "$r" "kill -9 of all nodes" --addr 127.0.0.1:28379 --namespace r1 || exit 1
done
kill9_summary
