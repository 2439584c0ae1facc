package pebbleengine

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
)

// Engine benchmarks: Pebble on the real disk (b.TempDir) beside
// core.MemEngine, same keys (16 bytes) and values (100 bytes). Run:
//
//	go test ./core/pebbleengine -run '^$' -bench . -benchtime=200ms -benchmem
const (
	benchKeys   = 20000
	benchValLen = 100
)

func benchKey(i int) []byte { return []byte(fmt.Sprintf("key:%012d", i)) } // 16 bytes

// benchKeySet precomputes the keys so that key formatting does not count
// in the engine benchmarks' allocations.
func benchKeySet() [][]byte {
	keys := make([][]byte, benchKeys)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	return keys
}

type benchEngine struct {
	name string
	open func(b *testing.B, policy core.SyncPolicy) core.Engine
}

var benchEngines = []benchEngine{
	{"pebble", func(b *testing.B, policy core.SyncPolicy) core.Engine {
		e, err := Open(b.TempDir(), Options{Sync: policy})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = e.Close() })
		return e
	}},
	{"pebble-novaluecache", func(b *testing.B, policy core.SyncPolicy) core.Engine {
		e, err := Open(b.TempDir(), Options{Sync: policy, ValueCacheSize: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = e.Close() })
		return e
	}},
	{"mem", func(*testing.B, core.SyncPolicy) core.Engine { return core.NewMemEngine() }},
}

