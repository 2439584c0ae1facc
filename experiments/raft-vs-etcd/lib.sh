# Shared by run.sh and profile.sh (sourced from the repository's root):
# a work directory whose processes are stopped and which is removed at exit
# (KEEP=1 keeps it), and the build of dialkv, the driver and etcd's
# benchmark tool.

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
