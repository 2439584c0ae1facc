#!/usr/bin/env python3
"""Per-round ratios of alternated openab.sh runs (docs/performance.md, issue 3,
session 11, helper tail3).

Feed it the lines of alternated runs, each prefixed with its round and rate:

  for r in 1 2 3 4 5 6 7 8; do for a in base new; do
    echo "r=$r rate=4675 $(PROGRESS=1s experiments/node-vs-redis/openab.sh bin/dialkv-$a 14010 4675 8s $a bin/dialkv-base)"
  done; done | tee runs.log
  experiments/node-vs-redis/openratios.py runs.log [BASE_TAG]

Per rate and tag it prints the read p99 of each round, how many rounds met
1 ms, the medians of p99.9, server CPU µs and context switches per operation,
the same for sec_p99 (openab.sh's median over the seconds of each second's
p99, with PROGRESS=1s), and for every tag but BASE_TAG (default "base") the
per-round ratios to BASE_TAG's run of the same round and rate, and their
medians.
"""
import re
import statistics as st
import sys

LINE = re.compile(
    r'r=(\d+) rate=(\d+) (\S+) \S+ ops/s=(\d+) read p50/p99/p99.9=([\d.]+)/([\d.]+)/([\d.]+)'
    r'(?: sec_p99=([\d.]+))? write_p99=([\d.]+) server_us/op=([\d.]+) generator_us/op=([\d.]+)'
    r' server_cs/op=([\d.]+).*load=([\d.]+)')


def parse(path):
    """Returns {(rate, tag, round): figures} and the tags in first-seen order."""
    rows, tags = {}, []
    for line in open(path):
        m = LINE.match(line)
        if not m:
            continue
        rate, tag, rnd = int(m[2]), m[3], int(m[1])
        rows[(rate, tag, rnd)] = dict(p99=float(m[6]), p999=float(m[7]), sec=float(m[8] or m[6]),
                                      us=float(m[10]), cs=float(m[12]), load=float(m[13]))
        if tag not in tags:
            tags.append(tag)
    return rows, tags


def fmt(xs):
    return ' '.join('%.2f' % x for x in xs)


def ratios(rows, rate, tag, base, key):
    """The per-round ratios tag/base of figure key, over the rounds both have."""
    rs = sorted(k[2] for k in rows if k[0] == rate and k[1] == tag and (rate, base, k[2]) in rows)
    return [rows[(rate, tag, r)][key] / rows[(rate, base, r)][key] for r in rs]


def report(rows, tags, base):
    for rate in sorted({k[0] for k in rows}):
        print('rate %d (load median %.1f)' % (rate, st.median(x['load'] for k, x in rows.items() if k[0] == rate)))
        for t in tags:
            v = [rows[k] for k in sorted(k for k in rows if k[0] == rate and k[1] == t)]
            if not v:
                continue
            p99, sec = [x['p99'] for x in v], [x['sec'] for x in v]
            print('  %-8s n=%d read p99 med %.2f [%s] <1ms %d/%d; sec_p99 med %.2f <1ms %d/%d; p99.9 med %.2f; '
                  'us/op %.1f; cs/op %.2f' % (t, len(v), st.median(p99), fmt(p99), sum(x < 1 for x in p99), len(v),
                                              st.median(sec), sum(x < 1 for x in sec), len(v),
                                              st.median(x['p999'] for x in v), st.median(x['us'] for x in v),
                                              st.median(x['cs'] for x in v)))
            if t == base:
                continue
            for key, name in (('p99', 'p99'), ('sec', 'sec_p99'), ('us', 'us/op'), ('cs', 'cs/op')):
                rr = ratios(rows, rate, t, base, key)
                if rr:
                    print('           %-7s /%s [%s] med %.2f (%d/%d lower)' % (name, base, fmt(rr), st.median(rr),
                                                                         sum(x < 1 for x in rr), len(rr)))


if __name__ == '__main__':
    rows, tags = parse(sys.argv[1])
    report(rows, tags, sys.argv[2] if len(sys.argv) > 2 else 'base')
