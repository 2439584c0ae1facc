package raft

import (
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/plugin/tan"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
	"github.com/lni/vfs"
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
