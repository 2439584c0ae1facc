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

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"
	"github.com/lni/dragonboat/v4"
	"github.com/lni/vfs"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Membership changes move a shard's replicas between the namespace's nodes
// without stopping it: Dragonboat adds or removes one replica per Raft
// configuration change, and the shard serves throughout. The namespace's
// node list (parameter nodes) may hold more nodes than Replicas (the
// others host nothing at first) and grows with SetNodes. A node gets a
// fresh replica ID each time it is added to a shard (replicaids.go), so a
// node removed from a shard can rejoin it.
//
// The admin commands, sent through the client API to the namespace like any
// command (`dialkv cli --namespace NS RAFT.ADD 0 n4`):
//
//	RAFT.MEMBERS shard       the shard's replicas, "ID node raft-address", then its non-voting ones with " nonvoting" (at a node hosting it)
//	RAFT.ADD shard node [NONVOTING]
//	                         add node's replica to the shard (at a node hosting it), as a voter or a non-voting member; replies its replica ID
//	RAFT.JOIN shard [id [NONVOTING]]
//	                         start this node's replica of the shard, after RAFT.ADD (id: its reply; default the legacy ID; NONVOTING: added so)
//	RAFT.PROMOTE shard node  make node's non-voting replica a voter (at a node hosting the shard), once it has caught up (RAFT.SYNCED)
//	RAFT.REMOVE shard node   remove node's replica from the shard (at a node hosting it)
//	RAFT.LEAVE shard         stop this node's replica after RAFT.REMOVE
//	RAFT.SYNCED shard        a ReadIndex round on this node's replica: OK once it has applied everything committed
//	RAFT.HOSTED              the replicas this node runs: "shard replica-id member|removed|unknown"
//	RAFT.NODES [ADD id raft-addr client-addr | RETIRE id | UNRETIRE id]
//	                         the namespace's node list, or a change of it (persisted and spread by the node: OnNodesChange)
//
// Moving a replica from node a to node b is ADD b NONVOTING, JOIN at b
// (NONVOTING), SYNCED at b, PROMOTE b, SYNCED at b, REMOVE a, LEAVE at a
// (nodes.RaftMover: the rebalancer and `dialkv admin move-shard`): the new
// replica catches up without counting in the shard's quorum.
// The shards a node hosts, with their replica IDs, are kept in hosted.json
// under the NodeHost directory, so a restart starts the right replicas.
const hostedFile = "hosted.json"

// hostedState is hosted.json.
type hostedState struct {
	Shards []int `json:"shards"` // shard indexes this node hosts
	// Replicas: shard index to this node's replica ID in it (absent in
	// files of older versions, and for a legacy ID).
	Replicas map[int]uint64 `json:"replicas,omitempty"`
	// NonVoting: shards whose replica joined as a non-voting member. It
	// restarts with Dragonboat's IsNonVoting, promoted or not: a replica
	// started as a voter panics when it replays the entry that added it
	// as non-voting ("is not a nonVoting": seen in TestCatchUpKeepsQuorum
	// when the flag was cleared at the promotion), while one started
	// non-voting becomes a follower when it replays its promotion, or
	// restores a snapshot whose membership lists it as a voter.
	NonVoting []int `json:"nonvoting,omitempty"`
}

