package main

import "testing"

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.xs); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
}

// TestConfigs checks that every configuration has its own label (the
// summary groups rounds by label) and that one raft row is the baseline.
func TestConfigs(t *testing.T) {
	seen := map[string]bool{}
	base := 0
	for _, c := range configs() {
		if seen[c.label()] {
			t.Errorf("duplicate configuration %q", c.label())
		}
		seen[c.label()] = true
		if c.Strategy == "raft" && len(c.Level) >= 12 && c.Level[:12] == "linearizable" {
			base++
		}
		if c.At != "one" && c.At != "leader" && c.At != "all" {
			t.Errorf("%s: At %q", c.label(), c.At)
		}
	}
	if base != 1 {
		t.Errorf("%d raft linearizable baselines, want 1", base)
	}
}
