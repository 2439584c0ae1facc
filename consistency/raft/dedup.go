package raft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
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
// maxProposers*keptReplies*(maxKeptReply+keyOverhead) bytes per shard in
// memory. On disk, a chunk also holds the evicted replies written with a
// kept one until that one is evicted (numbers rise, so chunks die about
// in the order they were written).
//
// The state lives in the state machine's engine under keys outside the
// Store's key space, so snapshots carry it:
//
//	\xffraft/dedup                     the remembered proposer IDs, 8 bytes each, ascending
//	\xffraft/dedup/<8-byte ID>         floor (8) | index of its last applied entry (8) | 2 (format)
//	\xffraft/dedup/<8-byte ID>/c<8-byte chunk>  kept replies: repeated uvarint seq | uvarint len+1 | reply (len+1 0: not kept)
//	\xffraft/dedup/<8-byte ID>/<8-byte seq>  (earlier format) one kept reply (core.EncodeReply; empty: not kept)
//
// Reply chunks: a proposer's replies are not one key each (a Set per
// write and a Delete per eviction were about a third of the on-disk state
// machine's CPU per write) but one chunk per engine commit holding the
// replies kept since the previous one (writeChunks). A chunk is deleted
// once none of its sequence numbers is kept. Loading reads the chunks in
// ascending chunk order (a later chunk's copy of a number wins) and keeps
// the numbers above the floor: every kept number is above the floor and
// every evicted one at or below it, so the dead entries of a chunk still
// held by a live one are told apart without a record of their own.
//
// Ordering rules of the chunks:
//   - flush seals the changes since the previous flush (the numbers
//     admitted, kept or evicted, with their replies as of the flush) into
//     the proposer's open list; it runs at every commit of the state
//     machine, with the applied record, so what is sealed is the state
//     after the latest commit.
//   - writeChunks writes everything sealed as one new chunk per proposer
//     (and the deletions of dead chunks) into the engine batch that
//     carries the commits sealed: the on-disk state machine's
//     updateBatch calls it for every engine batch it commits (it holds
//     every commit not yet in the engine), the in-memory one after flush.
//     So a chunk is in the engine batch of the applied record and proposer
//     record it matches, never in an earlier one.
//   - A chunk number is never reused by a remembered proposer: they rise
//     (Open and snapshot restores continue after the highest on disk); a
//     forgotten proposer's keys are deleted (flush) before any chunk of
//     its new record is written, in the same or an earlier batch.
//
// The record's third field (2) makes an earlier build refuse the state
// (ErrCorruption, a record of 17 bytes) rather than load a proposer
// without its kept replies: builds before it quarantine such a state
// machine at start-up, so they cannot run on it (docs/operations.md). A
// record of at least 17 bytes whose third field is above recordFormat was
// written by a newer build: loading fails with ErrNewerFormat, not
// ErrCorruption, so the start-up check refuses to start the replica
// instead of moving its state aside. Records of 16 bytes (kept replies
// one key each) load, their keys deleted as their numbers are evicted or
// rewritten.
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

// ErrNewerFormat: a state machine record is in a format newer than this
// build knows (written by a later build). It does not wrap
// core.ErrCorruption: the data is not bad, this build is too old for it,
// so the start-up check refuses to start the replica and leaves its state
// as it is rather than quarantine it (rebuild.go).
var ErrNewerFormat = errors.New("record format newer than this build")

var (
	dedupListKey   = []byte("\xffraft/dedup")
	dedupKeyPrefix = []byte("\xffraft/dedup/")
	// dedupEnd bounds every dedup key: [dedupListKey, dedupEnd).
	dedupEnd = []byte("\xffraft/deduq")
)

const (
	legacyRecordLen = 16 + 1024/8
	recordLen       = 17 // floor | last | recordFormat
	recordFormat    = 2  // kept replies in chunks
	// legacyChunk is the placement of a kept reply of the earlier format
	// (a key of its own); chunk numbers start at 1.
	legacyChunk = 0
)

// proposerState is one proposer's record.
type proposerState struct {
	floor, last uint64
	seqs        []uint64          // kept sequence numbers, ascending
	replies     map[uint64][]byte // seq -> reply (nil: none kept)
	touched     []uint64          // seqs set or evicted since the last flush (may repeat)
	dirty       bool              // floor or last changed since the last flush
	queued      bool              // in dedup.changed
	// Reply chunks (see the ordering rules above).
	open   []sealedReply     // sealed by flush, not yet in a chunk, in order
	where  map[uint64]uint64 // seq -> the chunk holding it (legacyChunk: a key of its own)
	chunks map[uint64]int    // chunk -> how many kept numbers it holds
	next   uint64            // the next chunk's number
	// orphans: chunks found on load holding no kept number, deleted with
	// the next chunk written.
	orphans []uint64
}

// sealedReply is a change sealed by flush: seq kept with reply, or
// evicted.
type sealedReply struct {
	seq     uint64
	reply   []byte
	evicted bool
}

