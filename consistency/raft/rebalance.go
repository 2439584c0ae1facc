package raft

import (
	"fmt"
	"sort"
)

// PlanInput is what the rebalancer knows of a raft namespace: each shard's
// voting members and the state of the nodes. Plan is pure: the same input
// gives the same move.
type PlanInput struct {
	// Replicas is the replication factor.
	Replicas int
	// Members maps a shard to its voting members (node IDs). Shards whose
	// membership is unknown are absent and never moved.
	Members map[int][]string
	// Nodes is the namespace's node list (only these receive replicas).
	Nodes []string
	// Alive are the nodes that answer now (gossip: alive).
	Alive []string
	// Dead are nodes down for longer than the grace period: their
	// replicas are replaced.
	Dead []string
	// Retired are nodes that are to host nothing: their replicas move away
	// (alive or not).
	Retired []string
}

// Move is one membership move of one shard: add a replica on To (if not
// ""), remove the replica of From (if not ""). RemoveFirst says to remove
// From before adding To: From is not alive, so the shard's live replicas
// do not drop by removing it, while adding first would make a majority of
// a larger group needed with one member already gone. Otherwise To is
// added (and caught up) before From is removed, so the shard never has
// fewer live replicas than before.
type Move struct {
	Kind        string // MoveReplace, MoveAdd, MoveRemove or MoveBalance: Plan's rule
	Shard       int
	From, To    string
	RemoveFirst bool
	Reason      string
}

// Move kinds: the rule of Plan that made the move.
const (
	MoveReplace = "replace" // a dead or retired member's replica moves or goes
	MoveAdd     = "add"     // an under-replicated shard gets a replica
	MoveRemove  = "remove"  // an over-replicated shard loses one
	MoveBalance = "balance" // a replica moves from the most to the least loaded node
)

// String renders a move for logs and the admin tool.
func (m Move) String() string {
	return fmt.Sprintf("%s shard %d: %s -> %s (%s)", m.Kind, m.Shard, orDash(m.From), orDash(m.To), m.Reason)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Plan returns the next single move that brings the namespace closer to
// its goal, and false when there is none. In order of priority:
//
//  1. a shard with a member that is dead (down past the grace period) or
//     retired: that member's replica moves to the target with the fewest
//     replicas (ties: the smallest ID) that is not a member; with no such
//     target, it is only removed when the shard has more members than
//     Replicas;
//  2. a shard with fewer members than Replicas gets one on a target;
//  3. a shard with more members than Replicas loses one (the most loaded
//     member);
//  4. balance: when the most loaded target holds at least two replicas
//     more than the least loaded one, the lowest shard the first has and
//     the second has not moves from the first to the second.
//
// Targets are nodes of the namespace that are alive and neither dead nor
// retired. A shard is moved only while a majority of its members is alive
// (a configuration change needs a quorum). Shards are visited in
// ascending order and nodes compared by (load, ID), so the plan is
// deterministic.
func Plan(in PlanInput) (Move, bool) {
	alive, dead, retired := set(in.Alive), set(in.Dead), set(in.Retired)
	var targets []string
	for _, n := range in.Nodes {
		if alive[n] && !dead[n] && !retired[n] {
			targets = append(targets, n)
		}
	}
	sort.Strings(targets)
	load := map[string]int{}
	for _, t := range targets {
		load[t] = 0
	}
	shards := make([]int, 0, len(in.Members))
	for sh, ms := range in.Members {
		shards = append(shards, sh)
		for _, m := range ms {
			if _, ok := load[m]; ok {
				load[m]++
			}
		}
	}
	sort.Ints(shards)
	members := func(sh int) ([]string, map[string]bool) {
		ms := append([]string(nil), in.Members[sh]...)
		sort.Strings(ms)
		return ms, set(ms)
	}
	quorum := func(ms []string) bool {
		n := 0
		for _, m := range ms {
			if alive[m] {
				n++
			}
		}
		return n > len(ms)/2
	}
	// lightest returns the target with the fewest replicas that is not in
	// not (ties: smallest ID).
	lightest := func(not map[string]bool) (string, bool) {
		best, ok := "", false
		for _, t := range targets {
			if not[t] {
				continue
			}
			if !ok || load[t] < load[best] {
				best, ok = t, true
			}
		}
		return best, ok
	}
	// 1. Dead or retired members.
	for _, sh := range shards {
		ms, mset := members(sh)
		if !quorum(ms) {
			continue
		}
		for _, m := range ms {
			if !dead[m] && !retired[m] {
				continue
			}
			why := "dead"
			if retired[m] {
				why = "retired"
			}
			if to, ok := lightest(mset); ok {
				return Move{Kind: MoveReplace, Shard: sh, From: m, To: to, RemoveFirst: !alive[m], Reason: m + " is " + why}, true
			}
			if len(ms) > in.Replicas {
				return Move{Kind: MoveReplace, Shard: sh, From: m, RemoveFirst: true, Reason: m + " is " + why + ", no other target"}, true
			}
		}
	}
	// 2. Under-replicated shards.
	for _, sh := range shards {
		ms, mset := members(sh)
		if len(ms) >= in.Replicas || !quorum(ms) {
			continue
		}
		if to, ok := lightest(mset); ok {
			return Move{Kind: MoveAdd, Shard: sh, To: to, Reason: fmt.Sprintf("%d of %d replicas", len(ms), in.Replicas)}, true
		}
	}
	// 3. Over-replicated shards.
	for _, sh := range shards {
		ms, _ := members(sh)
		if len(ms) <= in.Replicas || !quorum(ms) {
			continue
		}
		from := ms[0]
		for _, m := range ms[1:] {
			if load[m] > load[from] {
				from = m
			}
		}
		return Move{Kind: MoveRemove, Shard: sh, From: from, RemoveFirst: true, Reason: fmt.Sprintf("%d of %d replicas", len(ms), in.Replicas)}, true
	}
	// 4. Balance.
	if len(targets) < 2 {
		return Move{}, false
	}
	hi, lo := targets[0], targets[0]
	for _, t := range targets[1:] {
		if load[t] > load[hi] {
			hi = t
		}
		if load[t] < load[lo] {
			lo = t
		}
	}
	if load[hi]-load[lo] < 2 {
		return Move{}, false
	}
	for _, sh := range shards {
		ms, mset := members(sh)
		if mset[hi] && !mset[lo] && quorum(ms) {
			return Move{Kind: MoveBalance, Shard: sh, From: hi, To: lo, Reason: fmt.Sprintf("balance: %s has %d replicas, %s %d", hi, load[hi], lo, load[lo])}, true
		}
	}
	return Move{}, false
}

func set(xs []string) map[string]bool {
	out := make(map[string]bool, len(xs))
	for _, x := range xs {
		out[x] = true
	}
	return out
}
