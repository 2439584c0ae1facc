// Package pebbleengine is the durable core.Engine of dialkv, built on
// Pebble (github.com/cockroachdb/pebble/v2).
//
// An Engine stores exactly the bytes the Store gives it: record encodings and
// checksums belong to core.Store. Every file access goes through the vfs.FS
// in Options, so tests and the simulator run the engine on a memory file
// system (vfs.NewMem, vfs.NewCrashableMem and its CrashClone) and inject I/O
// errors and corruption with FaultFS.
//
// Durability follows core.SyncPolicy:
//
//   - SyncAlways: every Commit writes and fsyncs the WAL before it returns.
//   - SyncInterval: commits are written to the WAL without fsync; the caller
//     calls Engine.Sync on its own timer (SyncInterval in Options is the
//     period it should use; the engine starts no goroutine of its own).
//   - SyncNever: commits are written without fsync and only Commit(true) or
//     an explicit Sync makes them durable.
//
// See docs/storage.md for what survives a process crash and a power loss.
package pebbleengine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dialkv/dialkv/core"
)

// Options configure Open. The zero value is valid: the OS file system,
// SyncAlways, DefaultCacheSize and no logging.
type Options struct {
	// FS is the file system every file is read and written through;
	// nil means vfs.Default (the operating system's).
	FS vfs.FS
	// Sync is the durability policy applied by Batch.Commit.
	Sync core.SyncPolicy
	// SyncInterval is, for core.SyncInterval, how often the owner of the
	// engine should call Engine.Sync. The engine does not call it itself
	// (it starts no goroutines); it only reports the value back through
	// Engine.SyncInterval. Zero means DefaultSyncInterval.
	SyncInterval time.Duration
	// CacheSize is the block cache size in bytes; 0 means DefaultCacheSize.
	// Pebble charges its memtables (4 MiB each, usually two live) to this
	// cache, so a cache under ~16 MiB leaves little or nothing for blocks.
	CacheSize int64
	// Cache, when set, is a block cache shared with other engines (a
	// node-wide memory budget); CacheSize is then ignored.
	Cache *SharedCache
	// Logger receives Pebble's log lines; nil discards them (quiet).
	Logger *slog.Logger
	// ValueCacheSize bounds the value cache in front of Get (see
	// valuecache.go): 0 means DefaultValueCacheSize, negative turns it off.
	ValueCacheSize int64
	// WALPrefill, when positive, has each WAL file written ahead with
	// zeros this many bytes at a time, so that a sync of the WAL does not
	// also commit the file's new size (walprefill.go). For an engine synced
	// once per group commit (--fsync always); 0 leaves the WAL as Pebble
	// writes it.
	WALPrefill int64
}

// DefaultValueCacheSize is the value cache size used when
// Options.ValueCacheSize is zero: about 150,000 keys with 100-byte values.
// It grows only as keys are read.
const DefaultValueCacheSize = 32 << 20

// l0CompactionThreshold is the read amplification of level 0 (its
// sublevels: each memtable flush of keys spread over the whole key space is
// one) at which Pebble compacts level 0 into the base level. Every such
// compaction rewrites the overlapping part of the base level, which for a
// small, often overwritten key set (a namespace's 100,000 keys written in
// batches) is all of it: at Pebble's default of 4, compactions wrote 4.5x
// the bytes flushed and were ~15 % of a node's CPU under batches. At 8 one
// compaction takes about twice the flushes: compactions wrote 316 -> 157 MB
// and read 370 -> 210 MB for the same 70 MB flushed. 16 halves that again
// but cost reads that miss the value cache ~7 % more CPU (more sublevels
// to probe); 8 showed no such cost (docs/performance.md, issue 3,
// session 11).
const l0CompactionThreshold = 8

// l0StopWritesThreshold is the L0 read amplification at which Pebble
// stalls writes until compactions catch up: 3x l0CompactionThreshold, as
// Pebble's defaults (12 and 4).
const l0StopWritesThreshold = 3 * l0CompactionThreshold

// DefaultSyncInterval is the Sync period used for core.SyncInterval when
// Options.SyncInterval is zero.
const DefaultSyncInterval = 100 * time.Millisecond

