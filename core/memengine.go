package core

import (
	"bytes"
	"errors"
	"sync"

	"github.com/google/btree"
)

// memItem is one key/value pair of a MemEngine. Items are immutable once in
// a tree, so trees cloned for snapshots can share them.
type memItem struct {
	key []byte
	val []byte
}

func memLess(a, b memItem) bool { return bytes.Compare(a.key, b.key) < 0 }

const memDegree = 32

// MemEngine is an in-memory Engine: a copy-on-write B-tree
// (github.com/google/btree) whose O(1) clones give snapshots, iterators and
// the crash model. It is safe for concurrent use.
//
// Crash model: the engine remembers the state as of the last Sync (or the
// last Commit(sync=true)); SyncedClone returns that state, which is what
// would survive a crash. Commits without sync are lost by a crash.
type MemEngine struct {
	mu     sync.Mutex
	tree   *btree.BTreeG[memItem]
	synced *btree.BTreeG[memItem]
	closed bool
}

var _ Engine = (*MemEngine)(nil)

// NewMemEngine returns an empty memory engine.
func NewMemEngine() *MemEngine {
	t := btree.NewG[memItem](memDegree, memLess)
	return &MemEngine{tree: t, synced: t.Clone()}
}

// SyncedClone returns a new engine holding only the state as of the last
// Sync or synced commit: what survives a crash.
func (m *MemEngine) SyncedClone() *MemEngine {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.synced.Clone()
	return &MemEngine{tree: t, synced: t.Clone()}
}

// Len returns the number of keys in the engine.
func (m *MemEngine) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tree.Len()
}

// Get implements Reader.
func (m *MemEngine) Get(key []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed
	}
	return memGet(m.tree, key)
}

func memGet(t *btree.BTreeG[memItem], key []byte) ([]byte, error) {
	it, ok := t.Get(memItem{key: key})
	if !ok {
		return nil, ErrNotFound
	}
	return bytes.Clone(it.val), nil
}

var errClosed = errors.New("core: engine closed")

// NewIter implements Reader. The iterator sees the state as of its creation.
func (m *MemEngine) NewIter(lower, upper []byte) Iterator {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return &memIter{err: errClosed}
	}
	return newMemIter(m.tree.Clone(), lower, upper)
}

// NewBatch implements Engine.
func (m *MemEngine) NewBatch() Batch { return &memBatch{m: m} }

// NewSnapshot implements Engine.
func (m *MemEngine) NewSnapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &memSnapshot{tree: m.tree.Clone()}
}

// Sync implements Engine: everything committed so far survives a crash.
func (m *MemEngine) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	m.synced = m.tree.Clone()
	return nil
}

// Checkpoint implements Engine; a memory engine has no files to copy.
func (m *MemEngine) Checkpoint(dir string) error {
	return errors.New("core: the memory engine cannot checkpoint to a directory (use Store.SaveSnapshot)")
}

// Close implements Engine.
func (m *MemEngine) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

type memSnapshot struct {
	tree *btree.BTreeG[memItem]
}

func (s *memSnapshot) Get(key []byte) ([]byte, error) { return memGet(s.tree, key) }
func (s *memSnapshot) NewIter(lower, upper []byte) Iterator {
	return newMemIter(s.tree.Clone(), lower, upper)
}
func (s *memSnapshot) Close() error { return nil }

type memOp struct {
	kind       uint8 // 0 set, 1 delete, 2 delete range
	key, value []byte
}

type memBatch struct {
	m   *MemEngine
	ops []memOp
}

func (b *memBatch) Set(key, value []byte) {
	b.ops = append(b.ops, memOp{kind: 0, key: bytes.Clone(key), value: bytes.Clone(value)})
}
func (b *memBatch) Delete(key []byte) {
	b.ops = append(b.ops, memOp{kind: 1, key: bytes.Clone(key)})
}
func (b *memBatch) DeleteRange(start, end []byte) {
	b.ops = append(b.ops, memOp{kind: 2, key: bytes.Clone(start), value: bytes.Clone(end)})
}
func (b *memBatch) Len() int { return len(b.ops) }
func (b *memBatch) Close()   { b.ops = nil }

func (b *memBatch) Commit(sync bool) error {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	for _, op := range b.ops {
		switch op.kind {
		case 0:
			if op.value == nil {
				op.value = []byte{}
			}
			m.tree.ReplaceOrInsert(memItem{key: op.key, val: op.value})
		case 1:
			m.tree.Delete(memItem{key: op.key})
		case 2:
			var doomed []memItem
			visit := func(it memItem) bool {
				if op.value != nil && bytes.Compare(it.key, op.value) >= 0 {
					return false
				}
				doomed = append(doomed, it)
				return true
			}
			if op.key == nil {
				m.tree.Ascend(visit)
			} else {
				m.tree.AscendGreaterOrEqual(memItem{key: op.key}, visit)
			}
			for _, it := range doomed {
				m.tree.Delete(it)
			}
		}
	}
	b.ops = nil
	if sync {
		m.synced = m.tree.Clone()
	}
	return nil
}

// memIter walks a private clone of the tree, fetching items in chunks.
type memIter struct {
	tree         *btree.BTreeG[memItem]
	lower, upper []byte
	buf          []memItem
	pos          int
	more         bool // the tree may hold items after buf
	err          error
}

const memIterChunk = 64

func newMemIter(t *btree.BTreeG[memItem], lower, upper []byte) *memIter {
	return &memIter{tree: t, lower: bytes.Clone(lower), upper: bytes.Clone(upper)}
}

// fill loads up to memIterChunk items >= from (> from when exclusive).
func (it *memIter) fill(from []byte, exclusive bool) {
	it.buf = it.buf[:0]
	it.pos = 0
	it.more = false
	visit := func(x memItem) bool {
		if exclusive && bytes.Equal(x.key, from) {
			return true
		}
		if it.upper != nil && bytes.Compare(x.key, it.upper) >= 0 {
			return false
		}
		if len(it.buf) == memIterChunk {
			it.more = true
			return false
		}
		it.buf = append(it.buf, x)
		return true
	}
	if from == nil {
		it.tree.Ascend(visit)
	} else {
		it.tree.AscendGreaterOrEqual(memItem{key: from}, visit)
	}
}

func (it *memIter) First() bool {
	if it.err != nil {
		return false
	}
	it.fill(it.lower, false)
	return it.Valid()
}

func (it *memIter) SeekGE(key []byte) bool {
	if it.err != nil {
		return false
	}
	if it.lower != nil && bytes.Compare(key, it.lower) < 0 {
		key = it.lower
	}
	it.fill(key, false)
	return it.Valid()
}

func (it *memIter) Valid() bool { return it.err == nil && it.pos < len(it.buf) }

func (it *memIter) Next() bool {
	if !it.Valid() {
		return false
	}
	it.pos++
	if it.pos == len(it.buf) && it.more {
		last := it.buf[len(it.buf)-1].key
		it.fill(last, true)
	}
	return it.Valid()
}

func (it *memIter) Key() []byte   { return it.buf[it.pos].key }
func (it *memIter) Value() []byte { return it.buf[it.pos].val }
func (it *memIter) Error() error  { return it.err }
func (it *memIter) Close() error {
	it.buf = nil
	it.tree = nil
	return it.err
}
