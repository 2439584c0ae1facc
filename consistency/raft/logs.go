package raft

import "github.com/lni/dragonboat/v4/logger"

// QuietLogs sets Dragonboat's (and its Pebble's) loggers to level, one of
// logger.CRITICAL, ERROR, WARNING, INFO, DEBUG. Dragonboat's loggers are
// process-wide.
func QuietLogs(level logger.LogLevel) {
	for _, p := range []string{"config", "dragonboat", "gossip", "logdb", "pebblekv", "raft",
		"raftpb", "registry", "rsm", "server", "settings", "tan", "transport", "grpc"} {
		logger.GetLogger(p).SetLevel(level)
	}
}
