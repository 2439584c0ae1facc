package core

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// setTestMembers are the members random sets draw from: the empty member,
// bytes at both ends of the order, prefixes of one another, and members
// longer than 127 bytes (two-byte length prefixes).
var setTestMembers = []string{
	"", "\x00", "\xff", "a", "a\x00", "aa", "ab", "b", "member-1", "member-10", "member-2",
	string(bytes.Repeat([]byte("x"), 127)), string(bytes.Repeat([]byte("x"), 128)),
	string(bytes.Repeat([]byte("y"), 300)),
}

func randMembers(r *rand.Rand, max int) []string {
	ms := make([]string, r.IntN(max+1))
	for i := range ms {
		ms[i] = setTestMembers[r.IntN(len(setTestMembers))]
	}
	return ms
}

// TestSetSpliceMatchesEncoder checks the stored-form set operations against
// the map path for random sets and arguments: spliceSet writes exactly the
// bytes encodeSet writes for the changed set and counts the same changes,
// contains agrees with the map, and encodeSet's output is canonical.
func TestSetSpliceMatchesEncoder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		set := map[string]struct{}{}
		for _, m := range randMembers(r, 2*len(setTestMembers)) {
			set[m] = struct{}{}
		}
		enc := encodeSet(set)
		s, canonical, err := parseSetPayload([]byte("k"), enc)
		if err != nil || !canonical || s.n != len(set) {
			t.Fatalf("case %d: parse of encodeSet output: n=%d canonical=%v err=%v", i, s.n, canonical, err)
		}
		args := randMembers(r, 6)
		if len(args) == 0 {
			args = []string{""}
		}
		bargs := make([][]byte, len(args))
		for j, a := range args {
			bargs[j] = []byte(a)
			if _, in := set[a]; in != s.contains(bargs[j]) {
				t.Fatalf("case %d: contains(%q) = %v, map says %v", i, a, !in, in)
			}
		}
		before := slices.Clone(bargs)
		ms := sortedUnique(bargs)
		if !slices.EqualFunc(before, bargs, bytes.Equal) {
			t.Fatalf("case %d: sortedUnique reordered its argument", i)
		}
		for _, add := range []bool{true, false} {
			want := map[string]struct{}{}
			for m := range set {
				want[m] = struct{}{}
			}
			wantN := 0
			for _, a := range args {
				_, in := want[a]
				switch {
				case add && !in:
					want[a] = struct{}{}
					wantN++
				case !add && in:
					delete(want, a)
					wantN++
				}
			}
			got, n := spliceSet(s, ms, add)
			if n != wantN {
				t.Fatalf("case %d add=%v: %d changed, want %d", i, add, n, wantN)
			}
			switch {
			case n == 0 && got != nil:
				t.Fatalf("case %d add=%v: payload %q without a change", i, add, got)
			case n > 0 && len(want) == 0 && len(got) != 0:
				t.Fatalf("case %d add=%v: payload %q for an empty set", i, add, got)
			case n > 0 && len(want) > 0 && !bytes.Equal(got, encodeSet(want)):
				t.Fatalf("case %d add=%v: set %q args %q:\n got  %x\n want %x", i, add, enc, args, got, encodeSet(want))
			}
		}
	}
}

// setMapHandlers are the map-path handlers of the commands with a
// stored-form path.
var setMapHandlers = map[string]func(*op, [][]byte) Reply{
	"SADD": cmdSAddMap, "SREM": cmdSRemMap, "SMEMBERS": cmdSMembersMap,
	"SISMEMBER": cmdSIsMemberMap, "SMISMEMBER": cmdSMIsMemberMap, "SCARD": cmdSCardMap,
	"SINTER": algebraMap('i', false), "SUNION": algebraMap('u', false), "SDIFF": algebraMap('d', false),
	"SINTERSTORE": algebraMap('i', true), "SUNIONSTORE": algebraMap('u', true), "SDIFFSTORE": algebraMap('d', true),
}

