package core

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"sort"
	"time"
)

// op is the context of one Apply or ApplyTxn: a write-buffering overlay over
// the engine. Reads see the engine plus the op's own writes; nothing reaches
// the engine until commit, which writes the whole overlay as one atomic
// batch. An op that fails is simply dropped, so a failed command or an
// aborted transaction changes nothing.
//
// Writes are single-threaded (replication strategies apply commands in
// order) and concurrent Reads never write, so the engine does not change
// under an op: reads inside an op see one snapshot plus the op's own writes.
type op struct {
	s      *Store
	now    time.Time
	nowMs  int64
	writes overlay
	// counter is the op's copy of the store's version counter.
	counter uint64
	// lastVer is the version of the last key loaded or written, for
	// Reply.Version.
	lastVer uint64
	// idxChanges are index definitions created (non-nil) or dropped (nil)
	// by this op, applied to the store on commit.
	idxChanges map[string]*indexDef

	keysDelta, expired, warns, corrupt int64

	// keyBuf is scratch space for the engine key of a read.
	keyBuf []byte
	// memo is the last record loadRaw decoded from the engine, valid
	// until the op's next write (a command loads its key, then put or del
	// loads it again). Records are never modified in place. memoKey is
	// the op's own copy: a caller's key may live in a buffer it reuses
	// (an iterator's key), and an aliased memoKey would then match the
	// next key and answer it with the previous key's record.
	memoKey []byte
	memo    *record
	memoOK  bool
}

// opWrite is one buffered write; key is the engine key, owned by the op
// (handed to the batch at commit).
type opWrite struct {
	key []byte
	val []byte
	del bool
}

// overlay is an op's buffered writes, one per engine key: a slice searched
// linearly while small (most ops write a few keys), indexed by a map once
// it grows past overlaySmall.
type overlay struct {
	ws  []opWrite
	idx map[string]int // position in ws; nil while small
	// mark is the length of ws at the op's savepoint (-1: none, see
	// op.save); undo holds the entries below mark that writes since the
	// savepoint replaced, oldest first.
	mark int
	undo []undoWrite
}

// undoWrite is an overlay entry as it was before a write replaced it.
type undoWrite struct {
	i int
	w opWrite
}

const overlaySmall = 8

func (v *overlay) find(ek []byte) int {
	if v.idx != nil {
		if i, ok := v.idx[string(ek)]; ok {
			return i
		}
		return -1
	}
	for i := range v.ws {
		if bytes.Equal(v.ws[i].key, ek) {
			return i
		}
	}
	return -1
}

func (v *overlay) get(ek []byte) (opWrite, bool) {
	if i := v.find(ek); i >= 0 {
		return v.ws[i], true
	}
	return opWrite{}, false
}

func (v *overlay) put(w opWrite) {
	if i := v.find(w.key); i >= 0 {
		if i < v.mark {
			v.undo = append(v.undo, undoWrite{i, v.ws[i]})
		}
		v.ws[i] = w
		return
	}
	v.ws = append(v.ws, w)
	switch {
	case v.idx != nil:
		v.idx[string(w.key)] = len(v.ws) - 1
	case len(v.ws) > overlaySmall:
		v.idx = make(map[string]int, 2*len(v.ws))
		for i := range v.ws {
			v.idx[string(v.ws[i].key)] = i
		}
	}
}

// reset empties the overlay, keeping a small slice for the next op.
func (v *overlay) reset() {
	if cap(v.ws) > 1024 {
		v.ws = nil
	}
	clear(v.ws)
	clear(v.undo)
	v.ws, v.idx, v.mark, v.undo = v.ws[:0], nil, -1, v.undo[:0]
}

// rollback undoes every put since the savepoint: entries added after it
// are dropped, entries replaced are restored (newest undo first, so an
// entry replaced twice gets its oldest value back).
func (v *overlay) rollback() {
	for j := len(v.undo) - 1; j >= 0; j-- {
		v.ws[v.undo[j].i] = v.undo[j].w
	}
	clear(v.undo)
	v.undo = v.undo[:0]
	for i := v.mark; i < len(v.ws); i++ {
		if v.idx != nil {
			delete(v.idx, string(v.ws[i].key))
		}
		v.ws[i] = opWrite{}
	}
	v.ws = v.ws[:v.mark]
}

