package core

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// cloneEffects copies fx (ApplyTxnThen's fx is valid only during then).
func cloneEffects(fx *Effects) Effects {
	c := *fx
	c.Writes = make([]EffectWrite, len(fx.Writes))
	for i, w := range fx.Writes {
		c.Writes[i] = EffectWrite{Key: bytes.Clone(w.Key), Value: bytes.Clone(w.Value), Delete: w.Delete}
	}
	return c
}

// TestApplyEffectsMatchesApply: random commands and transactions of every
// type (TTLs, expiry, indexes) run on one store with ApplyTxnThen; their
// effects applied to a second store with ApplyEffects leave byte-identical
// engines (records, versions, the version counter, the expiry queue, index
// entries and definitions: SaveSnapshot), the same stats and index
// definitions, after every write. Failed writes have no effects.
//
//	go test -run TestApplyEffectsMatchesApply -rapid.checks=1000 ./core
func TestApplyEffectsMatchesApply(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pri, _ := NewStore(NewMemEngine(), Limits{MaxValueSize: 300})
		bk, _ := NewStore(NewMemEngine(), Limits{MaxValueSize: 300})
		now := t0
		apply := func(txn Txn) {
			var fx Effects
			called := false
			rep := pri.ApplyTxnThen(now, txn, func(e *Effects) []Command {
				fx, called = cloneEffects(e), true
				return nil
			})
			if called == rep.IsError() {
				t.Fatalf("%+v: reply %s, then called: %v", txn, render(rep), called)
			}
			if !called {
				return
			}
			if r := bk.ApplyEffects(now, fx); r.IsError() {
				t.Fatalf("ApplyEffects of %+v: %s", txn, render(r))
			}
		}
		if rapid.Bool().Draw(t, "index") {
			apply(Txn{Cmds: []Command{Cmd("IDX.CREATE", "ix", "ON", "HASH", "PREFIX", "", "FIELD", "f", "TYPE", "string")}})
		}
		for i, n := 0, rapid.IntRange(1, 40).Draw(t, "writes"); i < n; i++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 1500).Draw(t, "advance_ms")) * time.Millisecond)
			if rapid.IntRange(0, 4).Draw(t, "txn") == 0 {
				apply(genTxn(t))
			} else {
				apply(Txn{Cmds: []Command{fixCmd(genAnyCmd(t))}})
			}
			var a, b bytes.Buffer
			if err := pri.SaveSnapshot(&a); err != nil {
				t.Fatal(err)
			}
			if err := bk.SaveSnapshot(&b); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatalf("after write %d the engines differ (%d bytes, from effects %d bytes)", i, a.Len(), b.Len())
			}
			if pri.Stats() != bk.Stats() || pri.counter != bk.counter {
				t.Fatalf("after write %d: stats %+v counter %d, from effects %+v counter %d", i, pri.Stats(), pri.counter, bk.Stats(), bk.counter)
			}
			if pk, bkk := slices.Sorted(maps.Keys(pri.indexes)), slices.Sorted(maps.Keys(bk.indexes)); !slices.Equal(pk, bkk) {
				t.Fatalf("after write %d: indexes %v, from effects %v", i, pk, bkk)
			}
		}
	})
}

// TestApplyEffectsDirectMatchesOp: ApplyEffectsMeta's path without an op
// (applyEffectsDirect, for effects with no write in the metadata space)
// leaves the engine byte-identical to the op's path (applyEffectsOp), with
// the same stats and version counter, after every write of random commands
// and transactions of every type (TTLs, expiry, index entries; index
// definitions take the op's path on both).
//
//	go test -run TestApplyEffectsDirectMatchesOp -rapid.checks=1000 ./core
func TestApplyEffectsDirectMatchesOp(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pri, _ := NewStore(NewMemEngine(), Limits{MaxValueSize: 300})
		direct, _ := NewStore(NewMemEngine(), Limits{MaxValueSize: 300})
		viaOp, _ := NewStore(NewMemEngine(), Limits{MaxValueSize: 300})
		directs := 0
		eachPrimaryWrite(t, pri, []*Store{direct, viaOp}, func(i int, now time.Time, fx Effects) {
			applied := []byte{byte(i), 1, 2}
			var err error
			if directEffects(fx) {
				directs++
				err = direct.applyEffectsDirect(fx, "applied", applied, false)
			} else {
				err = direct.applyEffectsOp(now, fx, "applied", applied)
			}
			if err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			if err := viaOp.applyEffectsOp(now, fx, "applied", applied); err != nil {
				t.Fatalf("write %d through an op: %v", i, err)
			}
			var a, b bytes.Buffer
			if err := direct.SaveSnapshot(&a); err != nil {
				t.Fatal(err)
			}
			if err := viaOp.SaveSnapshot(&b); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatalf("after write %d the engines differ (direct %d bytes, op %d bytes)", i, a.Len(), b.Len())
			}
			if direct.Stats() != viaOp.Stats() || direct.counter != viaOp.counter {
				t.Fatalf("after write %d: stats %+v counter %d, through an op %+v counter %d", i, direct.Stats(), direct.counter, viaOp.Stats(), viaOp.counter)
			}
		})
		if v, err := direct.ReplicaMeta("applied"); err != nil || (directs > 0 && v == nil) {
			t.Fatalf("ReplicaMeta after %d direct applies: %v, %v", directs, v, err)
		}
	})
}

