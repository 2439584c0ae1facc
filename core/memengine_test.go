package core

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sort"
	"testing"

	"pgregory.net/rapid"
)

// engineModel is a map model of an Engine's contents.
type engineModel map[string]string

func (m engineModel) clone() engineModel {
	c := engineModel{}
	for k, v := range m {
		c[k] = v
	}
	return c
}

// checkEngine compares every read path of r against the model.
func checkEngine(t *rapid.T, what string, r Reader, m engineModel, keys []string) {
	for _, k := range keys {
		v, err := r.Get([]byte(k))
		want, ok := m[k]
		switch {
		case ok && (err != nil || string(v) != want):
			t.Fatalf("%s: Get(%q) = %q, %v; want %q", what, k, v, err, want)
		case !ok && !errors.Is(err, ErrNotFound):
			t.Fatalf("%s: Get(%q) = %q, %v; want not found", what, k, v, err)
		}
	}
	lo := rapid.SampledFrom(append([]string{""}, keys...)).Draw(t, "lower")
	hi := rapid.SampledFrom(append([]string{""}, keys...)).Draw(t, "upper")
	var lower, upper []byte
	if lo != "" {
		lower = []byte(lo)
	}
	if hi != "" {
		upper = []byte(hi)
	}
	var want []string
	for k := range m {
		if (lower == nil || k >= lo) && (upper == nil || k < hi) {
			want = append(want, k)
		}
	}
	sort.Strings(want)
	it := r.NewIter(lower, upper)
	var got []string
	for it.First(); it.Valid(); it.Next() {
		if string(it.Value()) != m[string(it.Key())] {
			t.Fatalf("%s: iterator value of %q is %q, want %q", what, it.Key(), it.Value(), m[string(it.Key())])
		}
		got = append(got, string(it.Key()))
	}
	if len(got) != len(want) || (len(got) > 0 && !equalStrings(got, want)) {
		t.Fatalf("%s: iterate [%q, %q) = %q, want %q", what, lo, hi, got, want)
	}
	seek := rapid.SampledFrom(keys).Draw(t, "seek")
	it.SeekGE([]byte(seek))
	var first string
	found := false
	for _, k := range want {
		if k >= seek {
			first, found = k, true
			break
		}
	}
	if found != it.Valid() || (found && string(it.Key()) != first) {
		t.Fatalf("%s: SeekGE(%q) valid=%v, want %q", what, seek, it.Valid(), first)
	}
	it.Close()
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestMemEngineModel: random batches, deletes, range deletes, compactions,
// syncs and snapshots against a map model.
func TestMemEngineModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		keys := []string{"", "a", "ab", "abc", "b", "ba", "c", "d\x00", "d", "\xff", "k1", "k2", "k10"}
		genK := rapid.SampledFrom(keys)
		e := NewMemEngine()
		if rapid.Bool().Draw(t, "small-undo") {
			e.undoMax = rapid.IntRange(1, 6).Draw(t, "undo-max") // materialise the synced state often
		}
		m, synced := engineModel{}, engineModel{}
		type snap struct {
			s Snapshot
			m engineModel
		}
		var snaps []snap
		for i, n := 0, rapid.IntRange(1, 50).Draw(t, "steps"); i < n; i++ {
			switch rapid.IntRange(0, 10).Draw(t, "op") {
			case 0, 1, 2, 3:
				b := e.NewBatch()
				next := m.clone()
				for j, nops := 0, rapid.IntRange(1, 4).Draw(t, "nops"); j < nops; j++ {
					k := genK.Draw(t, "key")
					switch rapid.IntRange(0, 5).Draw(t, "kind") {
					case 0:
						b.Delete([]byte(k))
						delete(next, k)
					case 1:
						k2 := genK.Draw(t, "end")
						b.DeleteRange([]byte(k), []byte(k2))
						for x := range next {
							if x >= k && x < k2 {
								delete(next, x)
							}
						}
					default:
						v := rapid.SampledFrom([]string{"", "v", "value", "other"}).Draw(t, "val")
						b.Set([]byte(k), []byte(v))
						next[k] = v
					}
				}
				sync := rapid.IntRange(0, 3).Draw(t, "sync") == 0
				if err := b.Commit(sync); err != nil {
					t.Fatal(err)
				}
				m = next
				if sync {
					synced = m.clone()
				}
			case 4:
				if rapid.Bool().Draw(t, "full") {
					e.Compact()
				} else { // B-tree into L0 only: L0 tombstones must hide L1
					e.mu.Lock()
					e.flushLocked()
					e.mu.Unlock()
				}
			case 5:
				if err := e.Sync(); err != nil {
					t.Fatal(err)
				}
				synced = m.clone()
			case 6:
				snaps = append(snaps, snap{e.NewSnapshot(), m.clone()})
			case 7, 10:
				checkEngine(t, "crash clone", e.SyncedClone(), synced, keys)
			default:
				checkEngine(t, "engine", e, m, keys)
			}
		}
		checkEngine(t, "engine", e, m, keys)
		for i, s := range snaps {
			checkEngine(t, "snapshot "+string(rune('0'+i%10)), s.s, s.m, keys)
			s.s.Close()
		}
	})
}

