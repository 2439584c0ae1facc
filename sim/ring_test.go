package sim

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dialkv/dialkv/sim/simrun"
)

// TestRingChangeDeterminism: a quorum run whose ring grows and then
// shrinks gives the same history and trace twice for one seed, and
// another history for another seed.
func TestRingChangeDeterminism(t *testing.T) {
	t.Parallel()
	o := simrun.Options{Strategy: "quorum", Seed: 42, Ops: 400, Nodes: 4, Faults: []string{"all"}, RingChange: "add,remove"}
	a, err := run(o, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := run(o, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.history, b.history) || !bytes.Equal(a.trace, b.trace) {
		t.Errorf("same seed, different history or trace\nreproduce: %s", o.Command())
	}
	if !bytes.Contains(a.trace, []byte("(stream)")) || !bytes.Contains(a.trace, []byte("(stable)")) {
		t.Error("the trace shows no ring change")
	}
	o.Seed = 43
	c, err := run(o, true)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.history, c.history) {
		t.Error("seeds 42 and 43 gave the same history")
	}
}

// TestRingChangePasses: with the default faults, every kind of change
// finishes (joint, stream, stable in order), moves objects, and the run's
// checks (durability, convergence) pass, over a few seeds. The long sweep
// (50 seeds each) is in docs/simulator.md.
func TestRingChangePasses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		change string
		kinds  []string
	}{
		{"add", []string{"add"}},
		{"remove", []string{"remove"}},
		{"add,remove", []string{"add", "remove"}},
	} {
		t.Run(tc.change, func(t *testing.T) {
			o := simrun.Options{Strategy: "quorum", Ops: 300, Nodes: 4, RingChange: tc.change}
			moved := 0
			for _, res := range sweepSeeds(t, o, 4) {
				if res.Verdict != simrun.Pass {
					t.Errorf("seed %d: %s %v\nreproduce: %s", res.Options.Seed, res.Verdict, res.Problems, res.Options.Command())
				}
				if len(res.RingChanges) != len(tc.kinds) {
					t.Fatalf("seed %d: %d ring changes, want %d", res.Options.Seed, len(res.RingChanges), len(tc.kinds))
				}
				for i, c := range res.RingChanges {
					if c.Kind != tc.kinds[i] {
						t.Errorf("seed %d: change %d is %s, want %s", res.Options.Seed, i, c.Kind, tc.kinds[i])
					}
					if !(c.StartNS < c.StreamNS && c.StreamNS <= c.StreamEndNS && c.StreamEndNS <= c.StableNS) {
						t.Errorf("seed %d: change %d out of order: %s", res.Options.Seed, i, RingChangeLine(c))
					}
					if len(c.To) != len(c.From)+map[bool]int{true: 1, false: -1}[c.Kind == "add"] {
						t.Errorf("seed %d: change %d: %v -> %v", res.Options.Seed, i, c.From, c.To)
					}
					moved += c.Moved
				}
			}
			if moved == 0 {
				t.Error("no object moved in any seed")
			}
		})
	}
}

// TestRingChangeUsage: bad --ring-change values are usage errors.
func TestRingChangeUsage(t *testing.T) {
	for _, tc := range []struct {
		o    simrun.Options
		want string
	}{
		{simrun.Options{Strategy: "causal", Nodes: 4, RingChange: "add"}, "needs --strategy quorum"},
		{simrun.Options{Strategy: "quorum", Nodes: 4, RingChange: "grow"}, "want add, remove"},
		{simrun.Options{Strategy: "quorum", Nodes: 4, RingChange: "remove,add"}, "add must come first"},
		{simrun.Options{Strategy: "quorum", Nodes: 3, RingChange: "add"}, "fewer than the replication factor"},
		{simrun.Options{Strategy: "quorum", Nodes: 3, RingChange: "remove"}, "fewer than the replication factor"},
	} {
		_, err := Run(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.o.Command(), err, tc.want)
		}
	}
}
