package raft

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/core/pebbleengine"
)

// Background scrub. The start-up check (rebuild.go) reads every record of
// a replica's Pebble state machine, but only when the node starts; a record
// damaged on disk while the node runs was found only by a read of that key
// or at the next restart. The scrub reads every data record of the state
// machines of the shards this node hosts, a page at a time and at a bounded
// rate, checking them as the start-up check does (core.Store.VerifyRecords:
// the record's CRC-32C, its payload's encoding, Pebble's block checksums).
// A replica found corrupt goes the start-up check's way: its replica is
// stopped, then quarantine checks the closed state machine again, moves it
// aside and writes rebuild-SHARDID.json, and the node rebuilds the replica
// from the shard's other replicas (Rebuild).
//
// Each page is one Lookup of the running state machine (scrubQuery), under
// the state machine's mutex: a page of scrubPage records holds applies off
// for well under a millisecond. The scrub only reads.

// scrubPage is the most records one page reads.
const scrubPage = 256

// scrubQuery asks the on-disk state machine (diskSM.Lookup) to check up
// to max records from cursor on; the answer is a scrubPageResult.
type scrubQuery struct {
	cursor []byte
	max    int
}

// scrubPageResult is the answer to a scrubQuery.
type scrubPageResult struct {
	next []byte // nil: the last record was checked
	n    int
}

// scrub serves a scrubQuery.
func (m *diskSM) scrub(q scrubQuery) (any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.store == nil || m.eng == nil {
		return nil, errors.New("raft: scrub: the state machine is closed")
	}
	next, n, err := m.store.VerifyRecords(q.cursor, q.max)
	if err != nil {
		return nil, fmt.Errorf("raft: scrub: %w", err)
	}
	return scrubPageResult{next: next, n: n}, nil
}

// isClosed reports whether Close has run.
func (m *diskSM) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.eng == nil
}

// ScrubShard checks every record of this node's replica of shard sh at
// most rate records a second (rate <= 0: no limit), a page at a time. It
// returns how many records it checked; an error wraps core.ErrCorruption
// when a record is bad. Only on-disk state machines (Storage pebble) are
// scrubbed.
func (s *Service) ScrubShard(ctx context.Context, sh int, rate int) (int, error) {
	if s.cfg.Storage != "pebble" {
		return 0, fmt.Errorf("raft: scrub: storage %s has no records on disk", s.cfg.Storage)
	}
	page := scrubPage
	if rate > 0 && rate < page {
		page = rate
	}
	total := 0
	var cursor []byte
	for {
		if !s.Hosts(sh) {
			return total, fmt.Errorf("raft: scrub of shard %d: not hosted here any more", sh)
		}
		start := time.Now()
		v, err := s.nh.StaleRead(s.ShardID(sh), scrubQuery{cursor: cursor, max: page})
		if err != nil {
			return total, fmt.Errorf("raft: scrub of shard %d after %d records: %w", sh, total, err)
		}
		r := v.(scrubPageResult)
		total += r.n
		if r.next == nil {
			return total, nil
		}
		cursor = r.next
		if rate > 0 {
			// Pace: r.n records take r.n/rate seconds, the read included.
			wait := time.Duration(r.n)*time.Second/time.Duration(rate) - time.Since(start)
			select {
			case <-ctx.Done():
				return total, fmt.Errorf("raft: scrub of shard %d: %w", sh, ctx.Err())
			case <-time.After(wait):
			}
		} else if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("raft: scrub of shard %d: %w", sh, err)
		}
	}
}

// Scrub checks the state machines of every shard hosted here (ScrubShard
// at rate). A replica found corrupt is quarantined as at start (stopped,
// its state machine checked again once closed, moved aside, the rebuild
// recorded) and returned: restore it with Rebuild. Other errors (a shard
// that moved away, the Service closing) are joined into the error.
func (s *Service) Scrub(ctx context.Context, rate int) ([]CorruptReplica, error) {
	var found []CorruptReplica
	var errs []error
	for sh := 0; sh < s.cfg.Shards; sh++ {
		if !s.Hosts(sh) || s.closed.Load() {
			continue
		}
		_, err := s.ScrubShard(ctx, sh, rate)
		if err == nil {
			continue
		}
		if !errors.Is(err, core.ErrCorruption) {
			errs = append(errs, err)
			continue
		}
		c, ok, qerr := s.quarantineRunning(ctx, sh, err)
		if qerr != nil {
			errs = append(errs, qerr)
		}
		if ok {
			found = append(found, c)
		}
	}
	return found, errors.Join(errs...)
}

