// Package quorum is dialkv's Dynamo-style sloppy-quorum strategy, written as
// a sans-IO state machine (consistency.Replica): consistent hashing with
// virtual nodes, a preference list of N replicas per key, per-operation R
// and W, sloppy quorum with hinted handoff, dotted version vectors with
// siblings, last-write-wins on hybrid logical clocks, CRDTs (PN-counter,
// add-wins OR-set, map of LWW registers), pluggable Go resolvers, read
// repair, Merkle-tree anti-entropy with tombstone GC tied to it, and
// optional ABD linearizable reads and writes.
//
// Writes are coordinated by an owner of the key (a node that receives a
// write for a key it does not own forwards it); reads by whichever node
// receives them. docs/quorum.md describes the design, what R+W>N does and
// does not guarantee, and every Params key.
package quorum
