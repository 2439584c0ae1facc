package raft

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// newSpreadCluster starts 4 nodes with 4 shards of 3 replicas: no node
// hosts every shard. Each node reaches the others through an in-process
// Config.Peer (the Service's Do, as the client API would).
func newSpreadCluster(t *testing.T, mutate func(*Config)) *testCluster {
	t.Helper()
	var ref struct{ c *testCluster }
	peer := func(ctx context.Context, n Node, cmd core.Command) (core.Reply, error) {
		if ref.c != nil {
			for _, s := range ref.c.svcs {
				if s != nil && s.cfg.NodeID == n.ID {
					resp, err := s.Do(ctx, consistency.Request{Cmd: &cmd})
					return resp.Reply, err
				}
			}
		}
		return core.Reply{}, fmt.Errorf("no node %s: %w", n.ID, consistency.ErrUnavailable)
	}
	c := newTestClusterN(t, 4, 4, func(cfg *Config) {
		cfg.Peer = peer
		if mutate != nil {
			mutate(cfg)
		}
	})
	ref.c = c
	for i, s := range c.svcs {
		all := true
		for sh := 0; sh < 4; sh++ {
			all = all && s.Hosts(sh)
		}
		if all {
			t.Fatalf("n%d hosts every shard; the test needs them spread", i+1)
		}
	}
	return c
}

// TestCrossShardThroughPeers: every node of a cluster where no node hosts
// every shard coordinates cross-shard commands and transactions over all
// four shards, proposing to the shards it does not host through another
// node (RAFT.TXNOP); the results are those of TestCrossShardCommands, and
// every intent and commit record is gone at the end.
func TestCrossShardThroughPeers(t *testing.T) {
	c := newSpreadCluster(t, nil)
	lin := consistency.Options{}
	ks := keysOnShards("k", 4, 1)
	a, b, d, e := ks[0][0], ks[1][0], ks[2][0], ks[3][0]
	hostA := 0
	for !c.svcs[hostA].Hosts(0) {
		hostA++
	}
	for i := range c.svcs {
		v := func(k string) string { return fmt.Sprintf("%s@n%d", k, i+1) }
		if got := str(c.cmd(i, lin, "MSET", a, v("a"), b, v("b"), d, v("d"), e, v("e"))); got != "OK" {
			t.Fatalf("MSET over 4 shards at n%d = %s", i+1, got)
		}
		want := fmt.Sprintf("[%s %s (nil) %s %s]", v("e"), v("d"), v("a"), v("b"))
		if got := replyStr(c.cmd((i+1)%4, lin, "MGET", e, d, "nokey", a, b)); got != want {
			t.Fatalf("MGET at n%d = %s, want %s", (i+1)%4+1, got, want)
		}
		tx := core.Txn{
			Conds: []core.Condition{{Key: []byte(a), Kind: core.CondValue, Value: []byte(v("a"))}, {Key: []byte(e), Kind: core.CondExists}},
			Cmds:  []core.Command{core.Cmd("SET", b, "1"), core.Cmd("INCRBY", b, "10"), core.Cmd("SET", d, "x"), core.Cmd("MGET", a, d)},
		}
		want = fmt.Sprintf("[OK 11 OK [%s x]]", v("a"))
		if got := replyStr(c.txn(i, tx)); got != want {
			t.Fatalf("transaction at n%d = %s, want %s", i+1, got, want)
		}
		// Condition 0 fails once a changes (a single-shard SET, sent to
		// a node hosting a's shard): nothing of the transaction applies.
		if got := str(c.cmd(hostA, lin, "SET", a, "changed")); got != "OK" {
			t.Fatalf("SET at n%d = %s", hostA+1, got)
		}
		if r := c.txn(i, tx); !r.IsError() || r.Err.Code != core.CodeConditionFailed {
			t.Fatalf("transaction with a failed condition at n%d = %s, want CONDFAILED", i+1, replyStr(r))
		}
		if got := replyStr(c.cmd(i, lin, "MGET", b, d)); got != "[11 x]" {
			t.Fatalf("after the refused transaction MGET at n%d = %s, want [11 x]", i+1, got)
		}
		if got := str(c.cmd(i, lin, "DEL", b, d)); got != "2" {
			t.Fatalf("DEL over 2 shards at n%d = %s, want 2", i+1, got)
		}
	}
	all := []int{0, 1, 2, 3}
	c.waitNoIntents(all...)
	c.waitNoDecisions(all...)
}

// TestBankTransfersThroughPeers: the bank run of TestBankTransfers on
// the spread cluster (four coordinators, none hosting every shard).
func TestBankTransfersThroughPeers(t *testing.T) {
	c := newSpreadCluster(t, nil)
	res := runBankOn(t, c, false, 2)
	t.Logf("transfers %d, unknown %d, reads %d", res.transfers, res.unknown, res.reads)
	want := int64(100 * 2 * 4)
	if len(res.bad) > 0 || res.final != want {
		t.Fatalf("%d reads saw a wrong total (%q); final total %d, want %d (go test -run TestBankTransfersThroughPeers ./consistency/raft)",
			len(res.bad), res.bad, res.final, want)
	}
	if res.transfers == 0 || res.reads == 0 {
		t.Fatalf("no transfer (%d) or no read (%d) succeeded", res.transfers, res.reads)
	}
}

// TestTxnOpCommand: RAFT.TXNOP refuses what is not a two-phase commit
// proposal with a typed error, and a node without a replica says so.
func TestTxnOpCommand(t *testing.T) {
	c := newSpreadCluster(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	set := core.Cmd("SET", "k", "v")
	notTxn := encodeProposal(proposal{now: 1, proposer: 3, seq: 4, cmd: &set})
	for _, args := range [][]string{{}, {"0"}, {"9", "x"}, {"0", "garbage"}, {"0", string(notTxn)}} {
		cmd := core.Cmd("RAFT.TXNOP", args...)
		resp, err := c.svcs[0].Do(ctx, consistency.Request{Cmd: &cmd})
		if err != nil || !resp.Reply.IsError() {
			t.Fatalf("RAFT.TXNOP %q = %v, %v; want an error reply", args, resp.Reply, err)
		}
	}
	var sh int
	for sh = 0; c.svcs[0].Hosts(sh); sh++ {
	}
	abort := encodeProposal(proposal{now: 1, proposer: 3, seq: 5, tx: &txnOp{op: txnOpAbort, id: tid(1)}})
	cmd := core.Cmd("RAFT.TXNOP", fmt.Sprint(sh), string(abort))
	resp, err := c.svcs[0].Do(ctx, consistency.Request{Cmd: &cmd})
	if err != nil || resp.Reply.Kind != core.KindBulk || resp.Reply.Str[0] != txnRemoteNotHosted {
		t.Fatalf("RAFT.TXNOP for shard %d at n1 (not hosted) = %v, %v", sh, resp.Reply, err)
	}
}
