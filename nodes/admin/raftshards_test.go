package admin

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/transport"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	return loopbackPorts(t, 1)[0]
}

// TestMoveShard: four cluster members, a raft namespace listing all four
// with shard 0 on n1..n3. `dialkv admin move-shard` moves n1's replica to
// n4, then back (n1 rejoins under a new replica ID); where-shards shows
// each placement, and a key written before is read after each move.
func TestMoveShard(t *testing.T) {
	dir := t.TempDir()
	peers := make([]nodes.ClusterPeer, 4)
	var ids, raftAddrs, clientAddrs []string
	for i := range peers {
		peers[i] = nodes.ClusterPeer{ID: fmt.Sprintf("n%d", i+1), Client: freeAddr(t), Peer: freeAddr(t)}
		ids, raftAddrs, clientAddrs = append(ids, peers[i].ID), append(raftAddrs, freeAddr(t)), append(clientAddrs, peers[i].Client)
	}
	spec := nodes.NamespaceSpec{Name: "mv", Strategy: "raft", Params: map[string]string{
		"nodes": strings.Join(ids, ","), "raft-addrs": strings.Join(raftAddrs, ","), "client-addrs": strings.Join(clientAddrs, ","),
		"shards": "1", "replicas": "3", "rtt": "5ms", "rebalance": "false"}}
	cns := make([]*nodes.ClusterNode, 4)
	errs := make(chan error, 4)
	for i, p := range peers {
		go func() {
			cn, err := nodes.StartClusterNode(nodes.Config{ID: p.ID, Listen: p.Client, DataDir: filepath.Join(dir, p.ID), Fsync: core.SyncAlways},
				nodes.ClusterConfig{Name: "mv", Peers: peers})
			if err == nil {
				cns[i] = cn
				err = cn.CreateNamespace(spec)
				if err != nil && strings.Contains(err.Error(), "EXISTS") {
					err = nil
				}
			}
			errs <- err
		}()
	}
	for range peers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, cn := range cns {
			if cn != nil {
				cn.Close(context.Background())
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.New(clientAddrs, client.WithNamespace("mv"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for {
		if _, err := c.Set(ctx, "k", []byte("v1")); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("no write served: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := Main(args, &out, &errb); code != 0 {
			t.Fatalf("dialkv admin %s: exit %d: %s%s", strings.Join(args, " "), code, out.String(), errb.String())
		}
		return out.String()
	}
	check := func(want string) {
		t.Helper()
		out := run("where-shards", "--namespace", "mv", "--addr", peers[1].Client)
		if !strings.Contains(out, "shard 0: "+want+"\n") {
			t.Fatalf("where-shards: want shard 0: %s, got\n%s", want, out)
		}
		v, err := c.Get(client.With(ctx, client.ReadMode("linearizable")), "k")
		if err != nil || string(v.Data) != "v1" {
			t.Fatalf("GET k = %+v, %v", v, err)
		}
	}
	check("n1, n2, n3")
	// A move cut short after its first step leaves a non-voting member:
	// where-shards shows it, and the next move to that node reuses it.
	call := nodes.DialRaftCaller(transport.DialOptions{}, 5*time.Second)
	if _, err := call(ctx, peers[1].Client, "mv", "RAFT.ADD", "0", "n4", "NONVOTING"); err != nil {
		t.Fatal(err)
	}
	check("n1, n2, n3 (non-voting: n4)")
	out := run("move-shard", "--namespace", "mv", "--shard", "0", "--from", "n1", "--to", "n4", "--addr", peers[1].Client)
	t.Logf("n1 -> n4:\n%s", out)
	check("n2, n3, n4")
	out = run("move-shard", "--namespace", "mv", "--shard", "0", "--from", "n4", "--to", "n1", "--addr", peers[1].Client)
	t.Logf("n4 -> n1 (rejoin):\n%s", out)
	check("n1, n2, n3")
	// Bad requests fail with a message, and change nothing.
	for _, args := range [][]string{
		{"move-shard", "--namespace", "mv", "--shard", "0", "--from", "n4", "--to", "n2", "--addr", peers[1].Client}, // n4 not a member
		{"move-shard", "--namespace", "mv", "--shard", "0", "--from", "n1", "--to", "n2", "--addr", peers[1].Client}, // n2 a member
		{"move-shard", "--namespace", "mv", "--shard", "0", "--from", "n1", "--to", "n9", "--addr", peers[1].Client}, // unknown
		{"move-shard", "--namespace", "mv", "--shard", "3", "--from", "n1", "--to", "n4", "--addr", peers[1].Client}, // no shard 3
		{"move-shard", "--namespace", "default", "--shard", "0", "--from", "n1", "--to", "n4", "--addr", peers[1].Client},
	} {
		var o, e bytes.Buffer
		if code := Main(args, &o, &e); code == 0 || e.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, e.String())
		}
	}
	check("n1, n2, n3")
}
