#!/usr/bin/env python3
"""Where a node's event loop and goroutines spent a Go execution trace, for
the open-loop tail (docs/performance.md, issue 3, session 9, "the open-loop
tail at a quarter to half load").

  curl -o trace.out 'http://METRICS_ADDR/debug/pprof/trace?seconds=4'   # dialkv node --metrics
  go tool trace -d=parsed trace.out > parsed.txt
  experiments/node-vs-redis/loopstats.py parsed.txt

Prints (1) each goroutine kind's running time and longest running stretch
(the GC's mark worker, Pebble's goroutines, the TTL sweep, the loop), and
(2) the event loop goroutine's system calls: how many epoll_waits, reads and
writes took 1 ms or more and when each began (seconds into the trace). An epoll_wait of milliseconds while the
load generator's schedule sends a request every ~0.1 ms means no request
reached the node in that time; a non-blocking read or write of milliseconds
means the thread was descheduled by the kernel. Complements tracestats.py
(scheduling latencies, GC phases).
"""
import sys, re, collections

EV = re.compile(r'^M=(-?\d+) P=(-?\d+) G=(-?\d+) (\w+) Time=(\d+) (.*)$')
ST = re.compile(r'GoID=(-?\d+) (\w+)->(\w+) Reason="([^"]*)"')


def events(lines):
    """Yields (time, transition match or None, stack) per event."""
    i, n = 0, len(lines)
    while i < n:
        m = EV.match(lines[i])
        if not m:
            i += 1
            continue
        j, stk = i + 1, []
        while j < n and not lines[j].startswith('M='):
            if '@' in lines[j]:
                stk.append(lines[j].strip().split(' @')[0])
            j += 1
        yield int(m.group(5)), ST.search(m.group(6)), stk
        i = j


def main():
    lines = open(sys.argv[1]).read().split('\n')
    evs = list(events(lines))
    t0 = evs[0][0]
    name, run, tot, mx, loop = {}, {}, collections.Counter(), collections.Counter(), set()
    for t, s, stk in evs:
        if not s:
            continue
        g = int(s.group(1))
        if stk and len(stk) > len(name.get(g, [])):
            name[g] = stk
        if any('epollLoop' in f for f in stk):
            loop.add(g)
        if s.group(3) == 'Running':
            run[g] = t
        elif s.group(2) == 'Running' and g in run:
            d = t - run.pop(g)
            tot[g] += d
            mx[g] = max(mx[g], d)
    agg, amx = collections.Counter(), collections.Counter()
    for g, d in tot.items():
        stk = name.get(g, [])
        k = ' < '.join(f.split('/')[-1] for f in stk[-2:]) if stk else 'G%d' % g
        agg[k] += d
        amx[k] = max(amx[k], mx[g])
    print('span %.2fs; running time by goroutine kind (bottom two frames):' % ((evs[-1][0] - t0) / 1e9))
    for k, d in agg.most_common(12):
        print('  %8.1fms  longest %6.2fms  %s' % (d / 1e6, amx[k] / 1e6, k))
    since, first, res = {}, {}, []
    for t, s, stk in evs:
        if not s or int(s.group(1)) not in loop:
            continue
        g = int(s.group(1))
        if s.group(3) == 'Syscall':
            since[g], first[g] = t, (stk[0].split('/')[-1] if stk else '?')
        elif s.group(2) == 'Syscall' and g in since:
            start = since.pop(g)
            res.append((t - start, start - t0, first[g]))
    for call in sorted({c for _, _, c in res}):
        ds = [(d, a) for d, a, c in res if c == call]
        big = sorted((a, d) for d, a in ds if d >= 1e6)
        print('loop %s: n=%d, >=1ms: %d (%.1fms in all)' % (call, len(ds), len(big), sum(d for _, d in big) / 1e6))
        print('   ' + ' '.join('%.1fms@%.3fs' % (d / 1e6, a / 1e9) for a, d in big[:60]))


main()
