// Package causal is dialkv's causal+ strategy (causal consistency with
// convergent conflict handling, as COPS defines it) across regions.
//
// Topology. The namespace's replicas are grouped into regions (Params
// "regions", e.g. "us:n1,n2;eu:n3,n4"). Every region holds a full copy of the
// namespace, sharded over its nodes by a hash of the key: in each region one
// node owns each key. A client talks to any node of its region; a node that
// does not own the key forwards the request to the owner in its region.
//
// Writes. The owner stamps a write with a version — a hybrid logical clock
// reading plus the owner's id, so versions are unique and totally ordered —
// persists it together with one outbound replication entry per other region,
// syncs, and acknowledges: no other region is waited for. Replication to the
// owner of the key in every other region is asynchronous and retried until
// acknowledged, so it survives crashes of either side.
//
// Dependencies. A client's session token is its causal context: every
// write in its causal past, as (key, version) pairs, except those already
// known to be visible in every region (globally stable). A read adds the
// value's version and the value's own recorded dependencies; a write adds
// itself. A write ships with the context it was made in and stores it with
// its record; a region makes a remote write visible only after every one of
// its dependencies is visible there (dependency checks go to the
// region-local owners of the dependency keys, as in COPS's dep_check). A
// dependency (k, v) is visible when the local version of k is at least v.
// Because the context holds the whole unstable causal past rather than only
// the nearest dependencies, the check stays sound when a newer concurrent
// write has overwritten v and the client has moved to another region
// (COPS's nearest-dependency collapse assumes a client stays in one
// datacenter).
//
// Sessions across nodes and regions. Before serving any request the owner
// waits — up to the request's deadline — until every dependency in the
// client's token is visible in its region, unless the token was handed out
// in this region (then all of it is visible here already). A client that moves to another
// node or region therefore keeps read-your-writes and monotonic reads; when
// the deadline passes it gets a retryable Unavailable error instead of an
// older state.
//
// Convergence. With Params "resolve" = "lww" (the default) concurrent writes
// to one key are resolved by last-writer-wins on versions (HLC, then node
// id), identically in every region, so regions converge once replication
// catches up; a dependency (k, v) counts as visible when the local version
// of k is at least v. With "siblings" concurrent writes from different
// regions are kept as siblings, returned together by reads
// (Response.Values); a write replaces the siblings its client's context saw
// (and its region's previous write of the key), so a write made after
// reading them resolves them. Every write depends on what it replaces, so
// the surviving set is the same in every region whatever the arrival order;
// a dependency (k, v) is visible when the writes of k from v's node have
// been applied up to v.
//
// Metadata. When every region has acknowledged a write, its origin marks it
// stable and tells every other node; stable writes are
// dropped from the contexts handed out and from the dependencies stored and
// shipped. Contexts therefore hold only the recent, not yet stable part of
// a session's causal past: small while regions are connected, growing with
// the writes made during a partition between regions.
//
// Ordering rules: a write is acknowledged only after its record and its
// outbound replication entries are durable (Ready.Sync); a remote write is
// acknowledged to its sender only after it is durable here.
//
// Integrity. Every stored value (records, replication entries, meta) is
// sealed with a CRC-32C of its key and payload. A corrupt record is
// re-fetched from the key's owners in the other regions, merged with this
// node's unreplicated writes of it and applied like a remote write, after
// its dependencies (requests for the key are refused meanwhile; with one
// region it is a typed CORRUPTION error); a corrupt meta is rebuilt at restart; corrupt
// replication entries are re-derived from the store under last-writer-wins,
// and fail the restart with core.ErrCorruption in siblings mode (see
// recover).
//
// Limitations: one owner per key per region (no replication inside a region
// yet), so a crashed owner makes its keys unavailable in its region until it
// restarts; tombstones are kept forever; only GET, SET and DEL are supported.
//
// Measurements. The replica is a consistency.Meter: TakeSamples returns the
// propagation lag of each remote write applied (the now it was given minus
// the write's HLC wall time), by source region, and Counters the
// dependency metadata shipped per write, token sizes, and more.
package causal
