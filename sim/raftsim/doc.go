// Package raftsim runs the raft strategy (consistency/raft, on Dragonboat)
// under dialkv's simulator: Dragonboat owns its goroutines and timers, so
// instead of an event loop the run is hosted in a testing/synctest bubble
// whose fake clock drives every NodeHost, with a simulator-owned transport
// (Network: partitions, clogs, loss, duplication and delay from
// sim/netmodel, decided by hashes of the seed and the message), per-node
// in-memory disks (lni/vfs strict MemFS: a crash loses unsynced writes) with
// I/O-error injection, crashes (unsynced writes lost), pauses (the node's
// disk freezes, so its Raft processing stops; queued requests are served
// when it resumes) and clock skew from sim/faults, the clients of
// clients/workload recording a checker history, and the checker's
// linearizability, session, convergence and durability checks.
//
// RunT runs one simulation in a test; Run does the same from a normal
// program through testing.MainStart. See docs/raft.md for what is and is
// not reproduced byte for byte from a seed.
package raftsim
