package raft

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/dialkv/dialkv/core"
)

// readQuery is what Service hands to Lookup: a read-only command and the
// reading node's clock.
type readQuery struct {
	now int64
	cmd core.Command
}

// memSM is the in-memory replicated state machine: a core.Store over a
// core.MemEngine. Dragonboat calls Update in log order; the clock used for
// TTLs is the largest proposer timestamp applied so far (so it never goes
// back, and is the same on every replica).
type memSM struct {
	mu     sync.Mutex
	store  *core.Store
	engine core.Engine
	clock  int64 // unix nanos; part of the snapshot
	limits core.Limits
	dd     *dedup // kept in the engine too, so the snapshot carries it
}

var _ sm.IStateMachine = (*memSM)(nil)

func newMemSM(limits core.Limits) (*memSM, error) {
	e := core.NewMemEngine()
	st, err := core.NewStore(e, limits)
	if err != nil {
		return nil, fmt.Errorf("raft: new store: %w", err)
	}
	return &memSM{store: st, engine: e, limits: limits, dd: newDedup()}, nil
}

// Update applies one proposal. Malformed proposals become error replies:
// returning an error would stop the replica.
func (m *memSM) Update(e sm.Entry) (sm.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, err := applyEntry(m.store, &m.clock, m.dd, e.Index, e.Cmd, nil)
	if err != nil {
		return sm.Result{}, fmt.Errorf("raft: apply entry %d: %w", e.Index, err)
	}
	if m.dd.pending() {
		b := m.engine.NewBatch()
		m.dd.flush(b)
		m.dd.writeChunks(b)
		err := b.Commit(false)
		b.Close()
		if err != nil {
			return sm.Result{}, fmt.Errorf("raft: record deduplication state: %w", err)
		}
	}
	return sm.Result{Value: e.Index, Data: data}, nil
}

// dumpQuery asks Lookup for the replica's user-visible state (core
// Store.Dump).
type dumpQuery struct{ now int64 }

// Lookup serves a read-only command at max(reader's clock, applied clock),
// or a dumpQuery.
func (m *memSM) Lookup(q any) (any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return lookup(m.store, m.clock, m.dd, q)
}

// SaveSnapshot writes the clock then the store's snapshot.
func (m *memSM) SaveSnapshot(w io.Writer, _ sm.ISnapshotFileCollection, _ <-chan struct{}) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(m.clock))
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("raft: snapshot header: %w", err)
	}
	if err := m.store.SaveSnapshot(w); err != nil {
		return fmt.Errorf("raft: save snapshot: %w", err)
	}
	return nil
}

// RecoverFromSnapshot replaces the state with a snapshot's.
func (m *memSM) RecoverFromSnapshot(r io.Reader, _ []sm.SnapshotFile, _ <-chan struct{}) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("raft: snapshot header: %w", err)
	}
	// The Store clears only its own key space: clear the deduplication
	// keys first, the snapshot carries its own (a kept reply it does not
	// have must not survive).
	b := m.engine.NewBatch()
	b.DeleteRange(dedupListKey, dedupEnd)
	err := b.Commit(false)
	b.Close()
	if err != nil {
		return fmt.Errorf("raft: clear deduplication state: %w", err)
	}
	if err := m.store.RestoreSnapshot(r); err != nil {
		return fmt.Errorf("raft: restore snapshot: %w", err)
	}
	m.clock = int64(binary.LittleEndian.Uint64(hdr[:]))
	dd, err := loadDedup(m.engine)
	if err != nil {
		return err
	}
	m.dd = dd
	return nil
}

// Close releases the engine.
func (m *memSM) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.engine.Close()
}
