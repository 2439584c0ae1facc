package checker

import (
	"testing"
)

// TestBankCheck: balances reads that sum to 0 pass; one that saw half a
// transfer, or an unreadable balance, is a violation; failed reads and
// transfers of unknown outcome do not count; a history without balances
// reads is skipped. The other checks ignore the bank operations.
func TestBankCheck(t *testing.T) {
	c := func(n int64) *int64 { return &n }
	accts := []string{"a0", "a1", "a2"}
	base := []Op{
		{ID: 1, Client: 1, F: FTransfer, Args: []string{"a0", "a1", "5"}, Invoke: 1, Complete: c(2), Outcome: OK},
		{ID: 2, Client: 2, F: FTransfer, Args: []string{"a1", "a2", "3"}, Invoke: 3, Outcome: Unknown},
		{ID: 3, Client: 3, F: FBalances, Args: accts, Invoke: 4, Complete: c(5), Outcome: OK, Values: []string{"-5", "5", ""}},
		{ID: 4, Client: 4, F: FBalances, Args: accts, Invoke: 6, Complete: c(7), Outcome: OK, Values: []string{"-5", "2", "3"}},
		{ID: 5, Client: 5, F: FBalances, Args: accts, Invoke: 8, Complete: c(9), Outcome: Fail, Values: []string{"9"}},
	}
	for _, tc := range []struct {
		name string
		ops  []Op
		want Verdict
		kind string
	}{
		{"valid", base, VerdictOK, ""},
		{"half-a-transfer", append(base[:5:5], Op{ID: 6, Client: 6, F: FBalances, Args: accts, Invoke: 10, Complete: c(11), Outcome: OK, Values: []string{"-5", "5", "3"}}), VerdictViolation, "bank-total"},
		{"unreadable", append(base[:5:5], Op{ID: 6, Client: 6, F: FBalances, Args: accts, Invoke: 10, Complete: c(11), Outcome: OK, Values: []string{"x", "0", "0"}}), VerdictViolation, "bank-unreadable"},
		{"no-reads", base[:2], VerdictSkipped, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res := Check(tc.ops, nil, Options{Checks: AllChecks}); res.Get(CheckBank) != nil {
				t.Fatal("bank ran without being named")
			}
			res := Check(tc.ops, nil, Options{Checks: append(AllChecks, CheckBank)})
			for _, cr := range res.Checks {
				if cr.Name == CheckBank {
					if cr.Verdict != tc.want || (tc.kind != "" && cr.Counts["anomaly:"+tc.kind] != 1) {
						t.Fatalf("bank = %s (%s), counts %v; want %s with one %q", cr.Verdict, cr.Summary, cr.Counts, tc.want, tc.kind)
					}
					continue
				}
				if cr.Verdict == VerdictViolation || cr.Verdict == VerdictUnknown {
					t.Fatalf("%s = %s (%s) on a bank history; the bank operations must be ignored", cr.Name, cr.Verdict, cr.Summary)
				}
			}
		})
	}
}
