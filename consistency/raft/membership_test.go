package raft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// admin sends a membership command to node i.
func (c *testCluster) admin(i int, args ...string) core.Reply {
	c.t.Helper()
	cmd := core.Cmd(args[0], args[1:]...)
	resp, err := c.do(i, consistency.Request{Cmd: &cmd})
	if err != nil {
		c.t.Fatalf("%s on n%d: %v", cmd, i+1, err)
	}
	return resp.Reply
}

// TestMembershipMovesReplicaUnderLoad: four nodes, shard 0 on n1..n3.
// While writers keep writing through the nodes, n4's replica is added
// (RAFT.ADD at a member, RAFT.JOIN at n4) and n1's removed (RAFT.REMOVE,
// RAFT.LEAVE at n1), n1 being the leader or not. Every acknowledged write
// is then read back linearizably through n4, the writes never stopped
// succeeding for long, and a restart of n4 restarts its joined replica
// (hosted.json).
func TestMembershipMovesReplicaUnderLoad(t *testing.T) {
	for _, storage := range []string{"memory", "pebble"} {
		t.Run(storage, func(t *testing.T) {
			c := newTestClusterN(t, 4, 1, func(cfg *Config) {
				cfg.Storage = storage
				cfg.PebbleFS = pebblevfs.NewMem()
				cfg.BatchProposals = true
			})
			if c.svcs[3].Hosts(0) {
				t.Fatal("n4 hosts shard 0 before it was added")
			}
			var (
				mu    sync.Mutex
				acked = map[string]string{}
				stop  atomic.Bool
				wg    sync.WaitGroup
				fails atomic.Int64
			)
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; !stop.Load(); i++ {
						k, v := fmt.Sprintf("w%d-%d", w, i), fmt.Sprint(i)
						cmd := core.Cmd("SET", k, v)
						// Nodes n2 and n3 stay members throughout.
						resp, err := c.do(1+w%2, consistency.Request{Cmd: &cmd})
						if err != nil || resp.Reply.IsError() {
							fails.Add(1)
							time.Sleep(5 * time.Millisecond)
							continue
						}
						mu.Lock()
						acked[k] = v
						mu.Unlock()
					}
				}()
			}
			time.Sleep(100 * time.Millisecond)
			if r := c.admin(1, "RAFT.ADD", "0", "n4"); str(r) != "OK" {
				t.Fatalf("RAFT.ADD 0 n4 = %s", str(r))
			}
			if r := c.admin(3, "RAFT.JOIN", "0"); str(r) != "OK" {
				t.Fatalf("RAFT.JOIN 0 at n4 = %s", str(r))
			}
			// Wait until n4 has caught up with a write made after the join.
			c.cmd(1, consistency.Options{}, "SET", "marker", "1")
			waitStale(t, c, 3, "marker", "1")
			if r := c.admin(2, "RAFT.REMOVE", "0", "n1"); str(r) != "OK" {
				t.Fatalf("RAFT.REMOVE 0 n1 = %s", str(r))
			}
			if r := c.admin(0, "RAFT.LEAVE", "0"); str(r) != "OK" {
				t.Fatalf("RAFT.LEAVE 0 at n1 = %s", str(r))
			}
			time.Sleep(300 * time.Millisecond) // writes continue on n2, n3, n4
			stop.Store(true)
			wg.Wait()
			r := c.admin(3, "RAFT.MEMBERS", "0")
			if len(r.Array) != 3 || str(r.Array[0]) != "2 n2 "+c.cfgs[1].Nodes[1].RaftAddr || str(r.Array[2]) != "4 n4 "+c.cfgs[3].Nodes[3].RaftAddr {
				t.Fatalf("RAFT.MEMBERS 0 = %+v, want n2, n3, n4", r.Array)
			}
			if c.svcs[0].Hosts(0) {
				t.Fatal("n1 still hosts shard 0 after RAFT.LEAVE")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(acked) < 20 {
				t.Fatalf("only %d writes acknowledged during the move", len(acked))
			}
			for k, v := range acked {
				if got := str(c.cmd(3, consistency.Options{}, "GET", k)); got != v {
					t.Fatalf("acknowledged %s=%s, n4 reads %s", k, v, got)
				}
			}
			t.Logf("%d writes acknowledged during the move, %d attempts failed (retried)", len(acked), fails.Load())
			// n4 restarts its joined replica from hosted.json.
			if err := c.svcs[3].Close(); err != nil {
				t.Fatal(err)
			}
			svc, err := New(c.cfgs[3])
			if err != nil {
				t.Fatal(err)
			}
			c.svcs[3] = svc
			if !svc.Hosts(0) {
				t.Fatal("restarted n4 does not host shard 0")
			}
			// A write may time out right after the restart (its outcome is
			// then unknown; docs/raft.md: results lost when an entry arrives
			// by snapshot): SET is idempotent, so retry it like a client would.
			setRetrying(t, c, 1, "marker", "2")
			waitStale(t, c, 3, "marker", "2")
		})
	}
}

