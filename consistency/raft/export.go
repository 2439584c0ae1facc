package raft

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Export and import of a shard's contents, for backups that a new cluster
// can be restored from (docs/operations.md).
//
// An export is taken through a linearizable read (ReadIndex): it holds every
// write acknowledged before Export was called and nothing the shard had not
// committed. Its bytes are
//
//	uint64  the state machine's clock (Unix nanoseconds), little endian
//	rest    a core snapshot (Store.SaveSnapshot format) of the Store's key
//	        space only: the replica's own records (applied index,
//	        deduplication state; keys from 0xff) stay out
//
// An import is one Raft entry (kind 4) carrying an export: every replica
// replaces its (empty) Store key space with the export's, in log order, so
// the imported state is in the log and the snapshots like any write and a
// replica that joins later receives it. A shard that already holds data
// refuses the import (CodeNotEmpty).

// MaxExport bounds an export's size: an import is one Raft entry, and
// Dragonboat refuses entries near its 64 MiB message limit. A bigger shard
// cannot be exported this way (use more shards).
const MaxExport = 32 << 20

// CodeNotEmpty is the error code of an import into a shard that holds data.
const CodeNotEmpty core.Code = "NOTEMPTY"

// kindImport is the proposal kind of an import (proposal.go).
const kindImport = 4

// raftKeys is where the replica's own records start (appliedKey,
// dedupListKey): an export stops before it and an import leaves it alone
// (core's RestoreSnapshot replaces [0x00, 0xff) only).
var raftKeys = []byte{0xff}

// exportQuery asks Lookup for an export of the replica's Store.
type exportQuery struct{}

// exportStore renders st (whose state machine clock is clock) as an export.
func exportStore(st *core.Store, clock int64) ([]byte, error) {
	snap := st.Engine().NewSnapshot()
	defer snap.Close()
	view, err := core.NewStore(storeKeysOnly{readOnlyEngine{snap}}, st.Limits())
	if err != nil {
		return nil, fmt.Errorf("raft: export view: %w", err)
	}
	var buf bytes.Buffer
	buf.Write(binary.LittleEndian.AppendUint64(nil, uint64(clock)))
	if err := view.SaveSnapshot(&buf); err != nil {
		return nil, fmt.Errorf("raft: export: %w", err)
	}
	return buf.Bytes(), nil
}

// storeKeysOnly hides the replica's own records (keys from 0xff).
type storeKeysOnly struct{ readOnlyEngine }

func (e storeKeysOnly) NewIter(lower, upper []byte) core.Iterator {
	if upper == nil || bytes.Compare(upper, raftKeys) > 0 {
		upper = raftKeys
	}
	return e.readOnlyEngine.NewIter(lower, upper)
}

// applyImport applies an import proposal's export to st: refused when st
// holds any key; otherwise the Store is replaced by the export's and the
// clock advanced to the export's.
func applyImport(st *core.Store, clock *int64, export []byte) core.Reply {
	if len(export) < 8 {
		return core.ErrorReply(core.Errorf(core.CodeErr, "raft: import of %d bytes: too short", len(export)))
	}
	it := st.Engine().NewIter(nil, raftKeys)
	nonEmpty := it.First() && it.Valid()
	if err := it.Close(); err != nil {
		return core.ErrorReply(core.Errorf(core.CodeErr, "raft: import: read: %v", err))
	}
	if nonEmpty {
		return core.ErrorReply(core.Errorf(CodeNotEmpty, "the shard already holds data (imports go into an empty shard; an earlier import may have been applied)"))
	}
	if err := st.RestoreSnapshot(bytes.NewReader(export[8:])); err != nil {
		return core.ErrorReply(core.Errorf(core.CodeErr, "raft: import: %v", err))
	}
	if c := int64(binary.LittleEndian.Uint64(export)); c > *clock {
		*clock = c
	}
	return core.OK()
}

// Export returns an export of shard sh, read through a linearizable read
// at this node's replica (which must exist: Hosts).
func (s *Service) Export(ctx context.Context, sh int) ([]byte, error) {
	if sh < 0 || sh >= s.cfg.Shards {
		return nil, fmt.Errorf("raft: export: no shard %d (the namespace has %d)", sh, s.cfg.Shards)
	}
	if !s.Hosts(sh) {
		return nil, fmt.Errorf("raft: export: node %s has no replica of shard %d", s.cfg.NodeID, sh)
	}
	v, err := s.linearizableRead(ctx, s.ShardID(sh), exportQuery{})
	if err != nil {
		return nil, fmt.Errorf("raft: export shard %d on %s: %w", sh, s.cfg.NodeID, err)
	}
	b := v.([]byte)
	if len(b) > MaxExport {
		return nil, fmt.Errorf("raft: export shard %d: %d bytes exceeds the %d-byte limit of one Raft entry (use more shards)", sh, len(b), MaxExport)
	}
	return b, nil
}

// ErrNotLeader is returned by Import at a replica that is not its shard's
// leader: nothing was proposed; import through the leader.
var ErrNotLeader = errors.New("raft: not the shard's leader")

// Import proposes export (from Export of the same shard index of a
// namespace with the same shard count) into shard sh, which must be empty,
// and waits until it is applied. Only the shard's leader proposes it
// (ErrNotLeader elsewhere, once a leader is known): a proposal forwarded by
// a follower can be lost and leave the caller waiting for its deadline.
func (s *Service) Import(ctx context.Context, sh int, export []byte) error {
	if sh < 0 || sh >= s.cfg.Shards {
		return fmt.Errorf("raft: import: no shard %d (the namespace has %d)", sh, s.cfg.Shards)
	}
	if !s.Hosts(sh) {
		return fmt.Errorf("raft: import: node %s has no replica of shard %d", s.cfg.NodeID, sh)
	}
	if len(export) > MaxExport {
		return fmt.Errorf("raft: import into shard %d: %d bytes exceeds the %d-byte limit", sh, len(export), MaxExport)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	me, _, _ := s.replica(sh)
	for {
		leader, _, ok, _ := s.nh.GetLeaderID(s.ShardID(sh))
		if ok && leader != me {
			return fmt.Errorf("raft: import into shard %d on %s: %w (replica %d leads)", sh, s.cfg.NodeID, ErrNotLeader, leader)
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("raft: import into shard %d on %s: no leader: %w", sh, s.cfg.NodeID, consistency.ErrUnavailable)
		case <-time.After(s.cfg.RTT):
		}
	}
	p := proposal{now: s.cfg.Clock().UnixNano(), proposer: s.proposer, seq: s.seq.Add(1), imp: export}
	res, _, err := s.propose(ctx, s.ShardID(sh), encodeProposal(p))
	if err != nil {
		return fmt.Errorf("raft: import into shard %d on %s: %w", sh, s.cfg.NodeID, err)
	}
	reply, err := core.DecodeReply(res.Data)
	if err != nil {
		return fmt.Errorf("raft: import into shard %d: decode reply: %w", sh, err)
	}
	if reply.IsError() {
		return fmt.Errorf("raft: import into shard %d: %w", sh, reply.Err)
	}
	return nil
}
