package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"math"

	"github.com/apache/thrift/lib/go/thrift"

	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// The generated writer of a batch's reply makes, per reply, a dozen
// interface calls into the protocol (a field header, a value and a field
// end per field, the struct's begin, stop and end), each appending a few
// bytes. executeSuccess writes the same bytes: on the binary protocol over
// the server's reply buffer it appends the reply list's common replies
// (kind, value, integer, float, version) itself and hands any other (an
// array, an error, siblings) to the generated writer; on any other
// protocol or transport it is the generated writer. TestExecuteSuccessBytes
// compares both byte for byte; TestExecuteSuccessFields fails when the IDL
// gives Reply or ExecuteResponse a field this writer does not know.

// executeSuccess is the DialKVExecuteResult of a successful `execute`
// (Success set, no exception), for writing only.
type executeSuccess struct{ resp *gen.ExecuteResponse }

var _ thrift.TStruct = (*executeSuccess)(nil)

// errWriteOnly is executeSuccess's Read: it is only ever written.
var errWriteOnly = errors.New("transport: an execute result being written is not read")

// Read is not supported: the result is only written.
func (r *executeSuccess) Read(context.Context, thrift.TProtocol) error { return errWriteOnly }

// Write writes the result as gen.DialKVExecuteResult{Success: r.resp}.Write
// does.
func (r *executeSuccess) Write(ctx context.Context, oprot thrift.TProtocol) error {
	bp, ok := oprot.(*binaryProtocol)
	var w *replyWriter
	if ok {
		w, _ = bp.t.(*replyWriter)
	}
	if w == nil || r.resp == nil {
		return (&gen.DialKVExecuteResult{Success: r.resp}).Write(ctx, oprot)
	}
	// execute_result: field 0 (success), an ExecuteResponse: field 1, the
	// list of replies. (Structs have no begin or end bytes in the binary
	// protocol; a field is its type, its id, its value.)
	b := append(w.b, byte(thrift.STRUCT), 0, 0)
	b = append(b, byte(thrift.LIST), 0, 1, byte(thrift.STRUCT))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.resp.Replies)))
	for _, rep := range r.resp.Replies {
		if rep == nil || rep.Array != nil || rep.Error != nil || rep.Siblings != nil {
			// Rare: the generated writer, appending to the same buffer.
			w.b = b
			if err := rep.Write(ctx, oprot); err != nil {
				return thrift.PrependError("*dialkv.Reply error writing struct: ", err)
			}
			b = w.b
			continue
		}
		b = appendPlainReply(b, rep)
	}
	// The response's optional fields 2 (token), 3 (served_by), 4 (stale),
	// its stop, then the result's stop.
	if r.resp.Token != nil {
		b = appendBinaryField(b, 2, r.resp.Token)
	}
	if r.resp.ServedBy != nil {
		b = append(b, byte(thrift.STRING), 0, 3)
		b = binary.BigEndian.AppendUint32(b, uint32(len(*r.resp.ServedBy)))
		b = append(b, *r.resp.ServedBy...)
	}
	if r.resp.Stale != nil {
		v := byte(0)
		if *r.resp.Stale {
			v = 1
		}
		b = append(b, byte(thrift.BOOL), 0, 4, v)
	}
	w.b = append(b, byte(thrift.STOP), byte(thrift.STOP))
	return nil
}

// appendPlainReply appends a Reply without array, error or siblings as the
// generated writer writes it in the binary protocol: fields 1 (kind), 2
// (str), 3 (int_val), 4 (dbl), 7 (version), each if set, then the stop.
func appendPlainReply(b []byte, r *gen.Reply) []byte {
	b = append(b, byte(thrift.I32), 0, 1)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Kind))
	if r.Str != nil {
		b = appendBinaryField(b, 2, r.Str)
	}
	if r.IntVal != nil {
		b = appendI64Field(b, 3, uint64(*r.IntVal))
	}
	if r.Dbl != nil {
		b = append(b, byte(thrift.DOUBLE), 0, 4)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(*r.Dbl))
	}
	if r.Version != nil {
		b = appendI64Field(b, 7, uint64(*r.Version))
	}
	return append(b, byte(thrift.STOP))
}

// appendBinaryField appends field id, a binary value, in the binary
// protocol (ids here are below 256).
func appendBinaryField(b []byte, id byte, v []byte) []byte {
	b = append(b, byte(thrift.STRING), 0, id)
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// appendI64Field appends field id, an i64, in the binary protocol.
func appendI64Field(b []byte, id byte, v uint64) []byte {
	b = append(b, byte(thrift.I64), 0, id)
	return binary.BigEndian.AppendUint64(b, v)
}
