package transport

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/apache/thrift/lib/go/thrift"

	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// The load generator's side of a batch in the binary protocol, without a
// protocol call per field: dialkv bench shares the machine's two cores with
// the node it measures, and at batches of 100 the generated writer's dozen
// interface calls per command and the protocol-driven walk of the reply were
// about two fifths of its CPU (docs/performance.md, issue 3, session 10).
//
//   - appendExecuteBinary writes an `execute` request's bytes itself: the
//     generated writer's bytes exactly (TestAppendExecuteBinaryBytes
//     compares them), the request options excepted, which it hands to the
//     generated writer (one struct per request).
//   - countBinary recognises only the reply a node writes to a batch of
//     plain replies (executeSuccess: a success, replies of scalar fields)
//     and counts it in place; any other frame — an exception, a nested
//     reply, an unknown field type, a short or over-long field, trailing
//     bytes, a header other than the strict one — is left to CountExecute's
//     protocol walk (not recognised), so that the answer stays
//     DecodeExecute's (FuzzCountExecute, TestCountBinaryRecognises).

// appendExecuteBinary appends the body of an `execute` request (the message
// without the 4-byte frame header) to b as the binary protocol's
// generated writer does: the strict message header, execute_args' field 1
// (opts, by the generated writer) and field 2 (the commands), the stop.
func (c *ClientCodec) appendExecuteBinary(b []byte, seq int32, opts *gen.RequestOptions, cmds []*gen.Command) ([]byte, error) {
	b = binary.BigEndian.AppendUint32(b, uint32(thrift.VERSION_1)|uint32(thrift.CALL))
	b = appendBinaryString(b, "execute")
	b = binary.BigEndian.AppendUint32(b, uint32(seq))
	// Field 1: the options (nil writes an empty struct, as the generated
	// writer does), written by the generated writer into the same buffer.
	b = append(b, byte(thrift.STRUCT), 0, 1)
	c.w.b = b
	err := opts.Write(context.Background(), c.oprot)
	b, c.w.b = c.w.b, nil
	if err != nil {
		return b, thrift.PrependError(fmt.Sprintf("%T error writing struct: ", opts), err)
	}
	// Field 2: list<Command>; a Command is field 1 (name), field 2 (argv,
	// if set: a list of binaries), stop. A nil command is the generated
	// writer's empty struct.
	b = append(b, byte(thrift.LIST), 0, 2, byte(thrift.STRUCT))
	b = binary.BigEndian.AppendUint32(b, uint32(len(cmds)))
	for _, cmd := range cmds {
		if cmd != nil {
			b = append(b, byte(thrift.STRING), 0, 1)
			b = appendBinaryString(b, cmd.Name)
			if cmd.Argv != nil {
				b = append(b, byte(thrift.LIST), 0, 2, byte(thrift.STRING))
				b = binary.BigEndian.AppendUint32(b, uint32(len(cmd.Argv)))
				for _, a := range cmd.Argv {
					b = binary.BigEndian.AppendUint32(b, uint32(len(a)))
					b = append(b, a...)
				}
			}
		}
		b = append(b, byte(thrift.STOP))
	}
	return append(b, byte(thrift.STOP)), nil
}

// appendBinaryString appends a string in the binary protocol: its length
// as an i32, then its bytes.
func appendBinaryString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// executeReplyHeader is the strict binary header of a REPLY message of
// `execute`, up to its sequence number.
var executeReplyHeader = []byte{0x80, 0x01, 0x00, byte(thrift.REPLY), 0, 0, 0, 7, 'e', 'x', 'e', 'c', 'u', 't', 'e'}

