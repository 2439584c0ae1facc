package transport

import (
	"bytes"
	"context"
	"log/slog"
	"reflect"
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
			if wantKeep != gotKeep || (!bytes.Equal(want, got) && !bytes.Contains(got, []byte("execute"))) {
				t.Fatalf("%s request %d: generated %q (keep %v), fast %q (keep %v)", p, i, want, wantKeep, got, gotKeep)
			}
			if i < len(reqs)-1 && !bytes.Equal(want, got) {
				t.Fatalf("%s request %d: generated %q, fast %q", p, i, want, got)
			}
		}
		if strings.Contains(logs.String(), "panicked") {
			t.Fatal(logs.String())
		}
	}
}