// TestApplyTxnThen: the commands then returns run in the write's
// transaction (replies appended); a failing one commits nothing; a failed
// transaction does not call then.
func TestApplyTxnThen(t *testing.T) {
	s := newTestStore(t)
	logCmd := func(*Effects) []Command { return []Command{Cmd("SET", "log", "1")} }
	rep := s.ApplyTxnThen(t0, Txn{Cmds: []Command{Cmd("SET", "a", "x"), Cmd("SADD", "s", "m")}}, logCmd)
	if got := render(rep); got != "[OK (integer) 1 OK]" {
		t.Fatalf("reply %s", got)
	}
	if got := render(s.Apply(t0, Cmd("GET", "log"))); got != `"1"` {
		t.Fatalf("log %s", got)
	}
	// A failing extra command: nothing of the write is committed.
	bad := func(*Effects) []Command { return []Command{Cmd("INCR", "a")} }
	rep = s.ApplyTxnThen(t0, Txn{Cmds: []Command{Cmd("SET", "b", "y")}}, bad)
	if !rep.IsError() || !strings.Contains(rep.Err.Msg, "command 1 (INCR)") {
		t.Fatalf("reply %s, want command 1 (INCR)'s error", render(rep))
	}
	if got := render(s.Apply(t0, Cmd("EXISTS", "b"))); got != "(integer) 0" {
		t.Fatalf("b after a failed extra command: %s", got)
	}
	// A failed transaction: then is not called.
	rep = s.ApplyTxnThen(t0, Txn{Cmds: []Command{Cmd("INCR", "a")}}, func(*Effects) []Command {
		t.Fatal("then called for a failed transaction")
		return nil
	})
	if !rep.IsError() {
		t.Fatalf("reply %s", render(rep))
	}
}

// TestApplyEffectsChecks: effects with a key outside the store's key
// spaces, or a bad index definition, are refused and change nothing; a
// failing command after the effects undoes them.
func TestApplyEffectsChecks(t *testing.T) {
	s := newTestStore(t)
	for _, fx := range []Effects{
		{Writes: []EffectWrite{{Key: []byte("zzz"), Value: []byte("v")}}},
		{Writes: []EffectWrite{{Key: []byte{}, Delete: true}}},
		{Writes: []EffectWrite{{Key: metaKey(metaIndexPfx + "ix"), Value: []byte{7}}}},
	} {
		if rep := s.ApplyEffects(t0, fx); !rep.IsError() {
			t.Fatalf("%+v: reply %s, want an error", fx, render(rep))
		}
	}
	src := newTestStore(t)
	var fx Effects
	src.ApplyTxnThen(t0, Txn{Cmds: []Command{Cmd("SET", "k", "v")}}, func(e *Effects) []Command { fx = cloneEffects(e); return nil })
	if rep := s.ApplyEffects(t0, fx, Cmd("SET", "n", "1"), Cmd("SADD", "n", "x")); !rep.IsError() {
		t.Fatalf("reply %s, want WRONGTYPE", render(rep))
	}
	var b bytes.Buffer
	if err := s.SaveSnapshot(&b); err != nil {
		t.Fatal(err)
	}
	empty := newTestStore(t)
	var e bytes.Buffer
	if err := empty.SaveSnapshot(&e); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), e.Bytes()) {
		t.Fatal("refused effects changed the store")
	}
	if rep := s.ApplyEffects(t0, fx, Cmd("SET", "n", "1")); render(rep) != "[OK]" {
		t.Fatalf("reply %s", render(rep))
	}
	if got := render(s.Apply(t0, Cmd("GET", "k"))); got != `"v"` {
		t.Fatalf("k = %s", got)
	}
}

// failCommitEngine fails every batch commit (an I/O error).
type failCommitEngine struct{ *MemEngine }

func (e failCommitEngine) NewBatch() Batch { return failCommitBatch{e.MemEngine.NewBatch()} }

type failCommitBatch struct{ Batch }

func (failCommitBatch) Commit(bool) error { return errors.New("injected I/O error") }

