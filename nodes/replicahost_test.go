package nodes

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
	"github.com/dialkv/dialkv/core"
)

// hostNet connects ReplicaHosts in memory; cut drops every message.
type hostNet struct {
	mu    sync.Mutex
	hosts map[consistency.NodeID]*ReplicaHost
	cut   atomic.Bool
}

func (n *hostNet) send(m consistency.Message) {
	if n.cut.Load() {
		return
	}
	n.mu.Lock()
	h := n.hosts[m.To]
	n.mu.Unlock()
	if h != nil {
		h.Deliver(m)
	}
}

func startCausalHosts(t *testing.T, params map[string]string) *hostNet {
	t.Helper()
	peers := []consistency.NodeID{"n1", "n2", "n3"}
	net := &hostNet{hosts: map[consistency.NodeID]*ReplicaHost{}}
	for i, id := range peers {
		eng := core.NewMemEngine()
		rep, err := causal.New(consistency.Config{ID: id, Peers: peers, Engine: eng, Rand: rand.New(rand.NewPCG(uint64(i), 1)), Params: params})
		if err != nil {
			t.Fatal(err)
		}
		h := NewReplicaHost(rep, eng, net.send, HostOptions{Tick: 5 * time.Millisecond})
		net.mu.Lock()
		net.hosts[id] = h
		net.mu.Unlock()
		t.Cleanup(func() { h.Close() })
	}
	return net
}

func do(t *testing.T, h *ReplicaHost, tok []byte, name string, args ...string) (consistency.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := core.Cmd(name, args...)
	return h.Do(ctx, consistency.Request{Cmd: &cmd, Token: tok})
}

func TestReplicaHostRunsASansIOStrategyOnTheWallClock(t *testing.T) {
	net := startCausalHosts(t, map[string]string{"regions": "a:n1;b:n2,n3"})
	w, err := do(t, net.hosts["n1"], nil, "SET", "k", "v1")
	if err != nil || string(w.Reply.Str) != "OK" {
		t.Fatalf("SET: %+v %v", w.Reply, err)
	}
	// Another region, with the session token: must see the write.
	for _, id := range []consistency.NodeID{"n2", "n3"} {
		r, err := do(t, net.hosts[id], w.Token, "GET", "k")
		if err != nil || string(r.Reply.Str) != "v1" {
			t.Fatalf("GET at %s with the token: %+v %v, want v1", id, r.Reply, err)
		}
	}
}

func TestReplicaHostMapsUnavailableAndHonoursDeadlines(t *testing.T) {
	net := startCausalHosts(t, map[string]string{"regions": "a:n1;b:n2,n3", "timeout": "200ms"})
	net.cut.Store(true)
	w, err := do(t, net.hosts["n1"], nil, "SET", "k", "v1")
	if err != nil {
		t.Fatalf("SET while cut off (local acknowledgement): %v", err)
	}
	if _, err := do(t, net.hosts["n2"], w.Token, "GET", "k"); !errors.Is(err, consistency.ErrUnavailable) {
		t.Fatalf("GET elsewhere with the token while cut off: err %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	cmd := core.Cmd("GET", "k")
	if _, err := net.hosts["n2"].Do(ctx, consistency.Request{Cmd: &cmd, Token: w.Token}); !errors.Is(err, consistency.ErrTimeout) {
		t.Fatalf("GET with a 50ms deadline: err %v, want ErrTimeout", err)
	}
}

// failingEngine fails Sync: nothing the replica produced may be sent.
type failingEngine struct{ *core.MemEngine }

func (failingEngine) Sync() error { return errors.New("disk on fire") }

func TestReplicaHostSendsNothingWhenSyncFails(t *testing.T) {
	peers := []consistency.NodeID{"n1", "n2"}
	eng := failingEngine{core.NewMemEngine()}
	rep, err := causal.New(consistency.Config{ID: "n1", Peers: peers, Engine: eng, Rand: rand.New(rand.NewPCG(1, 1)), Params: map[string]string{"regions": "a:n1;b:n2"}})
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	h := NewReplicaHost(rep, eng, func(consistency.Message) { sent.Add(1) }, HostOptions{})
	defer h.Close()
	r, err := do(t, h, nil, "SET", "k", "v")
	if err != nil || !r.Reply.IsError() {
		t.Fatalf("SET with a failing sync: %+v %v, want an error reply", r.Reply, err)
	}
	if n := sent.Load(); n != 0 {
		t.Fatalf("%d messages left the node although its state was not durable", n)
	}
}
