//go:build linux

package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// TestEpollPipelinedReplies: requests pipelined in one write are answered
// in order (their replies share one write buffer), and Shutdown then closes
// the connection.
// Both ways of waiting for events: blocking in epoll_wait, and in Go's
// poller (WaitInPoller), whose wake-up by Shutdown is checked too.
func TestEpollPipelinedReplies(t *testing.T) {
	for _, poller := range []bool{false, true} {
		t.Run(fmt.Sprintf("poller=%v", poller), func(t *testing.T) { testEpollPipelinedReplies(t, poller) })
	}
}

func testEpollPipelinedReplies(t *testing.T, poller bool) {
	srv := NewServer(gen.NewDialKVProcessor(&benchHandler{value: []byte("v"), name: "n1"}), ServerConfig{Mode: ModeEpoll, WaitInPoller: poller})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))

	const n = 50
	var req bytes.Buffer
	for i := range n {
		buf := thrift.NewTMemoryBuffer()
		p := Binary.newProtocol(buf, &thrift.TConfiguration{})
		ctx := context.Background()
		p.WriteMessageBegin(ctx, "call", thrift.CALL, int32(i+1))
		(&gen.DialKVCallArgs{Opts: &gen.RequestOptions{}, Cmd: CommandFromCore(core.Cmd("GET", "k"))}).Write(ctx, p)
		p.WriteMessageEnd(ctx)
		binary.Write(&req, binary.BigEndian, uint32(buf.Len()))
		req.Write(buf.Bytes())
	}
	if _, err := nc.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		frame, err := readFrame(nc, nil, 1<<20)
		if err != nil {
			t.Fatalf("reply %d of %d: %v (reproduce: go test -run TestEpollPipelinedReplies ./transport)", i+1, n, err)
		}
		p := Binary.newProtocol(&thrift.TMemoryBuffer{Buffer: bytes.NewBuffer(frame)}, &thrift.TConfiguration{})
		name, typ, seq, err := p.ReadMessageBegin(context.Background())
		if err != nil || name != "call" || typ != thrift.REPLY || seq != int32(i+1) {
			t.Fatalf("reply %d: %q type %v seq %d, %v; want call REPLY seq %d", i+1, name, typ, seq, err, i+1)
		}
		var res gen.DialKVCallResult
		if err := res.Read(context.Background(), p); err != nil || res.Success == nil || string(res.Success.Replies[0].Str) != "v" {
			t.Fatalf("reply %d: %+v, %v", i+1, res.Success, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve returned %v after Shutdown, want nil", err)
	}
	if _, err := nc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection after Shutdown: read %v, want EOF", err)
	}
}
