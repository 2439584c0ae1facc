package main

import (
	"reflect"
	"testing"
	"time"
)

func TestMinorities(t *testing.T) {
	for _, tc := range []struct {
		n, rounds int
		want      [][]int
	}{
		{3, 4, [][]int{{0}, {1}, {2}, {0}}},
		{5, 3, [][]int{{0, 1}, {2, 3}, {0, 4}}},
	} {
		if got := minorities(tc.n, tc.rounds); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("minorities(%d, %d) = %v, want %v", tc.n, tc.rounds, got, tc.want)
		}
	}
}

func TestTallies(t *testing.T) {
	s := time.Second
	ws := []window{{Start: 10 * s, End: 20 * s, Minority: []int{0}}}
	recs := []record{
		{Level: 0, Node: 0, Invoke: 5 * s, OK: true},                // before: no partition
		{Level: 0, Node: 0, Invoke: 11 * s, OK: false},              // minority read, early
		{Level: 0, Node: 0, Invoke: 15 * s, Write: true, OK: false}, // minority write, settled
		{Level: 0, Node: 1, Invoke: 12 * s, OK: true},               // majority read
		{Level: 0, Node: 2, Invoke: 19 * s, Write: true, OK: true},  // majority write
		{Level: 1, Node: 0, Invoke: 20 * s, OK: true},               // healed: no partition
	}
	all := tallies(recs, ws, 2, 0)
	for _, tc := range []struct {
		lv   int
		side Side
		kind int
		want string
	}{
		{0, NoPartition, -1, "100.0"},
		{0, Minority, 0, "0.0"},
		{0, Minority, 1, "0.0"},
		{0, Majority, 0, "100.0"},
		{0, Majority, 1, "100.0"},
		{1, NoPartition, -1, "100.0"},
		{1, Minority, -1, "-"},
	} {
		if got := all[tc.lv].pct(tc.side, tc.kind); got != tc.want {
			t.Errorf("level %d %s kind %d: %s, want %s", tc.lv, tc.side, tc.kind, got, tc.want)
		}
	}
	settled := tallies(recs, ws, 2, 3*s)
	if n := settled[0].total(Minority); n != 1 {
		t.Errorf("settled minority ops = %d, want 1 (the early one left out)", n)
	}
	if n := settled[0].total(Majority); n != 1 {
		t.Errorf("settled majority ops = %d, want 1", n)
	}
}
