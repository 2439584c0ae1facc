#!/usr/bin/env bash
# Fault tests on real processes (dialkv jepsen, process backend), one run per
# scenario, summarised into experiments/results/jepsen/ (table.md, runs.csv,
# each run's summary.json). The Docker partition scenario is left out: it
# needs the image (make docker); see docs/operations.md.
# Usage: DURATION=20s experiments/jepsen/run.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd); cd "$ROOT"
DURATION=${DURATION:-20s}
OUT=experiments/results/jepsen
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
CGO_ENABLED=0 go build -o bin/dialkv ./cmd/dialkv
mkdir -p "$OUT"
run() { # name, then dialkv jepsen flags
  local name=$1; shift
  echo "== $name: dialkv jepsen $* --duration $DURATION" >&2
  bin/dialkv jepsen --bin bin/dialkv --backend process "$@" --duration "$DURATION" --out "$WORK/$name" >"$WORK/$name.log" 2>&1 || true
  tail -1 "$WORK/$name.log" >&2
  cp "$WORK/$name/summary.json" "$OUT/$name.summary.json"
}
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
run local-kill-pause --nodes 1 --strategy local --workload jepsen-set --faults kill,pause
run raft-kill-pause --nodes 3 --strategy raft --workload register --faults kill,pause
run quorum-rolling-restart --nodes 3 --strategy quorum --workload jepsen-set --faults restart --round-robin
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$OUT" "$DURATION" "$LOAD0" "$LOAD1" <<'PY'
import json, sys, glob, os
out, dur, l0, l1 = sys.argv[1:]
rows = []
for name in ["local-kill-pause", "raft-kill-pause", "quorum-rolling-restart"]:
    s = json.load(open(os.path.join(out, name + ".summary.json")))
    faults = sum(1 for f in s["faults"] if " fault " in f)
    checks = "; ".join(f'{c["name"]} {c["verdict"]}' for c in s["checks"])
    rows.append([name, s["strategy"], s["workload"], str(s["nodes"]), str(faults), str(s["ops"]), str(s["ok"]), str(s["fail"]), str(s["unknown"]),
                 s["verdict"], checks, "%.2f" % (s["converged_after_heal_ns"] / 1e9), "%.2f" % (s["max_unavailable_ns"] / 1e9), s["command"]])
hdr = ["run", "strategy", "workload", "nodes", "faults", "ops", "ok", "fail", "unknown", "verdict", "checks", "converged_after_heal_s", "longest_gap_s", "command"]
with open(os.path.join(out, "runs.csv"), "w") as f:
    f.write(",".join(hdr) + "\n")
    for r in rows:
        f.write(",".join('"%s"' % c.replace('"', "'") for c in r) + "\n")
with open(os.path.join(out, "table.md"), "w") as f:
    f.write(f"Fault tests on real processes (`dialkv jepsen`, process backend, 4 clients, faults every 2 s for 1 s, {dur} each); load average {l0} at the start, {l1} at the end. faults: kill -9, SIGSTOP or graceful restarts done; longest_gap_s: the longest time with no operation succeeding.\n\n")
    f.write("| " + " | ".join(hdr[:-1]) + " |\n|" + "---|" * (len(hdr) - 1) + "\n")
    for r in rows:
        f.write("| " + " | ".join(r[:-1]) + " |\n")
    f.write("\nReproduce: `make exp-jepsen` (`DURATION=%s experiments/jepsen/run.sh`); each run's command is in runs.csv.\n" % dur)
PY
cat "$OUT/table.md"
