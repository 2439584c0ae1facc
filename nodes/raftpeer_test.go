package nodes

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
)

// countingProxy forwards TCP connections to target and counts them; kill
// closes the connections open so far (as a node that closed them would).
type countingProxy struct {
	ln       net.Listener
	mu       sync.Mutex
	accepted int
	open     []net.Conn
}

func startCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.kill() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.accepted++
			p.open = append(p.open, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *countingProxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

func (p *countingProxy) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.open {
		c.Close()
	}
	p.open = nil
}

// TestRaftPeerPoolsConns: raftPeer's calls to one node reuse one
// connection (it dialled one per call before); a pooled connection the
// other side closed is noticed and replaced, and the call succeeds; after
// the pool is closed, nothing is kept.
func TestRaftPeerPoolsConns(t *testing.T) {
	n := startNode(t, Config{Engine: "memory"})
	proxy := startCountingProxy(t, n.Addr())
	pool := newPeerConns(transport.DialOptions{})
	call := raftPeer(StrategyEnv{}, pool)
	node := raft.Node{ID: "n1", ClientAddr: proxy.ln.Addr().String()}
	set := func(i int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := call(ctx, node, core.Cmd("SET", "k", fmt.Sprint(i)))
		if err != nil || r.IsError() {
			t.Fatalf("call %d: %+v, %v", i, r, err)
		}
	}
	for i := range 5 {
		set(i)
	}
	if got := proxy.count(); got != 1 {
		t.Fatalf("5 calls dialled %d connections, want 1", got)
	}
	proxy.kill()
	time.Sleep(50 * time.Millisecond) // the close reaches the pooled connection
	set(5)
	if got := proxy.count(); got != 2 {
		t.Fatalf("after the pooled connection was closed: %d connections dialled, want 2", got)
	}
	pool.close()
	if len(pool.idle) != 0 {
		t.Fatalf("closed pool keeps %d connections", len(pool.idle))
	}
	set(6)
	if len(pool.idle) != 0 || proxy.count() != 3 {
		t.Fatalf("closed pool: %d idle, %d dialled; want 0 idle, 3 dialled", len(pool.idle), proxy.count())
	}
}
