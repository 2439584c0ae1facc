#!/usr/bin/env python3
"""Where a raft write's time goes on each node, from Go execution traces
(issue 6; trace.sh takes them). usage:

    tracepath.py WRITES_PER_S NAME=trace.out...

For each node's trace (`go tool trace -d=parsed` is run on it) it classifies
the goroutines of the write path by their stacks -- Dragonboat's step
worker, the LogDB's WAL writer (Pebble's LogWriter flush loop), Dragonboat's
per-peer send goroutine, raftls' receive goroutine, the apply worker (the
state machine's Update), the completion goroutine that writes the replies
(consistency/raft async.go) -- and prints one Markdown row per node:

  - fdatasync of the LogDB's WAL: per second, p50 and mean duration;
  - the step worker's time (% of the trace): running, runnable (woken, waiting
    for a CPU), blocked in the LogDB save (SaveRaftState: the WAL's sync and
    Pebble's commit), idle (waiting for work); its cycles (saves) per second;
  - how long a message received by raftls waits until the step worker runs
    (p50 / mean): a follower's Replicate, the leader's ack -- includes the
    step worker's own save in progress;
  - wake delays (woken until running, p50 / p90) of the send goroutine, the
    apply worker and the completion goroutine, the send goroutine's write
    syscall (mean), the apply worker's run per batch (mean) and the
    completion goroutine's time per reply (running + syscall over its reply
    writes);
  - the mean number of runnable goroutines (all of the node's);
  - the step worker's waits for lazyCommitLogDB's lock, which a snapshot's
    save holds exclusively (rate, mean).

Times are the runtime's (CLOCK_MONOTONIC, one clock for all processes of the
machine). A trace costs the node CPU: compare runs that were traced alike.
"""
import collections
import re
import subprocess
import sys

HDR = re.compile(r'^M=(-?\d+) P=(-?\d+) G=(-?\d+) (\w+) Time=(\d+)(.*)$')
ST = re.compile(r'GoID=(\d+) (\w+)->(\w+) Reason="([^"]*)"')
ROLES = [("stepWorkerMain", "step"), ("applyWorkerMain", "apply"), ("completeAsync", "completion"),
         ("processMessages", "send"), ("connectAndProcess", "send"),
         ("raftls.(*Transport).serve", "recv"), ("LogWriter).flushLoop", "wal")]


def parse(path):
    """The trace's state transitions: (t, goid, from, to, reason, site) and each goroutine's role."""
    text = subprocess.run(["go", "tool", "trace", "-d=parsed", path], capture_output=True, text=True, check=True).stdout
    evs, role = [], {}
    cur, stacks, mode = None, None, None

    def flush():
        if cur is None:
            return
        g, kind, t, rest = cur
        for s in (stacks["Stack"],):
            if g > 0 and g not in role:
                for k, r in ROLES:
                    if any(k in f for f in s):
                        role[g] = r
                        break
        m = ST.search(rest)
        if kind != "StateTransition" or not m:
            return
        gg = int(m.group(1))
        ts = stacks["TransitionStack"] or (stacks["Stack"] if g == gg else [])
        if gg not in role:
            for k, r in ROLES:
                if any(k in f for f in ts):
                    role[gg] = r
                    break
        site = " < ".join(f for f in ts if not f.startswith("runtime."))
        evs.append((t, gg, m.group(2), m.group(3), m.group(4), site))

    for line in text.split("\n"):
        h = HDR.match(line)
        if h:
            flush()
            cur = (int(h.group(3)), h.group(4), int(h.group(5)), h.group(6))
            stacks, mode = {"Stack": [], "TransitionStack": []}, None
        elif cur is not None:
            if line.startswith("TransitionStack="):
                mode = "TransitionStack"
            elif line.startswith("Stack="):
                mode = "Stack"
            elif line.startswith("\t") and not line.startswith("\t\t") and mode:
                stacks[mode].append(line.strip().split(" @ ")[0])
    flush()
    return evs, role


def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))] / 1e3 if v else float("nan")


def mean(v):
    return sum(v) / len(v) / 1e3 if v else float("nan")


