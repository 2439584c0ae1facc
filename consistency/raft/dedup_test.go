package raft

import (
	"bytes"
	"testing"

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/dialkv/dialkv/core"
)

// TestDedupAdmit: within the window each (proposer, seq) is admitted once,
// in any order; older than the window is refused; proposer 0 is never
// deduplicated; the least recently applied proposer is forgotten first.
func TestDedupAdmit(t *testing.T) {
	d := newDedup()
	for i, tt := range []struct {
		proposer, seq uint64
		want          core.Code // "" admitted
	}{
		{7, 10, ""},
		{7, 10, CodeDuplicate},
		{7, 9, ""},
		{7, 9, CodeDuplicate},
		{7, 75, ""}, // shift by 65: across a word boundary
		{7, 10, CodeDuplicate},
		{7, 11, ""},
		{7, 74, ""},
		{7, 75, CodeDuplicate},
		{7, 75 + dedupWindow, ""},
		{7, 75, CodeNotApplied},
		{7, 76, ""}, // exactly dedupWindow-1 behind
		{7, 76, CodeDuplicate},
		{8, 10, ""}, // another proposer
		{0, 1, ""},
		{0, 1, ""},
	} {
		e := d.admit(tt.proposer, tt.seq, uint64(i+1))
		got := core.Code("")
		if e != nil {
			got = e.Code
		}
		if got != tt.want {
			t.Fatalf("step %d: admit(%d, %d) = %q, want %q", i, tt.proposer, tt.seq, got, tt.want)
		}
	}
	for p := uint64(100); p < 100+maxProposers; p++ {
		d.admit(p, 1, 1000+p)
	}
	if len(d.w) != maxProposers {
		t.Fatalf("%d proposers remembered, want %d", len(d.w), maxProposers)
	}
	if d.w[8] != nil || d.w[7] != nil {
		t.Fatalf("the least recently applied proposers were not forgotten")
	}
	// The state round-trips through an engine.
	e := core.NewMemEngine()
	b := e.NewBatch()
	d.flush(b)
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	d2, err := loadDedup(e.Get)
	if err != nil {
		t.Fatal(err)
	}
	if len(d2.w) != len(d.w) || *d2.w[100] != *d.w[100] {
		t.Fatalf("reloaded state differs")
	}
	if e := d2.admit(100, 1, 5000); e == nil || e.Code != CodeDuplicate {
		t.Fatalf("reloaded state admits a duplicate: %v", e)
	}
}

// TestDuplicateProposalAppliedOnce: the same proposal reaching the log twice
// (an INCR, not idempotent) is applied once by both state machines, also
// after a snapshot (memory) or a reopen (Pebble) between the two copies.
func TestDuplicateProposalAppliedOnce(t *testing.T) {
	incr := core.Cmd("INCR", "n")
	prop := encodeProposal(proposal{now: 1, proposer: 42, seq: 1, cmd: &incr})
	other := encodeProposal(proposal{now: 2, proposer: 42, seq: 2, cmd: &incr})
	check := func(t *testing.T, res []byte, want string) {
		t.Helper()
		r, err := core.DecodeReply(res)
		if err != nil {
			t.Fatal(err)
		}
		if str(r) != want {
			t.Fatalf("reply %s, want %s", str(r), want)
		}
	}
	t.Run("memory", func(t *testing.T) {
		m, err := newMemSM(core.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		r1, _ := m.Update(sm.Entry{Index: 1, Cmd: prop})
		check(t, r1.Data, "1")
		var snap bytes.Buffer
		if err := m.SaveSnapshot(&snap, nil, nil); err != nil {
			t.Fatal(err)
		}
		m2, _ := newMemSM(core.Limits{})
		if err := m2.RecoverFromSnapshot(&snap, nil, nil); err != nil {
			t.Fatal(err)
		}
		r2, _ := m2.Update(sm.Entry{Index: 2, Cmd: prop})
		check(t, r2.Data, "ERR:DUPLICATE")
		r3, _ := m2.Update(sm.Entry{Index: 3, Cmd: other})
		check(t, r3.Data, "2")
	})
	t.Run("pebble", func(t *testing.T) {
		fs := pebblevfs.NewMem()
		m, _ := openDisk(t, fs)
		out, err := m.Update([]sm.Entry{{Index: 1, Cmd: prop}, {Index: 2, Cmd: prop}})
		if err != nil {
			t.Fatal(err)
		}
		check(t, out[0].Result.Data, "1")
		check(t, out[1].Result.Data, "ERR:DUPLICATE")
		if err := m.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		m2, idx := openDisk(t, fs)
		defer m2.Close()
		if idx != 2 {
			t.Fatalf("reopened at %d, want 2", idx)
		}
		out, err = m2.Update([]sm.Entry{{Index: 3, Cmd: prop}, {Index: 4, Cmd: other}})
		if err != nil {
			t.Fatal(err)
		}
		check(t, out[0].Result.Data, "ERR:DUPLICATE")
		check(t, out[1].Result.Data, "2")
		if got := dump(t, m2)["n"]; got == "" {
			t.Fatalf("n missing from the dump")
		}
	})
}
