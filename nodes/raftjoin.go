package nodes

import (
	"context"
	"sort"
	"time"

	"github.com/dialkv/dialkv/consistency/raft"
)

// A node joining the cluster (dialkv node --join, no --peers entry)
// becomes a node of the raft namespaces by itself: it advertises the Raft
// addresses it offers (ClusterConfig.RaftListen) in its gossip metadata,
// and the raft rebalancer of each namespace appends it to the namespace's
// node list (RAFT.NODES ADD, as an operator would) with an address the
// node uses in no other raft namespace. The list spreads through the
// catalog (raftnodes.go); the node creates the namespace when it pulls a
// spec that names it, hosting nothing, and the rebalancer's balancing
// moves then give it replicas (raft.Plan).

// raftCandidate is a gossip member the rebalancer may append to a raft
// namespace's node list.
type raftCandidate struct {
	ID, Client, Raft string
}

// raftCandidates returns the alive gossip members that namespace name
// does not list and that offer a Raft address free for it, by ID: the
// first address of the member's list that no node of this namespace uses
// and that the member does not use in another raft namespace known here.
// Pure (the callers gather its inputs): nodes is the namespace's node
// list; others maps each other raft namespace to its node list.
func raftCandidates(members []MemberInfo, nodes []raft.Node, others map[string][]raft.Node) []raftCandidate {
	listed, taken := map[string]bool{}, map[string]bool{}
	for _, n := range nodes {
		listed[string(n.ID)] = true
		taken[n.RaftAddr] = true
	}
	usedBy := map[string]map[string]bool{} // node ID -> its Raft addresses in other namespaces
	for _, ns := range others {
		for _, n := range ns {
			if usedBy[string(n.ID)] == nil {
				usedBy[string(n.ID)] = map[string]bool{}
			}
			usedBy[string(n.ID)][n.RaftAddr] = true
		}
	}
	var out []raftCandidate
	for _, m := range members {
		if m.State != "alive" || listed[m.ID] || m.Client == "" || len(m.Raft) == 0 {
			continue
		}
		for _, a := range m.Raft {
			if !taken[a] && !usedBy[m.ID][a] {
				out = append(out, raftCandidate{ID: m.ID, Client: m.Client, Raft: a})
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// extendRaftNodes appends at most one joining member to namespace name's
// node list (RAFT.NODES ADD at this node, which applies it at once and
// spreads it through the catalog); it reports whether it did, so that the
// rebalancer plans with the new list at its next look.
func (rb *raftRebalancer) extendRaftNodes(name string, svc *raft.Service, call RaftCaller) bool {
	others := map[string][]raft.Node{}
	for _, ns := range rb.cn.namespaceList() {
		if o, ok := ns.svc.(*raft.Service); ok && ns.spec.Name != name {
			others[ns.spec.Name] = o.Nodes()
		}
	}
	cands := raftCandidates(rb.cn.Members(), svc.Nodes(), others)
	if len(cands) == 0 {
		return false
	}
	c := cands[0]
	log := rb.cn.c.log.With("namespace", name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := call(ctx, rb.cn.Addr(), name, "RAFT.NODES", "ADD", c.ID, c.Raft, c.Client); err != nil {
		rb.cn.warnOnce("raftjoin/"+name+"/"+c.ID+"/"+c.Raft, "raft rebalancer: adding a joining node to the namespace's nodes failed (retried every look)",
			"namespace", name, "node", c.ID, "raft", c.Raft, "err", err)
		return false
	}
	log.Info("raft rebalancer: a joining node is now a node of the namespace", "node", c.ID, "raft", c.Raft, "client", c.Client)
	return true
}
