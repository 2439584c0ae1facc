package transport

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// executeRequests are `execute` requests of every shape the generated
// writer writes differently: options nil, empty or full, no commands, a nil
// command, a command without argv, with an empty argv, with empty and long
// arguments, and a batch as dialkv bench sends it.
func executeRequests() map[string]struct {
	opts *gen.RequestOptions
	cmds []*gen.Command
} {
	ns, mode, id := "kv", "lease", "c1"
	r, dl, strict := int32(2), int64(-5), true
	full := &gen.RequestOptions{Ns: &ns, ReadMode: &mode, R: &r, W: &r, Strict: &strict, Mode: &mode, Token: []byte("tok"), DeadlineMs: &dl, ClientID: &id}
	var batch []*gen.Command
	for i := range 100 {
		if i%3 == 0 {
			batch = append(batch, &gen.Command{Name: "SET", Argv: [][]byte{fmt.Appendf(nil, "key:%012d", i), bytes.Repeat([]byte{'v'}, 100)}})
		} else {
			batch = append(batch, &gen.Command{Name: "GET", Argv: [][]byte{fmt.Appendf(nil, "key:%012d", i)}})
		}
	}
	type req = struct {
		opts *gen.RequestOptions
		cmds []*gen.Command
	}
	return map[string]req{
		"nil options, no commands": {},
		"empty commands":           {opts: &gen.RequestOptions{}, cmds: []*gen.Command{}},
		"every option":             {opts: full, cmds: batch[:2]},
		"nil command":              {cmds: []*gen.Command{nil, {Name: "PING"}}},
		"no argv, empty argv":      {cmds: []*gen.Command{{Name: "PING"}, {Name: "PING", Argv: [][]byte{}}}},
		"empty and long arguments": {cmds: []*gen.Command{{Name: "SET", Argv: [][]byte{{}, nil, bytes.Repeat([]byte("x"), 70000)}}, {Name: ""}}},
		"batch of 100":             {opts: &gen.RequestOptions{Ns: &ns}, cmds: batch},
	}
}

// TestAppendExecuteBinaryBytes: AppendExecute in the binary protocol
// (appendExecuteBinary) appends the generated writer's frame byte for byte,
// after whatever the buffer held, and refuses a frame over the maximum as
// the generated path does.
func TestAppendExecuteBinaryBytes(t *testing.T) {
	for name, rq := range executeRequests() {
		for _, seq := range []int32{0, 7, -3} {
			for _, prefix := range [][]byte{nil, []byte("earlier request")} {
				c := NewClientCodec(Binary, 0)
				want, werr := c.appendFrame(slices.Clone(prefix), seq, "execute", &gen.DialKVExecuteArgs{Opts: rq.opts, Cmds: rq.cmds})
				got, gerr := c.AppendExecute(slices.Clone(prefix), seq, rq.opts, rq.cmds)
				if werr != nil || gerr != nil || !bytes.Equal(got, want) {
					t.Errorf("%s, seq %d, prefix %q:\n got %x, %v\nwant %x, %v", name, seq, prefix, got, gerr, want, werr)
				}
			}
		}
	}
	// Over the maximum: both refuse it, and leave dst as it was.
	rq := executeRequests()["batch of 100"]
	c := NewClientCodec(Binary, 1000)
	want, werr := c.appendFrame([]byte("x"), 1, "execute", &gen.DialKVExecuteArgs{Opts: rq.opts, Cmds: rq.cmds})
	got, gerr := c.AppendExecute([]byte("x"), 1, rq.opts, rq.cmds)
	if werr == nil || gerr == nil || werr.Error() != gerr.Error() || string(got) != "x" || string(want) != "x" {
		t.Errorf("over the maximum: got %q, %v; want %q, %v", got, gerr, want, werr)
	}
}

