package core

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestApplyBatchMatchesApply: random commands and transactions of every
// type, cut into random batches, give the same replies through ApplyBatch
// (one engine batch per batch, a savepoint per entry) as one Apply or
// ApplyTxn each, and leave byte-identical engines (records, versions, the
// version counter, expiry queue, index entries: SaveSnapshot). Failing
// commands inside a batch must change nothing while the others apply.
//
//	go test -run TestApplyBatchMatchesApply -rapid.checks=1000 ./core
func TestApplyBatchMatchesApply(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		one, _ := NewStore(NewMemEngine(), Limits{MaxValueSize: 300})
		bat, _ := NewStore(NewMemEngine(), Limits{MaxValueSize: 300})
		now := t0
		if rapid.Bool().Draw(t, "index") {
			c := Cmd("IDX.CREATE", "ix", "ON", "HASH", "PREFIX", "", "FIELD", "f", "TYPE", "string")
			one.Apply(now, c)
			bat.Apply(now, c)
		}
		for b, nb := 0, rapid.IntRange(1, 8).Draw(t, "batches"); b < nb; b++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 1500).Draw(t, "advance_ms")) * time.Millisecond)
			n := rapid.IntRange(0, 12).Draw(t, "entries")
			entries := make([]BatchEntry, n)
			want := make([]Reply, n)
			for i := range entries {
				if rapid.IntRange(0, 5).Draw(t, "txn") == 0 {
					txn := genTxn(t)
					entries[i].Txn = &txn
					want[i] = one.ApplyTxn(now, txn)
				} else {
					c := fixCmd(genAnyCmd(t))
					entries[i].Cmd = &c
					want[i] = one.Apply(now, c)
				}
			}
			got := make([]Reply, n)
			bat.ApplyBatch(now, entries, got)
			for i := range got {
				if render(got[i]) != render(want[i]) || got[i].Version != want[i].Version {
					t.Fatalf("batch %d entry %d (%+v): ApplyBatch %s (version %d), Apply %s (version %d)",
						b, i, entries[i], render(got[i]), got[i].Version, render(want[i]), want[i].Version)
				}
			}
			var a, c bytes.Buffer
			if err := one.SaveSnapshot(&a); err != nil {
				t.Fatal(err)
			}
			if err := bat.SaveSnapshot(&c); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), c.Bytes()) {
				t.Fatalf("after batch %d the engines differ (Apply %d bytes, ApplyBatch %d bytes)", b, a.Len(), c.Len())
			}
			if one.Stats() != bat.Stats() {
				t.Fatalf("after batch %d: stats %+v, ApplyBatch %+v", b, one.Stats(), bat.Stats())
			}
		}
	})
}

// TestApplyBatchOneCommit: a batch is one engine commit, and an entry that
// fails in the middle leaves no trace while its neighbours apply.
func TestApplyBatchOneCommit(t *testing.T) {
	e := &countingEngine{Engine: NewMemEngine()}
	s, _ := NewStore(e, Limits{})
	cmds := []Command{Cmd("SET", "a", "1"), Cmd("SET", "b", "x"), Cmd("INCR", "b"), Cmd("LPUSH", "a", "z"), Cmd("INCR", "a"), Cmd("GET", "a")}
	entries := make([]BatchEntry, len(cmds))
	for i := range cmds {
		entries[i].Cmd = &cmds[i]
	}
	replies := make([]Reply, len(cmds))
	s.ApplyBatch(t0, entries, replies)
	want := []string{"OK", "OK", "(error) ERR value is not an integer or out of range",
		"(error) WRONGTYPE Operation against a key holding the wrong kind of value", "(integer) 2", `"2"`}
	for i, r := range replies {
		if render(r) != want[i] {
			t.Errorf("entry %d %s: %s, want %s", i, cmds[i], render(r), want[i])
		}
	}
	if e.commits != 1 {
		t.Errorf("%d engine commits for one batch, want 1", e.commits)
	}
}

// countingEngine counts batch commits.
type countingEngine struct {
	Engine
	commits int
}

func (c *countingEngine) NewBatch() Batch { return &countingBatch{Batch: c.Engine.NewBatch(), e: c} }

type countingBatch struct {
	Batch
	e *countingEngine
}

func (b *countingBatch) Commit(sync bool) error { b.e.commits++; return b.Batch.Commit(sync) }

// prefetchEngine records the keys the Store prefetches.
type prefetchEngine struct {
	Engine
	calls [][]string
}

func (p *prefetchEngine) Prefetch(keys [][]byte) {
	var ks []string
	for _, k := range keys {
		ks = append(ks, string(k))
	}
	p.calls = append(p.calls, ks)
}

