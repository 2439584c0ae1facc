package raft

import (
	"fmt"
	"testing"
)

func TestPlacement(t *testing.T) {
	for _, tc := range []struct {
		s, r, n int
		want    string
	}{
		{0, 3, 3, "[0 1 2]"},
		{1, 3, 3, "[1 2 0]"},
		{4, 3, 5, "[4 0 1]"},
		{0, 5, 3, "[0 1 2]"},
	} {
		if got := fmt.Sprint(Placement(tc.s, tc.r, tc.n)); got != tc.want {
			t.Errorf("Placement(%d,%d,%d) = %s, want %s", tc.s, tc.r, tc.n, got, tc.want)
		}
	}
}
