package raftsim

import (
	"strings"
	"testing"

	"github.com/dialkv/dialkv/sim/simrun"
)

// The on-disk state machine (Pebble on a crashable in-memory disk; a crash
// keeps only what Pebble synced) passes the checks under the default
// faults, crashes included, and replays the same from its seed.
func TestPebbleStorage(t *testing.T) {
	var hashes []string
	crashes := 0
	for seed := uint64(1); seed <= 2; seed++ {
		opts := simrun.Options{Strategy: "raft", Seed: seed, Ops: 1000, Workload: "mixed",
			Faults: []string{"crash", "partition", "pause", "drop"}, Rates: map[string]float64{"crash/s": 3},
			Params: map[string]string{"storage": "pebble", "snapshot-entries": "50"}}
		out := runOne(t, opts)
		if out.Result.Verdict != simrun.Pass {
			t.Errorf("reproduce: %s\n%s", opts.Command(), strings.Join(out.Result.Problems, "\n"))
		}
		crashes += strings.Count(string(out.Trace), " crash unsynced writes lost")
		if seed == 1 {
			again := runOne(t, opts)
			hashes = append(hashes, out.Result.HistoryHash, again.Result.HistoryHash)
		}
	}
	if crashes == 0 {
		t.Error("no node crashed: the test shows nothing about recovery")
	}
	t.Logf("%d crashes", crashes)
	if hashes[0] != hashes[1] {
		t.Errorf("storage=pebble seed 1: history %s then %s", hashes[0][:12], hashes[1][:12])
	}
}
