package main

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/sim"
	"github.com/dialkv/dialkv/sim/simrun"
)

// Quorum and raft runs scale their replication to the cluster size.
func TestOptions(t *testing.T) {
	o := options("quorum", 5, 1, 100)
	if o.Params["n"] != "5" || o.Params["r"] != "3" || o.Params["w"] != "3" {
		t.Fatalf("quorum params %v", o.Params)
	}
	if o := options("raft", 7, 1, 100); o.Params["replicas"] != "7" {
		t.Fatalf("raft params %v", o.Params)
	}
}

// A 5-node quorum run passes with those options, and the process's CPU
// clock moves.
func TestRunAndCPUClock(t *testing.T) {
	c0 := cpuTime()
	res, err := sim.Run(options("quorum", 5, 1, 200))
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != "pass" || res.Ops < 200 {
		t.Fatalf("%s: %s, %d ops: %v", res.Options.Command(), res.Verdict, res.Ops, res.Problems)
	}
	if d := cpuTime() - c0; d <= 0 || d > time.Hour {
		t.Fatalf("CPU time moved by %v", d)
	}
}

// The quick load sweep runs one passing primary-backup configuration and
// writes its table with the figures it measured.
func TestLoadSweepQuick(t *testing.T) {
	dir := t.TempDir()
	out, err := expio.New(dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cells, err := loadSweep(out, 1, 200, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 1 || cells[0].ops < 200 || cells[0].verdicts[simrun.Pass] != 1 || cells[0].virtual <= 0 || cells[0].cpu <= 0 {
		t.Fatalf("cells %+v", cells)
	}
	if err := writeLoad(out, cells, 1, 200, "cmd", "1 2 3", "4 5 6"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "load.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "| register | 5 | 2 | "+strconv.Itoa(cells[0].ops)+" |") {
		t.Fatalf("load.md:\n%s", b)
	}
}
