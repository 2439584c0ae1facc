package raft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/vfs"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Membership changes move a shard's replicas between the namespace's nodes
// without stopping it: Dragonboat adds or removes one replica per Raft
// configuration change, and the shard serves throughout. The namespace's
// node list (parameter nodes) is fixed at creation; it may hold more nodes
// than Replicas (the others host nothing at first). A node's replica ID is
// its index in that list plus one in every shard, so a node removed from a
// shard cannot rejoin it (Dragonboat rejects removed IDs).
//
// The admin commands, sent through the client API to the namespace like any
// command (`dialkv cli --namespace NS RAFT.ADD 0 n4`):
//
//	RAFT.MEMBERS shard       the shard's replicas, "ID node raft-address" (at a node hosting it)
//	RAFT.ADD shard node      add node's replica to the shard (at a node hosting it)
//	RAFT.JOIN shard          start this node's replica of the shard, after RAFT.ADD
//	RAFT.REMOVE shard node   remove node's replica from the shard (at a node hosting it)
//	RAFT.LEAVE shard         stop this node's replica after RAFT.REMOVE
//
// Moving a replica from node a to node b is ADD b, JOIN at b, (wait until b
// caught up: RAFT.MEMBERS, or a stale read at b), REMOVE a, LEAVE at a. The
// shards a node hosts are kept in hosted.json under the NodeHost directory,
// so a restart starts the right replicas.
const hostedFile = "hosted.json"

// hostedState is hosted.json.
type hostedState struct {
	Shards []int `json:"shards"` // shard indexes this node hosts
}

// adminCommand reports whether name is a membership command.
func adminCommand(name string) bool {
	switch strings.ToUpper(name) {
	case "RAFT.MEMBERS", "RAFT.ADD", "RAFT.JOIN", "RAFT.REMOVE", "RAFT.LEAVE":
		return true
	}
	return false
}

func (s *Service) fs() vfs.FS {
	if s.cfg.FS != nil {
		return s.cfg.FS
	}
	return vfs.Default
}

