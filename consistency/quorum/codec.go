package quorum

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// errShort is returned when an encoded record ends early.
var errShort = errors.New("quorum: truncated record")

// enc appends a compact binary encoding: uvarints, length-prefixed bytes.
type enc struct{ b []byte }

func (e *enc) u(v uint64)     { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) i(v int64)      { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bytes(p []byte) { e.u(uint64(len(p))); e.b = append(e.b, p...) }
func (e *enc) str(s string)   { e.u(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) byte1(c byte)   { e.b = append(e.b, c) }
func (e *enc) u64(v uint64)   { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) boolean(v bool) { e.byte1(boolByte(v)) }
func (e *enc) ts(t Timestamp) { e.i(t.Wall); e.u(uint64(t.Logical)) }
func (e *enc) dot(d Dot)      { e.str(string(d.Node)); e.u(d.C) }
func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// dec reads what enc wrote; the first error sticks and later reads return
// zero values.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *dec) u() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShort)
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
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// n reads a length or count and checks it against what is left, so a
// corrupt record cannot make us allocate huge slices.
func (d *dec) n() int {
	v := d.u()
	if v > uint64(len(d.b)) {
		d.fail(fmt.Errorf("quorum: length %d exceeds record (%d bytes left)", v, len(d.b)))
		return 0
	}
	return int(v)
}

func (d *dec) bytes() []byte {
	n := d.n()
	if d.err != nil {
		return nil
	}
	p := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return p
}

func (d *dec) str() string { return string(d.bytes()) }

func (d *dec) byte1() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail(errShort)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *dec) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail(errShort)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *dec) boolean() bool { return d.byte1() == 1 }
func (d *dec) ts() Timestamp { return Timestamp{Wall: d.i(), Logical: uint32(d.u())} }
func (d *dec) dot() Dot      { return Dot{Node: nodeID(d.str()), C: d.u()} }
