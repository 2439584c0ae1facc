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

// BenchmarkStore runs Store commands over both engines, named
// BenchmarkStore/<engine>/<op> so they compare with core's MemEngine
// benchmarks and with each other in one run. Pebble runs on disk with
// SyncNever (no fsync per command); SET-sync fsyncs every command.
func BenchmarkStore(b *testing.B) {
	now := time.Unix(1_700_000_000, 0)
	val := string(make([]byte, benchValLen))
	type benchOp struct {
		name    string
		needs   []string
		sync    bool // SyncAlways and synced commits; otherwise SyncNever
		prepare func(b *testing.B, s *core.Store)
		run     func(s *core.Store, rng *rand.Rand, i int) core.Reply
	}
	loadStrings := func(b *testing.B, s *core.Store) {
		for i := 0; i < benchKeys; i += 100 {
			args := make([]string, 0, 200)
			for j := i; j < i+100; j++ {
				args = append(args, string(benchKey(j)), val)
			}
			if r := s.Apply(now, core.Cmd("MSET", args...)); r.IsError() {
				b.Fatal(r.Err)
			}
		}
	}
	key := func(rng *rand.Rand) string { return string(benchKey(rng.IntN(benchKeys))) }
	ops := []benchOp{
		{name: "GET", needs: []string{"GET", "MSET"}, prepare: loadStrings,
			run: func(s *core.Store, rng *rand.Rand, _ int) core.Reply { return s.Apply(now, core.Cmd("GET", key(rng))) }},
		{name: "SET", needs: []string{"SET"},
			run: func(s *core.Store, rng *rand.Rand, _ int) core.Reply {
				return s.Apply(now, core.Cmd("SET", key(rng), val))
			}},
		{name: "SET-sync", needs: []string{"SET"}, sync: true,
			run: func(s *core.Store, rng *rand.Rand, _ int) core.Reply {
				return s.Apply(now, core.Cmd("SET", key(rng), val))
			}},
		{name: "INCR", needs: []string{"INCR"},
			run: func(s *core.Store, rng *rand.Rand, _ int) core.Reply {
				return s.Apply(now, core.Cmd("INCR", "ctr:"+strconv.Itoa(rng.IntN(1000))))
			}},
		{name: "LPUSH", needs: []string{"LPUSH"},
			run: func(s *core.Store, rng *rand.Rand, i int) core.Reply {
				return s.Apply(now, core.Cmd("LPUSH", "list:"+strconv.Itoa(rng.IntN(1000)), val))
			}},
		{name: "ZADD", needs: []string{"ZADD"},
			run: func(s *core.Store, rng *rand.Rand, i int) core.Reply {
				return s.Apply(now, core.Cmd("ZADD", "zset:"+strconv.Itoa(rng.IntN(1000)), strconv.Itoa(i), "m"+strconv.Itoa(i%100)))
			}},
		{name: "HSET", needs: []string{"HSET"},
			run: func(s *core.Store, rng *rand.Rand, i int) core.Reply {
				return s.Apply(now, core.Cmd("HSET", "hash:"+strconv.Itoa(rng.IntN(1000)), "f"+strconv.Itoa(i%100), val))
			}},
		{name: "SCAN-100", needs: []string{"SCAN", "MSET"}, prepare: loadStrings,
			run: func(s *core.Store, rng *rand.Rand, _ int) core.Reply {
				return s.Apply(now, core.Cmd("SCAN", "0", "COUNT", "100"))
			}},
		{name: "TXN-10", needs: []string{"SET", "INCR"},
			run: func(s *core.Store, rng *rand.Rand, _ int) core.Reply {
				t := core.Txn{Conds: []core.Condition{{Key: []byte("txn:guard"), Kind: core.CondAbsent}}}
				for j := 0; j < 5; j++ {
					t.Cmds = append(t.Cmds, core.Cmd("SET", key(rng), val), core.Cmd("INCR", "ctr:"+strconv.Itoa(rng.IntN(1000))))
				}
				return s.ApplyTxn(now, t)
			}},
	}
	for _, be := range benchEngines {
		b.Run(be.name, func(b *testing.B) {
			for _, op := range ops {
				b.Run(op.name, func(b *testing.B) {
					for _, n := range op.needs {
						if !core.KnownCommand(n) {
							b.Skipf("core does not implement %s yet", n)
						}
					}
					policy := core.SyncNever
					if op.sync {
						policy = core.SyncAlways
					}
					e := be.open(b, policy)
					s, err := core.NewStore(e, core.Limits{})
					if err != nil {
						b.Fatal(err)
					}
					s.SetSyncCommits(op.sync) // what the memory engine gets for "sync"
					if op.prepare != nil {
						op.prepare(b, s)
					}
					rng := rand.New(rand.NewPCG(3, 4))
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if r := op.run(s, rng, i); r.IsError() {
							b.Fatalf("%s: %v", op.name, r.Err)
						}
					}
				})
			}
		})
	}
}
