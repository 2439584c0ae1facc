package checker

import (
	"strings"
	"testing"
)

// TestConvergenceSharded: with Holds, a key is compared only across the
// replicas that hold it, and a held key missing from Data counts as absent.
func TestConvergenceSharded(t *testing.T) {
	tests := []struct {
		name    string
		reps    []ReplicaState
		wantKey string // "" = must agree
		wantMsg string
	}{
		{
			name: "sharded agree",
			reps: []ReplicaState{
				{Node: "n1", Data: map[string]string{"a": "1", "b": "2"}, Holds: []string{"a", "b"}},
				{Node: "n2", Data: map[string]string{"b": "2", "c": "3"}, Holds: []string{"b", "c"}},
				{Node: "n3", Data: map[string]string{"c": "3", "a": "1"}, Holds: []string{"c", "a"}},
			},
		},
		{
			name: "leftover unheld copy ignored, held key absent everywhere",
			reps: []ReplicaState{
				{Node: "n1", Data: map[string]string{"a": "1", "c": "stale hint"}, Holds: []string{"a", "d"}},
				{Node: "n2", Data: map[string]string{"a": "1"}, Holds: []string{"a", "d"}},
				{Node: "n3", Data: map[string]string{"c": "3"}, Holds: []string{"c"}},
			},
		},
		{
			name: "sharded divergent value",
			reps: []ReplicaState{
				{Node: "n1", Data: map[string]string{"a": "1", "b": "2"}, Holds: []string{"a", "b"}},
				{Node: "n2", Data: map[string]string{"b": "OLD", "c": "3"}, Holds: []string{"b", "c"}},
				{Node: "n3", Data: map[string]string{"c": "3", "a": "1"}, Holds: []string{"c", "a"}},
			},
			wantKey: "b", wantMsg: `n1="2" n2="OLD"`,
		},
		{
			name: "held key missing on one holder",
			reps: []ReplicaState{
				{Node: "n1", Data: map[string]string{"a": "1"}, Holds: []string{"a"}},
				{Node: "n2", Data: map[string]string{}, Holds: []string{"a"}},
				{Node: "n3", Data: map[string]string{"z": "9"}, Holds: []string{"z"}},
			},
			wantKey: "a", wantMsg: "n2=(absent)",
		},
		{
			name: "unsharded replica compared on every key",
			reps: []ReplicaState{
				{Node: "n1", Data: map[string]string{"a": "1"}, Holds: []string{"a"}},
				{Node: "full", Data: map[string]string{"a": "1", "b": "2"}},
				{Node: "n2", Data: map[string]string{"b": "3"}, Holds: []string{"b"}},
			},
			wantKey: "b", wantMsg: `full="2" n2="3"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Check(nil, tc.reps, Options{Checks: []string{CheckConvergence}}).Get(CheckConvergence)
			if tc.wantKey == "" {
				if c.Verdict != VerdictOK {
					t.Fatalf("verdict %s: %s %v", c.Verdict, c.Summary, c.Anomalies)
				}
				return
			}
			if c.Verdict != VerdictViolation || len(c.Anomalies) != 1 || c.Anomalies[0].Key != tc.wantKey {
				t.Fatalf("verdict %s: %s %v; want one divergence on %q", c.Verdict, c.Summary, c.Anomalies, tc.wantKey)
			}
			if !strings.Contains(c.Anomalies[0].Message, tc.wantMsg) {
				t.Errorf("message %q lacks %q", c.Anomalies[0].Message, tc.wantMsg)
			}
		})
	}
}
