package raft

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// TestDoAsync: writes started with DoAsync on the leader are each answered
// once, with their own applied reply (INCRs: every count from 1 to n once),
// also when writes outlive reproposeAfter and are finished by proposeFrom
// (copies proposed again, applied once; with a 2 ms repropose one write
// whose result never comes certainly is, counted in asyncState.slow);
// DoAsync leaves a follower's
// write, a read and a write past its deadline to Do, and every write when
// reproposing is off.
func TestDoAsync(t *testing.T) {
	for _, tc := range []struct {
		name      string
		repropose time.Duration
	}{
		{"answered by the completion goroutine", 0},
		{"reproposed after 2ms", 2 * time.Millisecond},
		{"repropose off: left to Do", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 1, func(cfg *Config) { cfg.ReproposeAfter = tc.repropose })
			l := c.waitLeader(0, -1)
			f := (l + 1) % 3
			if tc.repropose < 0 {
				set := core.Cmd("SET", "a", "1")
				if c.svcs[l].DoAsync(consistency.Request{ID: 1, Cmd: &set}, time.Now().Add(10*time.Second), func(consistency.Response, error) {
					t.Error("done called for a write DoAsync refused")
				}) {
					t.Fatal("DoAsync started a write with repropose off")
				}
				return
			}
			const n = 200
			var mu sync.Mutex
			var got []int64
			var errs []error
			var wg sync.WaitGroup
			deadline := time.Now().Add(10 * time.Second)
			incr := core.Cmd("INCR", "k")
			s := c.svcs[l]
			for i := range n {
				wg.Add(1)
				done := func(r consistency.Response, err error) {
					mu.Lock()
					got, errs = append(got, r.Reply.Int), append(errs, err)
					mu.Unlock()
					wg.Done()
				}
				if i == 0 && tc.repropose > 0 {
					// Whether the others outlive 2 ms depends on the
					// machine (0 or all of them were seen): this one's
					// result never comes (its RequestState is not
					// Dragonboat's), so it is finished by asyncSlow, which
					// proposes a copy.
					now := time.Now()
					s.enqueueAsync(&asyncWrite{
						req: consistency.Request{ID: 1, Cmd: &incr}, sh: 0, shardID: s.ShardID(0),
						data:     encodeProposal(proposal{now: now.UnixNano(), proposer: s.proposer, seq: s.seq.Add(1), cmd: &incr}),
						rs:       &dragonboat.RequestState{CompletedC: make(chan dragonboat.RequestResult, 1)},
						deadline: deadline, since: now, done: done,
					})
					continue
				}
				if !s.DoAsync(consistency.Request{ID: uint64(i + 1), Cmd: &incr}, deadline, done) {
					t.Fatalf("write %d not started on the leader", i)
				}
			}
			wg.Wait()
			sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
			for i := range n {
				if errs[i] != nil || got[i] != int64(i+1) {
					t.Fatalf("answer %d: %d, %v; want the counts 1..%d once each", i, got[i], errs[i], n)
				}
			}
			slow := c.svcs[l].async.slow.Load()
			t.Logf("%d of %d writes handed to asyncSlow", slow, n)
			if tc.repropose > 0 && slow == 0 {
				t.Fatalf("no write of %d was handed to asyncSlow (proposeFrom) with repropose %v", n, tc.repropose)
			}
			if r := c.cmd(f, consistency.Options{}, "GET", "k"); str(r) != fmt.Sprint(n) {
				t.Fatalf("GET k on a follower: %s, want %d", str(r), n)
			}
			set := core.Cmd("SET", "a", "1")
			get := core.Cmd("GET", "a")
			never := func(consistency.Response, error) { t.Error("done called for a write DoAsync refused") }
			for _, refused := range []struct {
				what string
				node int
				cmd  *core.Command
				dl   time.Time
			}{
				{"a write on a follower", f, &set, deadline},
				{"a read on the leader", l, &get, deadline},
				{"a write past its deadline", l, &set, time.Now()},
			} {
				if c.svcs[refused.node].DoAsync(consistency.Request{Cmd: refused.cmd}, refused.dl, never) {
					t.Errorf("DoAsync started %s", refused.what)
				}
			}
		})
	}
}

// TestDoAsyncShardQueues: a write without a result queued for one shard
// does not hold up another shard's writes started with DoAsync (one
// completion goroutine per shard): with a 3 s repropose, a write to
// shard 1 queued behind a stuck write of shard 0 is answered well before
// the stuck one would be handed to asyncSlow; the stuck one, given a
// timed-out result, is then answered ErrTimeout.
func TestDoAsyncShardQueues(t *testing.T) {
	const wait = 3 * time.Second
	c := newTestCluster(t, 2, func(cfg *Config) { cfg.ReproposeAfter = wait })
	l := c.waitLeader(1, -1)
	s := c.svcs[l]
	// The stuck write: its result comes only when the test sends one
	// (its RequestState is not Dragonboat's).
	set := core.Cmd("SET", "stuck", "1")
	now := time.Now()
	rs := &dragonboat.RequestState{CompletedC: make(chan dragonboat.RequestResult, 1)}
	stuck := make(chan error, 1)
	s.enqueueAsync(&asyncWrite{
		req: consistency.Request{ID: 1, Cmd: &set}, sh: 0, shardID: s.ShardID(0),
		data: encodeProposal(proposal{now: now.UnixNano(), proposer: s.proposer, seq: s.seq.Add(1), cmd: &set}),
		rs:   rs, deadline: now.Add(wait + 10*time.Second), since: now,
		done: func(_ consistency.Response, err error) { stuck <- err },
	})
	key := ""
	for i := 0; key == ""; i++ { // a key of shard 1
		if k := fmt.Sprint("k", i); core.ShardOf([]byte(k), 2) == 1 {
			key = k
		}
	}
	incr := core.Cmd("INCR", key)
	answered := make(chan error, 1)
	start := time.Now()
	if !s.DoAsync(consistency.Request{ID: 2, Cmd: &incr}, start.Add(10*time.Second), func(_ consistency.Response, err error) { answered <- err }) {
		t.Fatal("DoAsync refused a write on shard 1's leader")
	}
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("write to shard 1: %v", err)
		}
	case <-time.After(wait / 2):
		t.Fatalf("write to shard 1 not answered in %v: held up by shard 0's stuck write (repropose %v)", wait/2, wait)
	}
	rs.CompletedC <- dragonboat.RequestResult{} // timed out
	select {
	case err := <-stuck:
		if !errors.Is(err, consistency.ErrTimeout) {
			t.Fatalf("the stuck write, timed out: %v, want ErrTimeout", err)
		}
	case <-time.After(wait + 10*time.Second):
		t.Fatal("the stuck write was never answered")
	}
}
