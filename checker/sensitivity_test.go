package checker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func loadTestdata(t *testing.T, name string) ([]Op, []ReplicaState) {
	t.Helper()
	ops, err := ReadHistoryFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(ops); err != nil {
		t.Fatal(err)
	}
	var reps []ReplicaState
	rp := filepath.Join("testdata", strings.TrimSuffix(name, ".jsonl")+".replicas.jsonl")
	if _, err := os.Stat(rp); err == nil {
		if reps, err = ReadReplicasFile(rp); err != nil {
			t.Fatal(err)
		}
	}
	return ops, reps
}

func testOptions() Options {
	o := DefaultOptions()
	o.Checks = AllChecks
	o.Timeout = 10 * time.Second
	return o
}

// TestSensitivity asserts that each anomalous history in testdata/ is
// flagged by the checker it exists for, naming the anomaly
// (testdata/README.md explains each history).
func TestSensitivity(t *testing.T) {
	type flag struct{ check, kind string }
	cases := []struct {
		file     string
		maxStale int
		flagged  []flag
		passes   []string // checks that must not flag it (the anomaly is outside their model)
	}{
		{file: "stale-read.jsonl", maxStale: 0, flagged: []flag{{CheckLinearizable, "non-linearizable"}, {CheckStaleness, "stale-read"}}, passes: []string{CheckSession, CheckCausal, CheckDurability}},
		{file: "lost-update.jsonl", maxStale: -1, flagged: []flag{{CheckLinearizable, "non-linearizable"}}},
		{file: "nonlinearizable-cas.jsonl", maxStale: -1, flagged: []flag{{CheckLinearizable, "non-linearizable"}}},
		{file: "nonlinearizable-cas-condfailed.jsonl", maxStale: -1, flagged: []flag{{CheckLinearizable, "non-linearizable"}}},
		{file: "non-monotonic-read.jsonl", maxStale: -1, flagged: []flag{{CheckSession, "monotonic-reads"}, {CheckLinearizable, "non-linearizable"}}},
		{file: "read-your-writes.jsonl", maxStale: -1, flagged: []flag{{CheckSession, "read-your-writes"}}},
		{file: "monotonic-writes.jsonl", maxStale: -1, flagged: []flag{{CheckSession, "monotonic-writes"}}},
		{file: "monotonic-writes-versions.jsonl", maxStale: -1, flagged: []flag{{CheckSession, "monotonic-writes"}}},
		{file: "writes-follow-reads.jsonl", maxStale: -1, flagged: []flag{{CheckSession, "writes-follow-reads"}}},
		{file: "causal-cyclic-co.jsonl", maxStale: -1, flagged: []flag{{CheckCausal, "CyclicCO"}}},
		{file: "causal-write-co-init-read.jsonl", maxStale: -1, flagged: []flag{{CheckCausal, "WriteCOInitRead"}, {CheckCausalMemory, "WriteCOInitRead"}}},
		{file: "causal-thin-air-read.jsonl", maxStale: -1, flagged: []flag{{CheckCausal, "ThinAirRead"}, {CheckDurability, "thin-air-read"}}},
		{file: "causal-write-co-read.jsonl", maxStale: -1, flagged: []flag{{CheckCausal, "WriteCORead"}}},
		{file: "causal-write-hb-init-read.jsonl", maxStale: -1, flagged: []flag{{CheckCausalMemory, "WriteHBInitRead"}}, passes: []string{CheckCausal}},
		{file: "causal-cyclic-hb.jsonl", maxStale: -1, flagged: []flag{{CheckCausalMemory, "CyclicHB"}}, passes: []string{CheckCausal, CheckSession}},
		{file: "causal-cyclic-cf.jsonl", maxStale: -1, flagged: []flag{{CheckCausalConvergence, "CyclicCF"}}, passes: []string{CheckCausal, CheckCausalMemory, CheckSession}},
		{file: "lost-write.jsonl", maxStale: -1, flagged: []flag{{CheckDurability, "lost-write"}, {CheckLinearizable, "non-linearizable"}}},
		{file: "thin-air-set.jsonl", maxStale: -1, flagged: []flag{{CheckDurability, "thin-air-read"}}},
		{file: "divergence.jsonl", maxStale: -1, flagged: []flag{{CheckConvergence, "divergence"}}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			ops, reps := loadTestdata(t, tc.file)
			opts := testOptions()
			opts.BoundStaleness, opts.MaxStaleVersions = tc.maxStale >= 0, tc.maxStale
			res := Check(ops, reps, opts)
			if res.Verdict != VerdictViolation || res.ExitCode() != 1 {
				t.Errorf("overall verdict %s (exit %d), want violation (exit 1)", res.Verdict, res.ExitCode())
			}
			for _, f := range tc.flagged {
				c := res.Get(f.check)
				if c == nil {
					t.Fatalf("no %s result", f.check)
				}
				if c.Verdict != VerdictViolation {
					t.Errorf("%s: verdict %s (%s), want violation", f.check, c.Verdict, c.Summary)
					continue
				}
				if c.Counts["anomaly:"+f.kind] == 0 {
					t.Errorf("%s: flagged %v, want an anomaly of kind %s", f.check, kinds(c), f.kind)
				}
				for _, a := range c.Anomalies {
					if a.Kind == f.kind && len(a.Ops) == 0 && f.check != CheckConvergence {
						t.Errorf("%s: anomaly %s names no operations", f.check, a.Kind)
					}
				}
			}
			for _, name := range tc.passes {
				if c := res.Get(name); c.Verdict != VerdictOK && c.Verdict != VerdictSkipped {
					t.Errorf("%s: verdict %s (%s: %v), want ok: the anomaly is outside its model", name, c.Verdict, c.Summary, kinds(c))
				}
			}
		})
	}
}

func kinds(c *CheckResult) []string {
	var out []string
	for _, a := range c.Anomalies {
		out = append(out, a.Kind)
	}
	return out
}

// TestValidHistoriesPass asserts that each valid history passes every
// checker that applies to it (the others say skipped).
func TestValidHistoriesPass(t *testing.T) {
	for _, file := range []string{"valid-register.jsonl", "valid-counter.jsonl", "valid-set.jsonl", "valid-unknown.jsonl"} {
		t.Run(file, func(t *testing.T) {
			ops, reps := loadTestdata(t, file)
			opts := testOptions()
			res := Check(ops, reps, opts)
			for _, c := range res.Checks {
				if c.Verdict != VerdictOK && c.Verdict != VerdictSkipped {
					t.Errorf("%s: %s: %s %v", c.Name, c.Verdict, c.Summary, c.Anomalies)
				}
			}
			if res.Verdict != VerdictOK {
				t.Errorf("overall verdict %s, want ok", res.Verdict)
			}
		})
	}
	// The register history must actually be checked, not skipped, by the
	// checks that apply to it.
	ops, reps := loadTestdata(t, "valid-register.jsonl")
	res := Check(ops, reps, testOptions())
	for _, name := range AllChecks {
		if c := res.Get(name); c.Verdict != VerdictOK {
			t.Errorf("valid-register: %s is %s, want ok", name, c.Verdict)
		}
	}
}
