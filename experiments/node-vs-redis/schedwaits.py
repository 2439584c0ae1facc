#!/usr/bin/env python3
"""Who held the CPUs while the server and the load generator waited for one
(docs/performance.md, issue 3, session 10, helper "tail2").

  PERF=1 experiments/node-vs-redis/openab.sh BIN|redis PORT RATE 8s TAG   # prints "kept: DIR"
  experiments/node-vs-redis/schedwaits.py DIR [THRESHOLD_MS]

From `perf sched record -a` of one openab.sh run (DIR/sched.data,
DIR/server.pid, DIR/generator.pid), for every thread of the two processes: its
waits for a CPU (from being woken, or preempted while runnable, to running
again), their p50/p99/max, and for the waits of THRESHOLD_MS (default 0.5)
or more which categories ran on the CPUs meanwhile: the server, the
generator, the thread itself, perf, other processes ("others": on a shared
machine, other work) or nobody ("idle"). Also the per-CPU stretches of 20 ms
or more without a single scheduler event: with work queued, a CPU that
records nothing for that long was not running the guest at all (a virtual
CPU stalled by its host), which no process in the guest can cause or avoid.
"""
import bisect
import collections
import re
import subprocess
import sys

HDR = re.compile(r'^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s*(.*)$')
SWITCH = re.compile(r'prev_comm=.* prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=.* next_pid=(\d+)')
WAKE = re.compile(r'comm=.* pid=(\d+) prio')


def main():
    d = sys.argv[1]
    threshold = float(sys.argv[2]) / 1e3 if len(sys.argv) > 2 else 0.5e-3
    server = int(open(d + '/server.pid').read())
    generator = int(open(d + '/generator.pid').read().split()[0])
    out = subprocess.run(['perf', 'script', '-i', d + '/sched.data', '-F', 'comm,pid,tid,cpu,time,event,trace'],
                         capture_output=True, text=True, check=True).stdout
    tgid, comm, events = {}, {}, []
    for line in out.splitlines():
        m = HDR.match(line)
        if m:
            c, pid, tid, cpu, t, ev, tr = m.groups()
            tgid[int(tid)], comm[int(tid)] = int(pid), c
            events.append((float(t), int(cpu), ev, tr))

    def category(tid):
        if tid == 0:
            return 'idle'
        g = tgid.get(tid)
        if g == server:
            return 'server'
        if g == generator:
            return 'generator'
        return 'perf' if comm.get(tid, '').startswith('perf') else 'others'

    running, since = {}, {}
    intervals = collections.defaultdict(list)  # per CPU: (start, end, tid)
    wait_from, waits = {}, collections.defaultdict(list)
    last, gaps = {}, []
    for t, cpu, ev, tr in events:
        if cpu in last and t - last[cpu] >= 0.02:
            gaps.append((cpu, last[cpu], t - last[cpu]))
        last[cpu] = t
        if ev == 'sched_switch':
            prev, state, nxt = SWITCH.search(tr).groups()
            prev, nxt = int(prev), int(nxt)
            if cpu in running:
                intervals[cpu].append((since[cpu], t, running[cpu]))
            running[cpu], since[cpu] = nxt, t
            if state.startswith('R'):
                wait_from[prev] = (t, 'preempted')
            if nxt in wait_from:
                t0, why = wait_from.pop(nxt)
                waits[nxt].append((t0, t, why))
        elif ev in ('sched_waking', 'sched_wakeup_new'):
            tid = int(WAKE.search(tr).group(1))
            wait_from.setdefault(tid, (t, 'woken'))
    starts = {cpu: [iv[0] for iv in ivs] for cpu, ivs in intervals.items()}

    def held(a, b, self_tid):
        occ = collections.Counter()
        for cpu, ivs in intervals.items():
            k = max(bisect.bisect_left(starts[cpu], a) - 1, 0)
            while k < len(ivs) and ivs[k][0] < b:
                s, e, tid = ivs[k]
                k += 1
                if e > a:
                    occ['self' if tid == self_tid else category(tid)] += min(b, e) - max(a, s)
        return occ

    ran = collections.Counter()
    for ivs in intervals.values():
        for s, e, tid in ivs:
            ran[category(tid)] += e - s
    print('server %d, generator %d; CPU-seconds ran: %s' % (
        server, generator, ', '.join('%s %.2f' % kv for kv in ran.most_common())))
    for name, pid in (('server', server), ('generator', generator)):
        tids = sorted((tid for tid in waits if tgid.get(tid) == pid), key=lambda x: -len(waits[x]))
        total = sum(len(waits[tid]) for tid in tids)
        print('%s: %d waits for a CPU in %d threads' % (name, total, len(tids)))
        for tid in tids:
            w = waits[tid]
            ds = sorted(b - a for a, b, _ in w)
            n = len(ds)
            slow = [x for x in w if x[1] - x[0] >= threshold]
            occ = collections.Counter()
            for a, b, _ in slow:
                occ.update(held(a, b, tid))
            tot = sum(occ.values()) or 1
            print('  tid %d: %d waits, p50 %.3f p99 %.3f max %.3f ms; %d >= %.1f ms (%.1f ms; woken %d, preempted %d)%s' % (
                tid, n, ds[n // 2] * 1e3, ds[int(n * .99)] * 1e3, ds[-1] * 1e3, len(slow), threshold * 1e3,
                sum(b - a for a, b, _ in slow) * 1e3, sum(1 for x in slow if x[2] == 'woken'),
                sum(1 for x in slow if x[2] == 'preempted'),
                '; CPUs meanwhile: ' + ', '.join('%s %.0f%%' % (k, 100 * v / tot) for k, v in occ.most_common()) if slow else ''))
    print('CPU stretches of >= 20 ms without a scheduler event: %d%s' % (
        len(gaps), ''.join('\n  cpu %d at %.3f s: %.1f ms' % (c, t, g * 1e3) for c, t, g in gaps)))


if __name__ == '__main__':
    main()
