package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/core/pebbleengine"
)

// appliedKey holds the index of the last applied entry and the state
// machine's clock. It sorts after every key of the Store's key space
// ('d', 'x', 'i', 'm' prefixes), which Store.RestoreSnapshot clears with
// DeleteRange([0], [0xff]).
var appliedKey = []byte("\xffraft/applied")

func encodeApplied(index uint64, clock int64) []byte {
	return appendApplied(make([]byte, 0, 16), index, clock)
}

// appendApplied appends the applied record of index and clock to b.
func appendApplied(b []byte, index uint64, clock int64) []byte {
	b = binary.BigEndian.AppendUint64(b, index)
	return binary.BigEndian.AppendUint64(b, uint64(clock))
}

func decodeApplied(b []byte) (uint64, int64, error) {
	if len(b) != 16 {
		return 0, 0, fmt.Errorf("raft: applied-index record of %d bytes: %w", len(b), core.ErrCorruption)
	}
	return binary.BigEndian.Uint64(b), int64(binary.BigEndian.Uint64(b[8:])), nil
}

// indexEngine wraps the state machine's engine: every batch the Store
// commits also records the index of the entry being applied (and the
// clock), atomically with the entry's writes. After a crash, the state
// machine restarts from exactly the entry whose writes it holds.
type indexEngine struct {
	core.Engine
	cur       uint64 // entry being applied
	clock     int64
	persisted uint64 // index recorded by the last commit
	restoring bool   // a snapshot restore carries its own record
	dd        *dedup // deduplication state, written with every commit
	// holding: the Store's commit of the proposal being applied is held
	// (held) until its reply is kept, then committed with the applied
	// record and the deduplication state, reply included (release): one
	// atomic batch per proposal, as many commits as without replies.
	holding bool
	held    *indexBatch
	// upd, during an Update (begin .. end), gathers the commits of all of
	// the Update's entries into one engine batch (updateBatch).
	upd *updateBatch
	// applied is scratch for the applied record of a recording batch's
	// commit (recBatch.Set copies it into the Update's arena).
	applied [16]byte
}

// writeDedupChunks writes the kept replies sealed since the last call
// into b, an engine batch of the Update's batch (updateBatch.commit).
func (e *indexEngine) writeDedupChunks(b core.Batch) {
	if e.dd != nil && !e.restoring {
		e.dd.writeChunks(b)
	}
}

// dedupChunksPending reports whether writeDedupChunks has anything to
// write.
func (e *indexEngine) dedupChunksPending() bool {
	return e.dd != nil && !e.restoring && e.dd.chunksPending()
}

// hold starts holding the Store's next commit.
func (e *indexEngine) hold() { e.holding = true }

// release stops holding and commits the held batch, if any.
func (e *indexEngine) release() error {
	e.holding = false
	b := e.held
	if b == nil {
		return nil
	}
	e.held = nil
	defer b.Batch.Close()
	return b.commit(false)
}

// NewBatch starts a batch; during an Update it records its writes for the
// Update's batch (updateBatch) instead of holding an engine batch.
func (e *indexEngine) NewBatch() core.Batch {
	if e.upd != nil && !e.restoring {
		// One allocation for the wrapper and the recording batch it wraps.
		rb := &recIndexBatch{indexBatch: indexBatch{e: e}}
		rb.Batch = e.upd.record(&rb.rec)
		return &rb.indexBatch
	}
	return &indexBatch{Batch: e.Engine.NewBatch(), e: e}
}

// Get reads through the Update's batch: the Store of a later entry sees
// the writes of the earlier ones before they reach the engine.
func (e *indexEngine) Get(key []byte) ([]byte, error) {
	if e.upd != nil {
		if v, del, ok := e.upd.get(key); ok {
			if del {
				return nil, core.ErrNotFound
			}
			return v, nil
		}
	}
	return e.Engine.Get(key)
}

