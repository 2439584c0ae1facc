package raft

import (
	"sync"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/plugin/tan"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
)

// LogDB kinds (Config.LogDB, namespace parameter logdb).
const (
	// LogDBPebble is Dragonboat's default LogDB (Pebble): it fsyncs every
	// saved update, a commit-index-only state change included.
	LogDBPebble = "pebble"
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
