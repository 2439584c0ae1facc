package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// encodeStruct is s's wire form in protocol p (no message header).
func encodeStruct(p Protocol, s thrift.TStruct) []byte {
	buf := thrift.NewTMemoryBuffer()
	pr := p.newProtocol(buf, &thrift.TConfiguration{})
	s.Write(context.Background(), pr)
	pr.Flush(context.Background())
	return buf.Bytes()
}

func executeArgsSeeds() []*gen.DialKVExecuteArgs {
	ns := "default"
	many := make([]*gen.Command, 300) // more arguments than one Argv slab
	for i := range many {
		many[i] = CommandFromCore(core.Cmd("MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6", "g"))
	}
	return []*gen.DialKVExecuteArgs{
		{Opts: &gen.RequestOptions{Ns: &ns, Token: []byte{1}}, Cmds: []*gen.Command{CommandFromCore(core.Cmd("GET", "k")), CommandFromCore(core.Cmd("SET", "k", "v"))}},
		{Cmds: []*gen.Command{}},
		{Cmds: []*gen.Command{{Name: "PING", Argv: [][]byte{}}, {Name: "X"}, CommandFromCore(core.Cmd("DEL", "a", "b", "c"))}},
		{Opts: &gen.RequestOptions{}, Cmds: many},
	}
}

// decodeBoth decodes data as DialKVExecuteArgs with the generated reader
// and with readExecuteArgs, both from the server's in-place frame reader.
func decodeBoth(p Protocol, data []byte) (want, got gen.DialKVExecuteArgs, wantErr, gotErr error) {
	cfg := &thrift.TConfiguration{MaxMessageSize: 1 << 20}
	var a, b frameReader
	a.reset(data)
	b.reset(data)
	wantErr = want.Read(context.Background(), p.newProtocol(&a, cfg))
	gotErr = readExecuteArgs(context.Background(), p.newProtocol(&b, cfg), &got)
	return want, got, wantErr, gotErr
}

// FuzzExecuteArgs: the node's slab decoder of `execute` arguments
// (readExecuteArgs) decodes exactly what the generated reader does, in both
// protocols: the same commands, options and argument bytes, or an error
// where it errs. It never panics.
func FuzzExecuteArgs(f *testing.F) {
	for _, p := range []Protocol{Binary, Compact} {
		for _, a := range executeArgsSeeds() {
			f.Add(encodeStruct(p, a), p == Compact)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, compact bool) {
		p := Binary
		if compact {
			p = Compact
		}
		want, got, wantErr, gotErr := decodeBoth(p, data)
		if (wantErr != nil) != (gotErr != nil) {
			t.Fatalf("%s %x: generated reader error %v, slab decoder error %v", p, data, wantErr, gotErr)
		}
		if wantErr == nil && !reflect.DeepEqual(want, got) {
			t.Fatalf("%s %x: generated reader %+v, slab decoder %+v", p, data, want, got)
		}
	})
}

