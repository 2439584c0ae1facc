package nodes

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/quorum"
	"github.com/dialkv/dialkv/core"
)

// waitMembers waits until CLUSTER MEMBERS at node i shows want (id ->
// state) for the given members.
func (tc *testCluster) waitMembers(i int, want map[string]string) {
	tc.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		r, err := tc.call(i, clusterOp{}, "CLUSTER", "MEMBERS")
		if err == nil && len(r.Replies) == 1 {
			got := map[string]string{}
			var lines []string
			for _, e := range r.Replies[0].Array {
				f := strings.Fields(string(e.Str))
				if len(f) >= 2 {
					got[f[0]] = f[1]
				}
				lines = append(lines, string(e.Str))
			}
			last = strings.Join(lines, "; ")
			ok := true
			for id, st := range want {
				if got[id] != st {
					ok = false
				}
			}
			if ok {
				return
			}
		} else {
			last = fmt.Sprint(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tc.t.Fatalf("CLUSTER MEMBERS at %s never showed %v; last: %s", tc.peers[i].ID, want, last)
}

// quorumStats reads node i's quorum replica counters for namespace ns.
func (tc *testCluster) quorumDump(i int, ns string) map[string]string {
	tc.t.Helper()
	svc, ok := tc.nodes[i].namespace(ns).svc.(*clusterService)
	if !ok {
		tc.t.Fatalf("namespace %s at %s is not a hosted replica", ns, tc.peers[i].ID)
	}
	var dump map[string]string
	svc.Call(func(r consistency.Replica) { dump, _ = r.(*quorum.Replica).Dump(time.Now()) })
	return dump
}

// TestClusterGossip: members see each other through memberlist (CLUSTER
// MEMBERS); a member that stops is marked down in the others' quorum
// replicas, so sloppy quorum routes around it from the first write (no
// request has to time out first) and keeps hints; when it returns, gossip
// marks it alive and the hints reach it — with read repair and
// anti-entropy off, hinted handoff is the only way the data can arrive.
func TestClusterGossip(t *testing.T) {
	tc := newTestClusterGossip(t, true, "n1", "n2", "n3")
	all := map[string]string{"n1": "alive", "n2": "alive", "n3": "alive"}
	for i := range 3 {
		tc.waitMembers(i, all)
	}
	const ns = "kv"
	tc.createAt(0, ns, "quorum", map[string]string{"n": "2", "r": "1", "w": "2", "read_repair": "off", "aae_interval": "1h", "hint_interval": "100ms", "timeout": "2s", "suspect_for": "1h"})
	tc.waitNamespace(ns)

	tc.stop(1)
	tc.waitMembers(0, map[string]string{"n2": "down"})
	tc.waitMembers(2, map[string]string{"n2": "down"})
	// Every write at W=2 succeeds at once: keys owned by n2 go to the
	// fallback (a hint) without waiting for a timeout to suspect n2.
	want := map[string]string{}
	for k := range 30 {
		key, val := fmt.Sprintf("k%d", k), fmt.Sprintf("v%d", k)
		// Without the failure detector the first write of a key n2 owns
		// times out (2 s) before n2 is suspected.
		r, err := tc.call(k%2*2, clusterOp{ns: ns, w: 2}, "SET", key, val)
		if err != nil || replyStr(r) != "OK" {
			t.Fatalf("SET %s (W=2) with n2 down = %s, %v", key, replyStr(r), err)
		}
		want[key] = fmt.Sprintf("%q", val)
	}
	// n2 comes back knowing only a seed (dialkv node --join): it learns the
	// member list through gossip.
	cn, err := StartClusterNode(
		Config{ID: "n2", Listen: tc.peers[1].Client, DataDir: tc.dirs[1], Fsync: core.SyncAlways, Logger: slog.New(slog.DiscardHandler)},
		ClusterConfig{Name: "test", CatalogSync: 200 * time.Millisecond,
			Gossip: &GossipOptions{Listen: tc.gossip[1], Join: []string{tc.gossip[2]}, ProbeInterval: 100 * time.Millisecond, Rejoin: 300 * time.Millisecond}},
	)
	if err != nil {
		t.Fatalf("restart n2 with --join only: %v", err)
	}
	tc.nodes[1] = cn
	if got, want := FormatPeers(cn.c.cfg.Peers), FormatPeers(tc.peers); got != want {
		t.Fatalf("n2 learned the members %s, want %s", got, want)
	}
	tc.waitMembers(0, all)
	// n2 owns about 2/3 of the keys (n=2 of 3): all of them must arrive.
	deadline := time.Now().Add(15 * time.Second)
	for {
		dump := tc.quorumDump(1, ns)
		missing := 0
		owned := 0
		svc := tc.nodes[1].namespace(ns).svc.(*clusterService)
		for k, v := range want {
			var holders []consistency.NodeID
			svc.Call(func(r consistency.Replica) { holders = r.(*quorum.Replica).Holders(k) })
			for _, h := range holders {
				if h == "n2" {
					owned++
					if dump[k] != v {
						missing++
					}
				}
			}
		}
		if owned == 0 {
			t.Fatal("n2 owns none of the keys: the test proves nothing")
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted n2 still misses %d of its %d keys 15s after gossip saw it back (hints not delivered)", missing, owned)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
