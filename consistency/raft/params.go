package raft

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency"
)

// Values of the namespace parameter transport (Config.Transport).
const (
	// TransportRaftls is dialkv's Raft transport (transport/raftls), in
	// plain mode without peer TLS: the default.
	TransportRaftls = "raftls"
	// TransportDragonboat is Dragonboat's own TCP transport, which builds
	// before session 7 used without peer TLS (docs/raft.md).
	TransportDragonboat = "dragonboat"
)

// ParamNames lists the namespace parameters ConfigFromParams reads.
func ParamNames() []string {
	return []string{"nodes", "raft-addrs", "client-addrs", "shards", "replicas", "rtt", "election-rtt", "snapshot-entries", "redirect", "storage", "batch", "small-engine", "initial-nodes", "retired", "nodes-version", "rebalance", "repropose", "logdb", "transport"}
}

// ConfigFromParams builds a node's Config from a raft namespace's
// parameters, as a real node gets them at namespace creation:
//
//	nodes         n1,n2,n3                      the namespace's nodes, in order (required)
//	raft-addrs    127.0.0.1:7380,...            each node's Raft (peer) address (required)
//	client-addrs  127.0.0.1:7379,...            each node's client address, for redirects
//	shards        1                             shards of the namespace
//	replicas      3                             replicas per shard (3 or 5)
//	rtt           10ms                          Dragonboat's RTT
//	election-rtt  10                            election timeout in RTTs
//	snapshot-entries 10000                      snapshot every so many entries
//	redirect      true                          redirect requests to the shard leader
//	storage       pebble                        state machine storage: pebble (on disk) or memory
//	batch         false                         propose concurrent writes of a shard as one entry (batch.go)
//	small-engine  false                         one Dragonboat worker of each kind instead of 16 (small machines)
//	initial-nodes 3                             how many of nodes (the first) the initial placement uses (default: all);
//	                                            set when nodes are appended after creation (nodes/raftnodes.go)
//	retired       n1                            nodes that are to host nothing: the rebalancer moves their replicas away
//	nodes-version 2                             changes of nodes/retired after creation (RAFT.NODES); newer lists spread
//	rebalance     true                          let the cluster's rebalancer move this namespace's replicas
//	repropose     (2 election timeouts)         propose a write again when no result came in this long; off: never
//	logdb         pebble                        Dragonboat's LogDB (logdb.go): pebble (the default: no fsync for a commit-index-only
//	                                            change), pebble-sync (Dragonboat's default as it is: every update fsynced), or tan
//	transport     raftls                        the Raft transport without peer TLS: raftls (transport/raftls in plain mode, the
//	                                            default) or dragonboat (Dragonboat's TCP transport, as builds before session 7);
//	                                            with peer TLS always raftls
//
// dir is the node's directory for the namespace (the NodeHost directory).
func ConfigFromParams(nodeID, dir string, params map[string]string) (Config, error) {
	cfg := Config{NodeID: consistency.NodeID(nodeID), Dir: dir, RedirectToLeader: true, Storage: "pebble", Rebalance: true}
	list := func(k string) []string {
		v := strings.TrimSpace(params[k])
		if v == "" {
			return nil
		}
		parts := strings.Split(v, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		return parts
	}
	ids, raftAddrs, clientAddrs := list("nodes"), list("raft-addrs"), list("client-addrs")
	if len(ids) == 0 {
		return cfg, fmt.Errorf("raft: parameter nodes is required (n1,n2,n3)")
	}
	if len(raftAddrs) != len(ids) {
		return cfg, fmt.Errorf("raft: parameter raft-addrs has %d addresses for %d nodes", len(raftAddrs), len(ids))
	}
	if clientAddrs != nil && len(clientAddrs) != len(ids) {
		return cfg, fmt.Errorf("raft: parameter client-addrs has %d addresses for %d nodes", len(clientAddrs), len(ids))
	}
	for i, id := range ids {
		n := Node{ID: consistency.NodeID(id), RaftAddr: raftAddrs[i]}
		if clientAddrs != nil {
			n.ClientAddr = clientAddrs[i]
		}
		cfg.Nodes = append(cfg.Nodes, n)
	}
	for k, v := range params {
		var err error
		var n uint64
		switch k {
		case "nodes", "raft-addrs", "client-addrs":
		case "initial-nodes":
			n, err = strconv.ParseUint(v, 10, 32)
			if err == nil && (n == 0 || int(n) > len(ids)) {
				err = fmt.Errorf("want 1 to the %d nodes", len(ids))
			}
			cfg.InitialNodes = int(n)
		case "retired":
			known := map[string]bool{}
			for _, id := range ids {
				known[id] = true
			}
			for _, r := range list("retired") {
				if !known[r] {
					err = fmt.Errorf("node %q is not in nodes", r)
					break
				}
				cfg.Retired = append(cfg.Retired, consistency.NodeID(r))
			}
		case "shards", "replicas", "election-rtt", "snapshot-entries":
			n, err = strconv.ParseUint(v, 10, 32)
			if err == nil && n == 0 {
				err = fmt.Errorf("must be at least 1")
			}
			switch k {
			case "shards":
				cfg.Shards = int(n)
			case "replicas":
				cfg.Replicas = int(n)
				if err == nil && n != 3 && n != 5 && int(n) != len(ids) {
					err = fmt.Errorf("want 3 or 5 (or the node count)")
				}
			case "election-rtt":
				cfg.ElectionRTT = n
			case "snapshot-entries":
				cfg.SnapshotEntries = n
			}
		case "rtt":
			cfg.RTT, err = time.ParseDuration(v)
			if err == nil && cfg.RTT < time.Millisecond {
				err = fmt.Errorf("must be at least 1ms")
			}
		case "nodes-version":
			cfg.NodesVersion, err = strconv.ParseUint(v, 10, 64)
		case "rebalance":
			cfg.Rebalance, err = strconv.ParseBool(v)
		case "redirect":
			cfg.RedirectToLeader, err = strconv.ParseBool(v)
		case "batch":
			cfg.BatchProposals, err = strconv.ParseBool(v)
		case "small-engine":
			cfg.SmallEngine, err = strconv.ParseBool(v)
		case "repropose":
			if v == "off" {
				cfg.ReproposeAfter = -1
				break
			}
			cfg.ReproposeAfter, err = time.ParseDuration(v)
			if err == nil && cfg.ReproposeAfter <= 0 {
				err = fmt.Errorf("want a positive duration or off")
			}
		case "logdb":
			cfg.LogDB = v
			if v != LogDBPebble && v != LogDBPebbleSync && v != LogDBTan {
				err = fmt.Errorf("want %s, %s or %s", LogDBPebble, LogDBPebbleSync, LogDBTan)
			}
		case "transport":
			cfg.Transport = v
			if v != TransportRaftls && v != TransportDragonboat {
				err = fmt.Errorf("want %s or %s", TransportRaftls, TransportDragonboat)
			}
		case "storage":
			cfg.Storage = v
			if v != "pebble" && v != "memory" {
				err = fmt.Errorf("want pebble or memory")
			}
		default:
			err = fmt.Errorf("unknown parameter (known: %s)", strings.Join(ParamNames(), ", "))
		}
		if err != nil {
			return cfg, fmt.Errorf("raft: parameter %s=%q: %w", k, v, err)
		}
	}
	if cfg.InitialNodes > 0 && cfg.Replicas > cfg.InitialNodes {
		return cfg, fmt.Errorf("raft: parameter replicas=%d exceeds the %d initial nodes", cfg.Replicas, cfg.InitialNodes)
	}
	if cfg.Replicas > len(ids) {
		return cfg, fmt.Errorf("raft: parameter replicas=%d exceeds the %d nodes", cfg.Replicas, len(ids))
	}
	return cfg, nil
}
