package transport

import (
	"context"
	"fmt"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// executeReplyFrame encodes msg as the reply (or exception) message of an
// `execute` request seq in protocol p, without the 4-byte frame header.
func executeReplyFrame(p Protocol, seq int32, typ thrift.TMessageType, msg thrift.TStruct) []byte {
	ctx := context.Background()
	buf := thrift.NewTMemoryBuffer()
	o := p.newProtocol(buf, &thrift.TConfiguration{})
	_ = o.WriteMessageBegin(ctx, "execute", typ, seq)
	_ = msg.Write(ctx, o)
	_ = o.WriteMessageEnd(ctx)
	_ = o.Flush(ctx)
	return append([]byte(nil), buf.Bytes()...)
}

// countSeedFrames are reply frames of every shape a node sends to
// `execute`, and a few it does not, each with the sequence number 7.
func countSeedFrames(p Protocol) map[string][]byte {
	v := int64(3)
	served := "n1"
	bulk := func(n int) []*gen.Reply {
		out := make([]*gen.Reply, n)
		for i := range out {
			out[i] = ReplyFromCore(core.Reply{Kind: core.KindBulk, Str: make([]byte, 100), Version: 9}, nil)
		}
		return out
	}
	mixed := []*gen.Reply{
		ReplyFromCore(core.OK(), nil),
		ReplyFromCore(core.ErrorReply(core.Errorf(core.CodeWrongType, "wrong type")), nil),
		{Kind: gen.ReplyKind_NIL},
		ReplyFromCore(core.Int(42), nil),
		ReplyFromCore(core.Reply{Kind: core.KindFloat, Float: 1.5}, nil),
		ReplyFromCore(core.Reply{Kind: core.KindArray, Array: []core.Reply{core.Bulk([]byte("a")), core.ErrorReply(core.Errorf(core.CodeErr, "inner"))}}, nil),
		ReplyFromCore(core.Bulk([]byte("x")), [][]byte{[]byte("s1"), []byte("s2")}),
		ReplyFromCore(core.ErrorReply(core.Errorf(core.CodeConditionFailed, "cond")), nil),
	}
	success := func(r *gen.ExecuteResponse) thrift.TStruct { return &gen.DialKVExecuteResult{Success: r} }
	return map[string][]byte{
		"100 bulk values": executeReplyFrame(p, 7, thrift.REPLY, success(&gen.ExecuteResponse{Replies: bulk(100), ServedBy: &served})),
		"mixed kinds":     executeReplyFrame(p, 7, thrift.REPLY, success(&gen.ExecuteResponse{Replies: mixed, Token: []byte("tok"), ServedBy: &served, Stale: thrift.BoolPtr(true)})),
		"no replies":      executeReplyFrame(p, 7, thrift.REPLY, success(&gen.ExecuteResponse{Replies: []*gen.Reply{}})),
		"invalid":         executeReplyFrame(p, 7, thrift.REPLY, &gen.DialKVExecuteResult{Invalid: &gen.InvalidArgument{Message: "bad", Code: "ERR"}}),
		"unavailable":     executeReplyFrame(p, 7, thrift.REPLY, &gen.DialKVExecuteResult{Unavailable: &gen.Unavailable{Message: "down", RetryAfterMs: 5}}),
		"not leader":      executeReplyFrame(p, 7, thrift.REPLY, &gen.DialKVExecuteResult{NotLeader: &gen.NotLeader{Address: "n2"}}),
		"no result":       executeReplyFrame(p, 7, thrift.REPLY, &gen.DialKVExecuteResult{}),
		"application exception": executeReplyFrame(p, 7, thrift.EXCEPTION,
			thrift.NewTApplicationException(thrift.INTERNAL_ERROR, "boom")),
		"success and exception": executeReplyFrame(p, 7, thrift.REPLY, &gen.DialKVExecuteResult{
			Success: &gen.ExecuteResponse{Replies: bulk(2)}, Timeout: &gen.Timeout{Message: "late"}}),
		"reply without kind":                    executeReplyFrame(p, 7, thrift.REPLY, &oneRawReply{reply: writeReplyWithoutKind}),
		"array reply, inner reply without kind": executeReplyFrame(p, 7, thrift.REPLY, &oneRawReply{reply: writeArrayWithoutInnerKind}),
		"error reply without code":              executeReplyFrame(p, 7, thrift.REPLY, &oneRawReply{reply: writeErrorWithoutCode}),
		"siblings list of i32 elements":         executeReplyFrame(p, 7, thrift.REPLY, &oneRawReply{reply: writeSiblingsOfI32}),
		"arrays nested 100 deep":                executeReplyFrame(p, 7, thrift.REPLY, success(&gen.ExecuteResponse{Replies: []*gen.Reply{nestedArray(100)}})),
		"response without list":                 executeReplyFrame(p, 7, thrift.REPLY, &responseWithoutList{}),
		"version, no value":                     executeReplyFrame(p, 7, thrift.REPLY, success(&gen.ExecuteResponse{Replies: []*gen.Reply{{Kind: gen.ReplyKind_STATUS, Str: []byte("OK"), Version: &v}}})),
		"call reply, not execute":               callReplyFrame(p),
	}
}

// oneRawReply is a DialKVExecuteResult whose success holds one reply,
// written by reply as no node writes it: both decoders must agree on it.
type oneRawReply struct {
	gen.DialKVExecuteResult
	reply func(ctx context.Context, o thrift.TProtocol)
}

func (r *oneRawReply) Write(ctx context.Context, o thrift.TProtocol) error {
	return writeRawResult(ctx, o, func() {
		_ = o.WriteFieldBegin(ctx, "replies", thrift.LIST, 1)
		_ = o.WriteListBegin(ctx, thrift.STRUCT, 1)
		r.reply(ctx, o)
		_ = o.WriteListEnd(ctx)
		_ = o.WriteFieldEnd(ctx)
	})
}

// writeRawResult writes a DialKVExecuteResult whose success is an
// ExecuteResponse whose fields fields writes, and returns the error of
// its last write.
func writeRawResult(ctx context.Context, o thrift.TProtocol, fields func()) error {
	_ = o.WriteStructBegin(ctx, "r")
	_ = o.WriteFieldBegin(ctx, "success", thrift.STRUCT, 0)
	_ = o.WriteStructBegin(ctx, "resp")
	fields()
	_ = o.WriteFieldStop(ctx)
	_ = o.WriteStructEnd(ctx)
	_ = o.WriteFieldEnd(ctx)
	_ = o.WriteFieldStop(ctx)
	return o.WriteStructEnd(ctx)
}

// writeRawStruct writes a struct whose fields fields writes.
func writeRawStruct(ctx context.Context, o thrift.TProtocol, fields func()) {
	_ = o.WriteStructBegin(ctx, "s")
	fields()
	_ = o.WriteFieldStop(ctx)
	_ = o.WriteStructEnd(ctx)
}

// writeRawI32 and writeRawBinary write one field.
func writeRawI32(ctx context.Context, o thrift.TProtocol, id int16, v int32) {
	_ = o.WriteFieldBegin(ctx, "i", thrift.I32, id)
	_ = o.WriteI32(ctx, v)
	_ = o.WriteFieldEnd(ctx)
}

func writeRawBinary(ctx context.Context, o thrift.TProtocol, id int16, v string) {
	_ = o.WriteFieldBegin(ctx, "b", thrift.STRING, id)
	_ = o.WriteBinary(ctx, []byte(v))
	_ = o.WriteFieldEnd(ctx)
}

// writeReplyWithoutKind writes a reply with a value but no kind
// (required): both decoders must refuse it.
func writeReplyWithoutKind(ctx context.Context, o thrift.TProtocol) {
	writeRawStruct(ctx, o, func() { writeRawBinary(ctx, o, 2, "v") })
}

// writeArrayWithoutInnerKind writes an ARRAY reply whose one element has
// no kind (required): both decoders must refuse it.
func writeArrayWithoutInnerKind(ctx context.Context, o thrift.TProtocol) {
	writeRawStruct(ctx, o, func() {
		writeRawI32(ctx, o, 1, int32(gen.ReplyKind_ARRAY))
		_ = o.WriteFieldBegin(ctx, "array", thrift.LIST, 5)
		_ = o.WriteListBegin(ctx, thrift.STRUCT, 1)
		writeReplyWithoutKind(ctx, o)
		_ = o.WriteListEnd(ctx)
		_ = o.WriteFieldEnd(ctx)
	})
}

// writeErrorWithoutCode writes an ERROR reply whose error has a message
// but no code (required): both decoders must refuse it.
func writeErrorWithoutCode(ctx context.Context, o thrift.TProtocol) {
	writeRawStruct(ctx, o, func() {
		writeRawI32(ctx, o, 1, int32(gen.ReplyKind_ERROR))
		_ = o.WriteFieldBegin(ctx, "error", thrift.STRUCT, 6)
		writeRawStruct(ctx, o, func() { writeRawBinary(ctx, o, 2, "no code") })
		_ = o.WriteFieldEnd(ctx)
	})
}

// writeSiblingsOfI32 writes a BULK reply whose siblings list claims i32
// elements but holds a binary: the generated reader reads the elements as
// binaries whatever the header claims, a skip as the header claims.
func writeSiblingsOfI32(ctx context.Context, o thrift.TProtocol) {
	writeRawStruct(ctx, o, func() {
		writeRawI32(ctx, o, 1, int32(gen.ReplyKind_BULK))
		_ = o.WriteFieldBegin(ctx, "siblings", thrift.LIST, 8)
		_ = o.WriteListBegin(ctx, thrift.I32, 1)
		_ = o.WriteBinary(ctx, []byte("sibling"))
		_ = o.WriteListEnd(ctx)
		_ = o.WriteFieldEnd(ctx)
	})
}

// nestedArray is an ARRAY reply nested depth deep, a NIL innermost:
// deeper than the library's skip allows (64), which the generated reader
// does not limit.
func nestedArray(depth int) *gen.Reply {
	r := &gen.Reply{Kind: gen.ReplyKind_NIL}
	for range depth {
		r = &gen.Reply{Kind: gen.ReplyKind_ARRAY, Array: []*gen.Reply{r}}
	}
	return r
}

// responseWithoutList is a DialKVExecuteResult whose success has no
// replies (required) but a served_by.
type responseWithoutList struct{ gen.DialKVExecuteResult }

func (*responseWithoutList) Write(ctx context.Context, o thrift.TProtocol) error {
	return writeRawResult(ctx, o, func() {
		_ = o.WriteFieldBegin(ctx, "served_by", thrift.STRING, 3)
		_ = o.WriteString(ctx, "n1")
		_ = o.WriteFieldEnd(ctx)
	})
}

// callReplyFrame is a `call` reply: the method name does not match.
func callReplyFrame(p Protocol) []byte {
	ctx := context.Background()
	buf := thrift.NewTMemoryBuffer()
	o := p.newProtocol(buf, &thrift.TConfiguration{})
	_ = o.WriteMessageBegin(ctx, "call", thrift.REPLY, 7)
	_ = (&gen.DialKVCallResult{Success: &gen.ExecuteResponse{Replies: []*gen.Reply{{Kind: gen.ReplyKind_NIL}}}}).Write(ctx, o)
	_ = o.WriteMessageEnd(ctx)
	return append([]byte(nil), buf.Bytes()...)
}

// decodeCount is what CountExecute must answer: DecodeExecute's replies
// and error replies, or its error. It repeats ClientCodec.decodeCount on
// purpose: CountExecute answers nested and exception frames with that
// method, so an oracle calling it would compare it with itself and could
// not fail for those frames.
func decodeCount(c *ClientCodec, frame []byte, seq int32) (replies, failed int, err error) {
	resp, err := c.DecodeExecute(frame, seq)
	if err != nil {
		return 0, 0, err
	}
	for _, r := range resp.Replies {
		if r.Kind == gen.ReplyKind_ERROR {
			failed++
		}
	}
	return len(resp.Replies), failed, nil
}

// checkCountAgrees fails t unless CountExecute and DecodeExecute agree on
// frame: the same counts, or both an error (the same one when the node
// answered with an exception).
func checkCountAgrees(t *testing.T, c *ClientCodec, name string, frame []byte, seq int32) {
	t.Helper()
	wr, wf, werr := decodeCount(c, frame, seq)
	gr, gf, gerr := c.CountExecute(frame, seq)
	switch {
	case (werr != nil) != (gerr != nil):
		t.Fatalf("%s: CountExecute = %d, %d, %v; DecodeExecute: %d, %d, %v (frame %x)", name, gr, gf, gerr, wr, wf, werr, frame)
	case werr == nil && (gr != wr || gf != wf):
		t.Fatalf("%s: CountExecute = %d replies, %d failed; DecodeExecute: %d, %d (frame %x)", name, gr, gf, wr, wf, frame)
	case werr != nil && isTypedException(werr) && fmt.Sprint(gerr) != fmt.Sprint(werr):
		t.Fatalf("%s: CountExecute error %v; DecodeExecute's %v", name, gerr, werr)
	}
}

// isTypedException reports whether err is one of the IDL's exceptions or
// a Thrift application exception (errors a node sends, not decoding
// errors).
func isTypedException(err error) bool {
	switch err.(type) {
	case *gen.InvalidArgument, *gen.Unavailable, *gen.Timeout, *gen.NotLeader, *gen.Unauthenticated, *gen.Forbidden:
		return true
	}
	return false
}

func TestCountExecute(t *testing.T) {
	for _, p := range []Protocol{Binary, Compact} {
		c := NewClientCodec(p, 0)
		frames := countSeedFrames(p)
		for _, tc := range []struct {
			frame         string
			seq           int32
			replies, fail int
			wantErr       bool
		}{
			{frame: "100 bulk values", seq: 7, replies: 100},
			{frame: "mixed kinds", seq: 7, replies: 8, fail: 2},
			{frame: "no replies", seq: 7},
			{frame: "version, no value", seq: 7, replies: 1},
			{frame: "100 bulk values", seq: 8, wantErr: true}, // another request's reply
			{frame: "invalid", seq: 7, wantErr: true},
			{frame: "unavailable", seq: 7, wantErr: true},
			{frame: "not leader", seq: 7, wantErr: true},
			{frame: "no result", seq: 7, wantErr: true},
			{frame: "application exception", seq: 7, wantErr: true},
			{frame: "success and exception", seq: 7, wantErr: true},
			{frame: "reply without kind", seq: 7, wantErr: true},
			{frame: "array reply, inner reply without kind", seq: 7, wantErr: true},
			{frame: "error reply without code", seq: 7, wantErr: true},
			{frame: "siblings list of i32 elements", seq: 7, replies: 1},
			{frame: "arrays nested 100 deep", seq: 7, replies: 1},
			{frame: "response without list", seq: 7, wantErr: true},
			{frame: "call reply, not execute", seq: 7, wantErr: true},
		} {
			name := fmt.Sprintf("%s/%s/seq %d", p, tc.frame, tc.seq)
			frame := frames[tc.frame]
			if frame == nil {
				t.Fatalf("%s: no such seed frame", name)
			}
			replies, failed, err := c.CountExecute(frame, tc.seq)
			if (err != nil) != tc.wantErr || replies != tc.replies || failed != tc.fail {
				t.Errorf("%s: CountExecute = %d, %d, %v; want %d, %d, error %v", name, replies, failed, err, tc.replies, tc.fail, tc.wantErr)
			}
			checkCountAgrees(t, c, name, frame, tc.seq)
			// Every truncation of the frame: both decoders fail alike.
			for n := range len(frame) {
				checkCountAgrees(t, c, fmt.Sprintf("%s cut to %d bytes", name, n), frame[:n], tc.seq)
			}
		}
	}
}

// TestCountExecuteAllocs checks that counting a reply of 100 values
// allocates nothing (DecodeExecute: a Reply and a copy each; the protocol
// walk: one allocation per reply frame, which the binary fast path,
// countBinary, does not make).
func TestCountExecuteAllocs(t *testing.T) {
	c := NewClientCodec(Binary, 0)
	frame := countSeedFrames(Binary)["100 bulk values"]
	allocs := testing.AllocsPerRun(100, func() {
		if n, _, err := c.CountExecute(frame, 7); err != nil || n != 100 {
			t.Fatalf("CountExecute = %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("CountExecute of 100 replies: %.0f allocations, want none", allocs)
	}
}

// FuzzCountExecute checks CountExecute against DecodeExecute on arbitrary
// reply frames in both protocols: the same counts, or both an error.
func FuzzCountExecute(f *testing.F) {
	for _, p := range []Protocol{Binary, Compact} {
		for _, fr := range countSeedFrames(p) {
			f.Add(fr)
		}
	}
	codecs := []*ClientCodec{NewClientCodec(Binary, 1<<16), NewClientCodec(Compact, 1<<16)}
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, c := range codecs {
			checkCountAgrees(t, c, "fuzz", frame, 7)
		}
	})
}

// BenchmarkDecodeReply100 measures the client's decoding of a reply to a
// batch of 100 GETs (100-byte values), whole (DecodeExecute) and counted
// (CountExecute, what dialkv bench does):
//
//	go test -run '^$' -bench DecodeReply100 -benchmem ./transport
func BenchmarkDecodeReply100(b *testing.B) {
	c := NewClientCodec(Binary, 0)
	frame := countSeedFrames(Binary)["100 bulk values"]
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.DecodeExecute(frame, 7); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("count", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := c.CountExecute(frame, 7); err != nil {
				b.Fatal(err)
			}
		}
	})
}
