package raft

import (
	"errors"
	"fmt"
	"sync"
	_ "unsafe" // go:linkname, for Dragonboat's default LogDB (newPebbleLogDB)

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/plugin/tan"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
)

// LogDB kinds (Config.LogDB, namespace parameter logdb).
const (
	// LogDBPebble (the default: Config.LogDB "") is Dragonboat's default
	// LogDB (Pebble) wrapped by lazyCommitLogDB: a state update that only
	// moves the commit index is not written on its own (no fsync); it is
	// written with the replica's next synced save (new entries, a term or
	// vote change, a snapshot).
	LogDBPebble = "pebble"
	// LogDBPebbleSync is Dragonboat's default LogDB as it is: it fsyncs
	// every saved update, a commit-index-only state change included. Same
	// files as LogDBPebble: a NodeHost directory can switch between them.
	LogDBPebbleSync = "pebble-sync"
	// LogDBTan is Dragonboat's tan LogDB (plugin/tan), one log file per
	// replica, wrapped by tanStateFiller: it fsyncs new entries, snapshots
	// and term or vote changes, not a commit-index-only change (as etcd's
	// raft.MustSync).
	LogDBTan = "tan"
)

// tanFactory creates tan LogDBs wrapped by tanStateFiller.
type tanFactory struct{}

var _ config.LogDBFactory = tanFactory{}

// Create creates the tan LogDB.
func (tanFactory) Create(cfg config.NodeHostConfig, cb config.LogDBCallback, dirs, wals []string) (raftio.ILogDB, error) {
	db, err := tan.Factory.Create(cfg, cb, dirs, wals)
	if err != nil {
		return nil, err
	}
	return &tanStateFiller{ILogDB: db, states: map[replicaKey]pb.State{}}, nil
}

// Name is tan's (Dragonboat records it in the NodeHost directory and
// refuses to open the directory with another kind).
func (tanFactory) Name() string { return tan.Factory.Name() }

type replicaKey struct{ shard, replica uint64 }

// tanStateFiller works around tan's fsync decision in the pinned
// Dragonboat (internal/tan/db.go, db.write): an update whose raft State
// did not change carries an empty State (internal/raft/peer.go
// getUpdate), and tan compares that empty State with the replica's saved
// one: their terms differ, so it counts as a term change and fsyncs —
// nearly every update, about 2 fsyncs per write per node at 1 client (and
// it then remembers the empty State, so the next real one is a "change"
// too). The filler puts the replica's last saved State into updates that
// carry none: tan then skips updates that change nothing and does not
// fsync a commit-index-only change. The State filled in is the one the
// replica already saved (the same term, vote and commit), so what tan
// writes and replays is unchanged in meaning.
type tanStateFiller struct {
	raftio.ILogDB
	mu     sync.Mutex // SaveRaftState runs on several step workers at once
	states map[replicaKey]pb.State
}

var _ raftio.ILogDB = (*tanStateFiller)(nil)

// fill returns updates with the last saved State filled into those that
// carry none, and records the States they carry. The caller's slice is
// not changed (Dragonboat goes on using its updates after the save).
func (f *tanStateFiller) fill(updates []pb.Update) []pb.Update {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []pb.Update
	for i, ud := range updates {
		k := replicaKey{ud.ShardID, ud.ReplicaID}
		if !pb.IsEmptyState(ud.State) {
			f.states[k] = ud.State
			continue
		}
		st, ok := f.states[k]
		if !ok {
			continue
		}
		if out == nil {
			out = append([]pb.Update(nil), updates...)
		}
		out[i].State = st
	}
	if out == nil {
		return updates
	}
	return out
}

// SaveRaftState saves the updates with their States filled in.
func (f *tanStateFiller) SaveRaftState(updates []pb.Update, workerID uint64) error {
	return f.ILogDB.SaveRaftState(f.fill(updates), workerID)
}

// SaveSnapshots saves the snapshot updates with their States filled in.
func (f *tanStateFiller) SaveSnapshots(updates []pb.Update) error {
	return f.ILogDB.SaveSnapshots(f.fill(updates))
}

// ReadRaftState reads a replica's saved state (at its start) and
// remembers its State.
func (f *tanStateFiller) ReadRaftState(shardID, replicaID, lastIndex uint64) (raftio.RaftState, error) {
	rs, err := f.ILogDB.ReadRaftState(shardID, replicaID, lastIndex)
	if err == nil && !pb.IsEmptyState(rs.State) {
		f.mu.Lock()
		f.states[replicaKey{shardID, replicaID}] = rs.State
		f.mu.Unlock()
	}
	return rs, err
}

