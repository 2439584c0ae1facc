package pebbleengine

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"pgregory.net/rapid"

	"github.com/dialkv/dialkv/core"
)

// The engine conformance suite runs the same operations against every
// core.Engine implementation (a map model, core.MemEngine and this package's
// Engine) and requires identical observable results. The first engine, the
// map model, is the reference. This is the engine half of the metamorphic
// test; metamorphic_test.go is the Store half.

// failer is what opening an engine needs of a *testing.T or *rapid.T.
type failer interface {
	Helper()
	Fatalf(format string, args ...any)
}

type namedEngine struct {
	name string
	open func(tb failer) core.Engine
}

func openMemPebble(tb failer, policy core.SyncPolicy) *Engine {
	tb.Helper()
	e, err := Open("db", Options{FS: vfs.NewMem(), Sync: policy})
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	return e
}

func conformanceEngines() []namedEngine {
	return []namedEngine{
		{"model", func(failer) core.Engine { return newModelEngine() }},
		{"mem", func(failer) core.Engine { return core.NewMemEngine() }},
		{"pebble", func(tb failer) core.Engine { return openMemPebble(tb, core.SyncNever) }},
	}
}

// trace records what an engine answers, one line per observation.
type trace struct{ lines []string }

func (w *trace) add(format string, args ...any) {
	w.lines = append(w.lines, fmt.Sprintf(format, args...))
}

func (w *trace) get(r core.Reader, key string) {
	v, err := r.Get([]byte(key))
	switch {
	case errors.Is(err, core.ErrNotFound):
		w.add("get %q: not found", key)
	case err != nil:
		w.add("get %q: error", key)
	default:
		w.add("get %q = %q", key, v)
		if len(v) > 0 { // the slice is the caller's: scribbling on it changes nothing
			v[0] ^= 0xff
		}
	}
}

func bound(s *string) []byte {
	if s == nil {
		return nil
	}
	return []byte(*s)
}

func str(s string) *string { return &s }

func (w *trace) scan(r core.Reader, lower, upper *string) {
	w.seek(r, lower, upper, nil)
}

// seek lists [lower, upper) from First, or from SeekGE(at) when at is set.
func (w *trace) seek(r core.Reader, lower, upper, at *string) {
	it := r.NewIter(bound(lower), bound(upper))
	var b strings.Builder
	var ok bool
	if at != nil {
		ok = it.SeekGE([]byte(*at))
	} else {
		ok = it.First()
	}
	for ; ok; ok = it.Next() {
		if !it.Valid() {
			b.WriteString(" !valid")
		}
		fmt.Fprintf(&b, " %q=%q", it.Key(), it.Value())
	}
	if it.Valid() {
		b.WriteString(" valid-after-end")
	}
	if err := it.Error(); err != nil {
		fmt.Fprintf(&b, " error")
	}
	if err := it.Close(); err != nil {
		fmt.Fprintf(&b, " close-error")
	}
	w.add("scan [%s,%s) from %s:%s", show(lower), show(upper), show(at), b.String())
}

func show(s *string) string {
	if s == nil {
		return "-"
	}
	return fmt.Sprintf("%q", *s)
}

func (w *trace) commit(b core.Batch, sync bool) {
	w.add("batch len %d", b.Len())
	if err := b.Commit(sync); err != nil {
		w.add("commit error %v", err)
	}
	b.Close()
}

func set(w *trace, e core.Engine, kv ...string) {
	b := e.NewBatch()
	for i := 0; i+1 < len(kv); i += 2 {
		b.Set([]byte(kv[i]), []byte(kv[i+1]))
	}
	w.commit(b, false)
}

