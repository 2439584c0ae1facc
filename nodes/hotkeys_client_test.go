package nodes

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
)

// TestHotKeySpreadingModes: the Go client's hot-key spreading
// (client.WithHotKeySpreading) on three in-process nodes: raft stale reads
// and causal reads of a hot key go to every node, raft linearizable reads
// stay at the leader; every read returns the written value. (Quorum:
// clients/client TestHotKeySpreading.)
func TestHotKeySpreadingModes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three-node clusters")
	}
	tests := []struct {
		name, strategy, readMode string
		spread                   bool
	}{
		{name: "raft-stale", strategy: "raft", readMode: "stale", spread: true},
		{name: "raft-linearizable", strategy: "raft", readMode: "linearizable", spread: false},
		{name: "causal", strategy: "causal", spread: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cns, _, err := startDemoCluster(demoClusterOptions{nodes: 3, strategy: tc.strategy, regions: 1, shards: 1, listen: "127.0.0.1:0", dir: t.TempDir(), log: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				for _, cn := range cns {
					cn.Close(context.Background())
				}
			})
			var addrs []string
			for _, cn := range cns {
				addrs = append(addrs, cn.Addr())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ctx = client.With(ctx, client.Namespace(demoNamespace))
			if tc.readMode != "" {
				ctx = client.With(ctx, client.ReadMode(tc.readMode))
			}
			sticky := []client.Option{client.WithSlowNodeRouting(0, 0)}
			newC := func(addrs []string, opts ...client.Option) *client.Client {
				c, err := client.New(addrs, append(sticky, opts...)...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			plain := newC(addrs)
			if _, err := plain.Set(ctx, "hot", []byte("v1")); err != nil {
				t.Fatal(err)
			}
			// Wait until every node has the write, so that reads anywhere
			// must return it.
			for _, a := range addrs {
				one := newC([]string{a})
				for {
					v, err := one.Get(client.With(ctx, client.ReadMode("stale")), "hot")
					if err == nil && string(v.Data) == "v1" {
						break
					}
					if ctx.Err() != nil {
						t.Fatalf("the write did not reach %s: %+v, %v", a, v, err)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			const reads = 400
			read := func(c *client.Client) []int64 {
				t.Helper()
				before := nodeSamples(c, addrs)
				for i := range reads {
					v, err := c.Get(ctx, "hot")
					if err != nil || string(v.Data) != "v1" {
						t.Fatalf("read %d = %+v, %v; want v1", i, v, err)
					}
				}
				after := nodeSamples(c, addrs)
				for i := range after {
					after[i] -= before[i]
				}
				return after
			}
			without := read(plain)
			hc := newC(addrs, client.WithHotKeySpreading(time.Hour))
			if err := hc.RefreshHotKeys(ctx); err != nil {
				t.Fatal(err)
			}
			if hk := hc.HotKeys(); !slices.Contains(hk, client.HotKey{Namespace: demoNamespace, Key: "hot"}) {
				t.Fatalf("HotKeys() = %v, want %s/hot", hk, demoNamespace)
			}
			with := read(hc)
			t.Logf("per-node answers to %d reads: without spreading %v, with %v", reads, without, with)
			if hotUsed(without) != 1 {
				t.Fatalf("sticky client's reads went to %v, want one node", without)
			}
			if tc.spread {
				if hotUsed(with) < 2 || slices.Max(with) > reads/2 {
					t.Fatalf("hot reads with spreading: %v, want spread over >= 2 nodes", with)
				}
			} else if slices.Max(with) < reads || hotSum(with)-slices.Max(with) > 2 {
				// at most a redirect or two before the leader is known
				t.Fatalf("linearizable hot reads: %v, want all at the leader", with)
			}
		})
	}
}

// nodeSamples returns each node's count of answers seen by c, in addrs
// order.
func nodeSamples(c *client.Client, addrs []string) []int64 {
	out := make([]int64, len(addrs))
	for _, ns := range c.Stats().Nodes {
		if i := slices.Index(addrs, ns.Addr); i >= 0 {
			out[i] = ns.Samples
		}
	}
	return out
}

func hotUsed(counts []int64) int {
	n := 0
	for _, x := range counts {
		if x > 0 {
			n++
		}
	}
	return n
}

func hotSum(xs []int64) int64 {
	var s int64
	for _, x := range xs {
		s += x
	}
	return s
}
