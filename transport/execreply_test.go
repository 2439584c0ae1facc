package transport

import (
	"bytes"
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// executeResponses are batch replies of every shape: each reply kind, with
// and without versions, arrays, errors, siblings, nil replies, and the
// response's optional fields.
func executeResponses() map[string]*gen.ExecuteResponse {
	served, stale, notStale := "n1", true, false
	v, n, f := int64(-7), int64(1<<40), 2.5
	plain := []*gen.Reply{
		{Kind: gen.ReplyKind_NIL},
		{Kind: gen.ReplyKind_STATUS, Str: []byte("OK")},
		{Kind: gen.ReplyKind_BULK, Str: []byte{}},
		{Kind: gen.ReplyKind_BULK, Str: bytes.Repeat([]byte("v"), 300), Version: &v},
		{Kind: gen.ReplyKind_INT, IntVal: &n, Version: &v},
		{Kind: gen.ReplyKind_FLOAT, Dbl: &f},
		{Kind: gen.ReplyKind(99)},
	}
	rare := []*gen.Reply{
		ReplyFromCore(core.Array(core.Bulk([]byte("a")), core.Int(3)), nil),
		ReplyFromCore(core.ErrorReply(&core.Error{Code: core.CodeConditionFailed, Msg: "m", Condition: "c", Version: 4}), nil),
		ReplyFromCore(core.Reply{Kind: core.KindBulk, Str: []byte("x"), Version: 2}, [][]byte{[]byte("s1"), {}}),
		nil,
	}
	batch := RepliesFromCore(100, func(i int) (core.Reply, [][]byte) {
		if i%3 == 0 {
			return core.Reply{Kind: core.KindStatus, Str: []byte("OK"), Version: uint64(i + 1)}, nil
		}
		return core.Reply{Kind: core.KindBulk, Str: bytes.Repeat([]byte{byte(i)}, 100), Version: 9}, nil
	})
	return map[string]*gen.ExecuteResponse{
		"plain replies":          {Replies: plain, ServedBy: &served},
		"rare replies":           {Replies: rare},
		"mixed, every option":    {Replies: append(slices.Clone(rare), plain...), Token: []byte("tok"), ServedBy: &served, Stale: &stale},
		"not stale, empty token": {Replies: plain[:2], Token: []byte{}, Stale: &notStale},
		"no replies":             {Replies: []*gen.Reply{}},
		"nil replies":            {},
		"batch of 100":           {Replies: batch, ServedBy: &served},
	}
}

// writeResult writes msg as an `execute` reply message in protocol p into
// a replyWriter holding prefix, as the server does.
func writeResult(t *testing.T, p Protocol, prefix []byte, msg thrift.TStruct) []byte {
	t.Helper()
	ctx := context.Background()
	w := &replyWriter{b: slices.Clone(prefix)}
	o := p.newProtocol(w, &thrift.TConfiguration{})
	if err := o.WriteMessageBegin(ctx, "execute", thrift.REPLY, 3); err != nil {
		t.Fatal(err)
	}
	if err := msg.Write(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := o.WriteMessageEnd(ctx); err != nil {
		t.Fatal(err)
	}
	return w.b
}

// TestExecuteSuccessBytes: executeSuccess writes the generated writer's
// bytes, in both protocols, after whatever the buffer held.
func TestExecuteSuccessBytes(t *testing.T) {
	for name, resp := range executeResponses() {
		for _, p := range []Protocol{Binary, Compact} {
			for _, prefix := range [][]byte{nil, []byte("earlier reply")} {
				want := writeResult(t, p, prefix, &gen.DialKVExecuteResult{Success: resp})
				got := writeResult(t, p, prefix, &executeSuccess{resp: resp})
				if !bytes.Equal(got, want) {
					t.Errorf("%s, %s, prefix %q:\n got %x\nwant %x", name, p, prefix, got, want)
				}
			}
		}
	}
	// A nil response: the generated writer's empty result.
	if got, want := writeResult(t, Binary, nil, &executeSuccess{}), writeResult(t, Binary, nil, &gen.DialKVExecuteResult{}); !bytes.Equal(got, want) {
		t.Errorf("nil response: got %x, want %x", got, want)
	}
}

// TestExecuteSuccessFields fails when the IDL changes Reply or
// ExecuteResponse: executeSuccess writes their fields itself and must then
// be brought in line (and executeResponses given the new field).
func TestExecuteSuccessFields(t *testing.T) {
	for _, tc := range []struct {
		typ  reflect.Type
		want []string
	}{
		{reflect.TypeFor[gen.Reply](), []string{"Kind", "Str", "IntVal", "Dbl", "Array", "Error", "Version", "Siblings"}},
		{reflect.TypeFor[gen.ExecuteResponse](), []string{"Replies", "Token", "ServedBy", "Stale"}},
	} {
		var got []string
		for f := range tc.typ.Fields() {
			got = append(got, f.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v has fields %v; executeSuccess (execreply.go) writes %v", tc.typ, got, tc.want)
		}
	}
}

// BenchmarkWriteReply100 measures writing the reply to a batch of 100
// GETs (100-byte values), with the generated writer and executeSuccess:
//
//	go test -run '^$' -bench WriteReply100 -benchmem ./transport
func BenchmarkWriteReply100(b *testing.B) {
	resp := executeResponses()["batch of 100"]
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		msg  thrift.TStruct
	}{
		{"generated", &gen.DialKVExecuteResult{Success: resp}},
		{"direct", &executeSuccess{resp: resp}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w := &replyWriter{}
			o := Binary.newProtocol(w, &thrift.TConfiguration{})
			for b.Loop() {
				w.b = w.b[:0]
				_ = tc.msg.Write(ctx, o)
			}
		})
	}
}