// savepoint is what op.rollback restores besides the overlay.
type savepoint struct {
	counter                   uint64
	keysDelta, expired, warns int64
	idxChanges                map[string]*indexDef
}

// save marks a savepoint: rollback returns the op to this state. Used
// between the commands of ApplyBatch, so that a failing command changes
// nothing while the others share one engine batch.
func (o *op) save() savepoint {
	o.writes.mark = len(o.writes.ws)
	clear(o.writes.undo)
	o.writes.undo = o.writes.undo[:0]
	sp := savepoint{counter: o.counter, keysDelta: o.keysDelta, expired: o.expired, warns: o.warns}
	if o.idxChanges != nil {
		sp.idxChanges = maps.Clone(o.idxChanges)
	}
	return sp
}

// rollback returns the op to savepoint sp (the corruption count stays: what
// was seen was seen).
func (o *op) rollback(sp savepoint) {
	o.writes.rollback()
	o.counter, o.keysDelta, o.expired, o.warns = sp.counter, sp.keysDelta, sp.expired, sp.warns
	o.idxChanges = sp.idxChanges
	o.memoOK = false
}

// newOp starts an op for a write. The Store reuses one op (and its overlay
// map) for every write: writes are single-threaded and ops never nest.
func (s *Store) newOp(now time.Time) *op {
	o := &s.scratch
	w := o.writes
	w.reset()
	*o = op{s: s, now: now, nowMs: now.UnixMilli(), counter: s.counter, writes: w, keyBuf: o.keyBuf[:0], memoKey: o.memoKey[:0]}
	return o
}

// newReadOp starts an op for a Read. Concurrent Reads cannot share the
// writers' scratch op, so each takes one from a pool (keeping its key
// buffer); putReadOp returns it.
func (s *Store) newReadOp(now time.Time) *op {
	o, _ := s.readOps.Get().(*op)
	if o == nil {
		o = &op{}
	}
	*o = op{s: s, now: now, nowMs: now.UnixMilli(), counter: s.counter, keyBuf: o.keyBuf[:0], memoKey: o.memoKey[:0]}
	return o
}

// putReadOp returns a Read's op to the pool; it must not be used after.
func (s *Store) putReadOp(o *op) {
	if cap(o.keyBuf) > 1024 {
		o.keyBuf = nil
	}
	if cap(o.memoKey) > 1024 {
		o.memoKey = nil
	}
	*o = op{keyBuf: o.keyBuf[:0], memoKey: o.memoKey[:0]}
	s.readOps.Put(o)
}