// TestMembershipAdminErrors: bad membership commands get error replies.
func TestMembershipAdminErrors(t *testing.T) {
	c := newTestClusterN(t, 4, 1, nil)
	for _, tt := range []struct {
		node int
		args []string
	}{
		{0, []string{"RAFT.ADD", "0"}},
		{0, []string{"RAFT.ADD", "7", "n4"}},
		{0, []string{"RAFT.ADD", "x", "n4"}},
		{0, []string{"RAFT.ADD", "0", "n9"}},
		{3, []string{"RAFT.MEMBERS", "0"}}, // n4 hosts nothing
		{3, []string{"RAFT.LEAVE", "0"}},
		{0, []string{"RAFT.JOIN", "0"}}, // already hosts it
	} {
		if r := c.admin(tt.node, tt.args...); r.Kind != core.KindError {
			t.Errorf("%v at n%d = %s, want an error reply", tt.args, tt.node+1, str(r))
		}
	}
}

func waitStale(t *testing.T, c *testCluster, i int, k, v string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cmd := core.Cmd("GET", k)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := c.svcs[i].Do(ctx, consistency.Request{Cmd: &cmd, Opts: consistency.Options{Read: "stale"}})
		cancel()
		if err == nil && str(resp.Reply) == v {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("n%d did not catch up: %s=%s, %v", i+1, k, str(resp.Reply), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRemovedLeaderNotRedirectedTo: the leader of shard 0 is removed (and
// leaves) after n4 joined. The remaining members keep the removed leader's
// ID until they elect a new one; in that window they must not redirect to
// it (it redirects back: a loop that used to exhaust clients' retries in
// TestRaftMembershipThroughTheAPI). Every write, sent at each node and
// following redirects the way a client does, ends served, and no redirect
// names the removed node.
func TestRemovedLeaderNotRedirectedTo(t *testing.T) {
	c := newTestClusterN(t, 4, 1, func(cfg *Config) { cfg.RedirectToLeader = true })
	l := c.waitLeader(0, -1)
	f := (l + 1) % 3 // a member that stays
	if r := c.admin(f, "RAFT.ADD", "0", "n4"); str(r) != "OK" {
		t.Fatalf("RAFT.ADD 0 n4 = %s", str(r))
	}
	if r := c.admin(3, "RAFT.JOIN", "0"); str(r) != "OK" {
		t.Fatalf("RAFT.JOIN 0 at n4 = %s", str(r))
	}
	removed := false // l removed: no redirect may name it
	set := func(i int, k string) {
		t.Helper()
		cmd := core.Cmd("SET", k, "v")
		for hop := 0; ; hop++ {
			resp, err := c.do(i, consistency.Request{Cmd: &cmd})
			var rd *consistency.Redirect
			if errors.As(err, &rd) && hop < 8 {
				if removed && rd.Addr == c.cfgs[l].Nodes[l].ClientAddr {
					t.Fatalf("SET %s: n%d redirects to the removed leader n%d (%s)", k, i+1, l+1, rd.Reason)
				}
				i = -1
				for j, n := range c.cfgs[0].Nodes {
					if n.ClientAddr == rd.Addr {
						i = j
					}
				}
				if i < 0 {
					t.Fatalf("SET %s: redirect to unknown %s", k, rd.Addr)
				}
				continue
			}
			if err != nil || str(resp.Reply) != "OK" {
				t.Fatalf("SET %s (hop %d, at n%d) = %s, %v", k, hop, i+1, str(resp.Reply), err)
			}
			return
		}
	}
	set(f, "before")
	waitStale(t, c, 3, "before", "v")
	leaderNode := string(c.cfgs[l].NodeID)
	if r := c.admin(f, "RAFT.REMOVE", "0", leaderNode); str(r) != "OK" {
		t.Fatalf("RAFT.REMOVE 0 %s = %s", leaderNode, str(r))
	}
	removed = true
	if r := c.admin(l, "RAFT.LEAVE", "0"); str(r) != "OK" {
		t.Fatalf("RAFT.LEAVE 0 at %s = %s", leaderNode, str(r))
	}
	for _, i := range []int{f, 3, l, (l + 2) % 3} {
		set(i, fmt.Sprintf("after-n%d", i+1))
	}
}

// setRetrying sets key to val through node i, retrying (up to 3 attempts)
// writes that time out: a timeout leaves the outcome unknown, and an
// idempotent SET may be sent again. Any other failure fails the test.
func setRetrying(t *testing.T, c *testCluster, i int, key, val string) {
	t.Helper()
	cmd := core.Cmd("SET", key, val)
	for attempt := 1; ; attempt++ {
		resp, err := c.do(i, consistency.Request{Cmd: &cmd})
		if err == nil {
			if resp.Reply.Kind == core.KindError {
				t.Fatalf("%s on n%d: %s", cmd, i+1, str(resp.Reply))
			}
			return
		}
		if !errors.Is(err, consistency.ErrTimeout) || attempt == 3 {
			t.Fatalf("%s on n%d (attempt %d): %v", cmd, i+1, attempt, err)
		}
		t.Logf("%s on n%d timed out (attempt %d), retrying: %v", cmd, i+1, attempt, err)
	}
}
