package core

// Engine is an ordered byte-key store under a Store. Keys sort bytewise.
// Implementations: NewMemEngine (memory) and core/pebbleengine (Pebble).
//
// An Engine stores exactly the bytes it is given; record checksums and
// encodings belong to the Store.
type Engine interface {
	Reader
	// NewBatch starts an atomic group of writes.
	NewBatch() Batch
	// NewSnapshot returns a consistent read-only view as of now; writes
	// committed later are not visible through it. Close it when done.
	NewSnapshot() Snapshot
	// Sync makes every committed batch durable.
	Sync() error
	// Checkpoint writes a consistent, openable copy of the engine's
	// durable state into dir (which must not exist). Engines that cannot
	// checkpoint return an error.
	Checkpoint(dir string) error
	// Close releases the engine.
	Close() error
}

// Reader reads keys and ranges.
type Reader interface {
	// Get returns the value of key, or ErrNotFound. The returned slice is
	// owned by the caller.
	Get(key []byte) ([]byte, error)
	// NewIter iterates keys in [lower, upper) in ascending order; a nil
	// bound is unbounded.
	NewIter(lower, upper []byte) Iterator
}

// Prefetcher is implemented by engines that can bring what Get would read
// for a set of keys into the CPU caches ahead of the Gets (pebbleengine:
// the entries of its value cache). The Store calls it with the data keys
// of a batch's commands before it runs them: a Get that finds its entry
// already cached does not wait for memory, and the prefetch itself looks
// every key up in one pass, where the processor overlaps the misses. It is
// a hint: it changes no state and no result, only time; it must be safe
// for concurrent use with Get (and with other Prefetch calls). keys and
// their bytes are the Store's, reused after the call: it must not keep
// them.
type Prefetcher interface {
	Prefetch(keys [][]byte)
}

// Snapshot is a consistent read-only view of an Engine.
type Snapshot interface {
	Reader
	Close() error
}

// Iterator walks keys in ascending order:
//
//	for it.First(); it.Valid(); it.Next() { ... it.Key(), it.Value() ... }
//	err := it.Close()
//
// Key and Value are valid until the next call to the iterator.
type Iterator interface {
	First() bool
	SeekGE(key []byte) bool
	Valid() bool
	Next() bool
	Key() []byte
	Value() []byte
	Error() error
	Close() error
}

// Batch is an atomic group of writes. Nothing is visible until Commit.
type Batch interface {
	Set(key, value []byte)
	Delete(key []byte)
	// DeleteRange deletes every key in [start, end).
	DeleteRange(start, end []byte)
	// Commit applies the batch atomically. With sync it is durable when
	// Commit returns; without, it is durable after the next Sync (or the
	// engine's own policy).
	Commit(sync bool) error
	// Len is the number of operations in the batch.
	Len() int
	Close()
}

// SyncPolicy says when committed writes reach stable storage.
type SyncPolicy int

// The sync policies, as `dialkv node --fsync always|interval|never`.
const (
	SyncAlways   SyncPolicy = iota // every commit is synced before it returns
	SyncInterval                   // the caller syncs periodically (Engine.Sync)
	SyncNever                      // left to the operating system
)

// String returns the flag spelling of the policy.
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNever:
		return "never"
	}
	return "unknown"
}

// ParseSyncPolicy parses "always", "interval" or "never".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "never":
		return SyncNever, nil
	}
	return 0, Errorf(CodeErr, "unknown fsync policy %q (want always, interval or never)", s)
}
