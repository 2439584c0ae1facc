package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/transport"
)

// stuckService never answers before the request's deadline.
type stuckService struct{ calls atomic.Int64 }

func (s *stuckService) Do(ctx context.Context, req consistency.Request) (consistency.Response, error) {
	s.calls.Add(1)
	<-ctx.Done()
	return consistency.Response{}, consistency.ErrTimeout
}

func (s *stuckService) Close() error { return nil }

// TestDeadline: the context's deadline bounds the call (the node is told
// the budget and answers Timeout), and a non-idempotent write whose outcome
// is unknown is not retried.
func TestDeadline(t *testing.T) {
	st := &stuckService{}
	n := startNode(t, nodes.Config{Strategies: map[string]nodes.StrategyFactory{
		"stuck": func(nodes.StrategyEnv) (consistency.Service, error) { return st, nil },
	}})
	c := newClient(t, []string{n.Addr()})
	ctx := context.Background()
	if err := c.CreateNamespace(ctx, client.NamespaceSpec{Name: "s", Strategy: "stuck"}); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(client.With(ctx, client.Namespace("s")), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Incr(dctx, "k", 1)
	if !errors.Is(err, client.ErrTimeout) || time.Since(start) > 2*time.Second {
		t.Fatalf("Incr against a stuck strategy: %v after %v, want TIMEOUT near 200 ms", err, time.Since(start))
	}
	if k := st.calls.Load(); k != 1 {
		t.Fatalf("INCR with an unknown outcome was sent %d times, want 1", k)
	}
}

// TestCompactProtocol: a node and a client agreeing on the compact
// protocol work end to end.
func TestCompactProtocol(t *testing.T) {
	n := startNode(t, nodes.Config{Protocol: transport.Compact})
	c := newClient(t, []string{n.Addr()}, client.WithProtocol("compact"))
	ctx := context.Background()
	if _, err := c.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k"); err != nil || v.String() != "v" {
		t.Fatalf("Get over compact = %+v, %v", v, err)
	}
	// A binary client against the compact node fails cleanly.
	b := newClient(t, []string{n.Addr()}, client.WithRetries(0, 0, 0))
	if _, err := b.Get(ctx, "k"); err == nil {
		t.Fatal("a binary-protocol client talked to a compact node")
	}
}

// TestClientTimeout: without a deadline on the context, the client's own
// timeout (WithTimeout) bounds the call, and the write whose outcome is
// unknown is not retried.
func TestClientTimeout(t *testing.T) {
	st := &stuckService{}
	n := startNode(t, nodes.Config{Strategies: map[string]nodes.StrategyFactory{
		"stuck": func(nodes.StrategyEnv) (consistency.Service, error) { return st, nil },
	}})
	c := newClient(t, []string{n.Addr()}, client.WithTimeout(200*time.Millisecond))
	ctx := context.Background()
	if err := c.CreateNamespace(ctx, client.NamespaceSpec{Name: "s", Strategy: "stuck"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := c.Incr(client.With(ctx, client.Namespace("s")), "k", 1)
	if !errors.Is(err, client.ErrTimeout) || time.Since(start) > 2*time.Second {
		t.Fatalf("Incr against a stuck strategy: %v after %v, want TIMEOUT near 200 ms", err, time.Since(start))
	}
	if k := st.calls.Load(); k != 1 {
		t.Fatalf("INCR with an unknown outcome was sent %d times, want 1", k)
	}
}

// TestTimeoutCostsNoAllocation: the client's timeout is kept as a time,
// not a context derived per call: a call bounded by the client's timeout
// allocates no more than one bounded by its context's deadline (a
// context.WithTimeout per call was a context and a timer: 2 or more
// allocations). Both send the node a budget; the node runs in this
// process, so both counts include its allocations and only the difference
// is checked.
func TestTimeoutCostsNoAllocation(t *testing.T) {
	n := startNode(t, nodes.Config{})
	allocs := func(ctx context.Context, c *client.Client) float64 {
		if _, err := c.Set(ctx, "k", []byte("v")); err != nil { // dial and warm up
			t.Fatal(err)
		}
		return testing.AllocsPerRun(500, func() {
			if _, err := c.Set(ctx, "k", []byte("v")); err != nil {
				t.Fatal(err)
			}
		})
	}
	dctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	byCtx := allocs(dctx, newClient(t, []string{n.Addr()}, client.WithTimeout(0)))
	byClient := allocs(context.Background(), newClient(t, []string{n.Addr()}, client.WithTimeout(5*time.Second)))
	if byClient-byCtx >= 1 {
		t.Fatalf("a call bounded by the client's timeout made %.1f allocations, by its context's deadline %.1f: the timeout costs allocations", byClient, byCtx)
	}
}
