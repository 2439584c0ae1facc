package main

import (
	"testing"
	"time"

	"github.com/dialkv/dialkv/sim"
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
