package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// stubHandler answers every call with something well-formed; it checks
// nothing, so the fuzz target exercises decoding, dispatch and encoding.
type stubHandler struct{}

var _ gen.DialKV = stubHandler{}

func (stubHandler) Ping(context.Context) (*gen.NodeInfo, error) { return &gen.NodeInfo{ID: "n"}, nil }
func (stubHandler) Login(context.Context, string, []byte) (string, error) {
	return "", &gen.Unauthenticated{Message: "stub"}
}
func (stubHandler) Call(_ context.Context, _ *gen.RequestOptions, c *gen.Command) (*gen.ExecuteResponse, error) {
	cc, err := CommandToCore(c)
	if err != nil {
		return nil, &gen.InvalidArgument{Message: err.Error()}
	}
	return &gen.ExecuteResponse{Replies: []*gen.Reply{ReplyFromCore(core.Bulk([]byte(cc.String())), nil)}}, nil
}
func (stubHandler) Execute(_ context.Context, _ *gen.RequestOptions, cs []*gen.Command) (*gen.ExecuteResponse, error) {
	out := &gen.ExecuteResponse{Replies: []*gen.Reply{}}
	for range cs {
		out.Replies = append(out.Replies, ReplyFromCore(core.OK(), nil))
	}
	return out, nil
}
func (stubHandler) Transaction(_ context.Context, _ *gen.RequestOptions, conds []*gen.Condition, _ []*gen.Command) (*gen.ExecuteResponse, error) {
	for _, c := range conds {
		if _, err := CondToCore(c); err != nil {
			return nil, &gen.InvalidArgument{Message: err.Error()}
		}
	}
	return &gen.ExecuteResponse{Replies: []*gen.Reply{}}, nil
}
func (stubHandler) Scan(context.Context, *gen.RequestOptions, *gen.ScanRequest) (*gen.ScanResponse, error) {
	return &gen.ScanResponse{Keys: [][]byte{}}, nil
}
func (stubHandler) IndexQuery(context.Context, *gen.RequestOptions, *gen.IndexQuery) (*gen.IndexQueryResponse, error) {
	return &gen.IndexQueryResponse{Keys: [][]byte{}}, nil
}
func (stubHandler) Publish(context.Context, *gen.RequestOptions, string, []byte) (int64, error) {
	return 0, nil
}
func (stubHandler) Subscribe(context.Context, *gen.RequestOptions, []string, []string) (string, error) {
	return "s", nil
}
func (stubHandler) Poll(context.Context, string, int32, int32) (*gen.PollResponse, error) {
	return &gen.PollResponse{Messages: []*gen.Message{}}, nil
}
func (stubHandler) Unsubscribe(context.Context, string) error                 { return nil }
func (stubHandler) CreateNamespace(context.Context, *gen.NamespaceSpec) error { return nil }
func (stubHandler) DropNamespace(context.Context, string) error               { return nil }
func (stubHandler) ListNamespaces(context.Context) ([]*gen.NamespaceSpec, error) {
	return []*gen.NamespaceSpec{}, nil
}

// lockedBuffer is a log sink safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// encodeCall encodes one request message (no frame header).
func encodeCall(p Protocol, name string, args thrift.TStruct) []byte {
	ctx := context.Background()
	buf := thrift.NewTMemoryBuffer()
	pr := p.newProtocol(buf, &thrift.TConfiguration{})
	pr.WriteMessageBegin(ctx, name, thrift.CALL, 1)
	args.Write(ctx, pr)
	pr.WriteMessageEnd(ctx)
	pr.Flush(ctx)
	return buf.Bytes()
}

func seedRequests(p Protocol) [][]byte {
	v := int64(3)
	ns := "default"
	opts := &gen.RequestOptions{Ns: &ns, Token: []byte{1, 2}}
	return [][]byte{
		encodeCall(p, "ping", &gen.DialKVPingArgs{}),
		encodeCall(p, "call", &gen.DialKVCallArgs{Opts: opts, Cmd: CommandFromCore(core.Cmd("SET", "k", "v"))}),
		encodeCall(p, "execute", &gen.DialKVExecuteArgs{Opts: opts, Cmds: []*gen.Command{CommandFromCore(core.Cmd("GET", "k")), CommandFromCore(core.Cmd("INCR", "n"))}}),
		encodeCall(p, "transaction", &gen.DialKVTransactionArgs{Opts: opts, Conds: []*gen.Condition{{Key: []byte("k"), Kind: gen.ConditionKind_VERSION, Version: &v}}, Cmds: []*gen.Command{CommandFromCore(core.Cmd("DEL", "k"))}}),
		encodeCall(p, "scan", &gen.DialKVScanArgs{Opts: opts, Req: &gen.ScanRequest{Prefix: []byte("a")}}),
		encodeCall(p, "subscribe", &gen.DialKVSubscribeArgs{Opts: opts, Channels: []string{"c"}, Patterns: []string{"p*"}}),
		encodeCall(p, "poll", &gen.DialKVPollArgs{Subscription: "s", Max: 10, WaitMs: 0}),
		encodeCall(p, "create_namespace", &gen.DialKVCreateNamespaceArgs{Spec: &gen.NamespaceSpec{Name: "x", Strategy: "local", Params: map[string]string{"a": "b"}}}),
	}
}

