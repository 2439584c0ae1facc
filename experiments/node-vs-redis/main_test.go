package main

import (
	"reflect"
	"testing"

	"github.com/dialkv/dialkv/clients/bench"
)

func TestParseFractions(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []float64
		err  bool
	}{
		{"0.1,0.25,0.5", []float64{0.1, 0.25, 0.5}, false},
		{"0.75, 0.1,0.5,0.1", []float64{0.1, 0.5, 0.75}, false}, // sorted, deduplicated
		{"", nil, false},
		{"0.5,0", nil, true},
		{"1.6", nil, true},
		{"x", nil, true},
	} {
		got, err := parseFractions(tc.in)
		if (err != nil) != tc.err || (!tc.err && len(got)+len(tc.want) > 0 && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("parseFractions(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestMeetsUpTo(t *testing.T) {
	run := func(rate, readP99 float64) bench.Result {
		var r bench.Result
		r.Ops, r.OpsPerSec, r.Config.Rate = 1000, rate, rate
		r.Reads.P99Ms, r.Writes.P99Ms = readP99, 1
		return r
	}
	ok, slow := run(100, 0.5), run(100, 2)
	for _, tc := range []struct {
		name string
		fr   []float64
		rs   []bench.Result
		want string
	}{
		{"ascending", []float64{0.1, 0.5, 0.75}, []bench.Result{ok, ok, slow}, "50 %"},
		{"out of order", []float64{0.75, 0.1, 0.5}, []bench.Result{slow, ok, ok}, "50 %"},
		{"a miss below a meet", []float64{0.5, 0.1, 0.25}, []bench.Result{ok, ok, slow}, "10 %"},
		{"none", []float64{0.1}, []bench.Result{slow}, "none of the sweep's rates"},
		{"not run", []float64{0.1}, []bench.Result{{}}, "none of the sweep's rates"},
	} {
		if got := meetsUpTo(tc.fr, tc.rs); got != tc.want {
			t.Errorf("%s: meetsUpTo = %q, want %q", tc.name, got, tc.want)
		}
	}
}