// NewIter commits the Update's batch first (the overlay serves point reads
// only), so the iterator sees every earlier write.
func (e *indexEngine) NewIter(lower, upper []byte) core.Iterator {
	if e.upd != nil {
		if err := e.upd.flush(); err != nil {
			return errIter{err}
		}
	}
	return e.Engine.NewIter(lower, upper)
}

// errIter is an empty iterator that reports err.
type errIter struct{ err error }

func (errIter) First() bool        { return false }
func (errIter) SeekGE([]byte) bool { return false }
func (errIter) Valid() bool        { return false }
func (errIter) Next() bool         { return false }
func (errIter) Key() []byte        { return nil }
func (errIter) Value() []byte      { return nil }
func (i errIter) Error() error     { return i.err }
func (i errIter) Close() error     { return i.err }

type indexBatch struct {
	core.Batch
	e *indexEngine
}

// recIndexBatch is an indexBatch over a recording batch (NewBatch during
// an Update), allocated together.
type recIndexBatch struct {
	indexBatch
	rec recBatch
}

// DeleteRange widens the Store's clearing of its key space during a
// snapshot restore to the deduplication keys: the snapshot carries its own,
// and a kept reply it does not have must not survive.
func (b *indexBatch) DeleteRange(start, end []byte) {
	b.Batch.DeleteRange(start, end)
	if b.e.restoring {
		b.Batch.DeleteRange(dedupListKey, dedupEnd)
	}
}

// Commit commits the batch with the applied record and the deduplication
// state, or holds it (indexEngine.hold).
func (b *indexBatch) Commit(sync bool) error {
	if b.e.holding && !b.e.restoring && !sync {
		if b.e.held != nil { // a second commit in one proposal: the first goes now
			if err := b.e.release(); err != nil {
				return err
			}
			b.e.holding = true
		}
		b.e.held = b
		return nil
	}
	return b.commit(sync)
}

// Close closes the batch unless it is held (release closes it).
func (b *indexBatch) Close() {
	if b.e.held != b {
		b.Batch.Close()
	}
}

// commit commits the batch with the applied record and the deduplication
// state. During an Update the kept replies flush seals go into the
// engine with the Update's batch that carries this commit
// (updateBatch.commit calls writeDedupChunks); otherwise into this batch.
func (b *indexBatch) commit(sync bool) error {
	if !b.e.restoring {
		_, rec := b.Batch.(*recBatch)
		if rec { // Set copies: the scratch record is free again after it
			b.Batch.Set(appliedKey, appendApplied(b.e.applied[:0], b.e.cur, b.e.clock))
		} else {
			b.Batch.Set(appliedKey, encodeApplied(b.e.cur, b.e.clock))
		}
		if b.e.dd != nil {
			b.e.dd.flush(b.Batch)
			if !rec {
				b.e.dd.writeChunks(b.Batch)
			}
		}
	}
	if err := b.Batch.Commit(sync); err != nil {
		return err
	}
	if !b.e.restoring {
		b.e.persisted = b.e.cur
	}
	return nil
}

// diskSM is the on-disk replicated state machine: a core.Store over a
// Pebble engine (core/pebbleengine) that persists its applied index with
// every write, so a restart replays only the entries it lost.
type diskSM struct {
	dir    string
	opts   pebbleengine.Options
	limits core.Limits

	mu    sync.Mutex // Update, Lookup and snapshots are concurrent in Dragonboat
	eng   *pebbleengine.Engine
	ie    *indexEngine
	store *core.Store
	upd   *updateBatch // the batch of the Update being applied (reused)
}

var _ sm.IOnDiskStateMachine = (*diskSM)(nil)

func newDiskSM(dir string, opts pebbleengine.Options, limits core.Limits) *diskSM {
	opts.Sync = core.SyncNever // Dragonboat calls Sync; its log is the durable record
	return &diskSM{dir: dir, opts: opts, limits: limits}
}

