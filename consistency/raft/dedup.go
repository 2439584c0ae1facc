package raft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/dialkv/dialkv/core"
)

// Proposal deduplication with kept replies: every proposal carries its
// proposer's ID (one per Service incarnation) and a sequence number. The
// state machine keeps, per proposer, the reply of each of its last
// keptReplies applied proposals (by sequence number), so a proposal that
// reaches the log twice is applied once and every copy gets the first
// copy's reply: a forwarded Propose delivered twice, and the copies the
// Service proposes again when no result came back in time (a lost
// forwarded Propose, an entry this replica learned from a snapshot: no
// result is ever delivered for those; service.go propose).
//
// Decision for proposal (p, seq), all from the applied log (so the same on
// every replica):
//
//   - seq is kept: a copy; it changes nothing and its reply is the kept one
//     (or, when that was too large to keep, DUPLICATE: applied, reply lost).
//   - seq <= floor(p), the highest sequence number ever evicted: it cannot
//     be told from a copy of an evicted one: not applied (NOTAPPLIED).
//   - otherwise it was never applied (every applied number above the floor
//     is kept): apply it and keep its reply.
//
// Eviction removes the lowest kept sequence number once a proposer has
// more than keptReplies, and raises the floor to it: the floor only rises,
// so a proposal refused once is refused forever. At most maxProposers
// proposers are remembered; the one applied least recently (lowest index of
// its last applied entry, ties: lowest ID) is forgotten with its replies.
// A copy arriving after its proposer was forgotten would be applied again
// (it would have to trail maxProposers more recently active proposers).
//
// Ordering: admit runs before the proposal is applied and records the
// number as applied with no reply yet; keep records the reply right after.
// The on-disk state machine holds the Store's commit of the proposal until
// then and commits it with the applied index and the dedup state, reply
// included (indexEngine.hold/release): one atomic batch. A proposal that
// writes nothing has its mark and reply written with the next commit,
// together with the applied index, so a crash before it replays the
// proposal. Eviction counts numbers, not bytes, so the decisions do not
// depend on reply sizes.
//
// Bounds: keptReplies per proposer, a kept reply at most maxKeptReply
// bytes (larger ones are kept as "applied, reply not kept"), so at most
// maxProposers*keptReplies*(maxKeptReply+keyOverhead) bytes per shard.
//
// The state lives in the state machine's engine under keys outside the
// Store's key space, so snapshots carry it:
//
//	\xffraft/dedup                     the remembered proposer IDs, 8 bytes each, ascending
//	\xffraft/dedup/<8-byte ID>         floor (8) | index of its last applied entry (8)
//	\xffraft/dedup/<8-byte ID>/<8-byte seq>  the kept reply (core.EncodeReply; empty: not kept)
//
// Records of the earlier bitmap format (16+128 bytes: high, last, bitmap)
// load as floor = high with nothing kept: every older number is refused.
const (
	keptReplies  = 2048
	maxKeptReply = 256
	maxProposers = 32
)

// Codes of the replies to proposals that were not applied.
const (
	// CodeDuplicate: a copy of a proposal applied before, whose reply was
	// not kept (too large, or lost in a crash): the write took effect once,
	// its reply is unknown.
	CodeDuplicate core.Code = "DUPLICATE"
	// CodeNotApplied: older than the proposer's kept replies: not applied
	// now; whether an earlier copy was is unknown.
	CodeNotApplied core.Code = "NOTAPPLIED"
)

var (
	dedupListKey   = []byte("\xffraft/dedup")
	dedupKeyPrefix = []byte("\xffraft/dedup/")
	// dedupEnd bounds every dedup key: [dedupListKey, dedupEnd).
	dedupEnd = []byte("\xffraft/deduq")
)

const legacyRecordLen = 16 + 1024/8

// proposerState is one proposer's record.
type proposerState struct {
	floor, last uint64
	seqs        []uint64          // kept sequence numbers, ascending
	replies     map[uint64][]byte // seq -> reply (nil: none kept)
	touched     []uint64          // seqs set or evicted since the last flush (may repeat)
	dirty       bool              // floor or last changed since the last flush
	queued      bool              // in dedup.changed
}

