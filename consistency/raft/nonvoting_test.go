package raft

import (
	"strings"
	"testing"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// TestCatchUpKeepsQuorum: shard 0 has voters n1..n3; n4's replica is added
// and has not caught up at all (it is not started: the slowest catch-up
// there is), and then a voter other than the leader stops. Added as a
// non-voting member (RAFT.ADD ... NONVOTING, what moves do), the shard
// still has 2 of its 3 voters and writes commit; added as a voter (plain
// RAFT.ADD), it has 2 of 4 and no write commits — the hazard the
// non-voting step removes, shown here so that the test would catch a move
// that adds voters directly. The non-voting replica then starts (RAFT.JOIN
// ... NONVOTING), survives a restart before its promotion, catches up
// (RAFT.SYNCED), is promoted (RAFT.PROMOTE) and restarts as a voter (a
// start as a voter used to panic in Dragonboat's replay of the entry that
// added it as non-voting).
func TestCatchUpKeepsQuorum(t *testing.T) {
	for _, tt := range []struct {
		name       string
		add        []string
		wantCommit bool
	}{
		{"nonvoting", []string{"RAFT.ADD", "0", "n4", "NONVOTING"}, true},
		{"voter", []string{"RAFT.ADD", "0", "n4"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClusterN(t, 4, 1, nil)
			l := c.waitLeader(0, -1)
			down := (l + 1) % 3 // a voter, not the leader
			if r := c.admin(l, tt.add...); str(r) != "4" {
				t.Fatalf("%v = %s, want replica ID 4", tt.add, str(r))
			}
			if err := c.svcs[down].Close(); err != nil {
				t.Fatal(err)
			}
			c.svcs[down] = nil
			cmd := core.Cmd("SET", "k", "1")
			resp, err := c.do(l, consistency.Request{Cmd: &cmd})
			committed := err == nil && str(resp.Reply) == "OK"
			if committed != tt.wantCommit {
				t.Fatalf("%s: a write with n4 not caught up and n%d down: committed %v (%s, %v), want %v (reproduce: go test -count=3 -run TestCatchUpKeepsQuorum ./consistency/raft/)",
					tt.name, down+1, committed, str(resp.Reply), err, tt.wantCommit)
			}
			if !tt.wantCommit {
				return
			}
			members := func(at int) string {
				t.Helper()
				var lines []string
				for _, e := range c.admin(at, "RAFT.MEMBERS", "0").Array {
					f := strings.Fields(str(e))
					lines = append(lines, strings.Join(append([]string{f[1]}, f[3:]...), " "))
				}
				return strings.Join(lines, ",")
			}
			hosted := func() string {
				t.Helper()
				r := c.admin(3, "RAFT.HOSTED")
				if len(r.Array) != 1 {
					t.Fatalf("RAFT.HOSTED at n4 = %+v", r.Array)
				}
				return str(r.Array[0])
			}
			restart := func() {
				t.Helper()
				if err := c.svcs[3].Close(); err != nil {
					t.Fatal(err)
				}
				svc, err := New(c.cfgs[3])
				if err != nil {
					t.Fatalf("restart n4: %v", err)
				}
				c.svcs[3] = svc
			}
			want := "n1,n2,n3,n4 nonvoting"
			if got := members(l); got != want {
				t.Fatalf("RAFT.MEMBERS 0 = %s, want %s", got, want)
			}
			if r := c.admin(3, "RAFT.JOIN", "0", "4", "NONVOTING"); str(r) != "OK" {
				t.Fatalf("RAFT.JOIN 0 4 NONVOTING at n4 = %s", str(r))
			}
			if r := c.admin(3, "RAFT.SYNCED", "0"); str(r) != "OK" {
				t.Fatalf("RAFT.SYNCED 0 at n4 = %s", str(r))
			}
			waitStale(t, c, 3, "k", "1")
			if h := hosted(); h != "0 4 nonvoting" {
				t.Fatalf("RAFT.HOSTED at n4 = %s, want 0 4 nonvoting", h)
			}
			restart() // before the promotion: restarts as non-voting (a voter start would panic in Dragonboat)
			if r := c.admin(3, "RAFT.SYNCED", "0"); str(r) != "OK" {
				t.Fatalf("RAFT.SYNCED 0 at n4 after its restart = %s", str(r))
			}
			if r := c.admin(l, "RAFT.PROMOTE", "0", "n4"); str(r) != "4" {
				t.Fatalf("RAFT.PROMOTE 0 n4 = %s", str(r))
			}
			if got := members(l); got != "n1,n2,n3,n4" {
				t.Fatalf("RAFT.MEMBERS 0 after the promotion = %s, want n1..n4 voters", got)
			}
			if r := c.admin(3, "RAFT.SYNCED", "0"); str(r) != "OK" {
				t.Fatalf("RAFT.SYNCED 0 at n4 after its promotion = %s", str(r))
			}
			if h := hosted(); h != "0 4 member" {
				t.Fatalf("RAFT.HOSTED at n4 = %s, want 0 4 member", h)
			}
			restart() // promoted: starts non-voting again and turns voter replaying its promotion
			setRetrying(t, c, l, "k", "2")
			waitStale(t, c, 3, "k", "2")
			if h := hosted(); h != "0 4 member" {
				t.Fatalf("RAFT.HOSTED at n4 after its restart = %s, want 0 4 member", h)
			}
		})
	}
}