// DefaultCacheSize is the block cache size used when Options.CacheSize is
// zero. Pebble's own default (8 MiB) is entirely taken by memtable
// reservations, which left every read going to the file system.
const DefaultCacheSize = 64 << 20

// Engine is a core.Engine over one Pebble database.
type Engine struct {
	db          *pebble.DB
	dir         string
	policy      core.SyncPolicy
	interval    time.Duration
	corruptions *atomic.Int64
	failed      atomic.Pointer[string] // why the engine failed; nil while healthy
	vcache      *valueCache            // nil: off
}

// ErrFailed is returned by every write, Sync and Checkpoint of an engine
// that hit a fatal storage error, such as a failed WAL write or fsync:
// Pebble cannot go on after one (nor should anything trust the file after a
// failed fsync), so the engine stops, like a crashed process. Close it and
// Open the directory again to recover what was durable.
var ErrFailed = errors.New("pebbleengine: engine failed")

// fatalPanic carries a Pebble Fatalf out of Pebble's call stack; the
// engine's entry points turn it into ErrFailed.
type fatalPanic struct{ msg string }

func (e *Engine) check(what string) error {
	if m := e.failed.Load(); m != nil {
		return fmt.Errorf("pebbleengine: %s: %w (%s)", what, ErrFailed, *m)
	}
	return nil
}

// recoverFatal, deferred by an entry point, turns a Pebble Fatalf raised
// on the caller's goroutine into ErrFailed and marks the engine failed.
// Other panics continue.
func (e *Engine) recoverFatal(errp *error, what string) {
	r := recover()
	if r == nil {
		return
	}
	fp, ok := r.(fatalPanic)
	if !ok {
		panic(r)
	}
	msg := fp.msg
	e.failed.CompareAndSwap(nil, &msg)
	*errp = fmt.Errorf("pebbleengine: %s: %w (%s)", what, ErrFailed, fp.msg)
}

var (
	_ core.Engine     = (*Engine)(nil)
	_ core.Snapshot   = (*snapshot)(nil)
	_ core.Batch      = (*batch)(nil)
	_ core.Iterator   = (*iter)(nil)
	_ core.Prefetcher = (*Engine)(nil)
)

// Open opens (creating if needed) the Pebble database in dir on opts.FS.
// A fatal error while opening (Pebble's Fatalf) is returned wrapping
// ErrFailed rather than ending the process.
func Open(dir string, opts Options) (_ *Engine, err error) {
	defer func() {
		if r := recover(); r != nil {
			fp, ok := r.(fatalPanic)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("pebbleengine: open %s: %w (%s)", dir, ErrFailed, fp.msg)
		}
	}()
	switch opts.Sync {
	case core.SyncAlways, core.SyncInterval, core.SyncNever:
	default:
		return nil, fmt.Errorf("pebbleengine: open %s: unknown sync policy %d", dir, int(opts.Sync))
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	if opts.WALPrefill > 0 {
		fs = prefillFS{FS: fs, chunk: opts.WALPrefill}
	}
	interval := opts.SyncInterval
	if interval <= 0 {
		interval = DefaultSyncInterval
	}
	cacheSize := opts.CacheSize
	if cacheSize <= 0 {
		cacheSize = DefaultCacheSize
	}
	logger := slogLogger{l: opts.Logger}
	corruptions := new(atomic.Int64)
	po := &pebble.Options{
		FS:                 fs,
		CacheSize:          cacheSize,
		Cache:              opts.Cache.pebbleCache(),
		Logger:             logger,
		FormatMajorVersion: pebble.FormatNewest,
		// Level 0 is compacted into the base level once it holds
		// l0CompactionThreshold sublevels instead of Pebble's 4: see there.
		L0CompactionThreshold: l0CompactionThreshold,
		L0StopWritesThreshold: l0StopWritesThreshold,
		EventListener: &pebble.EventListener{
			// Pebble's default is Logger.Fatalf: a node would die on one bad
			// block. Log it, count it and let the read fail instead; the
			// error reaches the Store as core.ErrCorruption.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				corruptions.Add(1)
				logger.Errorf("on-disk corruption detected: %s", info)
			},
		},
	}
	// Bloom filters (10 bits per key, ~1 % false positives) on every
	// level: a point read skips the sstables that cannot hold its key
	// instead of seeking each level's index and data blocks. Without them
	// reads were most of a node's CPU under batches (docs/performance.md).
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("pebbleengine: open %s: %w", dir, wrapErr(err))
	}
	vsize := opts.ValueCacheSize
	if vsize == 0 {
		vsize = DefaultValueCacheSize
	}
	e := &Engine{db: db, dir: dir, policy: opts.Sync, interval: interval, corruptions: corruptions, vcache: newValueCache(vsize)}
	if e.vcache != nil {
		// Opened empty: the cache starts complete (see valueCache).
		empty, err := e.empty()
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("pebbleengine: open %s: %w", dir, err)
		}
		e.vcache.complete = empty
	}
	return e, nil
}

