#!/usr/bin/env bash
# One dialkv node against redis-server on this machine, side by side in one
# run: 50 connections, 70/30 reads/writes, 100-byte values, fsync never and
# always; dialkv batches of 100; Redis without persistence and with
# `appendfsync always` under redis-benchmark. Writes results.json and
# summary.md under experiments/results/node-vs-redis/ (or $OUT) and prints
# the summary.
#
#   experiments/node-vs-redis/run.sh                # ~20 s per configuration
#   DURATION=5s experiments/node-vs-redis/run.sh    # a quick look
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "installing redis-server and redis-tools" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools
  fi
fi

mkdir -p bin
CGO_ENABLED=0 go build -o bin/dialkv ./cmd/dialkv
go build -o bin/node-vs-redis ./experiments/node-vs-redis
exec bin/node-vs-redis --dialkv bin/dialkv --open-fraction "${OPEN_FRACTION:-0.5}" \
  --duration "${DURATION:-20s}" --clients "${CLIENTS:-50}" --keys "${KEYS:-100000}" \
  --out "${OUT:-experiments/results/node-vs-redis}" "$@"