// TestCountBinaryRecognises: countBinary counts the binary frames a node
// writes to a batch of plain replies (executeSuccess), with DecodeExecute's
// counts, and leaves every other frame to the protocol walk; on every
// prefix of such a frame, and on the frame with a byte more, CountExecute
// still agrees with DecodeExecute.
func TestCountBinaryRecognises(t *testing.T) {
	plain := map[string]bool{"plain replies": true, "not stale, empty token": true, "no replies": true, "nil replies": true, "batch of 100": true}
	c := NewClientCodec(Binary, 0)
	for name, resp := range executeResponses() {
		frame := writeResult(t, Binary, nil, &executeSuccess{resp: resp})
		r, f, ok := countBinary(frame, 3)
		if ok != plain[name] {
			t.Errorf("%s: countBinary recognised %v, want %v", name, ok, plain[name])
		}
		if ok {
			wr, wf, err := decodeCount(c, frame, 3)
			if err != nil || r != wr || f != wf {
				t.Errorf("%s: countBinary = %d, %d; DecodeExecute: %d, %d, %v", name, r, f, wr, wf, err)
			}
			if _, _, ok := countBinary(frame, 4); ok {
				t.Errorf("%s: counted as the reply to another request", name)
			}
		}
		for n := range len(frame) {
			checkCountAgrees(t, c, fmt.Sprintf("%s, first %d bytes", name, n), frame[:n], 3)
		}
		checkCountAgrees(t, c, name+", a byte more", append(slices.Clone(frame), 0), 3)
	}
	// The seed frames of the fuzz target: only the plain ones are counted
	// here.
	for name, frame := range countSeedFrames(Binary) {
		_, _, ok := countBinary(frame, 7)
		want := name == "100 bulk values" || name == "no replies" || name == "version, no value"
		if ok != want {
			t.Errorf("seed %q: countBinary recognised %v, want %v", name, ok, want)
		}
	}
}

// BenchmarkAppendExecute100 measures encoding a batch of 100 commands
// (a third SETs of 100-byte values, the rest GETs), with the generated
// writer and with AppendExecute's direct path:
//
//	go test -run '^$' -bench AppendExecute100 -benchmem ./transport
func BenchmarkAppendExecute100(b *testing.B) {
	rq := executeRequests()["batch of 100"]
	c := NewClientCodec(Binary, 0)
	var buf []byte
	b.Run("generated", func(b *testing.B) {
		args := &gen.DialKVExecuteArgs{Opts: rq.opts, Cmds: rq.cmds}
		for b.Loop() {
			buf, _ = c.appendFrame(buf[:0], 1, "execute", args)
		}
	})
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			buf, _ = c.AppendExecute(buf[:0], 1, rq.opts, rq.cmds)
		}
	})
	if !strings.Contains(string(buf), "key:000000000099") {
		b.Fatal("the batch was not encoded")
	}
}

// executeArgsList encodes args (options nil) in the binary protocol and
// returns the bytes and the offset of the commands' list header: after
// field 1 (an empty struct: its header and stop) and field 2's header.
func executeArgsList(cmds []*gen.Command) ([]byte, int) {
	return encodeStruct(Binary, &gen.DialKVExecuteArgs{Cmds: cmds}), 4 + 3
}

