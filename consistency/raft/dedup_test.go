package raft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/core/pebbleengine"
)

// TestDedupAdmit: each (proposer, seq) is applied once, in any order, and
// every copy gets the first one's kept reply; a number at or below the
// floor (the highest evicted) is refused; a reply too large to keep makes
// copies DUPLICATE; proposer 0 is never deduplicated; the least recently
// applied proposer is forgotten first; the state round-trips through an
// engine.
func TestDedupAdmit(t *testing.T) {
	d := newDedup()
	big := core.Reply{Kind: core.KindBulk, Str: bytes.Repeat([]byte("x"), maxKeptReply)}
	for i, tt := range []struct {
		proposer, seq uint64
		want          string // "applied", or the reply a copy gets
	}{
		{7, 10, "applied"},
		{7, 10, "r7/10"},
		{7, 9, "applied"}, // out of order
		{7, 9, "r7/9"},
		{7, 500, "applied"},
		{7, 10, "r7/10"},
		{8, 10, "applied"}, // another proposer
		{8, 10, "r8/10"},
		{8, 11, "applied"}, // its reply is too large to keep
		{8, 11, "ERR:DUPLICATE"},
		{0, 1, "applied"},
		{0, 1, "applied"},
	} {
		r := d.admit(tt.proposer, tt.seq, uint64(i+1))
		got := "applied"
		if r != nil {
			got = str(*r)
		} else if tt.proposer == 8 && tt.seq == 11 {
			d.keep(tt.proposer, tt.seq, big)
		} else {
			d.keep(tt.proposer, tt.seq, core.Reply{Kind: core.KindStatus, Str: fmt.Appendf(nil, "r%d/%d", tt.proposer, tt.seq)})
		}
		if got != tt.want {
			t.Fatalf("step %d: admit(%d, %d) = %q, want %q", i, tt.proposer, tt.seq, got, tt.want)
		}
	}
	// Eviction by number: keptReplies more from proposer 7 push out 9, 10
	// and 500 (the lowest); the floor rises to 500, so 11..500 are refused,
	// 501 is new.
	for seq := uint64(1000); seq < 1000+keptReplies; seq++ {
		if r := d.admit(7, seq, 100+seq); r != nil {
			t.Fatalf("admit(7, %d) = %s, want applied", seq, str(*r))
		}
		d.keep(7, seq, core.OK())
	}
	for _, tt := range []struct {
		seq  uint64
		want string
	}{{9, "ERR:NOTAPPLIED"}, {10, "ERR:NOTAPPLIED"}, {499, "ERR:NOTAPPLIED"}, {500, "ERR:NOTAPPLIED"}, {1000, "OK"}, {501, "applied"}} {
		got := "applied"
		if r := d.admit(7, tt.seq, 9000); r != nil {
			got = str(*r)
		}
		if got != tt.want {
			t.Fatalf("after eviction: admit(7, %d) = %q, want %q", tt.seq, got, tt.want)
		}
	}
	// 501 was applied, then evicted at once as the lowest number kept.
	if ps := d.p[7]; ps.floor != 501 || len(ps.seqs) != keptReplies {
		t.Fatalf("proposer 7: floor %d, %d kept; want 501, %d", ps.floor, len(ps.seqs), keptReplies)
	}
	if r := d.admit(7, 501, 9000); r == nil || str(*r) != "ERR:NOTAPPLIED" {
		t.Fatalf("admit(7, 501) again = %v, want NOTAPPLIED", r)
	}

	// The state round-trips through an engine, flushed in two steps.
	e := core.NewMemEngine()
	flush := func() { flushDedup(t, e, d) }
	flush()
	d.admit(8, 12, 9001)
	d.keep(8, 12, core.Reply{Kind: core.KindInt, Int: 12})
	flush()
	if d.pending() {
		t.Fatal("pending after flush")
	}
	d2, err := loadDedup(e)
	if err != nil {
		t.Fatal(err)
	}
	equalDedup(t, d2, d)
	for seq, want := range map[uint64]string{12: "12", 11: "ERR:DUPLICATE", 10: "r8/10"} {
		if r := d2.admit(8, seq, 9002); r == nil || str(*r) != want {
			t.Fatalf("reloaded: admit(8, %d) = %v, want %s", seq, r, want)
		}
	}

	// Proposers beyond maxProposers: the least recently applied (7, last
	// applied at index 9000; 8 at 9001) is forgotten, and its keys
	// deleted at the next flush.
	for p := uint64(100); p < 100+maxProposers-1; p++ {
		d.admit(p, 1, 10000+p)
		d.keep(p, 1, core.OK())
	}
	if len(d.p) != maxProposers || d.p[7] != nil || d.p[8] == nil {
		t.Fatalf("%d proposers remembered (7: %v), want %d without 7", len(d.p), d.p[7] != nil, maxProposers)
	}
	flush()
	lo, hi := replyRange(7)
	it := e.NewIter(lo, hi)
	if it.First() {
		t.Fatalf("reply key %q of a forgotten proposer left behind", it.Key())
	}
	it.Close()
	d3, err := loadDedup(e)
	if err != nil {
		t.Fatal(err)
	}
	equalDedup(t, d3, d)
}