// adminCommand reports whether name is a membership command.
func adminCommand(name string) bool {
	switch strings.ToUpper(name) {
	case "RAFT.MEMBERS", "RAFT.ADD", "RAFT.JOIN", "RAFT.PROMOTE", "RAFT.REMOVE", "RAFT.LEAVE", "RAFT.SYNCED", "RAFT.HOSTED", "RAFT.NODES",
		"RAFT.TXNOP": // not membership: two-phase commit between nodes (txnremote.go)
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

// loadHosted reads hosted.json: shard to replica ID (0: the legacy ID); ok
// false when there is none (the node hosts its shards of the initial
// placement).
func (s *Service) loadHosted() (map[int]uint64, bool, error) {
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
	out := map[int]uint64{}
	for _, sh := range st.Shards {
		out[sh] = st.Replicas[sh]
	}
	s.nonVoting = map[int]bool{}
	for _, sh := range st.NonVoting {
		s.nonVoting[sh] = true
	}
	return out, true, nil
}

// saveHosted writes hosted.json (write, sync, rename). s.mu is held.
func (s *Service) saveHosted() error {
	st := hostedState{Shards: []int{}, Replicas: map[int]uint64{}}
	for sh, rid := range s.local {
		st.Shards = append(st.Shards, sh)
		if rid != LegacyReplicaID(s.self) {
			st.Replicas[sh] = rid
		}
		if s.nonVoting[sh] {
			st.NonVoting = append(st.NonVoting, sh)
		}
	}
	sort.Ints(st.Shards)
	sort.Ints(st.NonVoting)
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
	for i, n := range s.nodeList() {
		if string(n.ID) == id {
			return i, true
		}
	}
	return 0, false
}

// configChangeRetryable reports whether a configuration change may succeed
// if tried again (with the membership read afresh).
func configChangeRetryable(err error) bool {
	return retryable(err) || errors.Is(err, dragonboat.ErrTimeout) || errors.Is(err, dragonboat.ErrRejected) ||
		errors.Is(err, dragonboat.ErrAborted) || errors.Is(err, dragonboat.ErrShardClosed)
}

// AddReplica adds node's replica to shard sh as a voting member (a Raft
// configuration change proposed through this node, which must host the
// shard) and returns its replica ID (NextReplicaID: fresh when the node was
// a member before). The node then starts it with JoinShard(sh, id). Each
// attempt reads the membership and proposes the change against its
// ConfigChangeID, so a change that raced it makes the attempt fail and the
// next one reads the new membership; adding is done once the node's Raft
// address is a member (a change applied whose result was lost counts).
//
// A voter added so counts in the shard's quorum at once, before it has
// caught up: a 3-replica shard then has 4 voters and needs 3 of them, so
// one more replica down stops its writes until the new one has the log.
// Moves use AddNonVoting and Promote instead.
func (s *Service) AddReplica(ctx context.Context, sh int, node consistency.NodeID) (uint64, error) {
	return s.addReplica(ctx, sh, node, false)
}

// AddNonVoting adds node's replica to shard sh as a non-voting member
// (Dragonboat's non-voting replica: it receives the log but neither votes
// nor counts in the quorum), attempts as AddReplica; done once the node's
// Raft address is a non-voting member or a voter. The node then starts it
// with JoinShardAs(sh, id, true); once it has caught up (Synced), Promote
// makes it a voter. The shard's quorum does not change while it catches up.
func (s *Service) AddNonVoting(ctx context.Context, sh int, node consistency.NodeID) (uint64, error) {
	return s.addReplica(ctx, sh, node, true)
}

func (s *Service) addReplica(ctx context.Context, sh int, node consistency.NodeID, nonVoting bool) (uint64, error) {
	i, ok := s.nodeIndex(string(node))
	if !ok {
		return 0, fmt.Errorf("raft: add replica: node %q is not in the namespace's nodes", node)
	}
	addr := s.nodeList()[i].RaftAddr
	var rid uint64
	err := s.configChange(ctx, sh, func(actx context.Context, m *dragonboat.Membership) (bool, error) {
		if ids := replicasAt(m.Nodes, addr); len(ids) > 0 {
			rid = ids[0]
			return true, nil
		}
		if ids := replicasAt(m.NonVotings, addr); len(ids) > 0 {
			if nonVoting {
				rid = ids[0]
				return true, nil
			}
			// A voter wanted where a non-voting member runs: promote it.
			rid = ids[0]
			return false, s.nh.SyncRequestAddReplica(actx, s.ShardID(sh), rid, addr, m.ConfigChangeID)
		}
		rid = NextReplicaID(usedIDs(m.Nodes, m.NonVotings, m.Witnesses, m.Removed), i)
		if nonVoting {
			return false, s.nh.SyncRequestAddNonVoting(actx, s.ShardID(sh), rid, addr, m.ConfigChangeID)
		}
		return false, s.nh.SyncRequestAddReplica(actx, s.ShardID(sh), rid, addr, m.ConfigChangeID)
	})
	if err != nil {
		kind := "replica"
		if nonVoting {
			kind = "non-voting replica"
		}
		return 0, fmt.Errorf("raft: add %s of %s to shard %d: %w", kind, node, sh, err)
	}
	return rid, nil
}

// Promote makes node's non-voting replica of shard sh a voter
// (Dragonboat: adding a replica with the ID and address of a non-voting
// member promotes it, keeping its log progress); attempts as AddReplica,
// done once the node's Raft address is a voter. It refuses a node that is
// neither. Promote only a replica that has caught up (Synced at it).
func (s *Service) Promote(ctx context.Context, sh int, node consistency.NodeID) (uint64, error) {
	i, ok := s.nodeIndex(string(node))
	if !ok {
		return 0, fmt.Errorf("raft: promote: node %q is not in the namespace's nodes", node)
	}
	addr := s.nodeList()[i].RaftAddr
	var rid uint64
	errNotMember := errors.New("not a member of the shard (add it with RAFT.ADD ... NONVOTING first)")
	err := s.configChange(ctx, sh, func(actx context.Context, m *dragonboat.Membership) (bool, error) {
		if ids := replicasAt(m.Nodes, addr); len(ids) > 0 {
			rid = ids[0]
			return true, nil
		}
		ids := replicasAt(m.NonVotings, addr)
		if len(ids) == 0 {
			return false, errNotMember
		}
		rid = ids[0]
		return false, s.nh.SyncRequestAddReplica(actx, s.ShardID(sh), rid, addr, m.ConfigChangeID)
	})
	if err != nil {
		return 0, fmt.Errorf("raft: promote %s in shard %d: %w", node, sh, err)
	}
	return rid, nil
}

// RemoveReplica removes node's replica from shard sh (proposed through this
// node, which must host the shard; attempts as AddReplica, done once no
// replica has the node's Raft address). The removed node then stops it
// with LeaveShard.
func (s *Service) RemoveReplica(ctx context.Context, sh int, node consistency.NodeID) error {
	i, ok := s.nodeIndex(string(node))
	if !ok {
		return fmt.Errorf("raft: remove replica: node %q is not in the namespace's nodes", node)
	}
	addr := s.nodeList()[i].RaftAddr
	err := s.configChange(ctx, sh, func(actx context.Context, m *dragonboat.Membership) (bool, error) {
		ids := append(replicasAt(m.Nodes, addr), replicasAt(m.NonVotings, addr)...)
		if len(ids) == 0 {
			return true, nil
		}
		return false, s.nh.SyncRequestDeleteReplica(actx, s.ShardID(sh), ids[0], m.ConfigChangeID)
	})
	if err != nil {
		return fmt.Errorf("raft: remove replica of %s from shard %d: %w", node, sh, err)
	}
	return nil
}

// configChange runs step in attempts of two election timeouts until it
// reports done (read from the membership) or fails for good, or ctx ends.
// step gets the shard's membership, read afresh (a ReadIndex round) before
// every attempt: a request forwarded from a follower can be lost, and a
// change can be applied with its result lost. After a request that
// returned without error, the next attempt confirms it from the
// membership.
func (s *Service) configChange(ctx context.Context, sh int, step func(context.Context, *dragonboat.Membership) (bool, error)) error {
	attempt := 2 * time.Duration(s.cfg.ElectionRTT) * s.cfg.RTT
	var err error
	for ctx.Err() == nil {
		var m *dragonboat.Membership
		m, err = s.membership(ctx, sh)
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, attempt)
		var done bool
		done, err = step(actx, m)
		cancel()
		if done {
			return nil
		}
		if err != nil && !configChangeRetryable(err) {
			return err
		}
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(s.cfg.RTT):
			}
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// JoinShard starts this node's replica rid of shard sh as a joining member
// (after AddReplica, which returned rid; 0 means this node's legacy ID);
// it catches up from the leader's log or a snapshot. A replica of the
// shard this node ran before under another ID (it left, was removed and is
// added back) is first waited for until Dragonboat has unloaded it (a
// NodeHost panics on two incarnations of one shard) and its data is
// removed, as is the Pebble state machine's directory: the new replica
// starts empty and gets the shard's state from the leader.
func (s *Service) JoinShard(sh int, rid uint64) error { return s.JoinShardAs(sh, rid, false) }

// JoinShardAs is JoinShard for a replica added as a non-voting member
// (AddNonVoting) when nonVoting: Dragonboat requires such a replica to
// start with IsNonVoting. hosted.json records it, so restarts, before or
// after the promotion, start it the same way (hostedState.NonVoting).
func (s *Service) JoinShardAs(sh int, rid uint64, nonVoting bool) error {
	if sh < 0 || sh >= s.cfg.Shards {
		return fmt.Errorf("raft: join: no shard %d (the namespace has %d)", sh, s.cfg.Shards)
	}
	if rid == 0 {
		rid = LegacyReplicaID(s.self)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.local[sh]; ok {
		return fmt.Errorf("raft: join: %s already hosts shard %d", s.cfg.NodeID, sh)
	}
	if old, ok := s.left[sh]; ok {
		if old == rid {
			return fmt.Errorf("raft: join: %s left shard %d as replica %d, still a member: restart the node to restart it, or remove it (RAFT.REMOVE) and add it again", s.cfg.NodeID, sh, rid)
		}
		// AddReplica gave a new ID, so replica old is no longer a member:
		// its data may go.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.nh.SyncRemoveData(ctx, s.ShardID(sh), old)
		cancel()
		if err != nil {
			return fmt.Errorf("raft: join shard %d: remove the data of former replica %d: %w", sh, old, err)
		}
		delete(s.left, sh)
	}
	if s.cfg.Storage == "pebble" {
		fs := s.cfg.PebbleFS
		if fs == nil {
			fs = pebblevfs.Default
		}
		if err := fs.RemoveAll(s.smDir(sh)); err != nil {
			return fmt.Errorf("raft: join shard %d: remove the former state machine: %w", sh, err)
		}
	}
	if s.nonVoting == nil {
		s.nonVoting = map[int]bool{}
	}
	s.nonVoting[sh] = nonVoting
	if err := s.startReplica(sh, nil, true, rid); err != nil {
		delete(s.nonVoting, sh)
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
		for _, i := range memberIndexes(s.nodes, m) {
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
	delete(s.nonVoting, sh)
	s.former[sh] = former
	s.left[sh] = rid
	return s.saveHosted()
}

// membership reads shard sh's membership (a ReadIndex round, retried like
// linearizableRead: one can be lost).
func (s *Service) membership(ctx context.Context, sh int) (*dragonboat.Membership, error) {
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
	return m, nil
}

// Members returns shard sh's voting replicas: replica ID to node.
func (s *Service) Members(ctx context.Context, sh int) (map[uint64]consistency.NodeID, error) {
	m, err := s.membership(ctx, sh)
	if err != nil {
		return nil, err
	}
	nodes := s.nodeList()
	out := map[uint64]consistency.NodeID{}
	for id := range m.Nodes {
		out[id] = consistency.NodeID(replicaName(nodes, m.Nodes, id))
	}
	return out, nil
}

// HostedReplica is one replica this node runs (Hosted).
type HostedReplica struct {
	Shard     int
	ReplicaID uint64
	// State is "member" (a voting member in the membership this replica
	// applied), "nonvoting" (a non-voting member: catching up, to be
	// promoted), "removed" (removed from the shard: waiting for
	// LeaveShard) or "unknown" (no membership applied yet).
	State string
}

// Hosted lists the replicas this node runs, by shard, from local state
// (no round trip).
func (s *Service) Hosted() []HostedReplica {
	s.mu.RLock()
	local := make(map[int]uint64, len(s.local))
	for sh, rid := range s.local {
		local[sh] = rid
	}
	s.mu.RUnlock()
	out := make([]HostedReplica, 0, len(local))
	for sh, rid := range local {
		h := HostedReplica{Shard: sh, ReplicaID: rid, State: "unknown"}
		if m, ok := s.appliedMembers(s.ShardID(sh)); ok {
			h.State = "removed"
			if _, member := m[rid]; member {
				h.State = "member"
			} else if s.isNonVoting(s.ShardID(sh)) {
				h.State = "nonvoting"
			}
		}
		out = append(out, h)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Shard < out[b].Shard })
	return out
}

// Synced waits until this node's replica of shard sh has applied every
// entry committed when it is called (a ReadIndex round through it): a
// replica that joined has caught up.
func (s *Service) Synced(ctx context.Context, sh int) error {
	if !s.Hosts(sh) {
		return fmt.Errorf("raft: synced: %s hosts no replica of shard %d", s.cfg.NodeID, sh)
	}
	q := readQuery{now: s.cfg.Clock().UnixNano(), cmd: core.Cmd("EXISTS", "raft.synced")}
	if _, err := s.linearizableRead(ctx, s.ShardID(sh), q); err != nil {
		return fmt.Errorf("raft: synced: shard %d on %s: %w", sh, s.cfg.NodeID, err)
	}
	return nil
}

// isNonVoting reports whether this node's replica of shardID is a
// non-voting member in the membership it has applied.
func (s *Service) isNonVoting(shardID uint64) bool {
	info := s.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true})
	if info == nil {
		return false
	}
	for _, si := range info.ShardInfoList {
		if si.ShardID == shardID && !si.Pending {
			return si.IsNonVoting
		}
	}
	return false
}

// Nodes returns the namespace's node list as this node knows it.
func (s *Service) Nodes() []Node { return append([]Node(nil), s.nodeList()...) }

// Retired returns the nodes that are to host nothing (parameter retired).
func (s *Service) Retired() []consistency.NodeID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]consistency.NodeID(nil), s.retired...)
}