// loadHosted reads hosted.json (ok false when there is none: the node hosts
// its shards of the initial placement).
func (s *Service) loadHosted() (map[int]bool, bool, error) {
	f, err := s.fs().Open(filepath.Join(s.cfg.Dir, hostedFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("raft: read %s: %w", hostedFile, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, false, fmt.Errorf("raft: read %s: %w", hostedFile, err)
	}
	var st hostedState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, false, fmt.Errorf("raft: parse %s: %w", hostedFile, err)
	}
	out := map[int]bool{}
	for _, sh := range st.Shards {
		out[sh] = true
	}
	return out, true, nil
}

// saveHosted writes hosted.json (write, sync, rename). s.mu is held.
func (s *Service) saveHosted() error {
	st := hostedState{Shards: []int{}}
	for sh := range s.local {
		st.Shards = append(st.Shards, sh)
	}
	sort.Ints(st.Shards)
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	fs := s.fs()
	tmp := filepath.Join(s.cfg.Dir, hostedFile+".tmp")
	f, err := fs.Create(tmp)
	if err != nil {
		return fmt.Errorf("raft: write %s: %w", hostedFile, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("raft: write %s: %w", hostedFile, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("raft: sync %s: %w", hostedFile, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("raft: write %s: %w", hostedFile, err)
	}
	if err := fs.Rename(tmp, filepath.Join(s.cfg.Dir, hostedFile)); err != nil {
		return fmt.Errorf("raft: write %s: %w", hostedFile, err)
	}
	return nil
}

// nodeIndex returns the index of node id in the namespace's node list.
func (s *Service) nodeIndex(id string) (int, bool) {
	for i, n := range s.cfg.Nodes {
		if string(n.ID) == id {
			return i, true
		}
	}
	return 0, false
}

// AddReplica adds node's replica to shard sh (a Raft configuration change
// proposed through this node, which must host the shard). The node then
// starts it with JoinShard. A request forwarded from a follower can be
// lost, so it is sent in attempts of two election timeouts, each followed by
// a look at the membership (adding is done once the node is a member).
func (s *Service) AddReplica(ctx context.Context, sh int, node consistency.NodeID) error {
	i, ok := s.nodeIndex(string(node))
	if !ok {
		return fmt.Errorf("raft: add replica: node %q is not in the namespace's nodes", node)
	}
	err := s.configChange(ctx, sh, ReplicaID(i), true, func(actx context.Context) error {
		return s.nh.SyncRequestAddReplica(actx, s.ShardID(sh), ReplicaID(i), s.cfg.Nodes[i].RaftAddr, 0)
	})
	if err != nil {
		return fmt.Errorf("raft: add replica of %s to shard %d: %w", node, sh, err)
	}
	return nil
}

// RemoveReplica removes node's replica from shard sh (proposed through this
// node, which must host the shard; attempts as AddReplica). The removed
// node then stops it with LeaveShard.
func (s *Service) RemoveReplica(ctx context.Context, sh int, node consistency.NodeID) error {
	i, ok := s.nodeIndex(string(node))
	if !ok {
		return fmt.Errorf("raft: remove replica: node %q is not in the namespace's nodes", node)
	}
	err := s.configChange(ctx, sh, ReplicaID(i), false, func(actx context.Context) error {
		return s.nh.SyncRequestDeleteReplica(actx, s.ShardID(sh), ReplicaID(i), 0)
	})
	if err != nil {
		return fmt.Errorf("raft: remove replica of %s from shard %d: %w", node, sh, err)
	}
	return nil
}

// configChange runs request in attempts until replica rid is (member) or
// is not (!member) a voting member of shard sh, or ctx ends.
func (s *Service) configChange(ctx context.Context, sh int, rid uint64, member bool, request func(context.Context) error) error {
	attempt := 2 * time.Duration(s.cfg.ElectionRTT) * s.cfg.RTT
	var err error
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err = request(actx)
		cancel()
		if err == nil {
			return nil
		}
		if !(retryable(err) || errors.Is(err, dragonboat.ErrTimeout) || errors.Is(err, dragonboat.ErrRejected) ||
			errors.Is(err, dragonboat.ErrAborted) || errors.Is(err, dragonboat.ErrShardClosed)) {
			return err
		}
		// The change may have been applied (its result lost), or another
		// change raced it: look.
		mctx, cancel := context.WithTimeout(ctx, attempt)
		m, merr := s.Members(mctx, sh)
		cancel()
		if merr == nil {
			if _, ok := m[rid]; ok == member {
				return nil
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(s.cfg.RTT):
		}
	}
	return err
}

// JoinShard starts this node's replica of shard sh as a joining member
// (after AddReplica); it catches up from the leader's log or a snapshot.
func (s *Service) JoinShard(sh int) error {
	if sh < 0 || sh >= s.cfg.Shards {
		return fmt.Errorf("raft: join: no shard %d (the namespace has %d)", sh, s.cfg.Shards)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.local[sh]; ok {
		return fmt.Errorf("raft: join: %s already hosts shard %d", s.cfg.NodeID, sh)
	}
	if err := s.startReplica(sh, nil, true); err != nil {
		return err
	}
	delete(s.former, sh)
	return s.saveHosted()
}

// LeaveShard stops this node's replica of shard sh (after RemoveReplica).
func (s *Service) LeaveShard(sh int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rid, ok := s.local[sh]
	if !ok {
		return fmt.Errorf("raft: leave: %s hosts no replica of shard %d", s.cfg.NodeID, sh)
	}
	// Remember the members this replica knew (without this node), where
	// requests for the shard go from now on.
	var former []int
	if m, ok := s.appliedMembers(s.ShardID(sh)); ok {
		for _, i := range memberIndexes(m, len(s.cfg.Nodes)) {
			if i != s.self {
				former = append(former, i)
			}
		}
	}
	if err := s.nh.StopReplica(s.ShardID(sh), rid); err != nil && !errors.Is(err, dragonboat.ErrShardNotFound) {
		return fmt.Errorf("raft: leave shard %d: %w", sh, err)
	}
	delete(s.local, sh)
	delete(s.batch, sh)
	s.former[sh] = former
	return s.saveHosted()
}

// Members returns shard sh's voting replicas: replica ID to node.
func (s *Service) Members(ctx context.Context, sh int) (map[uint64]consistency.NodeID, error) {
	// A ReadIndex round; retried like linearizableRead (one can be lost).
	attempt := 2 * time.Duration(s.cfg.ElectionRTT) * s.cfg.RTT
	var m *dragonboat.Membership
	var err error = dragonboat.ErrShardNotReady
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, attempt)
		m, err = s.nh.SyncGetShardMembership(actx, s.ShardID(sh))
		cancel()
		if err == nil || !(retryable(err) || errors.Is(err, dragonboat.ErrTimeout)) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(s.cfg.RTT):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("raft: members of shard %d: %w", sh, err)
	}
	out := map[uint64]consistency.NodeID{}
	for id := range m.Nodes {
		if id >= 1 && int(id) <= len(s.cfg.Nodes) {
			out[id] = s.cfg.Nodes[id-1].ID
		} else {
			out[id] = consistency.NodeID(fmt.Sprintf("replica-%d", id))
		}
	}
	return out, nil
}

// admin runs a membership command (adminCommand) and returns its reply.
func (s *Service) admin(ctx context.Context, cmd core.Command) (core.Reply, error) {
	name := strings.ToUpper(cmd.Name)
	want := 2
	if name == "RAFT.MEMBERS" || name == "RAFT.JOIN" || name == "RAFT.LEAVE" {
		want = 1
	}
	if len(cmd.Args) != want {
		return core.ErrorReply(core.Errorf(core.CodeErr, "wrong number of arguments for '%s' (want %d)", name, want)), nil
	}
	sh, err := strconv.Atoi(string(cmd.Args[0]))
	if err != nil || sh < 0 || sh >= s.cfg.Shards {
		return core.ErrorReply(core.Errorf(core.CodeErr, "%s: shard %q: want 0 to %d", name, cmd.Args[0], s.cfg.Shards-1)), nil
	}
	var node consistency.NodeID
	if want == 2 {
		node = consistency.NodeID(cmd.Args[1])
		if _, ok := s.nodeIndex(string(node)); !ok {
			return core.ErrorReply(core.Errorf(core.CodeErr, "%s: node %q is not in the namespace's nodes", name, node)), nil
		}
	}
	if name != "RAFT.JOIN" && !s.Hosts(sh) {
		return core.ErrorReply(core.Errorf(core.CodeErr, "%s: %s hosts no replica of shard %d; send it to a node that does", name, s.cfg.NodeID, sh)), nil
	}
	switch name {
	case "RAFT.MEMBERS":
		m, err := s.Members(ctx, sh)
		if err != nil {
			return core.Reply{}, fmt.Errorf("%w: %w", consistency.ErrUnavailable, err)
		}
		ids := make([]uint64, 0, len(m))
		for id := range m {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		var rs []core.Reply
		for _, id := range ids {
			addr := ""
			if int(id) <= len(s.cfg.Nodes) {
				addr = s.cfg.Nodes[id-1].RaftAddr
			}
			rs = append(rs, core.Bulk([]byte(fmt.Sprintf("%d %s %s", id, m[id], addr))))
		}
		return core.Array(rs...), nil
	case "RAFT.ADD":
		err = s.AddReplica(ctx, sh, node)
	case "RAFT.REMOVE":
		err = s.RemoveReplica(ctx, sh, node)
	case "RAFT.JOIN":
		err = s.JoinShard(sh)
	case "RAFT.LEAVE":
		err = s.LeaveShard(sh)
	}
	if err != nil {
		return core.ErrorReply(core.Errorf(core.CodeErr, "%v", err)), nil
	}
	return core.OK(), nil
}
