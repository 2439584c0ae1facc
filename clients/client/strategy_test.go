package client_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes"
)

// fakeService is a strategy for tests: it records the tokens it receives
// and answers with token+1, or redirects every request to another address.
type fakeService struct {
	mu       sync.Mutex
	tokens   []string
	redirect string
	moved    int // requests redirected
	unavail  int // answer ErrUnavailable this many times first
}

func (f *fakeService) Do(ctx context.Context, req consistency.Request) (consistency.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.redirect != "" {
		f.moved++
		return consistency.Response{}, &consistency.Redirect{Addr: f.redirect, Reason: "not the leader"}
	}
	if f.unavail > 0 {
		f.unavail--
		return consistency.Response{}, consistency.ErrUnavailable
	}
	f.tokens = append(f.tokens, string(req.Token))
	n, _ := strconv.Atoi(string(req.Token))
	return consistency.Response{ID: req.ID, Reply: core.OK(), Token: []byte(strconv.Itoa(n + 1))}, nil
}

func (f *fakeService) Close() error { return nil }

// got returns the tokens received so far.
func (f *fakeService) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.tokens...)
}

func withFake(f *fakeService) nodes.Config {
	return nodes.Config{Strategies: map[string]nodes.StrategyFactory{
		"fake": func(nodes.StrategyEnv) (consistency.Service, error) { return f, nil },
	}}
}

// TestSessionTokens: each response's token is sent with the session's next
// request; sessions carry their own tokens.
func TestSessionTokens(t *testing.T) {
	f := &fakeService{}
	n := startNode(t, withFake(f))
	c := newClient(t, []string{n.Addr()})
	ctx := context.Background()
	if err := c.CreateNamespace(ctx, client.NamespaceSpec{Name: "f", Strategy: "fake"}); err != nil {
		t.Fatal(err)
	}
	fctx := client.With(ctx, client.Namespace("f"))
	for range 3 {
		if _, err := c.Set(fctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	s2 := c.NewSession("other")
	if _, err := s2.Get(fctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(fctx, "k"); err != nil {
		t.Fatal(err)
	}
	want := []string{"", "1", "2", "", "3"}
	tokens := f.got()
	if len(tokens) != len(want) {
		t.Fatalf("tokens sent %q, want %q", tokens, want)
	}
	for i := range want {
		if tokens[i] != want[i] {
			t.Fatalf("tokens sent %q, want %q", tokens, want)
		}
	}
	if string(c.Token()) != "4" || string(s2.Token()) != "1" {
		t.Fatalf("session tokens %q / %q", c.Token(), s2.Token())
	}
}

// TestRedirect: NotLeader is followed to the address it names, even for a
// non-idempotent operation (the redirecting node executed nothing), and
// the route is cached: later requests of the namespace go to the leader
// first.
func TestRedirect(t *testing.T) {
	leader := &fakeService{}
	b := startNode(t, withFake(leader))
	follower := &fakeService{redirect: b.Addr()}
	a := startNode(t, withFake(follower))
	c := newClient(t, []string{a.Addr()})
	ctx := context.Background()
	for _, n := range []*nodes.Node{a, b} {
		cn := newClient(t, []string{n.Addr()})
		if err := cn.CreateNamespace(ctx, client.NamespaceSpec{Name: "f", Strategy: "fake"}); err != nil {
			t.Fatal(err)
		}
	}
	fctx := client.With(ctx, client.Namespace("f"))
	if _, err := c.Incr(fctx, "k", 1); err != nil {
		t.Fatalf("Incr through a redirect: %v", err)
	}
	if k := len(leader.got()); k != 1 {
		t.Fatalf("the leader served %d requests, want 1", k)
	}
	for _, key := range []string{"k", "{k}:other", "unrelated"} {
		if _, err := c.Incr(fctx, key, 1); err != nil {
			t.Fatalf("Incr %s after the redirect: %v", key, err)
		}
	}
	follower.mu.Lock()
	moved := follower.moved
	follower.mu.Unlock()
	if k := len(leader.got()); k != 4 || moved != 1 {
		t.Fatalf("leader served %d requests and the follower redirected %d; want 4 and 1 (routes cached)", k, moved)
	}
	// Without retries the redirect surfaces as ErrMoved with the address
	// (a new client: nothing cached).
	c2 := newClient(t, []string{a.Addr()})
	_, err := c2.Incr(client.With(fctx, client.NoRetry()), "k", 1)
	var ce *client.Error
	if !errors.Is(err, client.ErrMoved) || !errors.As(err, &ce) || ce.Addr != b.Addr() {
		t.Fatalf("with NoRetry: %v, want MOVED to %s", err, b.Addr())
	}
}

// TestUnavailableRetried: Unavailable means nothing happened, so even an
// INCR is retried, and succeeds once the strategy is available.
func TestUnavailableRetried(t *testing.T) {
	f := &fakeService{unavail: 2}
	n := startNode(t, withFake(f))
	c := newClient(t, []string{n.Addr()})
	ctx := context.Background()
	if err := c.CreateNamespace(ctx, client.NamespaceSpec{Name: "f", Strategy: "fake"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Incr(client.With(ctx, client.Namespace("f")), "k", 1); err != nil {
		t.Fatalf("Incr after two Unavailable answers: %v", err)
	}
	if k := len(f.got()); k != 1 {
		t.Fatalf("served %d times, want 1", k)
	}
}
