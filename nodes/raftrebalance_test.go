package nodes

import (
	"fmt"
	"os"
	"testing"
	"time"

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
	ctx, wc := c.raftClient(ns, 0, 4, 5*time.Minute, 5*time.Second)
	load := startRaftLoad(ctx, wc, writers)
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
	load.stop()

	// Every acknowledged write, read back linearizably through n2..n4.
	_, rc := c.raftClient(ns, 1, 4, time.Minute, 10*time.Second)
	lost := load.checkAcked(t, ctx, rc, 50, nil)
	for _, cn := range c.nodes[1:] {
		moveLog(cn)
	}
	if len(moves) == 0 {
		t.Error("no rebalancer recorded a move")
	}
	t.Logf("%d writes acknowledged, %d attempts failed, %d lost; longest gap between successful writes %v; "+
		"rebalancing after n4 joined %v, after n1 retired %v",
		len(load.acked), load.failed.Load(), lost, load.maxGap.Round(time.Millisecond), joinTime.Round(time.Millisecond), retireTime.Round(time.Millisecond))
	for _, m := range moves {
		t.Logf("move by %s", m)
	}
	if load.maxGap > 20*time.Second {
		t.Errorf("writes stopped for %v", load.maxGap)
	}
}