// RemoveNodeData removes a replica's data and forgets its State.
func (f *tanStateFiller) RemoveNodeData(shardID, replicaID uint64) error {
	f.mu.Lock()
	delete(f.states, replicaKey{shardID, replicaID})
	f.mu.Unlock()
	return f.ILogDB.RemoveNodeData(shardID, replicaID)
}

// newPebbleLogDB is Dragonboat's default LogDB constructor
// (internal/logdb.NewDefaultLogDB, what NodeHost uses when
// ExpertConfig.LogDBFactory is nil). Dragonboat does not export it; the
// signature is that of the pinned version (go.mod), and
// TestLazyCommitSyncs exercises it.
//
//go:linkname newPebbleLogDB github.com/lni/dragonboat/v4/internal/logdb.NewDefaultLogDB
func newPebbleLogDB(cfg config.NodeHostConfig, cb config.LogDBCallback, dirs, lldirs []string) (raftio.ILogDB, error)

// errLogDBSelfCheck: Dragonboat's self check of its LogDB failed (the
// check NodeHost runs on its default LogDB, server.ErrLogDBBrokenChange).
var errLogDBSelfCheck = errors.New("raft: LogDB self check failed (Dragonboat's broken-change check)")

// lazyCommitFactory creates Dragonboat's default LogDB wrapped by
// lazyCommitLogDB.
type lazyCommitFactory struct {
	beforeSave func() // Config.BeforeSave
	// applied is lazyCommitLogDB.applied (nil: no on-disk state machines).
	applied func(shardID, replicaID uint64) (uint64, error)
}

var _ config.LogDBFactory = lazyCommitFactory{}

// Create creates the LogDB and runs Dragonboat's self check on it (which
// NodeHost skips for a LogDB from a factory).
func (f lazyCommitFactory) Create(cfg config.NodeHostConfig, cb config.LogDBCallback, dirs, wals []string) (raftio.ILogDB, error) {
	db, err := newPebbleLogDB(cfg, cb, dirs, wals)
	if err != nil {
		return nil, fmt.Errorf("raft: open LogDB: %w", err)
	}
	if c, ok := db.(interface{ SelfCheckFailed() (bool, error) }); ok {
		failed, err := c.SelfCheckFailed()
		if err == nil && failed {
			err = errLogDBSelfCheck
		}
		if err != nil {
			db.Close()
			return nil, err
		}
	}
	l := newLazyCommitLogDB(db)
	l.beforeSave = f.beforeSave
	l.applied = f.applied
	l.execShards = cfg.Expert.Engine.ExecShards // set: NodeHostConfig.Prepare fills it before the LogDB is created
	return l, nil
}

// Name is the default LogDB's ("sharded-pebble"): the files are the same.
func (lazyCommitFactory) Name() string { return "sharded-pebble" }