// empty reports whether the engine holds no key at all. Only an engine
// without sstables is looked at (an iterator then reads the memtables the
// WAL was replayed into, no block from disk); one with sstables counts as
// not empty.
func (e *Engine) empty() (bool, error) {
	if t := e.db.Metrics().Total(); t.TablesCount > 0 || t.VirtualTablesCount > 0 {
		return false, nil
	}
	it, err := e.db.NewIter(nil)
	if err != nil {
		return false, wrapErr(err)
	}
	found := it.First()
	if err := it.Close(); err != nil {
		return false, wrapErr(err)
	}
	return !found, nil
}

// SharedCache is a block cache several engines share: the memory budget
// for cached blocks (and memtables, which Pebble charges to it) of every
// engine opened with it. Pebble evicts with CLOCK-Pro, an approximation of
// least-recently-used that also weighs how often a block is used.
type SharedCache struct {
	c *pebble.Cache
}

// NewSharedCache makes a shared cache of size bytes; Close it after every
// engine using it is closed.
func NewSharedCache(size int64) *SharedCache { return &SharedCache{c: pebble.NewCache(size)} }

// Size is the cache's capacity in bytes.
func (s *SharedCache) Size() int64 { return s.c.MaxSize() }

// Close releases the creator's reference (engines hold their own).
func (s *SharedCache) Close() { s.c.Unref() }

func (s *SharedCache) pebbleCache() *pebble.Cache {
	if s == nil {
		return nil
	}
	return s.c
}

// Dir is the directory the engine was opened in.
func (e *Engine) Dir() string { return e.dir }

// Policy is the engine's sync policy.
func (e *Engine) Policy() core.SyncPolicy { return e.policy }

// SyncInterval is how often the owner should call Sync under
// core.SyncInterval.
func (e *Engine) SyncInterval() time.Duration { return e.interval }

// Metrics returns Pebble's metrics (LSM shape, WAL and cache figures) for
// the node's Prometheus exporter.
func (e *Engine) Metrics() *pebble.Metrics { return e.db.Metrics() }

// Corruptions is the number of on-disk corruptions (failed block
// checksums) Pebble has detected since Open.
func (e *Engine) Corruptions() int64 { return e.corruptions.Load() }

// Get returns the value of key or core.ErrNotFound.
func (e *Engine) Get(key []byte) (v []byte, err error) {
	defer e.recoverFatal(&err, "get")
	c := e.vcache
	if c == nil {
		return get(e.db, key)
	}
	v, gen, ok, absent := c.get(key)
	switch {
	case ok:
		return v, nil
	case absent:
		return nil, core.ErrNotFound
	}
	if v, err = get(e.db, key); err == nil {
		c.fill(key, v, gen)
	}
	return v, err
}

// Prefetch brings the value cache's entries for keys into the CPU caches
// (core.Prefetcher): a batch's Gets then do not each wait for memory. A
// hint; nothing changes. Without a value cache it does nothing.
func (e *Engine) Prefetch(keys [][]byte) {
	if c := e.vcache; c != nil {
		c.prefetch(keys)
	}
}

// NewIter iterates [lower, upper) in ascending key order.
func (e *Engine) NewIter(lower, upper []byte) core.Iterator { return newIter(e.db, lower, upper) }

// NewBatch starts an atomic group of writes.
func (e *Engine) NewBatch() core.Batch {
	return &batch{e: e, b: e.db.NewBatch(), policy: e.policy}
}

// NewSnapshot returns a consistent read-only view as of now.
func (e *Engine) NewSnapshot() core.Snapshot { return &snapshot{s: e.db.NewSnapshot()} }

