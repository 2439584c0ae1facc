package pebbleengine

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/batchrepr"
)

// valueCache is a bounded map from key to value in front of Engine.Get (a
// row cache): a Pebble point read builds a level iterator, checks the
// memtables, bloom filters and block cache, and costs several microseconds
// even when every block is cached; a hit here is one map lookup. Only
// Engine.Get uses it (snapshots and iterators read Pebble directly).
//
// Coherence rules (mu guards everything; get and prefetch, which only read,
// take it shared):
//
//   - Reads fill it: a miss notes the generation, reads Pebble, and inserts
//     the value only if no commit has happened since (the generation is
//     unchanged). A commit that raced the read may have written a newer
//     value the read did not see; skipping the insert is always safe.
//   - A commit, after Pebble has applied it, bumps the generation and
//     writes its keys through (set: cached with the new value, recently
//     written keys being likely reads; delete: removed). A range deletion,
//     an unknown record kind or a failed commit empties the cache.
//
// So a Get that starts after a Commit returned never sees the value the
// commit replaced.
//
// Complete: an engine opened empty starts with a complete cache — every key
// the engine holds is in it, so a miss means the key is absent and Get
// answers ErrNotFound without reading Pebble (an insert's read of its key
// costs one map lookup instead of a memtable seek and a bloom filter probe
// per level: most of a raft write's state machine reads in a fresh
// namespace, docs/performance.md). It stays complete while nothing leaves
// the cache that the engine still holds: an eviction, a value too large to
// cache, a range deletion, an unknown record kind or a failed commit end it
// for good (an engine opened with data never has it).
type valueCache struct {
	max int64 // bytes (entry cost: key + value + entryOverhead)

	mu   sync.RWMutex
	size int64
	gen  uint64
	// m maps a key to its value. An entry's key and value share one
	// allocation (newEntry); the value's bytes are overwritten in place by
	// a write-through of a value of the same length (under mu held
	// exclusively), so a reader copies them before it releases mu.
	m        map[string][]byte
	complete bool // every key of the engine is in m (see above)

	hits, misses atomic.Int64
}

// entryOverhead approximates a map entry's bookkeeping beyond its bytes.
const entryOverhead = 64

// maxEntryFraction: a value larger than max/maxEntryFraction is not cached
// (large values would evict many small ones and gain little).
const maxEntryFraction = 256

func newValueCache(max int64) *valueCache {
	if max <= 0 {
		return nil
	}
	return &valueCache{max: max, m: map[string][]byte{}}
}

func entryCost(k, v int) int64 { return int64(k + v + entryOverhead) }

// get returns a copy of key's cached value (ok), or absent when the cache
// is complete and does not have key, or else the generation to pass to fill
// after reading Pebble.
func (c *valueCache) get(key []byte) (v []byte, gen uint64, ok, absent bool) {
	c.mu.RLock()
	s, ok := c.m[string(key)]
	gen, absent = c.gen, !ok && c.complete
	if ok {
		v = make([]byte, len(s))
		copy(v, s) // under mu: a write-through may overwrite s in place
	}
	c.mu.RUnlock()
	if !ok && !absent {
		c.misses.Add(1)
		return nil, gen, false, false
	}
	c.hits.Add(1)
	if absent {
		return nil, gen, false, true
	}
	return v, gen, true, false
}

// prefetch looks every key up and reads the first and last byte of its
// entry, so that the gets that follow find the map's group and the entry in
// the CPU caches. One lookup does not wait for the previous one's misses
// (nothing here depends on an earlier lookup's result but the sum), so the
// processor overlaps them; a batch's gets one by one, with a command's work
// in between, do not. It changes nothing (the sum is only returned so that
// the reads are not optimised away).
//
//go:noinline
func (c *valueCache) prefetch(keys [][]byte) (sum byte) {
	c.mu.RLock()
	for _, k := range keys {
		if s := c.m[string(k)]; len(s) > 0 {
			sum += s[0] + s[len(s)-1]
		}
	}
	c.mu.RUnlock()
	return sum
}

