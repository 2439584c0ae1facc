package nodes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4/logger"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport/raftls"
)

// dragonboatLogsOnce guards the one process-wide setting of Dragonboat's
// log levels (Dragonboat's loggers are package state of its own).
var dragonboatLogsOnce sync.Once

// RaftStrategy starts this node's part of a namespace of strategy raft
// (consistency/raft: Dragonboat multi-Raft). Every node of the namespace
// creates it with the same parameters (raft.ConfigFromParams), e.g.
//
//	NAMESPACE CREATE kv raft nodes n1,n2,n3 raft-addrs 127.0.0.1:7381,127.0.0.1:7382,127.0.0.1:7383 client-addrs 127.0.0.1:7379,127.0.0.1:7389,127.0.0.1:7399 shards 2
//
// on n1, n2 and n3. The Raft log and snapshots live under the namespace's
// directory; Dragonboat fsyncs its log whatever --fsync says.
func RaftStrategy(env StrategyEnv) (consistency.Service, error) {
	if env.Dir == "" {
		return nil, errors.New("raft: needs a data directory (--engine pebble)")
	}
	cfg, err := raft.ConfigFromParams(env.NodeID, filepath.Join(env.Dir, "raft"), env.Spec.Params)
	if err != nil {
		return nil, err
	}
	// svc is set once raft.New returns; until then (the transport starts
	// inside it) the identity check uses the node list of the parameters.
	var svc atomic.Pointer[raft.Service]
	if f := env.PeerTLS; f.Cert != "" {
		// Raft traffic runs over transport/raftls with the node's peer
		// certificate: mutual TLS where both sides must present a node
		// certificate naming a node of this namespace (a client
		// certificate of the same CA, or a node outside the namespace, is
		// refused in the handshake). Dragonboat's own MutualTLS would
		// accept any certificate of the CA.
		initial := map[string]bool{}
		for _, n := range cfg.Nodes {
			initial[string(n.ID)] = true
		}
		isNode := func(name string) bool {
			if s := svc.Load(); s != nil {
				return s.IsNode(name)
			}
			return initial[name]
		}
		server, client, err := security.RaftConfigs(f, isNode)
		if err != nil {
			return nil, fmt.Errorf("raft namespace %s: %w", env.Spec.Name, err)
		}
		cfg.TransportFactory = raftls.Factory{Server: server, Client: client, Logger: env.Logger}
	}
	// Dragonboat's log levels are process-wide: set them once, before
	// the first NodeHost exists, so no NodeHost is logging while they
	// change (a data race under -race when namespaces open concurrently).
	// The first raft namespace's logger decides the level.
	dragonboatLogsOnce.Do(func() { raft.QuietLogs(dragonboatLevel(env.Logger)) })
	s, err := raft.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("raft namespace %s: %w", env.Spec.Name, err)
	}
	svc.Store(s)
	return s, nil
}

// dragonboatLevel maps the node's log level onto Dragonboat's
// (process-wide) loggers, one step quieter: Dragonboat logs every election
// step as a warning. debug: INFO; info (dialkv node's default): WARNING;
// warn (dialkv demo's default): CRITICAL, so that the demo's expected
// start-up and shut-down noise (peers not listening yet, peers gone) stays
// off the terminal; error: CRITICAL.
func dragonboatLevel(log *slog.Logger) logger.LogLevel {
	ctx := context.Background()
	switch {
	case log == nil:
		return logger.WARNING
	case log.Enabled(ctx, slog.LevelDebug):
		return logger.INFO
	case log.Enabled(ctx, slog.LevelInfo):
		return logger.WARNING
	}
	return logger.CRITICAL
}

// demoRaftParams are the parameters of the demo's raft namespace: every
// cluster member is a node of it; its Raft (Dragonboat) address is two
// above the client port (n1: PORT+2, n2: PORT+12, ...), or a free port when
// the base port is 0.
func demoRaftParams(listen string, peers []ClusterPeer, shards int) (map[string]string, error) {
	addrs, err := demoPortAddrs(listen, len(peers), 2)
	if err != nil {
		return nil, err
	}
	ids, raftAddrs, clientAddrs := make([]string, len(peers)), make([]string, len(peers)), make([]string, len(peers))
	for i, p := range peers {
		ids[i], clientAddrs[i], raftAddrs[i] = p.ID, p.Client, addrs[i][0]
	}
	return map[string]string{
		"nodes":        strings.Join(ids, ","),
		"raft-addrs":   strings.Join(raftAddrs, ","),
		"client-addrs": strings.Join(clientAddrs, ","),
		"shards":       strconv.Itoa(max(shards, 1)),
		// Shorter than the 10 ms default: loopback round trips take
		// microseconds, and failover takes 10-20 RTTs.
		"rtt": "5ms",
	}, nil
}

// waitRaftLeaders waits until every node's replicas of the namespace know
// their shard's leader, so that the first command typed is served at once.
func waitRaftLeaders(nodes []*ClusterNode, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, cn := range nodes {
		for {
			ns := cn.namespace(name)
			svc, _ := nsService(ns).(*raft.Service)
			ready := svc != nil
			for sh := 0; ready && sh < svc.Shards(); sh++ {
				if svc.Hosts(sh) {
					_, ok := svc.Leader(sh)
					ready = ok
				}
			}
			if ready {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("raft namespace %s: no leader known on %s after %v", name, cn.cfg.ID, timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func nsService(ns *namespace) consistency.Service {
	if ns == nil {
		return nil
	}
	return ns.svc
}
