// Package core is dialkv's deterministic data model: one replica's state
// machine and the storage engines under it.
//
// A Store applies Redis-style Commands (strings, numbers, lists, sets, hashes,
// sorted sets, TTL, conditional writes, batches, scans, transactions and
// secondary indexes) to an Engine and returns Replies. Everything that varies
// between runs is an input: the current time is passed to every call, and
// core never reads the clock, never uses global randomness and never starts a
// goroutine. Given the same commands and the same times, two Stores reach the
// same state and return the same replies; every replication strategy in
// package consistency relies on that.
//
// Engines: NewMemEngine keeps everything in memory (used by the simulator and
// tests); package core/pebbleengine stores on disk with Pebble. Every record an
// Engine holds carries a checksum, and a record that fails it surfaces as a
// CodeCorruption error, never as data.
package core
