#!/usr/bin/env bash
# syscalls.sh for both servers (issue 3, session 11, helper always3): per-operation
# system calls, context switches, CPU and operations per fdatasync of one fresh
# `dialkv node --fsync always` (KIND=node) or `redis-server --appendonly yes
# --appendfsync always` (KIND=redis), keys loaded, under the same load generator
# (`dialkv bench --io loop`, 50 clients, 70/30; --protocol resp for Redis), with
# `perf stat` of the server for 8 s starting 4 s into a DUR-long run (default 16s).
# Alternate the two in one sitting:
#
#   for i in 1 2 3; do S=experiments/node-vs-redis/syscalls-vs-redis.sh
#     $S node bin/dialkv node 15101 12s; $S redis bin/dialkv redis 15201 12s; done
#
# Usage: syscalls-vs-redis.sh KIND BIN TAG PORT [DUR] (needs perf, redis-server, python3).
# FSYNC=never|always (default always): the node's --fsync (syscalls.sh's runs).
set -euo pipefail
K=$1; B=$2; T=$3; P=$4; DUR=${5:-16s}; FSYNC=${FSYNC:-always}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
if [ $K = node ]; then
  $B node --id p --listen 127.0.0.1:$P --data $D --fsync $FSYNC --log-level warn > $D/node.log 2>&1 & NP=$!
  PROTO=binary
else
  redis-server --port $P --bind 127.0.0.1 --dir $D --daemonize no --loglevel warning --save "" --appendonly yes --appendfsync always >$D/r.log 2>&1 & NP=$!
  PROTO=resp
fi
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$P) 2>/dev/null && break; sleep 0.1; done
$B bench --addr 127.0.0.1:$P --protocol $PROTO --clients 50 --keys 100000 --duration 1ms --load=true >/dev/null 2>&1
c0=$(awk '{print $14+$15}' /proc/$NP/stat)
$B bench --addr 127.0.0.1:$P --protocol $PROTO --clients 50 --keys 100000 --duration $DUR --load=false --io loop --progress 100s --json > $D/b.json 2>/dev/null &
BP=$!
sleep 4
perf stat -x, -e task-clock,context-switches,cpu-migrations,syscalls:sys_enter_nanosleep,syscalls:sys_enter_futex,syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_pwrite64 -p $NP -o $D/stat.txt -- sleep 8 >/dev/null 2>&1 || true
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
fs=st.get('fdatasync',0)+st.get('fsync',0)
print('%s ops/s=%.0f cpu_us/op=%.2f '%(sys.argv[5],r['ops_per_sec'],cpu)+' '.join('%s=%.3f'%(k,v/o) for k,v in st.items() if k!='task-clock' and v>0)+' ops/sync=%.1f w_p99=%.2f r_p50=%.3f load=%s'%(o/fs if fs else 0, r['writes']['p99_ms'], r['reads']['p50_ms'], open('/proc/loadavg').read().split()[0]))
PY
