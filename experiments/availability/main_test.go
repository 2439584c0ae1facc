package main

import (
	"testing"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/experiments/internal/simexp"
)

// Operations are classified by the node first contacted (trace invoke
// lines win over the op's node) at their invocation time.
func TestTallyHandComputed(t *testing.T) {
	trace := "0.000000001 c0 invoke op=0 GET r1 -> n3\n" +
		"0.100000000 sim fault t=100ms partition isolate {n1,n2} | {n3} for 100ms\n" +
		"0.150000000 c1 invoke op=1 PUT r1 v -> n3\n" +
		"0.160000000 c2 invoke op=2 GET r1 -> n1\n" +
		"0.200000000 sim heal partition isolate {n1,n2} | {n3}\n"
	c := func(n int64) *int64 { return &n }
	ops := []checker.Op{
		{ID: 0, F: "get", Invoke: 1, Complete: c(10), Outcome: checker.OK, Node: "n3"},
		{ID: 1, F: "put", Invoke: 15e7, Outcome: checker.Unknown, Node: "n1"}, // redirected, but contacted n3
		{ID: 2, F: "get", Invoke: 16e7, Complete: c(17e7), Outcome: checker.OK, Node: "n1"},
		{ID: 3, F: "cas", Invoke: 16e7, Complete: c(17e7), Outcome: checker.Fail, Node: "n1"}, // not counted
		{ID: 4, F: "put", Invoke: 3e8, Complete: c(4e8), Outcome: checker.OK, Node: "n2"},
	}
	var ta tally
	if err := ta.add(&simexp.Run{Ops: ops, Trace: []byte(trace)}, 3, 5); err != nil {
		t.Fatal(err)
	}
	want := tally{}
	want.n[simexp.Whole] = [2]int{1, 1}
	want.ok[simexp.Whole] = [2]int{1, 1}
	want.n[simexp.Minority] = [2]int{0, 1}
	want.n[simexp.Majority] = [2]int{1, 0}
	want.ok[simexp.Majority] = [2]int{1, 0}
	if ta != want {
		t.Fatalf("tally %+v, want %+v", ta, want)
	}
	if ta.frac(simexp.Minority, 1) != 0 || ta.frac(simexp.Minority, 0) != -1 || ta.frac(simexp.Whole, -1) != 1 {
		t.Fatal("fractions wrong")
	}
}
