package raft

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// keysOnShards returns n keys "prefix<i>" for each of the shards, by shard.
func keysOnShards(prefix string, shards, n int) [][]string {
	out := make([][]string, shards)
	for i := 0; ; i++ {
		k := prefix + strconv.Itoa(i)
		sh := core.ShardOf([]byte(k), shards)
		if len(out[sh]) < n {
			out[sh] = append(out[sh], k)
		}
		done := true
		for _, ks := range out {
			done = done && len(ks) == n
		}
		if done {
			return out
		}
	}
}

func (c *testCluster) txn(i int, t core.Txn) core.Reply {
	c.t.Helper()
	resp, err := c.do(i, consistency.Request{Txn: &t})
	if err != nil {
		c.t.Fatalf("transaction on n%d: %v", i+1, err)
	}
	return resp.Reply
}

// TestCrossShardCommands: multi-key commands and transactions over three
// shards commit atomically through two-phase commit, with the replies of
// single-shard ones; a failed condition or command on one shard changes
// nothing on any shard; commands that are not split still get CROSSSHARD.
func TestCrossShardCommands(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	lin := consistency.Options{}
	ks := keysOnShards("k", 3, 1)
	a, b, d := ks[0][0], ks[1][0], ks[2][0]
	if got := str(c.cmd(0, lin, "MSET", a, "1", b, "2", d, "3")); got != "OK" {
		t.Fatalf("MSET over 3 shards = %s", got)
	}
	if got := replyStr(c.cmd(1, lin, "MGET", d, "nokey", a, b)); got != "[3 (nil) 1 2]" {
		t.Fatalf("MGET over 3 shards = %s, want [3 (nil) 1 2]", got)
	}
	if got := str(c.cmd(2, lin, "EXISTS", a, b, d, "nokey", a)); got != "4" {
		t.Fatalf("EXISTS = %s, want 4", got)
	}
	// A transaction: conditions on two shards, commands on three.
	tx := core.Txn{
		Conds: []core.Condition{{Key: []byte(a), Kind: core.CondValue, Value: []byte("1")}, {Key: []byte(d), Kind: core.CondExists}},
		Cmds:  []core.Command{core.Cmd("INCRBY", b, "10"), core.Cmd("SET", a, "x"), core.Cmd("MGET", a, d)},
	}
	if got := replyStr(c.txn(1, tx)); got != "[12 OK [x 3]]" {
		t.Fatalf("cross-shard transaction = %s, want [12 OK [x 3]]", got)
	}
	// The same again: condition 0 fails now (a is x): nothing applied.
	r := c.txn(2, tx)
	if !r.IsError() || r.Err.Code != core.CodeConditionFailed || r.Err.Condition[:2] != "0:" {
		t.Fatalf("transaction with a failed condition = %+v, want CONDFAILED on condition 0", r)
	}
	// A failing command (INCR of a non-integer) on a's shard: b's INCRBY is
	// not applied either.
	r = c.txn(0, core.Txn{Cmds: []core.Command{core.Cmd("INCRBY", b, "1"), core.Cmd("INCR", a)}})
	if !r.IsError() || r.Err.Msg[:11] != "command 1 (" {
		t.Fatalf("transaction with a failing command = %+v, want an error naming command 1", r)
	}
	if got := replyStr(c.cmd(0, lin, "MGET", a, b, d)); got != "[x 12 3]" {
		t.Fatalf("after the refused transactions MGET = %s, want [x 12 3]", got)
	}
	if got := str(c.cmd(1, lin, "DEL", a, b, "nokey")); got != "2" {
		t.Fatalf("DEL over 2 shards = %s, want 2", got)
	}
	if got := str(c.cmd(1, lin, "SUNIONSTORE", a, b)); got != "ERR:CROSSSHARD" {
		t.Fatalf("SUNIONSTORE over 2 shards = %s, want CROSSSHARD", got)
	}
	c.waitNoIntents(0, 1, 2)
	c.waitNoDecisions(0, 1, 2) // every commit was acknowledged
}

// waitNoIntents waits until the replicas of nodes hold no intent (a
// replica may lag its leader), failing after 10 s.
func (c *testCluster) waitNoIntents(nodes ...int) {
	c.t.Helper()
	for _, i := range nodes {
		for sh := 0; sh < c.svcs[i].Shards(); sh++ {
			if !c.svcs[i].Hosts(sh) {
				continue
			}
			in, err := c.svcs[i].Intents(sh)
			for deadline := time.Now().Add(10 * time.Second); (err != nil || len(in) != 0) && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
				in, err = c.svcs[i].Intents(sh)
			}
			if err != nil || len(in) != 0 {
				c.t.Fatalf("n%d shard %d intents = %v, %v; want none", i+1, sh, in, err)
			}
		}
	}
}

