package main

import (
	"testing"
	"time"

	"github.com/dialkv/dialkv/checker"
)

// Only crashes of the node writes depend on count, and the write recovery
// is the completion of the first ok write invoked after the crash.
func TestCrashesAndRecoveries(t *testing.T) {
	raftTrace := "000000100000000 n1 crash unsynced writes lost; restart in 100ms (leader of shard 0: true)\n" +
		"000000300000000 n2 crash unsynced writes lost; restart in 100ms (leader of shard 0: false)\n" +
		"000000224000000 n2 failover serving linearizable reads of shard 0 124ms after the leader crashed\n"
	at, probes, err := crashes([]byte(raftTrace), "raft")
	if err != nil || len(at) != 1 || at[0] != 1e8 || len(probes) != 1 || probes[0] != 124*time.Millisecond {
		t.Fatalf("raft: at=%v probes=%v err=%v", at, probes, err)
	}
	pbTrace := "0.100000000 n1 crash unsynced writes lost; restart in 100ms\n0.200000000 n2 crash unsynced writes lost; restart in 1s\n"
	at, _, err = crashes([]byte(pbTrace), "primary-backup")
	if err != nil || len(at) != 1 || at[0] != 1e8 {
		t.Fatalf("primary-backup: at=%v err=%v", at, err)
	}
	c := func(n int64) *int64 { return &n }
	ops := []checker.Op{
		{ID: 0, F: "put", Invoke: 9e7, Complete: c(11e7), Outcome: checker.OK},  // invoked before the crash
		{ID: 1, F: "get", Invoke: 11e7, Complete: c(12e7), Outcome: checker.OK}, // not a write
		{ID: 2, F: "put", Invoke: 11e7, Complete: c(5e8), Outcome: checker.Unknown},
		{ID: 3, F: "delete", Invoke: 2e8, Complete: c(25e7), Outcome: checker.OK},
		{ID: 4, F: "put", Invoke: 21e7, Complete: c(24e7), Outcome: checker.OK},
	}
	if got := recoveries(ops, at); len(got) != 1 || got[0] != 140*time.Millisecond {
		t.Fatalf("recoveries %v, want [140ms]", got)
	}
}
