package nodes

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// message encodes one Thrift call message (binary protocol) and frames it.
func message(t *testing.T, name string, seq int32, args thrift.TStruct) []byte {
	t.Helper()
	ctx := context.Background()
	buf := thrift.NewTMemoryBuffer()
	p := thrift.NewTBinaryProtocolConf(buf, nil)
	p.WriteMessageBegin(ctx, name, thrift.CALL, seq)
	if args != nil {
		if err := args.Write(ctx, p); err != nil {
			t.Fatal(err)
		}
	} else {
		p.WriteStructBegin(ctx, "x")
		p.WriteFieldStop(ctx)
		p.WriteStructEnd(ctx)
	}
	p.WriteMessageEnd(ctx)
	p.Flush(ctx)
	return frame(buf.Bytes())
}

func frame(b []byte) []byte {
	out := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(out, uint32(len(b)))
	copy(out[4:], b)
	return out
}

// readReply reads one framed reply and returns its message type and, for
// exceptions, the application exception.
func readReply(t *testing.T, c net.Conn) (thrift.TMessageType, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, err
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		return 0, err
	}
	ctx := context.Background()
	p := thrift.NewTBinaryProtocolConf(&thrift.TMemoryBuffer{Buffer: bytes.NewBuffer(body)}, nil)
	_, typ, _, err := p.ReadMessageBegin(ctx)
	if err != nil {
		t.Fatalf("undecodable reply: %v", err)
	}
	if typ == thrift.EXCEPTION {
		x := thrift.NewTApplicationException(0, "")
		x.Read(ctx, p)
		return typ, x
	}
	return typ, nil
}

// expectClosed asserts the server closes c (after any final reply).
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server did not close the connection")
	}
}

func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestBadInput sends malformed input over raw sockets. Each offending
// connection gets an error or is closed; a well-behaved client on another
// connection keeps working throughout, and its acknowledged writes stay.
func TestBadInput(t *testing.T) {
	for _, mode := range []transport.ConnMode{transport.ModeEpoll, transport.ModeGoroutine} {
		t.Run(string(mode), func(t *testing.T) { badInput(t, mode) })
	}
}