// lazyCommitLogDB wraps a LogDB so that a Raft state update that only
// moves the commit index is not saved on its own. Dragonboat's default
// LogDB commits every SaveRaftState with an fsync, so at one client each
// write cost a node two fsyncs: its entries, then the state update that
// moves the commit index (internal/logdb/db.go saveState). etcd's
// raft.MustSync skips the second: the commit index is volatile in Raft,
// re-learned from the leader after a restart.
//
// The rules, per replica, with saved = the last State handed to the LogDB
// and latest = the last State Dragonboat produced:
//   - an update with no entries and no snapshot whose State differs from
//     saved in the commit index only is saved without its State (nothing
//     is written, no fsync); latest remembers it;
//   - an update that is synced anyway (entries or a snapshot) and carries
//     no State gets latest, so the persisted commit trails by one save at
//     most;
//   - a term or vote change is saved as it comes (with its fsync): those
//     must be durable before any message that depends on them is sent;
//   - before a snapshot record is saved (SaveSnapshots), a State whose
//     commit is at least the snapshot's index is saved and synced:
//     Dragonboat restarts a replica with committed = the snapshot's index
//     and panics if the saved commit is lower (internal/raft raft.loadState);
//   - at a restart (ReadRaftState) the commit read back is raised to the
//     index the replica's on-disk state machine has applied (applied),
//     capped at the last entry of the log: see below.
//
// After a stop or a crash the saved commit may be lower than the entries
// the state machine applied (the last commit-only State was deferred and
// never saved). Dragonboat skips the entries an on-disk state machine
// already holds (internal/rsm entryInInitDiskSM), but it refuses to send
// a snapshot (rsm ReadyToStream, "not ready to stream snapshot") until
// the replica has applied up to the index the state machine reported from
// Open, and it applies only up to its commit index. A restarted leader
// whose saved commit trailed its state machine could then neither send a
// snapshot to a follower that needed one nor commit anything without that
// follower when the third replica was down: the shard hung for good
// (TestLazyCommitRestartStreamsSnapshot; TestCorruptRaftRebuilt in nodes
// failed 2 of 3 runs so). Raising the commit is safe: an entry the state
// machine applied was committed, and Dragonboat saves (synced) every
// entry before it applies it (internal/raft peer.go setFastApply applies
// early only entries saved by an earlier update, validateUpdate refuses
// to apply an entry not saved), and a committed entry is never truncated,
// so the log holds exactly the committed entries up to that index. A
// memory state machine replays its log up to the commit and needs none
// of this (applied reports 0).
type lazyCommitLogDB struct {
	raftio.ILogDB
	// mu is held shared by SaveRaftState (step workers save at once) and
	// exclusively by SaveSnapshots' state save, so that no other save of
	// a State is in flight while it writes latest: a term or vote must
	// never be overwritten by an older one.
	mu sync.RWMutex
	// smu guards states (several step workers fill at once).
	smu    sync.Mutex
	states map[replicaKey]*lazyState
	// beforeSave is Config.BeforeSave (nil: none).
	beforeSave func()
	// execShards is Dragonboat's step-worker count: shard s is stepped by
	// worker s%execShards+1, whose save context (write batch) the default
	// LogDB binds to that shard's LogDB partition for good.
	execShards uint64
	// applied returns the index of the last entry the on-disk state
	// machine of a replica holds (0: none, or a memory state machine);
	// nil: none. Called by ReadRaftState, before Dragonboat opens the
	// state machine.
	applied func(shardID, replicaID uint64) (uint64, error)
}

// lazyState is a replica's saved and latest State (lazyCommitLogDB).
type lazyState struct{ saved, latest pb.State }

var _ raftio.ILogDB = (*lazyCommitLogDB)(nil)

func newLazyCommitLogDB(db raftio.ILogDB) *lazyCommitLogDB {
	return &lazyCommitLogDB{ILogDB: db, states: map[replicaKey]*lazyState{}}
}

// filter returns the updates to save: commit-only States taken out,
// deferred States put into updates that are synced anyway. The caller's
// slice is not changed (Dragonboat goes on using its updates).
func (l *lazyCommitLogDB) filter(updates []pb.Update) []pb.Update {
	l.smu.Lock()
	defer l.smu.Unlock()
	var out []pb.Update
	set := func(i int, st pb.State) {
		if out == nil {
			out = append([]pb.Update(nil), updates...)
		}
		out[i].State = st
	}
	for i := range updates {
		ud := &updates[i]
		k := replicaKey{ud.ShardID, ud.ReplicaID}
		s := l.states[k]
		empty := pb.IsEmptyState(ud.State)
		synced := len(ud.EntriesToSave) > 0 || !pb.IsEmptySnapshot(ud.Snapshot)
		switch {
		case s == nil:
			if !empty {
				l.states[k] = &lazyState{saved: ud.State, latest: ud.State}
			}
		case !empty && !synced && ud.State.Term == s.saved.Term && ud.State.Vote == s.saved.Vote:
			s.latest = ud.State // commit only: deferred
			set(i, pb.State{})
		case empty && synced && s.latest != s.saved:
			st := s.latest
			st.Commit = max(st.Commit, s.saved.Commit)
			s.saved, s.latest = st, st
			set(i, st)
		case !empty:
			st := ud.State
			if st.Commit < s.saved.Commit { // defensive: the saved commit never goes back
				st.Commit = s.saved.Commit
				set(i, st)
			}
			s.saved, s.latest = st, st
		}
	}
	if out == nil {
		return updates
	}
	return out
}

