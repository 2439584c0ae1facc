package raft

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/core/pebbleengine"
)

func entry(i uint64, c core.Command) sm.Entry {
	return sm.Entry{Index: i, Cmd: encodeProposal(proposal{now: time.Unix(1000, 0).UnixNano() + int64(i), cmd: &c})}
}

// entries 1..n: a counter increment (not idempotent), a SET, and a CAS that
// fails (writes nothing) on every third.
func testEntries(n int) []sm.Entry {
	var out []sm.Entry
	for i := 1; i <= n; i++ {
		c := core.Cmd("INCR", "ctr")
		switch i % 3 {
		case 1:
			c = core.Cmd("SET", fmt.Sprintf("k%d", i%4), fmt.Sprint(i))
		case 2:
			c = core.Cmd("CAS", "k1", "999", "x") // version 999 never matches
		}
		out = append(out, entry(uint64(i), c))
	}
	return out
}

func openDisk(t *testing.T, fs pebblevfs.FS) (*diskSM, uint64) {
	t.Helper()
	m := newDiskSM("sm", pebbleengine.Options{FS: fs}, core.Limits{})
	idx, err := m.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, idx
}

func dump(t *testing.T, m *diskSM) map[string]string {
	t.Helper()
	v, err := m.Lookup(dumpQuery{now: time.Unix(2000, 0).UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]string)
}

// A crash loses the unsynced tail; reopening reports the last applied
// entry it holds, and replaying the rest gives exactly the state of a
// replica that never crashed (no entry applied twice, none lost).
func TestDiskSMCrashReplay(t *testing.T) {
	ents := testEntries(30)
	fs := pebblevfs.NewCrashableMem()
	m, idx := openDisk(t, fs)
	if idx != 0 {
		t.Fatalf("fresh state machine at index %d", idx)
	}
	if _, err := m.Update(ents[:20]); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Update(ents[20:]); err != nil { // not synced
		t.Fatal(err)
	}
	want := dump(t, m)
	crashed := fs.CrashClone(pebblevfs.CrashCloneCfg{})
	m.Close()

	m2, idx := openDisk(t, crashed)
	defer m2.Close()
	if idx < 20 || idx > 30 {
		t.Fatalf("after the crash the state machine is at %d, want 20..30 (synced at 20)", idx)
	}
	if _, err := m2.Update(ents[idx:]); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, m2); !reflect.DeepEqual(got, want) {
		t.Errorf("replayed from %d: %v, want %v", idx, got, want)
	}
}

// A snapshot taken at PrepareSnapshot time ignores later updates, and a
// restored replica reports the snapshot's index.
func TestDiskSMSnapshot(t *testing.T) {
	ents := testEntries(12)
	m, _ := openDisk(t, pebblevfs.NewMem())
	defer m.Close()
	if _, err := m.Update(ents[:8]); err != nil {
		t.Fatal(err)
	}
	want := dump(t, m)
	ctx, err := m.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Update(ents[8:]); err != nil { // after the snapshot point
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := m.SaveSnapshot(ctx, &buf, nil); err != nil {
		t.Fatal(err)
	}
	fs := pebblevfs.NewMem()
	m3, _ := openDisk(t, fs)
	if _, err := m3.Update(testEntries(2)); err != nil { // some state to replace
		t.Fatal(err)
	}
	if err := m3.RecoverFromSnapshot(&buf, nil); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, m3); !reflect.DeepEqual(got, want) {
		t.Errorf("restored %v, want %v", got, want)
	}
	m3.Close()
	m4, idx := openDisk(t, fs)
	defer m4.Close()
	if idx != 8 {
		t.Errorf("restored replica reopens at %d, want 8", idx)
	}
}

// BenchmarkDiskSMUpdate applies SET proposals of one proposer (100-byte
// values) to the on-disk state machine on an in-memory FS, 8 entries per
// Update as Dragonboat batches them: the state machine's per-write cost,
// deduplication included.
func BenchmarkDiskSMUpdate(b *testing.B) {
	m := newDiskSM("sm", pebbleengine.Options{FS: pebblevfs.NewMem()}, core.Limits{})
	if _, err := m.Open(nil); err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	val := strings.Repeat("v", 100)
	ents := make([]sm.Entry, 8)
	b.ReportAllocs()
	for i := 0; i < b.N; i += len(ents) {
		for j := range ents {
			n := uint64(i + j + 1)
			cmd := core.Cmd("SET", fmt.Sprintf("key%08d", n%100000), val)
			ents[j] = sm.Entry{Index: n, Cmd: encodeProposal(proposal{now: int64(n), proposer: 42, seq: n, cmd: &cmd})}
		}
		if _, err := m.Update(ents); err != nil {
			b.Fatal(err)
		}
	}
}
