package nodes

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
)

// raftTestCluster is the in-process cluster the raft rebalancing tests
// share: n members with gossip, a fast catalog pull and a fast raft
// rebalancer, each with a client, a peer and a Raft address.
//
// The addresses are chosen all at once, distinct, and below the kernel's
// ephemeral port range (internal/freeport). The tests used to take each one
// from a listener on ":0", closed at once: about 1 run in 100 drew one
// port twice among its 12 addresses (measured: 26 of 3,000 draws of 12), and
// any outgoing connection on the machine may take such a port as its
// source port before the node listens on it. A Raft address taken so
// makes the namespace's NodeHost fail to start on that node, for good:
// "the namespace did not reach every node within 30 s", the flake of
// TestRaftRebalanceReplacesDeadNode and TestRaftRebalanceUnderLoad.
type raftTestCluster struct {
	t         *testing.T
	name, dir string
	peers     []ClusterPeer
	raftAddrs []string
	nodes     []*ClusterNode
	rebalance RaftRebalanceOptions
	// join: members started with no Peers (dialkv node --join only),
	// offering their Raft address through gossip (ClusterConfig.RaftListen).
	join map[int]bool
	logs *testLogs
}

// newRaftTestCluster allocates n members' addresses; start starts them.
func newRaftTestCluster(t *testing.T, name string, n int, rb RaftRebalanceOptions) *raftTestCluster {
	t.Helper()
	addrs := freeAddrs(t, 3*n)
	addr := func(i int) string { return addrs[i] }
	c := &raftTestCluster{t: t, name: name, dir: t.TempDir(), rebalance: rb, nodes: make([]*ClusterNode, n),
		join: map[int]bool{}, logs: &testLogs{}}
	for i := range n {
		c.peers = append(c.peers, ClusterPeer{ID: fmt.Sprintf("n%d", i+1), Client: addr(3 * i), Peer: addr(3*i + 1)})
		c.raftAddrs = append(c.raftAddrs, addr(3*i+2))
	}
	t.Cleanup(func() {
		for _, cn := range c.nodes {
			if cn != nil {
				cn.Close(context.Background())
			}
		}
		if t.Failed() {
			t.Logf("warnings and errors the members logged:\n%s", c.logs.String())
		}
	})
	return c
}

// start starts member i (again, after stop), joining the gossip of a
// running member. The first static members are the static member list;
// a member marked in join starts with none.
func (c *raftTestCluster) start(i int, static int) {
	c.t.Helper()
	cc := ClusterConfig{Name: c.name, Peers: c.peers[:static], CatalogSync: 300 * time.Millisecond,
		Gossip:        &GossipOptions{Listen: "127.0.0.1:0", ProbeInterval: 100 * time.Millisecond, Rejoin: 300 * time.Millisecond},
		RaftRebalance: c.rebalance}
	if c.join[i] {
		cc.Peers, cc.PeerListen, cc.RaftListen = nil, c.peers[i].Peer, []string{c.raftAddrs[i]}
	}
	for j, cn := range c.nodes {
		if cn != nil && j != i {
			cc.Gossip.Join = []string{cn.GossipAddr()}
			break
		}
	}
	id := c.peers[i].ID
	cn, err := StartClusterNode(Config{ID: id, Listen: c.peers[i].Client, DataDir: filepath.Join(c.dir, id),
		Fsync: core.SyncAlways, Logger: slog.New(c.logs.handler()).With("node", id)}, cc)
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.nodes[i] = cn
}

// stop closes member i.
func (c *raftTestCluster) stop(i int) {
	c.t.Helper()
	if err := c.nodes[i].Close(context.Background()); err != nil {
		c.t.Logf("close %s: %v", c.peers[i].ID, err)
	}
	c.nodes[i] = nil
}

// ids returns the IDs of members from..to-1.
func (c *raftTestCluster) ids(from, to int) []string {
	var out []string
	for _, p := range c.peers[from:to] {
		out = append(out, p.ID)
	}
	return out
}

// clientAddrs returns the client addresses of members from..to-1.
func (c *raftTestCluster) clientAddrs(from, to int) []string {
	var out []string
	for _, p := range c.peers[from:to] {
		out = append(out, p.Client)
	}
	return out
}

// raftNodes returns members from..to-1 as raft namespace nodes.
func (c *raftTestCluster) raftNodes(from, to int) []raft.Node {
	var out []raft.Node
	for i := from; i < to; i++ {
		out = append(out, raft.Node{ID: consistency.NodeID(c.peers[i].ID), RaftAddr: c.raftAddrs[i], ClientAddr: c.peers[i].Client})
	}
	return out
}