// countBinary counts the replies and error replies of frame (a reply
// message without its 4-byte header, in the binary protocol) to the
// `execute` request seq, if frame is the reply of plain replies a node
// writes; ok is false for any other frame (see above), which the caller
// decodes by the protocol instead. Where it answers, it answers as
// executeCount's walk does: the same fields read, the same fields skipped.
func countBinary(frame []byte, seq int32) (replies, failed int, ok bool) {
	if len(frame) < len(executeReplyHeader)+4 || string(frame[:len(executeReplyHeader)]) != string(executeReplyHeader) {
		return 0, 0, false
	}
	r := frameWalk{b: frame[len(executeReplyHeader):]}
	if s, ok := r.i32(); !ok || s != seq {
		return 0, 0, false
	}
	// DialKVExecuteResult: field 0 (the response), then the stop.
	if typ, id, ok := r.field(); !ok || typ != thrift.STRUCT || id != 0 {
		return 0, 0, false
	}
	// ExecuteResponse: field 1, the replies (exactly once); binaries
	// (token, served_by) and bools (stale) skipped, as the walk skips
	// them.
	seen := false
	for {
		typ, id, ok := r.field()
		switch {
		case !ok:
			return 0, 0, false
		case typ == thrift.STOP:
			if !seen {
				return 0, 0, false
			}
		case typ == thrift.LIST && id == 1 && !seen:
			seen = true
			if replies, failed, ok = r.plainReplies(); !ok {
				return 0, 0, false
			}
			continue
		case typ == thrift.STRING:
			if !r.skipBinary() {
				return 0, 0, false
			}
			continue
		case typ == thrift.BOOL:
			if !r.skip(1) {
				return 0, 0, false
			}
			continue
		default:
			return 0, 0, false
		}
		break
	}
	// The result's stop, and nothing after it.
	if typ, _, ok := r.field(); !ok || typ != thrift.STOP || len(r.b) != 0 {
		return 0, 0, false
	}
	return replies, failed, true
}

// frameWalk reads a binary-protocol frame in place; every read reports
// false instead of reading past the end.
type frameWalk struct{ b []byte }

func (r *frameWalk) skip(n int) bool {
	if n < 0 || len(r.b) < n {
		return false
	}
	r.b = r.b[n:]
	return true
}

func (r *frameWalk) i32() (int32, bool) {
	if len(r.b) < 4 {
		return 0, false
	}
	v := int32(binary.BigEndian.Uint32(r.b))
	r.b = r.b[4:]
	return v, true
}

// field reads a field header: its type, and its id unless it is the stop.
func (r *frameWalk) field() (thrift.TType, int16, bool) {
	if len(r.b) < 1 {
		return 0, 0, false
	}
	typ := thrift.TType(r.b[0])
	if typ == thrift.STOP {
		r.b = r.b[1:]
		return typ, 0, true
	}
	if len(r.b) < 3 {
		return 0, 0, false
	}
	id := int16(binary.BigEndian.Uint16(r.b[1:]))
	r.b = r.b[3:]
	return typ, id, true
}

// list reads a list header whose element type must be elem and returns
// its size: false for another element type, a negative size, or a size
// over limit or over the bytes left (every element takes at least one
// byte: a struct's stop, a binary's length prefix being more).
func (r *frameWalk) list(elem thrift.TType, limit int64) (int, bool) {
	if len(r.b) < 5 || thrift.TType(r.b[0]) != elem {
		return 0, false
	}
	size := int64(int32(binary.BigEndian.Uint32(r.b[1:])))
	r.b = r.b[5:]
	if size < 0 || size > limit || size > int64(len(r.b)) {
		return 0, false
	}
	return int(size), true
}

// skipBinary skips a binary's length and bytes.
func (r *frameWalk) skipBinary() bool {
	n, ok := r.i32()
	return ok && r.skip(int(n))
}

// plainReplies walks list<Reply> of plain replies: each has its kind
// (field 1, an i32; the last one counts, as in the walk) and otherwise only
// fields of type i32, i64, double or binary, skipped. A list whose element
// type is not a struct, or a reply with any other field (an array, an
// error, siblings), is not recognised.
func (r *frameWalk) plainReplies() (replies, failed int, ok bool) {
	n, ok := r.list(thrift.STRUCT, math.MaxInt32)
	if !ok {
		return 0, 0, false
	}
	for range n {
		kind, seen := int32(0), false
		for {
			typ, id, ok := r.field()
			if !ok {
				return 0, 0, false
			}
			switch typ {
			case thrift.STOP:
			case thrift.I32:
				v, ok := r.i32()
				if !ok {
					return 0, 0, false
				}
				if id == 1 {
					kind, seen = v, true
				}
				continue
			case thrift.I64, thrift.DOUBLE:
				if !r.skip(8) {
					return 0, 0, false
				}
				continue
			case thrift.STRING:
				if !r.skipBinary() {
					return 0, 0, false
				}
				continue
			default:
				return 0, 0, false
			}
			break
		}
		if !seen {
			return 0, 0, false
		}
		if gen.ReplyKind(kind) == gen.ReplyKind_ERROR {
			failed++
		}
	}
	return n, failed, true
}
