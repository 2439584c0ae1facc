package sim

import (
	"testing"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/sim/simrun"
)

// TestQuorumLinearizableModePorcupine: the quorum strategy with
// mode=linearizable (ABD reads and writes) gives a register history that
// Porcupine accepts, without faults and under every fault kind. The
// simulator's own quorum checks do not include linearizability (the
// default mode is not linearizable), so the test runs it on the history.
//
// Regression: ABD GETs used to answer with every live sibling left by
// concurrent ABD writes from different coordinators (and DEL counted a
// key as present when a live sibling sat below a newer tombstone); seeds
// 1 and 2 of `dialkv sim --strategy quorum --workload register --params
// mode=linearizable --faults none` were not linearizable.
func TestQuorumLinearizableModePorcupine(t *testing.T) {
	t.Parallel()
	n := 8
	if soak() {
		n = 200
	}
	lin := map[string]string{"mode": "linearizable"}
	tests := []struct {
		name  string
		o     simrun.Options
		seeds []uint64 // nil: 1..n
	}{
		{"none", simrun.Options{Ops: 500, Faults: []string{"none"}}, nil},
		{"default-faults", simrun.Options{Ops: 500}, nil},
		{"all-faults", simrun.Options{Ops: 500, Faults: []string{"all"}}, nil},
		// Sharded (N=3 of 4 nodes): writes at non-owners are forwarded.
		// Seed 9 failed when a duplicated forward re-ran an ABD DEL after
		// a later PUT had been acknowledged (now deduplicated).
		{"4-nodes-forwarding", simrun.Options{Nodes: 4, Ops: 3000, Keys: 50}, []uint64{9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := tc.o
			o.Strategy, o.Workload, o.Params = "quorum", "register", lin
			seeds := tc.seeds
			if seeds == nil {
				for s := uint64(1); s <= uint64(n); s++ {
					seeds = append(seeds, s)
				}
			}
			for _, seed := range seeds {
				o.Seed = seed
				oc, err := run(o, false)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				if oc.res.Verdict != simrun.Pass {
					t.Errorf("seed %d: %s: %v\nreproduce: %s", seed, oc.res.Verdict, oc.res.Problems, o.Command())
				}
				copts := checker.DefaultOptions()
				copts.Checks = []string{checker.CheckLinearizable}
				copts.Timeout = checkerBudget
				copts.Visualize = 0
				c := checker.Check(oc.ops, nil, copts).Get(checker.CheckLinearizable)
				if c == nil || c.Verdict != checker.VerdictOK {
					t.Errorf("seed %d: linearizable check: %+v\nreproduce: %s --out DIR; dialkv check --history DIR/history.jsonl --checks linearizable", seed, c, o.Command())
				}
			}
		})
	}
}
