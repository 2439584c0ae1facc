package pebbleengine

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dialkv/dialkv/core"
)

// TestWALPrefillFile checks prefillFile on its own: what a sequence of
// writes leaves in the file (the records, then zeros up to the next chunk
// boundary past the last write) and that the file offset is where the
// records end, for a new file and for a reused one already longer than its
// writes.
func TestWALPrefillFile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		chunk    int64
		old      int   // bytes of an old file reused (0: a new file)
		writes   []int // lengths of the successive writes
		wantSize int64
	}{
		{name: "new, one small write", chunk: 4096, writes: []int{100}, wantSize: 4096},
		{name: "new, a write ending on a boundary", chunk: 4096, writes: []int{4096}, wantSize: 8192},
		{name: "new, writes across chunks", chunk: 1000, writes: []int{700, 700, 700}, wantSize: 3000},
		{name: "new, one write of several chunks", chunk: 1000, writes: []int{3500}, wantSize: 4000},
		{name: "reused, within the old size", chunk: 4096, old: 10000, writes: []int{5000, 4000}, wantSize: 10000},
		{name: "reused, past the old size", chunk: 4096, old: 5000, writes: []int{4000, 4000}, wantSize: 8192},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			fs := prefillFS{FS: mem, chunk: tc.chunk}
			var f vfs.File
			var err error
			if tc.old > 0 {
				o, err := mem.Create("000001.log", vfs.WriteCategoryUnspecified)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := o.Write(bytes.Repeat([]byte{0xee}, tc.old)); err != nil {
					t.Fatal(err)
				}
				o.Close()
				f, err = fs.ReuseForWrite("000001.log", "000002.log", vfs.WriteCategoryUnspecified)
			} else {
				f, err = fs.Create("000002.log", vfs.WriteCategoryUnspecified)
			}
			if err != nil {
				t.Fatal(err)
			}
			var want []byte
			for i, n := range tc.writes {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				if _, err := f.Write(p); err != nil {
					t.Fatal(err)
				}
				want = append(want, p...)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, mem, "000002.log")
			if int64(len(got)) != tc.wantSize {
				t.Fatalf("file size %d, want %d", len(got), tc.wantSize)
			}
			if !bytes.Equal(got[:len(want)], want) {
				t.Fatalf("the writes are not at the start of the file")
			}
			tail := got[len(want):]
			if tc.old > len(want) {
				// A reused file keeps its old bytes past the writes, as
				// Pebble's recycled WALs do.
				tail = got[tc.old:]
			}
			if bytes.ContainsFunc(tail, func(r rune) bool { return r != 0 }) {
				t.Fatalf("the tail past the writes is not zeros")
			}
		})
	}
	// Files that are not WALs are not wrapped.
	f, err := prefillFS{FS: vfs.NewMem(), chunk: 4096}.Create("MANIFEST-000001", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.(*prefillFile); ok {
		t.Fatal("a MANIFEST was wrapped")
	}
}

func readAll(t *testing.T, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		t.Fatal(err)
	}
	return b
}

// TestWALPrefill opens an engine on the OS file system with WALPrefill and
// checks that its WAL is written ahead (the file is a whole number of
// chunks, past its records), and that the data reads back after a reopen:
// Pebble reads the zeros after the last record as the WAL's end. Without
// the option wired into Open the WAL is only as long as its records.
func TestWALPrefill(t *testing.T) {
	const chunk = 256 << 10
	dir := t.TempDir()
	e, err := Open(dir, Options{Sync: core.SyncNever, WALPrefill: chunk})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		b := e.NewBatch()
		b.Set([]byte(fmt.Sprintf("k%03d", i)), bytes.Repeat([]byte{'v'}, 100))
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if err := e.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no WAL in %s: %v", dir, err)
	}
	for _, n := range names {
		st, err := os.Stat(n)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == 0 || st.Size()%chunk != 0 {
			t.Errorf("%s: %d bytes, want a whole number of %d-byte chunks", filepath.Base(n), st.Size(), chunk)
		}
	}
	// Reopen over the copy a crash would leave (the files as they are
	// now, the engine still open) and read everything back.
	crash := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if ent.IsDir() || strings.HasSuffix(ent.Name(), "LOCK") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crash, ent.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{crash, dir} {
		r, err := Open(d, Options{Sync: core.SyncNever, WALPrefill: chunk})
		if err != nil {
			t.Fatalf("reopen %s: %v", d, err)
		}
		for i := 0; i < 100; i++ {
			if v, err := r.Get([]byte(fmt.Sprintf("k%03d", i))); err != nil || len(v) != 100 {
				t.Fatalf("%s: k%03d after reopen: %d bytes, %v", d, i, len(v), err)
			}
		}
		r.Close()
	}
}

// TestCrashWALPrefill is TestCrash's seeded crash check with the WAL
// written ahead in small chunks (many fills, crash clones keeping any share
// of the unsynced zeros and records): what was durable survives and
// recovery reads the zeros as the WAL's end.
func TestCrashWALPrefill(t *testing.T) {
	seeds := 20
	if testing.Short() {
		seeds = 5
	}
	for _, policy := range []core.SyncPolicy{core.SyncAlways, core.SyncNever} {
		for _, chunk := range []int64{1000, 64 << 10} {
			t.Run(fmt.Sprintf("%s/%d", policy, chunk), func(t *testing.T) {
				for seed := uint64(1); seed <= uint64(seeds); seed++ {
					if err := crashRun(seed, policy, false, chunk); err != nil {
						t.Errorf("seed %d: %v", seed, err)
					}
				}
			})
		}
	}
}
