package checker

import (
	"testing"
	"time"
)

// TestGeneratedHistoriesPass: linearizable histories from the generator
// pass every check (no false positives), and the checks actually looked at
// them. Reproduce one with: go test ./checker -run TestGeneratedHistoriesPass/seed=N
func TestGeneratedHistoriesPass(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4} {
		t.Run("seed="+itoa(seed), func(t *testing.T) {
			ops := genHistory(seed, 3000, 40, 8)
			if err := Validate(ops); err != nil {
				t.Fatal(err)
			}
			opts := DefaultOptions()
			opts.Checks = AllChecks
			opts.Timeout = 30 * time.Second
			res := Check(ops, nil, opts)
			for _, c := range res.Checks {
				want := VerdictOK
				if c.Name == CheckConvergence {
					want = VerdictSkipped
				}
				if c.Verdict != want {
					t.Errorf("seed %d: %s: %s (%s) %v, want %s", seed, c.Name, c.Verdict, c.Summary, c.Anomalies, want)
				}
			}
			if st := res.Get(CheckStaleness).Staleness; st.Reads == 0 || st.Versions.Max != 0 {
				t.Errorf("seed %d: staleness of a linearizable history: %+v, want reads > 0 and no lag", seed, st)
			}
			if n := res.Get(CheckSession).Counts["reads_checked"]; n < 500 {
				t.Errorf("seed %d: session checked only %d reads", seed, n)
			}
		})
	}
}

// TestGeneratedMutationsCaught: a stale value substituted into one read of
// a generated history is caught by linearizability and staleness.
func TestGeneratedMutationsCaught(t *testing.T) {
	ops := genHistory(9, 3000, 40, 8)
	// find a register read after at least two acknowledged writes whose value differs
	mutated := -1
	for i := range ops {
		op := &ops[i]
		if op.F != FGet || op.Outcome != OK || op.Value == nil || op.Version < 3 {
			continue
		}
		// a write of the same key with a lower version, completed before op was invoked
		for j := 0; j < i; j++ {
			w := &ops[j]
			if w.Key == op.Key && w.F == FPut && w.Outcome == OK && w.Version+1 < op.Version && *w.Complete < op.Invoke {
				op.Value = StrPtr(w.Args[0])
				op.Version = w.Version
				mutated = i
				break
			}
		}
		if mutated >= 0 {
			break
		}
	}
	if mutated < 0 {
		t.Fatal("no read to mutate")
	}
	opts := DefaultOptions()
	opts.Checks = []string{CheckLinearizable, CheckStaleness}
	opts.BoundStaleness, opts.MaxStaleVersions = true, 0
	res := Check(ops, nil, opts)
	if c := res.Get(CheckLinearizable); c.Verdict != VerdictViolation || c.Anomalies[0].Key != ops[mutated].Key {
		t.Errorf("linearizable: %s %s, want a violation on key %s", c.Verdict, c.Summary, ops[mutated].Key)
	}
	if c := res.Get(CheckStaleness); c.Verdict != VerdictViolation || c.Staleness.Versions.Max < 1 {
		t.Errorf("staleness: %s %s", c.Verdict, c.Summary)
	}
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