func badInput(t *testing.T, mode transport.ConnMode) {
	n := startNode(t, Config{MaxFrame: 1 << 16, IdleTimeout: time.Minute, ConnMode: mode})
	good := dial(t, n.Addr())
	ctx := context.Background()
	write := func(i int) {
		t.Helper()
		k := "good" + string(rune('a'+i))
		if _, err := good.Call(ctx, noOpts(), cmd("SET", k, "v")); err != nil {
			t.Fatalf("well-behaved client after bad input %d: %v", i, err)
		}
	}
	setArgs := &gen.DialKVCallArgs{Opts: noOpts(), Cmd: cmd("SET", "x", "1")}

	cases := []struct {
		name string
		run  func(t *testing.T, c net.Conn)
	}{
		{"garbage bytes (a Redis inline command)", func(t *testing.T, c net.Conn) {
			c.Write([]byte("GET foo\r\nSET a b\r\n"))
			typ, err := readReply(t, c)
			if typ != thrift.EXCEPTION || err == nil || !strings.Contains(err.Error(), "max-frame") {
				t.Fatalf("reply %v %v, want a frame-size exception", typ, err)
			}
			expectClosed(t, c)
		}},
		{"frame over the maximum", func(t *testing.T, c net.Conn) {
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], 1<<16+1)
			c.Write(hdr[:])
			typ, err := readReply(t, c)
			if typ != thrift.EXCEPTION || err == nil {
				t.Fatalf("reply %v %v, want an exception", typ, err)
			}
			expectClosed(t, c)
		}},
		{"zero-length frame", func(t *testing.T, c net.Conn) {
			c.Write([]byte{0, 0, 0, 0})
			readReply(t, c)
			expectClosed(t, c)
		}},
		{"truncated frame, then silence", func(t *testing.T, c net.Conn) {
			m := message(t, "call", 1, setArgs)
			c.Write(m[:len(m)/2])
			expectClosed(t, c) // after --frame-timeout (200 ms here)
		}},
		{"truncated frame, then EOF", func(t *testing.T, c net.Conn) {
			m := message(t, "call", 1, setArgs)
			c.Write(m[:len(m)-3])
			c.(*net.TCPConn).CloseWrite()
			expectClosed(t, c)
		}},
		{"garbage inside a well-formed frame", func(t *testing.T, c net.Conn) {
			c.Write(frame([]byte{0x80, 0x01, 0x00, 0x01, 0xff, 0xff, 0xff, 0xf0, 'x'}))
			typ, err := readReply(t, c)
			if typ != thrift.EXCEPTION || err == nil {
				t.Fatalf("reply %v %v, want an exception", typ, err)
			}
			// Framing is intact: the connection still serves.
			c.Write(message(t, "ping", 2, &gen.DialKVPingArgs{}))
			if typ, err := readReply(t, c); typ != thrift.REPLY || err != nil {
				t.Fatalf("ping after garbage: %v %v", typ, err)
			}
		}},
		{"unknown method", func(t *testing.T, c net.Conn) {
			c.Write(message(t, "flushall", 7, nil))
			typ, err := readReply(t, c)
			var ae thrift.TApplicationException
			if typ != thrift.EXCEPTION || !errors.As(err, &ae) || ae.TypeId() != thrift.UNKNOWN_METHOD {
				t.Fatalf("reply %v %v, want UNKNOWN_METHOD", typ, err)
			}
			c.Write(message(t, "call", 8, setArgs))
			if typ, err := readReply(t, c); typ != thrift.REPLY || err != nil {
				t.Fatalf("call after an unknown method: %v %v", typ, err)
			}
		}},
		{"wrong argument types", func(t *testing.T, c net.Conn) {
			// call(opts: struct, cmd: struct) sent as call(1: i32, 2: string).
			ctx := context.Background()
			buf := thrift.NewTMemoryBuffer()
			p := thrift.NewTBinaryProtocolConf(buf, nil)
			p.WriteMessageBegin(ctx, "call", thrift.CALL, 9)
			p.WriteStructBegin(ctx, "args")
			p.WriteFieldBegin(ctx, "opts", thrift.I32, 1)
			p.WriteI32(ctx, 42)
			p.WriteFieldEnd(ctx)
			p.WriteFieldBegin(ctx, "cmd", thrift.STRING, 2)
			p.WriteString(ctx, "SET k v")
			p.WriteFieldEnd(ctx)
			p.WriteFieldStop(ctx)
			p.WriteStructEnd(ctx)
			p.WriteMessageEnd(ctx)
			c.Write(frame(buf.Bytes()))
			typ, err := readReply(t, c)
			if typ != thrift.REPLY || err != nil {
				t.Fatalf("reply %v %v, want a REPLY carrying InvalidArgument", typ, err)
			}
		}},
		{"huge container length inside a frame", func(t *testing.T, c net.Conn) {
			ctx := context.Background()
			buf := thrift.NewTMemoryBuffer()
			p := thrift.NewTBinaryProtocolConf(buf, nil)
			p.WriteMessageBegin(ctx, "execute", thrift.CALL, 10)
			p.WriteStructBegin(ctx, "args")
			p.WriteFieldBegin(ctx, "cmds", thrift.LIST, 2)
			p.WriteListBegin(ctx, thrift.STRUCT, 1<<30) // a billion commands, none sent
			c.Write(frame(buf.Bytes()))
			typ, err := readReply(t, c)
			if typ != thrift.EXCEPTION || err == nil {
				t.Fatalf("reply %v %v, want an exception", typ, err)
			}
		}},
	}
	n.server.SetFrameTimeoutForTest(200 * time.Millisecond)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			write(i)
			tc.run(t, rawConn(t, n.Addr()))
			write(i + 100)
		})
	}
	// Nothing acknowledged was lost.
	for i := range cases {
		for _, j := range []int{i, i + 100} {
			k := "good" + string(rune('a'+j))
			r, err := good.Call(ctx, noOpts(), cmd("GET", k))
			if err != nil || string(r.Replies[0].Str) != "v" {
				t.Fatalf("acknowledged %s = %v, %v after the bad input", k, r, err)
			}
		}
	}
}

// TestMaxBatch: a batch or transaction over --max-batch is refused with a
// typed InvalidArgument naming the limit, and none of it runs; a batch at
// the limit is served.
func TestMaxBatch(t *testing.T) {
	n := startNode(t, Config{Engine: "memory", MaxBatch: 3})
	c := dial(t, n.Addr())
	ctx := context.Background()
	sets := func(k int) []*gen.Command {
		var out []*gen.Command
		for i := range k {
			out = append(out, cmd("SET", fmt.Sprint("k", i), "v"))
		}
		return out
	}
	var ia *gen.InvalidArgument
	if _, err := c.Execute(ctx, noOpts(), sets(4)); !errors.As(err, &ia) || !strings.Contains(ia.Message, "--max-batch") {
		t.Fatalf("batch of 4 over --max-batch 3: %v, want InvalidArgument naming --max-batch", err)
	}
	stale := int64(0)
	conds := []*gen.Condition{{Key: []byte("k0"), Kind: gen.ConditionKind_VERSION, Version: &stale}}
	if _, err := c.Transaction(ctx, noOpts(), conds, sets(3)); !errors.As(err, &ia) {
		t.Fatalf("transaction of 1 condition + 3 commands over --max-batch 3: %v, want InvalidArgument", err)
	}
	r, err := c.Call(ctx, noOpts(), cmd("EXISTS", "k0", "k1", "k2", "k3"))
	if err != nil || len(r.Replies) != 1 || r.Replies[0].GetIntVal() != 0 {
		t.Fatalf("after the refused batches EXISTS = %v, %v; want 0 (nothing ran)", r, err)
	}
	if resp, err := c.Execute(ctx, noOpts(), sets(3)); err != nil || len(resp.Replies) != 3 {
		t.Fatalf("batch of 3 at the limit: %v, %v", resp, err)
	}
}
