package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"

	"github.com/google/btree"
)

// MemEngine is an in-memory Engine built for a small footprint per key. It
// is a small log-structured merge tree with three levels:
//
//   - recent writes go to a mutable copy-on-write B-tree
//     (github.com/google/btree), tombstones included;
//   - older data lives in two immutable packed runs, L0 and L1: entries
//     sorted by key, keys prefix-compressed against their predecessor,
//     lengths as varints, a restart point (full key) every 16 entries, and
//     a sparse index holding only the restart offsets.
//
// When the B-tree reaches 4096 entries (F) it is merged into a new L0
// (tombstones kept, they may hide L1 entries); when L0 reaches
// sqrt(2·F·|L1|) entries it is merged into a new L1 (tombstones dropped).
// That L0 size minimises the amortised rewriting: an entry is re-encoded
// about sqrt(2·|L1|/F) times on its way down (≈ 22 at 1M keys, ≈ 70 at
// 10M): fine for the simulator's and tests' data sizes, not a substitute
// for Pebble's many levels. A packed entry costs 3 bytes beyond its key
// and value bytes, minus what prefix compression saves; a B-tree entry
// costs about 100, but the B-tree never holds more than F. Runs are immutable and the B-tree clones in O(1), so
// snapshots, iterators and the crash model are cheap: each is a (B-tree
// clone, L0, L1) triple.
//
// Crash model: the engine remembers the state as of the last Sync (or the
// last Commit(sync=true)); SyncedClone returns that state, which is what
// would survive a crash. Commits without sync are lost by a crash. The
// synced state is kept as an undo log: for every B-tree write since the
// last sync, the item it replaced (or that there was none). A sync only
// empties the log, so the usual commit-then-sync cycle clones nothing and
// the B-tree is mutated in place, never copied on write; SyncedClone
// applies the log backwards to a clone. Before the B-tree is merged into
// L0, and when the log grows past memUndoMax entries (an engine nobody
// syncs), the synced state is materialised as a clone instead and the log
// is dropped until the next sync.
//
// MemEngine is safe for concurrent use.
type MemEngine struct {
	mu  sync.Mutex
	cur memState
	// synced is the state as of the last sync when explicit; otherwise
	// that state is cur with undo applied backwards.
	synced   memState
	explicit bool
	undo     []memUndo
	undoMax  int       // 0: memUndoMax (tests set less)
	spare    *memBatch // a closed batch, reused by NewBatch
	closed   bool
}

// memUndo is one undo-log entry: the B-tree item a write replaced or
// removed, or (had false) that the key was not in the B-tree.
type memUndo struct {
	key  []byte
	prev memItem
	had  bool
}

// memUndoMax bounds the undo log.
const memUndoMax = 4096

// memState is one consistent version of the engine's contents.
type memState struct {
	mem    *btree.BTreeG[memItem]
	l0, l1 *packedRun
}

func (s memState) clone() memState { return memState{mem: s.mem.Clone(), l0: s.l0, l1: s.l1} }

// memItem is one B-tree entry; tomb marks a deletion that hides the run's
// entry. Items are immutable once in a tree. pfx is keyPrefix(key): every
// item is made by newItem, which sets it.
type memItem struct {
	key  []byte
	val  []byte
	pfx  uint64
	tomb bool
}

// newItem makes the B-tree item of key (a search key when val is nil and
// tomb false).
func newItem(key, val []byte, tomb bool) memItem {
	return memItem{key: key, val: val, pfx: keyPrefix(key), tomb: tomb}
}

// keyPrefix is the first 8 bytes of key as a big-endian number, shorter
// keys padded with zeros. Prefixes order as their keys do where they
// differ (a zero pad sorts a key before every key it is a proper prefix
// of), so memLess compares whole keys only when the prefixes are equal.
func keyPrefix(key []byte) uint64 {
	if len(key) >= 8 {
		return binary.BigEndian.Uint64(key)
	}
	var p uint64
	for i, c := range key {
		p |= uint64(c) << (56 - 8*i)
	}
	return p
}

// memLess orders items by key: by their prefixes first, an integer
// comparison that decides most steps of a B-tree search without a call to
// bytes.Compare (about 7 % of the simulator's CPU went to the searches).
// Equal prefixes of two keys of at most 8 bytes mean that the shorter is
// the longer's start followed by zeros, so the lengths decide (equal
// lengths: equal keys), as for a B-tree's last step on the key it finds.
func memLess(a, b memItem) bool {
	if a.pfx != b.pfx {
		return a.pfx < b.pfx
	}
	if len(a.key) <= 8 && len(b.key) <= 8 {
		return len(a.key) < len(b.key)
	}
	return bytes.Compare(a.key, b.key) < 0
}