// SaveRaftState saves the updates, commit-only State changes deferred.
func (l *lazyCommitLogDB) SaveRaftState(updates []pb.Update, workerID uint64) error {
	if l.beforeSave != nil && len(updates) > 0 {
		l.beforeSave()
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.ILogDB.SaveRaftState(l.filter(updates), workerID)
}

// SaveSnapshots first saves (synced) a State whose commit covers each
// snapshot's index where the saved one does not, then the snapshots.
func (l *lazyCommitLogDB) SaveSnapshots(updates []pb.Update) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var force []pb.Update
	l.smu.Lock()
	for _, ud := range updates {
		s := l.states[replicaKey{ud.ShardID, ud.ReplicaID}]
		if s == nil || pb.IsEmptySnapshot(ud.Snapshot) || s.saved.Commit >= ud.Snapshot.Index {
			continue
		}
		st := s.latest
		st.Commit = max(st.Commit, s.saved.Commit, ud.Snapshot.Index)
		s.saved, s.latest = st, st
		force = append(force, pb.Update{ShardID: ud.ShardID, ReplicaID: ud.ReplicaID, State: st})
	}
	l.smu.Unlock()
	// Each State is saved through the save context of the step worker
	// that owns its shard (free: mu is held exclusively). Any other
	// worker's context may hold a write batch of another LogDB partition,
	// and the default LogDB panics on it ("pwb.db != r.db": seen with
	// worker 1 for every shard, TestRaftRebalanceUnderLoad).
	for _, ud := range force {
		if err := l.ILogDB.SaveRaftState([]pb.Update{ud}, l.workerOf(ud.ShardID)); err != nil {
			return fmt.Errorf("raft: save state of shard %d before snapshot: %w", ud.ShardID, err)
		}
	}
	return l.ILogDB.SaveSnapshots(updates)
}

// workerOf is the step worker (1-based) that saves shardID's updates.
func (l *lazyCommitLogDB) workerOf(shardID uint64) uint64 {
	if l.execShards == 0 {
		return 1
	}
	return shardID%l.execShards + 1
}

// ReadRaftState reads a replica's saved state (at its start; lastIndex
// is the index of its latest snapshot), raises the commit to what its
// on-disk state machine applied (at most the log's last index; see
// lazyCommitLogDB), and remembers the State read as saved and the raised
// one as latest (saved with the replica's next synced save).
func (l *lazyCommitLogDB) ReadRaftState(shardID, replicaID, lastIndex uint64) (raftio.RaftState, error) {
	rs, err := l.ILogDB.ReadRaftState(shardID, replicaID, lastIndex)
	if err != nil || pb.IsEmptyState(rs.State) {
		return rs, err
	}
	saved := rs.State
	if l.applied != nil {
		applied, err := l.applied(shardID, replicaID)
		if err != nil {
			return raftio.RaftState{}, fmt.Errorf("raft: shard %d replica %d: the state machine's applied index: %w", shardID, replicaID, err)
		}
		rs.State.Commit = raiseCommit(rs, lastIndex, applied)
	}
	l.smu.Lock()
	l.states[replicaKey{shardID, replicaID}] = &lazyState{saved: saved, latest: rs.State}
	l.smu.Unlock()
	return rs, nil
}

// raiseCommit returns rs's commit raised to applied, capped at the last
// index of the log rs describes (Dragonboat's LogReader: the entries
// FirstIndex..FirstIndex+EntryCount-1 after the snapshot at snapshotIndex;
// raft.loadState panics on a commit beyond it). The commit never goes
// down.
func raiseCommit(rs raftio.RaftState, snapshotIndex, applied uint64) uint64 {
	last := snapshotIndex
	if rs.EntryCount > 0 {
		last = max(last, rs.FirstIndex+rs.EntryCount-1)
	}
	return max(rs.State.Commit, min(applied, last))
}

// RemoveNodeData removes a replica's data and forgets its State.
func (l *lazyCommitLogDB) RemoveNodeData(shardID, replicaID uint64) error {
	l.forget(shardID, replicaID)
	return l.ILogDB.RemoveNodeData(shardID, replicaID)
}

// ImportSnapshot imports a snapshot (which writes its own State) and
// forgets the replica's.
func (l *lazyCommitLogDB) ImportSnapshot(ss pb.Snapshot, replicaID uint64) error {
	l.forget(ss.ShardID, replicaID)
	return l.ILogDB.ImportSnapshot(ss, replicaID)
}

func (l *lazyCommitLogDB) forget(shardID, replicaID uint64) {
	l.smu.Lock()
	delete(l.states, replicaKey{shardID, replicaID})
	l.smu.Unlock()
}