func equalDedup(t *testing.T, got, want *dedup) {
	t.Helper()
	if len(got.p) != len(want.p) {
		t.Fatalf("reloaded %d proposers, want %d", len(got.p), len(want.p))
	}
	for id, w := range want.p {
		g := got.p[id]
		if g == nil || g.floor != w.floor || g.last != w.last || !slices.Equal(g.seqs, w.seqs) ||
			!maps.EqualFunc(g.replies, w.replies, bytes.Equal) {
			t.Fatalf("proposer %x reloaded differently", id)
		}
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
		check(t, r2.Data, "1") // the kept reply of the first copy
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
		check(t, out[1].Result.Data, "1")
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
		check(t, out[0].Result.Data, "1")
		check(t, out[1].Result.Data, "2")
		if got := dump(t, m2)["n"]; got == "" {
			t.Fatalf("n missing from the dump")
		}
	})
}

// TestSnapshotReplacesDedupState: restoring a snapshot replaces the
// deduplication state, kept replies included, in both state machines (the
// Store clears only its own key space): a proposal the snapshot has not
// seen is applied, and no reply key of the old state survives.
func TestSnapshotReplacesDedupState(t *testing.T) {
	incr := core.Cmd("INCR", "n")
	prop := encodeProposal(proposal{now: 1, proposer: 42, seq: 1, cmd: &incr})
	empty, _ := newMemSM(core.Limits{})
	var snap bytes.Buffer
	if err := empty.SaveSnapshot(&snap, nil, nil); err != nil {
		t.Fatal(err)
	}
	noReplies := func(t *testing.T, r core.Reader) {
		t.Helper()
		it := r.NewIter(dedupListKey, dedupEnd)
		defer it.Close()
		if it.First() {
			t.Fatalf("deduplication key %q survived the restore", it.Key())
		}
	}
	t.Run("memory", func(t *testing.T) {
		m, _ := newMemSM(core.Limits{})
		if r, _ := m.Update(sm.Entry{Index: 1, Cmd: prop}); string(r.Data) == "" {
			t.Fatal("no result")
		}
		if err := m.RecoverFromSnapshot(bytes.NewReader(snap.Bytes()), nil, nil); err != nil {
			t.Fatal(err)
		}
		noReplies(t, m.engine)
		r, _ := m.Update(sm.Entry{Index: 2, Cmd: prop})
		if got, _ := core.DecodeReply(r.Data); str(got) != "1" {
			t.Fatalf("after restore: %s, want 1 (applied)", str(got))
		}
	})
	t.Run("pebble", func(t *testing.T) {
		m, _ := openDisk(t, pebblevfs.NewMem())
		defer m.Close()
		if _, err := m.Update([]sm.Entry{{Index: 1, Cmd: prop}}); err != nil {
			t.Fatal(err)
		}
		// A Pebble snapshot of an empty state machine.
		e, _ := openDisk(t, pebblevfs.NewMem())
		ctx, _ := e.PrepareSnapshot()
		var ps bytes.Buffer
		if err := e.SaveSnapshot(ctx, &ps, nil); err != nil {
			t.Fatal(err)
		}
		e.Close()
		if err := m.RecoverFromSnapshot(&ps, nil); err != nil {
			t.Fatal(err)
		}
		noReplies(t, m.eng)
		out, err := m.Update([]sm.Entry{{Index: 2, Cmd: prop}})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := core.DecodeReply(out[0].Result.Data); str(got) != "1" {
			t.Fatalf("after restore: %s, want 1 (applied)", str(got))
		}
	})
}