// TestApplyEffectsMeta: the replica's value commits with the effects, in
// one batch (a crash before the sync loses both, after it keeps both),
// ReplicaMeta reads it back; commands, Dump and the key count do not see
// it; refused effects and a failed commit write neither; a value that
// fails its checksum is reported as corruption, never returned.
//
//	go test -run TestApplyEffectsMeta ./core
func TestApplyEffectsMeta(t *testing.T) {
	src := newTestStore(t)
	fxOf := func(cmd Command) Effects {
		var fx Effects
		if rep := src.ApplyTxnThen(t0, Txn{Cmds: []Command{cmd}}, func(e *Effects) []Command { fx = cloneEffects(e); return nil }); rep.IsError() {
			t.Fatalf("%v: %s", cmd, render(rep))
		}
		return fx
	}
	eng := NewMemEngine()
	s, _ := NewStore(eng, Limits{})
	if v, err := s.ReplicaMeta("applied"); v != nil || err != nil {
		t.Fatalf("before any write: %q, %v; want nil, nil", v, err)
	}
	if err := s.ApplyEffectsMeta(t0, fxOf(Cmd("SET", "k", "v1")), "applied", []byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := eng.Sync(); err != nil {
		t.Fatal(err)
	}
	buf := []byte{2}
	if err := s.ApplyEffectsMeta(t0, fxOf(Cmd("SET", "k", "v2")), "applied", buf); err != nil {
		t.Fatal(err)
	}
	buf[0] = 9 // the store copied the value
	if v, err := s.ReplicaMeta("applied"); err != nil || !bytes.Equal(v, []byte{2}) {
		t.Fatalf("ReplicaMeta = %v, %v; want [2]", v, err)
	}
	if got := render(s.Apply(t0, Cmd("GET", "k"))); got != `"v2"` {
		t.Fatalf("k = %s", got)
	}
	if d, err := s.Dump(t0); err != nil || len(d) != 1 || s.Stats().Keys != 1 {
		t.Fatalf("Dump %v (%v), %d keys: want only k", d, err, s.Stats().Keys)
	}
	if got := render(s.Apply(t0, Cmd("SCAN.PREFIX", "", ""))); !strings.HasSuffix(got, `["k"]]`) {
		t.Fatalf("SCAN.PREFIX = %s, want only k", got)
	}

	// A crash keeps what was synced: the first write and its value.
	crashed, err := NewStore(eng.SyncedClone(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := crashed.ReplicaMeta("applied"); err != nil || !bytes.Equal(v, []byte{1}) {
		t.Fatalf("after a crash: ReplicaMeta = %v, %v; want [1]", v, err)
	}
	if got := render(crashed.Apply(t0, Cmd("GET", "k"))); got != `"v1"` {
		t.Fatalf("after a crash: k = %s, want v1", got)
	}

	// Refused effects and a failed commit change nothing.
	bad := Effects{Writes: []EffectWrite{{Key: []byte("zzz"), Value: []byte("v")}}}
	if err := s.ApplyEffectsMeta(t0, bad, "applied", []byte{3}); err == nil {
		t.Fatal("effects outside the key spaces were accepted")
	}
	fe := failCommitEngine{NewMemEngine()}
	fs, _ := NewStore(fe, Limits{})
	if err := fs.ApplyEffectsMeta(t0, fxOf(Cmd("SET", "k", "v3")), "applied", []byte{3}); err == nil || AsError(err).Code != CodeIO {
		t.Fatalf("failed commit: %v, want an IOERR", err)
	}
	for _, st := range []*Store{s, fs} {
		if v, _ := st.ReplicaMeta("applied"); bytes.Equal(v, []byte{3}) {
			t.Fatal("a refused or failed apply wrote the value")
		}
	}

	// A flipped byte anywhere in the stored value is corruption.
	key := append(append([]byte{pfxMeta}, metaReplicaPfx...), "applied"...)
	raw, err := eng.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		c := bytes.Clone(raw)
		c[i] ^= 0x5a
		b := eng.NewBatch()
		b.Set(key, c)
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		if v, err := s.ReplicaMeta("applied"); err == nil || AsError(err).Code != CodeCorruption || v != nil {
			t.Fatalf("byte %d flipped: %v, %v; want a CORRUPTION error", i, v, err)
		}
	}
}

// copyingEngine is a memory engine whose batches do not take ownership of
// what they are given (as Pebble's): every write goes through Batch.Set.
type copyingEngine struct{ *MemEngine }

func (e copyingEngine) NewBatch() Batch { return copyingBatch{e.MemEngine.NewBatch()} }

type copyingBatch struct{ Batch }

// TestApplyEffectsMetaOwned: ApplyEffectsMetaOwned leaves the engine
// byte-identical to ApplyEffectsMeta, with the same stats and counter,
// after every write of random commands and transactions (as
// TestApplyEffectsDirectMatchesOp), on the memory engine and on one whose
// batches copy; on the memory engine it stores the caller's slices
// themselves (no copy: the values' arrays are the caller's), while
// ApplyEffectsMeta stores copies: overwriting every byte the caller passed
// to ApplyEffectsMeta after the call changes nothing in its engine (a
// stored slice that its caller later modifies would be silent
// corruption). Fails if ApplyEffectsMeta kept the caller's slices, or if
// ApplyEffectsMetaOwned copied them.
//
//	go test -run TestApplyEffectsMetaOwned -rapid.checks=1000 ./core
func TestApplyEffectsMetaOwned(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pri, _ := NewStore(NewMemEngine(), Limits{MaxValueSize: 300})
		ownedEng := NewMemEngine()
		copied, _ := NewStore(NewMemEngine(), Limits{MaxValueSize: 300})
		owned, _ := NewStore(ownedEng, Limits{MaxValueSize: 300})
		viaCopy, _ := NewStore(copyingEngine{NewMemEngine()}, Limits{MaxValueSize: 300})
		stores := []*Store{copied, owned, viaCopy}
		eachPrimaryWrite(t, pri, stores, func(i int, now time.Time, fx Effects) {
			applied := []byte{byte(i), 1, 2}
			fxCopied, fxOwned, fxViaCopy := cloneEffects(&fx), cloneEffects(&fx), cloneEffects(&fx)
			if err := copied.ApplyEffectsMeta(now, fxCopied, "applied", applied); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			for _, w := range fxCopied.Writes { // the caller's bytes are its own again
				for _, b := range [][]byte{w.Key, w.Value} {
					for j := range b {
						b[j] = 0xee
					}
				}
			}
			if err := owned.ApplyEffectsMetaOwned(now, fxOwned, "applied", applied); err != nil {
				t.Fatalf("write %d owned: %v", i, err)
			}
			if err := viaCopy.ApplyEffectsMetaOwned(now, fxViaCopy, "applied", applied); err != nil {
				t.Fatalf("write %d owned, copying batch: %v", i, err)
			}
			if directEffects(fx) {
				for _, w := range fxOwned.Writes {
					if w.Delete || len(w.Value) == 0 {
						continue
					}
					it, ok := ownedEng.cur.mem.Get(newItem(w.Key, nil, false))
					if !ok || len(it.val) == 0 || &it.val[0] != &w.Value[0] {
						t.Fatalf("write %d: the engine holds a copy of %q's value, not the caller's slice", i, w.Key)
					}
				}
			}
			var want bytes.Buffer
			if err := copied.SaveSnapshot(&want); err != nil {
				t.Fatal(err)
			}
			for j, s := range stores[1:] {
				var got bytes.Buffer
				if err := s.SaveSnapshot(&got); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Fatalf("after write %d store %d's engine differs from ApplyEffectsMeta's (%d bytes, want %d)", i, j+1, got.Len(), want.Len())
				}
				if s.Stats() != copied.Stats() || s.counter != copied.counter {
					t.Fatalf("after write %d store %d: stats %+v counter %d, want %+v counter %d", i, j+1, s.Stats(), s.counter, copied.Stats(), copied.counter)
				}
			}
		})
	})
}

