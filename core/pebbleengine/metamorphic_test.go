package pebbleengine

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"pgregory.net/rapid"

	"github.com/dialkv/dialkv/core"
)

// The metamorphic test: the same random command sequences applied to a
// core.Store over core.MemEngine and to a core.Store over this package's
// Engine must give identical replies, identical final Dumps and identical
// snapshot streams. The Pebble side is also closed and reopened at random
// points (the Store reloading its metadata from disk) without changing
// anything observable. Replay a failure with -rapid.seed=N (printed by
// rapid) or the -rapid.failfile it names.

// gen draws the arguments of one command.
type gen func(t *rapid.T) []string

var (
	mKeys    = rapid.SampledFrom([]string{"a", "b", "c", "d", "e"})
	mVals    = rapid.SampledFrom([]string{"1", "2", "-7", "10", "3.5", "abc", "", "x\x00y", "9223372036854775807", "1e3"})
	mIdx     = rapid.SampledFrom([]string{"-3", "-2", "-1", "0", "1", "2", "3", "10", "x"})
	mCount   = rapid.SampledFrom([]string{"0", "1", "2", "3", "-1", "x"})
	mMembers = rapid.SampledFrom([]string{"m1", "m2", "m3", "m4", ""})
	mScores  = rapid.SampledFrom([]string{"0", "1", "2", "2.5", "-1", "+inf", "-inf", "1e2", "nan", "x"})
	mRanges  = rapid.SampledFrom([]string{"-inf", "+inf", "0", "1", "(1", "2", "(2.5", "x"})
	mLex     = rapid.SampledFrom([]string{"-", "+", "[m1", "(m2", "[m3", "m1"})
	mSecs    = rapid.SampledFrom([]string{"1", "2", "5", "100", "0", "-1", "x"})
	mMillis  = rapid.SampledFrom([]string{"1", "500", "1500", "5000", "0", "-5"})
	mVers    = rapid.SampledFrom([]string{"0", "1", "2", "3", "5", "8", "x"})
)

func one(g *rapid.Generator[string]) gen {
	return func(t *rapid.T) []string { return []string{g.Draw(t, "arg")} }
}

func seq(gs ...gen) gen {
	return func(t *rapid.T) []string {
		var out []string
		for _, g := range gs {
			out = append(out, g(t)...)
		}
		return out
	}
}

// some repeats g one to n times.
func some(n int, g gen) gen {
	return func(t *rapid.T) []string {
		var out []string
		for i := rapid.IntRange(1, n).Draw(t, "n"); i > 0; i-- {
			out = append(out, g(t)...)
		}
		return out
	}
}

// maybe draws g or nothing.
func maybe(g gen) gen {
	return func(t *rapid.T) []string {
		if rapid.Bool().Draw(t, "maybe") {
			return g(t)
		}
		return nil
	}
}

// opts draws up to n options from the list, in random order, repeats
// allowed (so invalid combinations are exercised too).
func opts(n int, list ...gen) gen {
	return func(t *rapid.T) []string {
		var out []string
		for i := rapid.IntRange(0, n).Draw(t, "opts"); i > 0; i-- {
			out = append(out, list[rapid.IntRange(0, len(list)-1).Draw(t, "opt")](t)...)
		}
		return out
	}
}

func lit(s ...string) gen { return func(*rapid.T) []string { return s } }

var (
	k, v, idx, cnt = one(mKeys), one(mVals), one(mIdx), one(mCount)
	mem, score     = one(mMembers), one(mScores)
	secs, millis   = one(mSecs), one(mMillis)
	ver            = one(mVers)
	cursor         = one(rapid.SampledFrom([]string{"", "a", "b", "c", "zz"}))
	idxName        = one(rapid.SampledFrom([]string{"i1", "i2"}))
)

