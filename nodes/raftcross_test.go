package nodes

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
)

// TestRaftCrossShardSpread: four nodes, a raft namespace of four shards of
// three replicas, so that no node hosts every shard. Cross-shard MSET,
// MGET and transactions sent to each node through its client API are
// coordinated there, the shards it does not host reached through other
// nodes (RAFT.TXNOP over the node-to-node client path); then concurrent
// cross-shard transfers through all four nodes never change the total
// that cross-shard MGETs read, and no intent or commit record is left.
func TestRaftCrossShardSpread(t *testing.T) {
	c := newRaftTestCluster(t, "x", 4, RaftRebalanceOptions{Off: true})
	for i := range 4 {
		c.start(i, 4)
	}
	const ns = "tx"
	c.createRaft(ns, 4, 4, []int{0, 1, 2, 3}, map[string]string{"shards": "4", "replicas": "3"})
	svcs := make([]*raft.Service, 4)
	for i, cn := range c.nodes {
		svcs[i] = nsService(cn.namespace(ns)).(*raft.Service)
		all := true
		for sh := range 4 {
			all = all && svcs[i].Hosts(sh)
		}
		if all {
			t.Fatalf("n%d hosts every shard; the test needs them spread", i+1)
		}
	}
	// Two accounts per shard.
	var accts []string
	per := map[int]int{}
	for i := 0; len(accts) < 8; i++ {
		k := "acct" + strconv.Itoa(i)
		if sh := core.ShardOf([]byte(k), 4); per[sh] < 2 {
			per[sh]++
			accts = append(accts, k)
		}
	}
	// One client per node, knowing that node only: it coordinates.
	sessions := make([]*client.Session, 4)
	// The whole test's limit is generous: it takes ~30 s alone at load 33,
	// and ran past 2 minutes beside the package's other tests in CI.
	ctx, _ := c.raftClient(ns, 0, 1, 5*time.Minute, 10*time.Second)
	for i := range 4 {
		_, cl := c.raftClient(ns, i, i+1, 5*time.Minute, 10*time.Second)
		sessions[i] = cl.NewSession(fmt.Sprintf("s%d", i))
	}
	for i, s := range sessions {
		var pairs []string
		for _, a := range accts {
			pairs = append(pairs, a, fmt.Sprintf("%d", 100+i))
		}
		if err := s.MSet(ctx, pairs...); err != nil {
			t.Fatalf("MSET over 4 shards at n%d: %v", i+1, err)
		}
		vs, err := sessions[(i+1)%4].MGet(ctx, accts...)
		if err != nil {
			t.Fatalf("MGET over 4 shards at n%d: %v", (i+1)%4+1, err)
		}
		for j, v := range vs {
			if string(v.Data) != fmt.Sprint(100+i) {
				t.Fatalf("MGET at n%d: %s = %q, want %d", (i+1)%4+1, accts[j], v.Data, 100+i)
			}
		}
	}
	// The accounts hold 103 each now (n4's MSET); transfers between them.
	const total = 8 * 103
	sum := func(vs []client.Value) (int64, error) {
		var n int64
		for _, v := range vs {
			x, err := strconv.ParseInt(string(v.Data), 10, 64)
			if err != nil {
				return 0, err
			}
			n += x
		}
		return n, nil
	}
	var wg sync.WaitGroup
	var done, failed, reads atomic.Int64
	var mu sync.Mutex
	var bad []string
	var stop atomic.Bool
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range 15 {
				from, to := accts[rng.IntN(8)], accts[rng.IntN(8)]
				if core.ShardOf([]byte(from), 4) == core.ShardOf([]byte(to), 4) {
					continue
				}
				x := strconv.Itoa(1 + rng.IntN(20))
				_, err := sessions[w].Txn(ctx, nil, core.Cmd("INCRBY", from, "-"+x), core.Cmd("INCRBY", to, x))
				if err != nil {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		}()
	}
	var rwg sync.WaitGroup
	for r := range 2 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for i := 0; !stop.Load(); i++ {
				vs, err := sessions[(r+2*i)%4].MGet(ctx, accts...)
				if err != nil {
					continue
				}
				reads.Add(1)
				if n, err := sum(vs); err != nil || n != total {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("total %d (%v)", n, err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	rwg.Wait()
	vs, err := sessions[0].MGet(ctx, accts...)
	if err != nil {
		t.Fatalf("final MGET: %v", err)
	}
	final, err := sum(vs)
	t.Logf("transfers %d, failed %d, reads %d", done.Load(), failed.Load(), reads.Load())
	if err != nil || final != total || len(bad) > 0 {
		t.Fatalf("final total %d (%v), want %d; %d reads saw a wrong total: %q (go test -run TestRaftCrossShardSpread ./nodes)", final, err, total, len(bad), bad)
	}
	if done.Load() == 0 || reads.Load() == 0 {
		t.Fatalf("no transfer (%d) or no read (%d) succeeded", done.Load(), reads.Load())
	}
	// Nothing left behind: the nodes' recovery loops settle what failed
	// attempts left (they run every 2 s); commit records are acknowledged.
	for i, s := range svcs {
		for sh := range 4 {
			if !s.Hosts(sh) {
				continue
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				in, err1 := s.Intents(sh)
				ds, err2 := s.Decisions(sh)
				commits := 0
				for _, d := range ds {
					if d.Commit {
						commits++
					}
				}
				if err1 == nil && err2 == nil && len(in) == 0 && commits == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("n%d shard %d: intents %v (%v), %d commit records (%v) after 20 s", i+1, sh, in, err1, commits, err2)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}
