package raft

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// TestExportImport: a two-shard cluster's shards are exported and imported
// into a new cluster, which then holds the same state (strings, a hash, a
// key with a TTL) on every replica; a second import is refused (NOTEMPTY);
// writes go on after the import.
func TestExportImport(t *testing.T) {
	for _, storage := range []string{"memory", "pebble"} {
		t.Run(storage, func(t *testing.T) {
			mut := func(cfg *Config) {
				cfg.Storage = storage
				cfg.PebbleFS = pebblevfs.NewMem()
			}
			src := newTestCluster(t, 2, mut)
			opts := consistency.Options{}
			for i := 0; i < 40; i++ {
				if r := src.cmd(i%3, opts, "SET", fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)); r.IsError() {
					t.Fatalf("SET: %v", r.Err)
				}
			}
			src.cmd(0, opts, "HSET", "h", "f", "1", "g", "2")
			src.cmd(0, opts, "SET", "ttl", "x", "EX", "1000")
			want, err := dumpAll(src)
			if err != nil {
				t.Fatal(err)
			}
			exports := make([][]byte, 2)
			for sh := range exports {
				if exports[sh], err = src.svcs[sh].Export(context.Background(), sh); err != nil {
					t.Fatal(err)
				}
			}
			src.close()

			dst := newTestCluster(t, 2, mut)
			for sh, e := range exports {
				l := dst.waitLeader(sh, -1)
				if err := dst.svcs[(l+1)%3].Import(context.Background(), sh, e); !errors.Is(err, ErrNotLeader) {
					t.Fatalf("import at a follower: %v, want ErrNotLeader", err)
				}
				if err := dst.svcs[l].Import(context.Background(), sh, e); err != nil {
					t.Fatalf("import shard %d: %v", sh, err)
				}
			}
			for i := range dst.svcs {
				got, err := dumpWait(dst, i, want)
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(got, want) {
					t.Fatalf("n%d after import: %d keys, want %d\n got %v\nwant %v", i+1, len(got), len(want), got, want)
				}
			}
			if r := dst.cmd(1, opts, "TTL", "ttl"); r.Kind != core.KindInt || r.Int <= 900 {
				t.Errorf("TTL after import = %s, want about 1000", str(r))
			}
			err = dst.svcs[dst.waitLeader(0, -1)].Import(context.Background(), 0, exports[0])
			var ce *core.Error
			if !errors.As(err, &ce) || ce.Code != CodeNotEmpty {
				t.Errorf("second import: %v, want %s", err, CodeNotEmpty)
			}
			if r := dst.cmd(0, opts, "INCR", "counter"); str(r) != "1" {
				t.Errorf("INCR after import = %s", str(r))
			}
		})
	}
}

// dumpAll is the union of the replicas' dumps (each shard on its replicas).
func dumpAll(c *testCluster) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range c.svcs {
		d, err := s.Dump(time.Now())
		if err != nil {
			return nil, err
		}
		maps.Copy(out, d)
	}
	return out, nil
}

// dumpWait waits (a few seconds) until node i's dump equals want, and
// returns its last dump.
func dumpWait(c *testCluster, i int, want map[string]string) (map[string]string, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := c.svcs[i].Dump(time.Now())
		if err != nil || maps.Equal(got, want) || time.Now().After(deadline) {
			return got, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