// TestPrefetch: ApplyBatch (and Prefetch, which a caller runs before a
// batch of Reads) hands a Prefetcher engine the data keys of the batch's
// commands, every key of a multi-key command, in order, once per batch;
// unknown commands and transactions add none, and a batch with fewer
// than prefetchMin keys is not prefetched. The replies are those of the
// same batch without prefetching.
func TestPrefetch(t *testing.T) {
	cmds := []Command{Cmd("MSET", "a", "1", "b", "2"), Cmd("GET", "c"), Cmd("NOSUCH", "x"),
		Cmd("HSET", "h", "f", "v"), Cmd("SET", "d", "4"), Cmd("MGET", "a", "d")}
	entries := make([]BatchEntry, len(cmds)+1)
	for i := range cmds {
		entries[i].Cmd = &cmds[i]
	}
	entries[len(cmds)].Txn = &Txn{Cmds: []Command{Cmd("SET", "t", "1")}}
	e := &prefetchEngine{Engine: NewMemEngine()}
	s, _ := NewStore(e, Limits{})
	plain, _ := NewStore(NewMemEngine(), Limits{})
	got, want := make([]Reply, len(entries)), make([]Reply, len(entries))
	s.ApplyBatch(t0, entries, got)
	plain.ApplyBatch(t0, entries, want)
	for i := range got {
		if render(got[i]) != render(want[i]) {
			t.Errorf("entry %d: %s with prefetching, %s without (reproduce: go test -run TestPrefetch ./core)", i, render(got[i]), render(want[i]))
		}
	}
	var keys []string
	for _, k := range []string{"a", "b", "c", "h", "d", "a", "d"} {
		keys = append(keys, string(dataKey([]byte(k))))
	}
	if len(e.calls) != 1 || strings.Join(e.calls[0], ",") != strings.Join(keys, ",") {
		t.Fatalf("prefetched %q, want one call with %q (reproduce: go test -run TestPrefetch ./core)", e.calls, keys)
	}
	s.Prefetch(entries[:3]) // MSET a b, GET c: three keys
	if len(e.calls) != 1 {
		t.Fatalf("a batch of 3 keys was prefetched: %q (reproduce: go test -run TestPrefetch ./core)", e.calls[1:])
	}
}

// nopPrefetchEngine is a Prefetcher that does nothing (for counting the
// Store's own allocations).
type nopPrefetchEngine struct{ Engine }

func (nopPrefetchEngine) Prefetch([][]byte) {}

// TestPrefetchEach: PrefetchEach hands the engine the same keys as
// Prefetch of the same commands (nil ones name none), and a batch's
// prefetch reuses its memory: no allocation per batch once warm (the
// node's batches of reads built a []BatchEntry, and Prefetch two buffers,
// per batch).
func TestPrefetchEach(t *testing.T) {
	cmds := []*Command{{Name: "GET", Args: [][]byte{[]byte("a")}}, nil, {Name: "mget", Args: [][]byte{[]byte("b"), []byte("c")}},
		{Name: "NOSUCH", Args: [][]byte{[]byte("x")}}, {Name: "GET", Args: [][]byte{[]byte("d")}}}
	e := &prefetchEngine{Engine: NewMemEngine()}
	s, _ := NewStore(e, Limits{})
	s.PrefetchEach(len(cmds), func(i int) *Command { return cmds[i] })
	var want []string
	for _, k := range []string{"a", "b", "c", "d"} {
		want = append(want, string(dataKey([]byte(k))))
	}
	if len(e.calls) != 1 || strings.Join(e.calls[0], ",") != strings.Join(want, ",") {
		t.Fatalf("prefetched %q, want one call with %q (reproduce: go test -run TestPrefetchEach ./core)", e.calls, want)
	}

	quiet, _ := NewStore(nopPrefetchEngine{NewMemEngine()}, Limits{})
	gets := make([]BatchEntry, 100)
	for i := range gets {
		gets[i].Cmd = &Command{Name: "GET", Args: [][]byte{fmt.Appendf(nil, "key:%012d", i)}}
	}
	// Under -race sync.Pool drops Puts at random, so the pooled scratch
	// allocates now and then: the count is only checked without it.
	if allocs := testing.AllocsPerRun(50, func() { quiet.Prefetch(gets) }); allocs != 0 && !raceEnabled {
		t.Errorf("%.1f allocations per prefetch of 100 GETs, want 0 (reproduce: go test -run TestPrefetchEach ./core)", allocs)
	}
}
