package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"
)

// TestReadBinaryExact: our ReadBinary returns what the library's returns
// for well-formed input, and an error (not a panic, not a huge
// allocation) for lengths the frame does not hold.
func TestReadBinaryExact(t *testing.T) {
	ctx := context.Background()
	cfg := &thrift.TConfiguration{MaxMessageSize: 1 << 20}
	for _, proto := range []Protocol{Binary, Compact} {
		for _, n := range []int{0, 1, 63, 64, 100, 511, 512, 4096, 70000} {
			want := bytes.Repeat([]byte{'x'}, n)
			enc := thrift.NewTMemoryBuffer()
			w := proto.newProtocol(enc, cfg)
			if err := w.WriteBinary(ctx, want); err != nil {
				t.Fatal(err)
			}
			field := len(enc.Bytes())
			w.WriteI32(ctx, 7) // what follows must still be in place
			raw := append([]byte(nil), enc.Bytes()...)

			in := thrift.NewTMemoryBuffer()
			in.Write(raw)
			r := proto.newProtocol(in, cfg)
			got, err := r.ReadBinary(ctx)
			if err != nil || !bytes.Equal(got, want) || got == nil {
				t.Fatalf("%s %d bytes: got %d bytes (nil %v), %v", proto, n, len(got), got == nil, err)
			}
			if v, err := r.ReadI32(ctx); err != nil || v != 7 {
				t.Fatalf("%s %d bytes: next field %d, %v", proto, n, v, err)
			}

			// Truncated: the length claims more than the frame holds.
			in = thrift.NewTMemoryBuffer()
			in.Write(raw[:field-1])
			if n > 0 {
				if _, err := proto.newProtocol(in, cfg).ReadBinary(ctx); err == nil {
					t.Fatalf("%s %d bytes truncated: no error", proto, n)
				}
			}
		}
	}
	for _, tc := range []struct {
		name  string
		proto Protocol
		raw   []byte
	}{
		{"binary negative", Binary, binary.BigEndian.AppendUint32(nil, 0xffffff00)},
		{"binary over max", Binary, binary.BigEndian.AppendUint32(nil, 2<<20)},
		{"binary claims 1 MiB of 3 bytes", Binary, append(binary.BigEndian.AppendUint32(nil, 1<<20-1), 1, 2, 3)},
		{"compact negative", Compact, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"compact varint too long", Compact, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"compact claims 1 MiB of 3 bytes", Compact, []byte{0xff, 0xff, 0x3f, 1, 2, 3}},
		{"compact empty", Compact, nil},
	} {
		in := thrift.NewTMemoryBuffer()
		in.Write(tc.raw)
		if b, err := tc.proto.newProtocol(in, cfg).ReadBinary(ctx); err == nil {
			t.Errorf("%s: read %d bytes, want an error", tc.name, len(b))
		}
	}
}

// BenchmarkReadBinary compares our reader with the library's on a 100-byte
// value.
func BenchmarkReadBinary(b *testing.B) {
	ctx := context.Background()
	cfg := &thrift.TConfiguration{}
	enc := thrift.NewTMemoryBuffer()
	thrift.NewTBinaryProtocolConf(enc, cfg).WriteBinary(ctx, make([]byte, 100))
	raw := enc.Bytes()
	for _, bc := range []struct {
		name string
		mk   func(thrift.TTransport) thrift.TProtocol
	}{
		{"library", func(t thrift.TTransport) thrift.TProtocol { return thrift.NewTBinaryProtocolConf(t, cfg) }},
		{"exact", func(t thrift.TTransport) thrift.TProtocol { return Binary.newProtocol(t, cfg) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := thrift.NewTMemoryBuffer()
			p := bc.mk(in)
			b.ReportAllocs()
			for b.Loop() {
				in.Reset()
				in.Write(raw)
				if _, err := p.ReadBinary(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestFrameStrings: on the server's frame reader, strings decode in place —
// known names without an allocation, others copied (they must not alias
// the frame, which is reused) — and a length beyond the frame is an error.
func TestFrameStrings(t *testing.T) {
	ctx := context.Background()
	cfg := &thrift.TConfiguration{}
	for _, p := range []Protocol{Binary, Compact} {
		enc := thrift.NewTMemoryBuffer()
		w := p.newProtocol(enc, cfg)
		w.WriteString(ctx, "GET")
		w.WriteString(ctx, "no-such-command")
		raw := bytes.Clone(enc.Bytes())
		var fr frameReader
		fr.reset(raw)
		r := p.newProtocol(&fr, cfg)
		known, err := r.ReadString(ctx)
		if err != nil || known != "GET" {
			t.Fatalf("%s: known name: %q, %v", p, known, err)
		}
		other, err := r.ReadString(ctx)
		if err != nil || other != "no-such-command" {
			t.Fatalf("%s: other string: %q, %v", p, other, err)
		}
		for i := range raw {
			raw[i] = 'x' // the frame buffer is reused for the next request
		}
		if other != "no-such-command" {
			t.Fatalf("%s: decoded string aliases the frame: %q", p, other)
		}
		fr.reset(raw[:len(raw)-1]) // "GET" then a string one byte short
		r.ReadString(ctx)
		if s, err := r.ReadString(ctx); err == nil {
			t.Fatalf("%s: truncated string decoded as %q", p, s)
		}
		fr.reset(enc.Bytes()[:3])
		if n := testing.AllocsPerRun(100, func() {
			fr.reset(enc.Bytes())
			r.ReadString(ctx)
		}); n != 0 {
			t.Errorf("%s: decoding a known name allocates %v times", p, n)
		}
	}
}
