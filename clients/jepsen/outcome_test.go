package jepsen

import (
	"testing"
	"time"

	"github.com/dialkv/dialkv/checker"
)

// TestMaxGap: the longest time without a successful workload operation is
// measured within the workload's window only: time spent creating the
// namespace before it, and final reads after it, do not count.
func TestMaxGap(t *testing.T) {
	ms := func(n int64) *int64 { return checker.Int64Ptr(n * int64(time.Millisecond)) }
	ok := func(client int, at int64) checker.Op {
		return checker.Op{Client: client, Outcome: checker.OK, Complete: ms(at)}
	}
	for _, tc := range []struct {
		name     string
		h        []checker.Op
		from, to int64 // ms
		want     int64 // ms
	}{
		{"setup before the window is not a gap", []checker.Op{ok(0, 510), ok(0, 600), ok(0, 700), ok(0, 1450)}, 500, 1500, 750},
		{"gap from the window's start", []checker.Op{ok(0, 900), ok(0, 1000)}, 500, 1100, 400},
		{"gap to the window's end", []checker.Op{ok(0, 600)}, 500, 1500, 900},
		{"nothing succeeded", []checker.Op{{Client: 0, Outcome: checker.Fail, Complete: ms(700)}}, 500, 1500, 1000},
		{"final reads are not workload", []checker.Op{ok(0, 600), ok(finalProc, 1000)}, 500, 1500, 900},
		{"completions outside the window are ignored", []checker.Op{ok(0, 100), ok(0, 1000), ok(0, 2000)}, 500, 1500, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := maxGap(tc.h, time.Duration(tc.from)*time.Millisecond, time.Duration(tc.to)*time.Millisecond)
			if want := time.Duration(tc.want) * time.Millisecond; got != want {
				t.Errorf("maxGap = %v, want %v", got, want)
			}
		})
	}
}

// TestSkewFailures: the clock-skew test's detector passes a cas refused by
// its condition and flags every other failure or unknown outcome.
func TestSkewFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   checker.Op
		bad  bool
	}{
		{"ok", checker.Op{F: checker.FPut, Outcome: checker.OK}, false},
		{"cas refused by its condition", checker.Op{F: checker.FCAS, Outcome: checker.Fail, Error: "CONDFAILED value of r3 differs"}, false},
		{"cas unavailable", checker.Op{F: checker.FCAS, Outcome: checker.Fail, Error: "UNAVAILABLE no leader"}, true},
		{"put refused", checker.Op{F: checker.FPut, Outcome: checker.Fail, Error: "UNAVAILABLE no leader"}, true},
		{"read failed", checker.Op{F: checker.FGet, Outcome: checker.Fail, Error: "TIMEOUT"}, true},
		{"put timed out", checker.Op{F: checker.FPut, Outcome: checker.Unknown, Error: "TIMEOUT"}, true},
		{"cas timed out", checker.Op{F: checker.FCAS, Outcome: checker.Unknown, Error: "TIMEOUT"}, true},
		{"not a condition code", checker.Op{F: checker.FCAS, Outcome: checker.Fail, Error: "CONDFAILEDX"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := len(skewFailures([]checker.Op{tc.op})) > 0; got != tc.bad {
				t.Errorf("flagged = %v, want %v", got, tc.bad)
			}
		})
	}
}
