package raft

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"
	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/plugin/tan"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
	"github.com/lni/vfs"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// syncCounter counts the fsyncs of a wrapped file system.
type syncCounter struct{ n atomic.Int64 }

func (c *syncCounter) MaybeError(op vfs.Op) error {
	if op == vfs.OpSync {
		c.n.Add(1)
	}
	return nil
}

// openTan opens a tan LogDB on a memory file system whose fsyncs are
// counted, raw or wrapped by tanStateFiller.
func openTan(t *testing.T, filled bool) (raftio.ILogDB, *syncCounter) {
	t.Helper()
	c := &syncCounter{}
	cfg := config.NodeHostConfig{Expert: config.ExpertConfig{FS: vfs.Wrap(vfs.NewStrictMem(), c), LogDB: config.GetTinyMemLogDBConfig()}}
	var f config.LogDBFactory = tan.Factory
	if filled {
		f = tanFactory{}
	}
	db, err := f.Create(cfg, nil, []string{"/logdb"}, []string{"/logdb"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, c
}

// TestTanStateFillerSyncs: the fsyncs tan does for each kind of update,
// raw and through the filler. Raw tan fsyncs every update that carries no
// State (Dragonboat's "unchanged"), and the commit-only change after it;
// the filler must leave only the fsyncs Raft needs (new entries, a term or
// vote change), and the state read back must be the last one saved.
func TestTanStateFillerSyncs(t *testing.T) {
	st := func(term, vote, commit uint64) pb.State { return pb.State{Term: term, Vote: vote, Commit: commit} }
	ents := func(from, to uint64) []pb.Entry {
		var out []pb.Entry
		for i := from; i <= to; i++ {
			out = append(out, pb.Entry{Index: i, Term: 1, Cmd: []byte("x")})
		}
		return out
	}
	steps := []struct {
		name       string
		ud         pb.Update
		raw, fills int64 // fsyncs wanted, raw tan and filled (-1: not checked)
	}{
		// The first save creates the replica's files (several fsyncs).
		{"first state and entries", pb.Update{State: st(1, 1, 0), EntriesToSave: ents(1, 2)}, -1, -1},
		// Raw tan now remembers an empty State for the replica...
		{"entries, no state", pb.Update{EntriesToSave: ents(3, 3)}, 1, 1},
		{"nothing new (messages only)", pb.Update{}, 0, 0},
		// ... so a commit-only change looks like a term change to it.
		{"commit only", pb.Update{State: st(1, 1, 3)}, 1, 0},
		{"nothing new again", pb.Update{}, 1, 0},
		{"commit only again", pb.Update{State: st(1, 1, 4)}, 1, 0},
		{"new term", pb.Update{State: st(2, 0, 4)}, 1, 1},
		{"vote", pb.Update{State: st(2, 2, 4)}, 1, 1},
		{"entries and commit", pb.Update{State: st(2, 2, 5), EntriesToSave: ents(4, 4)}, 1, 1},
	}
	for _, filled := range []bool{false, true} {
		db, c := openTan(t, filled)
		for _, s := range steps {
			ud := s.ud
			ud.ShardID, ud.ReplicaID = 1, 1
			before := c.n.Load()
			if err := db.SaveRaftState([]pb.Update{ud}, 1); err != nil {
				t.Fatal(err)
			}
			want := s.raw
			if filled {
				want = s.fills
			}
			if got := c.n.Load() - before; want >= 0 && got != want {
				t.Errorf("filled=%v, %s: %d fsyncs, want %d (go test -run TestTanStateFillerSyncs ./consistency/raft)", filled, s.name, got, want)
			}
		}
		rs, err := db.ReadRaftState(1, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if rs.State != st(2, 2, 5) {
			t.Errorf("filled=%v: state read back %+v, want the last saved %+v", filled, rs.State, st(2, 2, 5))
		}
	}
}

// TestTanStateFillerFill: fill puts the last saved State into updates
// that carry none, per replica, without changing the caller's slice.
func TestTanStateFillerFill(t *testing.T) {
	f := &tanStateFiller{states: map[replicaKey]pb.State{}}
	a1 := pb.State{Term: 1, Vote: 1, Commit: 5}
	b2 := pb.State{Term: 3, Vote: 2, Commit: 9}
	tests := []struct {
		name string
		in   []pb.Update
		want []pb.State
	}{
		{"unknown replica stays empty", []pb.Update{{ShardID: 1, ReplicaID: 1}}, []pb.State{{}}},
		{"states recorded", []pb.Update{{ShardID: 1, ReplicaID: 1, State: a1}, {ShardID: 2, ReplicaID: 2, State: b2}}, []pb.State{a1, b2}},
		{"filled per replica", []pb.Update{{ShardID: 2, ReplicaID: 2}, {ShardID: 1, ReplicaID: 1}, {ShardID: 1, ReplicaID: 2}}, []pb.State{b2, a1, {}}},
	}
	for _, tc := range tests {
		orig := append([]pb.Update(nil), tc.in...)
		out := f.fill(tc.in)
		var got []pb.State
		for _, u := range out {
			got = append(got, u.State)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: states %+v, want %+v", tc.name, got, tc.want)
		}
		if !reflect.DeepEqual(tc.in, orig) {
			t.Errorf("%s: the caller's updates changed", tc.name)
		}
	}
}

// openLazy opens Dragonboat's default LogDB on mem (fsyncs counted),
// through lazyCommitFactory (lazy) or as it is.
func openLazy(t *testing.T, mem *vfs.MemFS, lazy bool) (raftio.ILogDB, *syncCounter) {
	t.Helper()
	c := &syncCounter{}
	cfg := config.NodeHostConfig{Expert: config.ExpertConfig{FS: vfs.Wrap(mem, c), LogDB: config.GetTinyMemLogDBConfig(), Engine: config.GetDefaultEngineConfig()}}
	var db raftio.ILogDB
	var err error
	if lazy {
		db, err = lazyCommitFactory{}.Create(cfg, nil, []string{"/logdb"}, []string{"/logdb"})
	} else {
		db, err = newPebbleLogDB(cfg, nil, []string{"/logdb"}, []string{"/logdb"})
	}
	if err != nil {
		t.Fatal(err)
	}
	return db, c
}

// TestLazyCommitSyncs: the fsyncs of each kind of update, Dragonboat's
// default LogDB as it is and wrapped by lazyCommitLogDB, and the State
// read back after a crash that loses everything not synced: the wrapper
// must leave only the fsyncs Raft needs (entries, term or vote, snapshot)
// and never let the saved commit fall below a saved snapshot's index
// (Dragonboat panics at restart: raft.loadState).
func TestLazyCommitSyncs(t *testing.T) {
	st := func(term, vote, commit uint64) pb.State { return pb.State{Term: term, Vote: vote, Commit: commit} }
	ents := func(from, to uint64) []pb.Entry {
		var out []pb.Entry
		for i := from; i <= to; i++ {
			out = append(out, pb.Entry{Index: i, Term: 1, Cmd: []byte("x")})
		}
		return out
	}
	snap := func(index uint64) pb.Snapshot {
		return pb.Snapshot{Index: index, Term: 2, Type: pb.OnDiskStateMachine, Membership: pb.Membership{Addresses: map[uint64]string{1: "a"}}}
	}
	type step struct {
		name        string
		ud          pb.Update
		snapshot    bool  // SaveSnapshots instead of SaveRaftState
		raw, lazy   int64 // fsyncs wanted (-1: not checked)
		commitAfter uint64
	}
	steps := []step{
		{name: "first state and entries", ud: pb.Update{State: st(1, 1, 0), EntriesToSave: ents(1, 2)}, raw: -1, lazy: -1},
		{name: "commit only", ud: pb.Update{State: st(1, 1, 2)}, raw: 1, lazy: 0},
		{name: "nothing new (messages only)", ud: pb.Update{}, raw: 0, lazy: 0},
		{name: "entries, no state", ud: pb.Update{EntriesToSave: ents(3, 3)}, raw: 1, lazy: 1},
		{name: "commit only again", ud: pb.Update{State: st(1, 1, 3)}, raw: 1, lazy: 0},
		{name: "new term", ud: pb.Update{State: st(2, 0, 3)}, raw: 1, lazy: 1},
		{name: "vote", ud: pb.Update{State: st(2, 2, 3)}, raw: 1, lazy: 1},
		{name: "entries and commit", ud: pb.Update{State: st(2, 2, 4), EntriesToSave: ents(4, 6)}, raw: 1, lazy: 1},
		{name: "commit only to 6", ud: pb.Update{State: st(2, 2, 6)}, raw: 1, lazy: 0},
		// A snapshot at 6 (applied) while the saved commit is 4: the
		// wrapper saves commit 6 first (one more fsync).
		{name: "local snapshot", ud: pb.Update{Snapshot: snap(6)}, snapshot: true, raw: 1, lazy: 2},
	}
	for _, lazy := range []bool{false, true} {
		mem := vfs.NewStrictMem()
		db, c := openLazy(t, mem, lazy)
		for _, s := range steps {
			ud := s.ud
			ud.ShardID, ud.ReplicaID = 1, 1
			before := c.n.Load()
			var err error
			if s.snapshot {
				err = db.SaveSnapshots([]pb.Update{ud})
			} else {
				err = db.SaveRaftState([]pb.Update{ud}, 1)
			}
			if err != nil {
				t.Fatal(err)
			}
			want := s.raw
			if lazy {
				want = s.lazy
			}
			if got := c.n.Load() - before; want >= 0 && got != want {
				t.Errorf("lazy=%v, %s: %d fsyncs, want %d (go test -run TestLazyCommitSyncs ./consistency/raft)", lazy, s.name, got, want)
			}
		}
		// Crash: everything not synced is lost.
		mem.SetIgnoreSyncs(true)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		mem.ResetToSyncedState()
		mem.SetIgnoreSyncs(false)
		db, _ = openLazy(t, mem, lazy)
		ss, err := db.GetSnapshot(1, 1)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := db.ReadRaftState(1, 1, ss.Index)
		if err != nil {
			t.Fatal(err)
		}
		if rs.State.Term != 2 || rs.State.Vote != 2 || rs.State.Commit < ss.Index {
			t.Errorf("lazy=%v: after a crash, state %+v and snapshot %d: want term 2, vote 2, commit >= the snapshot's index", lazy, rs.State, ss.Index)
		}
		db.Close()
	}
}

// TestLazyCommitSnapshotOtherPartition: the State SaveSnapshots saves
// first goes through the save context of the step worker that owns the
// shard. Dragonboat's default LogDB binds a worker's context to one LogDB
// partition; saving shard 2's State through worker 1 after worker 1 saved
// shard 16 (partition 0) panicked "pwb.db != r.db" (seen in
// TestRaftRebalanceUnderLoad).
func TestLazyCommitSnapshotOtherPartition(t *testing.T) {
	db, _ := openLazy(t, vfs.NewStrictMem(), true)
	defer db.Close()
	l := db.(*lazyCommitLogDB)
	ents := []pb.Entry{{Index: 1, Term: 1, Cmd: []byte("x")}, {Index: 2, Term: 1, Cmd: []byte("x")}}
	for _, shard := range []uint64{16, 2} {
		ud := pb.Update{ShardID: shard, ReplicaID: 1, State: pb.State{Term: 1, Vote: 1}, EntriesToSave: ents}
		if err := db.SaveRaftState([]pb.Update{ud}, l.workerOf(shard)); err != nil {
			t.Fatal(err)
		}
		// Commit only: deferred, so the snapshot below must force it.
		ud = pb.Update{ShardID: shard, ReplicaID: 1, State: pb.State{Term: 1, Vote: 1, Commit: 2}}
		if err := db.SaveRaftState([]pb.Update{ud}, l.workerOf(shard)); err != nil {
			t.Fatal(err)
		}
	}
	ss := pb.Snapshot{Index: 2, Term: 1, Type: pb.OnDiskStateMachine, Membership: pb.Membership{Addresses: map[uint64]string{1: "a"}}}
	if err := db.SaveSnapshots([]pb.Update{{ShardID: 2, ReplicaID: 1, Snapshot: ss}}); err != nil {
		t.Fatal(err)
	}
	rs, err := db.ReadRaftState(2, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if rs.State.Commit < 2 {
		t.Fatalf("shard 2's saved commit %d is below its snapshot's index 2", rs.State.Commit)
	}
}

// TestLazyCommitRestartStreamsSnapshot: a replica restarted with the lazy
// store must be able to send a snapshot before it commits anything new.
// Dragonboat restarts an on-disk state machine replica with its applied
// index = the saved commit (or the snapshot's index) and refuses to
// stream a snapshot until it has applied up to the index the state
// machine reported from Open (rsm ReadyToStream: "not ready to stream
// snapshot"). With the commit-only State of the last write never saved
// (lazyCommitLogDB defers it; the node stopped first), the restarted
// leader could not commit a new entry without a follower that needs a
// snapshot, nor send the snapshot before committing: the shard hung
// (TestCorruptRaftRebuilt in nodes, 2 of 3 runs). Here n3 stops early,
// the leader compacts its log past n3's, writes 3 more entries, and the
// leader and n3 restart with the third node down.
func TestLazyCommitRestartStreamsSnapshot(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.Storage = "pebble"
		cfg.PebbleFS = pebblevfs.NewMem()
		cfg.LogDB = LogDBPebble
		cfg.SnapshotEntries = 1000 // only the snapshot requested below
	})
	lin := consistency.Options{}
	const behind = 2 // n3: its log ends before the compacted part
	if err := c.svcs[behind].Close(); err != nil {
		t.Fatal(err)
	}
	l := c.waitLeader(0, behind)
	for i := range 5 {
		c.cmd(l, lin, "SET", fmt.Sprint("k", i), fmt.Sprint("v", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	idx, err := c.svcs[l].nh.SyncRequestSnapshot(ctx, c.svcs[l].ShardID(0),
		dragonboat.SnapshotOption{OverrideCompactionOverhead: true, CompactionOverhead: 0})
	cancel()
	if err != nil {
		t.Fatalf("snapshot at n%d: %v", l+1, err)
	}
	// Applied after the snapshot: the last one's commit-only State is
	// deferred, so the leader's saved commit trails its state machine.
	for i := 5; i < 8; i++ {
		c.cmd(l, lin, "SET", fmt.Sprint("k", i), fmt.Sprint("v", i))
	}
	other := 1 - l
	for _, i := range []int{other, l} {
		if err := c.svcs[i].Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Restart the leader and n3 (each New waits for nothing from the
	// other, but start them together as a cluster would).
	c.start(l, behind)
	c.svcs[other] = nil // closed
	const repro = "go test -count=1 -run 'TestLazyCommitRestartStreamsSnapshot$' ./consistency/raft"
	cmd := core.Cmd("SET", "after", "restart")
	var last error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := c.do(l, consistency.Request{Cmd: &cmd, Opts: lin})
		if err == nil && str(resp.Reply) == "OK" {
			break
		}
		if err == nil {
			err = fmt.Errorf("reply %s", str(resp.Reply))
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("n%d and n3 restarted (snapshot at %d, n3 behind it): no write within 30 s, last: %v\n%s", l+1, idx, last, repro)
		}
	}
	// n3 caught up from the leader's snapshot and log.
	waitStale(t, c, behind, "k7", "v7")
	waitStale(t, c, behind, "after", "restart")
}

// TestLazyCommitReadRaisesCommit: at a restart the commit read back is
// raised to the index the replica's on-disk state machine applied, capped
// at the log's last entry, never lowered; the raised commit is written
// with the replica's next synced save; an error reading the state machine
// fails the read.
func TestLazyCommitReadRaisesCommit(t *testing.T) {
	ents := func(from, to uint64) []pb.Entry {
		var out []pb.Entry
		for i := from; i <= to; i++ {
			out = append(out, pb.Entry{Index: i, Term: 1, Cmd: []byte("x")})
		}
		return out
	}
	errBroken := fmt.Errorf("broken state machine")
	tests := []struct {
		name    string
		applied uint64 // the state machine's applied index
		err     error  // from applied
		hook    bool   // an applied hook at all (false: nil, as without on-disk state machines)
		want    uint64 // commit read back (saved: 3, log 1..6)
	}{
		{"no hook", 5, nil, false, 3},
		{"memory state machine", 0, nil, true, 3},
		{"behind the saved commit", 2, nil, true, 3},
		{"at the saved commit", 3, nil, true, 3},
		{"ahead of the saved commit", 5, nil, true, 5},
		{"at the last entry", 6, nil, true, 6},
		{"beyond the log", 9, nil, true, 6},
		{"error", 5, errBroken, true, 0},
	}
	for _, tc := range tests {
		mem := vfs.NewStrictMem()
		db, _ := openLazy(t, mem, true)
		l := db.(*lazyCommitLogDB)
		ud := pb.Update{ShardID: 1, ReplicaID: 1, State: pb.State{Term: 1, Vote: 1, Commit: 3}, EntriesToSave: ents(1, 6)}
		if err := db.SaveRaftState([]pb.Update{ud}, 1); err != nil {
			t.Fatal(err)
		}
		if tc.hook {
			l.applied = func(shardID, replicaID uint64) (uint64, error) {
				if shardID != 1 || replicaID != 1 {
					t.Errorf("%s: applied asked for shard %d replica %d", tc.name, shardID, replicaID)
				}
				return tc.applied, tc.err
			}
		}
		rs, err := db.ReadRaftState(1, 1, 0)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: ReadRaftState error %v, want %v (go test -run TestLazyCommitReadRaisesCommit ./consistency/raft)", tc.name, err, tc.err)
			}
			db.Close()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if rs.State.Commit != tc.want || rs.State.Term != 1 || rs.State.Vote != 1 {
			t.Errorf("%s: state read %+v, want term 1, vote 1, commit %d (go test -run TestLazyCommitReadRaisesCommit ./consistency/raft)", tc.name, rs.State, tc.want)
		}
		// The next synced save (new entries, no State) writes the raised
		// commit; a crash keeps it.
		ud = pb.Update{ShardID: 1, ReplicaID: 1, EntriesToSave: ents(7, 7)}
		if err := db.SaveRaftState([]pb.Update{ud}, 1); err != nil {
			t.Fatal(err)
		}
		mem.SetIgnoreSyncs(true)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		mem.ResetToSyncedState()
		mem.SetIgnoreSyncs(false)
		raw, _ := openLazy(t, mem, false)
		rs, err = raw.ReadRaftState(1, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if rs.State.Commit != tc.want {
			t.Errorf("%s: commit saved after the next entries %d, want %d (go test -run TestLazyCommitReadRaisesCommit ./consistency/raft)", tc.name, rs.State.Commit, tc.want)
		}
		raw.Close()
	}
}
