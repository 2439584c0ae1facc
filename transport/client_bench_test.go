package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// cannedServer answers every binary-protocol request frame on ln with the
// same reply frame, its sequence number patched to the request's: the
// cheapest possible server, so that a benchmark against it measures the
// client. It returns when ln is closed.
func cannedServer(ln net.Listener, reply []byte) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer nc.Close()
			br := bufio.NewReader(nc)
			out := append([]byte(nil), reply...)
			var req []byte
			for {
				var err error
				if req, err = readFrame(br, req, 1<<20); err != nil {
					return
				}
				// Strict binary header: version (4), name length (4),
				// name, sequence number (4).
				nameLen := int(binary.BigEndian.Uint32(req[4:8]))
				seq := req[8+nameLen : 12+nameLen]
				rNameLen := int(binary.BigEndian.Uint32(out[8:12]))
				copy(out[12+rNameLen:16+rNameLen], seq)
				if _, err := nc.Write(out); err != nil {
					return
				}
			}
		}()
	}
}

// cannedReply is the framed binary-protocol reply to `call` with one
// 100-byte bulk value, as a node sends it.
func cannedReply() []byte {
	ctx := context.Background()
	buf := thrift.NewTMemoryBuffer()
	p := thrift.NewTBinaryProtocolConf(buf, &thrift.TConfiguration{})
	served := "n1"
	p.WriteMessageBegin(ctx, "call", thrift.REPLY, 1)
	(&gen.DialKVCallResult{Success: &gen.ExecuteResponse{Replies: []*gen.Reply{ReplyFromCore(core.Bulk(make([]byte, 100)), nil)}, ServedBy: &served}}).Write(ctx, p)
	p.WriteMessageEnd(ctx)
	frame := binary.BigEndian.AppendUint32(nil, uint32(buf.Len()))
	return append(frame, buf.Bytes()...)
}

// BenchmarkClientCall measures the client side of a `call` (a GET
// answered with a 100-byte value) over loopback against cannedServer,
// whose cost is fixed: compare cpu-µs/op (the process's CPU time per
// call, the canned server included) and allocs/op between builds:
//
//	go test -run '^$' -bench ClientCall -benchtime=50000x ./transport
func BenchmarkClientCall(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go cannedServer(ln, cannedReply())
	ctx := context.Background()
	c, err := Dial(ctx, ln.Addr().String(), DialOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	opts := &gen.RequestOptions{}
	cmd := &gen.Command{Name: "GET", Argv: [][]byte{[]byte("bench:0000000042")}}
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		r, err := c.Call(ctx, opts, cmd)
		if err != nil || len(r.Replies) != 1 || len(r.Replies[0].Str) != 100 {
			b.Fatalf("call: %+v, %v", r, err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
}

// TestClientFramedReplies: the client transport decodes replies of every
// size through its reused buffers, one after the other on one
// connection, and refuses a reply frame over the maximum.
func TestClientFramedReplies(t *testing.T) {
	srv := NewServer(gen.NewDialKVProcessor(echoHandler{}), ServerConfig{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	ctx := context.Background()
	c, err := Dial(ctx, ln.Addr().String(), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, size := range []int{0, 1, 100, 5000, 100 << 10, 10, 70 << 10, 3} {
		val := make([]byte, size)
		for i := range val {
			val[i] = byte(i * 7)
		}
		r, err := c.Call(ctx, &gen.RequestOptions{}, &gen.Command{Name: "ECHO", Argv: [][]byte{val}})
		if err != nil || len(r.Replies) != 1 || !bytes.Equal(r.Replies[0].Str, val) {
			t.Fatalf("echo of %d bytes: %d replies, %v (reproduce: go test -run TestClientFramedReplies ./transport)", size, len(r.GetReplies()), err)
		}
	}
	// A reply over the client's maximum frame fails the call.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	go cannedServer(ln2, cannedReply())
	small, err := Dial(ctx, ln2.Addr().String(), DialOptions{MaxFrame: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if r, err := small.Call(ctx, &gen.RequestOptions{}, &gen.Command{Name: "GET", Argv: [][]byte{[]byte("k")}}); err == nil {
		t.Fatalf("a reply over MaxFrame 64 was accepted: %+v", r)
	}
}

// echoHandler answers `call` with its command's last argument.
type echoHandler struct{ stubHandler }

func (echoHandler) Call(_ context.Context, _ *gen.RequestOptions, c *gen.Command) (*gen.ExecuteResponse, error) {
	return &gen.ExecuteResponse{Replies: []*gen.Reply{ReplyFromCore(core.Bulk(c.Argv[len(c.Argv)-1]), nil)}}, nil
}