func TestReadExecuteArgsSlabs(t *testing.T) {
	for _, p := range []Protocol{Binary, Compact} {
		for i, a := range executeArgsSeeds() {
			want, got, wantErr, gotErr := decodeBoth(p, encodeStruct(p, a))
			if wantErr != nil || gotErr != nil || !reflect.DeepEqual(want, got) || len(got.Cmds) != len(a.Cmds) {
				t.Fatalf("%s seed %d: generated %+v (%v), slab %+v (%v)", p, i, want, wantErr, got, gotErr)
			}
			// A command's Argv cannot grow into the next command's.
			if n := len(got.Cmds); n > 1 && len(got.Cmds[0].Argv) > 0 {
				c0 := got.Cmds[0]
				next := append([][]byte(nil), got.Cmds[1].Argv...)
				c0.Argv = append(c0.Argv, []byte("extra"))
				if !reflect.DeepEqual(got.Cmds[1].Argv, next) {
					t.Fatalf("%s seed %d: an append to command 0's Argv changed command 1's", p, i)
				}
			}
		}
	}
	// Allocations: a batch of 100 SETs decodes in the three slabs plus one
	// per argument (and the options), not two more per command.
	cmds := make([]*gen.Command, 100)
	for i := range cmds {
		cmds[i] = CommandFromCore(core.Cmd("SET", "key", "value"))
	}
	data := encodeStruct(Binary, &gen.DialKVExecuteArgs{Opts: &gen.RequestOptions{}, Cmds: cmds})
	cfg := &thrift.TConfiguration{}
	var fr frameReader
	pr := Binary.newProtocol(&fr, cfg)
	allocs := testing.AllocsPerRun(20, func() {
		fr.reset(data)
		var args gen.DialKVExecuteArgs
		if err := readExecuteArgs(context.Background(), pr, &args); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 200+3+2 {
		t.Errorf("%.0f allocations to decode 100 SETs; want at most 205 (3 slabs, 200 arguments, the options)", allocs)
	}
	genAllocs := testing.AllocsPerRun(20, func() {
		fr.reset(data)
		var args gen.DialKVExecuteArgs
		if err := args.Read(context.Background(), pr); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("decoding 100 SETs: %.0f allocations (generated reader: %.0f)", allocs, genAllocs)
}

// TestReadExecuteArgsClaimedCounts: a frame claiming as many commands (or
// one command's arguments) as it has bytes, whose first command (argument)
// is bad, is a typed protocol error after allocating a bounded amount, not
// 48 (24) bytes per claimed element.
func TestReadExecuteArgsClaimedCounts(t *testing.T) {
	const n = 1 << 20
	be32 := func(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }
	// Binary: field 2 of type LIST, a list of STRUCT of n commands, the
	// first one only its STOP (no name), then padding.
	cmds := append(append([]byte{byte(thrift.LIST), 0, 2, byte(thrift.STRUCT)}, be32(n)...), make([]byte, n)...)
	// One command whose argv field claims n STRING elements; the first
	// one's length is -1.
	argv := append(append([]byte{byte(thrift.LIST), 0, 2, byte(thrift.STRUCT)}, be32(1)...),
		append(append([]byte{byte(thrift.LIST), 0, 2, byte(thrift.STRING)}, be32(n)...), bytes.Repeat([]byte{0xff}, n)...)...)
	for _, tc := range []struct {
		name string
		data []byte
	}{{"commands", cmds}, {"arguments", argv}} {
		cfg := &thrift.TConfiguration{MaxMessageSize: 1 << 24}
		var fr frameReader
		fr.reset(tc.data)
		pr := Binary.newProtocol(&fr, cfg)
		var args gen.DialKVExecuteArgs
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := readExecuteArgs(context.Background(), pr, &args)
		runtime.ReadMemStats(&after)
		var pe thrift.TProtocolException
		if !errors.As(err, &pe) {
			t.Fatalf("%s: error %v (%T), want a thrift.TProtocolException", tc.name, err, err)
		}
		// Before the bound: 48 MiB (commands), 24 MiB (arguments).
		if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
			t.Errorf("%s: decoding a %d-byte frame claiming %d allocated %d bytes; want at most 4 MiB", tc.name, len(tc.data), n, got)
		}
	}
}

// TestFastExecuteReplies: a server whose `execute` is FastExecute's answers
// every seed request, and garbage, with the same bytes as the generated
// processor, in both protocols.
func TestFastExecuteReplies(t *testing.T) {
	for _, p := range []Protocol{Binary, Compact} {
		logs := &lockedBuffer{}
		cfg := ServerConfig{Protocol: p, Logger: slog.New(slog.NewTextHandler(logs, nil))}
		plain := NewServer(gen.NewDialKVProcessor(stubHandler{}), cfg)
		fp := gen.NewDialKVProcessor(stubHandler{})
		FastExecute(fp, stubHandler{})
		fast := NewServer(fp, cfg)
		reqs := seedRequests(p)
		for _, a := range executeArgsSeeds() {
			reqs = append(reqs, encodeCall(p, "execute", a))
		}
		// A truncated execute: an exception from both.
		reqs = append(reqs, reqs[2][:len(reqs[2])-5])
		for i, req := range reqs {
			want, wantKeep := plain.Process(req)
			got, gotKeep := fast.Process(req)
			if wantKeep != gotKeep {
				t.Fatalf("%s request %d: generated %q (keep %v), fast %q (keep %v)", p, i, want, wantKeep, got, gotKeep)
			}
			if i < len(reqs)-1 {
				if !bytes.Equal(want, got) {
					t.Fatalf("%s request %d: generated %q, fast %q", p, i, want, got)
				}
				continue
			}
			// The truncated one: the decoders' error texts differ; the
			// message name, type and seq id and the exception's type do not.
			wh, werr := replyException(p, want)
			gh, gerr := replyException(p, got)
			if werr != nil || gerr != nil || wh != gh || wh.typ != thrift.EXCEPTION {
				t.Fatalf("%s truncated request: generated %+v (%v), fast %+v (%v)", p, wh, werr, gh, gerr)
			}
		}
		if strings.Contains(logs.String(), "panicked") {
			t.Fatal(logs.String())
		}
	}
}

// exceptionReply is the header of a reply and, for an EXCEPTION, its
// application exception's type.
type exceptionReply struct {
	name string
	typ  thrift.TMessageType
	seq  int32
	exc  int32
}

// replyException decodes resp (a framed reply in protocol p) as far as
// exceptionReply.
func replyException(p Protocol, resp []byte) (exceptionReply, error) {
	var r exceptionReply
	if len(resp) < 4 {
		return r, fmt.Errorf("reply of %d bytes", len(resp))
	}
	ctx := context.Background()
	pr := p.newProtocol(&thrift.TMemoryBuffer{Buffer: bytes.NewBuffer(resp[4:])}, &thrift.TConfiguration{})
	var err error
	if r.name, r.typ, r.seq, err = pr.ReadMessageBegin(ctx); err != nil {
		return r, fmt.Errorf("reading the reply header: %w", err)
	}
	if r.typ == thrift.EXCEPTION {
		x := thrift.NewTApplicationException(thrift.UNKNOWN_APPLICATION_EXCEPTION, "")
		if err := x.Read(ctx, pr); err != nil {
			return r, fmt.Errorf("reading the exception: %w", err)
		}
		r.exc = x.TypeId()
	}
	return r, nil
}

// TestExecuteProcessFollowsGenerated: executeProcessor.Process is a hand
// copy of the generated dialKVProcessorExecute.Process; the generated one,
// its numbered temporaries' names aside, is still the one copied
// (testdata/generated_execute_process.txt). When a regeneration changes it,
// bring Process in line, then copy the new function into the testdata file
// (with the numbers after _write_err and _exc removed).
func TestExecuteProcessFollowsGenerated(t *testing.T) {
	src, err := os.ReadFile("thrift/gen-go/dialkv/dialkv.go")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/generated_execute_process.txt")
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(src, []byte("func (p *dialKVProcessorExecute) Process("))
	if i < 0 {
		t.Fatal("the generated dialKVProcessorExecute.Process is gone: check executeProcessor.Process")
	}
	n := bytes.Index(src[i:], []byte("\n}\n"))
	if n < 0 {
		t.Fatal("the generated dialKVProcessorExecute.Process has no end")
	}
	got := regexp.MustCompile(`_(write_err|exc)[0-9]+`).ReplaceAll(src[i:i+n+3], []byte("_${1}"))
	if !bytes.Equal(got, want) {
		t.Fatalf("the generated dialKVProcessorExecute.Process changed: bring executeProcessor.Process (execute.go) in line, then update testdata/generated_execute_process.txt; now:\n%s", got)
	}
}
