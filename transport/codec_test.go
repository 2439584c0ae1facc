package transport

import (
	"context"
	"errors"
	"testing"

	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// TestClientCodec: requests the codec encodes are served by a Server
// (both protocols, single calls and batches, several frames appended to
// one buffer), its replies decode, a typed exception comes back as that
// exception, a reply to another sequence number is refused, and FrameLen
// finds frames only once they are complete.
func TestClientCodec(t *testing.T) {
	const repro = "(reproduce: go test -run TestClientCodec ./transport)"
	for _, p := range []Protocol{Binary, Compact} {
		srv := NewServer(gen.NewDialKVProcessor(refusingHandler{}), ServerConfig{Protocol: p})
		c := NewClientCodec(p, 1<<20)
		ns := "ns1"
		opts := &gen.RequestOptions{Ns: &ns}
		buf, err := c.AppendCall(nil, 7, opts, &gen.Command{Name: "GET", Argv: [][]byte{[]byte("k")}})
		if err != nil {
			t.Fatalf("%s: AppendCall: %v %s", p, err, repro)
		}
		first := len(buf)
		cmds := []*gen.Command{{Name: "SET", Argv: [][]byte{[]byte("a"), []byte("1")}}, {Name: "GET", Argv: [][]byte{[]byte("a")}}}
		if buf, err = c.AppendExecute(buf, 8, opts, cmds); err != nil {
			t.Fatalf("%s: AppendExecute: %v %s", p, err, repro)
		}
		// Frame boundaries: nothing until a frame is complete.
		for cut := range first {
			if n, err := c.FrameLen(buf[:cut]); n != 0 || err != nil {
				t.Fatalf("%s: FrameLen of %d of %d bytes = %d, %v %s", p, cut, first, n, err, repro)
			}
		}
		if n, err := c.FrameLen(buf); n != first || err != nil {
			t.Fatalf("%s: FrameLen = %d, %v, want %d %s", p, n, err, first, repro)
		}
		second := buf[first:]
		if n, _ := c.FrameLen(second); n != len(second) {
			t.Fatalf("%s: second frame length %d, want %d %s", p, n, len(second), repro)
		}

		resp, keep := srv.Process(buf[4:first])
		if !keep {
			t.Fatalf("%s: the server closed the connection %s", p, repro)
		}
		r, err := c.DecodeCall(resp[4:], 7)
		if err != nil || len(r.Replies) != 1 || string(r.Replies[0].Str) != "GET k" {
			t.Fatalf("%s: call reply %+v, %v %s", p, r, err, repro)
		}
		if _, err := c.DecodeCall(resp[4:], 9); err == nil {
			t.Fatalf("%s: a reply to seq 7 decoded as seq 9's %s", p, repro)
		}
		resp, _ = srv.Process(second[4:])
		r, err = c.DecodeExecute(resp[4:], 8)
		if err != nil || len(r.Replies) != 2 {
			t.Fatalf("%s: execute reply %+v, %v %s", p, r, err, repro)
		}

		// A typed exception.
		bad, err := c.AppendCall(nil, 10, opts, &gen.Command{Name: "REFUSE"})
		if err != nil {
			t.Fatal(err)
		}
		resp, _ = srv.Process(bad[4:])
		var inv *gen.InvalidArgument
		if _, err := c.DecodeCall(resp[4:], 10); !errors.As(err, &inv) {
			t.Fatalf("%s: want InvalidArgument, got %v %s", p, err, repro)
		}
	}
	// An application exception (a request the server cannot decode) is an
	// error too.
	srv := NewServer(gen.NewDialKVProcessor(refusingHandler{}), ServerConfig{})
	c := NewClientCodec(Binary, 1<<20)
	bad, _ := c.AppendCall(nil, 3, &gen.RequestOptions{}, nil) // no command: Name is required
	resp, _ := srv.Process(bad[4:])
	if _, err := c.DecodeCall(resp[4:], 3); err == nil {
		t.Fatalf("an application exception decoded as a reply %s", repro)
	}
	c = NewClientCodec(Binary, 64)
	if _, err := c.FrameLen([]byte{0, 0, 1, 0, 1}); err == nil {
		t.Fatalf("a 256-byte frame header passed a 64-byte maximum %s", repro)
	}
	if _, err := c.AppendCall(nil, 1, &gen.RequestOptions{}, &gen.Command{Name: "SET", Argv: [][]byte{make([]byte, 100)}}); err == nil {
		t.Fatalf("a request over the 64-byte maximum was encoded %s", repro)
	}
}

// refusingHandler answers a REFUSE command with InvalidArgument.
type refusingHandler struct{ stubHandler }

func (h refusingHandler) Call(ctx context.Context, o *gen.RequestOptions, c *gen.Command) (*gen.ExecuteResponse, error) {
	if c.Name == "REFUSE" {
		return nil, &gen.InvalidArgument{Message: "refused"}
	}
	return h.stubHandler.Call(ctx, o, c)
}