const (
	memDegree       = 16
	memFlushAt      = 4096 // B-tree entries that trigger a merge into L0
	runRestartEvery = 16
)

var _ Engine = (*MemEngine)(nil)

func newMemTree() *btree.BTreeG[memItem] { return btree.NewG[memItem](memDegree, memLess) }

// NewMemEngine returns an empty memory engine.
func NewMemEngine() *MemEngine {
	return &MemEngine{cur: memState{mem: newMemTree(), l0: &packedRun{}, l1: &packedRun{}}}
}

// SyncedClone returns a new engine holding only the state as of the last
// Sync or synced commit: what survives a crash.
func (m *MemEngine) SyncedClone() *MemEngine {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &MemEngine{cur: m.syncedLocked()}
}

// syncedLocked returns a private copy of the synced state.
func (m *MemEngine) syncedLocked() memState {
	if m.explicit {
		return m.synced.clone()
	}
	st := m.cur.clone()
	for i := len(m.undo) - 1; i >= 0; i-- {
		u := &m.undo[i]
		if u.had {
			st.mem.ReplaceOrInsert(u.prev)
		} else {
			st.mem.Delete(newItem(u.key, nil, false))
		}
	}
	return st
}

// materializeLocked keeps the synced state as an explicit clone from now
// on (until the next sync), so that cur may change in ways the undo log
// cannot describe.
func (m *MemEngine) materializeLocked() {
	if m.explicit {
		return
	}
	if len(m.undo) > 0 {
		m.synced = m.syncedLocked()
		m.explicit = true
	}
	clear(m.undo)
	m.undo = m.undo[:0]
}

// markSyncedLocked records that everything committed so far is synced.
func (m *MemEngine) markSyncedLocked() {
	m.synced = memState{}
	m.explicit = false
	if cap(m.undo) > 4*memUndoMax {
		m.undo = nil
		return
	}
	clear(m.undo)
	m.undo = m.undo[:0]
}

// putLocked writes one B-tree item, logging what it replaced.
func (m *MemEngine) putLocked(it memItem) {
	if !m.explicit {
		limit := m.undoMax
		if limit == 0 {
			limit = memUndoMax
		}
		if len(m.undo) >= limit {
			m.materializeLocked() // before this write: it is not synced
		}
	}
	var prev memItem
	var had bool
	if it.tomb && !m.inRunsLocked(it.key) {
		// Nothing below to hide: drop the key instead of keeping a
		// tombstone (keys written then deleted, such as logs, leave
		// nothing behind).
		prev, had = m.cur.mem.Delete(it)
	} else {
		prev, had = m.cur.mem.ReplaceOrInsert(it)
	}
	if !m.explicit {
		m.undo = append(m.undo, memUndo{key: it.key, prev: prev, had: had})
	}
}

// inRunsLocked reports whether L0 or L1 holds key (a value or a tombstone).
func (m *MemEngine) inRunsLocked(key []byte) bool {
	for _, r := range [2]*packedRun{m.cur.l0, m.cur.l1} {
		if _, _, ok := r.get(key); ok {
			return true
		}
	}
	return false
}

// Len returns the number of keys in the engine.
func (m *MemEngine) Len() int {
	it := m.NewIter(nil, nil)
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n
}

// Compact merges everything into L1 now.
func (m *MemEngine) Compact() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flushLocked()
	m.cur.l1 = mergeRun(&runIter{r: m.cur.l0}, m.cur.l1, false)
	m.cur.l0 = &packedRun{}
}

// flushLocked merges the B-tree into L0.
func (m *MemEngine) flushLocked() {
	m.materializeLocked() // the undo log describes the B-tree only
	items := make([]memItem, 0, m.cur.mem.Len())
	m.cur.mem.Ascend(func(it memItem) bool { items = append(items, it); return true })
	m.cur.l0 = mergeRun(&sliceSrc{items: items}, m.cur.l0, true)
	m.cur.mem = newMemTree()
}

// maybeCompactLocked applies the merge policy after a commit.
func (m *MemEngine) maybeCompactLocked() {
	if m.cur.mem.Len() < memFlushAt {
		return
	}
	m.flushLocked()
	if l0 := m.cur.l0.n; l0 >= memFlushAt && l0*l0 >= 2*memFlushAt*m.cur.l1.n {
		m.cur.l1 = mergeRun(&runIter{r: m.cur.l0}, m.cur.l1, false)
		m.cur.l0 = &packedRun{}
	}
}