// get reads an engine key through the overlay.
func (o *op) get(ek []byte) ([]byte, bool, error) {
	if w, ok := o.writes.get(ek); ok {
		if w.del {
			return nil, false, nil
		}
		return w.val, true, nil
	}
	v, err := o.s.e.Get(ek)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// set buffers a write of engine key ek, which the op then owns.
func (o *op) set(ek, v []byte) {
	o.memoOK = false
	o.writes.put(opWrite{key: ek, val: v})
}

// delete buffers a deletion of engine key ek, which the op then owns.
func (o *op) delete(ek []byte) {
	o.memoOK = false
	o.writes.put(opWrite{key: ek, del: true})
}

// loadRaw returns the key's record, expired or not; nil when absent.
func (o *op) loadRaw(key []byte) (*record, error) {
	if o.memoOK && bytes.Equal(o.memoKey, key) {
		return o.memo, nil
	}
	o.keyBuf = append(append(o.keyBuf[:0], pfxData), key...)
	b, ok, err := o.get(o.keyBuf)
	if err != nil || !ok {
		return nil, err
	}
	r, err := decodeRecord(key, b)
	if err != nil {
		o.corrupt++
		return nil, err
	}
	o.memoKey, o.memo, o.memoOK = append(o.memoKey[:0], key...), r, true
	return r, nil
}

func (o *op) isExpired(r *record) bool { return r.expireAt != 0 && o.nowMs > r.expireAt }

// load returns the key's live record, or nil when it is absent or expired.
func (o *op) load(key []byte) (*record, error) {
	r, err := o.loadRaw(key)
	if err != nil || r == nil {
		return nil, err
	}
	if o.isExpired(r) {
		o.lastVer = 0
		return nil, nil
	}
	o.lastVer = r.version
	return r, nil
}

// loadType loads the key and checks it holds want (nil when absent).
func (o *op) loadType(key []byte, want ValueType) (*record, error) {
	r, err := o.load(key)
	if err != nil || r == nil {
		return nil, err
	}
	if r.typ != want {
		return nil, errWrongType
	}
	return r, nil
}

var errWrongType = &Error{Code: CodeWrongType, Msg: "Operation against a key holding the wrong kind of value"}

// put writes key with a new value, bumping its version. Versions: a key
// that exists (and has not expired) goes from version v to v+1. A key that
// is created (absent, deleted or expired before) takes counter+1, where the
// store-wide counter is at least every version any deleted or created key
// ever had; so a key's versions never repeat, even across delete and
// re-create. The counter is persisted with the batch that changes it.
func (o *op) put(key []byte, typ ValueType, payload []byte, expireAt int64) error {
	if len(payload) > o.s.lim.MaxValueSize {
		return Errorf(CodeValueTooLarge, "value of %d bytes exceeds the limit of %d bytes", len(payload), o.s.lim.MaxValueSize)
	}
	old, err := o.loadRaw(key)
	if err != nil {
		return err
	}
	var version uint64
	var oldTTL int64
	if old != nil {
		oldTTL = old.expireAt
	}
	if old != nil && !o.isExpired(old) {
		version = old.version + 1
	} else {
		if old != nil {
			o.expired++
			o.keysDelta--
			o.counter = max(o.counter, old.version)
		}
		o.counter++
		version = o.counter
		o.keysDelta++
	}
	if oldTTL != expireAt {
		if oldTTL != 0 {
			o.delete(expiryKey(oldTTL, key))
		}
		if expireAt != 0 {
			o.set(expiryKey(expireAt, key), nil)
		}
	}
	if len(payload) > o.s.lim.LargeValueWarn {
		o.warns++
	}
	nr := record{typ: typ, version: version, expireAt: expireAt, payload: payload}
	if len(o.s.indexes) > 0 || len(o.idxChanges) > 0 {
		hr := nr // on the heap only when there are indexes to update
		if err := o.s.indexUpdate(o, key, old, &hr); err != nil {
			return err
		}
	}
	// The engine key and the record share one allocation (the engine
	// keeps both and never modifies either).
	kv := append(append(make([]byte, 0, 1+len(key)+recordBound(&nr)), pfxData), key...)
	l := len(kv)
	kv = appendRecord(kv, key, &nr)
	o.set(kv[:l:l], kv[l:len(kv):len(kv)])
	o.lastVer = version
	return nil
}

// putKeepTTL writes a new value keeping the key's current expiry (if live).
func (o *op) putKeepTTL(key []byte, typ ValueType, payload []byte, old *record) error {
	var exp int64
	if old != nil {
		exp = old.expireAt
	}
	return o.put(key, typ, payload, exp)
}

// del removes key; it reports whether a live key was removed.
func (o *op) del(key []byte) (bool, error) {
	old, err := o.loadRaw(key)
	if err != nil || old == nil {
		return false, err
	}
	if old.expireAt != 0 {
		o.delete(expiryKey(old.expireAt, key))
	}
	if err := o.s.indexUpdate(o, key, old, nil); err != nil {
		return false, err
	}
	o.delete(dataKey(key))
	o.counter = max(o.counter, old.version)
	o.keysDelta--
	o.lastVer = 0
	if o.isExpired(old) {
		o.expired++
		return false, nil
	}
	return true, nil
}

// iter iterates engine keys in [lower, upper) through the overlay.
func (o *op) iter(lower, upper []byte) *mergeIter {
	var pending []string
	for _, w := range o.writes.ws {
		if bytes.Compare(w.key, lower) >= 0 && (upper == nil || bytes.Compare(w.key, upper) < 0) {
			pending = append(pending, string(w.key))
		}
	}
	sort.Strings(pending)
	m := &mergeIter{o: o, base: o.s.e.NewIter(lower, upper), pending: pending}
	m.baseOK = m.base.First()
	m.settle()
	return m
}

// mergeIter merges the engine's iterator with the overlay's writes.
type mergeIter struct {
	o       *op
	base    Iterator
	baseOK  bool
	pending []string
	key     []byte
	val     []byte
	valid   bool
	// keyBuf and valBuf back key and val for entries from the engine.
	keyBuf, valBuf []byte
}

// settle positions on the next visible key at or after the current inputs.
func (m *mergeIter) settle() {
	for {
		var bk []byte
		if m.baseOK {
			bk = m.base.Key()
		}
		if len(m.pending) == 0 && !m.baseOK {
			m.valid = false
			return
		}
		usePending := len(m.pending) > 0 && (!m.baseOK || m.pending[0] <= string(bk))
		if usePending {
			k := m.pending[0]
			m.pending = m.pending[1:]
			if m.baseOK && k == string(bk) {
				m.baseOK = m.base.Next()
			}
			w, _ := m.o.writes.get([]byte(k))
			if w.del {
				continue
			}
			m.key, m.val, m.valid = []byte(k), w.val, true
			return
		}
		// Copies into reused buffers: the base iterator's slices are only
		// valid until its Next, ours until our Next (as the Engine contract).
		m.keyBuf = append(m.keyBuf[:0], bk...)
		m.valBuf = append(m.valBuf[:0], m.base.Value()...)
		m.key, m.val = m.keyBuf, m.valBuf
		m.valid = true
		m.baseOK = m.base.Next()
		return
	}
}

func (m *mergeIter) Valid() bool  { return m.valid }
func (m *mergeIter) Next()        { m.settle() }
func (m *mergeIter) Error() error { return m.base.Error() }
func (m *mergeIter) Close() error {
	return m.base.Close()
}

// commit writes the overlay to the engine as one batch.
func (o *op) commit() error {
	s := o.s
	if o.counter != s.counter {
		// Key and value in one allocation, as in put.
		kv := append(append(make([]byte, 0, 1+len(metaCounter)+counterLen), pfxMeta), metaCounter...)
		l := len(kv)
		kv = appendCounter(kv, o.counter)
		o.set(kv[:l:l], kv[l:])
	}
	s.corrupt.Add(o.corrupt)
	o.corrupt = 0
	if len(o.writes.ws) == 0 {
		return nil
	}
	ws := o.writes.ws // sorted in place: the op ends here
	if len(ws) > 1 {
		slices.SortFunc(ws, func(a, b opWrite) int { return bytes.Compare(a.key, b.key) })
	}
	b := s.e.NewBatch()
	defer b.Close()
	owned, _ := b.(ownedSetter)
	for _, w := range ws {
		batchWrite(b, owned, w.key, w.val, w.del)
	}
	if err := b.Commit(s.syncCommits); err != nil {
		return Errorf(CodeIO, "commit: %v", err)
	}
	for n, d := range o.idxChanges {
		if d == nil {
			delete(s.indexes, n)
		} else {
			s.indexes[n] = d
		}
	}
	s.committed(o.counter, o.keysDelta, o.expired, o.warns)
	return nil
}

// batchWrite puts one write into b: a delete, or a set of val. With the
// batch's ownedSetter (owned, nil when it has none) the slices are handed
// over instead of copied: they must be fresh and never modified again.
func batchWrite(b Batch, owned ownedSetter, key, val []byte, del bool) {
	switch {
	case del && owned != nil:
		owned.deleteOwned(key)
	case del:
		b.Delete(key)
	case owned != nil:
		owned.setOwned(key, val)
	default:
		b.Set(key, val)
	}
}

// committed takes a committed batch's bookkeeping into the store: the
// version counter it wrote and its changes to the stats.
func (s *Store) committed(counter uint64, keys, expired, warns int64) {
	s.counter = counter
	s.stats.Keys += keys
	s.stats.Expired += expired
	s.stats.LargeValueWarns += warns
}

// discard drops the overlay, keeping only the corruption count.
func (o *op) discard() {
	o.s.corrupt.Add(o.corrupt)
	o.corrupt = 0
}

// ownedSetter is implemented by batches that can take ownership of the
// key and value slices instead of copying them (the overlay's slices are
// fresh and never modified after commit).
type ownedSetter interface {
	setOwned(key, value []byte)
	deleteOwned(key []byte)
}
