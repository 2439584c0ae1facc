package main

import (
	"testing"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/experiments/internal/simexp"
)

func op(id int64, f string, invoke, complete int64, out checker.Outcome) checker.Op {
	o := checker.Op{ID: id, F: f, Invoke: invoke, Outcome: out}
	if complete >= 0 {
		o.Complete = &complete
	}
	return o
}

// Latencies by kind, failures counted apart, cas and liveness-phase
// operations left out, throughput over the safety phase's span.
func TestStatsHandComputed(t *testing.T) {
	ops := []checker.Op{
		op(0, "get", 0, 2e6, checker.OK),
		op(1, "put", 1e6, 5e6, checker.OK),
		op(2, "cas", 2e6, 3e6, checker.Fail),
		op(3, "delete", 3e6, -1, checker.Unknown),
		op(4, "get", 4e6, 1e9, checker.OK), // liveness phase: ignored
	}
	var s stats
	s.add(ops, 4)
	if len(s.reads) != 1 || s.reads[0] != 2 || len(s.writes) != 1 || s.writes[0] != 4 {
		t.Fatalf("reads %v writes %v, want [2] and [4]", s.reads, s.writes)
	}
	if s.fails != 1 || s.okOps != 2 || s.virtualNS != 5e6 {
		t.Fatalf("fails=%d ok=%d span=%d, want 1, 2, 5ms", s.fails, s.okOps, s.virtualNS)
	}
	if got := s.throughput(); got != 400 {
		t.Fatalf("throughput %v, want 400 ops per virtual second", got)
	}
}

// One real run: the configuration is valid and yields latencies.
func TestOneRun(t *testing.T) {
	r, err := simexp.Sim(options(levels()[len(levels())-1], topologies()[0], 1, 100))
	if err != nil {
		t.Fatal(err)
	}
	var s stats
	s.add(r.Ops, 100)
	if len(s.reads) == 0 || len(s.writes) == 0 || s.throughput() <= 0 {
		t.Fatalf("no latencies from %s", r.Res.Options.Command())
	}
}
