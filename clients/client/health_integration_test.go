package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/nodes"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func nodeStats(t *testing.T, c *client.Client, addr string) client.NodeStats {
	t.Helper()
	for _, ns := range c.Stats().Nodes {
		if ns.Addr == addr {
			return ns
		}
	}
	t.Fatalf("no stats for %s in %+v", addr, c.Stats())
	return client.NodeStats{}
}

// TestBreakerRestart: a stopped node's breaker opens, calls go to the other
// node without touching it (or fail fast with NODEDOWN when it is the only
// one), and after the node restarts and the cool-down passes one probe
// closes the breaker.
func TestBreakerRestart(t *testing.T) {
	n1 := startNode(t, nodes.Config{ID: "n1"})
	// n2 is closed by the test (a node must not be closed twice).
	n2, err := nodes.Start(nodes.Config{ID: "n2", Listen: "127.0.0.1:0", Engine: "memory"})
	if err != nil {
		t.Fatal(err)
	}
	a1, a2 := n1.Addr(), n2.Addr()
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	const cool = 10 * time.Second
	opts := []client.Option{client.WithCircuitBreaker(2, cool), client.WithClock(clk.now), client.WithSlowNodeRouting(0, 0), client.WithRetries(3, time.Millisecond, 5*time.Millisecond)}
	both := newClient(t, []string{a2, a1}, opts...) // sticky on n2 first
	only2 := newClient(t, []string{a2}, opts...)
	ctx := context.Background()
	if _, err := both.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := only2.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}

	n2.Close(ctx)
	// only2: two refused connections open the breaker, the next attempt
	// fails fast.
	_, err = only2.Get(ctx, "k")
	var e *client.Error
	if !errors.As(err, &e) || e.Code != client.CodeNodeDown || e.Addr != a2 || e.RetryAfter != cool || !errors.Is(err, client.ErrConnection) {
		t.Fatalf("Get with the only node stopped = %v, want NODEDOWN for %s retried in %v", err, a2, cool)
	}
	start := time.Now()
	if _, err := only2.Get(ctx, "k"); !errors.Is(err, client.ErrNodeDown) || time.Since(start) > time.Second {
		t.Fatalf("Get with an open breaker = %v after %v, want NODEDOWN at once", err, time.Since(start))
	}
	// both: requests move to n1; n2's breaker opens and it is skipped.
	for i := range 20 {
		if v, err := both.Get(ctx, "k"); err != nil {
			t.Fatalf("Get %d with n2 stopped: %v", i, err)
		} else if v.Found && i == 0 {
			t.Fatalf("n1 has k, but only n2 was written: %+v", v)
		}
		if i == 0 {
			// make n2 preferred again: the breaker, not stickiness, must skip it
			h := nodeStats(t, both, a2)
			if h.Failures < 1 {
				t.Fatalf("n2 failures = %d after a refused connection", h.Failures)
			}
		}
	}
	s2 := nodeStats(t, only2, a2)
	if s2.Breaker != client.BreakerOpen || s2.Trips != 1 || !s2.RetryAt.Equal(clk.now().Add(cool)) {
		t.Fatalf("only2's n2 stats = %+v, want open with 1 trip", s2)
	}

	// Restart n2 on the same address; before the cool-down it stays down.
	startNode(t, nodes.Config{ID: "n2", Listen: a2})
	if _, err := only2.Get(ctx, "k"); !errors.Is(err, client.ErrNodeDown) {
		t.Fatalf("Get before the cool-down ended = %v, want NODEDOWN", err)
	}
	clk.advance(cool)
	if _, err := only2.Set(ctx, "k2", []byte("v")); err != nil {
		t.Fatalf("probe after the restart: %v", err)
	}
	s2 = nodeStats(t, only2, a2)
	if s2.Breaker != client.BreakerClosed || s2.Trips != 1 || s2.Failures != 0 {
		t.Fatalf("after a successful probe: %+v, want closed", s2)
	}
	if only2.Stats().Trips() != 1 {
		t.Fatalf("Trips() = %d, want 1", only2.Stats().Trips())
	}
}

// delayProxy forwards TCP connections to backend, holding every chunk
// of the replies for delay while slow is set, and counts the request
// chunks it forwards (a request is one chunk or a few).
type delayProxy struct {
	ln       net.Listener
	backend  string
	slow     atomic.Bool
	delay    time.Duration
	requests atomic.Int64
}

func newDelayProxy(t testing.TB, backend string, delay time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{ln: ln, backend: backend, delay: delay}
	t.Cleanup(func() { ln.Close() })
	go p.serve()
	return p
}

func (p *delayProxy) addr() string { return p.ln.Addr().String() }

func (p *delayProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.backend)
		if err != nil {
			in.Close()
			continue
		}
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := in.Read(buf)
				if n > 0 {
					p.requests.Add(1)
					if _, werr := out.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			out.Close()
		}()
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := out.Read(buf)
				if n > 0 {
					if p.slow.Load() {
						time.Sleep(p.delay)
					}
					if _, werr := in.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			in.Close()
			io.Copy(io.Discard, out)
		}()
	}
}