// Rebalance reports whether the cluster's rebalancer may move this
// namespace's replicas (Config.Rebalance).
func (s *Service) Rebalance() bool { return s.cfg.Rebalance }

// Replicas returns the replication factor of the namespace's shards.
func (s *Service) Replicas() int { return s.cfg.Replicas }

// SetNodes replaces the namespace's node list by one that starts with the
// current list (nodes are only ever appended, so indexes and legacy replica
// IDs stay valid: the new nodes can then be added to shards), and the
// retired nodes by retired (nodes of the list that are to host nothing; a
// node leaves the namespace by being retired). A list that drops,
// reorders or changes a node is refused.
func (s *Service) SetNodes(nodes []Node, retired []consistency.NodeID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(nodes) < len(s.nodes) {
		return fmt.Errorf("raft: set nodes: %d nodes, fewer than the %d known (the list only grows; retire nodes instead)", len(nodes), len(s.nodes))
	}
	seen := map[consistency.NodeID]bool{}
	addrs := map[string]bool{}
	for i, n := range nodes {
		if i < len(s.nodes) && n != s.nodes[i] {
			return fmt.Errorf("raft: set nodes: node %d is %v, was %v (the list only grows at its end)", i, n, s.nodes[i])
		}
		if n.ID == "" || n.RaftAddr == "" || seen[n.ID] || addrs[n.RaftAddr] {
			return fmt.Errorf("raft: set nodes: node %d (%v): empty or repeated ID or Raft address", i, n)
		}
		seen[n.ID], addrs[n.RaftAddr] = true, true
	}
	for _, r := range retired {
		if !seen[r] {
			return fmt.Errorf("raft: set nodes: retired node %q is not in the list", r)
		}
	}
	s.nodes = append([]Node(nil), nodes...)
	s.retired = append([]consistency.NodeID(nil), retired...)
	return nil
}