// eachPrimaryWrite drives pri as a primary for the effects tests: an index
// created on pri and every follower (drawn), then 1 to 40 writes, each a
// random command or transaction at a drawn later time, and calls f with
// each write that pri applied (its number, time and a clone of its
// effects), for the test to apply to the followers.
func eachPrimaryWrite(t *rapid.T, pri *Store, followers []*Store, f func(i int, now time.Time, fx Effects)) {
	now := t0
	if rapid.Bool().Draw(t, "index") {
		idx := Txn{Cmds: []Command{Cmd("IDX.CREATE", "ix", "ON", "HASH", "PREFIX", "", "FIELD", "f", "TYPE", "string")}}
		pri.ApplyTxn(now, idx)
		for _, s := range followers {
			s.ApplyTxn(now, idx)
		}
	}
	for i, n := 0, rapid.IntRange(1, 40).Draw(t, "writes"); i < n; i++ {
		now = now.Add(time.Duration(rapid.IntRange(0, 1500).Draw(t, "advance_ms")) * time.Millisecond)
		txn := Txn{Cmds: []Command{fixCmd(genAnyCmd(t))}}
		if rapid.IntRange(0, 4).Draw(t, "txn") == 0 {
			txn = genTxn(t)
		}
		var fx Effects
		if rep := pri.ApplyTxnThen(now, txn, func(e *Effects) []Command { fx = cloneEffects(e); return nil }); rep.IsError() {
			continue
		}
		f(i, now, fx)
	}
}
