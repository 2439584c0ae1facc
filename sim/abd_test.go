package sim

import (
	"fmt"
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
	for _, fl := range [][]string{{"none"}, nil, {"all"}} {
		t.Run(fmt.Sprint(fl), func(t *testing.T) {
			t.Parallel()
			o := simrun.Options{Strategy: "quorum", Workload: "register", Ops: 500, Faults: fl,
				Params: map[string]string{"mode": "linearizable"}}
			for seed := uint64(1); seed <= uint64(n); seed++ {
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
