package security

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// pingOnly answers ping; any other method that reaches it panics (the
// embedded interface is nil), which the transport logs as "panicked".
type pingOnly struct{ gen.DialKV }

func (pingOnly) Ping(context.Context) (*gen.NodeInfo, error) { return &gen.NodeInfo{ID: "n"}, nil }

type fuzzLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *fuzzLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *fuzzLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func encodeCall(name string, args thrift.TStruct) []byte {
	buf := thrift.NewTMemoryBuffer()
	p := thrift.NewTBinaryProtocolConf(buf, &thrift.TConfiguration{})
	ctx := context.Background()
	p.WriteMessageBegin(ctx, name, thrift.CALL, 1)
	args.Write(ctx, p)
	p.WriteMessageEnd(ctx)
	p.Flush(ctx)
	return buf.Bytes()
}

// FuzzGuardRequest feeds arbitrary request frames from an anonymous
// connection to a node's client request path (transport decoding, then the
// Guard with a policy): nothing but ping may reach the handler, whatever
// the bytes, and nothing panics. Longer runs:
//
//	go test ./nodes/security -run '^$' -fuzz FuzzGuardRequest -fuzztime 60s
func FuzzGuardRequest(f *testing.F) {
	ns := "default"
	opts := &gen.RequestOptions{Ns: &ns}
	for _, s := range [][]byte{
		encodeCall("ping", &gen.DialKVPingArgs{}),
		encodeCall("login", &gen.DialKVLoginArgs{User: "bob", Secret: []byte("guess")}),
		encodeCall("login", &gen.DialKVLoginArgs{Secret: []byte("token")}),
		encodeCall("call", &gen.DialKVCallArgs{Opts: opts, Cmd: cmd("GET", "k")}),
		encodeCall("execute", &gen.DialKVExecuteArgs{Opts: opts, Cmds: []*gen.Command{cmd("SET", "k", "v"), nil}}),
		encodeCall("transaction", &gen.DialKVTransactionArgs{Opts: opts, Cmds: []*gen.Command{cmd("DEL", "k")}}),
		encodeCall("scan", &gen.DialKVScanArgs{Opts: opts, Req: &gen.ScanRequest{}}),
		encodeCall("poll", &gen.DialKVPollArgs{Subscription: "s"}),
		encodeCall("drop_namespace", &gen.DialKVDropNamespaceArgs{Name: "default"}),
		encodeCall("list_namespaces", &gen.DialKVListNamespacesArgs{}),
	} {
		f.Add(s)
	}
	hash, err := HashPassword("secret-password", HashParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		f.Fatal(err)
	}
	pol, err := NewPolicy(PolicyFile{
		Users:  map[string]UserEntry{"bob": {Password: hash}},
		Grants: []Grant{{Principals: []string{"*"}, Namespaces: []string{"*"}, Actions: []string{"admin"}}},
	})
	if err != nil {
		f.Fatal(err)
	}
	logs := &fuzzLog{}
	g := &Guard{Inner: pingOnly{}, Auth: pol, Authn: pol}
	srv := transport.NewServer(gen.NewDialKVProcessor(g), transport.ServerConfig{MaxFrame: 1 << 16, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > 1<<16 {
			return
		}
		srv.ProcessContext(WithSession(context.Background()), frame)
		if l := logs.String(); strings.Contains(l, "panicked") {
			t.Fatalf("an anonymous request reached the handler or panicked: %s (input %x)", l, frame)
		}
	})
}
