package sim

import (
	"strings"
	"testing"

	"github.com/dialkv/dialkv/sim/simrun"
)

// TestCausalRunReportsMeasures: a causal run across two regions reports the
// replicas' propagation lag samples by source region and their metadata
// counters; a strategy without a Meter reports none.
func TestCausalRunReportsMeasures(t *testing.T) {
	for _, tc := range []struct {
		strategy string
		want     bool
	}{{"causal", true}, {"quorum", false}} {
		res, err := Run(simrun.Options{Strategy: tc.strategy, Seed: 2, Ops: 200, LiveOps: 50, Nodes: 4, Regions: 2, Faults: []string{"none"}})
		if err != nil {
			t.Fatal(err)
		}
		lines := MeasureLines(res.Counters, res.Samples)
		if !tc.want {
			if len(lines) != 0 {
				t.Errorf("%s measured %q, want nothing", tc.strategy, lines)
			}
			continue
		}
		if res.Counters["causal_dep_bytes_per_write_count"] == 0 || len(res.Samples["causal_replication_lag_seconds{r0}"]) == 0 || len(res.Samples["causal_replication_lag_seconds{r1}"]) == 0 {
			t.Fatalf("causal run measured %q, want writes shipped and lag samples from both regions", lines)
		}
		if !strings.Contains(strings.Join(lines, "\n"), "causal_replication_lag_seconds{r0} n=") {
			t.Errorf("measure lines %q lack the lag summary", lines)
		}
	}
}
