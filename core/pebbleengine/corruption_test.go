package pebbleengine

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dialkv/dialkv/core"
)

// rawRecordKey finds the engine key holding user key's record by scanning
// the engine (the Store's key layout stays the Store's business: we only
// rely on the record's engine key ending with the user key and being the
// only one that does).
func rawRecordKey(t *testing.T, e core.Engine, user string) []byte {
	t.Helper()
	var found [][]byte
	it := e.NewIter(nil, nil)
	for it.First(); it.Valid(); it.Next() {
		if bytes.HasSuffix(it.Key(), []byte(user)) && len(it.Key()) == len(user)+1 {
			found = append(found, bytes.Clone(it.Key()))
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 {
		t.Fatalf("found %d engine keys for %q: %q", len(found), user, found)
	}
	return found[0]
}

// TestStoreCorruption flips bytes of stored records directly in Pebble,
// below the Store, one position at a time: every read of the damaged key
// must answer CodeCorruption, never data, and Dump must fail.
func TestStoreCorruption(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	cases := []struct {
		name  string
		write core.Command
		read  core.Command
	}{
		{"string", core.Cmd("SET", "key", "hello world"), core.Cmd("GET", "key")},
		{"string with ttl", core.Cmd("SET", "key", "v", "EX", "100"), core.Cmd("GET", "key")},
		{"set", core.Cmd("SADD", "key", "a", "b", "c"), core.Cmd("SMEMBERS", "key")},
		{"list", core.Cmd("RPUSH", "key", "a", "b"), core.Cmd("LRANGE", "key", "0", "-1")},
		{"hash", core.Cmd("HSET", "key", "f", "v", "g", "w"), core.Cmd("HGETALL", "key")},
		{"zset", core.Cmd("ZADD", "key", "1", "a", "2", "b"), core.Cmd("ZRANGE", "key", "0", "-1")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !core.KnownCommand(c.write.Name) || !core.KnownCommand(c.read.Name) {
				t.Skipf("core does not implement %s/%s yet", c.write.Name, c.read.Name)
			}
			e, err := Open("db", Options{FS: vfs.NewMem(), Sync: core.SyncNever})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			s, err := core.NewStore(e, core.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if r := s.Apply(now, c.write); r.IsError() {
				t.Fatalf("%s: %v", c.write, r.Err)
			}
			good := s.Apply(now, c.read)
			if good.IsError() {
				t.Fatalf("%s: %v", c.read, good.Err)
			}
			rk := rawRecordKey(t, e, "key")
			orig, err := e.Get(rk)
			if err != nil {
				t.Fatal(err)
			}
			for pos := range orig {
				for _, mask := range []byte{0x01, 0x80, 0xff} {
					bad := bytes.Clone(orig)
					bad[pos] ^= mask
					put(t, e, rk, bad)
					r := s.Apply(now, c.read)
					if !r.IsError() || r.Err.Code != core.CodeCorruption {
						t.Fatalf("byte %d of %d ^ %#x: %s answered %s, want CORRUPTION", pos, len(orig), mask, c.read, renderReply(r))
					}
					if _, err := s.Dump(now); err == nil {
						t.Fatalf("byte %d ^ %#x: Dump succeeded over a corrupted record", pos, mask)
					}
				}
			}
			for _, n := range []int{0, 1, len(orig) - 1} { // truncated records
				put(t, e, rk, orig[:n])
				if r := s.Apply(now, c.read); !r.IsError() || r.Err.Code != core.CodeCorruption {
					t.Fatalf("record truncated to %d bytes: %s answered %s", n, c.read, renderReply(r))
				}
			}
			put(t, e, rk, orig) // repaired: the data is back
			if r := s.Apply(now, c.read); renderReply(r) != renderReply(good) {
				t.Fatalf("after repair: %s, want %s", renderReply(r), renderReply(good))
			}
			if s.Stats().CorruptionsSeen == 0 {
				t.Error("Stats.CorruptionsSeen stayed 0")
			}
		})
	}
}

func put(t *testing.T, e core.Engine, k, v []byte) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	b.Set(k, v)
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
}

// TestStoreSeesPebbleCorruption: a damaged sstable block (Pebble's own
// checksum fails) reaches a Store reply as CodeCorruption too.
func TestStoreSeesPebbleCorruption(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	fs := vfs.NewMem()
	e, err := Open("db", Options{FS: fs, Sync: core.SyncNever, CacheSize: 1, ValueCacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := core.NewStore(e, core.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if r := s.Apply(now, core.Cmd("SET", fmt.Sprintf("k%02d", i), strings.Repeat(fmt.Sprint(i), 300))); r.IsError() {
			t.Fatal(r.Err)
		}
	}
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if n := flipSSTByte(t, fs, "db", 100); n == 0 {
		t.Fatal("no sstable to corrupt")
	}
	e, err = Open("db", Options{FS: fs, CacheSize: 1, ValueCacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// NewStore itself reads (metadata, key count): it must fail or later
	// reads must fail, never return data from the damaged block.
	s, err = core.NewStore(e, core.Limits{})
	if err != nil {
		if core.AsError(err).Code != core.CodeCorruption {
			t.Fatalf("NewStore: %v (code %s), want corruption", err, core.AsError(err).Code)
		}
		return
	}
	r := s.Apply(now, core.Cmd("GET", "k00"))
	if !r.IsError() || r.Err.Code != core.CodeCorruption {
		t.Fatalf("GET over a damaged block: %s, want CORRUPTION", renderReply(r))
	}
}

// flipSSTByte flips the byte at off in every sstable under dir and returns
// how many it changed.
func flipSSTByte(t *testing.T, fs vfs.FS, dir string, off int64) int {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range names {
		if !strings.HasSuffix(name, ".sst") {
			continue
		}
		f, err := fs.OpenReadWrite(fs.PathJoin(dir, name), vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0x5a
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		n++
	}
	return n
}
