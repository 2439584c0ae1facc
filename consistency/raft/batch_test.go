package raft

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// TestApplyBatchEntry: a batch entry applies its proposals in order, each as
// if it were its own entry, and returns one reply per proposal; malformed
// batches become an error reply and change nothing.
func TestApplyBatchEntry(t *testing.T) {
	st, err := core.NewStore(core.NewMemEngine(), core.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var clock int64
	set := core.Cmd("SET", "k", "a")
	incr := core.Cmd("INCR", "n")
	wrong := core.Cmd("INCR", "k") // not an integer
	ps := [][]byte{
		encodeProposal(proposal{now: 10, cmd: &set}),
		encodeProposal(proposal{now: 20, cmd: &incr}),
		encodeProposal(proposal{now: 15, cmd: &incr}),
		encodeProposal(proposal{now: 30, cmd: &wrong}),
	}
	data, err := applyEntry(st, &clock, nil, 1, encodeBatch(ps), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := splitList(data, errBadBatch)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range out {
		r, err := core.DecodeReply(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, str(r))
	}
	if fmt.Sprint(got) != "[OK 1 2 ERR:ERR]" || clock != 30 {
		t.Fatalf("batch replies %v, clock %d; want [OK 1 2 ERR:ERR] and 30", got, clock)
	}
	for _, bad := range [][]byte{
		{proposalVersion, kindBatch},
		{proposalVersion, kindBatch, 2, 1, 'x'},
		append(encodeBatch(ps[:1]), 0),
		{proposalVersion, kindBatch, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		data, err := applyEntry(st, &clock, nil, 2, bad, nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := core.DecodeReply(data)
		if err != nil || r.Kind != core.KindError {
			t.Errorf("malformed batch %x: %s, %v; want an error reply", bad, str(r), err)
		}
	}
	if r := st.Apply(timeOf(clock), core.Cmd("GET", "n")); str(r) != "2" {
		t.Fatalf("n = %s after the malformed batches, want 2", str(r))
	}
}

// TestServiceBatchesConcurrentWrites: with BatchProposals, concurrent INCRs
// through every node are each applied once, and every caller gets its own
// reply (a permutation of 1..N).
func TestServiceBatchesConcurrentWrites(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.BatchProposals = true; cfg.RedirectToLeader = false })
	defer c.close()
	c.waitLeader(0, -1)
	const writers, each = 30, 10
	var mu sync.Mutex
	var got []int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				cmd := core.Cmd("INCR", "n")
				resp, err := c.do(w%3, consistency.Request{Cmd: &cmd})
				if err != nil || resp.Reply.Kind != core.KindInt {
					errs <- errors.Join(err, fmt.Errorf("reply %s", str(resp.Reply)))
					return
				}
				mu.Lock()
				got = append(got, resp.Reply.Int)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	for i, v := range got {
		if v != int64(i+1) {
			t.Fatalf("INCR replies %v: want each of 1..%d once", got, writers*each)
		}
	}
	if r := c.cmd(0, consistency.Options{}, "GET", "n"); str(r) != fmt.Sprint(writers*each) {
		t.Fatalf("n = %s, want %d", str(r), writers*each)
	}
}

func timeOf(ns int64) time.Time { return time.Unix(0, ns) }
