package raftsim

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/dialkv/dialkv/sim/simrun"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func TestSweepDbg(t *testing.T) {
	bug := os.Getenv("BUG")
	for seed := 1; seed <= envInt("SEEDS", 5); seed++ {
		opts := simrun.Options{Strategy: "raft", Seed: uint64(seed), Ops: envInt("OPS", 300), Workload: "register", Bug: bug}
		out, err := RunT(t, opts)
		if err != nil {
			t.Fatal(err)
		}
		r := out.Result
		t.Logf("seed %d: verdict=%s ops=%d ok=%d fail=%d unknown=%d virtual=%v real=%v msgs=%d failovers=%v faults=%d problems=%v",
			seed, r.Verdict, r.Ops, r.OK, r.Failed, r.Unknown, r.Virtual, r.Real, r.Messages, out.Failovers, len(r.FaultPlan), r.Problems)
		if os.Getenv("DUMP") != "" {
			os.WriteFile(fmt.Sprintf("/tmp/raftsim.%d.trace", seed), out.Trace, 0o644)
			os.WriteFile(fmt.Sprintf("/tmp/raftsim.%d.history", seed), out.History, 0o644)
		}
		_ = strings.Join
	}
}
