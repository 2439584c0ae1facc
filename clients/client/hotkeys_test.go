package client_test

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/internal/freeport"
	"github.com/dialkv/dialkv/nodes"
)

// startQuorumCluster starts three in-process cluster nodes and returns
// their client addresses.
func startQuorumCluster(t *testing.T) []string {
	t.Helper()
	free, err := freeport.Addrs(6)
	if err != nil {
		t.Fatal(err)
	}
	var peers []nodes.ClusterPeer
	var addrs []string
	for i, id := range []string{"n1", "n2", "n3"} {
		peers = append(peers, nodes.ClusterPeer{ID: id, Client: free[2*i], Peer: free[2*i+1]})
		addrs = append(addrs, free[2*i])
	}
	for _, p := range peers {
		cn, err := nodes.StartClusterNode(
			nodes.Config{ID: p.ID, Listen: p.Client, DataDir: t.TempDir(), Fsync: core.SyncNever},
			nodes.ClusterConfig{Name: "test", Peers: peers, CatalogSync: 100 * time.Millisecond},
		)
		if err != nil {
			t.Fatalf("start %s: %v", p.ID, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cn.Close(ctx)
		})
	}
	return addrs
}

// samples returns each node's count of answered requests, in addrs order.
func samples(c *client.Client, addrs []string) []int64 {
	out := make([]int64, len(addrs))
	for _, ns := range c.Stats().Nodes {
		if i := slices.Index(addrs, ns.Addr); i >= 0 {
			out[i] = ns.Samples
		}
	}
	return out
}

func diff(after, before []int64) []int64 {
	out := make([]int64, len(after))
	for i := range after {
		out[i] = after[i] - before[i]
	}
	return out
}

func nodesUsed(counts []int64) int {
	n := 0
	for _, x := range counts {
		if x > 0 {
			n++
		}
	}
	return n
}

// TestHotKeySpreading: on three real quorum nodes, a sticky client
// (WithSlowNodeRouting(0, 0)) sends all reads of a key to one node; that
// node's HOTKEYS reports it, and a client with WithHotKeySpreading learns
// it and sends the key's reads round-robin over the three nodes, with the
// right values, while reads of a cold key stay on one node.
func TestHotKeySpreading(t *testing.T) {
	addrs := startQuorumCluster(t)
	ctx := context.Background()
	sticky := []client.Option{client.WithSlowNodeRouting(0, 0), client.WithNamespace("q")}
	plain := newClient(t, addrs, sticky...)
	if err := plain.CreateNamespace(ctx, client.NamespaceSpec{Name: "q", Strategy: "quorum"}); err != nil {
		t.Fatal(err)
	}
	// Wait until every node has the namespace (catalog sync).
	for _, a := range addrs {
		one := newClient(t, []string{a}, sticky...)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := one.Get(ctx, "probe"); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("namespace q not at %s: %v", a, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := plain.Set(ctx, "hot", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Set(ctx, "cold", []byte("c1")); err != nil {
		t.Fatal(err)
	}

	const reads = 400
	read := func(c *client.Client, key, want string) []int64 {
		t.Helper()
		before := samples(c, addrs)
		for i := range reads {
			v, err := c.Get(ctx, key)
			if err != nil || !v.Found || string(v.Data) != want {
				t.Fatalf("read %d of %s = %q (found %v), %v; want %q", i, key, v.Data, v.Found, err, want)
			}
		}
		return diff(samples(c, addrs), before)
	}

	// Without spreading: every read of the hot key at one node.
	without := read(plain, "hot", "v1")
	t.Logf("without spreading, per-node reads of the hot key: %v", without)
	if nodesUsed(without) != 1 {
		t.Fatalf("sticky client's reads went to %v, want one node", without)
	}

	hc := newClient(t, addrs, append(sticky, client.WithHotKeySpreading(time.Hour))...)
	if err := hc.RefreshHotKeys(ctx); err != nil {
		t.Fatal(err)
	}
	hot := hc.HotKeys()
	if !slices.Contains(hot, client.HotKey{Namespace: "q", Key: "hot"}) || slices.Contains(hot, client.HotKey{Namespace: "q", Key: "cold"}) {
		t.Fatalf("HotKeys() = %v, want q/hot and not q/cold", hot)
	}

	// The background refresh learns the same without RefreshHotKeys.
	bg := newClient(t, addrs, append(sticky, client.WithHotKeySpreading(50*time.Millisecond))...)
	for deadline := time.Now().Add(5 * time.Second); !slices.Contains(bg.HotKeys(), client.HotKey{Namespace: "q", Key: "hot"}); {
		if time.Now().After(deadline) {
			t.Fatalf("background refresh: HotKeys() = %v after 5 s, want q/hot", bg.HotKeys())
		}
		time.Sleep(20 * time.Millisecond)
	}

	with := read(hc, "hot", "v1")
	t.Logf("with spreading, per-node reads of the hot key: %v", with)
	if nodesUsed(with) < 2 {
		t.Fatalf("hot reads with spreading went to %v, want >= 2 nodes", with)
	}
	for i, n := range with {
		if n > reads/2 {
			t.Fatalf("node %d answered %d of %d hot reads: %v", i, n, reads, with)
		}
	}
	cold := read(hc, "cold", "c1")
	if nodesUsed(cold) != 1 {
		t.Fatalf("cold reads went to %v, want one node", cold)
	}

	// Writes are not spread and reads stay correct after a write (R+W > N
	// on every coordinator).
	if _, err := hc.Set(ctx, "hot", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	read(hc, "hot", "v2")

	// Close stops the refresh goroutine (newClient's cleanup closes too).
	if err := hc.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestHotKeysRefreshErrors: RefreshHotKeys without the option is a typed
// error; with every node down it fails and keeps the list.
func TestHotKeysRefreshErrors(t *testing.T) {
	ctx := context.Background()
	off := newClient(t, []string{"127.0.0.1:1"})
	if err := off.RefreshHotKeys(ctx); err == nil {
		t.Fatal("RefreshHotKeys without WithHotKeySpreading succeeded")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	c := newClient(t, []string{dead}, client.WithHotKeySpreading(time.Hour), client.WithDialTimeout(time.Second))
	if err := c.RefreshHotKeys(ctx); err == nil {
		t.Fatal("RefreshHotKeys with no node up succeeded")
	}
	if hs := c.HotKeys(); len(hs) != 0 {
		t.Fatalf("HotKeys() = %v after a failed refresh", hs)
	}
}
