package raft

// Placement returns the indexes (into the namespace's node list) of the
// replicas of shard s: replicas consecutive nodes starting at node
// s mod nodes, so shards' leaders and replicas spread over the nodes.
func Placement(s, replicas, nodes int) []int {
	if replicas > nodes {
		replicas = nodes
	}
	out := make([]int, replicas)
	for i := range out {
		out[i] = (s + i) % nodes
	}
	return out
}