// Open opens Pebble and returns the index of the last applied entry. A
// state machine the start-up check left open (openCheckedDiskSM) is not
// opened again: nothing has been applied since, so its applied record is
// the one read then.
func (m *diskSM) Open(<-chan struct{}) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.eng != nil {
		return m.ie.persisted, nil
	}
	eng, err := openWaitingForLock(m.dir, m.opts)
	if err != nil {
		return 0, fmt.Errorf("raft: open state machine: %w", err)
	}
	ie := &indexEngine{Engine: eng}
	idx, err := ie.readApplied()
	if err != nil {
		eng.Close()
		return 0, err
	}
	if ie.dd, err = loadDedup(eng); err != nil {
		eng.Close()
		return 0, err
	}
	st, err := core.NewStore(ie, m.limits)
	if err != nil {
		eng.Close()
		return 0, fmt.Errorf("raft: open state machine: %w", err)
	}
	m.eng, m.ie, m.store, m.upd = eng, ie, st, nil
	return idx, nil
}

// diskApplied returns the index of the last entry the on-disk state
// machine of Dragonboat shard shardID holds (its applied record): 0 when
// the namespace's state machines are in memory or the shard has none on
// this node. lazyCommitLogDB calls it from ReadRaftState, before
// Dragonboat opens the state machine: the state machine the start-up check
// left open answers (nothing is applied before Dragonboat's Open); else the
// directory is opened and closed again.
func (s *Service) diskApplied(shardID, _ uint64) (uint64, error) {
	if s.cfg.Storage != "pebble" {
		return 0, nil
	}
	if v, ok := s.sms.Load(shardID); ok {
		// Started with the state machine the start-up check left open
		// (startReplica): its applied record is at hand, and the
		// directory is locked by it anyway.
		if idx, open := v.(*diskSM).openApplied(); open {
			return idx, nil
		}
	}
	dir := s.smDirOf(shardID)
	if _, err := s.pebbleFS().Stat(dir); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("raft: state machine %s: %w", dir, err)
	}
	opts := pebbleengine.Options{FS: s.cfg.PebbleFS, Sync: core.SyncNever}
	eng, err := openWaitingForLock(dir, opts)
	if err != nil {
		return 0, fmt.Errorf("raft: open state machine %s: %w", dir, err)
	}
	idx, err := (&indexEngine{Engine: eng}).readApplied()
	if cerr := eng.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("raft: close state machine %s: %w", dir, cerr)
	}
	return idx, err
}

// lockWaits and lockWaitStep bound how long openWaitingForLock waits for
// another instance to release a state machine directory (10 s). Every open
// of a state machine directory goes through it: diskSM.Open (and so
// openCheckedDiskSM) and diskApplied.
const (
	lockWaits    = 1000
	lockWaitStep = 10 * time.Millisecond
)

// openWaitingForLock opens Pebble at dir, waiting (up to lockWaits x
// lockWaitStep) while another instance still holds the directory's lock.
// When a replica of a shard leaves this node and joins it again
// (RAFT.LEAVE, then RAFT.JOIN), Dragonboat closes the old replica's state
// machine asynchronously, and the new replica's Open, from Dragonboat's
// snapshot worker, can come before that Close; a failed Open makes
// Dragonboat panic (seen in CI in TestReplicaRejoins: "pebbleengine: open
// /n3/sm-1: resource temporarily unavailable"). Any other error, or a lock
// still held after the wait, is returned as it is.
func openWaitingForLock(dir string, opts pebbleengine.Options) (*pebbleengine.Engine, error) {
	for i := 0; ; i++ {
		eng, err := pebbleengine.Open(dir, opts)
		if err == nil || !errors.Is(err, syscall.EAGAIN) || i == lockWaits {
			return eng, err
		}
		time.Sleep(lockWaitStep)
	}
}

// openApplied returns the applied index of a state machine that is open
// (false: it is not): diskApplied's answer for one opened before
// Dragonboat reads the replica's Raft state, when nothing has been applied
// yet.
func (m *diskSM) openApplied() (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.eng == nil {
		return 0, false
	}
	return m.ie.persisted, true
}

