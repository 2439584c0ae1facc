package pebbleengine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dialkv/dialkv/core"
)

func mustCommit(t *testing.T, e core.Engine, sync bool, kv ...string) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	for i := 0; i+1 < len(kv); i += 2 {
		b.Set([]byte(kv[i]), []byte(kv[i+1]))
	}
	if err := b.Commit(sync); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func dump(t *testing.T, r core.Reader) string {
	t.Helper()
	var b strings.Builder
	it := r.NewIter(nil, nil)
	for it.First(); it.Valid(); it.Next() {
		fmt.Fprintf(&b, "%s=%s ", it.Key(), it.Value())
	}
	if err := it.Close(); err != nil {
		t.Fatalf("iterate: %v", err)
	}
	return strings.TrimSpace(b.String())
}

// TestSyncPolicy pins down what each policy makes durable: after a crash
// that keeps none of the unsynced data, a batch survives exactly when the
// policy or the caller synced it.
func TestSyncPolicy(t *testing.T) {
	cases := []struct {
		policy     core.SyncPolicy
		commitSync bool
		thenSync   bool // call Engine.Sync after the commit
		survives   bool
	}{
		{core.SyncAlways, false, false, true},
		{core.SyncAlways, true, false, true},
		{core.SyncInterval, false, false, false},
		{core.SyncInterval, false, true, true},
		{core.SyncInterval, true, false, true},
		{core.SyncNever, false, false, false},
		{core.SyncNever, false, true, true},
		{core.SyncNever, true, false, true},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/commitSync=%v/thenSync=%v", c.policy, c.commitSync, c.thenSync), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			e, err := Open("db", Options{FS: fs, Sync: c.policy})
			if err != nil {
				t.Fatal(err)
			}
			mustCommit(t, e, c.commitSync, "k", "v")
			if c.thenSync {
				if err := e.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			crashed := fs.CrashClone(vfs.CrashCloneCfg{}) // synced data only
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			r, err := Open("db", Options{FS: crashed})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			_, err = r.Get([]byte("k"))
			if survived := err == nil; survived != c.survives {
				t.Fatalf("survived crash = %v (get: %v), want %v", survived, err, c.survives)
			}
		})
	}
}

func TestReopen(t *testing.T) {
	fs := vfs.NewMem()
	e, err := Open("data/db", Options{FS: fs, Sync: core.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, e, false, "a", "1", "b", "2")
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, e, false, "c", "3")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open("data/db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := dump(t, e); got != "a=1 b=2 c=3" {
		t.Fatalf("after reopen: %q", got)
	}
}

