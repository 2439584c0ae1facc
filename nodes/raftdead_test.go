package nodes

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/transport"
)

// TestRaftRebalanceReplacesDeadNode: four cluster members, a raft
// namespace listing all four with its shard on n1..n3. n3 stops; once
// gossip has declared it down for the grace period (1 s here), the
// rebalancer removes its replica and adds one on n4, and writes go on.
// When n3 comes back, its removed replica is stopped (RAFT.LEAVE by the
// rebalancer's cleanup) and it hosts nothing. The time from the stop to
// the new placement is reported.
func TestRaftRebalanceReplacesDeadNode(t *testing.T) {
	c := newRaftTestCluster(t, "dead", 4, RaftRebalanceOptions{Interval: 200 * time.Millisecond, Grace: time.Second, Settle: 500 * time.Millisecond})
	for i := range 4 {
		c.start(i, 4)
	}
	const ns = "dead"
	c.createRaft(ns, 4, 3, []int{1, 2, 3}, map[string]string{"shards": "1", "replicas": "3", "initial-nodes": "3"})
	ctx, cl := c.raftClient(ns, 0, 4, 2*time.Minute, 5*time.Second)
	clientAddrs := c.clientAddrs(0, 4)
	if _, err := cl.Set(ctx, "before", []byte("1")); err != nil {
		t.Fatal(err)
	}
	rnodes := c.raftNodes(0, 4)
	call := DialRaftCaller(transport.DialOptions{}, 2*time.Second)
	placement := func(want string, nodes []raft.Node) {
		t.Helper()
		var got []string
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			p, err := ReadRaftPlacement(ctx, call, ns, nodes)
			if err != nil {
				continue
			}
			got = append([]string(nil), p.Members[0]...)
			sort.Strings(got)
			if strings.Join(got, ",") == want && len(p.Stale) == 0 {
				return
			}
		}
		t.Fatalf("shard 0 on %v, want %s", got, want)
	}
	placement("n1,n2,n3", rnodes)
	stopped := time.Now()
	c.stop(2)
	alive := []raft.Node{rnodes[0], rnodes[1], rnodes[3]}
	placement("n1,n2,n4", alive)
	replaced := time.Since(stopped)
	if _, err := cl.Set(ctx, "after", []byte("2")); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"before": "1", "after": "2"} {
		v, err := cl.Get(client.With(ctx, client.ReadMode("linearizable")), k)
		if err != nil || string(v.Data) != want {
			t.Fatalf("GET %s = %+v, %v", k, v, err)
		}
	}
	// n3 comes back: its replica was removed while it was down; the
	// rebalancer stops it, and the placement stays.
	c.start(2, 4)
	placement("n1,n2,n4", rnodes)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err := call(ctx, clientAddrs[2], ns, "RAFT.HOSTED")
		if err == nil && len(r.Array) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n3 still runs %+v (%v)", r.Array, err)
		}
	}
	t.Logf("n3 stopped: its replica replaced on n4 after %v (grace 1s)", replaced.Round(time.Millisecond))
}