// NodesVersion returns the version of the node list (Config.NodesVersion).
func (s *Service) NodesVersion() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version
}

// AdoptNodes takes a node list spread from another node (a newer version
// of it, made by RAFT.NODES there): SetNodes, and the version.
func (s *Service) AdoptNodes(nodes []Node, retired []consistency.NodeID, version uint64) error {
	if version <= s.NodesVersion() {
		return nil
	}
	if err := s.SetNodes(nodes, retired); err != nil {
		return err
	}
	s.mu.Lock()
	if version > s.version {
		s.version = version
	}
	s.mu.Unlock()
	return nil
}

// NodesParams renders a node list as the namespace parameters that hold
// it (nodes, raft-addrs, client-addrs, initial-nodes, retired,
// nodes-version).
func NodesParams(nodes []Node, initial int, retired []consistency.NodeID, version uint64) map[string]string {
	ids, raftAddrs, clientAddrs := make([]string, len(nodes)), make([]string, len(nodes)), make([]string, len(nodes))
	for i, n := range nodes {
		ids[i], raftAddrs[i], clientAddrs[i] = string(n.ID), n.RaftAddr, n.ClientAddr
	}
	rs := make([]string, len(retired))
	for i, r := range retired {
		rs[i] = string(r)
	}
	return map[string]string{
		"nodes": strings.Join(ids, ","), "raft-addrs": strings.Join(raftAddrs, ","), "client-addrs": strings.Join(clientAddrs, ","),
		"initial-nodes": strconv.Itoa(initial), "retired": strings.Join(rs, ","), "nodes-version": strconv.FormatUint(version, 10),
	}
}

