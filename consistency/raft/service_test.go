package raft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"
	"github.com/lni/dragonboat/v4/logger"
	"github.com/lni/vfs"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/internal/freeport"
)

func quiet() {
	for _, p := range []string{"config", "dragonboat", "gossip", "logdb", "pebblekv", "raft",
		"raftpb", "registry", "rsm", "server", "settings", "tan", "transport", "grpc"} {
		logger.GetLogger(p).SetLevel(logger.ERROR)
	}
}

// memDisk is an in-memory disk with the GetDiskUsage MemFS lacks (Pebble
// logs an error every time it is missing).
type memDisk struct{ *vfs.MemFS }

func (memDisk) GetDiskUsage(string) (vfs.DiskUsage, error) {
	return vfs.DiskUsage{AvailBytes: 1 << 40, TotalBytes: 1 << 40}, nil
}

type noFaults struct{}

func (noFaults) MaybeError(vfs.Op) error { return nil }

// freePort returns a free loopback address below the kernel's ephemeral
// range (internal/freeport: a ":0" port released again may be taken as an
// outgoing connection's source port before the service listens on it).
func freePort(t testing.TB) string {
	t.Helper()
	a, err := freeport.Addrs(1)
	if err != nil {
		t.Fatal(err)
	}
	return a[0]
}

// testCluster is three Services in one process over Dragonboat's TCP
// transport on loopback, each with its own in-memory disk.
type testCluster struct {
	t     testing.TB
	cfgs  []Config
	svcs  []*Service
	clock atomic.Int64 // offset added to time.Now for proposer timestamps
}

func newTestCluster(t testing.TB, shards int, mutate func(*Config)) *testCluster {
	t.Helper()
	return newTestClusterN(t, 3, shards, mutate)
}

