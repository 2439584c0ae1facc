package nodes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/core/pebbleengine"
)

// TestCorruptRaftRebuilt: a record of a raft replica's state machine is
// corrupted on a stopped node's disk (the Raft log is intact). At restart
// the node's check finds it (CRC-32C), moves the state machine aside,
// logs and counts the event, and has the shard remove its replica and add
// it back under a fresh ID; the new replica gets the shard from the
// leader's snapshot (the log was compacted past the first writes). Then
// every acknowledged write is read back at the rebuilt node, locally and
// linearizably.
func TestCorruptRaftRebuilt(t *testing.T) {
	var logs syncBuffer
	tc := newTestCluster(t, "n1", "n2", "n3")
	clients := createRKV(tc)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := client.New(clients, client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rkv := client.With(ctx, client.Namespace("rkv"))
	const n = 60
	setKeys(t, c, rkv, n)
	at := func(i int) *client.Client {
		cl, err := client.New([]string{clients[i]}, client.WithTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	stale := client.With(rkv, client.ReadMode("stale"))
	waitLocal := func(cl *client.Client, key, want string, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
			v, err := cl.Get(stale, key)
			if err == nil && string(v.Data) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("stale GET %s = %q, %v; want %q\nlogs:\n%s", key, v.Data, err, want, logs.String())
			}
		}
	}
	waitLocal(at(1), fmt.Sprint("k", n-1), fmt.Sprint("v", n-1), 20*time.Second)

	// Corrupt k3's record in n2's state machine while n2 is down.
	tc.stop(1)
	smDir := filepath.Join(tc.dirs[1], "ns", "rkv", "raft", "sm-1")
	eng, err := pebbleengine.Open(smDir, pebbleengine.Options{Sync: core.SyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("dk3") // core's data record of key k3
	raw, err := eng.Get(key)
	if err != nil {
		t.Fatalf("reading k3's record on n2: %v", err)
	}
	raw = append([]byte(nil), raw...)
	raw[len(raw)-5] ^= 0x5a // the value's last byte: only the checksum tells
	b := eng.NewBatch()
	b.Set(key, raw)
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	eng.Close()

	// First with n1 and n3 down: the corruption is found and counted but
	// no node can rebuild the replica; a restart of n2 then must not
	// start the replica on an empty state machine but resume the rebuild
	// (rebuild-1.json), which completes once n1 and n3 are back.
	tc.stop(0)
	tc.stop(2)
	tc.logw = &logs
	// The rebuild runs in its own goroutine (nodes/raft.go
	// rebuildRaftReplica): its log lines and count may come after the
	// namespace is open, so the checks below wait for them.
	waitLog := func(what, line string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), line); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s was not logged within 10 s (%q):\n%s", what, line, logs.String())
			}
		}
	}
	tc.start(1)
	tc.waitNamespace("rkv")
	waitLog("the corruption", "raft replica's state machine is corrupt")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := corruptionEvents(t, tc.nodes[1].Node, "rkv", "store")
		if got == 1 {
			break
		}
		if got > 1 || time.Now().After(deadline) {
			t.Fatalf("dialkv_corruption_events_total{kind=store} = %v; want 1\nlogs:\n%s", got, logs.String())
		}
	}
	marker := filepath.Join(tc.dirs[1], "ns", "rkv", "raft", "rebuild-1.json")
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("rebuild not recorded: %v", err)
	}
	tc.stop(1)
	tc.start(1)
	tc.waitNamespace("rkv")
	waitLog("the resumed rebuild", "resuming the rebuild")
	if got := corruptionEvents(t, tc.nodes[1].Node, "rkv", "store"); got != 0 {
		t.Fatalf("a resumed rebuild counted again: %v", got)
	}
	tc.start(0)
	tc.start(2)
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(logs.String(), "raft replica rebuilt"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no rebuild within 60 s\nlogs:\n%s", logs.String())
		}
	}
	svc := nsService(tc.nodes[1].namespace("rkv")).(*raft.Service)
	if !svc.Hosts(0) || len(svc.Corrupt()) != 0 {
		t.Fatalf("after the rebuild: hosts shard 0 %v, corrupt %v", svc.Hosts(0), svc.Corrupt())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("rebuild-1.json left after the rebuild")
	}
	if m, _ := filepath.Glob(smDir + ".corrupt-*"); len(m) != 1 {
		t.Fatalf("the corrupt state machine was not kept aside: %v", m)
	}
	// Every acknowledged write, at the rebuilt node: its own replica
	// (stale reads) and linearizably.
	n2 := at(1)
	for i := range n {
		waitLocal(n2, fmt.Sprint("k", i), fmt.Sprint("v", i), 20*time.Second)
		if v, err := c.Get(rkv, fmt.Sprint("k", i)); err != nil || string(v.Data) != fmt.Sprint("v", i) {
			t.Fatalf("linearizable GET k%d = %q, %v", i, v.Data, err)
		}
	}
	// The rebuilt replica takes part in new writes.
	if _, err := c.Set(rkv, "after", []byte("rebuild")); err != nil {
		t.Fatal(err)
	}
	waitLocal(n2, "after", "rebuild", 20*time.Second)
}

// createRKV creates raft namespace "rkv" over every member of tc (rtt 5ms,
// a snapshot every 20 entries), waits until every node has it and every
// shard a leader, and returns the members' client addresses.
func createRKV(tc *testCluster) []string {
	tc.t.Helper()
	raftAddrs := freeAddrs(tc.t, 3)
	var ids, clients []string
	for _, p := range tc.peers {
		ids, clients = append(ids, p.ID), append(clients, p.Client)
	}
	tc.createAt(0, "rkv", "raft", map[string]string{"nodes": strings.Join(ids, ","), "raft-addrs": strings.Join(raftAddrs, ","),
		"client-addrs": strings.Join(clients, ","), "rtt": "5ms", "snapshot-entries": "20"})
	tc.waitNamespace("rkv")
	if err := waitRaftLeaders(tc.nodes, "rkv", 30*time.Second); err != nil {
		tc.t.Fatal(err)
	}
	return clients
}

// setKeys writes k0..k(n-1) = v0..v(n-1) and fails the test on an error.
func setKeys(t testing.TB, c *client.Client, ctx context.Context, n int) {
	t.Helper()
	for i := range n {
		if _, err := c.Set(ctx, fmt.Sprint("k", i), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatalf("SET k%d: %v", i, err)
		}
	}
}
