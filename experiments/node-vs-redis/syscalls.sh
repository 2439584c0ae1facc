#!/usr/bin/env bash
# Per-request syscalls and context switches of a node (issue 3 profiling): one
# fresh node of BIN, keys loaded, a 16 s `dialkv bench --io loop` (50 clients),
# and `perf stat` of the node for 8 s of it:
# counts per operation (operations = bench ops/s x 8 s; divide by the `read`
# column for per-request figures, one read per request on the event loop) and
# the node CPU µs per operation over the whole bench. Alternate binaries as
# with ab.sh:
#
#   for b in old new old new; do experiments/node-vs-redis/syscalls.sh bin/dialkv-$b always $b; done
#
# Usage: syscalls.sh BIN FSYNC TAG [PORT] (needs perf and its syscall tracepoints).
set -euo pipefail
B=$1; F=$2; T=$3; P=${4:-18441}
D=$(mktemp -d)
$B node --id p --listen 127.0.0.1:$P --data $D --fsync $F --log-level warn > $D/node.log 2>&1 & NP=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$P) 2>/dev/null && break; sleep 0.1; done
$B bench --addr 127.0.0.1:$P --clients 50 --keys 100000 --duration 1ms --load=true >/dev/null 2>&1
c0=$(awk '{print $14+$15}' /proc/$NP/stat)
$B bench --addr 127.0.0.1:$P --clients 50 --keys 100000 --duration 16s --load=false --io loop --progress 100s --json > $D/b.json 2>/dev/null &
BP=$!
sleep 4
perf stat -x, -e task-clock,context-switches,syscalls:sys_enter_nanosleep,syscalls:sys_enter_futex,syscalls:sys_enter_fdatasync,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_epoll_pwait -p $NP -o $D/stat.txt -- sleep 8 >/dev/null 2>&1 || true
wait $BP
c1=$(awk '{print $14+$15}' /proc/$NP/stat)
kill $NP; wait $NP 2>/dev/null || true
python3 - "$D/b.json" "$D/stat.txt" "$c0" "$c1" "$T" <<'PY'
import json,sys
r=json.load(open(sys.argv[1])); o=r['ops_per_sec']*8
st={}
for l in open(sys.argv[2]):
    p=l.strip().split(',')
    if len(p)>3 and p[0] and p[0][0].isdigit(): st[p[2].replace('syscalls:sys_enter_','')]=float(p[0])
cpu=(int(sys.argv[4])-int(sys.argv[3]))*1e4/r['ops']
print('%s ops/s=%.0f cpu_us/op=%.2f '%(sys.argv[5],r['ops_per_sec'],cpu)+' '.join('%s=%.3f'%(k,v/o) for k,v in st.items() if k!='task-clock')+' w_p99=%.2f load=%s'%(r['writes']['p99_ms'],open('/proc/loadavg').read().split()[0]))
PY
rm -rf $D