// readApplied loads the applied record into e (0 when there is none).
func (e *indexEngine) readApplied() (uint64, error) {
	b, err := e.Engine.Get(appliedKey)
	if errors.Is(err, core.ErrNotFound) {
		e.cur, e.clock, e.persisted = 0, 0, 0
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("raft: read applied index: %w", err)
	}
	idx, clock, err := decodeApplied(b)
	if err != nil {
		return 0, err
	}
	e.cur, e.clock, e.persisted = idx, clock, idx
	return idx, nil
}

// Update applies entries in order; entries that wrote nothing are recorded
// by one final batch.
//
// The commits of all the entries go into one engine batch (updateBatch),
// committed before Update returns.
func (m *diskSM) Update(ents []sm.Entry) (_ []sm.Entry, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.upd == nil {
		m.upd = newUpdateBatch(m.ie.Engine, m.ie)
	}
	m.ie.upd = m.upd
	defer func() {
		m.ie.upd = nil // writes outside an Update go to the engine directly
		if err != nil {
			m.upd.reset()
		}
	}()
	for i := range ents {
		m.ie.cur = ents[i].Index
		data, err := applyEntry(m.store, &m.ie.clock, m.ie.dd, ents[i].Index, ents[i].Cmd, m.ie)
		if err != nil {
			return nil, fmt.Errorf("raft: apply entry %d: %w", ents[i].Index, err)
		}
		ents[i].Result = sm.Result{Value: ents[i].Index, Data: data}
	}
	// The final batch records the index of trailing entries that wrote
	// nothing (and their deduplication state: every commit writes both).
	if n := len(ents); n > 0 && m.ie.persisted < ents[n-1].Index {
		b := m.ie.NewBatch()
		defer b.Close()
		if err := b.Commit(false); err != nil {
			return nil, fmt.Errorf("raft: record applied index: %w", err)
		}
	}
	if err := m.upd.flush(); err != nil {
		return nil, err
	}
	return ents, nil
}

// Lookup serves a read-only command or a dump (see memSM.Lookup).
func (m *diskSM) Lookup(q any) (any, error) {
	if q, ok := q.(scrubQuery); ok { // the background scrub (scrub.go)
		return m.scrub(q)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return lookup(m.store, m.ie.clock, m.ie.dd, q)
}

// Sync makes everything applied durable.
func (m *diskSM) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.eng.Sync()
}

// PrepareSnapshot captures a point-in-time view (applied record included).
func (m *diskSM) PrepareSnapshot() (any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.eng.NewSnapshot(), nil
}

// SaveSnapshot writes the captured view in core's snapshot format.
func (m *diskSM) SaveSnapshot(ctx any, w io.Writer, _ <-chan struct{}) error {
	snap, ok := ctx.(core.Snapshot)
	if !ok {
		return fmt.Errorf("raft: snapshot context of type %T", ctx)
	}
	defer snap.Close()
	view, err := core.NewStore(readOnlyEngine{snap}, m.limits)
	if err != nil {
		return fmt.Errorf("raft: snapshot view: %w", err)
	}
	if err := view.SaveSnapshot(w); err != nil {
		return fmt.Errorf("raft: save snapshot: %w", err)
	}
	return nil
}

// RecoverFromSnapshot replaces the state, applied record included.
func (m *diskSM) RecoverFromSnapshot(r io.Reader, _ <-chan struct{}) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ie.restoring = true
	err := m.store.RestoreSnapshot(r)
	m.ie.restoring = false
	if err != nil {
		return fmt.Errorf("raft: restore snapshot: %w", err)
	}
	if _, err = m.ie.readApplied(); err != nil {
		return err
	}
	m.ie.dd, err = loadDedup(m.eng)
	return err
}

// Close syncs and closes Pebble.
func (m *diskSM) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.eng == nil {
		return nil
	}
	err := m.eng.Close()
	m.eng = nil
	return err
}

// readOnlyEngine is a core.Engine over a snapshot, for SaveSnapshot.
type readOnlyEngine struct{ core.Snapshot }