var errClosed = errors.New("core: engine closed")

// Get implements Reader.
func (m *MemEngine) Get(key []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock() // the B-tree is mutated in place by commits
	if m.closed {
		return nil, errClosed
	}
	return m.cur.get(key)
}

func (s memState) get(key []byte) ([]byte, error) {
	if it, ok := s.mem.Get(newItem(key, nil, false)); ok {
		if it.tomb {
			return nil, ErrNotFound
		}
		return bytes.Clone(it.val), nil
	}
	for _, r := range []*packedRun{s.l0, s.l1} {
		if v, tomb, ok := r.get(key); ok {
			if tomb {
				return nil, ErrNotFound
			}
			return bytes.Clone(v), nil
		}
	}
	return nil, ErrNotFound
}

// NewIter implements Reader. The iterator sees the state as of its creation.
func (m *MemEngine) NewIter(lower, upper []byte) Iterator {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return &memIter{err: errClosed}
	}
	return newMemIter(m.cur.clone(), lower, upper)
}

// NewBatch implements Engine.
// A closed batch is kept and handed out again (using a batch after Close
// is a bug).
func (m *MemEngine) NewBatch() Batch {
	m.mu.Lock()
	b := m.spare
	m.spare = nil
	m.mu.Unlock()
	if b == nil {
		b = &memBatch{}
		b.ops = b.buf[:0]
	}
	b.m = m
	return b
}

// NewSnapshot implements Engine.
func (m *MemEngine) NewSnapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &memSnapshot{st: m.cur.clone()}
}

// Sync implements Engine: everything committed so far survives a crash.
func (m *MemEngine) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	m.markSyncedLocked()
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

type memSnapshot struct{ st memState }

func (s *memSnapshot) Get(key []byte) ([]byte, error) { return s.st.get(key) }
func (s *memSnapshot) NewIter(lower, upper []byte) Iterator {
	return newMemIter(s.st.clone(), lower, upper)
}
func (s *memSnapshot) Close() error { return nil }

type memOp struct {
	kind       uint8 // 0 set, 1 delete, 2 delete range
	key, value []byte
}

type memBatch struct {
	m   *MemEngine
	ops []memOp
	buf [4]memOp // backs ops for small batches: one allocation per batch
}

func (b *memBatch) Set(key, value []byte) {
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	b.ops = append(b.ops, memOp{kind: 0, key: bytes.Clone(key), value: v})
}
func (b *memBatch) setOwned(key, value []byte) {
	if value == nil {
		value = []byte{}
	}
	b.ops = append(b.ops, memOp{kind: 0, key: key, value: value})
}

var _ ownedSetter = (*memBatch)(nil)

func (b *memBatch) deleteOwned(key []byte) {
	b.ops = append(b.ops, memOp{kind: 1, key: key})
}
func (b *memBatch) Delete(key []byte) {
	b.ops = append(b.ops, memOp{kind: 1, key: bytes.Clone(key)})
}
func (b *memBatch) DeleteRange(start, end []byte) {
	b.ops = append(b.ops, memOp{kind: 2, key: bytes.Clone(start), value: bytes.Clone(end)})
}
func (b *memBatch) Len() int { return len(b.ops) }
func (b *memBatch) Close() {
	m := b.m
	if m == nil {
		return // closed already
	}
	b.m = nil
	clear(b.ops)
	if cap(b.ops) > 64 {
		b.ops = b.buf[:0] // do not keep a large batch's array
	}
	b.ops = b.ops[:0]
	m.mu.Lock()
	if m.spare == nil {
		m.spare = b
	}
	m.mu.Unlock()
}

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
			m.putLocked(newItem(op.key, op.value, false))
		case 1:
			m.putLocked(newItem(op.key, nil, true))
		case 2:
			it := newMemIter(m.cur.clone(), op.key, op.value)
			var doomed [][]byte
			for it.First(); it.Valid(); it.Next() {
				doomed = append(doomed, bytes.Clone(it.Key()))
			}
			for _, k := range doomed {
				m.putLocked(newItem(k, nil, true))
			}
		}
	}
	clear(b.ops)
	b.ops = b.ops[:0]
	m.maybeCompactLocked()
	if sync {
		m.markSyncedLocked()
	}
	return nil
}

// packedRun is an immutable sorted run. Entry encoding:
//
//	uvarint shared  (bytes shared with the previous key; 0 at restarts)
//	uvarint unshared
//	uvarint len(value)+1, or 0 for a tombstone
//	key[shared:] value
type packedRun struct {
	data     []byte
	restarts []int // offsets of every runRestartEvery-th entry
	n        int
}

