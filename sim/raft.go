package sim

import (
	"flag"
	"fmt"
	"sync"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/sim/raftsim"
	"github.com/dialkv/dialkv/sim/simrun"
)

// runRaft runs the raft strategy through sim/raftsim, which hosts
// Dragonboat in a testing/synctest bubble instead of this package's event
// loop (Dragonboat owns its goroutines and timers). raftsim serialises its
// runs, so a --seeds sweep of raft runs one seed at a time.
func runRaft(opts simrun.Options, withTrace bool) (*outcome, error) {
	if opts.Bug != "" && !bugKnown(raft.Bugs(), opts.Bug) {
		return nil, &ErrUsage{fmt.Errorf("sim: strategy raft has no bug %q (see --list-bugs)", opts.Bug)}
	}
	// raftsim.Run goes through testing.MainStart, whose M.Run parses
	// flag.CommandLine from os.Args unless it was parsed already; the
	// dialkv binary's flags are not the testing package's, so mark it
	// parsed with no arguments (dialkv uses its own FlagSets).
	markFlagsParsed.Do(func() {
		if !flag.Parsed() {
			_ = flag.CommandLine.Parse(nil)
		}
	})
	out, err := raftsim.Run(opts)
	if err != nil {
		return nil, fmt.Errorf("sim: raft run: %w", err)
	}
	o := &outcome{res: out.Result, history: out.History, replicas: out.Replicas, ops: out.Ops, check: out.Check, plan: out.Plan}
	if withTrace {
		o.trace = out.Trace
	}
	return o, nil
}

// markFlagsParsed guards the process-wide flag.CommandLine, which sweep
// workers would otherwise touch concurrently.
var markFlagsParsed sync.Once

func raftBugs() []consistency.Bug { return raft.Bugs() }

func bugKnown(bugs []consistency.Bug, name string) bool {
	for _, b := range bugs {
		if b.Name == name {
			return true
		}
	}
	return false
}
