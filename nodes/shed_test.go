package nodes

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// gatedService is a namespace backend whose requests wait until gate
// closes: slow requests that hold the node's in-flight slots.
type gatedService struct {
	gate    chan struct{}
	entered atomic.Int32
}

var _ consistency.Service = (*gatedService)(nil)

func (s *gatedService) Do(ctx context.Context, req consistency.Request) (consistency.Response, error) {
	s.entered.Add(1)
	select {
	case <-s.gate:
		return consistency.Response{ID: req.ID, Reply: core.Reply{Kind: core.KindStatus, Str: []byte("OK")}}, nil
	case <-ctx.Done():
		return consistency.Response{}, ctx.Err()
	}
}

func (s *gatedService) Close() error { return nil }

// TestLoadSheddingNode: a node with --max-inflight 2 gets 10 concurrent
// slow requests, each on its own connection. Two are admitted and wait;
// the other eight get Unavailable with a retry-after hint at once, and so
// does a fast request to another namespace while the slots are held. When
// the slow ones finish, both succeed and the node serves again.
func TestLoadSheddingNode(t *testing.T) {
	const maxInFlight, total = 2, 10
	svc := &gatedService{gate: make(chan struct{})}
	n := startNode(t, Config{Engine: "memory", Security: loadSecurity(t, "--max-inflight", "2"),
		Strategies: map[string]StrategyFactory{"gated": func(StrategyEnv) (consistency.Service, error) { return svc, nil }}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := secClient(t, n.Addr())
	if err := admin.CreateNamespace(ctx, client.NamespaceSpec{Name: "slow", Strategy: "gated"}); err != nil {
		t.Fatalf("create slow: %v", err)
	}
	slow := "slow"
	var (
		wg              sync.WaitGroup
		ok, shed, other atomic.Int32
		mu              sync.Mutex
		hints           []int32
		unexpected      []error
	)
	for range total {
		c := dial(t, n.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Call(ctx, &gen.RequestOptions{Ns: &slow}, cmd("SET", "k", "v"))
			var ua *gen.Unavailable
			switch {
			case err == nil:
				ok.Add(1)
			case errors.As(err, &ua):
				shed.Add(1)
				mu.Lock()
				hints = append(hints, ua.RetryAfterMs)
				mu.Unlock()
			default:
				other.Add(1)
				mu.Lock()
				unexpected = append(unexpected, err)
				mu.Unlock()
			}
		}()
	}
	for svc.entered.Load() < maxInFlight || shed.Load()+other.Load() < total-maxInFlight {
		if ctx.Err() != nil {
			t.Fatalf("admitted %d, shed %d, other %d: want %d admitted and %d shed", svc.entered.Load(), shed.Load(), other.Load(), maxInFlight, total-maxInFlight)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// While both slots are held, a fast request is shed too (the limit is
	// node-wide), with a hint.
	var ua *gen.Unavailable
	if _, err := dial(t, n.Addr()).Call(ctx, noOpts(), cmd("GET", "k")); !errors.As(err, &ua) || ua.RetryAfterMs <= 0 {
		t.Fatalf("fast request while saturated: %v; want Unavailable with retry_after_ms > 0", err)
	}
	close(svc.gate)
	wg.Wait()
	if ok.Load() != maxInFlight || shed.Load() != total-maxInFlight || other.Load() != 0 {
		t.Fatalf("ok %d, shed %d, other %d (%v); want %d ok, %d shed", ok.Load(), shed.Load(), other.Load(), unexpected, maxInFlight, total-maxInFlight)
	}
	for _, h := range hints {
		if h <= 0 || h > 10_000 {
			t.Fatalf("retry_after_ms hints %v: want each in (0, 10000]", hints)
		}
	}
	if got := svc.entered.Load(); got != maxInFlight {
		t.Fatalf("%d requests reached the namespace; the shed ones must not", got)
	}
	// The node serves again: raw calls, and the Go client.
	if r, err := dial(t, n.Addr()).Call(ctx, noOpts(), cmd("SET", "k", "v")); err != nil || r == nil {
		t.Fatalf("SET after the storm: %v", err)
	}
	if v, err := admin.Get(ctx, "k"); err != nil || v.String() != "v" {
		t.Fatalf("GET after the storm = %q, %v", v, err)
	}
}
