package sim

import (
	"slices"
	"testing"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/sim/simrun"
)

func TestChecksForQuorumABD(t *testing.T) {
	var quorum Strategy
	for _, s := range Strategies() {
		if s.Name == "quorum" {
			quorum = s
		}
	}
	if quorum.Name == "" {
		t.Fatal("no quorum strategy")
	}
	for _, c := range []struct {
		name     string
		workload string
		params   map[string]string
		want     bool
	}{
		{"abd registers", "register", map[string]string{"mode": "linearizable"}, true},
		{"abd mixed", "mixed", map[string]string{"mode": "linearizable"}, false},
		{"default mode", "register", nil, false},
	} {
		got := checksFor(quorum, simrun.Options{Workload: c.workload, Params: c.params})
		if slices.Contains(got, checker.CheckLinearizable) != c.want {
			t.Errorf("%s: checks %v, linearizable wanted %v", c.name, got, c.want)
		}
		if slices.Contains(quorum.Checks, checker.CheckLinearizable) {
			t.Fatalf("%s: checksFor changed the strategy's own list: %v", c.name, quorum.Checks)
		}
	}
}
