package security

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// fakeKV counts the requests that reach it: the Guard must stop rejected
// ones before any work.
type fakeKV struct {
	gen.DialKV // methods not overridden panic: the Guard must not reach them in tests that do not expect it
	calls      atomic.Int32
}

func (f *fakeKV) Ping(context.Context) (*gen.NodeInfo, error) {
	f.calls.Add(1)
	return &gen.NodeInfo{ID: "fake"}, nil
}

func (f *fakeKV) Call(context.Context, *gen.RequestOptions, *gen.Command) (*gen.ExecuteResponse, error) {
	f.calls.Add(1)
	return &gen.ExecuteResponse{Replies: []*gen.Reply{{Kind: gen.ReplyKind_STATUS, Str: []byte("OK")}}}, nil
}

func (f *fakeKV) Execute(context.Context, *gen.RequestOptions, []*gen.Command) (*gen.ExecuteResponse, error) {
	f.calls.Add(1)
	return &gen.ExecuteResponse{}, nil
}

func (f *fakeKV) Transaction(context.Context, *gen.RequestOptions, []*gen.Condition, []*gen.Command) (*gen.ExecuteResponse, error) {
	f.calls.Add(1)
	return &gen.ExecuteResponse{}, nil
}

func (f *fakeKV) DropNamespace(context.Context, string) error {
	f.calls.Add(1)
	return nil
}

func (f *fakeKV) Poll(context.Context, string, int32, int32) (*gen.PollResponse, error) {
	f.calls.Add(1)
	return &gen.PollResponse{}, nil
}

func cmd(name string, args ...string) *gen.Command {
	c := &gen.Command{Name: name}
	for _, a := range args {
		c.Argv = append(c.Argv, []byte(a))
	}
	return c
}

func TestGuard(t *testing.T) {
	pol, _ := testPolicy(t)
	ns := func(s string) *gen.RequestOptions { return &gen.RequestOptions{Ns: &s} }
	as := func(name string) context.Context {
		if name == "" {
			return context.Background()
		}
		return WithPrincipal(context.Background(), Principal{Name: name, Method: "cert"})
	}
	const ok, unauth, forbid = "ok", "unauthenticated", "forbidden"
	for _, tc := range []struct {
		name string
		who  string
		do   func(g *Guard, ctx context.Context) error
		want string
	}{
		{"anonymous get", "", func(g *Guard, ctx context.Context) error { _, err := g.Call(ctx, nil, cmd("GET", "k")); return err }, unauth},
		{"anonymous ping", "", func(g *Guard, ctx context.Context) error { _, err := g.Ping(ctx); return err }, ok},
		{"anonymous poll", "", func(g *Guard, ctx context.Context) error { _, err := g.Poll(ctx, "s", 1, 0); return err }, unauth},
		{"reader get", "reader", func(g *Guard, ctx context.Context) error { _, err := g.Call(ctx, nil, cmd("get", "k")); return err }, ok},
		{"reader set", "reader", func(g *Guard, ctx context.Context) error {
			_, err := g.Call(ctx, nil, cmd("SET", "k", "v"))
			return err
		}, forbid},
		{"reader unknown command", "reader", func(g *Guard, ctx context.Context) error { _, err := g.Call(ctx, nil, cmd("FLUSHALL")); return err }, forbid},
		{"reader batch with one write", "reader", func(g *Guard, ctx context.Context) error {
			_, err := g.Execute(ctx, nil, []*gen.Command{cmd("GET", "a"), cmd("DEL", "a")})
			return err
		}, forbid},
		{"reader read-only batch", "reader", func(g *Guard, ctx context.Context) error {
			_, err := g.Execute(ctx, nil, []*gen.Command{cmd("GET", "a"), cmd("EXISTS", "a")})
			return err
		}, ok},
		{"ci-bot conditional txn needs read", "ci-bot", func(g *Guard, ctx context.Context) error {
			_, err := g.Transaction(ctx, ns("ingest"), []*gen.Condition{{Key: []byte("k"), Kind: gen.ConditionKind_ABSENT}}, []*gen.Command{cmd("SET", "k", "v")})
			return err
		}, forbid},
		{"ci-bot blind txn", "ci-bot", func(g *Guard, ctx context.Context) error {
			_, err := g.Transaction(ctx, ns("ingest"), nil, []*gen.Command{cmd("SET", "k", "v")})
			return err
		}, ok},
		{"alice set in app-x", "alice", func(g *Guard, ctx context.Context) error {
			_, err := g.Call(ctx, ns("app-x"), cmd("SET", "k", "v"))
			return err
		}, ok},
		{"alice drop namespace", "alice", func(g *Guard, ctx context.Context) error { return g.DropNamespace(ctx, "app-x") }, forbid},
		{"ops drop namespace", "ops", func(g *Guard, ctx context.Context) error { return g.DropNamespace(ctx, "app-x") }, ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &fakeKV{}
			g := &Guard{Inner: inner, Auth: pol}
			err := tc.do(g, as(tc.who))
			got := ok
			var ue *gen.Unauthenticated
			var fe *gen.Forbidden
			switch {
			case errors.As(err, &ue), errors.Is(err, ErrUnauthenticated):
				got = unauth
			case errors.As(err, &fe):
				got = forbid
			case err != nil:
				got = "other: " + err.Error()
			}
			if got != tc.want {
				t.Fatalf("got %s (%v); want %s", got, err, tc.want)
			}
			if wantCalls := map[bool]int32{true: 1, false: 0}[got == ok]; inner.calls.Load() != wantCalls {
				t.Fatalf("inner handler ran %d times; want %d (rejections must happen before any work)", inner.calls.Load(), wantCalls)
			}
		})
	}
}