func newProposerState() *proposerState {
	return &proposerState{replies: map[uint64][]byte{}}
}

// dedup is the state machine's deduplication state.
type dedup struct {
	p       map[uint64]*proposerState
	list    bool     // the proposer list changed
	dropped []uint64 // forgotten proposers whose keys must be deleted
	changed []uint64 // proposers with changes since the last flush
	// tx is the shard's two-phase commit table (txn.go): it is written
	// and loaded with the deduplication state, in the same batches.
	tx *txnTable
}

// touch records that seq of proposer id changed.
func (d *dedup) touch(id uint64, ps *proposerState, seq uint64) {
	ps.touched = append(ps.touched, seq)
	if !ps.queued {
		ps.queued = true
		d.changed = append(d.changed, id)
	}
}

func newDedup() *dedup { return &dedup{p: map[uint64]*proposerState{}, tx: newTxnTable()} }

// admit decides whether proposal (proposer, seq) of log entry index is
// applied. nil: apply it (it is recorded as applied, with no reply until
// keep). Otherwise the reply to return instead: the kept reply of the
// first copy, or an error reply (DUPLICATE, NOTAPPLIED). Proposer 0
// (proposals of version 1) is always applied.
func (d *dedup) admit(proposer, seq, index uint64) *core.Reply {
	if proposer == 0 {
		return nil
	}
	ps := d.p[proposer]
	if ps == nil {
		if len(d.p) >= maxProposers {
			d.evictProposer()
		}
		ps = newProposerState()
		d.p[proposer] = ps
		d.list = true
	}
	if b, ok := ps.replies[seq]; ok {
		if b != nil {
			if r, err := core.DecodeReply(b); err == nil {
				return &r
			}
		}
		r := core.ErrorReply(core.Errorf(CodeDuplicate, "proposal %d of proposer %x was already applied; its reply was not kept", seq, proposer))
		return &r
	}
	if seq <= ps.floor {
		r := core.ErrorReply(core.Errorf(CodeNotApplied, "proposal %d of proposer %x is older than its kept replies: not applied", seq, proposer))
		return &r
	}
	i, _ := slices.BinarySearch(ps.seqs, seq)
	ps.seqs = slices.Insert(ps.seqs, i, seq)
	ps.replies[seq] = nil
	d.touch(proposer, ps, seq)
	ps.last = index
	ps.dirty = true
	for len(ps.seqs) > keptReplies {
		old := ps.seqs[0]
		ps.seqs = ps.seqs[1:]
		delete(ps.replies, old)
		d.touch(proposer, ps, old)
		ps.floor = max(ps.floor, old)
	}
	return nil
}

// keep records the reply of the applied proposal (proposer, seq).
func (d *dedup) keep(proposer, seq uint64, reply core.Reply) {
	ps := d.p[proposer]
	if ps == nil {
		return
	}
	if _, ok := ps.replies[seq]; !ok {
		return
	}
	b := core.EncodeReply(reply)
	if len(b) > maxKeptReply {
		return
	}
	ps.replies[seq] = b
	d.touch(proposer, ps, seq)
}

// evictProposer forgets the proposer applied least recently (ties: lowest
// ID).
func (d *dedup) evictProposer() {
	var victim uint64
	first := true
	for id, ps := range d.p {
		if first || ps.last < d.p[victim].last || (ps.last == d.p[victim].last && id < victim) {
			victim, first = id, false
		}
	}
	delete(d.p, victim)
	d.dropped = append(d.dropped, victim)
	d.list = true
}

func dedupKey(p uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), dedupKeyPrefix...), p)
}

func replyKey(p, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dedupKey(p), '/'), seq)
}

// replyRange bounds proposer p's reply keys.
func replyRange(p uint64) (lo, hi []byte) {
	return append(dedupKey(p), '/'), append(dedupKey(p), '/'+1)
}

