package primarybackup

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dialkv/dialkv/core"
)

// Message kinds.
const (
	msgAppend byte = 1 // primary -> backup: entries (possibly none: a probe)
	msgAck    byte = 2 // backup -> primary: the highest sequence number applied, and whether it saw a gap
)

// entry is one replicated write: the effects (engine writes and store
// bookkeeping, core.Effects) of a transaction the primary applied at its
// clock reading Now (unix nanoseconds). Backups apply the effects instead
// of running the transaction again.
type entry struct {
	Seq uint64
	Now int64
	Fx  core.Effects
}

var (
	errShort    = errors.New("primarybackup: message truncated")
	errBadWrite = errors.New("primarybackup: bad write kind in an entry")
)

type enc struct{ b []byte }

func (e *enc) u(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) i(v int64)  { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bytes(p []byte) {
	e.u(uint64(len(p)))
	e.b = append(e.b, p...)
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) u() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) i() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.u()
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.err = errShort
		return nil
	}
	p := d.b[:n:n] // aliases the message, which is immutable (consistency.Message): a backup's store keeps these slices
	d.b = d.b[n:]
	return p
}

func encodeEntry(e *enc, en entry) {
	e.u(en.Seq)
	e.u(uint64(en.Now))
	e.u(en.Fx.Counter)
	e.i(en.Fx.Keys)
	e.i(en.Fx.Expired)
	e.i(en.Fx.Warns)
	e.u(uint64(len(en.Fx.Writes)))
	for _, w := range en.Fx.Writes {
		e.bytes(w.Key)
		if w.Delete {
			e.u(1)
			continue
		}
		e.u(0)
		e.bytes(w.Value)
	}
}

// decodeEntry decodes one entry into en, reusing en's array of writes: the
// decoded entry lives until the next call with the same en. Byte slices
// alias the input.
func decodeEntry(d *dec, en *entry) {
	en.Seq = d.u()
	en.Now = int64(d.u())
	en.Fx.Counter = d.u()
	en.Fx.Keys = d.i()
	en.Fx.Expired = d.i()
	en.Fx.Warns = d.i()
	clear(en.Fx.Writes)
	en.Fx.Writes = en.Fx.Writes[:0]
	n := d.u()
	if n > uint64(len(d.b)) {
		d.err = errShort
		return
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		w := core.EffectWrite{Key: d.bytes()}
		switch d.u() {
		case 0:
			w.Value = d.bytes()
		case 1:
			w.Delete = true
		default:
			if d.err == nil {
				d.err = errBadWrite
			}
		}
		en.Fx.Writes = append(en.Fx.Writes, w)
	}
}

// appendBound is an upper bound of the size of an append of raws.
func appendBound(raws ...[]byte) int {
	n := 1 + 2*binary.MaxVarintLen64
	for _, r := range raws {
		n += binary.MaxVarintLen64 + len(r)
	}
	return n
}

// encodeAppend appends to dst an append message of raw (already encoded)
// entries.
func encodeAppend(dst []byte, primarySeq uint64, raws ...[]byte) []byte {
	e := enc{b: append(dst, msgAppend)}
	e.u(primarySeq)
	e.u(uint64(len(raws)))
	for _, r := range raws {
		e.bytes(r)
	}
	return e.b
}

// ackBound is an upper bound of the size of an acknowledgement.
const ackBound = 2 + 2*binary.MaxVarintLen64

// encodeAck appends to dst an acknowledgement.
func encodeAck(dst []byte, applied uint64, gap bool) []byte {
	e := enc{b: append(dst, msgAck)}
	e.u(applied)
	if gap {
		e.u(1)
	} else {
		e.u(0)
	}
	return e.b
}

// entryBound is an upper bound of the size of en encoded.
func entryBound(en entry) int {
	n := 7 * binary.MaxVarintLen64
	for _, w := range en.Fx.Writes {
		n += 3*binary.MaxVarintLen64 + len(w.Key) + len(w.Value)
	}
	return n
}

// appendEntry appends en, encoded on its own (the form kept in the log),
// to dst.
func appendEntry(dst []byte, en entry) []byte {
	e := enc{b: dst}
	encodeEntry(&e, en)
	return e.b
}

// arena hands out the bytes of what a replica sends and logs (message
// bodies, log entries) from shared blocks: they are never modified once
// made, so many can share one array, and making one costs no allocation of
// its own. A block lives as long as anything made from it.
type arena struct{ buf []byte }

const arenaBlock = 8 << 10

// room returns an empty slice with capacity n at the free end of the
// current block (a new block when too little is left). Fill it (appending
// at most n bytes), then pass the result to keep.
func (a *arena) room(n int) []byte {
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, max(arenaBlock, n))
	}
	l := len(a.buf)
	return a.buf[l : l : l+n]
}

// keep marks b, filled from the last room, as used and returns it. A b
// that outgrew its room lives in its own array: the block is not advanced.
func (a *arena) keep(b []byte) []byte {
	l := len(a.buf)
	if len(b) > 0 && l+len(b) <= cap(a.buf) && &a.buf[:l+1][l] == &b[0] {
		a.buf = a.buf[:l+len(b)]
	}
	return b[:len(b):len(b)]
}

// parseRaw decodes raw into en (see decodeEntry for the reuse of en).
func parseRaw(raw []byte, en *entry) error {
	d := dec{b: raw}
	decodeEntry(&d, en)
	if d.err != nil {
		return fmt.Errorf("primarybackup: decode entry: %w", d.err)
	}
	return nil
}