def analyse(path):
    evs, role = parse(path)
    span = (evs[-1][0] - evs[0][0]) if evs else 1
    state = {}  # goid -> (state, since, site)
    step_g = collections.defaultdict(collections.Counter)  # per step worker goroutine
    syncs, sendw, sendwrite, applyrun, replyw = [], [], [], [], []
    wake = collections.defaultdict(list)
    runnable_total = 0
    lockw = []  # the step worker's waits for lazyCommitLogDB's lock (a snapshot's save)
    completion_busy = 0
    pending_recv = []  # receive wake times not yet followed by a step worker run
    recv_to_step = []
    for t, g, fr, to, reason, site in evs:
        r = role.get(g)
        if g in state:
            s, since, ssite = state[g]
            d = t - since
            if s == "Runnable":
                runnable_total += d
                if r in ("send", "apply", "completion"):
                    wake[r].append(d)
            if r == "step":
                if s == "Waiting":
                    # idle: blocked in the worker's own select (the
                    # first frame); else in the LogDB save's locks and
                    # the WAL sync it waits for.
                    idle = ssite.split(" < ")[0].endswith("stepWorkerMain")
                    step_g[g]["idle" if idle else "save"] += d
                    if "lazyCommitLogDB).SaveRaftState" in ssite.split(" < ")[1:2] or (
                            ssite.startswith("sync.(*RWMutex).RLock") and "lazyCommitLogDB" in ssite):
                        lockw.append(d)
                else:
                    step_g[g][s] += d
            if r == "wal" and s == "Syscall" and ("Fdatasync" in ssite or "SyncData" in ssite):
                syncs.append(d)
            if r == "send" and s == "Syscall":
                sendwrite.append(d)
            if r == "apply" and s == "Running" and to == "Waiting":
                applyrun.append(t - state.get(("applystart", g), (0, since))[1])
            if r == "completion" and s in ("Running", "Syscall"):
                completion_busy += d
            if r == "completion" and s == "Syscall" and "epoll" in ssite:
                replyw.append(d)
        if r == "apply" and fr == "Runnable" and to == "Running" and state.get(g, ("",))[0] == "Runnable":
            state[("applystart", g)] = ("", t)
        if r == "recv" and fr == "Waiting" and to == "Runnable":
            pending_recv.append(t)
        if r == "step" and to == "Running" and pending_recv:
            recv_to_step += [t - x for x in pending_recv]
            pending_recv = []
        state[g] = (to, t, site)
    sec = span / 1e9
    # The shard's step worker: the busiest of Dragonboat's (the others idle).
    busy = max(step_g, key=lambda g: step_g[g]["Running"] + step_g[g]["save"]) if step_g else None
    step_t = step_g[busy] if busy is not None else collections.Counter()
    steps = step_t["Running"] + step_t["Runnable"] + step_t["save"] + step_t["idle"] + step_t["Syscall"]
    pc = lambda k: 100 * step_t[k] / steps if steps else float("nan")
    nsaves = sum(1 for t, g, fr, to, reason, site in evs if g == busy and to == "Waiting" and "commitPipeline" in site)
    return {
        "span_s": sec,
        "fsync": f"{len(syncs)/sec:.0f}/s, {q(syncs, .5):.0f} / {mean(syncs):.0f} µs",
        "step": f"{pc('Running'):.0f} / {pc('Runnable'):.0f} / {pc('save'):.0f} / {pc('idle'):.0f} %, {nsaves/sec:.0f} saves/s",
        "recv_to_step": f"{q(recv_to_step, .5):.0f} / {mean(recv_to_step):.0f}",
        "send": f"{q(wake['send'], .5):.0f} / {q(wake['send'], .9):.0f}; write {mean(sendwrite):.0f}",
        "apply": f"{q(wake['apply'], .5):.0f} / {q(wake['apply'], .9):.0f}; run {mean(applyrun):.0f}",
        "completion": (f"{q(wake['completion'], .5):.0f} / {q(wake['completion'], .9):.0f}; "
                       f"{completion_busy/len(replyw)/1e3:.0f} per reply ({len(replyw)/sec:.0f}/s)") if replyw else "-",
        "runnable": f"{runnable_total/span:.2f}",
        "lockw": f"{len(lockw)/sec:.1f}/s, {mean(lockw)/1e3:.2f} ms" if lockw else "0",
    }


def main():
    wps = float(sys.argv[1])
    print(f"writes/s {wps:.0f}")
    print("| node | LogDB WAL fdatasync: rate, p50 / mean | step worker: running / runnable / in save / idle | received msg until step worker runs, p50 / mean µs | send: wake p50 / p90 µs; write µs | apply: wake p50 / p90; run per batch µs | completion: wake p50 / p90; µs per reply | mean runnable goroutines | step worker blocked by a snapshot's save: rate, mean |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        a = analyse(path)
        print(f"| {name} | {a['fsync']} | {a['step']} | {a['recv_to_step']} | {a['send']} | {a['apply']} | {a['completion']} | {a['runnable']} | {a['lockw']} |")


if __name__ == "__main__":
    main()