var conformanceCases = []struct {
	name string
	run  func(e core.Engine, w *trace)
}{
	{"get missing", func(e core.Engine, w *trace) {
		w.get(e, "a")
		w.get(e, "")
		w.scan(e, nil, nil)
	}},
	{"set get overwrite empty", func(e core.Engine, w *trace) {
		set(w, e, "a", "1")
		w.get(e, "a")
		w.get(e, "a") // the previous get's result was scribbled on
		set(w, e, "a", "2")
		w.get(e, "a")
		set(w, e, "a", "")
		w.get(e, "a")
		w.scan(e, nil, nil)
	}},
	{"binary keys and values", func(e core.Engine, w *trace) {
		set(w, e, "", "empty key", "\x00", "nul", "a\x00b", "\xff\x00", "\xff\xff", "\x00\x01\x02")
		w.get(e, "")
		w.get(e, "a\x00b")
		w.get(e, "a")
		w.scan(e, nil, nil)
		w.scan(e, str("\x00"), str("\xff\xff"))
	}},
	{"delete", func(e core.Engine, w *trace) {
		set(w, e, "a", "1", "b", "2", "c", "3")
		b := e.NewBatch()
		b.Delete([]byte("b"))
		b.Delete([]byte("zz")) // missing: no error
		w.commit(b, false)
		w.get(e, "b")
		w.scan(e, nil, nil)
	}},
	{"delete range", func(e core.Engine, w *trace) {
		set(w, e, "a", "1", "ab", "2", "b", "3", "b\x00", "4", "c", "5", "d", "6")
		b := e.NewBatch()
		b.DeleteRange([]byte("ab"), []byte("c"))
		b.DeleteRange([]byte("x"), []byte("y")) // nothing there
		b.DeleteRange([]byte("d"), []byte("d")) // empty range
		b.DeleteRange([]byte("d"), []byte("a")) // inverted range
		w.commit(b, false)
		w.scan(e, nil, nil)
		set(w, e, "b", "again")
		w.get(e, "b")
		w.scan(e, nil, nil)
	}},
	{"batch order and atomic visibility", func(e core.Engine, w *trace) {
		b := e.NewBatch()
		b.Set([]byte("k"), []byte("1"))
		b.Set([]byte("k"), []byte("2"))
		b.Set([]byte("j"), []byte("x"))
		b.Delete([]byte("j"))
		b.Set([]byte("m"), []byte("y"))
		b.DeleteRange([]byte("m"), []byte("n"))
		b.Set([]byte("m2"), []byte("z"))
		w.get(e, "k") // not visible before commit
		w.scan(e, nil, nil)
		w.commit(b, true)
		w.get(e, "k")
		w.scan(e, nil, nil)
		b = e.NewBatch()
		b.Set([]byte("never"), []byte("1"))
		b.Close() // closed without commit: nothing applied
		w.get(e, "never")
	}},
	{"iterator bounds", func(e core.Engine, w *trace) {
		set(w, e, "a", "1", "a\x00", "2", "ab", "3", "b", "4", "ba", "5", "c", "6")
		w.scan(e, nil, nil)
		w.scan(e, str("a\x00"), nil)
		w.scan(e, nil, str("b"))
		w.scan(e, str("ab"), str("ba"))
		w.scan(e, str("a"), str("a\x00"))
		w.scan(e, str("b"), str("b"))   // empty
		w.scan(e, str("c"), str("a"))   // inverted: empty
		w.scan(e, str("d"), str("e"))   // past the end
		w.scan(e, str(""), str("\xff")) // everything
	}},
	{"seek", func(e core.Engine, w *trace) {
		set(w, e, "a", "1", "b", "2", "c", "3", "d", "4")
		w.seek(e, nil, nil, str("b"))
		w.seek(e, nil, nil, str("bb"))
		w.seek(e, nil, nil, str("z"))
		w.seek(e, str("b"), str("d"), str("a")) // below the lower bound
		w.seek(e, str("b"), str("d"), str("c"))
		w.seek(e, str("b"), str("d"), str("d")) // at the upper bound
	}},
	{"snapshot isolation", func(e core.Engine, w *trace) {
		set(w, e, "a", "1", "b", "2", "c", "3")
		s := e.NewSnapshot()
		b := e.NewBatch()
		b.Set([]byte("a"), []byte("changed"))
		b.Delete([]byte("b"))
		b.Set([]byte("d"), []byte("new"))
		b.DeleteRange([]byte("c"), []byte("cz"))
		w.commit(b, false)
		w.get(s, "a")
		w.get(s, "b")
		w.get(s, "d")
		w.scan(s, nil, nil)
		w.seek(s, str("b"), nil, str("a"))
		w.get(e, "a")
		w.scan(e, nil, nil)
		if err := s.Close(); err != nil {
			w.add("snapshot close error %v", err)
		}
		w.scan(e, nil, nil)
	}},
	{"iterator is a point-in-time view", func(e core.Engine, w *trace) {
		set(w, e, "a", "1", "c", "3")
		it := e.NewIter(nil, nil)
		set(w, e, "b", "2")
		var keys []string
		for it.First(); it.Valid(); it.Next() {
			keys = append(keys, string(it.Key()))
		}
		w.add("keys seen by an iterator opened before the write: %q", keys)
		if err := it.Close(); err != nil {
			w.add("close error %v", err)
		}
	}},
	{"sync", func(e core.Engine, w *trace) {
		set(w, e, "a", "1")
		if err := e.Sync(); err != nil {
			w.add("sync error %v", err)
		}
		w.get(e, "a")
	}},
}