// FuzzProcess feeds arbitrary request frames to the server's decoding path
// (binary protocol). Every input must produce a well-formed framed reply or
// none, and never a panic. The seed corpus (testdata/fuzz/FuzzProcess plus
// the valid requests added here) runs in every `go test`.
func FuzzProcess(f *testing.F) {
	for _, s := range seedRequests(Binary) {
		f.Add(s)
	}
	logs := &lockedBuffer{}
	srv := NewServer(gen.NewDialKVProcessor(stubHandler{}), ServerConfig{
		MaxFrame: 1 << 16,
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > 1<<16 {
			return // the connection loop rejects these before decoding
		}
		resp, _ := srv.Process(frame)
		if len(resp) > 0 {
			if len(resp) < 4 || int(binary.BigEndian.Uint32(resp)) != len(resp)-4 {
				t.Fatalf("malformed reply frame for input %x", frame)
			}
		}
		if l := logs.String(); strings.Contains(l, "panicked") {
			t.Fatalf("a request panicked the handler path: %s (input %x)", l, frame)
		}
	})
}

// TestProcessCompact runs the seed requests through a compact-protocol
// server and checks each gets a REPLY.
func TestProcessBothProtocols(t *testing.T) {
	for _, p := range []Protocol{Binary, Compact} {
		srv := NewServer(gen.NewDialKVProcessor(stubHandler{}), ServerConfig{Protocol: p})
		for i, req := range seedRequests(p) {
			resp, keep := srv.Process(req)
			if !keep || len(resp) < 4 {
				t.Fatalf("%s seed %d: keep=%v, %d bytes", p, i, keep, len(resp))
			}
			pr := p.newProtocol(&thrift.TMemoryBuffer{Buffer: bytes.NewBuffer(resp[4:])}, &thrift.TConfiguration{})
			_, typ, _, err := pr.ReadMessageBegin(context.Background())
			if err != nil || typ != thrift.REPLY {
				t.Fatalf("%s seed %d: reply type %v, %v", p, i, typ, err)
			}
		}
		// A binary-protocol request to a compact server (or the reverse) is
		// an exception, not a crash.
		other := Compact
		if p == Compact {
			other = Binary
		}
		resp, _ := srv.Process(seedRequests(other)[1])
		if len(resp) < 4 {
			t.Fatalf("%s server, %s request: no reply", p, other)
		}
	}
}

type panicHandler struct{ stubHandler }

func (panicHandler) Ping(context.Context) (*gen.NodeInfo, error) { panic("boom") }

// TestProcessRecoversPanic: a panic while serving a request closes that
// connection and is logged (which is what FuzzProcess watches for).
func TestProcessRecoversPanic(t *testing.T) {
	logs := &lockedBuffer{}
	srv := NewServer(gen.NewDialKVProcessor(panicHandler{}), ServerConfig{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	resp, keep := srv.Process(seedRequests(Binary)[0])
	if keep || len(resp) < 4 || !strings.Contains(logs.String(), "panicked") {
		t.Fatalf("keep=%v, %d reply bytes, logs %q", keep, len(resp), logs.String())
	}
}

// FuzzFrameMethod: the event loop's quick look at a request's method name
// (frameMethod) agrees with the protocol's own ReadMessageBegin on
// arbitrary frames, in both protocols: where both decode a name it is the
// same, and a frame that starts with a header as the protocol writes it
// (binary: the strict one) has its name found. It never panics. (The
// library also reads some non-canonical headers, such as over-long
// varints; frameMethod may refuse those: they are then served by a worker.)
func FuzzFrameMethod(f *testing.F) {
	for _, p := range []Protocol{Binary, Compact} {
		for _, s := range seedRequests(p) {
			f.Add(s)
		}
	}
	cfg := &thrift.TConfiguration{MaxMessageSize: 1 << 20}
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, p := range []Protocol{Binary, Compact} {
			got, ok := frameMethod(p, frame)
			var in frameReader
			in.reset(frame)
			name, typ, seq, err := p.newProtocol(&in, cfg).ReadMessageBegin(context.Background())
			if err != nil {
				continue
			}
			if ok && string(got) != name {
				t.Fatalf("%s: frameMethod = %q, ReadMessageBegin = %q (input %x)", p, got, name, frame)
			}
			hdr := thrift.NewTMemoryBuffer()
			p.newProtocol(hdr, cfg).WriteMessageBegin(context.Background(), name, typ, seq)
			if !ok && bytes.HasPrefix(frame, hdr.Bytes()) {
				t.Fatalf("%s: ReadMessageBegin read %q from a canonical header, frameMethod found nothing (input %x)", p, name, frame)
			}
		}
	})
}