// newTestClusterN is newTestCluster with n nodes (replicas stay 3: nodes
// beyond the placement host nothing at first).
func newTestClusterN(t testing.TB, n, shards int, mutate func(*Config)) *testCluster {
	t.Helper()
	quiet()
	c := &testCluster{t: t}
	var nodes []Node
	for i := 0; i < n; i++ {
		nodes = append(nodes, Node{ID: consistency.NodeID(fmt.Sprintf("n%d", i+1)),
			RaftAddr: freePort(t), ClientAddr: fmt.Sprintf("client-n%d", i+1)})
	}
	clock := func() time.Time { return time.Now().Add(time.Duration(c.clock.Load())) }
	for i := range nodes {
		cfg := Config{
			NodeID: nodes[i].ID, Nodes: nodes, Shards: shards, Replicas: 3,
			Dir: "/" + string(nodes[i].ID), NodeHostID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i+1),
			RTT: 5 * time.Millisecond, FS: vfs.Wrap(memDisk{vfs.NewStrictMem()}, noFaults{}), LogDBShards: 1, SmallEngine: true,
			SnapshotEntries: 20, CompactionOverhead: 5, Clock: clock,
		}
		if mutate != nil {
			mutate(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	c.svcs = make([]*Service, n)
	// Registered before the start: the nodes that started are closed if
	// another fails to.
	t.Cleanup(c.close)
	c.start()
	for sh := 0; sh < shards; sh++ {
		c.waitLeader(sh, -1)
	}
	return c
}

// start starts the services of nodes idx (every node if idx is empty)
// concurrently, as a cluster would: each New waits for its peers to
// elect. It fails the test if one does not start.
func (c *testCluster) start(idx ...int) {
	c.t.Helper()
	if len(idx) == 0 {
		for i := range c.cfgs {
			idx = append(idx, i)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.cfgs))
	for _, i := range idx {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.svcs[i], errs[i] = New(c.cfgs[i])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *testCluster) close() {
	for _, s := range c.svcs {
		if s != nil {
			if err := s.Close(); err != nil {
				c.t.Log(err)
			}
		}
	}
}

// waitLeader waits until a node other than not (-1: any) leads shard sh and
// returns its index.
func (c *testCluster) waitLeader(sh, not int) int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, s := range c.svcs {
			if s == nil || i == not || s.closed.Load() {
				continue
			}
			if l, ok := s.Leader(sh); ok && l == s.cfg.NodeID {
				return i
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("no leader for shard %d", sh)
	return -1
}

func (c *testCluster) do(i int, req consistency.Request) (consistency.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return c.svcs[i].Do(ctx, req)
}

func (c *testCluster) cmd(i int, opts consistency.Options, name string, args ...string) core.Reply {
	c.t.Helper()
	cmd := core.Cmd(name, args...)
	resp, err := c.do(i, consistency.Request{Cmd: &cmd, Opts: opts})
	if err != nil {
		c.t.Fatalf("%s on n%d: %v", cmd, i+1, err)
	}
	return resp.Reply
}

func str(r core.Reply) string {
	switch r.Kind {
	case core.KindNil:
		return "(nil)"
	case core.KindStatus, core.KindBulk:
		return string(r.Str)
	case core.KindInt:
		return fmt.Sprint(r.Int)
	case core.KindError:
		return "ERR:" + string(r.Err.Code)
	}
	return fmt.Sprintf("%+v", r)
}

func TestServiceReadsWritesShards(t *testing.T) {
	c := newTestCluster(t, 2, nil)
	lin := consistency.Options{}
	for i := 0; i < 3; i++ { // every node takes writes and linearizable reads
		k := fmt.Sprintf("k%d", i)
		if got := str(c.cmd(i, lin, "SET", k, "v"+k)); got != "OK" {
			t.Fatalf("SET via n%d = %s", i+1, got)
		}
		for j := 0; j < 3; j++ {
			if got := str(c.cmd(j, lin, "GET", k)); got != "v"+k {
				t.Errorf("GET %s via n%d = %s, want v%s", k, j+1, got, k)
			}
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"MSET", []string{"{u1}:a", "1", "{u1}:b", "2"}, "OK"},
		{"MGET", []string{"{u1}:a", "{u1}:b"}, ""},
		{"MSET", []string{"k0", "1", "k1", "2"}, "OK"},          // k0 and k1 live on different shards: two-phase commit
		{"SUNIONSTORE", []string{"k0", "k1"}, "ERR:CROSSSHARD"}, // not split across shards
		{"NOSUCHCMD", []string{"x"}, "ERR:UNKNOWN"},
	} {
		r := c.cmd(0, lin, tc.name, tc.args...)
		if tc.name == "MGET" {
			if r.Kind != core.KindArray || len(r.Array) != 2 || str(r.Array[0]) != "1" || str(r.Array[1]) != "2" {
				t.Errorf("MGET = %+v", r)
			}
			continue
		}
		if got := str(r); got != tc.want {
			t.Errorf("%s %v = %s, want %s", tc.name, tc.args, got, tc.want)
		}
	}
	if core.ShardOf([]byte("k0"), 2) == core.ShardOf([]byte("k1"), 2) {
		t.Fatal("test assumes k0 and k1 on different shards")
	}
	// Transactions within a shard: a CAS that holds, then one that fails.
	txn := func(expect, nv string) core.Reply {
		tx := core.Txn{Conds: []core.Condition{{Key: []byte("{u1}:a"), Kind: core.CondValue, Value: []byte(expect)}},
			Cmds: []core.Command{core.Cmd("SET", "{u1}:a", nv), core.Cmd("SET", "{u1}:b", nv)}}
		resp, err := c.do(1, consistency.Request{Txn: &tx})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Reply
	}
	if r := txn("1", "3"); r.IsError() {
		t.Errorf("txn with a true condition: %+v", r.Err)
	}
	if r := txn("1", "4"); !r.IsError() || r.Err.Code != core.CodeConditionFailed {
		t.Errorf("txn with a false condition = %+v, want CONDFAILED", r)
	}
	if got := str(c.cmd(2, lin, "GET", "{u1}:b")); got != "3" {
		t.Errorf("after txn {u1}:b = %s, want 3", got)
	}
	// Stale reads are flagged.
	cmd := core.Cmd("GET", "k0")
	resp, err := c.do(2, consistency.Request{Cmd: &cmd, Opts: consistency.Options{Read: "stale"}})
	if err != nil || !resp.Stale {
		t.Errorf("stale read: stale=%v err=%v", resp.Stale, err)
	}
	resp, err = c.do(2, consistency.Request{Cmd: &cmd})
	if err != nil || resp.Stale {
		t.Errorf("linearizable read: stale=%v err=%v", resp.Stale, err)
	}
}

// The proposer's clock, stamped into the proposal, decides expiry on every
// replica.
func TestServiceTTLFollowsProposerClock(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	lin := consistency.Options{}
	c.cmd(0, lin, "SET", "ttl", "x", "PX", "1000")
	if got := str(c.cmd(1, lin, "GET", "ttl")); got != "x" {
		t.Fatalf("GET before expiry = %s", got)
	}
	c.clock.Add(int64(2 * time.Second)) // every node's clock jumps 2 s
	if got := str(c.cmd(2, lin, "GET", "ttl")); got != "(nil)" {
		t.Errorf("GET after the clock passed the TTL = %s, want (nil)", got)
	}
}

func TestServiceRedirectsToLeader(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.RedirectToLeader = true })
	l := c.waitLeader(0, -1)
	f := (l + 1) % 3
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if id, ok := c.svcs[f].Leader(0); ok && id == c.cfgs[l].NodeID {
			break
		}
	}
	cmd := core.Cmd("SET", "a", "1")
	_, err := c.do(f, consistency.Request{Cmd: &cmd})
	var rd *consistency.Redirect
	if !errors.As(err, &rd) || rd.Addr != c.cfgs[l].Nodes[l].ClientAddr {
		t.Fatalf("follower n%d answered %v, want a redirect to %s", f+1, err, c.cfgs[l].Nodes[l].ClientAddr)
	}
	if _, err := c.do(l, consistency.Request{Cmd: &cmd}); err != nil {
		t.Fatalf("leader: %v", err)
	}
	// Stale reads are served by any replica.
	get := core.Cmd("GET", "a")
	if _, err := c.do(f, consistency.Request{Cmd: &get, Opts: consistency.Options{Read: "stale"}}); err != nil {
		t.Errorf("stale read on follower: %v", err)
	}
}

// A leader crash: a new leader serves, and a node restarted from its disk
// recovers (through snapshots: SnapshotEntries is 20), with the in-memory
// and with the on-disk (Pebble) state machine.
func TestServiceFailoverAndRestart(t *testing.T) {
	for _, storage := range []string{"memory", "pebble"} {
		t.Run(storage, func(t *testing.T) { testFailoverAndRestart(t, storage) })
	}
}

func testFailoverAndRestart(t *testing.T, storage string) {
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.Storage = storage
		cfg.PebbleFS = pebblevfs.NewMem()
	})
	lin := consistency.Options{}
	for i := 0; i < 60; i++ {
		c.cmd(i%3, lin, "SET", fmt.Sprintf("k%d", i%7), fmt.Sprint(i))
	}
	l := c.waitLeader(0, -1)
	start := time.Now()
	if err := c.svcs[l].Close(); err != nil {
		t.Fatal(err)
	}
	nl := c.waitLeader(0, l)
	if got := str(c.cmd(nl, lin, "GET", "k6")); got != "55" {
		t.Errorf("after failover GET k6 = %s, want 55", got)
	}
	t.Logf("failover (real clock, RTT 5ms, election 10 RTT): new leader n%d serving %v after the crash", nl+1, time.Since(start).Round(time.Millisecond))
	c.cmd(nl, lin, "SET", "after", "crash")
	svc, err := New(c.cfgs[l])
	if err != nil {
		t.Fatal(err)
	}
	c.svcs[l] = svc
	deadline := time.Now().Add(10 * time.Second)
	for {
		cmd := core.Cmd("GET", "after")
		resp, err := c.do(l, consistency.Request{Cmd: &cmd, Opts: consistency.Options{Read: "stale"}})
		if err == nil && str(resp.Reply) == "crash" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted n%d did not catch up: %v %v", l+1, resp.Reply, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := str(c.cmd(l, lin, "GET", "k0")); got != "56" {
		t.Errorf("restarted node GET k0 = %s, want 56", got)
	}
}