var errReadOnly = errors.New("raft: read-only snapshot view")

func (readOnlyEngine) NewBatch() core.Batch           { return roBatch{} }
func (e readOnlyEngine) NewSnapshot() core.Snapshot   { return e }
func (readOnlyEngine) Sync() error                    { return errReadOnly }
func (readOnlyEngine) Checkpoint(string) error        { return errReadOnly }
func (readOnlyEngine) Close() error                   { return nil }
func (e readOnlyEngine) Get(k []byte) ([]byte, error) { return e.Snapshot.Get(k) }

type roBatch struct{}

func (roBatch) Set(_, _ []byte)         {}
func (roBatch) Delete([]byte)           {}
func (roBatch) DeleteRange(_, _ []byte) {}
func (roBatch) Commit(bool) error       { return errReadOnly }
func (roBatch) Len() int                { return 0 }
func (roBatch) Close()                  {}

// applyProposal applies one encoded proposal to st, advancing *clock to
// the largest proposer timestamp seen. Malformed proposals become error
// replies (an error would stop the replica).
//
// Ordering (dedup.go): admit marks the proposal applied before the Store
// applies it, keep records its reply after. With a committer (the on-disk
// state machine), the Store's commit is held until then, so the entry's
// writes, the mark and the reply are one batch; its error stops the
// replica (a replica must not skip an entry's writes).
//
// enc is the reply's encoding when keeping it made one (nil: the caller
// encodes r): the entry's result shares the kept bytes.
func applyProposal(st *core.Store, clock *int64, dd *dedup, index uint64, b []byte, c committer) (r core.Reply, enc []byte, _ error) {
	p, err := decodeProposal(b)
	if err != nil {
		return core.ErrorReply(core.Errorf(core.CodeErr, "%v", err)), nil, nil
	}
	if dd != nil {
		if r := dd.admit(p.proposer, p.seq, index); r != nil {
			return *r, nil, nil
		}
	}
	if c != nil && p.imp == nil { // an import reloads the Store after its commit: not held
		c.hold()
	}
	if p.now > *clock {
		*clock = p.now
	}
	now := time.Unix(0, *clock)
	var locked *core.Reply
	if dd != nil {
		locked = dd.tx.blocked(p)
	}
	switch {
	case locked != nil:
		// A key locked by a prepared cross-shard transaction (txn.go):
		// refused, nothing applied.
		r = *locked
	case p.tx != nil:
		r = applyTxnOp(dd, st, *clock, *p.tx)
	case p.cmd != nil:
		r = st.Apply(now, *p.cmd)
	case p.imp != nil:
		r = applyImport(st, clock, p.imp)
	default:
		r = st.ApplyTxn(now, *p.txn)
	}
	if dd != nil {
		enc = dd.keep(p.proposer, p.seq, r)
	}
	if c != nil {
		if err := c.release(); err != nil {
			return r, enc, err
		}
	}
	return r, enc, nil
}

// committer holds the Store's commit of one proposal until its reply is
// kept (indexEngine).
type committer interface {
	hold()
	release() error
}

var _ committer = (*indexEngine)(nil)

// lookup serves a readQuery or a dumpQuery at max(reader's clock, clock),
// or an exportQuery (export.go).
func lookup(st *core.Store, clock int64, dd *dedup, q any) (any, error) {
	switch q := q.(type) {
	case txnIntentsQuery:
		if dd == nil {
			return []IntentInfo(nil), nil
		}
		return dd.tx.intentInfos(), nil
	case txnDecisionsQuery:
		if dd == nil {
			return decisionsView{Clock: clock}, nil
		}
		return dd.tx.decisionInfos(clock), nil
	case readQuery:
		return st.Apply(time.Unix(0, max(q.now, clock)), q.cmd), nil
	case dumpQuery:
		return st.Dump(time.Unix(0, max(q.now, clock)))
	case exportQuery:
		return exportStore(st, clock)
	}
	return nil, fmt.Errorf("raft: lookup of %T", q)
}
