package raft

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// TestDoAsync: writes started with DoAsync on the leader are each answered
// once, with their own applied reply (INCRs: every count from 1 to n once),
// also when writes outlive reproposeAfter and are finished by proposeFrom
// (copies proposed again, applied once; with a 2 ms repropose at least one
// write of 200 is, counted in asyncState.slow); DoAsync leaves a follower's
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
			for i := range n {
				wg.Add(1)
				if !c.svcs[l].DoAsync(consistency.Request{ID: uint64(i + 1), Cmd: &incr}, deadline, func(r consistency.Response, err error) {
					mu.Lock()
					got, errs = append(got, r.Reply.Int), append(errs, err)
					mu.Unlock()
					wg.Done()
				}) {
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
