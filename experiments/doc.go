// Package experiments holds nothing but documentation: each subdirectory is
// one experiment of PAPER.md, a program that writes its results (CSV,
// Markdown table, PNG plots, and the parameters and seeds it used) under
// experiments/results/NAME/. `make experiments` runs them all; `make
// exp-NAME` or `go run ./experiments/NAME` runs one; `--help` shows each
// one's flags and `--quick` a small version of it.
//
//	latency       1. latency and throughput per strategy and consistency level (simulator)
//	availability  2. operations that succeed on the majority and minority side of partitions
//	staleness     3. PBS staleness of partial quorums (WARS model, production latency profiles)
//	lostwrites    4. acknowledged writes lost by quorum's lww, siblings and crdt resolvers
//	sensitivity   5. how often the checkers catch each deliberately broken variant
//	simspeed      6. simulator speed per strategy and cluster size
//	failover      7. failover time in the simulator (raft leader, primary-backup primary)
//	node-vs-redis    one dialkv node against redis-server (run.sh; real processes)
//	raft-vs-etcd     three dialkv nodes (raft) against three etcd members (run.sh; real processes);
//	                 profile.sh: fsyncs and CPU per write of each member, both systems;
//	                 kill9.sh: acknowledged raft writes survive kill -9 of every node;
//	                 ab.sh: builds or namespace parameters side by side (writes/s, CPU per write)
//	strategies-real  1. on real processes: every strategy and consistency level side by side (dialkv bench)
//	causal-real      causal+ against quorum on four loopback nodes in two regions, visibility lag, metadata
//	jepsen           fault tests on real processes (kill -9, SIGSTOP, rolling restart) checked by the checkers (run.sh)
//	rebalance-real   7. on real processes: a quorum ring change (add a node, remove one) under load
//	raftrebalance-real 7. on real processes: raft replicas move to a new node and off a retired one under writes
//	partition-real   2. on real processes: availability on each side of iptables partitions (root)
//
// experiments/internal/expio writes results; experiments/internal/simexp
// runs simulations and reads their histories and traces back;
// experiments/internal/realnodes starts `dialkv node` processes (each on its
// own loopback address and uid) and experiments/internal/netcut partitions
// them with iptables.
package experiments
