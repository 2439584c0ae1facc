package nodes

import (
	"fmt"
	"maps"
	"strconv"

	"github.com/dialkv/dialkv/consistency/raft"
)

// A raft namespace's node list grows and shrinks after creation
// (RAFT.NODES ADD / RETIRE / UNRETIRE, consistency/raft): the node that
// takes the change writes it into the namespace's catalog entry
// (updateParams), with a higher nodes-version; the other members pull
// catalogs every ClusterConfig.CatalogSync and adopt a raft spec whose
// nodes-version is higher and whose other parameters are the same
// (adoptRaftNodes). A node added to the list creates the namespace when
// it pulls the spec that names it, and hosts nothing until the
// rebalancer (raftrebalance.go) or an operator (dialkv admin move-shard)
// adds it to shards.

// raftNodesParams are the parameters that hold a raft namespace's node
// list; a spec that differs from another only in these is a newer or
// older version of the same namespace.
var raftNodesParams = []string{"nodes", "raft-addrs", "client-addrs", "initial-nodes", "retired", "nodes-version"}

// updateParams merges params into namespace name's parameters and saves
// the catalog; the namespace's service keeps running.
func (n *Node) updateParams(name string, params map[string]string) error {
	n.adminMu.Lock()
	defer n.adminMu.Unlock()
	ns := n.namespace(name)
	if ns == nil {
		return fmt.Errorf("node: update namespace %s: no such namespace", name)
	}
	spec := ns.spec
	spec.Params = maps.Clone(spec.Params)
	if spec.Params == nil {
		spec.Params = map[string]string{}
	}
	for k, v := range params {
		if v == "" {
			delete(spec.Params, k)
		} else {
			spec.Params[k] = v
		}
	}
	if n.cfg.Engine == "pebble" {
		specs := n.specs()
		for i := range specs {
			if specs[i].Name == name {
				specs[i] = spec
			}
		}
		if err := saveCatalog(n.cfg.DataDir, specs, n.dropped); err != nil {
			return fmt.Errorf("node: update namespace %s: %w", name, err)
		}
	}
	updated := *ns
	updated.spec = spec
	n.mu.Lock()
	if n.nss[name] == ns {
		n.nss[name] = &updated
	}
	n.mu.Unlock()
	n.log.Info("namespace parameters updated", "namespace", name, "params", params)
	return nil
}

// nodesVersion is a raft spec's nodes-version (0 when absent).
func nodesVersion(spec NamespaceSpec) uint64 {
	v, _ := strconv.ParseUint(spec.Params["nodes-version"], 10, 64)
	return v
}

// sameButNodes reports whether two specs differ at most in the raft node
// list parameters.
func sameButNodes(a, b NamespaceSpec) bool {
	if a.Name != b.Name || a.Strategy != b.Strategy {
		return false
	}
	strip := func(p map[string]string) map[string]string {
		out := maps.Clone(p)
		for _, k := range raftNodesParams {
			delete(out, k)
		}
		return out
	}
	return maps.Equal(strip(a.Params), strip(b.Params))
}

// adoptRaftNodes handles a raft namespace whose spec at a peer differs
// from the local one only in its node list: a newer list (higher
// nodes-version) is adopted (the service's SetNodes, then the catalog);
// an older one is left for the peer to adopt ours. It reports whether the
// difference was handled so (false: a real conflict).
func (n *Node) adoptRaftNodes(have *namespace, peer NamespaceSpec) (bool, error) {
	if have.spec.Strategy != "raft" || !sameButNodes(have.spec, peer) {
		return false, nil
	}
	if nodesVersion(peer) <= nodesVersion(have.spec) {
		return true, nil
	}
	svc, ok := have.svc.(*raft.Service)
	if !ok {
		return false, nil
	}
	cfg, err := raft.ConfigFromParams(n.cfg.ID, "", peer.Params)
	if err != nil {
		return true, fmt.Errorf("node list of %s from a peer: %w", peer.Name, err)
	}
	if err := svc.AdoptNodes(cfg.Nodes, cfg.Retired, cfg.NodesVersion); err != nil {
		return true, fmt.Errorf("node list of %s from a peer: %w", peer.Name, err)
	}
	params := map[string]string{}
	for _, k := range raftNodesParams {
		params[k] = peer.Params[k]
	}
	return true, n.updateParams(peer.Name, params)
}