// algebraMap is the map-path handler of a set algebra command (the one the
// merge of sorted runs replaced).
func algebraMap(kind byte, store bool) func(*op, [][]byte) Reply {
	return func(o *op, a [][]byte) Reply {
		keys := a
		if store {
			keys = a[1:]
		}
		s, err := setAlgebraMap(o, keys, kind)
		if err != nil {
			return fail(err)
		}
		if !store {
			return sortedMembers(s)
		}
		if len(s) == 0 {
			if _, err := o.del(a[0]); err != nil {
				return fail(err)
			}
			return Int(0)
		}
		if err := o.put(a[0], TypeSet, encodeSet(s), 0); err != nil {
			return fail(err)
		}
		return Int(int64(len(s)))
	}
}

// applyMapPath applies c the way Apply does, but with the map-path handler.
func applyMapPath(t *testing.T, s *Store, c Command) Reply {
	t.Helper()
	h := setMapHandlers[c.Name]
	if h == nil {
		return s.Apply(t0, c)
	}
	o := s.newOp(t0)
	o.lastVer = 0
	r := h(o, c.Args)
	if r.IsError() {
		o.discard()
		return r
	}
	if spec := commandTable[c.Name]; spec.first == 1 && spec.last == 1 && r.Version == 0 {
		r.Version = o.lastVer // as op.run: single-key commands only
	}
	if err := o.commit(); err != nil {
		t.Fatal(err)
	}
	return r
}

// engineDump renders every engine key and value.
func engineDump(t *testing.T, e Engine) string {
	t.Helper()
	var b bytes.Buffer
	it := e.NewIter(nil, nil)
	for it.First(); it.Valid(); it.Next() {
		fmt.Fprintf(&b, "%q=%x\n", it.Key(), it.Value())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// putRawRecord writes a record with the given set payload under key,
// bypassing the commands (a payload encodeSet would not write).
func putRawRecord(t *testing.T, s *Store, key string, payload []byte) {
	t.Helper()
	b := s.Engine().NewBatch()
	defer b.Close()
	b.Set(dataKey([]byte(key)), encodeRecord([]byte(key), &record{typ: TypeSet, version: 1, payload: payload}))
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
}

func randSetCommand(r *rand.Rand) Command {
	keys := []string{"s1", "s2", "s3", "str", "none"}
	k := keys[r.IntN(len(keys))]
	args := randMembers(r, 4)
	if len(args) == 0 {
		args = []string{"a"}
	}
	switch r.IntN(11) {
	case 8, 9:
		// Set algebra over 1-4 keys (repeats allowed), the STORE forms
		// storing at one of the keys (a source too, at times).
		srcs := make([]string, 1+r.IntN(4))
		for i := range srcs {
			srcs[i] = keys[r.IntN(len(keys))]
		}
		name := []string{"SINTER", "SUNION", "SDIFF"}[r.IntN(3)]
		if r.IntN(2) == 0 {
			return Cmd(name+"STORE", append([]string{k}, srcs...)...)
		}
		return Cmd(name, srcs...)
	case 0, 1, 2:
		return Cmd("SADD", append([]string{k}, args...)...)
	case 3, 4:
		return Cmd("SREM", append([]string{k}, args...)...)
	case 5:
		return Cmd("SISMEMBER", k, args[0])
	case 6:
		return Cmd("SMISMEMBER", append([]string{k}, args...)...)
	default:
		if r.IntN(2) == 0 {
			return Cmd("SCARD", k)
		}
		return Cmd("SMEMBERS", k)
	}
}

// TestSetCommandsMatchMapPath runs the same random set commands on two
// stores, one with the stored-form handlers and one with the map-path
// handlers they replace, and requires the same replies (with versions) and
// the same engine bytes after every command. It starts from canonical,
// unsorted, duplicated and malformed payloads (the last two only the map
// path can have read before; the stored-form handlers fall back to it).
func TestSetCommandsMatchMapPath(t *testing.T) {
	starts := []struct {
		name    string
		payload []byte // at s1; nil: none
	}{
		{"empty", nil},
		{"canonical", encodeSet(map[string]struct{}{"a": {}, "b": {}, "": {}})},
		{"unsorted", encodeList([][]byte{[]byte("b"), []byte("a")})},
		{"duplicates", encodeList([][]byte{[]byte("a"), []byte("a"), []byte("c")})},
		{"malformed", []byte{3, 1, 'a'}},
		{"trailing bytes", append(encodeSet(map[string]struct{}{"a": {}}), 0)},
	}
	for _, st := range starts {
		t.Run(st.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, uint64(len(st.name))))
			news, old := newTestStore(t), newTestStore(t)
			for _, s := range []*Store{news, old} {
				if r := s.Apply(t0, Cmd("SET", "str", "v")); r.IsError() {
					t.Fatal(render(r))
				}
				if st.payload != nil {
					putRawRecord(t, s, "s1", st.payload)
				}
			}
			for i := 0; i < 400; i++ {
				c := randSetCommand(r)
				got, want := news.Apply(t0, c), applyMapPath(t, old, c)
				if render(got) != render(want) || got.Version != want.Version {
					t.Fatalf("step %d %s %q:\n got  %s v%d\n want %s v%d", i, c.Name, c.Args, render(got), got.Version, render(want), want.Version)
				}
				if g, w := engineDump(t, news.Engine()), engineDump(t, old.Engine()); g != w {
					t.Fatalf("step %d %s %q: engines differ:\n got  %s\n want %s", i, c.Name, c.Args, g, w)
				}
			}
			if g, w := news.Stats(), old.Stats(); g != w {
				t.Fatalf("stats differ: got %+v want %+v", g, w)
			}
		})
	}
}