// nodesCommand is RAFT.NODES: list the node list, or change it (ADD,
// RETIRE, UNRETIRE) through Config.OnNodesChange, then SetNodes.
func (s *Service) nodesCommand(args [][]byte) core.Reply {
	s.nodesMu.Lock() // one change at a time: each builds on the last
	defer s.nodesMu.Unlock()
	nodes, retired, version := s.Nodes(), s.Retired(), s.NodesVersion()
	isRetired := map[consistency.NodeID]bool{}
	for _, r := range retired {
		isRetired[r] = true
	}
	if len(args) == 0 {
		var rs []core.Reply
		for _, n := range nodes {
			line := fmt.Sprintf("%s raft=%s client=%s", n.ID, n.RaftAddr, n.ClientAddr)
			if isRetired[n.ID] {
				line += " retired"
			}
			rs = append(rs, core.Bulk([]byte(line)))
		}
		return core.Array(rs...)
	}
	sub := strings.ToUpper(string(args[0]))
	bad := func(format string, a ...any) core.Reply {
		return core.ErrorReply(core.Errorf(core.CodeErr, "RAFT.NODES "+format, a...))
	}
	switch {
	case sub == "ADD" && len(args) == 4:
		nodes = append(nodes, Node{ID: consistency.NodeID(args[1]), RaftAddr: string(args[2]), ClientAddr: string(args[3])})
	case (sub == "RETIRE" || sub == "UNRETIRE") && len(args) == 2:
		id := consistency.NodeID(args[1])
		if _, ok := s.nodeIndex(string(id)); !ok {
			return bad("%s: node %q is not in the namespace's nodes", sub, id)
		}
		if sub == "RETIRE" && !isRetired[id] {
			retired = append(retired, id)
		}
		if sub == "UNRETIRE" {
			out := retired[:0]
			for _, r := range retired {
				if r != id {
					out = append(out, r)
				}
			}
			retired = out
		}
	default:
		return bad("syntax: RAFT.NODES [ADD id raft-addr client-addr | RETIRE id | UNRETIRE id]")
	}
	// Validate before persisting: SetNodes on a scratch copy.
	check := &Service{nodes: s.Nodes()}
	if err := check.SetNodes(nodes, retired); err != nil {
		return bad("%s: %v", sub, err)
	}
	if s.cfg.OnNodesChange == nil {
		return bad("%s: this node cannot persist a change of the node list", sub)
	}
	if err := s.cfg.OnNodesChange(NodesParams(nodes, s.cfg.InitialNodes, retired, version+1)); err != nil {
		return bad("%s: %v", sub, err)
	}
	if err := s.AdoptNodes(nodes, retired, version+1); err != nil {
		return bad("%s: %v", sub, err)
	}
	return core.OK()
}