func TestConformance(t *testing.T) {
	for _, c := range conformanceCases {
		t.Run(c.name, func(t *testing.T) {
			var ref *trace
			for _, ne := range conformanceEngines() {
				e := ne.open(t)
				w := &trace{}
				c.run(e, w)
				if err := e.Close(); err != nil {
					t.Fatalf("%s: close: %v", ne.name, err)
				}
				if ref == nil {
					ref = w
					continue
				}
				if diff := diffLines(ref.lines, w.lines); diff != "" {
					t.Errorf("%s differs from %s:\n%s", ne.name, "model", diff)
				}
			}
		})
	}
}

func diffLines(want, got []string) string {
	var b strings.Builder
	for i := 0; i < max(len(want), len(got)); i++ {
		var x, y string
		if i < len(want) {
			x = want[i]
		}
		if i < len(got) {
			y = got[i]
		}
		if x != y {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i, x, y)
		}
	}
	return b.String()
}

// TestConformanceRandom drives every engine with the same random sequence
// of batches, reads, scans and snapshots over a small key space and compares
// every answer. Failures print the rapid seed to replay (-rapid.seed=N).
func TestConformanceRandom(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		engines := conformanceEngines()
		es := make([]core.Engine, len(engines))
		for i, ne := range engines {
			es[i] = ne.open(rt)
		}
		defer func() {
			for _, e := range es {
				_ = e.Close()
			}
		}()
		snaps := make([][]core.Snapshot, len(es))
		keyGen := rapid.SampledFrom([]string{"", "a", "a\x00", "ab", "b", "ba", "c", "d", "\xff"})
		optKey := rapid.OneOf(rapid.Just[*string](nil), rapid.Map(keyGen, str))
		valGen := rapid.Map(rapid.SliceOfN(rapid.Byte(), 0, 8), func(b []byte) string { return string(b) })
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for step := 0; step < steps; step++ {
			ws := make([]*trace, len(es))
			for i := range ws {
				ws[i] = &trace{}
			}
			switch op := rapid.IntRange(0, 5).Draw(rt, "op"); op {
			case 0, 1: // a batch of writes
				type w struct {
					kind      int
					k, v, end string
				}
				var ops []w
				for n := rapid.IntRange(0, 6).Draw(rt, "batch"); n > 0; n-- {
					ops = append(ops, w{rapid.IntRange(0, 2).Draw(rt, "kind"), keyGen.Draw(rt, "k"), valGen.Draw(rt, "v"), keyGen.Draw(rt, "end")})
				}
				sync := rapid.Bool().Draw(rt, "sync")
				for i, e := range es {
					b := e.NewBatch()
					for _, o := range ops {
						switch o.kind {
						case 0:
							b.Set([]byte(o.k), []byte(o.v))
						case 1:
							b.Delete([]byte(o.k))
						case 2:
							b.DeleteRange([]byte(o.k), []byte(o.end))
						}
					}
					ws[i].commit(b, sync)
				}
			case 2:
				k := keyGen.Draw(rt, "get")
				for i, e := range es {
					ws[i].get(e, k)
				}
			case 3:
				lo, hi, at := optKey.Draw(rt, "lower"), optKey.Draw(rt, "upper"), optKey.Draw(rt, "seek")
				for i, e := range es {
					ws[i].seek(e, lo, hi, at)
				}
			case 4: // take a snapshot (at most 3 live)
				if len(snaps[0]) < 3 {
					for i, e := range es {
						snaps[i] = append(snaps[i], e.NewSnapshot())
					}
				}
			case 5: // read through, then maybe close, a snapshot
				if len(snaps[0]) == 0 {
					continue
				}
				j := rapid.IntRange(0, len(snaps[0])-1).Draw(rt, "snap")
				lo, hi := optKey.Draw(rt, "lower"), optKey.Draw(rt, "upper")
				k := keyGen.Draw(rt, "get")
				closeIt := rapid.Bool().Draw(rt, "close")
				for i := range es {
					s := snaps[i][j]
					ws[i].get(s, k)
					ws[i].scan(s, lo, hi)
					if closeIt {
						if err := s.Close(); err != nil {
							ws[i].add("snapshot close: %v", err)
						}
						snaps[i] = append(snaps[i][:j], snaps[i][j+1:]...)
					}
				}
			}
			for i := 1; i < len(es); i++ {
				if d := diffLines(ws[0].lines, ws[i].lines); d != "" {
					rt.Fatalf("step %d: %s differs from %s:\n%s", step, engines[i].name, engines[0].name, d)
				}
			}
		}
		for i := range snaps {
			for _, s := range snaps[i] {
				_ = s.Close()
			}
		}
	})
}