func newProposerState() *proposerState {
	return &proposerState{replies: map[uint64][]byte{}, where: map[uint64]uint64{}, chunks: map[uint64]int{}, next: 1}
}

// dedup is the state machine's deduplication state.
type dedup struct {
	p       map[uint64]*proposerState
	list    bool     // the proposer list changed
	dropped []uint64 // forgotten proposers whose keys must be deleted
	changed []uint64 // proposers with changes since the last flush
	sealed  []uint64 // proposers with sealed changes not yet in a chunk (may repeat)
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

// keep records the reply of the applied proposal (proposer, seq). It
// returns the reply's encoding when it made one (nil: not kept), for the
// entry's result: the kept bytes are never modified, and the result gets
// them with no spare capacity, so its users cannot write into them.
func (d *dedup) keep(proposer, seq uint64, reply core.Reply) []byte {
	ps := d.p[proposer]
	if ps == nil {
		return nil
	}
	if _, ok := ps.replies[seq]; !ok {
		return nil
	}
	b := core.EncodeReply(reply)
	b = b[:len(b):len(b)]
	if len(b) > maxKeptReply {
		return b
	}
	ps.replies[seq] = b
	d.touch(proposer, ps, seq)
	return b
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

// chunkKey is the key of proposer p's reply chunk n; it sorts in
// replyRange(p), so forgetting p deletes its chunks.
func chunkKey(p, n uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dedupKey(p), '/', 'c'), n)
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
			// The key and the record in one allocation (b may keep
			// them: an engine batch's Set need not copy).
			kv := make([]byte, 0, len(dedupKeyPrefix)+8+recordLen)
			kv = binary.BigEndian.AppendUint64(append(kv, dedupKeyPrefix...), p)
			k := len(kv)
			kv = binary.BigEndian.AppendUint64(kv, ps.floor)
			kv = binary.BigEndian.AppendUint64(kv, ps.last)
			kv = append(kv, recordFormat)
			b.Set(kv[:k:k], kv[k:])
			ps.dirty = false
		}
		// Seal the replies (writeChunks writes them): a number's state
		// as of this flush, the commit being made.
		slices.Sort(ps.touched)
		for _, s := range slices.Compact(ps.touched) {
			r, ok := ps.replies[s]
			ps.open = append(ps.open, sealedReply{seq: s, reply: r, evicted: !ok})
		}
		if len(ps.touched) > 0 {
			d.sealed = append(d.sealed, p)
		}
		ps.touched = ps.touched[:0]
	}
	d.changed = d.changed[:0]
	d.tx.flush(b)
}

// chunksPending reports whether writeChunks has anything to write.
func (d *dedup) chunksPending() bool { return len(d.sealed) > 0 }

// writeChunks writes the replies sealed by flush into b: one new chunk per
// proposer, and the deletions of the chunks (and earlier-format keys) that
// no longer hold a kept number. b must carry the commits sealed (see the
// ordering rules at the top).
func (d *dedup) writeChunks(b core.Batch) {
	if len(d.sealed) == 0 {
		return
	}
	slices.Sort(d.sealed)
	for _, p := range slices.Compact(d.sealed) {
		ps := d.p[p]
		if ps == nil || len(ps.open) == 0 {
			continue // forgotten since: its keys are deleted
		}
		ps.writeChunk(p, b)
	}
	d.sealed = d.sealed[:0]
}

// writeChunk writes ps's sealed replies as chunk ps.next.
func (ps *proposerState) writeChunk(p uint64, b core.Batch) {
	n := ps.next
	// The chunk's content: each number's last sealed state. A number
	// already in another chunk moves out of it.
	content := make(map[uint64][]byte, len(ps.open))
	for _, o := range ps.open {
		if c, ok := ps.where[o.seq]; ok && c != n {
			ps.unplace(p, o.seq, c, b)
		}
		if o.evicted {
			if _, ok := content[o.seq]; ok {
				delete(content, o.seq)
				delete(ps.where, o.seq)
			}
			continue
		}
		content[o.seq] = o.reply
		ps.where[o.seq] = n
	}
	clear(ps.open)
	ps.open = ps.open[:0]
	for _, c := range ps.orphans {
		b.Delete(chunkKey(p, c))
	}
	ps.orphans = nil
	if len(content) == 0 {
		return
	}
	seqs := slices.Sorted(maps.Keys(content))
	var v []byte
	for _, s := range seqs {
		v = binary.AppendUvarint(v, s)
		r := content[s]
		if r == nil {
			v = append(v, 0)
			continue
		}
		v = binary.AppendUvarint(v, uint64(len(r))+1)
		v = append(v, r...)
	}
	b.Set(chunkKey(p, n), v)
	ps.chunks[n] = len(seqs)
	ps.next++
}

