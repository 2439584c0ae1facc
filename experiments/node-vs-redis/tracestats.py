#!/usr/bin/env python3
"""Scheduling and GC statistics of a Go execution trace, for finding where a
node's tail latency goes (docs/performance.md, issue 3, session 4).

  curl -o trace.out 'http://METRICS_ADDR/debug/pprof/trace?seconds=3'   # dialkv node --metrics
  go tool trace -d=parsed trace.out > parsed.txt
  experiments/node-vs-redis/tracestats.py parsed.txt

Prints the scheduling latency of goroutines (Runnable -> Running) by what
they came from, system calls (and how many returned without their P), the
GC's mark phases, mark assists and stop-the-world pauses with the
scheduling latency of goroutines readied during each, the largest
latencies, and the stacks that most often blocked on a mutex ("sync") or
were preempted. On a shared machine the kernel's descheduling of the whole
process shows up as large latencies outside any GC range.
"""
import sys, re, collections
fn = sys.argv[1]
ev = re.compile(r'^M=(-?\d+) P=(-?\d+) G=(-?\d+) (\w+) Time=(\d+) (.*)$')
st = re.compile(r'(GoID|ProcID)=(-?\d+) (\w+)->(\w+) Reason="([^"]*)"')
runnable_since = {}
sched = []   # (latency ns, goid, time)
sys_since = {}
syscalls = []
ranges = {}
gcr = []
stackfor = collections.Counter()
cur = None; curstack=[]; want=None
lines = open(fn).read().split('\n')
i=0
first=None
gostack = {}
pending=None
for ln in lines:
    if ln.startswith('M='):
        if pending is not None:
            stackfor[(pending, ' < '.join(curstack[:4]))]+=1
            pending=None
        curstack=[]
        m = ev.match(ln)
        if not m: continue
        kind=m.group(4); t=int(m.group(5)); rest=m.group(6)
        if first is None: first=t
        if kind=='StateTransition':
            s = st.search(rest)
            if not s or s.group(1)!='GoID': continue
            g=int(s.group(2)); a,b,reason=s.group(3),s.group(4),s.group(5)
            if b=='Runnable':
                runnable_since[g]=(t,a,reason)
            if a=='Runnable' and b=='Running' and g in runnable_since:
                t0,frm,r=runnable_since.pop(g)
                sched.append((t-t0,g,t0,frm+':'+r))
            if b=='Syscall': sys_since[g]=t
            if a=='Syscall' and g in sys_since:
                syscalls.append((t-sys_since.pop(g),g,t,b))
            if reason in ('runtime.Gosched','sync','preempted'):
                pending=reason
        elif kind in('RangeBegin','RangeEnd'):
            name=re.search(r'Name="([^"]*)"',rest).group(1)
            key=(name,re.search(r'Scope=(\S+)',rest).group(1))
            if kind=='RangeBegin': ranges[key]=t
            elif key in ranges: gcr.append((name,ranges.pop(key),t))
    elif ln.startswith('\t') and not ln.startswith('\t\t') and pending is not None:
        curstack.append(ln.strip().split(' @')[0])
if pending is not None:
    stackfor[(pending,' < '.join(curstack[:4]))]+=1
def pct(a,q): 
    a=sorted(a); return a[min(len(a)-1,int(q*len(a)))] if a else 0
lat=[x[0] for x in sched]
print("span %.2fs"%((t-first)/1e9))
print("sched latency n=%d p50 %.1fus p99 %.1fus p999 %.1fus max %.1fus"%(len(lat),pct(lat,.5)/1e3,pct(lat,.99)/1e3,pct(lat,.999)/1e3,max(lat)/1e3))
byfrom=collections.defaultdict(list)
for l,g,t0,f in sched: byfrom[f].append(l)
for f,v in byfrom.items(): print("  from %-25s n=%6d p50 %7.1fus p99 %8.1fus max %8.1fus >1ms %d"%(f,len(v),pct(v,.5)/1e3,pct(v,.99)/1e3,max(v)/1e3,sum(1 for x in v if x>1e6)))
sl=[x[0] for x in syscalls]
print("syscall dur n=%d p50 %.1fus p99 %.1fus max %.1fus; ended Runnable (lost P): %d"%(len(sl),pct(sl,.5)/1e3,pct(sl,.99)/1e3,max(sl)/1e3,sum(1 for x in syscalls if x[3]=='Runnable')))
for name,a,b in gcr:
    if 'sweep' in name: continue
    inside=[l for l,g,t0,f in sched if t0>=a and t0<=b]
    print("  %-40s at %.3fs dur %.2fms; sched lat of G made runnable inside: n=%d p99 %.1fus max %.1fus"%(name,(a-first)/1e9,(b-a)/1e6,len(inside),pct(inside,.99)/1e3,max(inside or [0])/1e3))
big=sorted(sched,reverse=True)[:15]
for l,g,t0,f in big: print("  big sched lat %.2fms G%d at %.3fs %s"%(l/1e6,g,(t0-first)/1e9,f))
for k,v in stackfor.most_common(12): print(v,k)
