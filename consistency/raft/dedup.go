package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/dialkv/dialkv/core"
)

// Proposal deduplication: every proposal carries its proposer's ID (one per
// Service incarnation) and a sequence number. The state machine remembers,
// per proposer, the highest sequence number applied and which of the
// dedupWindow numbers below it were applied, so a proposal that reaches the
// log twice (a forwarded Propose message delivered twice) is applied once:
// the copy gets a DUPLICATE error reply, which no caller waits for. A
// proposal more than dedupWindow numbers older than its proposer's newest
// applied one cannot be told from a copy and is not applied either
// (NOTAPPLIED: the Service answers ErrUnavailable). At most maxProposers
// proposers are remembered; the one applied least recently is forgotten.
//
// The state lives in the state machine's engine under keys outside the
// Store's key space, so snapshots carry it, and on the on-disk state machine
// it is written in the same batch as the entry's writes:
//
//	\xffraft/dedup              the remembered proposer IDs, 8 bytes each, ascending
//	\xffraft/dedup/<8-byte ID>  high (8) | index of its last applied entry (8) | window bitmap
const (
	dedupWindow  = 1024
	maxProposers = 32
)

// Codes of the replies to proposals that were not applied.
const (
	CodeDuplicate  core.Code = "DUPLICATE"
	CodeNotApplied core.Code = "NOTAPPLIED"
)

var (
	dedupListKey   = []byte("\xffraft/dedup")
	dedupKeyPrefix = []byte("\xffraft/dedup/")
)

// window is one proposer's record: bit i of bits is set when sequence
// number high-i was applied (i < dedupWindow).
type window struct {
	high, last uint64
	bits       [dedupWindow / 64]uint64
}

func (w *window) has(seq uint64) bool {
	d := w.high - seq
	return w.bits[d/64]&(1<<(d%64)) != 0
}

func (w *window) set(seq uint64) {
	d := w.high - seq
	w.bits[d/64] |= 1 << (d % 64)
}

// shift moves the window up to newHigh.
func (w *window) shift(newHigh uint64) {
	n := newHigh - w.high
	w.high = newHigh
	if n >= dedupWindow {
		w.bits = [dedupWindow / 64]uint64{}
		return
	}
	var out [dedupWindow / 64]uint64
	words, bits := int(n/64), n%64
	for i := len(out) - 1; i >= words; i-- {
		v := w.bits[i-words] << bits
		if bits > 0 && i-words-1 >= 0 {
			v |= w.bits[i-words-1] >> (64 - bits)
		}
		out[i] = v
	}
	w.bits = out
}

// dedup is the state machine's deduplication state.
type dedup struct {
	w     map[uint64]*window
	dirty map[uint64]bool // proposers whose record changed since the last write
	list  bool            // the proposer list changed
}

func newDedup() *dedup { return &dedup{w: map[uint64]*window{}, dirty: map[uint64]bool{}} }

// admit decides whether proposal (proposer, seq) of log entry index is
// applied, and records it. Proposer 0 (proposals of version 1) is always
// applied.
func (d *dedup) admit(proposer, seq, index uint64) *core.Error {
	if proposer == 0 {
		return nil
	}
	w := d.w[proposer]
	if w == nil {
		if len(d.w) >= maxProposers {
			d.evict()
		}
		w = &window{high: seq}
		d.w[proposer] = w
		d.list = true
	}
	switch {
	case seq > w.high:
		w.shift(seq)
	case w.high-seq >= dedupWindow:
		return core.Errorf(CodeNotApplied, "proposal %d of proposer %x is older than the deduplication window: not applied", seq, proposer)
	case w.has(seq):
		return core.Errorf(CodeDuplicate, "proposal %d of proposer %x was already applied", seq, proposer)
	}
	w.set(seq)
	w.last = index
	d.dirty[proposer] = true
	return nil
}

// evict forgets the proposer applied least recently (ties: lowest ID).
func (d *dedup) evict() {
	var victim uint64
	first := true
	for p, w := range d.w {
		if first || w.last < d.w[victim].last || (w.last == d.w[victim].last && p < victim) {
			victim, first = p, false
		}
	}
	delete(d.w, victim)
	delete(d.dirty, victim)
	d.list = true
}

func dedupKey(p uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), dedupKeyPrefix...), p)
}

// flush writes the changed records into b.
func (d *dedup) flush(b core.Batch) {
	if d.list {
		ids := make([]uint64, 0, len(d.w))
		for p := range d.w {
			ids = append(ids, p)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		var v []byte
		for _, p := range ids {
			v = binary.BigEndian.AppendUint64(v, p)
		}
		b.Set(dedupListKey, v)
		d.list = false
	}
	for p := range d.dirty {
		w := d.w[p]
		v := make([]byte, 0, 16+dedupWindow/8)
		v = binary.BigEndian.AppendUint64(v, w.high)
		v = binary.BigEndian.AppendUint64(v, w.last)
		for _, x := range w.bits {
			v = binary.BigEndian.AppendUint64(v, x)
		}
		b.Set(dedupKey(p), v)
	}
	clear(d.dirty)
}

// pending reports whether flush has anything to write.
func (d *dedup) pending() bool { return d.list || len(d.dirty) > 0 }

// loadDedup reads the state from an engine (empty when there is none).
func loadDedup(get func([]byte) ([]byte, error)) (*dedup, error) {
	d := newDedup()
	list, err := get(dedupListKey)
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
		v, err := get(dedupKey(p))
		if err != nil {
			return nil, fmt.Errorf("raft: read deduplication record %x: %w", p, err)
		}
		if len(v) != 16+dedupWindow/8 {
			return nil, fmt.Errorf("raft: deduplication record of %d bytes: %w", len(v), core.ErrCorruption)
		}
		w := &window{high: binary.BigEndian.Uint64(v), last: binary.BigEndian.Uint64(v[8:])}
		for j := range w.bits {
			w.bits[j] = binary.BigEndian.Uint64(v[16+8*j:])
		}
		d.w[p] = w
	}
	return d, nil
}

func isNotFound(err error) bool { return errors.Is(err, core.ErrNotFound) }