// TestSlowNodeRouting: with three routes to the data, one of them made
// slow, traffic moves away from it (it gets only probes), and comes back
// once it is fast again.
func TestSlowNodeRouting(t *testing.T) {
	n := quorumNode(t)
	var ps []*delayProxy
	var addrs []string
	for range 3 {
		p := newDelayProxy(t, n.Addr(), 20*time.Millisecond)
		ps = append(ps, p)
		addrs = append(addrs, p.addr())
	}
	const probe = 100 * time.Millisecond
	c := newClient(t, addrs, client.WithSlowNodeRouting(4, probe), client.WithNamespace("q"))
	ctx := context.Background()
	if _, err := c.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// round sends n GETs and returns how many request chunks each proxy saw.
	round := func(n int) (counts [3]int64, total int64) {
		var before [3]int64
		for i, p := range ps {
			before[i] = p.requests.Load()
		}
		for range n {
			if _, err := c.Get(ctx, "k"); err != nil {
				t.Fatal(err)
			}
		}
		for i, p := range ps {
			counts[i] = p.requests.Load() - before[i]
			total += counts[i]
		}
		return counts, total
	}
	round(200) // warm up: every node gets samples

	ps[2].slow.Store(true)
	// The slow node's EWMA rises once it is picked (by the two choices or
	// by a probe, due every probe interval).
	for deadline := time.Now().Add(10 * time.Second); !nodeStats(t, c, addrs[2]).Slow; {
		if time.Now().After(deadline) {
			t.Fatalf("delayed node never marked slow: %+v", c.Stats())
		}
		round(20)
	}
	got, total := round(400)
	// Round robin would send it a third; it gets only probes, at most one
	// per probe interval.
	if got[2]*10 > total {
		t.Fatalf("while slow: request chunks per node %v, want the slow node (last) to get only probes", got)
	}

	ps[2].slow.Store(false)
	// Probes bring its EWMA down; then it takes part in the power of two
	// choices again (how much it gets depends on its rank among the nodes'
	// latencies, which the machine's noise shuffles).
	for deadline := time.Now().Add(10 * time.Second); ; {
		got, total = round(300)
		if s := nodeStats(t, c, addrs[2]); !s.Slow && got[2]*10 > total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after recovery: request chunks per node %v, stats %+v; want the recovered node (last) back in use", got, c.Stats())
		}
	}
}

// BenchmarkSlowReplica: GETs over three routes to one node, the first
// route delayed 2 ms per reply chunk. "sticky" is the client without
// slow-node routing (it stays on its first address, the slow one, while it
// answers); "p2c" is the default.
func BenchmarkSlowReplica(b *testing.B) {
	n := quorumNode(b)
	for _, mode := range []struct {
		name   string
		factor float64
	}{{"sticky", 0}, {"p2c", client.DefaultSlowFactor}} {
		b.Run(mode.name, func(b *testing.B) {
			var addrs []string
			for i := range 3 {
				p := newDelayProxy(b, n.Addr(), 2*time.Millisecond)
				p.slow.Store(i == 0)
				addrs = append(addrs, p.addr())
			}
			c := newClient(b, addrs, client.WithSlowNodeRouting(mode.factor, client.DefaultSlowProbe), client.WithNamespace("q"))
			ctx := context.Background()
			if _, err := c.Set(ctx, "k", []byte("v")); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := c.Get(ctx, "k"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// quorumNode starts a node with namespace "q" of a strategy named
// "quorum" (a fake that answers OK to everything: the client spreads
// requests only over namespaces of strategies any node can serve).
func quorumNode(t testing.TB) *nodes.Node {
	t.Helper()
	n := startNode(t, nodes.Config{Strategies: map[string]nodes.StrategyFactory{
		"quorum": func(nodes.StrategyEnv) (consistency.Service, error) { return &fakeService{}, nil },
	}})
	c := newClient(t, []string{n.Addr()})
	if err := c.CreateNamespace(context.Background(), client.NamespaceSpec{Name: "q", Strategy: "quorum"}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLocalStaysSticky: a local namespace (each node has its own data) is
// not spread: every request goes to the client's first node.
func TestLocalStaysSticky(t *testing.T) {
	n := startNode(t, nodes.Config{})
	var ps []*delayProxy
	var addrs []string
	for range 3 {
		p := newDelayProxy(t, n.Addr(), 0)
		ps = append(ps, p)
		addrs = append(addrs, p.addr())
	}
	c := newClient(t, addrs)
	ctx := context.Background()
	for range 50 {
		if _, err := c.Set(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := ps[1].requests.Load(), ps[2].requests.Load(); a != 0 || b != 0 || ps[0].requests.Load() == 0 {
		t.Fatalf("request chunks per node %d %d %d, want all on the first", ps[0].requests.Load(), a, b)
	}
}
