// Package raft is dialkv's strongly consistent (CP) strategy: a namespace is
// split into shards, each shard is a Dragonboat Raft group of 3 or 5
// replicas, and the replicated state machine of every replica is a
// core.Store.
//
// A Service wraps one Dragonboat NodeHost (one per node and namespace) and
// implements consistency.Service:
//
//   - Writes (and transactions) are proposed to the shard's Raft group with
//     the proposer's clock stamped into the proposal, so that every replica
//     applies TTLs with the same time.
//   - Reads are linearizable by default: Dragonboat's ReadIndex (SyncRead) on
//     any replica. Options.Read "stale" reads the local replica without any
//     round trip (Response.Stale is set). "lease" is served as linearizable:
//     Dragonboat has no lease reads.
//   - Keys map to shards by the hash of their Redis-style hash tag (see
//     core.HashTag), so "{user42}:cart" and "{user42}:orders" share a shard.
//     Multi-key commands and transactions inside one shard are linearizable;
//     across shards they run as serializable two-phase commit transactions
//     (txn.go, txncoord.go).
//
// Config builds the NodeHost from plain fields, so the simulator
// (sim/raftsim) injects its own transport (config.TransportFactory), disk
// (vfs.Wrap over a vfs.NewStrictMem, for fault injection), NodeHost IDs,
// RTT and clock.
//
// Bugs lists deliberately broken variants (Config.Bug) that the simulator's
// checkers must catch.
package raft