// TestDedupChunksPersist: the kept replies, written in chunks, give every
// copy of a proposal the reply a replica that never stopped gives (the
// in-memory state machine, entry by entry), across restarts between a
// write and its retry, a crash that loses unsynced Updates (replayed),
// and a snapshot installed on another replica; an iterating command
// (SCAN.PREFIX) commits an Update's batch midway. Chunks whose numbers
// are all evicted are deleted.
func TestDedupChunksPersist(t *testing.T) {
	const n = 2*keptReplies + 300
	incr := core.Cmd("INCR", "n")
	scan := core.Cmd("SCAN.PREFIX", "", "")
	var ents []sm.Entry
	seq := uint64(0)
	for i := 1; i <= n; i++ {
		p := proposal{now: int64(i), proposer: 42, cmd: &incr}
		switch {
		case i%97 == 0:
			p.seq = 1 // evicted once keptReplies more are applied: NOTAPPLIED
		case i%13 == 0:
			p.seq = seq - 4 // a copy of a recent one: its kept reply
		case i%50 == 0:
			seq++
			p.seq, p.cmd = seq, &scan
		default:
			seq++
			p.seq = seq
		}
		ents = append(ents, sm.Entry{Index: uint64(i), Cmd: encodeProposal(p)})
	}
	ref, err := newMemSM(core.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]string, n+1)
	for _, e := range ents {
		r, err := ref.Update(e)
		if err != nil {
			t.Fatal(err)
		}
		want[e.Index] = string(r.Data)
	}

	fs := pebblevfs.NewCrashableMem()
	m, _ := openDisk(t, fs)
	apply := func(from, to int) { // entries with index from..to, 7 per Update
		t.Helper()
		for i := from; i <= to; i += 7 {
			batch := slices.Clone(ents[i-1 : min(i+6, to)])
			out, err := m.Update(batch)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range out {
				if got := string(e.Result.Data); got != want[e.Index] {
					t.Fatalf("entry %d: reply %q, want %q", e.Index, got, want[e.Index])
				}
			}
		}
	}
	reopen := func(f pebblevfs.FS) uint64 {
		t.Helper()
		var idx uint64
		m, idx = openDisk(t, f)
		return idx
	}
	next := 1
	for _, step := range []struct {
		to   int
		then string
	}{
		{500, "restart"}, {1300, "crash"}, {2600, "snapshot"}, {3200, "restart"}, {3900, "crash"}, {n, ""},
	} {
		apply(next, step.to)
		next = step.to + 1
		switch step.then {
		case "restart":
			if err := m.Sync(); err != nil {
				t.Fatal(err)
			}
			m.Close()
			if idx := reopen(fs); idx != uint64(step.to) {
				t.Fatalf("reopened at %d, want %d", idx, step.to)
			}
		case "crash": // the last 100 entries are not synced
			if err := m.Sync(); err != nil {
				t.Fatal(err)
			}
			apply(next, step.to+100)
			crashed := fs.CrashClone(pebblevfs.CrashCloneCfg{})
			m.Close()
			fs = crashed
			idx := reopen(fs)
			if idx < uint64(step.to) || idx > uint64(step.to+100) {
				t.Fatalf("after the crash at %d, want %d..%d", idx, step.to, step.to+100)
			}
			next = int(idx) + 1
		case "snapshot":
			ctx, err := m.PrepareSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := m.SaveSnapshot(ctx, &buf, nil); err != nil {
				t.Fatal(err)
			}
			m.Close()
			fs = pebblevfs.NewCrashableMem()
			reopen(fs)
			if _, err := m.Update(testEntries(3)); err != nil { // state the snapshot replaces
				t.Fatal(err)
			}
			if err := m.RecoverFromSnapshot(&buf, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer m.Close()
	if got, w := dump(t, m), mustDump(t, ref); !maps.Equal(got, w) {
		t.Fatalf("state %v, want %v", got, w)
	}
	chunks := 0
	lo, hi := replyRange(42)
	it := m.eng.NewIter(lo, hi)
	for it.First(); it.Valid(); it.Next() {
		if k := it.Key(); len(k) != len(lo)+9 || k[len(lo)] != 'c' {
			t.Errorf("key %q is not a chunk", k)
		}
		chunks++
	}
	it.Close()
	if limit := keptReplies / 5; chunks == 0 || chunks > limit {
		t.Errorf("%d reply chunks on disk, want 1..%d (chunks whose numbers were all evicted are deleted)", chunks, limit)
	}
}

// flushDedup writes d's state (flush, then the sealed chunks) to e in one
// committed batch, as a state machine commit does.
func flushDedup(t *testing.T, e core.Engine, d *dedup) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	d.flush(b)
	d.writeChunks(b)
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
}

func mustDump(t *testing.T, m *memSM) map[string]string {
	t.Helper()
	v, err := m.Lookup(dumpQuery{now: time.Unix(2000, 0).UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]string)
}

// TestDedupLoadsEarlierFormat: kept replies of the earlier format (a key
// each, a 16-byte record) load; evicting them deletes their keys, and
// the state written since loads the same.
func TestDedupLoadsEarlierFormat(t *testing.T) {
	e := core.NewMemEngine()
	b := e.NewBatch()
	b.Set(dedupListKey, encodeIDs([]uint64{42}))
	rec := binary.BigEndian.AppendUint64(nil, 0)
	b.Set(dedupKey(42), binary.BigEndian.AppendUint64(rec, 3))
	for s := uint64(1); s <= 3; s++ {
		b.Set(replyKey(42, s), core.EncodeReply(core.Reply{Kind: core.KindInt, Int: int64(s)}))
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	d, err := loadDedup(e)
	if err != nil {
		t.Fatal(err)
	}
	if r := d.admit(42, 2, 4); r == nil || str(*r) != "2" {
		t.Fatalf("admit(42, 2) = %v, want the kept reply 2", r)
	}
	flush := func() { flushDedup(t, e, d) }
	for s := uint64(4); s < 4+keptReplies; s++ { // evicts 1..3
		if r := d.admit(42, s, s+1); r != nil {
			t.Fatalf("admit(42, %d) = %s, want applied", s, str(*r))
		}
		d.keep(42, s, core.OK())
		if s%100 == 0 {
			flush()
		}
	}
	flush()
	for s := uint64(1); s <= 3; s++ {
		if _, err := e.Get(replyKey(42, s)); !isNotFound(err) {
			t.Errorf("earlier-format key of %d after its eviction: %v", s, err)
		}
	}
	d2, err := loadDedup(e)
	if err != nil {
		t.Fatal(err)
	}
	equalDedup(t, d2, d)
}

// TestDedupNewerFormatRefused: a proposer record of a format newer than
// this build's fails to load with ErrNewerFormat, not ErrCorruption, and
// the start-up check (quarantine) then refuses to start the replica and
// leaves its state machine in place, with no rebuild recorded; a record
// of an unknown older shape is still corruption.
func TestDedupNewerFormatRefused(t *testing.T) {
	record := func(format byte, extra int) []byte {
		v := binary.BigEndian.AppendUint64(nil, 5)
		v = binary.BigEndian.AppendUint64(v, 9)
		return append(append(v, format), make([]byte, extra)...)
	}
	for _, tc := range []struct {
		name     string
		rec      []byte
		newer    bool // else corruption
		shardDir bool // also run the start-up check on a Pebble state machine
	}{
		{"format 3, 17 bytes", record(recordFormat+1, 0), true, true},
		{"format 9, 25 bytes", record(9, 8), true, false},
		{"format 1, 17 bytes", record(1, 0), false, false},
		{"format 2, 18 bytes", record(recordFormat, 1), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write := func(e core.Engine) {
				b := e.NewBatch()
				defer b.Close()
				b.Set(dedupListKey, encodeIDs([]uint64{42}))
				b.Set(dedupKey(42), tc.rec)
				if err := b.Commit(false); err != nil {
					t.Fatal(err)
				}
			}
			e := core.NewMemEngine()
			write(e)
			_, err := loadDedup(e)
			if newer, corrupt := errors.Is(err, ErrNewerFormat), errors.Is(err, core.ErrCorruption); newer != tc.newer || corrupt == tc.newer {
				t.Fatalf("loadDedup: %v; want ErrNewerFormat %v, ErrCorruption %v", err, tc.newer, !tc.newer)
			}
			if !tc.shardDir {
				return
			}
			fs := pebblevfs.NewMem()
			s := &Service{cfg: Config{Storage: "pebble", Dir: t.TempDir(), PebbleFS: fs}, corrupt: map[int]CorruptReplica{}}
			dir := s.smDir(0)
			m := newDiskSM(dir, pebbleengine.Options{FS: fs}, core.Limits{})
			if _, err := m.Open(nil); err != nil {
				t.Fatal(err)
			}
			write(m.eng)
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			q, err := s.quarantine(0, 1)
			if q || !errors.Is(err, ErrNewerFormat) {
				t.Fatalf("quarantine: %v, %v; want false and an error wrapping ErrNewerFormat", q, err)
			}
			if _, serr := fs.Stat(dir); serr != nil || len(s.corrupt) != 0 {
				t.Fatalf("state machine after the check: %v, quarantined %v; want it in place and nothing quarantined", serr, s.corrupt)
			}
			if _, rerr := s.readFile(s.rebuildFile(0)); rerr == nil {
				t.Fatal("a rebuild was recorded for a state machine of a newer build")
			}
		})
	}
}
