package pebbleengine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dialkv/dialkv/core"
)

// openFaulty opens an engine on a FaultFS with a tiny block cache, so that
// reads reach the file system, and writes n keys flushed to an sstable.
func openFaulty(t *testing.T, cfg FaultConfig, n int) (*FaultFS, *Engine, map[string]string) {
	t.Helper()
	fs, err := NewFaultFS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open("db", Options{FS: fs, Sync: core.SyncAlways, CacheSize: 1, ValueCacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	rng := rand.New(rand.NewPCG(cfg.Seed, 9))
	for i := 0; i < n; i++ {
		k, v := fmt.Sprintf("k%04d", i), fmt.Sprintf("%x", rng.Uint64())
		mustCommit(t, e, false, k, v)
		want[k] = v
	}
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	return fs, e, want
}

func TestFaultFSConfig(t *testing.T) {
	for _, cfg := range []FaultConfig{{ReadErrorRate: -0.1}, {CorruptReadRate: 1.5}, {WriteErrorRate: 2}} {
		if _, err := NewFaultFS(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestFaultFSReadErrors(t *testing.T) {
	fs, e, want := openFaulty(t, FaultConfig{Seed: 1, ReadErrorRate: 1}, 50)
	defer e.Close()
	fs.Enable(true)
	_, err := e.Get([]byte("k0001"))
	if !errors.Is(err, ErrInjected) || core.AsError(err).Code != core.CodeIO {
		t.Fatalf("get with every read failing: %v (code %s), want an injected IOERR", err, core.AsError(err).Code)
	}
	if fs.Stats().ReadErrors == 0 {
		t.Fatal("read errors not counted")
	}
	fs.Enable(false)
	if v, err := e.Get([]byte("k0001")); err != nil || string(v) != want["k0001"] {
		t.Fatalf("after disabling faults: %q, %v", v, err)
	}
}

// TestFaultFSCorruptionNeverReturnsData: with reads randomly failing or
// corrupted, every read through a Store either returns the right value or
// an IOERR/CORRUPTION error, and corrupted reads do happen.
func TestFaultFSCorruptionNeverReturnsData(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var corrupt, ioerr, ok int
	for seed := uint64(1); seed <= 2; seed++ {
		cfg := FaultConfig{Seed: seed, ReadErrorRate: 0.05, CorruptReadRate: 0.1}
		fs, err := NewFaultFS(cfg)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Open("db", Options{FS: fs, Sync: core.SyncNever, CacheSize: 1, ValueCacheSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		s, err := core.NewStore(e, core.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{}
		for i := 0; i < 100; i++ {
			k, v := fmt.Sprintf("k%04d", i), fmt.Sprintf("value-%d-%d-%0200d", seed, i, i) // ~6 data blocks
			if r := s.Apply(now, core.Cmd("SET", k, v)); r.IsError() {
				t.Fatal(r.Err)
			}
			want[k] = v
		}
		if err := e.db.Flush(); err != nil {
			t.Fatal(err)
		}
		fs.Enable(true)
		for round := 0; round < 4; round++ { // each round a new epoch: new faults
			for k, v := range want {
				r := s.Apply(now, core.Cmd("GET", k))
				switch {
				case !r.IsError():
					if string(r.Str) != v {
						t.Fatalf("seed %d: GET %s = %q, want %q: a fault reached the data", seed, k, r.Str, v)
					}
					ok++
				case r.Err.Code == core.CodeCorruption:
					corrupt++
				case r.Err.Code == core.CodeIO:
					ioerr++
				default:
					t.Fatalf("seed %d: GET %s: unexpected %v", seed, k, r.Err)
				}
			}
			fs.NextEpoch()
		}
		fs.Enable(false)
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("reads: %d ok, %d corruption, %d io errors", ok, corrupt, ioerr)
	if corrupt == 0 || ioerr == 0 || ok == 0 {
		t.Fatalf("faults not exercised: %d ok, %d corruption, %d io errors", ok, corrupt, ioerr)
	}
}

// TestFaultFSCorruptAt: corruption at rest in an sstable is caught.
func TestFaultFSCorruptAt(t *testing.T) {
	fs, e, _ := openFaulty(t, FaultConfig{}, 50)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	names, err := fs.List("db")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if len(n) > 4 && n[len(n)-4:] == ".sst" {
			if err := fs.CorruptAt(fs.PathJoin("db", n), 20, 0x10); err != nil {
				t.Fatal(err)
			}
		}
	}
	e, err = Open("db", Options{FS: fs, CacheSize: 1, ValueCacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Get([]byte("k0000")); !errors.Is(err, core.ErrCorruption) {
		t.Fatalf("get after corruption at rest: %v", err)
	}
}

// TestFaultFSWriteErrors: under SyncAlways with WAL and sstable writes
// failing at random, the engine fails stop (ErrFailed, no panic), and after
// a crash and reopen the state is a prefix of the attempted batches that
// holds every acknowledged one.
func TestFaultFSWriteErrors(t *testing.T) {
	failures := 0
	for seed := uint64(1); seed <= 20; seed++ {
		fs, err := NewFaultFS(FaultConfig{Seed: seed, WriteErrorRate: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		e, err := Open("db", Options{FS: fs, Sync: core.SyncAlways})
		if err != nil {
			t.Fatal(err)
		}
		fs.Enable(true)
		rng := rand.New(rand.NewPCG(seed, 3))
		var batches []crashBatch
		acked := 0
		var failure error
		for i := 0; i < 200 && failure == nil; i++ {
			b := genBatch(rng, i)
			wb := e.NewBatch()
			for _, op := range b.ops {
				switch op.kind {
				case 's':
					wb.Set([]byte(op.key), []byte(op.val))
				case 'd':
					wb.Delete([]byte(op.key))
				case 'r':
					wb.DeleteRange([]byte(op.key), []byte(op.end))
				}
			}
			batches = append(batches, b)
			if err := wb.Commit(false); err != nil {
				failure = err
			} else {
				acked = i + 1
			}
			wb.Close()
		}
		if failure != nil {
			failures++
			if !errors.Is(failure, ErrFailed) {
				t.Fatalf("seed %d: commit failed with %v, want ErrFailed", seed, failure)
			}
			wb := e.NewBatch()
			wb.Set([]byte("x"), []byte("y"))
			if err := wb.Commit(true); !errors.Is(err, ErrFailed) {
				t.Fatalf("seed %d: commit on a failed engine: %v", seed, err)
			}
			wb.Close()
		}
		crashed := fs.Crash(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(seed, 4))})
		_ = e.Close() // may report the failure
		r, err := Open("db", Options{FS: crashed})
		if err != nil {
			t.Fatalf("seed %d: reopen: %v", seed, err)
		}
		got := map[string]string{}
		it := r.NewIter(nil, nil)
		for it.First(); it.Valid(); it.Next() {
			got[string(it.Key())] = string(it.Value())
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
		if err := checkSurvivors(batches, acked, got); err != nil {
			t.Fatalf("seed %d (%d attempted, %d acknowledged, failure %v): %v\nreproduce: go test ./core/pebbleengine -run TestFaultFSWriteErrors", seed, len(batches), acked, failure, err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if failures == 0 {
		t.Fatal("no write fault ever failed a commit")
	}
	t.Logf("%d of 20 runs failed stop", failures)
}
