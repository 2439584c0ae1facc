package raft

import (
	"fmt"
	"unsafe"

	"github.com/dialkv/dialkv/core"
)

// updateBatch gathers the engine writes of all the entries of one
// Dragonboat Update into one engine batch, keeping only the last write of
// each key: one Pebble commit per Update instead of one per entry, and the
// keys every entry rewrites (the applied record, the proposer's
// deduplication record, the Store's version counter) go into the memtable
// and WAL once per Update instead of once per entry. Dragonboat hands a
// follower, and a leader under load, tens of entries per Update.
//
// Ordering rules:
//   - Each commit the state machine makes (the Store's, with the applied
//     record and the deduplication state: indexBatch.commit) is recorded
//     (recBatch) and merged into the pending writes: a key's pending write
//     is its latest. Every commit is a consistent state (entries whole, the
//     applied record and deduplication state matching), so the pending
//     writes are always the state after the latest commit, and the one
//     engine batch that carries them is what the per-entry commits would
//     have left. What a crash keeps is a prefix of whole flushes (Pebble
//     recovers a prefix of its batches), whose applied record Open reports.
//   - Pending writes are kept in first-write order, so the engine batch is
//     the same for the same entries (the simulator's runs repeat).
//   - Reads during the Update see the earlier commits: a point read looks at
//     the pending writes before the engine; an iterator first commits them
//     (flush), after which the engine holds everything.
//   - A commit with a range deletion (which the pending writes cannot
//     represent: a snapshot restore, a forgotten proposer's replies), or a
//     synced one, is committed at once in one engine batch with the
//     pending writes before it, its own writes after them in order.
//   - Every engine batch committed also carries the writes of the extra
//     writer (the deduplication state's reply chunks, dedup.go
//     writeChunks), after the batch's own: they match the state after the
//     latest commit, which the batch holds. So a commit with a range
//     deletion goes in one engine batch with the pending writes before it
//     (the same writes in the same order as two batches, and the extra
//     writes then cannot land in a batch without the commit they match).
//   - The pending writes are committed (flush) at the end of the Update,
//     before Dragonboat sees its results: nothing is acknowledged, nor read
//     by a Lookup, before it is in the engine.
type updateBatch struct {
	eng   core.Engine
	extra extraWriter    // writes added to every engine batch (nil: none)
	ops   []recOp        // pending writes, one per key, in first-write order
	idx   map[string]int // key -> its write in ops; the keys are views of arena (arenaString)
	arena []byte         // backs the keys and values recorded since the last flush
	open  int            // recBatches neither committed nor closed (their ops are in arena)
	err   error          // the first failed flush (the Update fails with it)
	// free holds emptied op slices of committed or closed recBatches, for
	// the next ones: a recBatch's ops are copied into ops by apply, so its
	// slice is free once apply returns (saves the slice's growth per
	// commit).
	free [][]recOp
}

// extraWriter adds writes to the engine batches of an updateBatch.
type extraWriter interface {
	dedupChunksPending() bool
	writeDedupChunks(b core.Batch)
}

func newUpdateBatch(eng core.Engine, extra extraWriter) *updateBatch {
	return &updateBatch{eng: eng, extra: extra, idx: map[string]int{}}
}

// get returns key's pending write (ok false: none); the value is the
// caller's.
func (u *updateBatch) get(key []byte) (v []byte, del, ok bool) {
	i, ok := u.idx[string(key)]
	if !ok {
		return nil, false, false
	}
	w := u.ops[i]
	if w.kind == recDelete {
		return nil, true, true
	}
	return append([]byte{}, w.val...), false, true
}

// copy returns a copy of b in the arena (valid until the next flush).
func (u *updateBatch) copy(b []byte) []byte {
	if len(u.arena)+len(b) > cap(u.arena) {
		// A new chunk; the old one stays referenced by what it backs.
		u.arena = make([]byte, 0, max(64<<10, len(b)))
	}
	n := len(u.arena)
	u.arena = append(u.arena, b...)
	return u.arena[n:len(u.arena):len(u.arena)]
}

// record starts a batch whose Commit merges its writes into u, in rb (the
// caller's allocation: indexEngine.NewBatch allocates it with its wrapper).
func (u *updateBatch) record(rb *recBatch) *recBatch {
	u.open++
	*rb = recBatch{u: u}
	if n := len(u.free); n > 0 {
		rb.ops, u.free[n-1] = u.free[n-1], nil
		u.free = u.free[:n-1]
	}
	return rb
}

// recycle keeps ops's array for a later recBatch (record).
func (u *updateBatch) recycle(ops []recOp) {
	if cap(ops) == 0 || len(u.free) >= maxFreeOps {
		return
	}
	clear(ops) // the arena's chunks are not kept alive by a free slice
	u.free = append(u.free, ops[:0])
}