// fill caches key's value read from Pebble at generation gen, unless a
// commit has happened since.
func (c *valueCache) fill(key, val []byte, gen uint64) {
	cost := entryCost(len(key), len(val))
	if cost > c.max/maxEntryFraction {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	c.put(key, val)
	c.evict()
}

// put caches key's value, replacing any entry; mu is held exclusively. A
// value of the same length as the cached one is copied over it in place
// (one map lookup, no allocation: a SET of a same-sized value, the common
// write-through); otherwise the old entry is deleted (the map keeps the
// key of the entry it first inserted, which shares its allocation with the
// old value) and a new one inserted.
func (c *valueCache) put(key, val []byte) {
	if old, ok := c.m[string(key)]; ok {
		if len(old) == len(val) {
			copy(old, val)
			return
		}
		c.remove(key)
	}
	k, v := newEntry(key, val)
	c.m[k] = v
	c.size += entryCost(len(key), len(val))
}

// remove drops key's entry, if any, and its cost; mu is held exclusively.
func (c *valueCache) remove(key []byte) {
	if old, ok := c.m[string(key)]; ok {
		delete(c.m, string(key))
		c.size -= entryCost(len(key), len(old))
	}
}

// newEntry copies key and val into one allocation: the key as a string
// (its bytes are never written again) and the value as a slice capped at
// its length (put overwrites only those bytes).
func newEntry(key, val []byte) (string, []byte) {
	if len(key) == 0 {
		return "", append(make([]byte, 0, len(val)), val...)
	}
	kv := make([]byte, len(key)+len(val))
	copy(kv, key)
	copy(kv[len(key):], val)
	return unsafe.String(&kv[0], len(key)), kv[len(key):len(kv):len(kv)]
}

// evict removes entries until the cache fits; mu is held. Go's map
// iteration starts at a random position, so this evicts roughly at random.
// The cache is then no longer complete.
func (c *valueCache) evict() {
	for k, v := range c.m {
		if c.size <= c.max {
			return
		}
		delete(c.m, k)
		c.size -= entryCost(len(k), len(v))
		c.complete = false
	}
}

// committed brings the cache up to date with a batch Pebble has just
// applied (r reads the batch's records).
func (c *valueCache) committed(r batchrepr.Reader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for {
		kind, k, v, ok, err := r.Next()
		if err != nil {
			c.clearLocked()
			return
		}
		if !ok {
			c.evict()
			return
		}
		switch kind {
		case pebble.InternalKeyKindSet:
			if entryCost(len(k), len(v)) <= c.max/maxEntryFraction {
				c.put(k, v)
			} else {
				c.complete = false // the engine holds a key the cache does not
				c.remove(k)
			}
		case pebble.InternalKeyKindDelete, pebble.InternalKeyKindSingleDelete:
			c.remove(k)
		default: // range deletions and anything else: start over
			c.clearLocked()
			return
		}
	}
}

// clear empties the cache and invalidates reads in flight.
func (c *valueCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearLocked()
}

func (c *valueCache) clearLocked() {
	c.gen++
	clear(c.m)
	c.size = 0
	c.complete = false
}

// ValueCacheStats are the value cache's counters.
type ValueCacheStats struct {
	Hits, Misses int64 // a hit includes an absent key a complete cache answered
	Entries      int
	Bytes        int64 // approximate, including per-entry overhead
	Complete     bool  // it holds every key of the engine (see valueCache)
}

// ValueCacheStats returns the value cache's counters (zero when it is off).
func (e *Engine) ValueCacheStats() ValueCacheStats {
	c := e.vcache
	if c == nil {
		return ValueCacheStats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return ValueCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Entries: len(c.m), Bytes: c.size, Complete: c.complete}
}