// Sync makes every committed batch durable by writing an empty record to
// the WAL with fsync: the WAL is a single append-only log, so syncing it
// syncs every record before it.
func (e *Engine) Sync() (err error) {
	if err := e.check("sync"); err != nil {
		return err
	}
	defer e.recoverFatal(&err, "sync")
	if err := e.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("pebbleengine: sync: %w", wrapErr(err))
	}
	return nil
}

// Checkpoint writes an openable copy of the engine into dir (on the same
// FS; dir must not exist). The WAL is synced first, so the checkpoint holds
// every batch committed before the call. Sstables are hard-linked where the
// FS allows it, so a checkpoint is cheap; Open(dir) opens it.
func (e *Engine) Checkpoint(dir string) (err error) {
	if err := e.check("checkpoint"); err != nil {
		return err
	}
	defer e.recoverFatal(&err, "checkpoint")
	if err := e.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("pebbleengine: checkpoint to %s: %w", dir, wrapErr(err))
	}
	return nil
}

// Close releases the database. Batches committed without sync may be lost
// if the machine fails after Close; call Sync first to make them durable.
// Closing a failed engine releases what it can and returns ErrFailed.
func (e *Engine) Close() (err error) {
	defer e.recoverFatal(&err, "close")
	if cerr := e.db.Close(); cerr != nil {
		if ferr := e.check("close"); ferr != nil {
			return fmt.Errorf("%w; close: %v", ferr, cerr)
		}
		return fmt.Errorf("pebbleengine: close %s: %w", e.dir, wrapErr(cerr))
	}
	return e.check("close")
}

// getter and iterMaker are what *pebble.DB and *pebble.Snapshot share.
type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

type iterMaker interface {
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

func get(r getter, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, core.ErrNotFound
		}
		return nil, fmt.Errorf("pebbleengine: get %q: %w", key, wrapErr(err))
	}
	out := make([]byte, len(v))
	copy(out, v)
	if err := closer.Close(); err != nil {
		return nil, fmt.Errorf("pebbleengine: get %q: release: %w", key, wrapErr(err))
	}
	return out, nil
}

func newIter(r iterMaker, lower, upper []byte) core.Iterator {
	if upper != nil && bytes.Compare(lower, upper) >= 0 {
		// An empty range. Pebble requires lower < upper, and it would read
		// an empty (non-nil) upper bound as "unbounded".
		return &iter{}
	}
	if len(lower) == 0 {
		lower = nil // "" bounds nothing; Pebble's invariant checks reject empty seek keys
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: clone(lower), UpperBound: clone(upper)})
	if err != nil {
		return &iter{err: fmt.Errorf("pebbleengine: new iterator: %w", wrapErr(err))}
	}
	return &iter{it: it}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// wrapErr marks Pebble's corruption errors with core.ErrCorruption so that
// core.AsError reports them as CodeCorruption.
func wrapErr(err error) error {
	if err != nil && pebble.IsCorruptionError(err) && !errors.Is(err, core.ErrCorruption) {
		return &corruptionError{err: err}
	}
	return err
}

// corruptionError is a Pebble corruption error that also matches
// core.ErrCorruption.
type corruptionError struct{ err error }

func (c *corruptionError) Error() string { return c.err.Error() }
func (c *corruptionError) Unwrap() []error {
	return []error{c.err, core.ErrCorruption}
}

// snapshot is a core.Snapshot over a pebble.Snapshot.
type snapshot struct{ s *pebble.Snapshot }

func (s *snapshot) Get(key []byte) ([]byte, error) { return get(s.s, key) }
func (s *snapshot) NewIter(lower, upper []byte) core.Iterator {
	return newIter(s.s, lower, upper)
}
func (s *snapshot) Close() error {
	if err := s.s.Close(); err != nil {
		return fmt.Errorf("pebbleengine: close snapshot: %w", err)
	}
	return nil
}

// iter is a core.Iterator over a pebble.Iterator. A nil it means the
// iterator failed to open; err says why.
type iter struct {
	it  *pebble.Iterator
	err error
}

func (i *iter) First() bool {
	if i.it == nil {
		return false
	}
	return i.it.First()
}

