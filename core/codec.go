package core

import (
	"bytes"
	"encoding/binary"
	"math"
)

// Wire encodings of commands, transactions and replies: compact, binary,
// versioned by a leading format byte. Decoders check every length against
// the bytes that remain, so garbage yields a typed CodeErr error, never a
// panic or a huge allocation.
const (
	codecCommand byte = 0xC1
	codecTxn     byte = 0xC2
	codecReply   byte = 0xC3

	maxReplyDepth = 32
)

// EncodeCommand serialises c: 0xC1, uvarint len(name), name, uvarint
// len(args), then each arg as uvarint length + bytes.
func EncodeCommand(c Command) []byte {
	n := 2 + len(c.Name) + binary.MaxVarintLen32
	for _, a := range c.Args {
		n += binary.MaxVarintLen32 + len(a)
	}
	b := make([]byte, 0, n)
	b = append(b, codecCommand)
	return appendCommand(b, c)
}

func appendCommand(b []byte, c Command) []byte {
	b = appendBytes(b, []byte(c.Name))
	b = binary.AppendUvarint(b, uint64(len(c.Args)))
	for _, a := range c.Args {
		b = appendBytes(b, a)
	}
	return b
}

func errDecode(what string) *Error { return Errorf(CodeErr, "malformed %s encoding", what) }

// DecodeCommand parses EncodeCommand's output.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) == 0 || b[0] != codecCommand {
		return Command{}, errDecode("command")
	}
	// One copy of the payload backs every argument (each a capacity-limited
	// slice of it, so appending to one cannot overwrite the next): one
	// allocation instead of one per argument. The caller's b is not kept.
	r := payloadReader{b: bytes.Clone(b[1:])}
	c := readCommandIn(&r, true)
	if r.bad || len(r.b) != 0 {
		return Command{}, errDecode("command")
	}
	return c, nil
}

func readCommand(r *payloadReader) Command { return readCommandIn(r, false) }

// readCommandIn reads a command; its arguments are copies, or slices of
// r's buffer if owned (the caller's copy: DecodeCommand).
func readCommandIn(r *payloadReader, owned bool) Command {
	name := r.bytes()
	n := r.count()
	c := Command{Name: string(name), Args: make([][]byte, 0, n)}
	for i := 0; i < n && !r.bad; i++ {
		a := r.bytes()
		if !owned {
			a = append([]byte{}, a...)
		}
		c.Args = append(c.Args, a)
	}
	return c
}

// EncodeTxn serialises t: 0xC2, uvarint len(conds), each condition (key,
// kind byte, uvarint version, value), uvarint len(cmds), each command.
func EncodeTxn(t Txn) []byte {
	b := []byte{codecTxn}
	b = binary.AppendUvarint(b, uint64(len(t.Conds)))
	for _, c := range t.Conds {
		b = appendBytes(b, c.Key)
		b = append(b, byte(c.Kind))
		b = binary.AppendUvarint(b, c.Version)
		b = appendBytes(b, c.Value)
	}
	b = binary.AppendUvarint(b, uint64(len(t.Cmds)))
	for _, c := range t.Cmds {
		b = appendCommand(b, c)
	}
	return b
}

// DecodeTxn parses EncodeTxn's output.
func DecodeTxn(b []byte) (Txn, error) {
	if len(b) == 0 || b[0] != codecTxn {
		return Txn{}, errDecode("transaction")
	}
	r := payloadReader{b: b[1:]}
	var t Txn
	n := r.count()
	for i := 0; i < n && !r.bad; i++ {
		var c Condition
		c.Key = append([]byte{}, r.bytes()...)
		if len(r.b) == 0 {
			r.bad = true
			break
		}
		c.Kind = CondKind(r.b[0])
		r.b = r.b[1:]
		if c.Kind > CondAbsent {
			r.bad = true
			break
		}
		c.Version = r.uvarint()
		if v := r.bytes(); len(v) > 0 {
			c.Value = append([]byte{}, v...)
		}
		t.Conds = append(t.Conds, c)
	}
	n = r.count()
	for i := 0; i < n && !r.bad; i++ {
		t.Cmds = append(t.Cmds, readCommand(&r))
	}
	if r.bad || len(r.b) != 0 {
		return Txn{}, errDecode("transaction")
	}
	return t, nil
}

// EncodeReply serialises r: 0xC3 then the reply: kind byte, uvarint
// version, then by kind: status/bulk bytes; int zigzag varint; float 8
// bytes; array count + replies; error code, message, condition, version.
func EncodeReply(r Reply) []byte {
	return appendReply([]byte{codecReply}, r)
}

func appendReply(b []byte, r Reply) []byte {
	b = append(b, byte(r.Kind))
	b = binary.AppendUvarint(b, r.Version)
	switch r.Kind {
	case KindStatus, KindBulk:
		b = appendBytes(b, r.Str)
	case KindInt:
		b = binary.AppendVarint(b, r.Int)
	case KindFloat:
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.Float))
	case KindArray:
		b = binary.AppendUvarint(b, uint64(len(r.Array)))
		for _, e := range r.Array {
			b = appendReply(b, e)
		}
	case KindError:
		e := r.Err
		if e == nil {
			e = &Error{Code: CodeErr}
		}
		b = appendBytes(b, []byte(e.Code))
		b = appendBytes(b, []byte(e.Msg))
		b = appendBytes(b, []byte(e.Condition))
		b = binary.AppendUvarint(b, e.Version)
	}
	return b
}

// DecodeReply parses EncodeReply's output.
func DecodeReply(b []byte) (Reply, error) {
	if len(b) == 0 || b[0] != codecReply {
		return Reply{}, errDecode("reply")
	}
	r := payloadReader{b: b[1:]}
	rep := readReply(&r, 0)
	if r.bad || len(r.b) != 0 {
		return Reply{}, errDecode("reply")
	}
	return rep, nil
}

func readReply(r *payloadReader, depth int) Reply {
	if depth > maxReplyDepth || len(r.b) == 0 {
		r.bad = true
		return Reply{}
	}
	rep := Reply{Kind: Kind(r.b[0])}
	r.b = r.b[1:]
	rep.Version = r.uvarint()
	switch rep.Kind {
	case KindNil:
	case KindStatus, KindBulk:
		rep.Str = append([]byte{}, r.bytes()...)
	case KindInt:
		v, n := binary.Varint(r.b)
		if n <= 0 || n != len(binary.AppendVarint(nil, v)) {
			r.bad = true
			return Reply{}
		}
		r.b = r.b[n:]
		rep.Int = v
	case KindFloat:
		if len(r.b) < 8 {
			r.bad = true
			return Reply{}
		}
		rep.Float = math.Float64frombits(binary.LittleEndian.Uint64(r.b))
		r.b = r.b[8:]
	case KindArray:
		n := r.count()
		rep.Array = make([]Reply, 0, n)
		for i := 0; i < n && !r.bad; i++ {
			rep.Array = append(rep.Array, readReply(r, depth+1))
		}
	case KindError:
		e := &Error{}
		e.Code = Code(r.bytes())
		e.Msg = string(r.bytes())
		e.Condition = string(r.bytes())
		e.Version = r.uvarint()
		rep.Err = e
	default:
		r.bad = true
	}
	return rep
}
