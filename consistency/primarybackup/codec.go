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

// entry is one replicated write: a transaction applied at the primary's
// clock reading Now (unix nanoseconds).
type entry struct {
	Seq uint64
	Now int64
	Txn core.Txn
}

var errShort = errors.New("primarybackup: message truncated")

type enc struct{ b []byte }

func (e *enc) u(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
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

func (d *dec) bytes() []byte {
	n := d.u()
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.err = errShort
		return nil
	}
	p := d.b[:n:n] // aliases the message: decoded entries live only as long as the call that decodes them
	d.b = d.b[n:]
	return p
}

// name decodes a command name; the common ones without an allocation.
func (d *dec) name() string {
	b := d.bytes()
	switch string(b) {
	case "SET":
		return "SET"
	case "DEL":
		return "DEL"
	case "CAS":
		return "CAS"
	case "INCR":
		return "INCR"
	case "INCRBY":
		return "INCRBY"
	case "SADD":
		return "SADD"
	case "SREM":
		return "SREM"
	}
	return string(b)
}

func encodeEntry(e *enc, en entry) {
	e.u(en.Seq)
	e.u(uint64(en.Now))
	e.u(uint64(len(en.Txn.Conds)))
	for _, c := range en.Txn.Conds {
		e.bytes(c.Key)
		e.u(uint64(c.Kind))
		e.u(c.Version)
		e.bytes(c.Value)
	}
	e.u(uint64(len(en.Txn.Cmds)))
	for _, c := range en.Txn.Cmds {
		e.bytes([]byte(c.Name))
		e.u(uint64(len(c.Args)))
		for _, a := range c.Args {
			e.bytes(a)
		}
	}
}

// decodeEntry decodes one entry into en, reusing en's condition, command
// and argument arrays (sc holds the arguments between calls): the decoded
// entry lives until the next call with the same en and sc. Byte slices alias
// the input.
func decodeEntry(d *dec, en *entry, sc *[][]byte) {
	en.Seq = d.u()
	en.Now = int64(d.u())
	en.Txn.Conds = en.Txn.Conds[:0]
	en.Txn.Cmds = en.Txn.Cmds[:0]
	nc := d.u()
	if nc > uint64(len(d.b)) {
		d.err = errShort
		return
	}
	for i := uint64(0); i < nc && d.err == nil; i++ {
		var c core.Condition
		c.Key = d.bytes()
		c.Kind = core.CondKind(d.u())
		c.Version = d.u()
		c.Value = d.bytes()
		en.Txn.Conds = append(en.Txn.Conds, c)
	}
	nm := d.u()
	if nm > uint64(len(d.b)) {
		d.err = errShort
		return
	}
	// Every command's arguments sit in one array, *sc, while it lasts; a
	// command's Args is a full slice expression of it, so appending to one
	// never overwrites the next.
	args := (*sc)[:0]
	defer func() { *sc = args[:0] }()
	for i := uint64(0); i < nm && d.err == nil; i++ {
		c := core.Command{Name: d.name()}
		na := d.u()
		if na > uint64(len(d.b)) {
			d.err = errShort
			return
		}
		if cap(args)-len(args) < int(na) {
			args = make([][]byte, 0, max(int(na), 4*int(nm), 2*cap(args)))
		}
		start := len(args)
		for j := uint64(0); j < na && d.err == nil; j++ {
			args = append(args, d.bytes())
		}
		c.Args = args[start:len(args):len(args)]
		en.Txn.Cmds = append(en.Txn.Cmds, c)
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
	n := 4 * binary.MaxVarintLen64
	for _, c := range en.Txn.Conds {
		n += 4*binary.MaxVarintLen64 + len(c.Key) + len(c.Value)
	}
	for _, c := range en.Txn.Cmds {
		n += 2*binary.MaxVarintLen64 + len(c.Name)
		for _, a := range c.Args {
			n += binary.MaxVarintLen64 + len(a)
		}
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

// parseRaw decodes raw into en (see decodeEntry for the reuse of en and sc).
func parseRaw(raw []byte, en *entry, sc *[][]byte) error {
	d := dec{b: raw}
	decodeEntry(&d, en, sc)
	if d.err != nil {
		return fmt.Errorf("primarybackup: decode entry: %w", d.err)
	}
	return nil
}