// TestMemEngineLarge crosses the automatic compaction threshold several
// times and checks every key.
func TestMemEngineLarge(t *testing.T) {
	e := NewMemEngine()
	const n = 20000
	for i := 0; i < n; i++ {
		b := e.NewBatch()
		b.Set([]byte(benchKey(i*7%n)), []byte(benchKey(i)))
		if i%3 == 0 {
			b.Delete([]byte(benchKey((i / 2) * 7 % n)))
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
	}
	if e.cur.l0.n+e.cur.l1.n == 0 {
		t.Fatal("no compaction happened")
	}
	it := e.NewIter(nil, nil)
	var prev []byte
	count := 0
	for it.First(); it.Valid(); it.Next() {
		if prev != nil && bytes.Compare(prev, it.Key()) >= 0 {
			t.Fatalf("keys out of order: %q then %q", prev, it.Key())
		}
		prev = bytes.Clone(it.Key())
		v, err := e.Get(it.Key())
		if err != nil || !bytes.Equal(v, it.Value()) {
			t.Fatalf("Get(%q) = %q, %v; iterator says %q", it.Key(), v, err, it.Value())
		}
		count++
	}
	it.Close()
	if count != e.Len() || count == 0 || count == n {
		t.Fatalf("iterated %d keys, Len %d", count, e.Len())
	}
}

// TestMemLessMatchesBytesCompare holds the B-tree's order (memLess, which
// compares keyPrefix first) to bytes.Compare's: keys shorter and longer
// than the 8-byte prefix, zero bytes (a zero pad must not make "a" equal
// "a\x00"), 0xff bytes, keys that differ only after the prefix.
func TestMemLessMatchesBytesCompare(t *testing.T) {
	keys := [][]byte{
		nil, {}, {0}, {0, 0}, {0, 1}, {1}, {0xff}, {0xff, 0},
		[]byte("a"), []byte("a\x00"), []byte("a\x00\x00\x00\x00\x00\x00\x00"), []byte("a\x00\x00\x00\x00\x00\x00\x00\x00"),
		[]byte("abcdefg"), []byte("abcdefgh"), []byte("abcdefgh\x00"), []byte("abcdefghi"), []byte("abcdefgi"),
		[]byte("\x01\x00pb:log:1"), []byte("\x01\x00pb:log:10"), []byte("\x01\x00pb:log:9"), []byte("\x01\x00pb:low"),
		[]byte("\x01r2"), []byte("\x01s3"), []byte("\xff\xff\xff\xff\xff\xff\xff\xff"), []byte("\xff\xff\xff\xff\xff\xff\xff\xff\x00"),
	}
	rnd := rand.New(rand.NewPCG(9, 1))
	for range 500 {
		k := make([]byte, rnd.IntN(12))
		for i := range k {
			k[i] = []byte{0, 1, 'a', 'b', 0xff}[rnd.IntN(5)]
		}
		keys = append(keys, k)
	}
	for _, a := range keys {
		for _, b := range keys {
			want := bytes.Compare(a, b) < 0
			if got := memLess(newItem(a, nil, false), newItem(b, nil, false)); got != want {
				t.Fatalf("memLess(%q, %q) = %v, want %v", a, b, got, want)
			}
		}
	}
}