func (i *iter) SeekGE(key []byte) bool {
	if i.it == nil {
		return false
	}
	if len(key) == 0 {
		return i.it.First() // every key is >= ""
	}
	return i.it.SeekGE(key)
}

func (i *iter) Valid() bool { return i.it != nil && i.it.Valid() }

func (i *iter) Next() bool {
	if i.it == nil {
		return false
	}
	return i.it.Next()
}

func (i *iter) Key() []byte { return i.it.Key() }

// Value returns the current value. If Pebble fails to read it (for example
// a value block fails its checksum) the iterator becomes invalid and Error
// reports the failure.
func (i *iter) Value() []byte {
	v, err := i.it.ValueAndErr()
	if err != nil {
		return nil
	}
	return v
}

func (i *iter) Error() error {
	if i.it == nil {
		return i.err
	}
	if err := i.it.Error(); err != nil {
		return fmt.Errorf("pebbleengine: iterate: %w", wrapErr(err))
	}
	return nil
}

func (i *iter) Close() error {
	if i.it == nil {
		return i.err
	}
	it := i.it
	i.it = nil
	if err := it.Close(); err != nil {
		i.err = fmt.Errorf("pebbleengine: close iterator: %w", wrapErr(err))
		return i.err
	}
	return nil
}

// batch is a core.Batch over a pebble.Batch. Pebble's batch methods only
// fail on misuse (a closed batch); the first such error is returned by
// Commit.
type batch struct {
	e      *Engine
	b      *pebble.Batch
	policy core.SyncPolicy
	n      int // operations added, including empty range deletions
	err    error
}

func (b *batch) note(err error) {
	if err != nil && b.err == nil {
		b.err = err
	}
}

func (b *batch) Set(key, value []byte) { b.n++; b.note(b.b.Set(key, value, nil)) }
func (b *batch) Delete(key []byte)     { b.n++; b.note(b.b.Delete(key, nil)) }

// DeleteRange deletes [start, end); an empty or inverted range is a no-op
// (Pebble requires start < end) that still counts in Len.
func (b *batch) DeleteRange(start, end []byte) {
	b.n++
	if bytes.Compare(start, end) < 0 {
		b.note(b.b.DeleteRange(start, end, nil))
	}
}

// Len is the number of operations added to the batch.
func (b *batch) Len() int { return b.n }

// Commit applies the batch atomically. It syncs the WAL when sync is set or
// the policy is core.SyncAlways.
func (b *batch) Commit(sync bool) (err error) {
	if err := b.e.check("commit"); err != nil {
		return err
	}
	defer b.e.recoverFatal(&err, "commit")
	if b.err != nil {
		return fmt.Errorf("pebbleengine: commit: %w", b.err)
	}
	wo := pebble.NoSync
	if sync || b.policy == core.SyncAlways {
		wo = pebble.Sync
	}
	if c := b.e.vcache; c != nil {
		// Whatever happens below (an error, a Fatalf panic), the cache
		// must not keep a value this batch may have replaced.
		committed := false
		defer func() {
			if committed {
				c.committed(b.b.Reader())
			} else {
				c.clear()
			}
		}()
		if err := b.b.Commit(wo); err != nil {
			return fmt.Errorf("pebbleengine: commit %d ops: %w", b.b.Count(), wrapErr(err))
		}
		committed = true
		return nil
	}
	if err := b.b.Commit(wo); err != nil {
		return fmt.Errorf("pebbleengine: commit %d ops: %w", b.b.Count(), wrapErr(err))
	}
	return nil
}

func (b *batch) Close() {
	if b.b != nil {
		_ = b.b.Close()
		b.b = nil
	}
}

// slogLogger adapts *slog.Logger to pebble.Logger; a nil logger discards
// everything. Fatalf panics with a fatalPanic (Pebble never expects Fatalf
// to return): on the caller's goroutine the engine's entry points recover
// it as ErrFailed; on one of Pebble's background goroutines it ends the
// process, as Pebble's own default logger would.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Infof(format string, args ...any) {
	if s.l != nil {
		s.l.Info(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (s slogLogger) Errorf(format string, args ...any) {
	if s.l != nil {
		s.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (s slogLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if s.l != nil {
		s.l.Error(msg, "component", "pebble", "fatal", true)
	}
	panic(fatalPanic{msg: msg})
}
