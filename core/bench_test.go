package core

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
)

// Benchmarks of the Store on the memory engine. Run briefly on a shared
// machine:
//
//	go test -run XXX -bench . -benchtime=200ms -benchmem ./core

func benchStore(b *testing.B) *Store {
	s, err := NewStore(NewMemEngine(), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchKey(i int) string { return fmt.Sprintf("key:%012d", i) } // 16 bytes

func mustOK(b *testing.B, r Reply) {
	if r.IsError() {
		b.Fatal(render(r))
	}
}

const benchKeys = 10000

func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	val := string(make([]byte, 100))
	for i := 0; i < benchKeys; i++ {
		mustOK(b, s.Apply(t0, Cmd("SET", benchKey(i), val)))
	}
	cmds := make([]Command, benchKeys)
	for i := range cmds {
		cmds[i] = Cmd("GET", benchKey(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := s.Apply(t0, cmds[i%benchKeys]); r.Kind != KindBulk {
			b.Fatal(render(r))
		}
	}
}

func BenchmarkSet(b *testing.B) {
	s := benchStore(b)
	val := string(make([]byte, 100))
	cmds := make([]Command, benchKeys)
	for i := range cmds {
		cmds[i] = Cmd("SET", benchKey(i), val)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mustOK(b, s.Apply(t0, cmds[i%benchKeys]))
	}
}

func BenchmarkIncr(b *testing.B) {
	s := benchStore(b)
	cmds := make([]Command, 100)
	for i := range cmds {
		cmds[i] = Cmd("INCR", benchKey(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mustOK(b, s.Apply(t0, cmds[i%100]))
	}
}

// BenchmarkLPush pushes onto lists of 0..99 elements (a new list every
// 100 pushes): collections are one record, so the cost grows with length.
func BenchmarkLPush(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mustOK(b, s.Apply(t0, Command{Name: "LPUSH", Args: [][]byte{[]byte(benchKey(i / 100)), []byte("element-value")}}))
	}
}

// BenchmarkZAdd adds members to sorted sets of 0..99 members.
func BenchmarkZAdd(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mustOK(b, s.Apply(t0, Command{Name: "ZADD", Args: [][]byte{[]byte(benchKey(i / 100)), []byte(strconv.Itoa(i % 997)), []byte("member-" + strconv.Itoa(i%100))}}))
	}
}

// BenchmarkHSet sets fields of hashes of 0..99 fields.
func BenchmarkHSet(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mustOK(b, s.Apply(t0, Command{Name: "HSET", Args: [][]byte{[]byte(benchKey(i / 100)), []byte("field-" + strconv.Itoa(i%100)), []byte("value")}}))
	}
}

// BenchmarkScan100 reads one page of 100 keys with SCAN.PREFIX.
func BenchmarkScan100(b *testing.B) {
	s := benchStore(b)
	val := string(make([]byte, 100))
	for i := 0; i < benchKeys; i++ {
		mustOK(b, s.Apply(t0, Cmd("SET", benchKey(i), val)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := benchKey((i * 100) % (benchKeys - 100))
		r := s.Apply(t0, Cmd("SCAN.RANGE", start, "", "", "COUNT", "100"))
		if r.IsError() || len(r.Array[1].Array) != 100 {
			b.Fatal(render(r))
		}
	}
}

// BenchmarkTxn10 runs transactions of one version condition and 10
// commands (5 SET, 5 GET).
func BenchmarkTxn10(b *testing.B) {
	s := benchStore(b)
	txns := make([]Txn, 100)
	for i := range txns {
		t := Txn{Conds: []Condition{{Key: []byte("guard"), Kind: CondVersion, Version: 0}}}
		for j := 0; j < 5; j++ {
			k := benchKey(i*10 + j)
			t.Cmds = append(t.Cmds, Cmd("SET", k, "value"), Cmd("GET", k))
		}
		txns[i] = t
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mustOK(b, s.ApplyTxn(t0, txns[i%100]))
	}
}

// TestMemoryPerKey measures the memory engine's heap per key for 1M keys
// of 16 bytes with 100-byte values, written through the Store (so records
// carry their type byte, version and checksum), against the 116 raw bytes
// per key. Two key shapes: sequential ("key:000000123456", long shared
// prefixes, which the packed run's prefix compression exploits) and 16
// uniformly random bytes (almost nothing shared). It takes a while and
// ~250 MB, so it runs under DIALKV_SOAK=1 (make soak):
//
//	DIALKV_SOAK=1 go test -run TestMemoryPerKey -v ./core
func TestMemoryPerKey(t *testing.T) {
	if os.Getenv("DIALKV_SOAK") == "" {
		t.Skip("set DIALKV_SOAK=1 to measure memory per key for 1M keys")
	}
	for _, shape := range []string{"sequential", "random"} {
		t.Run(shape, func(t *testing.T) { measureMemory(t, shape) })
	}
}

func measureMemory(t *testing.T, shape string) {
	const n = 1_000_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e := NewMemEngine()
	s, err := NewStore(e, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	val := make([]byte, 100)
	key := make([]byte, 16)
	rng := uint64(42)
	for i := 0; i < n; i++ {
		if shape == "sequential" {
			copy(key, benchKey(i*7919%n)) // scattered insertion order
		} else {
			for j := 0; j < 16; j += 8 {
				rng = splitmix64(rng)
				binary.LittleEndian.PutUint64(key[j:], rng)
			}
		}
		for j := range val {
			val[j] = byte(i + j)
		}
		if r := s.Apply(t0, Command{Name: "SET", Args: [][]byte{key, val}}); r.IsError() {
			t.Fatal(render(r))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := float64(after.HeapAlloc - before.HeapAlloc)
	raw := float64(n * (16 + 100))
	t.Logf("1M %s keys (16 B keys, 100 B values): heap %.1f MB, %.1f bytes/key vs %.0f raw: overhead %.1f%% (B-tree holds %d entries, packed runs %d)",
		shape, used/1e6, used/n, raw/n, 100*(used-raw)/raw, e.cur.mem.Len(), e.cur.l0.n+e.cur.l1.n)
	runtime.KeepAlive(s)
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	z := x
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// BenchmarkApplyEffectsMeta is a backup applying one SET's effects with its
// applied number (primary-backup's Receive), through the path without an op
// (direct: ApplyEffectsMeta's) and through an op (op: the path it replaced
// for such effects); 64 keys of 100-byte values, every apply synced (as the
// simulator's backups are).
//
//	go test -run '^$' -bench ApplyEffectsMeta -benchmem ./core
func BenchmarkApplyEffectsMeta(b *testing.B) {
	pri := benchStore(b)
	fxs := make([]Effects, 64)
	for i := range fxs {
		cmd := Cmd("SET", benchKey(i), string(make([]byte, 100)))
		mustOK(b, pri.ApplyTxnThen(t0, Txn{Cmds: []Command{cmd}}, func(e *Effects) []Command {
			fxs[i] = cloneEffects(e)
			return nil
		}))
	}
	for _, path := range []string{"direct", "op"} {
		b.Run(path, func(b *testing.B) {
			eng := NewMemEngine()
			s, err := NewStore(eng, Limits{})
			if err != nil {
				b.Fatal(err)
			}
			applied := make([]byte, 8)
			cpu0 := benchCPU(b)
			for i := 0; b.Loop(); i++ {
				binary.BigEndian.PutUint64(applied, uint64(i))
				fx := fxs[i%len(fxs)]
				if path == "direct" {
					err = s.applyEffectsDirect(fx, "applied", applied, false)
				} else {
					err = s.applyEffectsOp(t0, fx, "applied", applied)
				}
				if err != nil {
					b.Fatal(err)
				}
				if err := eng.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(benchCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// benchCPU is the process's user+system CPU time in nanoseconds: on a
// shared machine ns/op (wall time) mostly measures the other processes.
func benchCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkMemEngineReplicaWrites is the memory engine under a replica's
// write pattern in the simulator: per step one batch replacing two of 40
// record keys and inserting a log record (deleted 200 steps later, as the
// primary truncates its log), a sync, and four reads of record keys; the
// B-tree holds about 240 entries. Reports CPU nanoseconds per step.
func BenchmarkMemEngineReplicaWrites(b *testing.B) {
	keys := make([][]byte, 40)
	for i := range keys {
		keys[i] = []byte("\x01key" + strconv.Itoa(i))
	}
	logs := make([][]byte, 1<<16)
	for i := range logs {
		logs[i] = []byte("\x01\x00pb:log:" + strconv.Itoa(i))
	}
	val := make([]byte, 100)
	m := NewMemEngine()
	cpu0 := benchCPU(b)
	for i := 0; b.Loop(); i++ {
		bt := m.NewBatch()
		owned := bt.(ownedSetter)
		owned.setOwned(keys[i%40], val)
		owned.setOwned(keys[(i*7)%40], val)
		owned.setOwned(logs[i%len(logs)], val)
		if i >= 200 {
			owned.deleteOwned(logs[(i-200)%len(logs)])
		}
		if err := bt.Commit(false); err != nil {
			b.Fatal(err)
		}
		bt.Close()
		if err := m.Sync(); err != nil {
			b.Fatal(err)
		}
		for j := range 4 {
			if _, err := m.Get(keys[(i*3+j)%40]); err != nil && !errors.Is(err, ErrNotFound) {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(benchCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}