// quarantineRunning stops shard sh's replica, which the scrub found
// corrupt (found), and, once its state machine is closed, checks it as the
// start-up check does (verifyDiskSM, without s.mu: it reads every record)
// and quarantines it the same way (quarantineCorrupt). If the closed state
// machine passes that check after all, the replica is started again.
func (s *Service) quarantineRunning(ctx context.Context, sh int, found error) (CorruptReplica, bool, error) {
	s.mu.Lock()
	rid, ok := s.local[sh]
	if !ok {
		s.mu.Unlock()
		return CorruptReplica{}, false, nil
	}
	shardID := s.ShardID(sh)
	// Ordering: the replica leaves s.local as it stops, so requests for
	// the shard are redirected instead of reaching a stopping replica, and
	// s.corrupt is set before s.local could be set again; hosted.json is
	// left alone (the replica is still this node's, as for a replica
	// quarantined at start).
	if err := s.nh.StopReplica(shardID, rid); err != nil {
		s.mu.Unlock()
		return CorruptReplica{}, false, fmt.Errorf("raft: scrub found shard %d corrupt (%v) but cannot stop its replica: %w", sh, found, err)
	}
	delete(s.local, sh)
	delete(s.batch, sh)
	s.corrupt[sh] = CorruptReplica{Shard: sh, ReplicaID: rid, Err: found, Scrub: true} // until checked
	m, _ := s.sms.Load(shardID)
	s.mu.Unlock()
	// Dragonboat closes the state machine when it unloads the replica;
	// it may be opened again and moved only after that.
	dm, _ := m.(*diskSM)
	for dm != nil && !dm.isClosed() {
		select {
		case <-ctx.Done():
			return CorruptReplica{}, false, fmt.Errorf("raft: scrub found shard %d corrupt (%v); its state machine did not close: %w", sh, found, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	verr := verifyDiskSM(s.smDir(sh), pebbleengine.Options{FS: s.cfg.PebbleFS}, s.cfg.Limits)
	s.mu.Lock()
	defer s.mu.Unlock()
	if verr == nil || !errors.Is(verr, core.ErrCorruption) {
		// The closed state machine passed the check: start it again.
		delete(s.corrupt, sh)
		if err := s.startReplica(sh, nil, false, rid); err != nil {
			return CorruptReplica{}, false, fmt.Errorf("raft: scrub found shard %d corrupt (%v), the check of the closed state machine did not (%v), and its replica does not restart: %w", sh, found, verr, err)
		}
		return CorruptReplica{}, false, nil
	}
	if err := s.quarantineCorrupt(sh, rid, verr); err != nil {
		return CorruptReplica{}, false, err
	}
	c := s.corrupt[sh]
	c.Scrub = true
	s.corrupt[sh] = c
	return c, true, nil
}

// ScrubEvery runs Scrub at rate records a second every period until the
// Service closes, and hands each replica found corrupt to onCorrupt (which
// should Rebuild it). The first pass starts one period after the call: the
// start-up check has just read every record. Run it in a goroutine of its
// own (nodes does, with `dialkv node --raft-scrub-every`); the simulator
// does not.
func (s *Service) ScrubEvery(period time.Duration, rate int, onCorrupt func(CorruptReplica)) {
	if period <= 0 || s.cfg.Storage != "pebble" {
		return
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for range t.C {
		if s.closed.Load() {
			return
		}
		// A pass ends early when the Service closes (ScrubShard's
		// StaleRead fails with ErrClosed).
		found, _ := s.Scrub(context.Background(), rate) // other errors: the next pass retries
		for _, c := range found {
			onCorrupt(c)
		}
	}
}

// DamageRecord is fault injection for tests and drills: it flips one byte
// of the value in key's stored record in this node's replica of shard sh,
// written straight into the running state machine's Pebble instance,
// bypassing the Store and the Raft log, as bit rot on this node's disk
// would: the record's CRC-32C no longer matches, and no other replica is
// touched. Key is the client's key ("d" + key is core's data record).
func (s *Service) DamageRecord(sh int, key string) error {
	if s.cfg.Storage != "pebble" || !s.Hosts(sh) {
		return fmt.Errorf("raft: damage record: no on-disk replica of shard %d here", sh)
	}
	v, ok := s.sms.Load(s.ShardID(sh))
	if !ok {
		return fmt.Errorf("raft: damage record: shard %d's state machine is not open", sh)
	}
	m := v.(*diskSM)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.eng == nil {
		return fmt.Errorf("raft: damage record: shard %d's state machine is closed", sh)
	}
	k := []byte("d" + key)
	raw, err := m.eng.Get(k)
	if err != nil {
		return fmt.Errorf("raft: damage record %q: %w", key, err)
	}
	if len(raw) < 6 {
		return fmt.Errorf("raft: damage record %q: %d bytes", key, len(raw))
	}
	raw[len(raw)-5] ^= 0x5a // the value's last byte: only the checksum tells
	b := m.eng.NewBatch()
	defer b.Close()
	b.Set(k, raw)
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("raft: damage record %q: %w", key, err)
	}
	return nil
}
