package main

import (
	"testing"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/sim"
)

// Every bug has a setup of its own (a new bug without one would run the
// defaults silently).
func TestEveryBugHasASetup(t *testing.T) {
	for _, b := range sim.AllBugs() {
		o := setup(b.Name, b.Strategy, false)
		if o.Faults == nil && o.Workload == "" && o.Params == nil && o.Regions == 0 && o.TokenlessReaders == 0 {
			t.Errorf("bug %s has no setup in sensitivity's setup()", b.Name)
		}
	}
}

// A stale read after an acknowledged write is caught at the read: the
// position is 1 + its id, not the end of the history.
func TestCaughtAtStaleRead(t *testing.T) {
	c := func(n int64) *int64 { return &n }
	v1, v0 := "v1", "v0"
	ops := []checker.Op{
		{ID: 0, Client: 0, F: "put", Key: "r0", Args: []string{"v0"}, Invoke: 0, Complete: c(1), Outcome: checker.OK},
		{ID: 1, Client: 0, F: "put", Key: "r0", Args: []string{"v1"}, Invoke: 2, Complete: c(3), Outcome: checker.OK},
		{ID: 2, Client: 1, F: "get", Key: "r0", Invoke: 4, Complete: c(5), Outcome: checker.OK, Value: &v0},
		{ID: 3, Client: 1, F: "get", Key: "r0", Invoke: 6, Complete: c(7), Outcome: checker.OK, Value: &v1},
		{ID: 4, Client: 1, F: "get", Key: "r0", Invoke: 8, Complete: c(9), Outcome: checker.OK, Value: &v1},
	}
	if got := caughtAt(ops, nil, []string{checker.CheckLinearizable}); got != 3 {
		t.Fatalf("caughtAt = %d, want 3 (the stale read is op 2)", got)
	}
	if got := caughtAt(ops[:2], nil, []string{checker.CheckLinearizable}); got != 0 {
		t.Fatalf("caughtAt of a linearizable history = %d, want 0", got)
	}
}
