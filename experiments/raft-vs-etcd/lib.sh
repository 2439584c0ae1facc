# Shared by the scripts of this directory (sourced): a work directory whose
# processes are stopped and which is removed at exit (KEEP=1 keeps it), the
# build of dialkv, the driver and etcd's benchmark tool, the A/B scripts'
# cluster start (ab.sh, vs-ab.sh) and their per-process counters.

# start_work PREFIX: WORK=a fresh temporary directory; PIDS (append the
# processes to stop) are killed and waited for at exit.
start_work() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  PIDS=()
  trap 'stop_all; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
}

stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

# build_all: bin/dialkv (BIN), $WORK/driver and $WORK/benchmark (etcd's
# tools/benchmark v3.5.11, built in a temporary module so that dialkv's
# go.mod stays clean).
build_all() {
  echo "building dialkv, the driver and etcd's benchmark" >&2
  mkdir -p bin
  CGO_ENABLED=0 go build -o bin/dialkv ./cmd/dialkv
  go build -o "$WORK/driver" ./experiments/raft-vs-etcd/driver
  mkdir -p "$WORK/etcdbench"
  cp experiments/raft-vs-etcd/etcdbench.go.mod "$WORK/etcdbench/go.mod"
  cp experiments/raft-vs-etcd/etcdbench.go.sum "$WORK/etcdbench/go.sum"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/v3/tools/benchmark"\n' > "$WORK/etcdbench/tools.go"
  (cd "$WORK/etcdbench" && GOFLAGS=-mod=mod go build -o "$WORK/benchmark" go.etcd.io/etcd/v3/tools/benchmark)
  BIN=$PWD/bin/dialkv
}

# wait_up ADDR LOG: waits up to 30 s for the node at ADDR to answer PING;
# if it does not, prints the end of its log LOG and exits 1 (a node slow to
# start on a busy machine is waited for, one that failed says why).
wait_up() {
  for _ in $(seq 300); do "$BIN" cli --addr "$1" PING >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "the node at $1 did not answer PING within 30 s; the end of $2:" >&2
  tail -n 20 "$2" >&2 || true
  exit 1
}

# start_ab_cluster LABEL P BIN ENVS NSPARAMS DIR: a 3-node dialkv cluster of
# BIN on loopback (client ports P, P+10, P+20; raft P+100...; metrics
# client port + 5; --fsync always; data and logs DIR/LABEL-n<j>), ENVS the
# nodes' environment (space separated), and its raft namespace r1 (1 shard,
# NSPARAMS: comma separated parameter,value pairs), warmed by one SET.
# Appends the nodes to PIDS; sets AB_PIDS (the three, space separated) and
# AB_ADDRS (the client addresses, comma separated).
start_ab_cluster() {
  local label=$1 P=$2 bin=$3 envs=$4 nsp=$5 dir=$6 peers="" raddrs="" j
  AB_ADDRS=""; AB_PIDS=""
  for j in 0 1 2; do
    peers+="${peers:+,}n$((j+1))=127.0.0.1:$((P+10*j))@127.0.0.1:$((P+10*j+1))"
    AB_ADDRS+="${AB_ADDRS:+,}127.0.0.1:$((P+10*j))"; raddrs+="${raddrs:+,}127.0.0.1:$((P+100+10*j))"
  done
  for j in 0 1 2; do
    rm -rf "$dir/$label-n$j"
    env $envs "$bin" node --id n$((j+1)) --listen 127.0.0.1:$((P+10*j)) --data "$dir/$label-n$j" --fsync always \
      --cluster ab$label --peers "$peers" --log-level warn --metrics 127.0.0.1:$((P+10*j+5)) >> "$dir/$label-n$j.log" 2>&1 &
    PIDS+=($!); AB_PIDS+="$! "
  done
  # Every node must answer before the namespace is created: the first
  # node's NAMESPACE CREATE fails when it is not up yet (seen under load).
  for j in 0 1 2; do
    for _ in $(seq 300); do "$bin" cli --addr 127.0.0.1:$((P+10*j)) PING >/dev/null 2>&1 && break; sleep 0.1; done
  done
  "$bin" cli --addr 127.0.0.1:$P NAMESPACE CREATE r1 raft nodes n1,n2,n3 raft-addrs "$raddrs" client-addrs "$AB_ADDRS" shards 1 ${nsp//,/ } >/dev/null
  for _ in $(seq 200); do "$bin" cli --addr 127.0.0.1:$((P+10)) --namespace r1 SET warm 1 2>/dev/null | grep -q OK && break; sleep 0.2; done
}

# start_ab_clusters ARG...: start_ab_cluster for every argument
# label=binary[@ENV][,param,value,...] (environment of that cluster's
# nodes, space separated; namespace parameters, NSPARAMS for arguments
# without), the i-th on ports PORTBASE+200*i (it uses P..P+125), under
# $OUT. Appends each label to LABELS and sets NODES[label] (the pids) and
# ADDRS[label] (the client addresses): the caller declares them
# (`declare -A NODES ADDRS; LABELS=()`).
start_ab_clusters() {
  local c=0 arg label
  for arg in "$@"; do
    label=${arg%%=*}
    LABELS+=("$label")
    start_ab_spec "$label" $((PORTBASE + 200*c)) "${arg#*=}" "$NSPARAMS"
    c=$((c+1))
    NODES[$label]=$AB_PIDS; ADDRS[$label]=$AB_ADDRS
  done
}

# start_ab_spec LABEL P SPEC NSP: start_ab_cluster (under $OUT) from SPEC,
# binary[@ENV][,param,value,...]; NSP: the namespace parameters when SPEC
# has none (comma separated).
start_ab_spec() {
  local label=$1 P=$2 rest=$3 nsp=$4 spec bin envs
  spec=${rest%%,*}; [ "$rest" = "$spec" ] || nsp=${rest#*,}
  bin=${spec%%@*}; envs=""; [ "$spec" = "$bin" ] || envs=${spec#*@}
  start_ab_cluster "$label" "$P" "$bin" "$envs" "$nsp" "$OUT"
}

# ticks PID...: each process's user+system CPU ticks so far (TICK_US µs each).
ticks() { for p in "$@"; do awk '{printf "%d ", $14+$15}' "/proc/$p/stat"; done; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# switches PID...: each process's context switches so far, every thread's
# voluntary + involuntary (threads that exited are not counted).
switches() { for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/{n+=$2} END{printf "%d ", n}'; done; }