// TestTxnCoordinatorCrash: a coordinator (n1) prepares a transaction on
// two shards by hand and crashes, (a) before recording a decision, (b)
// after recording commit and committing one shard only. A request on
// another node that meets the locks resolves the transaction once it is
// older than TxnRecoverAfter: (a) aborted, nothing applied; (b) the
// recorded commit is learned and applied on the second shard.
func TestTxnCoordinatorCrash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		decide bool
		want   string
	}{
		{"before-decision", false, "[old-a old-b]"},
		{"after-decision", true, "[new-a new-b]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 2, func(cfg *Config) { cfg.TxnRecoverAfter = 300 * time.Millisecond })
			a, b := crashedCoordinator(t, c, tc.decide)
			lin := consistency.Options{}
			// Reads of locked keys see the last committed values.
			if got := replyStr(c.cmd(1, lin, "GET", b)); got != "old-b" {
				t.Fatalf("GET %s while prepared = %s, want old-b", b, got)
			}
			start := time.Now()
			// A cross-shard read meets the locks and resolves them.
			got := replyStr(c.cmd(2, lin, "MGET", a, b))
			if got != tc.want {
				t.Fatalf("MGET after the coordinator crash = %s, want %s (waited %v)", got, tc.want, time.Since(start))
			}
			t.Logf("resolved after %v", time.Since(start))
			// No intent is left, and the keys take writes again.
			c.waitNoIntents(1, 2)
			if got := str(c.cmd(1, lin, "SET", b, "later")); got != "OK" {
				t.Fatalf("SET after resolution = %s", got)
			}
		})
	}
}