// mTemplates are the commands the test draws from; those the Store does not
// implement (core.KnownCommand) are left out, so coverage grows with core.
var mTemplates = map[string]gen{
	"GET": k, "GETSET": seq(k, v), "GETDEL": k, "APPEND": seq(k, v), "STRLEN": k,
	"SET": seq(k, v, opts(3, lit("NX"), lit("XX"), lit("GET"), lit("KEEPTTL"),
		seq(lit("EX"), secs), seq(lit("PX"), millis), seq(lit("IFVER"), ver), seq(lit("IFEQ"), v))),
	"SETNX": seq(k, v), "SETEX": seq(k, secs, v), "PSETEX": seq(k, millis, v),
	"CAS":  seq(k, ver, v),
	"INCR": seq(k, maybe(seq(lit("IFVER"), ver))), "DECR": k,
	"INCRBY": seq(k, idx), "DECRBY": seq(k, idx), "INCRBYFLOAT": seq(k, score),
	"MGET": some(3, k), "MSET": some(3, seq(k, v)), "MSETNX": some(3, seq(k, v)),
	"DEL": some(3, k), "UNLINK": some(2, k), "EXISTS": some(3, k), "TYPE": k,
	"EXPIRE":  seq(k, secs, opts(1, lit("NX"), lit("XX"), lit("GT"), lit("LT"))),
	"PEXPIRE": seq(k, millis), "EXPIREAT": seq(k, one(rapid.SampledFrom([]string{"1700000001", "1700000010", "1", "x"}))),
	"PEXPIREAT": seq(k, one(rapid.SampledFrom([]string{"1700000000500", "1700000003000", "5"}))),
	"PERSIST":   k, "TTL": k, "PTTL": k, "VERSION": k,
	"SADD": seq(k, some(3, mem)), "SREM": seq(k, some(2, mem)), "SMEMBERS": k,
	"SISMEMBER": seq(k, mem), "SMISMEMBER": seq(k, some(3, mem)), "SCARD": k,
	"SINTER": some(3, k), "SUNION": some(3, k), "SDIFF": some(3, k),
	"SINTERSTORE": seq(k, some(2, k)), "SUNIONSTORE": seq(k, some(2, k)), "SDIFFSTORE": seq(k, some(2, k)),
	"LPUSH": seq(k, some(3, mem)), "RPUSH": seq(k, some(3, mem)),
	"LPUSHX": seq(k, some(2, mem)), "RPUSHX": seq(k, some(2, mem)),
	"LPOP": seq(k, maybe(cnt)), "RPOP": seq(k, maybe(cnt)), "LRANGE": seq(k, idx, idx),
	"LLEN": k, "LINDEX": seq(k, idx), "LSET": seq(k, idx, mem), "LREM": seq(k, idx, mem),
	"LTRIM": seq(k, idx, idx),
	"HSET":  seq(k, some(3, seq(mem, v))), "HMSET": seq(k, some(2, seq(mem, v))),
	"HSETNX": seq(k, mem, v), "HGET": seq(k, mem), "HMGET": seq(k, some(3, mem)),
	"HDEL": seq(k, some(2, mem)), "HGETALL": k, "HINCRBY": seq(k, mem, idx),
	"HINCRBYFLOAT": seq(k, mem, score), "HEXISTS": seq(k, mem), "HLEN": k,
	"HSTRLEN": seq(k, mem), "HKEYS": k, "HVALS": k,
	"ZADD": seq(k, opts(2, lit("NX"), lit("XX"), lit("GT"), lit("LT"), lit("CH"), lit("INCR")),
		some(3, seq(score, mem))),
	"ZREM": seq(k, some(2, mem)), "ZSCORE": seq(k, mem), "ZINCRBY": seq(k, score, mem),
	"ZRANK": seq(k, mem), "ZREVRANK": seq(k, mem), "ZCARD": k,
	"ZCOUNT": seq(k, one(mRanges), one(mRanges)),
	"ZRANGE": func(t *rapid.T) []string {
		key := mKeys.Draw(t, "key")
		var args []string
		switch rapid.IntRange(0, 2).Draw(t, "by") {
		case 0:
			args = []string{key, mIdx.Draw(t, "start"), mIdx.Draw(t, "stop")}
		case 1:
			args = []string{key, mRanges.Draw(t, "min"), mRanges.Draw(t, "max"), "BYSCORE"}
		default:
			args = []string{key, mLex.Draw(t, "min"), mLex.Draw(t, "max"), "BYLEX"}
		}
		return append(args, opts(2, lit("REV"), seq(lit("LIMIT"), idx, cnt), lit("WITHSCORES"))(t)...)
	},
	"ZPOPMIN": seq(k, maybe(cnt)), "ZPOPMAX": seq(k, maybe(cnt)),
	"ZMSCORE": seq(k, some(3, mem)), "ZLEXCOUNT": seq(k, one(mLex), one(mLex)),
	"ZREVRANGE":        seq(k, idx, idx, maybe(lit("WITHSCORES"))),
	"ZRANGEBYSCORE":    seq(k, one(mRanges), one(mRanges), opts(2, lit("WITHSCORES"), seq(lit("LIMIT"), idx, cnt))),
	"ZREVRANGEBYSCORE": seq(k, one(mRanges), one(mRanges), opts(2, lit("WITHSCORES"), seq(lit("LIMIT"), idx, cnt))),
	"ZRANGEBYLEX":      seq(k, one(mLex), one(mLex), maybe(seq(lit("LIMIT"), idx, cnt))),
	"ZREVRANGEBYLEX":   seq(k, one(mLex), one(mLex), maybe(seq(lit("LIMIT"), idx, cnt))),
	"SCAN.PREFIX":      seq(one(rapid.SampledFrom([]string{"", "a", "b", "x"})), cursor, maybe(seq(lit("COUNT"), cnt))),
	"SCAN.RANGE":       seq(k, one(rapid.SampledFrom([]string{"", "c", "e", "a"})), cursor, maybe(seq(lit("COUNT"), cnt))),
	"IDX.CREATE": seq(idxName, lit("ON", "HASH", "PREFIX"), one(rapid.SampledFrom([]string{"", "a", "b"})),
		lit("FIELD"), mem, lit("TYPE"), one(rapid.SampledFrom([]string{"string", "number", "x"}))),
	"IDX.DROP": idxName,
	"IDX.LIST": lit(),
	"IDX.QUERY": func(t *rapid.T) []string {
		args := idxName(t)
		if rapid.Bool().Draw(t, "eq") {
			args = append(args, "EQ", mVals.Draw(t, "v"))
		} else {
			bounds := rapid.SampledFrom([]string{"-inf", "+inf", "0", "(1", "2", "-", "+", "[a", "(abc"})
			args = append(args, "RANGE", bounds.Draw(t, "min"), bounds.Draw(t, "max"))
		}
		return append(args, opts(2, seq(lit("LIMIT"), cnt), seq(lit("CURSOR"), cursor))(t)...)
	},
}

