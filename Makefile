# dialkv — see README.md. `make run` starts a local cluster; `make test` runs
# everything that must always pass (under 10 minutes on 2 cores).
GO        ?= go
BIN       := bin/dialkv
PKGS      := ./...
TEST_FLAGS ?= -count=1 -timeout 9m

.PHONY: all build run test test-short soak bench lint gen tidy clean experiments exp-% experiments-sim experiments-real exp-jepsen exp-node-vs-redis exp-raft-vs-etcd exp-causal-real exp-strategies-real exp-partition-real exp-rebalance-real exp-raftrebalance-real fuzz-short docker compose-up compose-down

all: build

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/dialkv

run: build
	./$(BIN) demo

# The fault tests on real processes (clients/jepsen) use the static binary
# built here; the Docker ones skip with a message where Docker is missing.
test: build
	$(GO) vet $(PKGS)
	DIALKV_BIN=$(CURDIR)/$(BIN) $(GO) test $(TEST_FLAGS) $(PKGS)
	$(MAKE) fuzz-short

# A short run of every fuzz target (their seed corpora also run in plain
# `go test`); FUZZTIME=10m for long runs (make soak uses 2m).
FUZZTIME ?= 8s
FUZZ_TARGETS := core:FuzzDecodeCommand core:FuzzDecodeReplyTxn transport:FuzzProcess transport:FuzzExecuteArgs transport:FuzzFrameMethod checker:FuzzReadHistory nodes/security:FuzzParsePolicy nodes/security:FuzzParsePasswordHash nodes/security:FuzzGuardRequest transport:FuzzPeerDeliver nodes:FuzzParsePeers nodes:FuzzParseCatalog transport/raftls:FuzzReadFrame
fuzz-short:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz-short.sh $(FUZZ_TARGETS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

# Long runs: thousands of simulator seeds, long fuzzing, real-process fault tests.
soak: build
	DIALKV_SOAK=1 DIALKV_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 6h $(PKGS)
	$(MAKE) fuzz-short FUZZTIME=2m

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '/gen-go/')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) mod tidy -diff

# Regenerates the Thrift code (needs Debian's thrift-compiler).
gen:
	$(MAKE) -C transport/thrift gen

tidy:
	$(GO) mod tidy

clean:
	rm -rf bin

# The FROM scratch node image (deploy/Dockerfile): the static binary in a
# build context of its own, so nothing is pulled. IMAGE=dialkv:latest.
IMAGE ?= dialkv:latest
docker: build
	rm -rf bin/docker-context && mkdir -p bin/docker-context
	cp $(BIN) deploy/Dockerfile bin/docker-context/
	docker build -q -t $(IMAGE) bin/docker-context

# A local cluster in containers: make compose-up N=3 (or 5); compose-down
# stops it (V=1 also removes its data volumes). See docs/operations.md.
N ?= 3
COMPOSE := docker-compose -p dialkv$(N) -f deploy/compose-$(N).yml
compose-up: docker
	DIALKV_IMAGE=$(IMAGE) $(COMPOSE) up -d
	@echo "client ports: 127.0.0.1:7379 (n1), :7389 (n2), :7399 (n3)$(if $(filter 5,$(N)), :7409 (n4), :7419 (n5))"
	@echo "try: bin/dialkv cli --addr 127.0.0.1:7379 SET greeting hello"

compose-down:
	$(COMPOSE) down $(if $(V),-v)

# Every table and plot of PAPER.md; results under experiments/results/NAME/.
# `make experiments` runs all of them: the simulator's (experiments-sim) and
# those on real processes (experiments-real; they install redis-server and
# etcd-server from Debian if missing and take minutes of wall-clock load).
EXPERIMENTS := staleness latency availability lostwrites sensitivity simspeed failover rebalance-sim
EXPERIMENTS_REAL := node-vs-redis raft-vs-etcd strategies-real causal-real jepsen partition-real rebalance-real raftrebalance-real
experiments: experiments-sim experiments-real
experiments-sim: $(addprefix exp-,$(EXPERIMENTS))
experiments-real: $(addprefix exp-,$(EXPERIMENTS_REAL))

# Real processes: fault tests (kill -9, SIGSTOP, rolling restart) checked by the checkers.
exp-jepsen:
	experiments/jepsen/run.sh

# Real processes: one node against redis-server.
exp-node-vs-redis:
	experiments/node-vs-redis/run.sh

# Real processes (needs etcd-server; run.sh installs it).
exp-raft-vs-etcd:
	experiments/raft-vs-etcd/run.sh

# Real loopback nodes in one process: causal+ against quorum, cross-region lag.
exp-causal-real:
	$(GO) run ./experiments/causal-real

# Real processes partitioned with iptables (needs root; skips otherwise):
# availability per strategy and level on each side.
exp-partition-real: build
	$(GO) run ./experiments/partition-real

# Real processes: a quorum ring grows by one node and shrinks by one under
# load (data moved, time until rebalanced, availability during the change).
exp-rebalance-real: build
	$(GO) run ./experiments/rebalance-real

# Real processes: a raft namespace gains a node and retires one under writes
# (the cluster's rebalancer moves the replicas).
exp-raftrebalance-real: build
	$(GO) run ./experiments/raftrebalance-real

# Real processes: every strategy and consistency level (local; quorum R/W,
# strict, ABD; raft linearizable, lease, stale; causal) in one run.
exp-strategies-real: build
	$(GO) run ./experiments/strategies-real

exp-%:
	$(GO) run ./experiments/$*