// crashedCoordinator sets keys a (shard 0) and b (shard 1) to old-a and
// old-b, then n1 coordinates a transaction setting them to new-a and new-b
// by hand: it prepares both shards, if decide records commit and commits
// shard 0 only, and crashes (its Service closes).
func crashedCoordinator(t *testing.T, c *testCluster, decide bool) (a, b string) {
	t.Helper()
	ks := keysOnShards("k", 2, 1)
	a, b = ks[0][0], ks[1][0]
	c.cmd(1, consistency.Options{}, "MSET", a, "old-a", b, "old-b")
	co := c.svcs[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := co.newTxnID()
	for sh, k := range []string{a, b} {
		r, err := co.proposeTxnOp(ctx, sh, txnOp{op: txnOpPrepare, id: id, coord: 0, part: core.Txn{Cmds: []core.Command{core.Cmd("SET", k, "new-"+string("ab"[sh]))}}})
		if err != nil || r.IsError() {
			t.Fatalf("prepare on shard %d: %v %v", sh, r, err)
		}
	}
	if decide {
		if r, err := co.proposeTxnOp(ctx, 0, txnOp{op: txnOpDecide, id: id, decision: decisionCommit, ref: co.cfg.Clock().UnixNano(), shards: []int{0, 1}}); err != nil || r.Int != 1 {
			t.Fatalf("decide: %v %v", r, err)
		}
		if r, err := co.proposeTxnOp(ctx, 0, txnOp{op: txnOpCommit, id: id}); err != nil || r.IsError() {
			t.Fatalf("commit shard 0: %v %v", r, err)
		}
	}
	if err := co.Close(); err != nil { // the coordinator crashes
		t.Fatal(err)
	}
	return a, b
}

// TestTxnBackgroundRecovery: with no request touching the keys, a node
// running RecoverTxnsEvery applies the recorded commit of a transaction
// whose coordinator crashed after committing one shard: a plain GET of the
// other shard's key sees it, and no intent is left. Without the loop the
// GET keeps seeing the old value (checked first).
func TestTxnBackgroundRecovery(t *testing.T) {
	c := newTestCluster(t, 2, func(cfg *Config) { cfg.TxnRecoverAfter = 200 * time.Millisecond })
	_, b := crashedCoordinator(t, c, true)
	lin := consistency.Options{}
	time.Sleep(400 * time.Millisecond) // stale by now, but nobody resolves it
	if got := str(c.cmd(1, lin, "GET", b)); got != "old-b" {
		t.Fatalf("GET %s without recovery = %s, want old-b (the intent is not applied)", b, got)
	}
	if d, err := c.svcs[1].Decisions(0); err != nil || len(d) != 1 || !d[0].Commit || !slices.Equal(d[0].Left, []int{0, 1}) {
		t.Fatalf("decisions of shard 0 before recovery = %+v, %v; want one commit, both shards unacknowledged", d, err)
	}
	// Only the leader of shard 0 sweeps its decisions: run the loop on
	// both live nodes.
	go c.svcs[1].RecoverTxnsEvery(100 * time.Millisecond)
	go c.svcs[2].RecoverTxnsEvery(100 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for str(c.cmd(2, lin, "GET", b)) != "new-b" {
		if time.Now().After(deadline) {
			t.Fatalf("GET %s still not new-b 10 s after RecoverTxnsEvery started (go test -run TestTxnBackgroundRecovery ./consistency/raft)", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.waitNoIntents(1, 2)
	c.waitNoDecisions(1, 2)
}

// waitNoDecisions waits until the replicas of nodes hold no commit
// record (all collected; abort records recovery wrote stay for
// txnDecisionTTL), failing after 10 s.
func (c *testCluster) waitNoDecisions(nodes ...int) {
	c.t.Helper()
	commits := func(ds []DecisionInfo) int {
		n := 0
		for _, d := range ds {
			if d.Commit {
				n++
			}
		}
		return n
	}
	for _, i := range nodes {
		for sh := 0; sh < c.svcs[i].Shards(); sh++ {
			if !c.svcs[i].Hosts(sh) {
				continue
			}
			d, err := c.svcs[i].Decisions(sh)
			for deadline := time.Now().Add(10 * time.Second); (err != nil || commits(d) != 0) && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
				d, err = c.svcs[i].Decisions(sh)
			}
			if err != nil || commits(d) != 0 {
				c.t.Fatalf("n%d shard %d decisions = %+v, %v; want no commit record (collected)", i+1, sh, d, err)
			}
		}
	}
}

// bankResult is what one bank run saw.
type bankResult struct {
	transfers, unknown, reads int64
	bad                       []string // reads whose total was wrong
	final                     int64
}

// runBank moves money between accounts spread over shards with concurrent
// cross-shard transfers (INCRBY -x, INCRBY +x in one transaction) through
// every node, while readers read every account in one cross-shard MGET.
// Every read must see the initial total.
func runBank(t *testing.T, broken bool, seed uint64) bankResult {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.brokenTxnCommit = broken })
	return runBankOn(t, c, broken, seed)
}

// runBankOn is runBank on cluster c (every node coordinates and reads).
func runBankOn(t *testing.T, c *testCluster, broken bool, seed uint64) bankResult {
	const (
		perShard, initial  = 2, 100
		workers, transfers = 4, 40
		readers            = 2
	)
	shards, n := c.svcs[0].Shards(), len(c.svcs)
	var accts []string
	for _, ks := range keysOnShards("acct", shards, perShard) {
		accts = append(accts, ks...)
	}
	total := int64(initial * len(accts))
	args := []string{}
	for _, a := range accts {
		args = append(args, a, strconv.Itoa(initial))
	}
	if got := str(c.cmd(0, consistency.Options{}, "MSET", args...)); got != "OK" {
		t.Fatalf("MSET of the accounts = %s", got)
	}
	sum := func(r core.Reply) (int64, bool) {
		if r.Kind != core.KindArray || len(r.Array) != len(accts) {
			return 0, false
		}
		var n int64
		for _, e := range r.Array {
			v, err := strconv.ParseInt(string(e.Str), 10, 64)
			if err != nil {
				return 0, false
			}
			n += v
		}
		return n, true
	}
	mget := core.Cmd("MGET", accts...)
	var res bankResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	var stop atomic.Bool
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := 0; i < transfers && !stop.Load(); i++ {
				from := accts[rng.IntN(len(accts))]
				to := accts[rng.IntN(len(accts))]
				if core.ShardOf([]byte(from), shards) == core.ShardOf([]byte(to), shards) {
					continue // cross-shard transfers only
				}
				x := strconv.Itoa(1 + rng.IntN(20))
				tx := core.Txn{Cmds: []core.Command{core.Cmd("INCRBY", from, "-"+x), core.Cmd("INCRBY", to, x)}}
				resp, err := c.do(rng.IntN(n), consistency.Request{Txn: &tx})
				switch {
				case err != nil:
					atomic.AddInt64(&res.unknown, 1)
				case !resp.Reply.IsError():
					atomic.AddInt64(&res.transfers, 1)
				}
			}
		}()
	}
	var rwg sync.WaitGroup
	for r := 0; r < readers; r++ {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for i := 0; !stop.Load(); i++ {
				resp, err := c.do((r+i)%n, consistency.Request{Cmd: &mget})
				if err != nil || resp.Reply.IsError() {
					continue
				}
				atomic.AddInt64(&res.reads, 1)
				if n, ok := sum(resp.Reply); !ok || n != total {
					mu.Lock()
					res.bad = append(res.bad, fmt.Sprintf("total %d: %s", n, replyStr(resp.Reply)))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	rwg.Wait()
	// Settle what crashed attempts left, then read the final total.
	for _, s := range c.svcs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.RecoverTxns(ctx, time.Nanosecond)
		cancel()
	}
	resp, err := c.do(0, consistency.Request{Cmd: &mget})
	if err != nil || resp.Reply.IsError() {
		t.Fatalf("final read: %v %v", resp.Reply, err)
	}
	res.final, _ = sum(resp.Reply)
	if !broken {
		// Every decision record is collected: acknowledged by the
		// coordinators, or by the sweep of RecoverTxns above.
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		c.waitNoDecisions(all...)
	}
	return res
}

// TestBankTransfers: concurrent cross-shard transfers never change the
// total any cross-shard read sees (atomicity and isolation of two-phase
// commit), and the final total is the initial one.
func TestBankTransfers(t *testing.T) {
	res := runBank(t, false, 1)
	t.Logf("transfers %d, unknown %d, reads %d", res.transfers, res.unknown, res.reads)
	if len(res.bad) > 0 || res.final != 600 {
		t.Fatalf("%d reads saw a wrong total (%q); final total %d, want 600 (go test -run TestBankTransfers ./consistency/raft)",
			len(res.bad), res.bad, res.final)
	}
	if res.transfers == 0 || res.reads == 0 {
		t.Fatalf("no transfer (%d) or no read (%d) succeeded", res.transfers, res.reads)
	}
}

// TestBankTransfersCatchesBrokenCommit: the same run with a coordinator
// that decides commit on the coordinator shard's vote alone (not waiting
// for every participant's yes) loses atomicity, and the bank test sees the
// total change.
func TestBankTransfersCatchesBrokenCommit(t *testing.T) {
	res := runBank(t, true, 1)
	t.Logf("broken: transfers %d, unknown %d, reads %d, bad reads %d, final %d", res.transfers, res.unknown, res.reads, len(res.bad), res.final)
	if len(res.bad) == 0 && res.final == 600 {
		t.Fatal("the broken coordinator was not caught: every read saw the total (go test -run TestBankTransfersCatchesBrokenCommit ./consistency/raft)")
	}
}

// BenchmarkCrossShard: MSET and MGET of two keys on two shards (a
// cross-shard transaction: two prepares, a decision, two commits) beside
// the same commands on one hash tag (one Raft entry; MGET: one ReadIndex
// read), one client, three nodes in this process on loopback with memory
// disks. cpu-us/op is the whole process's CPU time (all three nodes) per
// operation, the figure to compare under load.
func BenchmarkCrossShard(b *testing.B) {
	ks := keysOnShards("k", 2, 1)
	for _, tc := range []struct {
		name, cmd, k1, k2 string
	}{
		{"MSET/one-shard", "MSET", "{t}:a", "{t}:b"},
		{"MSET/two-shards", "MSET", ks[0][0], ks[1][0]},
		{"MGET/one-shard", "MGET", "{t}:a", "{t}:b"},
		{"MGET/two-shards", "MGET", ks[0][0], ks[1][0]},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := newTestCluster(b, 2, nil)
			lead := c.waitLeader(0, -1)
			c.cmd(lead, consistency.Options{}, "MSET", tc.k1, "1", tc.k2, "2")
			cmd := core.Cmd(tc.cmd, tc.k1, "x", tc.k2, "y")
			if tc.cmd == "MGET" {
				cmd = core.Cmd(tc.cmd, tc.k1, tc.k2)
			}
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := c.do(lead, consistency.Request{Cmd: &cmd})
				if err != nil || resp.Reply.IsError() {
					b.Fatalf("%s: %v %v", tc.cmd, resp.Reply, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