type runBuilder struct {
	r       packedRun
	lastKey []byte
}

func (b *runBuilder) add(key, val []byte, tomb bool) {
	shared := 0
	if b.r.n%runRestartEvery == 0 {
		b.r.restarts = append(b.r.restarts, len(b.r.data))
	} else {
		for shared < len(key) && shared < len(b.lastKey) && key[shared] == b.lastKey[shared] {
			shared++
		}
	}
	d := b.r.data
	d = binary.AppendUvarint(d, uint64(shared))
	d = binary.AppendUvarint(d, uint64(len(key)-shared))
	if tomb {
		d = binary.AppendUvarint(d, 0)
	} else {
		d = binary.AppendUvarint(d, uint64(len(val))+1)
	}
	d = append(d, key[shared:]...)
	b.r.data = append(d, val...)
	b.lastKey = append(b.lastKey[:0], key...)
	b.r.n++
}

// kvSource is a sorted stream of entries: a run or a slice of B-tree items.
type kvSource interface {
	ok() bool
	k() []byte
	v() []byte
	dead() bool // a tombstone
	advance()
}

type sliceSrc struct {
	items []memItem
	i     int
}

func (s *sliceSrc) ok() bool   { return s.i < len(s.items) }
func (s *sliceSrc) k() []byte  { return s.items[s.i].key }
func (s *sliceSrc) v() []byte  { return s.items[s.i].val }
func (s *sliceSrc) dead() bool { return s.items[s.i].tomb }
func (s *sliceSrc) advance()   { s.i++ }

func (it *runIter) ok() bool   { return it.valid }
func (it *runIter) k() []byte  { return it.key }
func (it *runIter) v() []byte  { return it.val }
func (it *runIter) dead() bool { return it.tomb }
func (it *runIter) advance()   { it.next() }

// mergeRun builds a new run from newer overlaid on older; tombstones are
// kept when keepTombs (a lower level may hold the key), dropped otherwise.
func mergeRun(newer kvSource, older *packedRun, keepTombs bool) *packedRun {
	if ri, ok := newer.(*runIter); ok {
		ri.first()
	}
	var b runBuilder
	b.r.data = make([]byte, 0, len(older.data)+len(older.data)/8+memFlushAt*64)
	oi := runIter{r: older}
	oi.first()
	for newer.ok() {
		for oi.valid && bytes.Compare(oi.key, newer.k()) < 0 {
			b.add(oi.key, oi.val, oi.tomb)
			oi.next()
		}
		if oi.valid && bytes.Equal(oi.key, newer.k()) {
			oi.next()
		}
		if !newer.dead() || keepTombs {
			b.add(newer.k(), newer.v(), newer.dead())
		}
		newer.advance()
	}
	for ; oi.valid; oi.next() {
		if !oi.tomb || keepTombs {
			b.add(oi.key, oi.val, oi.tomb)
		}
	}
	b.r.data = bytes.Clone(b.r.data) // drop the spare capacity
	b.r.restarts = append([]int(nil), b.r.restarts...)
	return &b.r
}

// runIter walks a packed run. key is reconstructed in a private buffer;
// val points into the immutable run.
type runIter struct {
	r     *packedRun
	off   int // offset of the next entry
	key   []byte
	val   []byte
	tomb  bool
	valid bool
}

func (it *runIter) decodeAt(off int) {
	d := it.r.data
	if off >= len(d) {
		it.valid = false
		return
	}
	shared, n1 := binary.Uvarint(d[off:])
	off += n1
	unshared, n2 := binary.Uvarint(d[off:])
	off += n2
	vlen1, n3 := binary.Uvarint(d[off:])
	off += n3
	it.key = append(it.key[:shared], d[off:off+int(unshared)]...)
	off += int(unshared)
	it.tomb = vlen1 == 0
	vlen := 0
	if !it.tomb {
		vlen = int(vlen1 - 1)
	}
	it.val = d[off : off+vlen : off+vlen]
	it.off = off + vlen
	it.valid = true
}

func (it *runIter) first() { it.key = it.key[:0]; it.decodeAt(0) }
func (it *runIter) next()  { it.decodeAt(it.off) }

// seekGE positions at the first entry >= target.
func (it *runIter) seekGE(target []byte) {
	rs := it.r.restarts
	// Last restart whose key <= target.
	lo, hi := 0, len(rs)
	for lo < hi {
		mid := (lo + hi) / 2
		it.key = it.key[:0]
		it.decodeAt(rs[mid])
		if bytes.Compare(it.key, target) <= 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		it.first()
		return
	}
	it.key = it.key[:0]
	it.decodeAt(rs[lo-1])
	for it.valid && bytes.Compare(it.key, target) < 0 {
		it.next()
	}
}

