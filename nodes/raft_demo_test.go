package nodes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
)

// TestDemoRaft: the default `dialkv demo` (three nodes, raft namespace
// "demo", two shards): a client that knows only n1 writes keys of both
// shards (following redirects to each shard's leader), and a client that
// knows only n3 reads every one back linearizably; multi-key commands on
// two shards commit as cross-shard transactions, commands that are not
// split across shards get CROSSSHARD, on one hash tag everything works.
func TestDemoRaft(t *testing.T) {
	nodes, spec, err := startDemoCluster(demoClusterOptions{nodes: 3, strategy: "raft", shards: 2, listen: "127.0.0.1:0", dir: t.TempDir(), log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, cn := range nodes {
			cn.Close(context.Background())
		}
	}()
	if spec == nil || spec.Strategy != "raft" || spec.Params["shards"] != "2" {
		t.Fatalf("demo namespace spec = %+v", spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = client.With(ctx, client.Namespace(demoNamespace))
	w, err := client.New([]string{nodes[0].Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := client.New([]string{nodes[2].Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	shards := map[int]bool{}
	for i := range 20 {
		k := fmt.Sprintf("k%d", i)
		shards[core.ShardOf([]byte(k), 2)] = true
		if _, err := w.Set(ctx, k, []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatalf("SET %s through n1: %v", k, err)
		}
	}
	if len(shards) != 2 {
		t.Fatalf("keys cover shards %v, want both", shards)
	}
	for i := range 20 {
		k := fmt.Sprintf("k%d", i)
		v, err := r.Get(client.With(ctx, client.ReadMode("linearizable")), k)
		if err != nil || !v.Found || string(v.Data) != fmt.Sprint("v", i) {
			t.Fatalf("GET %s through n3 = %+v, %v; want v%d", k, v, err, i)
		}
	}
	// Stale reads are served by any replica and say so; the value may lag,
	// but the key was written before the reads above, which every replica
	// applied by now or shortly.
	if _, err := r.Do(client.With(ctx, client.ReadMode("stale")), "GET", "k0"); err != nil {
		t.Fatalf("stale GET through n3: %v", err)
	}
	// Multi-key commands on two shards are cross-shard transactions
	// (two-phase commit): the MSET applies on both shards, and a client
	// that knows only n3 reads both values back in one MGET.
	a, b := "", ""
	for i := range 20 {
		k := fmt.Sprintf("k%d", i)
		if core.ShardOf([]byte(k), 2) == 0 && a == "" {
			a = k
		}
		if core.ShardOf([]byte(k), 2) == 1 && b == "" {
			b = k
		}
	}
	if _, err := w.Do(ctx, "MSET", a, "x", b, "y"); err != nil {
		t.Fatalf("MSET %s %s (two shards): %v", a, b, err)
	}
	got, err := r.Do(ctx, "MGET", a, b)
	if err != nil || len(got.Array) != 2 || string(got.Array[0].Str) != "x" || string(got.Array[1].Str) != "y" {
		t.Fatalf("MGET %s %s (two shards) through n3 = %+v, %v; want x y", a, b, got, err)
	}
	// A command that is not split across shards is still refused.
	_, err = w.Do(ctx, "SUNIONSTORE", a, b)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != string(raft.CodeCrossShard) {
		t.Fatalf("SUNIONSTORE %s %s (two shards) = %v, want CROSSSHARD", a, b, err)
	}
	if _, err := w.Do(ctx, "MSET", "{u1}:a", "1", "{u1}:b", "2"); err != nil {
		t.Fatalf("MSET on one hash tag: %v", err)
	}
	got, err = r.Do(ctx, "MGET", "{u1}:a", "{u1}:b")
	if err != nil || len(got.Array) != 2 || string(got.Array[0].Str) != "1" || string(got.Array[1].Str) != "2" {
		t.Fatalf("MGET on one hash tag through n3 = %+v, %v", got, err)
	}
}

// TestRaftMembershipThroughTheAPI: four members, a raft namespace whose
// shard starts on n1..n3; the membership commands sent through the client
// API move the replica from n1 to n4 between writes, and every
// acknowledged write is read back through n4 and through a client that
// knows only n1 (which no longer hosts the shard and redirects).
func TestRaftMembershipThroughTheAPI(t *testing.T) {
	// The moves are made by hand here: the rebalancer stays out.
	nodes, _, err := startDemoCluster(demoClusterOptions{nodes: 4, strategy: "raft", shards: 1, listen: "127.0.0.1:0", dir: t.TempDir(), log: slog.New(slog.DiscardHandler),
		raftParams: map[string]string{"rebalance": "false"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, cn := range nodes {
			cn.Close(context.Background())
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx = client.With(ctx, client.Namespace(demoNamespace))
	at := func(i int) *client.Client {
		c, err := client.New([]string{nodes[i].Addr()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	all := make([]string, len(nodes))
	for i, cn := range nodes {
		all[i] = cn.Addr()
	}
	w, err := client.New(all)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	n := 0
	write := func(k int) {
		t.Helper()
		for ; n < k; n++ {
			if _, err := w.Set(ctx, fmt.Sprint("m", n), []byte(fmt.Sprint(n))); err != nil {
				t.Fatalf("SET m%d: %v", n, err)
			}
		}
	}
	admin := func(c *client.Client, args ...any) {
		t.Helper()
		if r, err := c.Do(ctx, args[0].(string), args[1:]...); err != nil || string(r.Str) != "OK" {
			t.Fatalf("%v: %+v, %v", args, r, err)
		}
	}
	write(20)
	if r, err := at(0).Do(ctx, "RAFT.ADD", "0", "n4"); err != nil || r.Int != 4 {
		t.Fatalf("RAFT.ADD 0 n4 = %+v, %v; want replica ID 4", r, err)
	}
	admin(at(3), "RAFT.JOIN", "0")
	write(40)
	// n4 serves stale reads once it has caught up.
	for deadline := time.Now().Add(20 * time.Second); ; {
		v, err := at(3).Get(client.With(ctx, client.ReadMode("stale")), "m39")
		if err == nil && string(v.Data) == "39" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n4 did not catch up: %+v %v", v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	admin(at(1), "RAFT.REMOVE", "0", "n1")
	admin(at(0), "RAFT.LEAVE", "0")
	write(60)
	members, err := at(3).Do(ctx, "RAFT.MEMBERS", "0")
	if err != nil || len(members.Array) != 3 {
		t.Fatalf("RAFT.MEMBERS 0 at n4 = %+v, %v", members, err)
	}
	for _, r := range members.Array {
		if strings.Contains(string(r.Str), " n1 ") {
			t.Fatalf("n1 still a member: %+v", members.Array)
		}
	}
	for _, c := range []*client.Client{at(3), at(0)} {
		for i := range 60 {
			v, err := c.Get(client.With(ctx, client.ReadMode("linearizable")), fmt.Sprint("m", i))
			if err != nil || string(v.Data) != fmt.Sprint(i) {
				t.Fatalf("GET m%d = %+v, %v", i, v, err)
			}
		}
	}
}
