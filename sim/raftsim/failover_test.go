package raftsim

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/dialkv/dialkv/sim/simrun"
)

// Failover: the leader of shard 0 crashes (Jepsen-style leader-targeted
// crashes, nothing else); another node must serve linearizable reads as
// leader within a few election timeouts (RTT 10ms x 10 = 100ms; the
// randomized timeout is 100-200ms). Times are virtual.
func TestFailoverTime(t *testing.T) {
	seeds := 4
	if os.Getenv("DIALKV_SOAK") != "" {
		seeds = 50
	}
	var all []time.Duration
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		opts := simrun.Options{Strategy: "raft", Seed: seed, Ops: 1500, Workload: "register",
			Faults: []string{"crash"}, Rates: map[string]float64{"crash/s": 2, "fault-mean-ms": 400},
			Params: map[string]string{"target": "leader"}}
		out := runOne(t, opts)
		if out.Result.Verdict != simrun.Pass {
			t.Errorf("reproduce: %s: %v", opts.Command(), out.Result.Problems)
		}
		for _, d := range out.Failovers {
			if d > time.Second {
				t.Errorf("%s: failover took %v, more than 5 maximal election timeouts", opts.Command(), d)
			}
		}
		all = append(all, out.Failovers...)
	}
	if len(all) == 0 {
		t.Fatal("no leader crash happened: the sweep measures nothing")
	}
	slices.Sort(all)
	t.Logf("failover (virtual time, RTT 10ms, election 10 RTT, PreVote+CheckQuorum): n=%d min=%v median=%v p90=%v max=%v",
		len(all), all[0], all[len(all)/2], all[len(all)*9/10], all[len(all)-1])
}