// knownTemplates returns the names of mTemplates the Store implements,
// sorted so that draws are reproducible.
func knownTemplates() []string {
	var names []string
	for n := range mTemplates {
		if core.KnownCommand(n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

func drawCommand(t *rapid.T, names []string) core.Command {
	name := rapid.SampledFrom(names).Draw(t, "cmd")
	return core.Cmd(name, mTemplates[name](t)...)
}

func drawTxn(t *rapid.T, names []string) core.Txn {
	var txn core.Txn
	for i := rapid.IntRange(0, 2).Draw(t, "conds"); i > 0; i-- {
		c := core.Condition{Key: []byte(mKeys.Draw(t, "ckey")), Kind: core.CondKind(rapid.IntRange(0, 3).Draw(t, "ckind"))}
		switch c.Kind {
		case core.CondVersion:
			c.Version = uint64(rapid.IntRange(0, 12).Draw(t, "cver"))
		case core.CondValue:
			c.Value = []byte(mVals.Draw(t, "cval"))
		}
		txn.Conds = append(txn.Conds, c)
	}
	for i := rapid.IntRange(1, 4).Draw(t, "cmds"); i > 0; i-- {
		txn.Cmds = append(txn.Cmds, drawCommand(t, names))
	}
	return txn
}

// renderReply is a canonical, comparable rendering of a reply (NaN-safe,
// error codes and condition details included).
func renderReply(r core.Reply) string {
	var b strings.Builder
	var walk func(r core.Reply)
	walk = func(r core.Reply) {
		fmt.Fprintf(&b, "{k%d v%d", r.Kind, r.Version)
		switch r.Kind {
		case core.KindStatus, core.KindBulk:
			fmt.Fprintf(&b, " %q", r.Str)
		case core.KindInt:
			fmt.Fprintf(&b, " %d", r.Int)
		case core.KindFloat:
			fmt.Fprintf(&b, " %x", math.Float64bits(r.Float))
		case core.KindArray:
			b.WriteString(" [")
			for _, e := range r.Array {
				walk(e)
			}
			b.WriteString("]")
		case core.KindError:
			if r.Err != nil {
				fmt.Fprintf(&b, " %s %q %q %d", r.Err.Code, r.Err.Msg, r.Err.Condition, r.Err.Version)
			}
		}
		b.WriteString("}")
	}
	walk(r)
	return b.String()
}

// pebbleStore is a Store over a Pebble engine on a memory FS that can be
// closed and reopened.
type pebbleStore struct {
	fs   vfs.FS
	wrap func(core.Engine) core.Engine // nil, or a mutant for the self-test
	e    *Engine
	s    *core.Store
}

func openPebbleStore(fs vfs.FS, wrap func(core.Engine) core.Engine) (*pebbleStore, error) {
	e, err := Open("db", Options{FS: fs, Sync: core.SyncNever})
	if err != nil {
		return nil, err
	}
	var ce core.Engine = e
	if wrap != nil {
		ce = wrap(e)
	}
	s, err := core.NewStore(ce, core.Limits{})
	if err != nil {
		_ = e.Close()
		return nil, fmt.Errorf("new store: %w", err)
	}
	return &pebbleStore{fs: fs, wrap: wrap, e: e, s: s}, nil
}

func (p *pebbleStore) reopen() error {
	if err := p.e.Close(); err != nil {
		return err
	}
	q, err := openPebbleStore(p.fs, p.wrap)
	if err != nil {
		return err
	}
	*p = *q
	return nil
}

func TestMetamorphic(t *testing.T) {
	names := knownTemplates()
	if len(names) < 20 {
		t.Fatalf("only %d known commands among the templates: %v", len(names), names)
	}
	t.Logf("%d commands in use: %s", len(names), strings.Join(names, " "))
	rapid.Check(t, metamorphicProperty(names, nil))
}

// metamorphicProperty is the property TestMetamorphic checks; wrap, when
// set, wraps the Pebble engine (the self-test's mutants).
func metamorphicProperty(names []string, wrap func(core.Engine) core.Engine) func(*rapid.T) {
	return func(rt *rapid.T) {
		ms, err := core.NewStore(core.NewMemEngine(), core.Limits{})
		if err != nil {
			rt.Fatalf("mem store: %v", err)
		}
		ps, err := openPebbleStore(vfs.NewMem(), wrap)
		if err != nil {
			rt.Fatalf("pebble store: %v", err)
		}
		defer func() { _ = ps.e.Close() }()
		now := time.Unix(1_700_000_000, 0).UTC()
		steps := rapid.IntRange(1, 80).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 1200).Draw(rt, "advance ms")) * time.Millisecond)
			var what, a, b string
			switch op := rapid.IntRange(0, 19).Draw(rt, "op"); {
			case op < 16:
				c := drawCommand(rt, names)
				what = c.String()
				a, b = renderReply(ms.Apply(now, c)), renderReply(ps.s.Apply(now, c))
			case op < 18:
				txn := drawTxn(rt, names)
				what = fmt.Sprintf("txn %+v", txn)
				a, b = renderReply(ms.ApplyTxn(now, txn)), renderReply(ps.s.ApplyTxn(now, txn))
			case op < 19:
				max := rapid.IntRange(1, 4).Draw(rt, "expire max")
				what = fmt.Sprintf("ExpireStep(%d)", max)
				na, ea := ms.ExpireStep(now, max)
				nb, eb := ps.s.ExpireStep(now, max)
				a, b = fmt.Sprint(na, ea), fmt.Sprint(nb, eb)
			default:
				what = "reopen the pebble store"
				if err := ps.reopen(); err != nil {
					rt.Fatalf("step %d: reopen: %v", i, err)
				}
			}
			if a != b {
				rt.Fatalf("step %d: %s:\n  mem    %s\n  pebble %s", i, what, a, b)
			}
		}
		compareStores(rt, now, ms, ps.s)
		// A snapshot of the memory store restored into a fresh Pebble store
		// gives the same state.
		var snap bytes.Buffer
		if err := ms.SaveSnapshot(&snap); err != nil {
			rt.Fatalf("save snapshot: %v", err)
		}
		fresh, err := openPebbleStore(vfs.NewMem(), wrap)
		if err != nil {
			rt.Fatalf("pebble store: %v", err)
		}
		defer func() { _ = fresh.e.Close() }()
		if err := fresh.s.RestoreSnapshot(&snap); err != nil {
			rt.Fatalf("restore snapshot into pebble: %v", err)
		}
		compareStores(rt, now, ms, fresh.s)
	}
}

