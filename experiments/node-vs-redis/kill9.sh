#!/usr/bin/env bash
# Acknowledged writes of one node survive kill -9 (issue 3, --fsync always):
# one `dialkv node --fsync always` (local strategy), WRITERS concurrent
# writers (one `dialkv cli` each, one SET per line), SIGKILL of
# the node after WRITE_SECONDS, restart on the same directory, then every
# acknowledged key is read back and must hold its value. ROUNDS rounds on
# the same directory. Exit status 1 if an acknowledged write is missing.
# CONTROL=1 deletes one acknowledged key per round before the check (which
# must then report one missing per round).
#
#   experiments/node-vs-redis/kill9.sh [BIN]     (default: builds bin/dialkv)
#   PORT=33100 ROUNDS=5 experiments/node-vs-redis/kill9.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
SECONDS_UP=${WRITE_SECONDS:-3}
WRITERS=${WRITERS:-8}
PORT=${PORT:-28600}
BIN=${1:-}
if [ -z "$BIN" ]; then
  echo "building dialkv" >&2
  mkdir -p bin
  CGO_ENABLED=0 go build -o bin/dialkv ./cmd/dialkv
  BIN=$PWD/bin/dialkv
fi
WORK=$(mktemp -d)
NODE=
trap '[ -n "$NODE" ] && { kill -9 "$NODE"; wait "$NODE"; } 2>/dev/null; rm -rf "$WORK"' EXIT
start_node() {
  "$BIN" node --id k9 --listen 127.0.0.1:"$PORT" --data "$WORK/data" --fsync always --log-level warn >> "$WORK/node.log" 2>&1 &
  NODE=$!
  for _ in $(seq 300); do "$BIN" cli --addr 127.0.0.1:"$PORT" PING >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "node did not come up" >&2; return 1
}
start_node
total=0; lost=0
for r in $(seq "$ROUNDS"); do
  ws=()
  for j in $(seq "$WRITERS"); do
    # One SET per line; the n-th output line is the reply to the n-th SET.
    seq 1 1000000 | sed "s/.*/SET r$r-w$j-& v&/" | "$BIN" cli --addr 127.0.0.1:"$PORT" --timeout 2s > "$WORK/out.$r.$j" 2>/dev/null &
    ws+=($!)
  done
  sleep "$SECONDS_UP"
  kill -9 "$NODE"; wait "$NODE" 2>/dev/null || true
  for p in "${ws[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  start_node
  : > "$WORK/acked.$r"
  for j in $(seq "$WRITERS"); do
    awk -v p="r$r-w$j-" '$0 == "OK" { print p NR, "\"v" NR "\"" }' "$WORK/out.$r.$j" >> "$WORK/acked.$r"
  done
  n=$(wc -l < "$WORK/acked.$r")
  if [ -n "${CONTROL:-}" ]; then # negative control: the check must see a deleted acknowledged key
    "$BIN" cli --addr 127.0.0.1:"$PORT" DEL "$(head -1 "$WORK/acked.$r" | cut -d' ' -f1)" >/dev/null
  fi
  cut -d' ' -f1 "$WORK/acked.$r" | sed 's/^/GET /' | "$BIN" cli --addr 127.0.0.1:"$PORT" > "$WORK/got.$r" 2>&1 || true
  m=$(paste -d' ' <(cut -d' ' -f2 "$WORK/acked.$r") "$WORK/got.$r" | awk '$1 != $2' | wc -l)
  echo "round $r: $n acknowledged writes, $m missing or wrong after kill -9 (load $(cut -d' ' -f1 /proc/loadavg))"
  total=$((total + n)); lost=$((lost + m))
done
echo "total: $total acknowledged, $lost missing or wrong"
[ "$lost" = 0 ]
