package raft

import (
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// lockCounter counts the Pebble opens of each directory (an open locks the
// directory's LOCK file).
type lockCounter struct {
	pebblevfs.FS
	mu    sync.Mutex
	locks map[string]int
}

func (f *lockCounter) Lock(name string) (io.Closer, error) {
	f.mu.Lock()
	f.locks[filepath.Dir(name)]++
	f.mu.Unlock()
	return f.FS.Lock(name)
}

func (f *lockCounter) count(dir string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.locks[dir]
}

// TestRestartOpensStateMachineOnce: a node restarting with an on-disk
// state machine opens its Pebble directory once — the start-up check's
// open is the one Dragonboat's Open and the log store's read of the
// applied index use (it was opened three times: check, applied index,
// Open) — and the replica serves its data.
func TestRestartOpensStateMachineOnce(t *testing.T) {
	fs := &lockCounter{FS: pebblevfs.NewMem(), locks: map[string]int{}}
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.Storage = "pebble"
		cfg.PebbleFS = fs
	})
	lin := consistency.Options{}
	for i := range 10 {
		c.cmd(i%3, lin, "SET", fmt.Sprintf("k%d", i), fmt.Sprint(i))
	}
	r := (c.waitLeader(0, -1) + 1) % 3 // a follower
	dir := c.svcs[r].smDir(0)
	if err := c.svcs[r].Close(); err != nil {
		t.Fatal(err)
	}
	before := fs.count(dir)
	svc, err := New(c.cfgs[r])
	if err != nil {
		t.Fatal(err)
	}
	c.svcs[r] = svc
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		cmd := core.Cmd("GET", "k9")
		resp, err := c.do(r, consistency.Request{Cmd: &cmd, Opts: consistency.Options{Read: "stale"}})
		if err == nil && str(resp.Reply) == "9" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted n%d does not serve k9: %v %v", r+1, resp.Reply, err)
		}
	}
	if got := fs.count(dir) - before; got != 1 {
		t.Fatalf("the restart opened the state machine %d times, want 1", got)
	}
}
