package raftsim

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/dialkv/dialkv/sim/simrun"
)

func TestSmoke(t *testing.T) {
	opts := simrun.Options{Strategy: "raft", Seed: 1, Ops: 200, Workload: "register", Faults: []string{"none"}}
	out, err := RunT(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := out.Result
	t.Logf("verdict=%s ops=%d ok=%d fail=%d unknown=%d virtual=%v real=%v msgs=%d problems=%v", r.Verdict, r.Ops, r.OK, r.Failed, r.Unknown, r.Virtual, r.Real, r.Messages, r.Problems)
	if os.Getenv("DUMP") != "" {
		os.WriteFile("/tmp/raftsim.trace", out.Trace, 0o644)
		os.WriteFile("/tmp/raftsim.history", out.History, 0o644)
	}
	if r.Verdict != simrun.Pass {
		t.Fatalf("verdict %s: %s", r.Verdict, strings.Join(r.Problems, "; "))
	}
}

func lines(b []byte) []string { return strings.Split(string(b), "\n") }

func itoa(n int) string { return strconv.Itoa(n) }