func TestConfigErrors(t *testing.T) {
	nodes := []Node{{ID: "n1", RaftAddr: "a"}}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no dir", Config{NodeID: "n1", Nodes: nodes}},
		{"no nodes", Config{NodeID: "n1", Dir: "/x"}},
		{"not a member", Config{NodeID: "n9", Nodes: nodes, Dir: "/x", FS: vfs.NewMem()}},
		{"unknown bug", Config{NodeID: "n1", Nodes: nodes, Dir: "/x", Bug: "nope"}},
		{"unknown storage", Config{NodeID: "n1", Nodes: nodes, Dir: "/x", Storage: "tape"}},
	} {
		if s, err := New(tc.cfg); err == nil {
			s.Close()
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}

// TestServiceCrashKeepsAcknowledged: every node crashes at once, losing
// what it had not synced, both Dragonboat's log (its disk keeps synced
// data only) and the on-disk state machine's Pebble (its WAL is never
// synced per write: only what Sync made durable survives); after a
// restart every acknowledged write is there. Snapshots every 20 entries,
// so the log has been compacted several times (each time after a Sync)
// before the crash, and a state machine that lost its unsynced Updates
// must replay them from the log. Checked to fail with diskSM.Sync doing
// nothing: every state machine keeps nothing, and Dragonboat panics at the
// restart ("ss.OnDiskIndex (84) > s.onDiskInitIndex (0)": the log was
// compacted past it).
func TestServiceCrashKeepsAcknowledged(t *testing.T) {
	var logDisks []*vfs.MemFS
	var smDisks []*pebblevfs.MemFS
	c := newTestCluster(t, 1, func(cfg *Config) {
		mem := vfs.NewStrictMem()
		logDisks = append(logDisks, mem)
		cfg.FS = vfs.Wrap(memDisk{mem}, noFaults{})
		smDisks = append(smDisks, pebblevfs.NewCrashableMem())
		cfg.Storage, cfg.PebbleFS = "pebble", smDisks[len(smDisks)-1]
	})
	lin := consistency.Options{}
	const n = 95 // not a multiple of 20: the last Updates are after the last snapshot
	for i := 0; i < n; i++ {
		c.cmd(i%3, lin, "SET", fmt.Sprintf("k%d", i), fmt.Sprint(i))
	}
	// Crash: the state machine's disk as synced now, then the log's
	// (which holds every entry the state machine applied: Dragonboat
	// saves an entry before it applies it).
	behind := 0 // nodes whose state machine lost applied Updates
	for i, s := range c.svcs {
		sh := s.ShardID(0)
		v, _ := s.sms.Load(sh)
		applied, _ := v.(*diskSM).openApplied()
		crashed := smDisks[i].CrashClone(pebblevfs.CrashCloneCfg{})
		kept, err := (&Service{cfg: Config{Storage: "pebble", Dir: c.cfgs[i].Dir, PebbleFS: crashed}}).diskApplied(sh, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("n%d: applied %d, its state machine keeps %d after the crash", i+1, applied, kept)
		if kept < applied {
			behind++
		}
		logDisks[i].SetIgnoreSyncs(true)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		c.svcs[i] = nil
		logDisks[i].ResetToSyncedState()
		logDisks[i].SetIgnoreSyncs(false)
		c.cfgs[i].PebbleFS = crashed
	}
	if behind == 0 {
		t.Fatal("no state machine lost anything in the crash: nothing is replayed (the test checks nothing)")
	}
	c.start()
	c.waitLeader(0, -1)
	for i := 0; i < n; i++ {
		if got := str(c.cmd(i%3, lin, "GET", fmt.Sprintf("k%d", i))); got != fmt.Sprint(i) {
			t.Errorf("after the crash GET k%d = %s, want %d", i, got, i)
		}
	}
}
