#!/usr/bin/env bash
# Acknowledged writes of one node survive kill -9 (issue 3, --fsync always):
# one `dialkv node --fsync always` (local strategy), WRITERS concurrent
# writers (one `dialkv cli` each, one SET per line), SIGKILL of
# the node after WRITE_SECONDS, restart on the same directory, then every
# acknowledged key is read back and must hold its value. ROUNDS rounds on
# the same directory. Exit status 1 if an acknowledged write is missing.
# CONTROL=1 deletes one acknowledged key per round before the check (which
# must then report one missing per round). A round without an acknowledged
# write fails. The writers and the check are experiments/kill9lib.sh's.
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
. experiments/kill9lib.sh
NODE=
# (|| true: under set -e the wait's 137 for the killed node ended the
# script there, with status 137 and $WORK left behind.)
trap '[ -n "$NODE" ] && { kill -9 "$NODE"; wait "$NODE"; } 2>/dev/null || true; rm -rf "$WORK"' EXIT
start_node() {
  "$BIN" node --id k9 --listen 127.0.0.1:"$PORT" --data "$WORK/data" --fsync always --log-level warn >> "$WORK/node.log" 2>&1 &
  NODE=$!
  for _ in $(seq 300); do "$BIN" cli --addr 127.0.0.1:"$PORT" PING >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "node did not come up" >&2; return 1
}
start_node
for r in $(seq "$ROUNDS"); do
  kill9_writers "$r" 127.0.0.1:"$PORT"
  sleep "$SECONDS_UP"
  kill -9 "$NODE"; wait "$NODE" 2>/dev/null || true
  kill9_stop_writers
  start_node
  kill9_check "$r" "kill -9" --addr 127.0.0.1:"$PORT" || exit 1
done
kill9_summary
