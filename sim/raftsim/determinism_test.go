package raftsim

import (
	"strings"
	"testing"

	"github.com/dialkv/dialkv/sim/simrun"
)

// Same seed, same build: the same history and the same trace (every fault,
// phase and delivered message), byte for byte.
func TestDeterminism(t *testing.T) {
	for _, opts := range []simrun.Options{
		{Strategy: "raft", Seed: 4, Ops: 300, Workload: "register"},
		{Strategy: "raft", Seed: 11, Ops: 300, Workload: "mixed", Params: map[string]string{"shards": "2"},
			Faults: []string{"partition", "crash", "drop", "delay", "pause", "skew"}},
		hunterOpts(2, "local-read"),
		// Not bankOpts: runs with cross-shard transactions do not replay
		// byte for byte yet (docs/raft.md, "Cross-shard transactions").
	} {
		var first *Outcome
		for i := 0; i < 3; i++ {
			out, err := RunT(t, opts)
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = out
				t.Logf("%s: history %s… (%d ops), trace %s… (%d bytes), faults %d", opts.Command(),
					out.Result.HistoryHash[:12], out.Result.Ops, out.Result.TraceHash[:12], len(out.Trace), len(out.Result.FaultPlan))
				continue
			}
			if out.Result.HistoryHash != first.Result.HistoryHash || out.Result.TraceHash != first.Result.TraceHash {
				t.Errorf("%s run %d: history %s trace %s, run 0: history %s trace %s\n%s",
					opts.Command(), i, out.Result.HistoryHash[:12], out.Result.TraceHash[:12],
					first.Result.HistoryHash[:12], first.Result.TraceHash[:12], firstDiff(first.Trace, out.Trace))
			}
		}
	}
}

func firstDiff(a, b []byte) string {
	la, lb := lines(a), lines(b)
	for i := 0; i < len(la) && i < len(lb); i++ {
		if la[i] != lb[i] {
			return "first trace difference at line " + itoa(i) + ":\n  " + la[i] + "\n  " + lb[i]
		}
	}
	return "traces differ in length: " + itoa(len(la)) + " vs " + itoa(len(lb)) + " lines"
}

// A seed run twice in one process replays byte for byte, as a sweep that
// re-runs a failing seed to write its report needs (the re-run must fail
// the same way as the printed `--seed N` command). The configuration sends
// many snapshots across partitions: before snapshot streams stopped failing
// (a lost or refused chunk tripped Dragonboat's circuit breaker, whose
// backoff comes from the global math/rand), this seed's two runs differed
// after about 2 s of virtual time, and its verdict (liveness) with them.
func TestSameSeedTwiceInOneProcess(t *testing.T) {
	opts := simrun.Options{Strategy: "raft", Seed: 38, Ops: 1000,
		Faults: []string{"crash", "partition", "drop"}, Params: map[string]string{"snapshot-entries": "10"}}
	a := runOne(t, opts)
	b := runOne(t, opts)
	if a.Result.Verdict != b.Result.Verdict || a.Result.HistoryHash != b.Result.HistoryHash || a.Result.TraceHash != b.Result.TraceHash {
		t.Errorf("%s twice in one process: %s history %s trace %s, then %s history %s trace %s\n%s\nreproduce: go test -count=1 -run TestSameSeedTwiceInOneProcess ./sim/raftsim",
			opts.Command(), a.Result.Verdict, a.Result.HistoryHash[:12], a.Result.TraceHash[:12],
			b.Result.Verdict, b.Result.HistoryHash[:12], b.Result.TraceHash[:12], firstDiff(a.Trace, b.Trace))
	}
	if !strings.Contains(string(a.Trace), " refused\n") && !strings.Contains(string(a.Trace), " lost\n") {
		t.Errorf("%s: no snapshot chunk was lost or refused: the test no longer exercises failed snapshot streams", opts.Command())
	}
}
