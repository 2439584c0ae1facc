package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dialkv/dialkv/experiments/internal/expio"
)

// TestQuick runs the experiment on 2 seeds per cell and checks that every
// change finished and was measured (a table row per cell, with times, and
// objects moved).
func TestQuick(t *testing.T) {
	dir := t.TempDir()
	out, err := expio.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(out, 1, 400, 20, 2, true); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "rebalance-sim.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1+len(cells) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), 1+len(cells), b)
	}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		// kind,faults,runs,runs_passing,changes_done,stream_median_ms,...,moved_median,...
		if f[3] != "1" || f[4] != "1" || f[5] == "-" || f[9] == "0" {
			t.Errorf("cell not passing, not done or nothing moved: %s", l)
		}
	}
}
