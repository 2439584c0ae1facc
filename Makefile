# dialkv — see README.md. `make run` starts a local cluster; `make test` runs
# everything that must always pass (under 10 minutes on 2 cores).
GO        ?= go
BIN       := bin/dialkv
PKGS      := ./...
TEST_FLAGS ?= -count=1 -timeout 9m

.PHONY: all build run test test-short soak bench lint gen tidy clean experiments exp-% exp-raft-vs-etcd fuzz-short

all: build

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/dialkv

run: build
	./$(BIN) demo

test:
	$(GO) vet $(PKGS)
	$(GO) test $(TEST_FLAGS) $(PKGS)
	$(MAKE) fuzz-short

# A short run of every fuzz target (their seed corpora also run in plain
# `go test`); FUZZTIME=10m for long runs (make soak uses 2m).
FUZZTIME ?= 8s
FUZZ_TARGETS := core:FuzzDecodeCommand core:FuzzDecodeReplyTxn transport:FuzzProcess checker:FuzzReadHistory nodes/security:FuzzParsePolicy nodes/security:FuzzParsePasswordHash
fuzz-short:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz-short.sh $(FUZZ_TARGETS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

# Long runs: thousands of simulator seeds, long fuzzing, real-process fault tests.
soak:
	DIALKV_SOAK=1 $(GO) test -count=1 -timeout 6h $(PKGS)
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

# Every table and plot of PAPER.md; results under experiments/results/NAME/.
EXPERIMENTS := staleness latency availability lostwrites sensitivity simspeed failover
experiments: $(addprefix exp-,$(EXPERIMENTS))

# Real processes, not part of `make experiments` (needs etcd-server; run.sh installs it).
exp-raft-vs-etcd:
	experiments/raft-vs-etcd/run.sh

exp-%:
	$(GO) run ./experiments/$*
