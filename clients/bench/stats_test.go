package bench

import (
	"runtime"
	"testing"
)

// TestStatShards: the workers of a run share a few histogram pairs per P
// (each pair is merged and zeroed every progress period), never more than
// there are workers or maxStatShards.
func TestStatShards(t *testing.T) {
	perP := 4 * runtime.GOMAXPROCS(0)
	for _, tc := range []struct {
		clients, want int
	}{
		{1, 1},
		{2, min(2, perP)},
		{50, min(50, perP, maxStatShards)},
		{10000, min(perP, maxStatShards)},
	} {
		if got := statShards(tc.clients); got != tc.want {
			t.Errorf("statShards(%d) = %d, want %d", tc.clients, got, tc.want)
		}
	}
}

// TestDrainHist: a histogram with values is merged and zeroed; an empty
// one leaves the target as it was.
func TestDrainHist(t *testing.T) {
	into, from := newHist(), newHist()
	drainHist(into, from)
	if into.TotalCount() != 0 {
		t.Fatalf("draining an empty histogram added %d values", into.TotalCount())
	}
	for _, v := range []int64{5, 700, 90000} {
		from.RecordValue(v) //nolint:errcheck // in range
	}
	drainHist(into, from)
	if into.TotalCount() != 3 || into.Max() < 90000 || from.TotalCount() != 0 {
		t.Fatalf("after a drain: target %d values (max %d), source %d; want 3 (max 90000), 0",
			into.TotalCount(), into.Max(), from.TotalCount())
	}
}
