package nodes

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/lni/dragonboat/v4/logger"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/raft"
)

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
	raft.QuietLogs(logger.WARNING)
	svc, err := raft.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("raft namespace %s: %w", env.Spec.Name, err)
	}
	return svc, nil
}
