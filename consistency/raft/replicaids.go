package raft

import (
	"fmt"
	"sort"
)

// Replica IDs. A shard's replicas are named by Dragonboat replica IDs, and
// Dragonboat refuses an ID once removed from the shard. So a node gets a
// fresh ID each time it is added to a shard:
//
//   - the replicas of the initial placement, and the first addition of a
//     node to a shard, use the node's legacy ID (its index in the
//     namespace's node list plus one, LegacyReplicaID), as before;
//   - a node whose legacy ID the shard has used already (it left and now
//     rejoins) gets an allocated ID: one more than the largest allocated
//     ID the shard's replicated membership has ever held (members, removed
//     replicas), at least AllocatedIDBase+1.
//
// The allocation reads the membership and proposes the change with the
// membership's ConfigChangeID, so two concurrent additions cannot allocate
// one ID: the second is rejected and retried with the new membership.
// Replica IDs are mapped to nodes by their Raft address in the membership
// (every node has its own), not by arithmetic, so allocated IDs need no
// other record.
const AllocatedIDBase uint64 = 1 << 20

// LegacyReplicaID is node index i's replica ID in the initial placement and
// on its first addition to a shard.
func LegacyReplicaID(i int) uint64 { return uint64(i + 1) }

// NextReplicaID returns the replica ID for adding node index i to a shard
// whose membership has used the IDs in used (voting, non-voting, witness
// and removed replicas): i's legacy ID if the shard never used it, else a
// fresh allocated ID. Pure and deterministic.
func NextReplicaID(used []uint64, i int) uint64 {
	legacy := LegacyReplicaID(i)
	top, seen := AllocatedIDBase, false
	for _, id := range used {
		if id == legacy {
			seen = true
		}
		if id > top {
			top = id
		}
	}
	if !seen && legacy < AllocatedIDBase {
		return legacy
	}
	return top + 1
}

// usedIDs lists every replica ID a membership has used, sorted.
func usedIDs(nodes, nonVotings, witnesses map[uint64]string, removed map[uint64]struct{}) []uint64 {
	var out []uint64
	for _, m := range []map[uint64]string{nodes, nonVotings, witnesses} {
		for id := range m {
			out = append(out, id)
		}
	}
	for id := range removed {
		out = append(out, id)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// replicasAt returns the replica IDs in m whose Raft address is addr,
// sorted.
func replicasAt(m map[uint64]string, addr string) []uint64 {
	var out []uint64
	for id, a := range m {
		if a == addr {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// indexOfReplica returns the index in nodes of replica rid: the node whose
// Raft address members (replica ID to address) gives it, else (rid absent
// from members) the node whose legacy ID it is.
func indexOfReplica(nodes []Node, members map[uint64]string, rid uint64) (int, bool) {
	if addr, ok := members[rid]; ok {
		for i, n := range nodes {
			if n.RaftAddr == addr {
				return i, true
			}
		}
		return 0, false
	}
	if rid >= 1 && rid < AllocatedIDBase && int(rid) <= len(nodes) {
		return int(rid) - 1, true
	}
	return 0, false
}

// replicaName names replica rid for RAFT.MEMBERS: its node, or
// "replica-ID" when no node of the list has its address.
func replicaName(nodes []Node, members map[uint64]string, rid uint64) string {
	if i, ok := indexOfReplica(nodes, members, rid); ok {
		return string(nodes[i].ID)
	}
	return fmt.Sprintf("replica-%d", rid)
}