// serveConns is the per-connection serving the node needs for
// certificate principals: each connection's handshake yields a context
// that every request on it is processed with. transport.Server processes
// all requests with one server-wide context today (see docs/security.md,
// "What remains").
func serveConns(t *testing.T, ln net.Listener, proc thrift.TProcessor) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			ctx, err := ConnContext(context.Background(), nc)
			if err != nil {
				return
			}
			cfg := &thrift.TConfiguration{}
			tr := thrift.NewTFramedTransportConf(thrift.NewStreamTransportRW(nc), cfg)
			prot := thrift.NewTBinaryProtocolConf(tr, cfg)
			for {
				if ok, err := proc.Process(ctx, prot, prot); !ok || err != nil {
					return
				}
			}
		}()
	}
}

func dialGen(t *testing.T, addr string, cfg *tls.Config) (*gen.DialKVClient, net.Conn) {
	t.Helper()
	var nc net.Conn
	var err error
	if cfg != nil {
		nc, err = tls.Dial("tcp", addr, cfg)
	} else {
		nc, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	tcfg := &thrift.TConfiguration{}
	tr := thrift.NewTFramedTransportConf(thrift.NewStreamTransportRW(nc), tcfg)
	prot := thrift.NewTBinaryProtocolConf(tr, tcfg)
	return gen.NewDialKVClientProtocol(tr, prot, prot), nc
}

// TestEndToEndTLSAndAuth: over real TLS connections and the generated
// Thrift code, a client with a certificate connects, a plain client is
// refused, a request without credentials gets Unauthenticated and a
// read-only user's write gets Forbidden — and the handler never sees the
// rejected requests.
func TestEndToEndTLSAndAuth(t *testing.T) {
	dir := devCerts(t)
	pol, _ := testPolicy(t)
	inner := &fakeKV{}
	proc := gen.NewDialKVProcessor(&Guard{Inner: inner, Auth: pol})
	ctx := context.Background()

	t.Run("mutual TLS listener", func(t *testing.T) {
		srv, err := ServerConfig(files(dir, "node-n1", true))
		if err != nil {
			t.Fatal(err)
		}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go serveConns(t, ln, proc)
		addr := ln.Addr().String()

		reader, err := ClientConfig(files(dir, "client-reader", true), "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		c, nc := dialGen(t, addr, reader)
		defer nc.Close()
		get := "GET"
		if _, err := c.Call(ctx, nil, &gen.Command{Name: get, Argv: [][]byte{[]byte("k")}}); err != nil {
			t.Fatalf("reader GET over mTLS: %v", err)
		}
		before := inner.calls.Load()
		_, err = c.Call(ctx, nil, cmd("SET", "k", "v"))
		var fe *gen.Forbidden
		if !errors.As(err, &fe) {
			t.Fatalf("reader SET: %v; want Forbidden", err)
		}
		t.Logf("reader SET: %v", err)
		if inner.calls.Load() != before {
			t.Fatal("the forbidden write reached the handler")
		}
		// A plain (non-TLS) client is refused: its request never gets an answer.
		pc, pnc := dialGen(t, addr, nil)
		defer pnc.Close()
		if _, err := pc.Ping(ctx); err == nil {
			t.Fatal("a plain client got an answer from a TLS listener")
		}
	})

	t.Run("transport.Server over a TLS listener without client certificates", func(t *testing.T) {
		srv, err := ServerConfig(files(dir, "node-n1", false))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		// The epoll mode needs raw sockets; TLS connections use the
		// goroutine mode.
		ts := transport.NewServer(proc, transport.ServerConfig{Mode: transport.ModeGoroutine})
		go ts.Serve(tls.NewListener(raw, srv))
		defer ts.Shutdown(context.Background())
		addr := raw.Addr().String()

		anon, err := ClientConfig(TLSFiles{CA: filepath.Join(dir, "ca.crt")}, "localhost")
		if err != nil {
			t.Fatal(err)
		}
		c, nc := dialGen(t, addr, anon)
		defer nc.Close()
		if info, err := c.Ping(ctx); err != nil || info.ID != "fake" {
			t.Fatalf("TLS ping: %v %v", info, err)
		}
		before := inner.calls.Load()
		_, err = c.Call(ctx, nil, cmd("GET", "k"))
		var ue *gen.Unauthenticated
		if !errors.As(err, &ue) {
			t.Fatalf("GET without credentials: %v; want Unauthenticated", err)
		}
		if inner.calls.Load() != before {
			t.Fatal("the unauthenticated request reached the handler")
		}
		// The project's plain client cannot talk to it.
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		conn, err := transport.Dial(dctx, addr, transport.DialOptions{})
		if err == nil {
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = conn.Ping(ctx)
			conn.Close()
		}
		if err == nil {
			t.Fatal("a plain transport.Dial client got an answer from a TLS listener")
		}
	})
}

// blockingKV holds Call until release is closed, to fill the shedder.
type blockingKV struct {
	fakeKV
	entered chan struct{}
	release chan struct{}
}

func (b *blockingKV) Call(ctx context.Context, o *gen.RequestOptions, c *gen.Command) (*gen.ExecuteResponse, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.fakeKV.Call(ctx, o, c)
}

func TestGuardLimits(t *testing.T) {
	pol, _ := testPolicy(t)
	now := time.Unix(5000, 0)
	clock := func() time.Time { return now }
	alice := WithPrincipal(context.Background(), Principal{Name: "alice", Method: "cert"})

	t.Run("rate limit before authorization, batches cost per command", func(t *testing.T) {
		inner := &fakeKV{}
		g := &Guard{Inner: inner, Auth: pol, Now: clock}
		tb, _ := NewTokenBucket(10, 3)
		ctx := WithLimiter(alice, tb)
		anon := WithLimiter(context.Background(), tb)
		if _, err := g.Execute(ctx, nil, []*gen.Command{cmd("SET", "a", "1"), cmd("SET", "b", "2")}); err != nil {
			t.Fatal(err)
		}
		// One token left: an anonymous request takes it (and is refused as
		// unauthenticated), so alice's next call is throttled.
		var ue *gen.Unauthenticated
		if _, err := g.Call(anon, nil, cmd("GET", "a")); !errors.As(err, &ue) {
			t.Fatalf("anonymous: %v; want Unauthenticated", err)
		}
		_, err := g.Call(ctx, nil, cmd("GET", "a"))
		var un *gen.Unavailable
		if !errors.As(err, &un) || un.RetryAfterMs != 100 {
			t.Fatalf("over the rate: %v; want Unavailable with retry_after_ms 100", err)
		}
		if inner.calls.Load() != 1 {
			t.Fatalf("inner ran %d times; want 1", inner.calls.Load())
		}
		now = now.Add(100 * time.Millisecond)
		if _, err := g.Call(ctx, nil, cmd("GET", "a")); err != nil {
			t.Fatalf("after 100ms: %v", err)
		}
	})

	t.Run("shedder bounds requests in flight", func(t *testing.T) {
		sh, _ := NewShedder(ShedderConfig{MaxInFlight: 1, BaseRetry: 40 * time.Millisecond, Seed: 1})
		inner := &blockingKV{entered: make(chan struct{}), release: make(chan struct{})}
		g := &Guard{Inner: inner, Auth: pol, Shedder: sh, Now: clock}
		done := make(chan error, 1)
		go func() { _, err := g.Call(alice, nil, cmd("SET", "k", "v")); done <- err }()
		<-inner.entered
		_, err := g.Call(alice, nil, cmd("SET", "k", "w"))
		var un *gen.Unavailable
		if !errors.As(err, &un) || un.RetryAfterMs < 20 || un.RetryAfterMs > 40 {
			t.Fatalf("second call in flight: %v; want Unavailable with retry_after_ms in [20, 40]", err)
		}
		// A forbidden request is refused as forbidden, not as overload.
		var fe *gen.Forbidden
		if err := g.DropNamespace(alice, "default"); !errors.As(err, &fe) {
			t.Fatalf("forbidden under load: %v", err)
		}
		close(inner.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if sh.InFlight() != 0 {
			t.Fatalf("in flight %d after the call returned; want 0", sh.InFlight())
		}
		go func() { _, err := g.Call(alice, nil, cmd("SET", "k", "x")); done <- err }()
		<-inner.entered
		if err := <-done; err != nil {
			t.Fatalf("after release: %v", err)
		}
	})
}