// flush writes the changes since the last flush into b, in a fixed order.
func (d *dedup) flush(b core.Batch) {
	// Deletions first: a proposer forgotten and seen again since the last
	// flush has its new record and replies written below, after them.
	for _, p := range d.dropped {
		b.Delete(dedupKey(p))
		lo, hi := replyRange(p)
		b.DeleteRange(lo, hi)
	}
	d.dropped = d.dropped[:0]
	if d.list {
		b.Set(dedupListKey, encodeIDs(d.ids()))
		d.list = false
	}
	slices.Sort(d.changed)
	for _, p := range d.changed {
		ps := d.p[p]
		if ps == nil {
			continue // forgotten since
		}
		ps.queued = false
		if ps.dirty {
			v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), ps.floor)
			b.Set(dedupKey(p), binary.BigEndian.AppendUint64(v, ps.last))
			ps.dirty = false
		}
		slices.Sort(ps.touched)
		for _, s := range slices.Compact(ps.touched) {
			if r, ok := ps.replies[s]; ok {
				b.Set(replyKey(p, s), r)
			} else {
				b.Delete(replyKey(p, s))
			}
		}
		ps.touched = ps.touched[:0]
	}
	d.changed = d.changed[:0]
	d.tx.flush(b)
}

func (d *dedup) ids() []uint64 {
	ids := make([]uint64, 0, len(d.p))
	for p := range d.p {
		ids = append(ids, p)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func encodeIDs(ids []uint64) []byte {
	var v []byte
	for _, p := range ids {
		v = binary.BigEndian.AppendUint64(v, p)
	}
	return v
}

// pending reports whether flush has anything to write.
func (d *dedup) pending() bool {
	return d.list || len(d.dropped) > 0 || len(d.changed) > 0 || d.tx.pending()
}

// loadDedup reads the state from an engine (empty when there is none).
func loadDedup(r core.Reader) (*dedup, error) {
	d := newDedup()
	tx, err := loadTxnTable(r)
	if err != nil {
		return nil, err
	}
	d.tx = tx
	list, err := r.Get(dedupListKey)
	if err != nil {
		if isNotFound(err) {
			return d, nil
		}
		return nil, fmt.Errorf("raft: read deduplication state: %w", err)
	}
	if len(list)%8 != 0 {
		return nil, fmt.Errorf("raft: deduplication list of %d bytes: %w", len(list), core.ErrCorruption)
	}
	for i := 0; i < len(list); i += 8 {
		p := binary.BigEndian.Uint64(list[i:])
		v, err := r.Get(dedupKey(p))
		if err != nil {
			return nil, fmt.Errorf("raft: read deduplication record %x: %w", p, err)
		}
		ps := newProposerState()
		switch len(v) {
		case 16, legacyRecordLen: // legacy: high | last | bitmap; the floor is high
			ps.floor, ps.last = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
		default:
			return nil, fmt.Errorf("raft: deduplication record of %d bytes: %w", len(v), core.ErrCorruption)
		}
		if len(v) == 16 {
			if err := loadReplies(r, p, ps); err != nil {
				return nil, err
			}
		}
		d.p[p] = ps
	}
	return d, nil
}

func loadReplies(r core.Reader, p uint64, ps *proposerState) error {
	lo, hi := replyRange(p)
	it := r.NewIter(lo, hi)
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != len(lo)+8 || !bytes.HasPrefix(k, lo) {
			it.Close()
			return fmt.Errorf("raft: deduplication reply key of %d bytes: %w", len(k), core.ErrCorruption)
		}
		seq := binary.BigEndian.Uint64(k[len(lo):])
		var reply []byte
		if v := it.Value(); len(v) > 0 {
			reply = bytes.Clone(v)
		}
		ps.seqs = append(ps.seqs, seq) // ascending: big-endian keys
		ps.replies[seq] = reply
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("raft: read deduplication replies of %x: %w", p, err)
	}
	if len(ps.seqs) > keptReplies {
		return fmt.Errorf("raft: %d kept replies of proposer %x, more than %d: %w", len(ps.seqs), p, keptReplies, core.ErrCorruption)
	}
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, core.ErrNotFound) }