// TestReadCommandsBinaryRecognises: the node's direct decoder
// (readCommandsBinary) decodes the common requests itself — the generated
// reader's commands, every byte of the list read — and leaves every other
// form to the protocol; readExecuteArgs agrees with the generated reader
// on all of them (FuzzExecuteArgs explores the rest).
func TestReadCommandsBinaryRecognises(t *testing.T) {
	for i, a := range executeArgsSeeds() {
		data, off := executeArgsList(a.Cmds)
		got, n, ok := readCommandsBinary(data[off:], 1<<20)
		var want gen.DialKVExecuteArgs
		var fr frameReader
		fr.reset(data)
		if err := want.Read(context.Background(), Binary.newProtocol(&fr, &thrift.TConfiguration{})); err != nil {
			t.Fatal(err)
		}
		if !ok || n != len(data)-off-1 || !reflect.DeepEqual(got, want.Cmds) {
			t.Errorf("seed %d: readCommandsBinary = %d commands, %d bytes, %v; want %d commands, %d bytes", i, len(got), n, ok, len(want.Cmds), len(data)-off-1)
		}
	}
	// Forms it leaves to the protocol (decoded, or refused, there).
	raw := func(fields ...[]byte) []byte {
		b := []byte{byte(thrift.STRUCT), 0, 2, byte(thrift.LIST), 0, 2, byte(thrift.STRUCT), 0, 0, 0, 1}
		for _, f := range fields {
			b = append(b, f...)
		}
		return append(b, byte(thrift.STOP), byte(thrift.STOP))
	}
	name := []byte{byte(thrift.STRING), 0, 1, 0, 0, 0, 3, 'G', 'E', 'T'}
	argv := []byte{byte(thrift.LIST), 0, 2, byte(thrift.STRING), 0, 0, 0, 1, 0, 0, 0, 1, 'k'}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"name twice", raw(name, name)},
		{"argv twice", raw(name, argv, argv)},
		{"no name", raw(argv)},
		{"an unknown field", raw(name, []byte{byte(thrift.I32), 0, 9, 0, 0, 0, 1})},
		{"argv of i32 elements", raw(name, []byte{byte(thrift.LIST), 0, 2, byte(thrift.I32), 0, 0, 0, 1, 0, 0, 0, 1, 'k'})},
		{"name of a negative length", raw([]byte{byte(thrift.STRING), 0, 1, 0xff, 0xff, 0xff, 0xff})},
		{"list of i32 elements", append([]byte{byte(thrift.STRUCT), 0, 2, byte(thrift.LIST), 0, 2, byte(thrift.I32), 0, 0, 0, 0}, byte(thrift.STOP), byte(thrift.STOP))},
	} {
		// raw's first three bytes are replaced by field 1, an empty
		// options struct (its header and stop), as executeArgsList's.
		data := append([]byte{byte(thrift.STRUCT), 0, 1, byte(thrift.STOP)}, tc.data[3:]...)
		if _, _, ok := readCommandsBinary(data[4+3:], 1<<20); ok {
			t.Errorf("%s: decoded directly; want the protocol", tc.name)
		}
		want, got, wantErr, gotErr := decodeBoth(Binary, data)
		if (wantErr != nil) != (gotErr != nil) || (wantErr == nil && !reflect.DeepEqual(want, got)) {
			t.Errorf("%s: generated %+v, %v; readExecuteArgs %+v, %v", tc.name, want, wantErr, got, gotErr)
		}
	}
	// Every prefix of a batch: readExecuteArgs still agrees.
	data, _ := executeArgsList(executeArgsSeeds()[0].Cmds)
	for n := range len(data) {
		want, got, wantErr, gotErr := decodeBoth(Binary, data[:n])
		if (wantErr != nil) != (gotErr != nil) || (wantErr == nil && !reflect.DeepEqual(want, got)) {
			t.Errorf("first %d bytes: generated %+v, %v; readExecuteArgs %+v, %v", n, want, wantErr, got, gotErr)
		}
	}
}

// BenchmarkReadCommands100 measures the node's decoding of a batch of 100
// commands (a third SETs of 100-byte values, the rest GETs) by the
// protocol and directly:
//
//	go test -run '^$' -bench ReadCommands100 -benchmem ./transport
func BenchmarkReadCommands100(b *testing.B) {
	data, off := executeArgsList(executeRequests()["batch of 100"].cmds)
	pr := Binary.newProtocol(new(frameReader), &thrift.TConfiguration{})
	fr := pr.(*binaryProtocol).fr.(*frameReader)
	for _, bc := range []struct {
		name string
		read func(context.Context, thrift.TProtocol) ([]*gen.Command, error)
	}{{"protocol", readCommandsProto}, {"direct", readCommands}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				fr.reset(data[off:])
				if cmds, err := bc.read(context.Background(), pr); err != nil || len(cmds) != 100 {
					b.Fatal(cmds, err)
				}
			}
		})
	}
}