func compareStores(t *rapid.T, now time.Time, ms, ps *core.Store) {
	da, err := ms.Dump(now)
	if err != nil {
		t.Fatalf("mem dump: %v", err)
	}
	db, err := ps.Dump(now)
	if err != nil {
		t.Fatalf("pebble dump: %v", err)
	}
	if fmt.Sprint(da) != fmt.Sprint(db) { // fmt sorts map keys
		t.Fatalf("final dumps differ:\n  mem    %v\n  pebble %v", da, db)
	}
	var sa, sb bytes.Buffer
	if err := ms.SaveSnapshot(&sa); err != nil {
		t.Fatalf("mem snapshot: %v", err)
	}
	if err := ps.SaveSnapshot(&sb); err != nil {
		t.Fatalf("pebble snapshot: %v", err)
	}
	if !bytes.Equal(sa.Bytes(), sb.Bytes()) {
		t.Fatalf("snapshot streams differ (%d vs %d bytes)", sa.Len(), sb.Len())
	}
}

// Mutant engines for the self-test: each breaks one thing a Store relies
// on, the way a storage bug would.
type (
	// dropDeletes ignores point deletes.
	dropDeletes      struct{ core.Engine }
	dropDeletesBatch struct{ core.Batch }
	// leakyUpper ignores iterators' upper bounds.
	leakyUpper struct{ core.Engine }
	// loseSecondWrite drops the second Set of every batch.
	loseSecondWrite      struct{ core.Engine }
	loseSecondWriteBatch struct {
		core.Batch
		n int
	}
)

