package nodes

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/transport"
)

// balanced reports whether p has every one of shards shards at replicas
// members, none on a node of not, and member counts per node of on within
// one of each other (nodes of on with no replica count as 0).
func balanced(p RaftPlacement, shards, replicas int, on, not []string) (bool, map[string]int) {
	load := map[string]int{}
	for _, n := range on {
		load[n] = 0
	}
	bad := map[string]bool{}
	for _, n := range not {
		bad[n] = true
	}
	ok := len(p.Members) == shards
	for _, ms := range p.Members {
		ok = ok && len(ms) == replicas
		for _, m := range ms {
			load[m]++
			ok = ok && !bad[m]
		}
	}
	lo, hi := 1<<30, 0
	for _, n := range on {
		lo, hi = min(lo, load[n]), max(hi, load[n])
	}
	return ok && hi-lo <= 1, load
}

// TestRaftRebalanceUnderLoad: three cluster members hold a raft namespace
// (4 shards, 3 replicas: 4 replicas each) while writers keep writing.
// A fourth node starts and is appended to the namespace's node list
// (RAFT.NODES ADD at n1: the catalog spreads it, n4 creates the
// namespace); the rebalancer moves replicas until each node has 3. Then
// n1 is retired (RAFT.NODES RETIRE): its replicas move to the others, and
// n1 is stopped. Every acknowledged write is then read back
// linearizably; the longest gap between two successful writes and both
// rebalancing times are reported. DIALKV_SOAK=1: 8 shards, more writers.
func TestRaftRebalanceUnderLoad(t *testing.T) {
	shards, writers := 4, 4
	if os.Getenv("DIALKV_SOAK") == "1" {
		shards, writers = 8, 8
	}
	const replicas = 3
	c := newRaftTestCluster(t, "rb", 4, RaftRebalanceOptions{Interval: 200 * time.Millisecond, Grace: 2 * time.Second, Settle: 500 * time.Millisecond})
	for i := range 3 {
		c.start(i, 4)
	}
	const ns = "rb"
	c.createRaft(ns, 3, 3, []int{1, 2}, map[string]string{"shards": fmt.Sprint(shards), "replicas": fmt.Sprint(replicas), "snapshot-entries": "200"})
	peers := c.peers

	// Writers, through a client that knows every node.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ctx = client.With(ctx, client.Namespace(ns))
	var addrs []string
	for _, p := range peers {
		addrs = append(addrs, p.Client)
	}
	wc, err := client.New(addrs, client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	var (
		mu      sync.Mutex
		acked   = map[string]string{}
		lastOK  = time.Now()
		maxGap  time.Duration
		failed  atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
		lastErr atomic.Value
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				k, v := fmt.Sprintf("w%d-%d", w, i), fmt.Sprint(i)
				octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := wc.Set(octx, k, []byte(v))
				ocancel()
				now := time.Now()
				if err != nil {
					failed.Add(1)
					lastErr.Store(err.Error())
					time.Sleep(10 * time.Millisecond)
					continue
				}
				mu.Lock()
				acked[k] = v
				if g := now.Sub(lastOK); g > maxGap {
					maxGap = g
				}
				lastOK = now
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)

	call := DialRaftCaller(transport.DialOptions{}, 3*time.Second)
	waitBalanced := func(what string, on, not []string, nodes []raft.Node) time.Duration {
		t.Helper()
		begin := time.Now()
		var load map[string]int
		for deadline := begin.Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			p, err := ReadRaftPlacement(ctx, call, ns, nodes)
			if err != nil {
				continue
			}
			var ok bool
			if ok, load = balanced(p, shards, replicas, on, not); ok {
				return time.Since(begin)
			}
		}
		t.Fatalf("%s: not rebalanced after 90s: replicas per node %v", what, load)
		return 0
	}

	// A fourth node joins.
	c.start(3, 4)
	if _, err := call(ctx, peers[0].Client, ns, "RAFT.NODES", "ADD", "n4", c.raftAddrs[3], peers[3].Client); err != nil {
		t.Fatal(err)
	}
	joinTime := waitBalanced("n4 joined", c.ids(0, 4), nil, c.raftNodes(0, 4))

	// n1 is retired, then stopped.
	if _, err := call(ctx, peers[1].Client, ns, "RAFT.NODES", "RETIRE", "n1"); err != nil {
		t.Fatal(err)
	}
	retireTime := waitBalanced("n1 retired", c.ids(1, 4), []string{"n1"}, c.raftNodes(0, 4))
	var moves []string
	moveLog := func(cn *ClusterNode) {
		for _, m := range cn.RaftMoves() {
			moves = append(moves, fmt.Sprintf("%s: %v in %v (err %v)", cn.c.self, m.Move, m.End.Sub(m.Start).Round(time.Millisecond), m.Err))
		}
	}
	moveLog(c.nodes[0])
	c.stop(0)
	time.Sleep(time.Second) // writes continue on n2..n4
	stop.Store(true)
	wg.Wait()

	// Every acknowledged write, read back linearizably through n2..n4.
	rc, err := client.New(addrs[1:], client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 50 {
		t.Fatalf("only %d writes acknowledged (%d failed; last error %v)", len(acked), failed.Load(), lastErr.Load())
	}
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lost := 0
	for _, k := range keys {
		v, err := rc.Get(client.With(ctx, client.ReadMode("linearizable")), k)
		if err != nil {
			t.Fatalf("GET %s: %v", k, err)
		}
		if !v.Found || string(v.Data) != acked[k] {
			lost++
			t.Errorf("acknowledged %s=%s, read %q (found %v)", k, acked[k], v.Data, v.Found)
		}
	}
	for _, cn := range c.nodes[1:] {
		moveLog(cn)
	}
	if len(moves) == 0 {
		t.Error("no rebalancer recorded a move")
	}
	t.Logf("%d writes acknowledged, %d attempts failed, %d lost; longest gap between successful writes %v; "+
		"rebalancing after n4 joined %v, after n1 retired %v",
		len(acked), failed.Load(), lost, maxGap.Round(time.Millisecond), joinTime.Round(time.Millisecond), retireTime.Round(time.Millisecond))
	for _, m := range moves {
		t.Logf("move by %s", m)
	}
	if maxGap > 20*time.Second {
		t.Errorf("writes stopped for %v", maxGap)
	}
}