// createRaft creates raft namespace ns at n1 with members 0..listed-1 as
// its nodes and params added, then waits until the running members of
// on have it and members 0..placed-1 know their shards' leaders.
func (c *raftTestCluster) createRaft(ns string, listed, placed int, on []int, params map[string]string) {
	c.t.Helper()
	spec := NamespaceSpec{Name: ns, Strategy: "raft", Params: map[string]string{
		"nodes": strings.Join(c.ids(0, listed), ","), "raft-addrs": strings.Join(c.raftAddrs[:listed], ","),
		"client-addrs": strings.Join(c.clientAddrs(0, listed), ","), "rtt": "5ms"}}
	for k, v := range params {
		spec.Params[k] = v
	}
	if err := c.nodes[0].CreateNamespace(spec); err != nil {
		c.t.Fatal(err)
	}
	var nodes []*ClusterNode
	var names []string
	for _, i := range on {
		nodes, names = append(nodes, c.nodes[i]), append(names, c.peers[i].ID)
	}
	waitNamespaceOn(c.t, ns, nodes, names)
	if err := waitRaftLeaders(c.nodes[:placed], ns, 20*time.Second); err != nil {
		c.t.Fatal(err)
	}
}

// waitNamespaceOn waits until every node of on (named by names) has
// namespace ns. It spreads by forwarding and by the catalog pull; under
// load a raft namespace's creation (a NodeHost per node) takes seconds, so
// the limit is 30 s, and a failure names the nodes still missing it (the
// cluster's logged warnings follow it: why their creation failed).
func waitNamespaceOn(t *testing.T, ns string, on []*ClusterNode, names []string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var missing []string
		for i, cn := range on {
			if cn.namespace(ns) == nil {
				missing = append(missing, names[i])
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the namespace did not reach every node within 30 s: missing at %v (reproduce: go test -count=5 -run '%s' ./nodes/)", missing, t.Name())
		}
	}
}

// testLogs keeps the warnings and errors of a test's members. Its level is
// Warn: a handler enabled at Info would also turn Dragonboat's
// process-wide loggers up (nodes.dragonboatLevel).
type testLogs struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *testLogs) handler() slog.Handler {
	return slog.NewTextHandler(lockedWriter{l}, &slog.HandlerOptions{Level: slog.LevelWarn})
}

func (l *testLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type lockedWriter struct{ l *testLogs }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	return w.l.buf.Write(p)
}

// raftClient opens a client on members from..to-1 (opTimeout per
// operation) and a context of limit sending every operation to namespace
// ns; both end with the test.
func (c *raftTestCluster) raftClient(ns string, from, to int, limit, opTimeout time.Duration) (context.Context, *client.Client) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	c.t.Cleanup(cancel)
	cl, err := client.New(c.clientAddrs(from, to), client.WithTimeout(opTimeout))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return client.With(ctx, client.Namespace(ns)), cl
}

// raftLoad is the write load of the raft rebalancing tests: writers
// goroutines, writer w setting w<w>-<i> = i for i = 0, 1, ... through one
// client until stopped, each write bounded by 10 s; a failed write is
// counted and the writer moves on to its next key after 10 ms.
type raftLoad struct {
	stopped atomic.Bool
	wg      sync.WaitGroup
	failed  atomic.Int64
	lastErr atomic.Value // string: the last failure

	mu     sync.Mutex
	acked  map[string]string // key -> value, acknowledged
	lastOK time.Time
	maxGap time.Duration // the longest time between two acknowledgements
}

// startRaftLoad starts the writers on cl with ctx (which names the
// namespace).
func startRaftLoad(ctx context.Context, cl *client.Client, writers int) *raftLoad {
	l := &raftLoad{acked: map[string]string{}, lastOK: time.Now()}
	for w := range writers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; !l.stopped.Load(); i++ {
				k, v := fmt.Sprintf("w%d-%d", w, i), fmt.Sprint(i)
				octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cl.Set(octx, k, []byte(v))
				ocancel()
				now := time.Now()
				if err != nil {
					l.failed.Add(1)
					l.lastErr.Store(err.Error())
					time.Sleep(10 * time.Millisecond)
					continue
				}
				l.mu.Lock()
				l.acked[k] = v
				l.maxGap = max(l.maxGap, now.Sub(l.lastOK))
				l.lastOK = now
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// stop stops the writers and waits for them.
func (l *raftLoad) stop() {
	l.stopped.Store(true)
	l.wg.Wait()
}

// checkAcked (after stop) fails the test if fewer than atLeast writes were
// acknowledged, reads every acknowledged write (and every key of extra)
// back linearizably through rc, reports each one missing or different as
// an error and returns how many were.
func (l *raftLoad) checkAcked(t *testing.T, ctx context.Context, rc *client.Client, atLeast int, extra map[string]string) (lost int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.acked) < atLeast {
		t.Fatalf("only %d writes acknowledged (%d failed; last error %v)", len(l.acked), l.failed.Load(), l.lastErr.Load())
	}
	want := maps.Clone(l.acked)
	maps.Copy(want, extra)
	keys := slices.Sorted(maps.Keys(want))
	for _, k := range keys {
		v, err := rc.Get(client.With(ctx, client.ReadMode("linearizable")), k)
		if err != nil {
			t.Fatalf("GET %s: %v", k, err)
		}
		if !v.Found || string(v.Data) != want[k] {
			lost++
			t.Errorf("acknowledged %s=%s, read %q (found %v)", k, want[k], v.Data, v.Found)
		}
	}
	return lost
}