// unplace takes seq out of chunk c, deleting the chunk (or the
// earlier-format key) once it holds no kept number.
func (ps *proposerState) unplace(p, seq, c uint64, b core.Batch) {
	delete(ps.where, seq)
	if c == legacyChunk {
		b.Delete(replyKey(p, seq))
		return
	}
	ps.chunks[c]--
	if ps.chunks[c] <= 0 {
		delete(ps.chunks, c)
		b.Delete(chunkKey(p, c))
	}
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

// pending reports whether flush or writeChunks has anything to write.
func (d *dedup) pending() bool {
	return d.list || len(d.dropped) > 0 || len(d.changed) > 0 || d.tx.pending() || d.chunksPending()
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
		switch {
		case len(v) == 16, len(v) == legacyRecordLen: // legacy bitmap: high | last | bitmap; the floor is high
		case len(v) == recordLen && v[16] == recordFormat:
		case len(v) >= recordLen && len(v) != legacyRecordLen && v[16] > recordFormat:
			return nil, fmt.Errorf("raft: deduplication record of proposer %x has format %d, this build reads up to %d: %w", p, v[16], recordFormat, ErrNewerFormat)
		default:
			return nil, fmt.Errorf("raft: deduplication record of %d bytes: %w", len(v), core.ErrCorruption)
		}
		ps.floor, ps.last = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
		if len(v) != legacyRecordLen {
			if err := loadReplies(r, p, ps); err != nil {
				return nil, err
			}
		}
		d.p[p] = ps
	}
	return d, nil
}

// loadReplies reads proposer p's kept replies: the earlier format's keys,
// then the chunks in ascending order (a later copy of a number wins); the
// numbers at or below the floor were evicted. A chunk left with no kept
// number is deleted when a number it holds is next rewritten; one that
// never held a kept number after the load is deleted by the next chunk
// written (orphans).
func loadReplies(r core.Reader, p uint64, ps *proposerState) error {
	lo, hi := replyRange(p)
	it := r.NewIter(lo, hi)
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if !bytes.HasPrefix(k, lo) {
			it.Close()
			return fmt.Errorf("raft: deduplication reply key %q outside its range: %w", k, core.ErrCorruption)
		}
		switch rest := k[len(lo):]; {
		case len(rest) == 8: // earlier format: one reply
			seq := binary.BigEndian.Uint64(rest)
			if seq <= ps.floor {
				continue
			}
			var reply []byte
			if v := it.Value(); len(v) > 0 {
				reply = bytes.Clone(v)
			}
			if _, ok := ps.replies[seq]; !ok {
				ps.seqs = append(ps.seqs, seq)
			}
			ps.replies[seq] = reply
			ps.where[seq] = legacyChunk
		case len(rest) == 9 && rest[0] == 'c':
			n := binary.BigEndian.Uint64(rest[1:])
			if n == legacyChunk {
				it.Close()
				return fmt.Errorf("raft: deduplication chunk 0 of %x: %w", p, core.ErrCorruption)
			}
			if err := ps.loadChunk(n, it.Value()); err != nil {
				it.Close()
				return fmt.Errorf("raft: deduplication chunk %d of %x: %w", n, p, err)
			}
			ps.next = max(ps.next, n+1)
		default:
			it.Close()
			return fmt.Errorf("raft: deduplication reply key of %d bytes: %w", len(k), core.ErrCorruption)
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("raft: read deduplication replies of %x: %w", p, err)
	}
	for c, n := range ps.chunks {
		if n == 0 {
			delete(ps.chunks, c) // holds only evicted numbers: see orphans
			ps.orphans = append(ps.orphans, c)
		}
	}
	slices.Sort(ps.orphans)
	slices.Sort(ps.seqs)
	if len(ps.seqs) > keptReplies {
		return fmt.Errorf("raft: %d kept replies of proposer %x, more than %d: %w", len(ps.seqs), p, keptReplies, core.ErrCorruption)
	}
	return nil
}

// loadChunk reads chunk n (chunks come in ascending order).
func (ps *proposerState) loadChunk(n uint64, v []byte) error {
	if _, ok := ps.chunks[n]; !ok {
		ps.chunks[n] = 0 // known even if it keeps no number: an orphan (loadReplies)
	}
	for len(v) > 0 {
		seq, k := binary.Uvarint(v)
		if k <= 0 {
			return fmt.Errorf("bad sequence number: %w", core.ErrCorruption)
		}
		v = v[k:]
		l, k := binary.Uvarint(v)
		if k <= 0 || l > uint64(len(v)-k)+1 {
			return fmt.Errorf("bad reply length: %w", core.ErrCorruption)
		}
		v = v[k:]
		var reply []byte
		if l > 0 {
			reply = bytes.Clone(v[:l-1])
			v = v[l-1:]
		}
		if seq <= ps.floor {
			continue // evicted
		}
		if c, ok := ps.where[seq]; ok {
			if c != legacyChunk {
				ps.chunks[c]--
			}
		} else {
			ps.seqs = append(ps.seqs, seq)
		}
		ps.replies[seq] = reply
		ps.where[seq] = n
		ps.chunks[n]++
	}
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, core.ErrNotFound) }
