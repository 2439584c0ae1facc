#!/usr/bin/env bash
# Compares the simulator's benchmarks (sim/bench_test.go) of two commits side
# by side in one run, alternating them ROUNDS times, with the load average
# printed first. Usage: scripts/sim-bench-compare.sh OLD_REV [NEW_REV] [ROUNDS]
# (NEW_REV defaults to the working tree). Prints every run and, per
# benchmark and side, the best ops/cpu-s (the machine is shared: the best of
# several runs is the least disturbed) and the new/old ratio, then the same
# for each side's median run. Benchmarks: BENCHES (default: every
# PrimaryBackup5*, Quorum5, Causal5); runs per benchmark: BENCHTIME
# (default 10x).
set -eu
old=${1:?usage: $0 OLD_REV [NEW_REV] [ROUNDS]}
new=${2:-}
rounds=${3:-3}
benches=${BENCHES:-PrimaryBackup5 PrimaryBackup5Register PrimaryBackup5Slow Quorum5 Causal5}
benchtime=${BENCHTIME:-10x}
tmp=$(mktemp -d)
trap 'for s in old new; do [ -d "$tmp/src-$s" ] && git worktree remove --force "$tmp/src-$s"; done; rm -rf "$tmp"' EXIT
build() { # REV SIDE
  if [ -z "$1" ]; then go test -c -o "$tmp/$2.test" ./sim; return; fi
  git worktree add --detach "$tmp/src-$2" "$1" >/dev/null
  (cd "$tmp/src-$2" && go test -c -o "$tmp/$2.test" ./sim)
}
build "$old" old
build "$new" new
echo "load: $(uptime)"
for b in $benches; do
  for i in $(seq "$rounds"); do
    for side in old new; do
      GOGC=400 "$tmp/$side.test" -test.run '^$' -test.bench "^Benchmark$b\$" -test.benchtime="$benchtime" 2>&1 |
        awk -v s="$side" -v b="$b" '/^Benchmark/ {print b, s, $5, $7, $9}'
    done
  done
done | tee "$tmp/runs"
echo "load: $(uptime)"
echo "benchmark | old best ops/cpu-s | new best ops/cpu-s | ratio | old virtual/cpu | new virtual/cpu"
for b in $benches; do
  o=$(awk -v b="$b" '$1==b && $2=="old"' "$tmp/runs" | sort -k3 -n | tail -1)
  n=$(awk -v b="$b" '$1==b && $2=="new"' "$tmp/runs" | sort -k3 -n | tail -1)
  echo "$o|$n" | awk -F'|' '{split($1,a," "); split($2,c," "); printf "%s | %d | %d | %.2f | %.0f | %.0f\n", a[1], a[3], c[3], c[3]/a[3], a[4], c[4]}'
done
echo "benchmark | old median ops/cpu-s | new median ops/cpu-s | ratio | old virtual/cpu | new virtual/cpu"
for b in $benches; do
  o=$(awk -v b="$b" '$1==b && $2=="old"' "$tmp/runs" | sort -k3 -n | awk '{l[NR]=$0} END {print l[int((NR+1)/2)]}')
  n=$(awk -v b="$b" '$1==b && $2=="new"' "$tmp/runs" | sort -k3 -n | awk '{l[NR]=$0} END {print l[int((NR+1)/2)]}')
  echo "$o|$n" | awk -F'|' '{split($1,a," "); split($2,c," "); printf "%s | %d | %d | %.2f | %.0f | %.0f\n", a[1], a[3], c[3], c[3]/a[3], a[4], c[4]}'
done
