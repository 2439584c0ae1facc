// Package sim is dialkv's deterministic simulator: a virtual clock and one
// event loop drive a whole cluster of any replication strategy under network,
// process, disk and clock faults, from one seed. Same seed and same build give
// a byte-identical history and trace.
package sim