// get finds key in the run: its value, or a tombstone.
func (r *packedRun) get(key []byte) (val []byte, tomb, ok bool) {
	if r.n == 0 {
		return nil, false, false
	}
	var buf [128]byte
	it := runIter{r: r, key: buf[:0]}
	it.seekGE(key)
	if it.valid && bytes.Equal(it.key, key) {
		return it.val, it.tomb, true
	}
	return nil, false, false
}

// memIter merges a private B-tree clone (read in chunks) with L0 and L1;
// on equal keys the newer level wins.
type memIter struct {
	st           memState
	lower, upper []byte
	// B-tree side
	buf    []memItem
	pos    int
	more   bool
	bValid bool
	// run side, newest first
	ris [2]runIter
	// current merged entry
	key, val []byte
	keyBuf   []byte
	valid    bool
	err      error
}

const memIterChunk = 64

func newMemIter(st memState, lower, upper []byte) *memIter {
	it := &memIter{st: st, lower: bytes.Clone(lower), upper: bytes.Clone(upper)}
	if st.mem != nil {
		it.ris = [2]runIter{{r: st.l0}, {r: st.l1}}
	}
	return it
}

// fill loads up to memIterChunk B-tree items >= from (> from when exclusive).
func (it *memIter) fill(from []byte, exclusive bool) {
	it.buf = it.buf[:0]
	it.pos = 0
	it.more = false
	visit := func(x memItem) bool {
		if exclusive && bytes.Equal(x.key, from) {
			return true
		}
		if len(it.buf) == memIterChunk {
			it.more = true
			return false
		}
		it.buf = append(it.buf, x)
		return true
	}
	if from == nil {
		it.st.mem.Ascend(visit)
	} else {
		it.st.mem.AscendGreaterOrEqual(newItem(from, nil, false), visit)
	}
	it.bValid = len(it.buf) > 0
}

func (it *memIter) bNext() {
	it.pos++
	if it.pos == len(it.buf) {
		if it.more {
			it.fill(it.buf[len(it.buf)-1].key, true)
		} else {
			it.bValid = false
		}
	}
}

func (it *memIter) seek(from []byte) bool {
	if it.err != nil {
		return false
	}
	it.fill(from, false)
	for i := range it.ris {
		if from == nil {
			it.ris[i].first()
		} else {
			it.ris[i].seekGE(from)
		}
	}
	it.settle()
	return it.valid
}

// settle moves to the next visible entry: the smallest key of any level,
// taken from the newest level that has it; tombstones hide the key.
func (it *memIter) settle() {
	for {
		var min []byte
		any := false // min may be the empty key, so track presence apart
		if it.bValid {
			min, any = it.buf[it.pos].key, true
		}
		for i := range it.ris {
			if r := &it.ris[i]; r.valid && (!any || bytes.Compare(r.key, min) < 0) {
				min, any = r.key, true
			}
		}
		if !any {
			it.valid = false
			return
		}
		it.keyBuf = append(it.keyBuf[:0], min...) // valid until the next call
		min = it.keyBuf
		found, tomb := false, false
		if it.bValid && bytes.Equal(it.buf[it.pos].key, min) {
			x := it.buf[it.pos]
			found, tomb, it.val = true, x.tomb, x.val
			it.bNext()
		}
		for i := range it.ris {
			if r := &it.ris[i]; r.valid && bytes.Equal(r.key, min) {
				if !found {
					found, tomb, it.val = true, r.tomb, r.val
				}
				r.next()
			}
		}
		if tomb {
			continue
		}
		it.key = min
		it.valid = it.upper == nil || bytes.Compare(it.key, it.upper) < 0
		return
	}
}

func (it *memIter) First() bool { return it.seek(it.lower) }

func (it *memIter) SeekGE(key []byte) bool {
	if it.lower != nil && bytes.Compare(key, it.lower) < 0 {
		key = it.lower
	}
	return it.seek(key)
}

func (it *memIter) Valid() bool { return it.err == nil && it.valid }

func (it *memIter) Next() bool {
	if !it.Valid() {
		return false
	}
	it.settle()
	return it.valid
}

func (it *memIter) Key() []byte   { return it.key }
func (it *memIter) Value() []byte { return it.val }
func (it *memIter) Error() error  { return it.err }
func (it *memIter) Close() error {
	it.buf = nil
	it.valid = false
	return it.err
}
