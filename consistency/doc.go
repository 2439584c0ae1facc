// Package consistency holds the contract every replication strategy meets,
// and its subpackages hold the strategies: raft (Dragonboat multi-Raft),
// quorum (Dynamo-style sloppy quorum), causal (causal+) and primarybackup
// (the simulator's small reference strategy).
//
// Quorum, causal and primary-backup are sans-IO state machines in the style
// of etcd's raft.RawNode: a Replica is driven by inputs (a client request, a
// peer message, a tick carrying the current time) and hands back its outputs
// in a Ready (messages to send, replies to clients, whether its engine must
// be synced first). The same code runs under the simulator, which drives it
// from its event loop with virtual time, and in a real node, which drives it
// from one goroutine with the wall clock, Thrift sockets and Pebble.
//
// Ordering rule: when Ready.Sync is set the driver calls Engine.Sync before
// it sends any of Ready.Messages or Ready.Responses, so nothing is
// acknowledged before it is durable.
package consistency
