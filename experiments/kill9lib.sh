# Sourced by experiments/node-vs-redis/kill9.sh and
# experiments/raft-vs-etcd/kill9.sh: their writers and their check of a
# round. Needs BIN (the dialkv binary), WORK (a scratch directory) and
# WRITERS; CONTROL=1 deletes one acknowledged key per round before the
# check (which must then report one missing per round).

KILL9_WS=()
KILL9_TOTAL=0
KILL9_LOST=0

# kill9_writers R "ADDR..." [CLI_ARGS...]: starts WRITERS writers of round
# R, writer j on the ((j-1) mod count)-th address, each one `dialkv cli`
# sending SET rR-wJ-N vN for N = 1, 2, ... (replies in $WORK/out.R.J).
kill9_writers() {
  local r=$1 j
  local -a addrs
  read -r -a addrs <<< "$2"
  shift 2
  KILL9_WS=()
  for j in $(seq "$WRITERS"); do
    # One SET per line; the n-th output line is the reply to the n-th SET.
    seq 1 1000000 | sed "s/.*/SET r$r-w$j-& v&/" |
      "$BIN" cli --addr "${addrs[$(((j - 1) % ${#addrs[@]}))]}" "$@" --timeout 2s > "$WORK/out.$r.$j" 2>/dev/null &
    KILL9_WS+=($!)
  done
}

# kill9_stop_writers stops the writers kill9_writers started.
kill9_stop_writers() {
  local p
  for p in "${KILL9_WS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

# kill9_check R WHAT CLI_ARGS...: round R's acknowledged writes (the n-th
# writer reply "OK" acknowledges the n-th SET) are read back with
# `dialkv cli CLI_ARGS` and each must hold its value; prints the round's
# line (WHAT names the kill) and adds to KILL9_TOTAL and KILL9_LOST. A round
# without a single acknowledged write fails (returns 1): it tested nothing
# (and CONTROL would have no key to delete).
kill9_check() {
  local r=$1 what=$2 n m j
  shift 2
  : > "$WORK/acked.$r"
  for j in $(seq "$WRITERS"); do
    awk -v p="r$r-w$j-" '$0 == "OK" { print p NR, "\"v" NR "\"" }' "$WORK/out.$r.$j" >> "$WORK/acked.$r"
  done
  n=$(wc -l < "$WORK/acked.$r")
  if [ "$n" -eq 0 ]; then
    echo "round $r: no acknowledged write before the kill -9: the round tests nothing" >&2
    return 1
  fi
  if [ -n "${CONTROL:-}" ]; then # negative control: the check must see a deleted acknowledged key
    "$BIN" cli "$@" DEL "$(head -1 "$WORK/acked.$r" | cut -d' ' -f1)" >/dev/null
  fi
  cut -d' ' -f1 "$WORK/acked.$r" | sed 's/^/GET /' | "$BIN" cli "$@" > "$WORK/got.$r" 2>&1 || true
  m=$(paste -d' ' <(cut -d' ' -f2 "$WORK/acked.$r") "$WORK/got.$r" | awk '$1 != $2' | wc -l)
  echo "round $r: $n acknowledged writes, $m missing or wrong after $what (load $(cut -d' ' -f1 /proc/loadavg))"
  KILL9_TOTAL=$((KILL9_TOTAL + n))
  KILL9_LOST=$((KILL9_LOST + m))
}

# kill9_summary prints the totals and fails if a write was lost.
kill9_summary() {
  echo "total: $KILL9_TOTAL acknowledged, $KILL9_LOST missing or wrong"
  [ "$KILL9_LOST" = 0 ]
}
