package nodes

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// startNode starts a node on a free loopback port; it is closed when the
// test ends.
func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	if cfg.ID == "" {
		cfg.ID = "n1"
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.DataDir == "" && cfg.Engine != "memory" {
		cfg.DataDir = t.TempDir()
	}
	if os.Getenv("DIALKV_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	n, err := Start(cfg)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	return n
}

func dial(t testing.TB, addr string) *transport.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, addr, transport.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

func cmd(name string, args ...string) *gen.Command {
	return transport.CommandFromCore(core.Cmd(name, args...))
}

func noOpts() *gen.RequestOptions { return &gen.RequestOptions{} }

func TestCallBatchTxn(t *testing.T) {
	for _, engine := range []string{"memory", "pebble"} {
		t.Run(engine, func(t *testing.T) {
			n := startNode(t, Config{Engine: engine})
			c := dial(t, n.Addr())
			ctx := context.Background()
			r, err := c.Call(ctx, noOpts(), cmd("SET", "k", "v1"))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(r.Replies[0].Str); got != "OK" || r.GetServedBy() != "n1" || r.Replies[0].GetVersion() == 0 {
				t.Fatalf("SET reply %v served by %q", r.Replies[0], r.GetServedBy())
			}
			r, err = c.Call(ctx, noOpts(), cmd("GET", "k"))
			if err != nil || string(r.Replies[0].Str) != "v1" {
				t.Fatalf("GET = %v, %v", r, err)
			}
			// A typed exception for a single command.
			_, err = c.Call(ctx, noOpts(), cmd("SADD", "k", "x"))
			var wt *gen.WrongType
			if !errors.As(err, &wt) {
				t.Fatalf("SADD on a string: %v, want WrongType", err)
			}
			_, err = c.Call(ctx, noOpts(), cmd("NOSUCHCMD"))
			var ia *gen.InvalidArgument
			if !errors.As(err, &ia) || ia.Code != "UNKNOWN" {
				t.Fatalf("unknown command: %v", err)
			}
			// A batch: per-command errors are replies.
			b, err := c.Execute(ctx, noOpts(), []*gen.Command{cmd("SET", "a", "1"), cmd("SADD", "a", "x"), cmd("INCR", "a"), cmd("GET", "a")})
			if err != nil {
				t.Fatal(err)
			}
			kinds := []gen.ReplyKind{gen.ReplyKind_STATUS, gen.ReplyKind_ERROR, gen.ReplyKind_INT, gen.ReplyKind_BULK}
			for i, k := range kinds {
				if b.Replies[i].Kind != k {
					t.Fatalf("batch reply %d kind %v, want %v (%v)", i, b.Replies[i].Kind, k, b.Replies)
				}
			}
			if b.Replies[1].Error.Code != "WRONGTYPE" || string(b.Replies[3].Str) != "2" {
				t.Fatalf("batch replies %v", b.Replies)
			}
			// A transaction whose condition fails reports the current version.
			ver := r.Replies[0].GetVersion()
			stale := int64(ver + 100)
			_, err = c.Transaction(ctx, noOpts(), []*gen.Condition{{Key: []byte("k"), Kind: gen.ConditionKind_VERSION, Version: &stale}}, []*gen.Command{cmd("SET", "k", "v2")})
			var cf *gen.ConditionFailed
			if !errors.As(err, &cf) || cf.CurrentVersion != int64(ver) {
				t.Fatalf("txn with a stale version: %v, want ConditionFailed at version %d", err, ver)
			}
			cur := int64(ver)
			tr, err := c.Transaction(ctx, noOpts(), []*gen.Condition{{Key: []byte("k"), Kind: gen.ConditionKind_VERSION, Version: &cur}}, []*gen.Command{cmd("SET", "k", "v2"), cmd("GET", "k")})
			if err != nil || string(tr.Replies[1].Str) != "v2" {
				t.Fatalf("txn = %v, %v", tr, err)
			}
			// Unknown namespace.
			ns := "nope"
			_, err = c.Call(ctx, &gen.RequestOptions{Ns: &ns}, cmd("GET", "k"))
			if !errors.As(err, &ia) || ia.Code != "NONAMESPACE" {
				t.Fatalf("unknown namespace: %v", err)
			}
		})
	}
}

func TestNamespacesPersist(t *testing.T) {
	dir := t.TempDir()
	n, err := Start(Config{ID: "n1", Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, n.Addr())
	ctx := context.Background()
	if err := c.CreateNamespace(ctx, &gen.NamespaceSpec{Name: "users", Strategy: "local", Params: map[string]string{"x": "1"}}); err != nil {
		t.Fatal(err)
	}
	var ia *gen.InvalidArgument
	if err := c.CreateNamespace(ctx, &gen.NamespaceSpec{Name: "users", Strategy: "local"}); !errors.As(err, &ia) || ia.Code != "EXISTS" {
		t.Fatalf("create twice: %v", err)
	}
	if err := c.CreateNamespace(ctx, &gen.NamespaceSpec{Name: "../x", Strategy: "local"}); !errors.As(err, &ia) {
		t.Fatalf("bad name: %v", err)
	}
	if err := c.CreateNamespace(ctx, &gen.NamespaceSpec{Name: "q", Strategy: "nosuch"}); !errors.As(err, &ia) {
		t.Fatalf("bad strategy: %v", err)
	}
	users := "users"
	if _, err := c.Call(ctx, &gen.RequestOptions{Ns: &users}, cmd("SET", "u1", "ann")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(ctx, noOpts(), cmd("SET", "u1", "other")); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateNamespace(ctx, &gen.NamespaceSpec{Name: "tmp", Strategy: "local"}); err != nil {
		t.Fatal(err)
	}
	if err := c.DropNamespace(ctx, "tmp"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	n = startNode(t, Config{ID: "n1", DataDir: dir})
	c = dial(t, n.Addr())
	list, err := c.ListNamespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "default" || list[1].Name != "users" || list[1].Params["x"] != "1" {
		t.Fatalf("namespaces after restart: %v", list)
	}
	r, err := c.Call(ctx, &gen.RequestOptions{Ns: &users}, cmd("GET", "u1"))
	if err != nil || string(r.Replies[0].Str) != "ann" {
		t.Fatalf("users/u1 after restart = %v, %v", r, err)
	}
	r, err = c.Call(ctx, noOpts(), cmd("GET", "u1"))
	if err != nil || string(r.Replies[0].Str) != "other" {
		t.Fatalf("default/u1 after restart = %v, %v", r, err)
	}
}

func TestPubSub(t *testing.T) {
	n := startNode(t, Config{Engine: "memory", SubscriptionTTL: 300 * time.Millisecond})
	c := dial(t, n.Addr())
	p := dial(t, n.Addr())
	ctx := context.Background()
	id, err := c.Subscribe(ctx, noOpts(), []string{"news"}, []string{"user.*"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *gen.PollResponse, 1)
	go func() {
		r, err := c.Poll(ctx, id, 10, 5000)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	time.Sleep(50 * time.Millisecond)
	if k, err := p.Publish(ctx, noOpts(), "user.42", []byte("hi")); err != nil || k != 1 {
		t.Fatalf("publish = %d, %v", k, err)
	}
	r := <-done
	if r == nil || len(r.Messages) != 1 || r.Messages[0].Channel != "user.42" || r.Messages[0].GetPattern() != "user.*" || string(r.Messages[0].Payload) != "hi" {
		t.Fatalf("long poll got %v", r)
	}
	if k, _ := p.Publish(ctx, noOpts(), "other", []byte("x")); k != 0 {
		t.Fatalf("publish to an unsubscribed channel reached %d", k)
	}
	// Abandoned: not polled for longer than the TTL, it expires.
	time.Sleep(700 * time.Millisecond)
	_, err = c.Poll(ctx, id, 10, 0)
	var ia *gen.InvalidArgument
	if !errors.As(err, &ia) || ia.Code != "NOSUBSCRIPTION" {
		t.Fatalf("poll of an abandoned subscription: %v", err)
	}
	if k, _ := p.Publish(ctx, noOpts(), "news", []byte("x")); k != 0 {
		t.Fatalf("expired subscription still receives (%d)", k)
	}
}

func TestNodeCloseTwice(t *testing.T) {
	n, err := Start(Config{ID: "twice", Listen: "127.0.0.1:0", Engine: "memory"})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
