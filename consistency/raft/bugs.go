package raft

import "github.com/dialkv/dialkv/consistency"

// Names of the deliberately broken variants (Config.Bug).
const (
	// BugLocalRead: a replica that believes it is the shard's leader answers
	// linearizable reads from its local state, without ReadIndex. A deposed
	// leader (partitioned away, not yet stepped down) or a new leader that
	// has not applied every committed entry serves stale values.
	BugLocalRead = "local-read"
	// BugAckBeforeCommit: SET is acknowledged as soon as the proposal is
	// queued, before Raft commits it; the write may be lost, or not yet
	// visible to a read that starts after the acknowledgement.
	BugAckBeforeCommit = "ack-before-commit"
	// BugTxnOneVote: the coordinator of a cross-shard transaction decides
	// commit on the coordinator shard's vote alone, as if every other
	// participant had voted yes: a part refused by a lock conflict or a
	// failed condition is skipped while the others commit (half a
	// transaction). The bank workload catches it (dialkv sim --workload
	// bank --params shards=3).
	BugTxnOneVote = "txn-one-vote"
)

// Bugs lists the deliberately broken variants of the raft strategy, which
// the simulator's checkers must catch.
func Bugs() []consistency.Bug {
	return []consistency.Bug{
		{Name: BugLocalRead, Strategy: "raft", Breaks: "a replica that believes it is leader answers reads locally without ReadIndex (stale reads)"},
		{Name: BugAckBeforeCommit, Strategy: "raft", Breaks: "SET is acknowledged before it commits (lost or invisible acknowledged writes)"},
		{Name: BugTxnOneVote, Strategy: "raft", Breaks: "a cross-shard transaction commits on the coordinator shard's vote alone (half transactions; --workload bank --params shards=3)"},
	}
}

func knownBug(name string) bool {
	for _, b := range Bugs() {
		if b.Name == name {
			return true
		}
	}
	return false
}