// maxFreeOps bounds updateBatch.free: an Update has one or two recBatches
// open at a time (the Store's held commit and the final record).
const maxFreeOps = 4

// arenaString returns the bytes of b, a key copied into the arena, as a
// string without copying them (the map key of idx). It is valid while the
// key's write is in idx: the arena is append-only until drop, which
// clears idx before the arena is reused.
func arenaString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// apply merges a committed recBatch's writes into the pending writes; a
// batch with a range deletion, or a synced one, is committed now instead.
func (u *updateBatch) apply(ops []recOp, sync bool) error {
	if u.err != nil {
		return u.err
	}
	ranged := false
	for _, o := range ops {
		ranged = ranged || o.kind == recDeleteRange
	}
	if ranged || sync {
		// One engine batch: the pending writes, then ops in order.
		err := u.commit(append(u.ops, ops...), sync)
		u.drop()
		return err
	}
	for _, o := range ops {
		if i, ok := u.idx[string(o.key)]; ok {
			u.ops[i] = o
			continue
		}
		u.idx[arenaString(o.key)] = len(u.ops)
		u.ops = append(u.ops, o)
	}
	return nil
}

// flush commits the pending writes, if any.
func (u *updateBatch) flush() error {
	if u.err != nil {
		return u.err
	}
	if len(u.ops) == 0 && (u.extra == nil || !u.extra.dedupChunksPending()) {
		return nil
	}
	err := u.commit(u.ops, false)
	u.drop()
	return err
}

// commit writes ops, in order, as one engine batch.
func (u *updateBatch) commit(ops []recOp, sync bool) error {
	b := u.eng.NewBatch()
	defer b.Close()
	for _, o := range ops {
		switch o.kind {
		case recSet:
			b.Set(o.key, o.val)
		case recDelete:
			b.Delete(o.key)
		case recDeleteRange:
			b.DeleteRange(o.key, o.val)
		}
	}
	if u.extra != nil {
		u.extra.writeDedupChunks(b)
	}
	if err := b.Commit(sync); err != nil {
		u.err = fmt.Errorf("raft: commit the update's batch (%d ops): %w", len(ops), err)
		return u.err
	}
	return nil
}

// drop forgets the pending writes. The engine batch copied them, so the
// arena's last chunk is reused, unless a recBatch still open (a held
// commit) has its writes there.
func (u *updateBatch) drop() {
	clear(u.ops)
	u.ops = u.ops[:0]
	clear(u.idx)
	if u.open == 0 {
		u.arena = u.arena[:0]
	} else {
		u.arena = nil
	}
}

// reset drops anything pending (after a failed Update) and the error.
func (u *updateBatch) reset() {
	u.open = 1 // drop must not reuse the arena: batches may still be open
	u.drop()
	u.open, u.err = 0, nil
}

type recKind uint8

const (
	recSet recKind = iota
	recDelete
	recDeleteRange
)

// recOp is one recorded write; key and val are copies in the
// updateBatch's arena (val is the end key of a range deletion).
type recOp struct {
	kind     recKind
	key, val []byte
}

// recBatch is a core.Batch that records its writes; Commit merges them into
// the Update's batch, Close without Commit drops them.
type recBatch struct {
	u      *updateBatch
	ops    []recOp
	closed bool // committed or closed: no longer counted in u.open
}

var _ core.Batch = (*recBatch)(nil)

func (b *recBatch) Set(key, value []byte) {
	b.ops = append(b.ops, recOp{kind: recSet, key: b.u.copy(key), val: b.u.copy(value)})
}

func (b *recBatch) Delete(key []byte) {
	b.ops = append(b.ops, recOp{kind: recDelete, key: b.u.copy(key)})
}

func (b *recBatch) DeleteRange(start, end []byte) {
	b.ops = append(b.ops, recOp{kind: recDeleteRange, key: b.u.copy(start), val: b.u.copy(end)})
}

// Commit merges the writes into the Update's batch (see updateBatch.apply).
func (b *recBatch) Commit(sync bool) error {
	ops := b.ops
	b.ops = nil
	b.done()
	err := b.u.apply(ops, sync)
	b.u.recycle(ops) // apply copied the ops (into u.ops or an engine batch)
	return err
}

func (b *recBatch) Len() int { return len(b.ops) }

func (b *recBatch) Close() {
	b.u.recycle(b.ops)
	b.ops = nil
	b.done()
}

func (b *recBatch) done() {
	if !b.closed {
		b.closed = true
		b.u.open = max(b.u.open-1, 0)
	}
}
