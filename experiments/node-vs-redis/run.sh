#!/usr/bin/env bash
# One dialkv node against redis-server on this machine, side by side in one
# run: 50 connections, 70/30 reads/writes, 100-byte values, fsync never and
# always; dialkv batches of 100; Redis without persistence and with
# `appendfsync always` under redis-benchmark; then an open-loop sweep of
# offered rates (OPEN_FRACTIONS of dialkv's saturated rate, fsync never vs
# Redis without persistence; OPEN_FRACTIONS_ALWAYS for fsync always vs
# appendfsync always), both systems from the same load generator
# (`dialkv bench --io loop`, Redis over --protocol resp), alternating.
# Writes results.json and summary.md under
# experiments/results/node-vs-redis/ (or $OUT) and prints the summary.
#
#   experiments/node-vs-redis/run.sh                # ~20 s per closed-loop and 10 s per open-loop run, ~5 min
#   DURATION=5s OPEN_DURATION=3s experiments/node-vs-redis/run.sh    # a quick look
#   OPEN_FRACTIONS= OPEN_FRACTIONS_ALWAYS= experiments/node-vs-redis/run.sh  # no sweep
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
exec bin/node-vs-redis --dialkv bin/dialkv --open-fractions "${OPEN_FRACTIONS-0.1,0.25,0.5,0.75}" \
  --open-fractions-always "${OPEN_FRACTIONS_ALWAYS-0.5}" --open-duration "${OPEN_DURATION:-10s}" \
  --duration "${DURATION:-20s}" --clients "${CLIENTS:-50}" --keys "${KEYS:-100000}" \
  --out "${OUT:-experiments/results/node-vs-redis}" "$@"
