package nodes

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
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
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	peers := make([]ClusterPeer, 4)
	var ids, raftAddrs, clientAddrs []string
	for i := range peers {
		peers[i] = ClusterPeer{ID: fmt.Sprintf("n%d", i+1), Client: freeAddr(t), Peer: freeAddr(t)}
		ids, raftAddrs, clientAddrs = append(ids, peers[i].ID), append(raftAddrs, freeAddr(t)), append(clientAddrs, peers[i].Client)
	}
	nodes := make([]*ClusterNode, 4)
	start := func(i int) {
		t.Helper()
		cc := ClusterConfig{Name: "dead", Peers: peers, CatalogSync: 300 * time.Millisecond,
			Gossip:        &GossipOptions{Listen: "127.0.0.1:0", ProbeInterval: 100 * time.Millisecond, Rejoin: 300 * time.Millisecond},
			RaftRebalance: RaftRebalanceOptions{Interval: 200 * time.Millisecond, Grace: time.Second, Settle: 500 * time.Millisecond}}
		for j, cn := range nodes {
			if cn != nil && j != i {
				cc.Gossip.Join = []string{cn.GossipAddr()}
				break
			}
		}
		cn, err := StartClusterNode(Config{ID: peers[i].ID, Listen: peers[i].Client, DataDir: filepath.Join(dir, peers[i].ID),
			Fsync: core.SyncAlways, Logger: log.With("node", peers[i].ID)}, cc)
		if err != nil {
			t.Fatalf("start %s: %v", peers[i].ID, err)
		}
		nodes[i] = cn
	}
	defer func() {
		for _, cn := range nodes {
			if cn != nil {
				cn.Close(context.Background())
			}
		}
	}()
	for i := range 4 {
		start(i)
	}
	const ns = "dead"
	spec := NamespaceSpec{Name: ns, Strategy: "raft", Params: map[string]string{
		"nodes": strings.Join(ids, ","), "raft-addrs": strings.Join(raftAddrs, ","), "client-addrs": strings.Join(clientAddrs, ","),
		"shards": "1", "replicas": "3", "initial-nodes": "3", "rtt": "5ms"}}
	if err := nodes[0].CreateNamespace(spec); err != nil {
		t.Fatal(err)
	}
	waitNamespaceOn(t, ns, nodes[1:4], ids[1:4])
	if err := waitRaftLeaders(nodes[:3], ns, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctx = client.With(ctx, client.Namespace(ns))
	c, err := client.New(clientAddrs, client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Set(ctx, "before", []byte("1")); err != nil {
		t.Fatal(err)
	}
	var rnodes []raft.Node
	for i := range peers {
		rnodes = append(rnodes, raft.Node{ID: consistency.NodeID(peers[i].ID), RaftAddr: raftAddrs[i], ClientAddr: clientAddrs[i]})
	}
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
	if err := nodes[2].Close(context.Background()); err != nil {
		t.Logf("close n3: %v", err)
	}
	nodes[2] = nil
	alive := []raft.Node{rnodes[0], rnodes[1], rnodes[3]}
	placement("n1,n2,n4", alive)
	replaced := time.Since(stopped)
	if _, err := c.Set(ctx, "after", []byte("2")); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"before": "1", "after": "2"} {
		v, err := c.Get(client.With(ctx, client.ReadMode("linearizable")), k)
		if err != nil || string(v.Data) != want {
			t.Fatalf("GET %s = %+v, %v", k, v, err)
		}
	}
	// n3 comes back: its replica was removed while it was down; the
	// rebalancer stops it, and the placement stays.
	start(2)
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

// waitNamespaceOn waits until every node of on (named by names) has
// namespace ns. It spreads by forwarding and by the catalog pull; under
// load a raft namespace's creation (a NodeHost per node) takes seconds, so
// the limit is 30 s, and a failure names the nodes still missing it.
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
			t.Fatalf("the namespace did not reach every node within 30 s: missing at %v", missing)
		}
	}
}
