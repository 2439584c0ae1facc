// Package sim is dialkv's deterministic simulator: a virtual clock and one
// event loop drive a whole cluster of any replication strategy under network,
// process, disk and clock faults, from one seed. Same seed and same build give
// a byte-identical history and trace.
//
// Sans-IO strategies (consistency.Replica: primary-backup, quorum, causal)
// run on this package's event loop (Strategies lists them); raft, whose
// Dragonboat owns its goroutines, runs in sim/raftsim under testing/synctest
// and is reached through Run with --strategy raft. The pieces both share are
// leaf packages: sim/simrun (run options and results, seed derivation, the
// reproducer), sim/netmodel (latency distributions, topologies, partition
// shapes, link state) and sim/faults (fault kinds, swarm-drawn rates, the
// timed fault plan). Workloads come from clients/workload.
//
// Main is `dialkv sim`; docs/simulator.md describes the command, the fault
// model, the phases and the reports.
package sim
