package main

import (
	"testing"
	"time"
)

func TestDuring(t *testing.T) {
	ms := time.Millisecond
	recs := []record{
		{Invoke: 0, Done: 50 * ms, OK: true},          // before the window
		{Invoke: 100 * ms, Done: 150 * ms, OK: true},  // in
		{Invoke: 200 * ms, Done: 900 * ms, OK: false}, // in, failed
		{Invoke: 300 * ms, Done: 700 * ms, OK: true},  // in
		{Invoke: 950 * ms, Done: 1200 * ms, OK: true}, // in, completes after the window
	}
	for _, tc := range []struct {
		name     string
		from, to time.Duration
		n        int
		ok       float64
		gap      time.Duration
	}{
		{"window", 100 * ms, 1000 * ms, 4, 75, 550 * ms}, // successes at 150 and 700: gaps 50, 550, 300
		{"empty", 2000 * ms, 3000 * ms, 0, 0, 1000 * ms},
	} {
		n, ok, gap := during(recs, tc.from, tc.to)
		if n != tc.n || ok != tc.ok || gap != tc.gap {
			t.Errorf("%s: during = %d, %.1f, %v; want %d, %.1f, %v", tc.name, n, ok, gap, tc.n, tc.ok, tc.gap)
		}
	}
}