// admin runs a membership command (adminCommand) and returns its reply.
func (s *Service) admin(ctx context.Context, cmd core.Command) (core.Reply, error) {
	name := strings.ToUpper(cmd.Name)
	if name == "RAFT.NODES" {
		return s.nodesCommand(cmd.Args), nil
	}
	if name == "RAFT.TXNOP" {
		return s.txnOpCommand(ctx, cmd.Args), nil
	}
	if name == "RAFT.HOSTED" {
		if len(cmd.Args) != 0 {
			return core.ErrorReply(core.Errorf(core.CodeErr, "wrong number of arguments for '%s' (want 0)", name)), nil
		}
		var rs []core.Reply
		for _, h := range s.Hosted() {
			rs = append(rs, core.Bulk([]byte(fmt.Sprintf("%d %d %s", h.Shard, h.ReplicaID, h.State))))
		}
		return core.Array(rs...), nil
	}
	want, most := 2, 2
	switch name {
	case "RAFT.MEMBERS", "RAFT.LEAVE", "RAFT.SYNCED":
		want, most = 1, 1
	case "RAFT.JOIN":
		want, most = 1, 3
	case "RAFT.ADD":
		most = 3
	}
	if len(cmd.Args) < want || len(cmd.Args) > most {
		return core.ErrorReply(core.Errorf(core.CodeErr, "wrong number of arguments for '%s' (want %d)", name, want)), nil
	}
	sh, err := strconv.Atoi(string(cmd.Args[0]))
	if err != nil || sh < 0 || sh >= s.cfg.Shards {
		return core.ErrorReply(core.Errorf(core.CodeErr, "%s: shard %q: want 0 to %d", name, cmd.Args[0], s.cfg.Shards-1)), nil
	}
	var node consistency.NodeID
	var rid uint64
	nonVoting := false
	if (name == "RAFT.ADD" || name == "RAFT.JOIN") && len(cmd.Args) == 3 {
		if !strings.EqualFold(string(cmd.Args[2]), "NONVOTING") {
			return core.ErrorReply(core.Errorf(core.CodeErr, "%s: %q: want NONVOTING or nothing", name, cmd.Args[2])), nil
		}
		nonVoting = true
	}
	switch {
	case name == "RAFT.JOIN" && len(cmd.Args) >= 2:
		rid, err = strconv.ParseUint(string(cmd.Args[1]), 10, 64)
		if err != nil || rid == 0 {
			return core.ErrorReply(core.Errorf(core.CodeErr, "%s: replica ID %q: want a positive integer (RAFT.ADD's reply)", name, cmd.Args[1])), nil
		}
	case want == 2:
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
		m, err := s.membership(ctx, sh)
		if err != nil {
			return core.Reply{}, fmt.Errorf("%w: %w", consistency.ErrUnavailable, err)
		}
		nodes := s.nodeList()
		ids := make([]uint64, 0, len(m.Nodes))
		for id := range m.Nodes {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		var rs []core.Reply
		for _, id := range ids {
			rs = append(rs, core.Bulk([]byte(fmt.Sprintf("%d %s %s", id, replicaName(nodes, m.Nodes, id), m.Nodes[id]))))
		}
		// Non-voting members after the voters, marked: readers that take
		// the first lines' second field as the voters' nodes stop at the
		// mark (nodes.ReadRaftPlacement).
		ids = ids[:0]
		for id := range m.NonVotings {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		for _, id := range ids {
			rs = append(rs, core.Bulk([]byte(fmt.Sprintf("%d %s %s nonvoting", id, replicaName(nodes, m.NonVotings, id), m.NonVotings[id]))))
		}
		return core.Array(rs...), nil
	case "RAFT.ADD", "RAFT.PROMOTE":
		var id uint64
		switch {
		case name == "RAFT.PROMOTE":
			id, err = s.Promote(ctx, sh, node)
		case nonVoting:
			id, err = s.AddNonVoting(ctx, sh, node)
		default:
			id, err = s.AddReplica(ctx, sh, node)
		}
		if err != nil {
			return core.ErrorReply(core.Errorf(core.CodeErr, "%v", err)), nil
		}
		return core.Int(int64(id)), nil
	case "RAFT.REMOVE":
		err = s.RemoveReplica(ctx, sh, node)
	case "RAFT.JOIN":
		err = s.JoinShardAs(sh, rid, nonVoting)
	case "RAFT.LEAVE":
		err = s.LeaveShard(sh)
	case "RAFT.SYNCED":
		if err = s.Synced(ctx, sh); err != nil {
			return core.Reply{}, fmt.Errorf("%w: %w", consistency.ErrUnavailable, err)
		}
	}
	if err != nil {
		return core.ErrorReply(core.Errorf(core.CodeErr, "%v", err)), nil
	}
	return core.OK(), nil
}