// TestCheckpoint: a checkpoint holds exactly the batches committed before
// it, is itself durable when Checkpoint returns, and opens as an engine.
func TestCheckpoint(t *testing.T) {
	fs := vfs.NewCrashableMem()
	e, err := Open("db", Options{FS: fs, Sync: core.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, e, false, "a", "1", "b", "2")
	if err := e.db.Flush(); err != nil { // some data in an sstable, some in the WAL
		t.Fatal(err)
	}
	mustCommit(t, e, false, "c", "3")
	if err := e.Checkpoint("backup/1"); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, e, false, "d", "4")
	if err := e.Checkpoint("backup/1"); err == nil {
		t.Fatal("checkpoint into an existing directory succeeded")
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for name, cfs := range map[string]vfs.FS{"live": fs, "after crash": crashed} {
		c, err := Open("backup/1", Options{FS: cfs})
		if err != nil {
			t.Fatalf("%s: open checkpoint: %v", name, err)
		}
		if got := dump(t, c); got != "a=1 b=2 c=3" {
			t.Errorf("%s: checkpoint holds %q, want a=1 b=2 c=3", name, got)
		}
		mustCommit(t, c, true, "e", "5") // a checkpoint is a working engine
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPebbleCorruption flips a byte of an sstable data block on disk:
// Pebble's block checksum catches it and the engine reports an error that
// core.AsError classifies as CodeCorruption, never the damaged data.
func TestPebbleCorruption(t *testing.T) {
	fs := vfs.NewMem()
	e, err := Open("db", Options{FS: fs, Sync: core.SyncNever, CacheSize: 1, ValueCacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	val := make([]byte, 1000) // incompressible, so block bytes are value bytes
	for i := range val {
		val[i] = byte(rng.Uint32())
	}
	for i := 0; i < 20; i++ {
		mustCommit(t, e, false, fmt.Sprintf("k%02d", i), string(val))
	}
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if flipSSTByte(t, fs, "db", 500) == 0 {
		t.Fatal("no sstable to corrupt")
	}
	e, err = Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	v, err := e.Get([]byte("k00"))
	if err == nil {
		t.Fatalf("read of a corrupted block returned data (%d bytes, equal to what was written: %v)", len(v), bytes.Equal(v, val))
	}
	if !errors.Is(err, core.ErrCorruption) || core.AsError(err).Code != core.CodeCorruption {
		t.Fatalf("get: %v (code %s), want a corruption error", err, core.AsError(err).Code)
	}
	it := e.NewIter(nil, nil)
	for it.First(); it.Valid(); it.Next() {
		t.Fatalf("iterator returned %q from a corrupted block", it.Key())
	}
	if err := it.Close(); !errors.Is(err, core.ErrCorruption) {
		t.Fatalf("iterator close: %v, want a corruption error", err)
	}
	if e.Corruptions() == 0 {
		t.Fatal("corruption not counted")
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("db", Options{FS: vfs.NewMem(), Sync: core.SyncPolicy(9)}); err == nil {
		t.Fatal("unknown sync policy accepted")
	}
	fs := vfs.NewMem()
	e, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	_, err = Open("db", Options{FS: fs}) // the directory is locked
	if err == nil || !strings.Contains(err.Error(), "pebbleengine: open db") {
		t.Fatalf("second open of a locked directory: %v", err)
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	e, err := Open("db", Options{FS: vfs.NewMem(), Logger: l})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, e, false, "a", "1")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Fatalf must reach the logger and panic: Pebble never expects it to
	// return.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Fatalf returned")
			}
		}()
		slogLogger{l: l}.Fatalf("boom %d", 7)
	}()
	if !strings.Contains(buf.String(), "boom 7") || !strings.Contains(buf.String(), "component=pebble") {
		t.Fatalf("log output %q lacks the fatal line", buf.String())
	}
}

// TestL0CompactionRewrites: a small key set overwritten in batches (a
// namespace's hot keys) flushes memtables whose keys span the whole key
// space, each one more L0 sublevel. Level 0 is compacted into the base
// level (all of which each such compaction rewrites) only at
// l0CompactionThreshold sublevels, so there are fewer than one compaction
// per three flushes; at Pebble's default threshold (4) there was about one
// per two.
func TestL0CompactionRewrites(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~50 MB of memtables")
	}
	e, err := Open("db", Options{FS: vfs.NewMem(), Sync: core.SyncNever, ValueCacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const keys, batch = 20000, 100
	rng := rand.New(rand.NewPCG(1, 2))
	val := make([]byte, 104)
	for e.db.Metrics().Flush.Count < 12 {
		b := e.NewBatch()
		for range batch {
			for i := 0; i < len(val); i += 8 {
				binary.LittleEndian.PutUint64(val[i:], rng.Uint64())
			}
			b.Set(fmt.Appendf(nil, "key:%012d", rng.IntN(keys)), val)
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	m := e.db.Metrics()
	t.Logf("%d flushes wrote %d bytes; %d compactions wrote %d bytes", m.Flush.Count, m.Levels[0].TableBytesFlushed, m.Compact.Count, m.Total().TableBytesCompacted)
	if m.Compact.Count*3 > m.Flush.Count {
		t.Errorf("%d compactions for %d flushes, want at most one per three", m.Compact.Count, m.Flush.Count)
	}
}
