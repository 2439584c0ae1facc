package checker

import "testing"

// TestUnknownOperationEndsItsSession: a write whose outcome is unknown may
// take effect after the client's later operations, so it is not ordered
// before them. The pattern below (found by `dialkv sim --strategy causal
// --seed 9 --nodes 4 --workload register --regions 2` before this rule) is
// a WriteCORead violation when the first write is acknowledged, and valid
// when its outcome is unknown.
func TestUnknownOperationEndsItsSession(t *testing.T) {
	mk := func(firstOutcome Outcome) []Op {
		w1 := Op{ID: 0, Session: "s2", F: FPut, Key: "r4", Args: []string{"v2.48"}, Invoke: 10, Outcome: firstOutcome}
		if firstOutcome == OK {
			w1.Complete = Int64Ptr(20)
		}
		return []Op{
			w1,
			{ID: 1, Session: "s2", F: FPut, Key: "r4", Args: []string{"v7.3"}, Invoke: 30, Complete: Int64Ptr(40), Outcome: OK},
			{ID: 2, Session: "s1", F: FGet, Key: "r4", Invoke: 50, Complete: Int64Ptr(60), Outcome: OK, Value: StrPtr("v7.3")},
			{ID: 3, Session: "s1", F: FGet, Key: "r4", Invoke: 70, Complete: Int64Ptr(80), Outcome: OK, Value: StrPtr("v2.48")},
		}
	}
	for _, tc := range []struct {
		first Outcome
		want  Verdict
	}{{OK, VerdictViolation}, {Unknown, VerdictOK}} {
		res := Check(mk(tc.first), nil, Options{Checks: []string{CheckCausal, CheckSession}})
		for _, name := range []string{CheckCausal, CheckSession} {
			got := res.Get(name)
			if got == nil {
				t.Fatalf("first write %s: no %s result", tc.first, name)
			}
			if name == CheckCausal && got.Verdict != tc.want {
				t.Errorf("first write %s: causal verdict %s, want %s (%s)", tc.first, got.Verdict, tc.want, got.Summary)
			}
			if tc.first == Unknown && got.Verdict == VerdictViolation {
				t.Errorf("first write unknown: %s flags %s", name, got.Summary)
			}
		}
	}
}