func (d dropDeletes) NewBatch() core.Batch              { return dropDeletesBatch{d.Engine.NewBatch()} }
func (dropDeletesBatch) Delete([]byte)                  {}
func (l leakyUpper) NewIter(lo, _ []byte) core.Iterator { return l.Engine.NewIter(lo, nil) }
func (l loseSecondWrite) NewBatch() core.Batch {
	return &loseSecondWriteBatch{Batch: l.Engine.NewBatch()}
}
func (b *loseSecondWriteBatch) Set(k, v []byte) {
	if b.n++; b.n != 2 {
		b.Batch.Set(k, v)
	}
}

// failureRecorder is a rapid.TB that records a failure instead of failing
// the test; FailNow ends the goroutine as testing.T's does.
type failureRecorder struct {
	failed bool
	msg    string
}

func (f *failureRecorder) Helper()             {}
func (f *failureRecorder) Name() string        { return "mutant" }
func (f *failureRecorder) Logf(string, ...any) {}
func (f *failureRecorder) Log(...any)          {}
func (f *failureRecorder) Skipf(string, ...any) {
	runtime.Goexit()
}
func (f *failureRecorder) Skip(...any) { runtime.Goexit() }
func (f *failureRecorder) SkipNow()    { runtime.Goexit() }
func (f *failureRecorder) Errorf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
}
func (f *failureRecorder) Error(args ...any) { f.failed, f.msg = true, fmt.Sprint(args...) }
func (f *failureRecorder) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	runtime.Goexit()
}
func (f *failureRecorder) Fatal(args ...any) { f.Error(args...); runtime.Goexit() }
func (f *failureRecorder) FailNow()          { f.failed = true; runtime.Goexit() }
func (f *failureRecorder) Fail()             { f.failed = true }
func (f *failureRecorder) Failed() bool      { return f.failed }

// TestMetamorphicCatchesMutants shows the metamorphic property is not
// vacuous: over each mutant engine it must fail.
func TestMetamorphicCatchesMutants(t *testing.T) {
	// Expected failures: write no fail files, spend little on shrinking.
	for name, v := range map[string]string{"rapid.nofailfile": "true", "rapid.shrinktime": "500ms"} {
		old := flag.Lookup(name).Value.String()
		if err := flag.Set(name, v); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = flag.Set(name, old) })
	}
	names := knownTemplates()
	mutants := []struct {
		name string
		wrap func(core.Engine) core.Engine
	}{
		{"drop deletes", func(e core.Engine) core.Engine { return dropDeletes{e} }},
		{"leaky upper bound", func(e core.Engine) core.Engine { return leakyUpper{e} }},
		{"lose the second write of a batch", func(e core.Engine) core.Engine { return loseSecondWrite{e} }},
	}
	for _, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			rec := &failureRecorder{}
			done := make(chan struct{})
			go func() {
				defer close(done)
				rapid.Check(rec, metamorphicProperty(names, m.wrap))
			}()
			<-done
			if !rec.failed {
				t.Fatalf("the metamorphic property passed over a mutant that %s", m.name)
			}
			first, _, _ := strings.Cut(rec.msg, "\n")
			t.Logf("caught: %s", first)
		})
	}
}
