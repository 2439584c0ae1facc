package sim

import (
	"errors"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/sim/simrun"
)

// ErrRaftNotBuilt is returned for --strategy raft until sim/raftsim
// exports its runner.
var ErrRaftNotBuilt = errors.New("sim: raft simulation not built yet (sim/raftsim exports no runner)")

func runRaft(opts simrun.Options, withTrace bool) (*outcome, error) {
	return nil, ErrRaftNotBuilt
}

func raftBugs() []consistency.Bug { return nil }