// preload writes benchKeys keys and, for Pebble, flushes them to sstables
// so reads go through the block cache as they would on a node.
func preload(b *testing.B, e core.Engine) {
	b.Helper()
	val := make([]byte, benchValLen)
	for i := 0; i < benchKeys; i += 1000 {
		wb := e.NewBatch()
		for j := i; j < i+1000; j++ {
			wb.Set(benchKey(j), val)
		}
		if err := wb.Commit(false); err != nil {
			b.Fatal(err)
		}
		wb.Close()
	}
	if pe, ok := e.(*Engine); ok {
		if err := pe.db.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

func forEngines(b *testing.B, policy core.SyncPolicy, fn func(b *testing.B, e core.Engine)) {
	for _, be := range benchEngines {
		b.Run(be.name, func(b *testing.B) { fn(b, be.open(b, policy)) })
	}
}

func BenchmarkPebbleGet(b *testing.B) {
	forEngines(b, core.SyncNever, func(b *testing.B, e core.Engine) {
		preload(b, e)
		keys := benchKeySet()
		rng := rand.New(rand.NewPCG(1, 1))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := e.Get(keys[rng.IntN(benchKeys)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPebbleSet commits one 100-byte Set per batch without fsync
// (SyncNever); BenchmarkPebbleSetSync fsyncs every commit (SyncAlways).
func BenchmarkPebbleSet(b *testing.B) { benchSet(b, core.SyncNever) }

func BenchmarkPebbleSetSync(b *testing.B) {
	b.Run("pebble", func(b *testing.B) {
		benchSetOn(b, benchEngines[0].open(b, core.SyncAlways))
	})
}

func benchSet(b *testing.B, policy core.SyncPolicy) {
	forEngines(b, policy, benchSetOn)
}

func benchSetOn(b *testing.B, e core.Engine) {
	val := make([]byte, benchValLen)
	keys := benchKeySet()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		wb := e.NewBatch()
		wb.Set(keys[i%benchKeys], val)
		if err := wb.Commit(false); err != nil {
			b.Fatal(err)
		}
		wb.Close()
	}
}

func BenchmarkPebbleScan100(b *testing.B) {
	forEngines(b, core.SyncNever, func(b *testing.B, e core.Engine) {
		preload(b, e)
		keys := benchKeySet()
		rng := rand.New(rand.NewPCG(1, 2))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			it := e.NewIter(keys[rng.IntN(benchKeys-100)], nil)
			n := 0
			for it.First(); it.Valid() && n < 100; it.Next() {
				n++
			}
			if err := it.Close(); err != nil || n != 100 {
				b.Fatalf("scanned %d: %v", n, err)
			}
		}
	})
}

func BenchmarkPebbleBatch100(b *testing.B) {
	forEngines(b, core.SyncNever, func(b *testing.B, e core.Engine) {
		val := make([]byte, benchValLen)
		keys := benchKeySet()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			wb := e.NewBatch()
			for j := 0; j < 100; j++ {
				wb.Set(keys[(i*100+j)%benchKeys], val)
			}
			if err := wb.Commit(false); err != nil {
				b.Fatal(err)
			}
			wb.Close()
		}
	})
}

// BenchmarkStore runs the workloads of core's Store benchmarks
// (core/bench_test.go: BenchmarkGet, Set, Incr, LPush, ZAdd, HSet, Scan100,
// Txn10, same keys, values and shapes) over both engines in one run, as
// BenchmarkStore/<engine>/<workload>: the mem rows reproduce core's figures
// and the pebble rows are directly comparable to them. Pebble runs on disk
// with SyncNever; Set-sync fsyncs every command (SyncAlways; the memory
// engine's "sync" is a clone of its tree).
//
//	go test ./core/pebbleengine -run '^$' -bench BenchmarkStore -benchtime=200ms -benchmem
func BenchmarkStore(b *testing.B) {
	now := time.Unix(1_700_000_000, 0)
	const keys = 10000 // as in core/bench_test.go
	skey := func(i int) string { return fmt.Sprintf("key:%012d", i) }
	val := string(make([]byte, benchValLen))
	mustOK := func(b *testing.B, r core.Reply) {
		if r.IsError() {
			b.Fatal(r.Err)
		}
	}
	loadStrings := func(b *testing.B, s *core.Store) {
		for i := 0; i < keys; i++ {
			mustOK(b, s.Apply(now, core.Cmd("SET", skey(i), val)))
		}
	}
	type workload struct {
		name  string
		needs []string
		sync  bool // SyncAlways and synced commits; otherwise SyncNever
		// setup prepares the store and returns the loop body.
		setup func(b *testing.B, s *core.Store) func(i int) core.Reply
	}
	workloads := []workload{
		{"Get", []string{"GET", "SET"}, false, func(b *testing.B, s *core.Store) func(int) core.Reply {
			loadStrings(b, s)
			cmds := make([]core.Command, keys)
			for i := range cmds {
				cmds[i] = core.Cmd("GET", skey(i))
			}
			return func(i int) core.Reply { return s.Apply(now, cmds[i%keys]) }
		}},
		{"Set", []string{"SET"}, false, func(b *testing.B, s *core.Store) func(int) core.Reply {
			cmds := make([]core.Command, keys)
			for i := range cmds {
				cmds[i] = core.Cmd("SET", skey(i), val)
			}
			return func(i int) core.Reply { return s.Apply(now, cmds[i%keys]) }
		}},
		{"Set-sync", []string{"SET"}, true, func(b *testing.B, s *core.Store) func(int) core.Reply {
			cmds := make([]core.Command, keys)
			for i := range cmds {
				cmds[i] = core.Cmd("SET", skey(i), val)
			}
			return func(i int) core.Reply { return s.Apply(now, cmds[i%keys]) }
		}},
		// 100 SETs per iteration: one Apply each, or one ApplyBatch (one
		// engine batch), side by side (ns/op is per 100 commands).
		{"Set100-each", []string{"SET"}, false, func(b *testing.B, s *core.Store) func(int) core.Reply {
			cmds := make([]core.Command, keys)
			for i := range cmds {
				cmds[i] = core.Cmd("SET", skey(i), val)
			}
			return func(i int) core.Reply {
				var r core.Reply
				for j := 0; j < 100; j++ {
					if r = s.Apply(now, cmds[(i*100+j)%keys]); r.IsError() {
						return r
					}
				}
				return r
			}
		}},
		{"Set100-batch", []string{"SET"}, false, func(b *testing.B, s *core.Store) func(int) core.Reply {
			cmds := make([]core.Command, keys)
			for i := range cmds {
				cmds[i] = core.Cmd("SET", skey(i), val)
			}
			entries := make([]core.BatchEntry, 100)
			replies := make([]core.Reply, 100)
			return func(i int) core.Reply {
				for j := range entries {
					entries[j].Cmd = &cmds[(i*100+j)%keys]
				}
				s.ApplyBatch(now, entries, replies)
				for _, r := range replies {
					if r.IsError() {
						return r
					}
				}
				return replies[99]
			}
		}},
		{"Incr", []string{"INCR"}, false, func(b *testing.B, s *core.Store) func(int) core.Reply {
			cmds := make([]core.Command, 100)
			for i := range cmds {
				cmds[i] = core.Cmd("INCR", skey(i))
			}
			return func(i int) core.Reply { return s.Apply(now, cmds[i%100]) }
		}},
		{"LPush", []string{"LPUSH"}, false, func(b *testing.B, s *core.Store) func(int) core.Reply {
			return func(i int) core.Reply {
				return s.Apply(now, core.Command{Name: "LPUSH", Args: [][]byte{[]byte(skey(i / 100)), []byte("element-value")}})
			}
		}},
		{"ZAdd", []string{"ZADD"}, false, func(b *testing.B, s *core.Store) func(int) core.Reply {
			return func(i int) core.Reply {
				return s.Apply(now, core.Command{Name: "ZADD", Args: [][]byte{[]byte(skey(i / 100)), []byte(strconv.Itoa(i % 997)), []byte("member-" + strconv.Itoa(i%100))}})
			}
		}},
		{"HSet", []string{"HSET"}, false, func(b *testing.B, s *core.Store) func(int) core.Reply {
			return func(i int) core.Reply {
				return s.Apply(now, core.Command{Name: "HSET", Args: [][]byte{[]byte(skey(i / 100)), []byte("field-" + strconv.Itoa(i%100)), []byte("value")}})
			}
		}},
		{"Scan100", []string{"SCAN.RANGE", "SET"}, false, func(b *testing.B, s *core.Store) func(int) core.Reply {
			loadStrings(b, s)
			return func(i int) core.Reply {
				r := s.Apply(now, core.Cmd("SCAN.RANGE", skey((i*100)%(keys-100)), "", "", "COUNT", "100"))
				if !r.IsError() && (len(r.Array) < 2 || len(r.Array[1].Array) != 100) {
					b.Fatalf("SCAN.RANGE returned %+v", r)
				}
				return r
			}
		}},
		{"Txn10", []string{"SET", "GET"}, false, func(b *testing.B, s *core.Store) func(int) core.Reply {
			txns := make([]core.Txn, 100)
			for i := range txns {
				t := core.Txn{Conds: []core.Condition{{Key: []byte("guard"), Kind: core.CondVersion, Version: 0}}}
				for j := 0; j < 5; j++ {
					k := skey(i*10 + j)
					t.Cmds = append(t.Cmds, core.Cmd("SET", k, "value"), core.Cmd("GET", k))
				}
				txns[i] = t
			}
			return func(i int) core.Reply { return s.ApplyTxn(now, txns[i%100]) }
		}},
	}
	for _, be := range benchEngines {
		b.Run(be.name, func(b *testing.B) {
			for _, w := range workloads {
				b.Run(w.name, func(b *testing.B) {
					for _, n := range w.needs {
						if !core.KnownCommand(n) {
							b.Skipf("core does not implement %s yet", n)
						}
					}
					policy := core.SyncNever
					if w.sync {
						policy = core.SyncAlways
					}
					s, err := core.NewStore(be.open(b, policy), core.Limits{})
					if err != nil {
						b.Fatal(err)
					}
					s.SetSyncCommits(w.sync)
					run := w.setup(b, s)
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						mustOK(b, run(i))
					}
				})
			}
		})
	}
}