// TestMergeSetsMatchesMaps checks the merge of sorted runs behind SINTER,
// SUNION and SDIFF (and their STORE forms) against the map computation
// for random sets: the same members, in encodeSet's order (the stored
// result is byte-identical to encodeSet's), and the right total size.
func TestMergeSetsMatchesMaps(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 5000; i++ {
		maps := make([]map[string]struct{}, 1+r.IntN(4))
		sets := make([]setPayload, len(maps))
		for j := range maps {
			maps[j] = map[string]struct{}{}
			for _, m := range randMembers(r, 2*len(setTestMembers)) {
				maps[j][m] = struct{}{}
			}
			var err error
			var canonical bool
			if sets[j], canonical, err = parseSetPayload([]byte("k"), encodeSet(maps[j])); err != nil || !canonical {
				t.Fatalf("case %d: parse: canonical=%v err=%v", i, canonical, err)
			}
		}
		for _, kind := range []byte{'i', 'u', 'd'} {
			want := map[string]struct{}{}
			for m := range maps[0] {
				want[m] = struct{}{}
			}
			for _, s := range maps[1:] {
				for m := range want {
					if _, in := s[m]; (kind == 'i' && !in) || (kind == 'd' && in) {
						delete(want, m)
					}
				}
				if kind == 'u' {
					for m := range s {
						want[m] = struct{}{}
					}
				}
			}
			ms, size := mergeSets(sets, kind)
			wantSize := 0
			for m := range want {
				wantSize += len(m)
			}
			if len(ms) != len(want) || size != wantSize {
				t.Fatalf("case %d kind %c: %d members of %d bytes, want %d of %d (sets %v)", i, kind, len(ms), size, len(want), wantSize, maps)
			}
			if got := encodeSortedSet(ms, size); len(want) > 0 && !bytes.Equal(got, encodeSet(want)) {
				t.Fatalf("case %d kind %c: sets %v:\n got  %x\n want %x", i, kind, maps, got, encodeSet(want))
			}
		}
	}
}
