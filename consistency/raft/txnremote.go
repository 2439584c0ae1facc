package raft

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Two-phase commit through other nodes: a node coordinating a
// cross-shard transaction proposes each operation to the shard it touches;
// for a shard it hosts no replica of, it sends the encoded proposal to a
// node that does, as the admin command
//
//	RAFT.TXNOP shard proposal
//
// (Config.Peer, an AdminCall: the namespace's client API on that node,
// where an error that certainly means nothing was sent wraps
// consistency.ErrUnavailable; it needs the
// admin right, which node certificates have). That node proposes the very
// bytes to its replica (Dragonboat forwards to the leader) and answers a
// bulk string: one status byte then, for txnRemoteOK, core.EncodeReply of
// the reply, else a message. The proposal keeps the coordinator's
// proposer ID and sequence number, so sending it again — to the same node
// or another, after a timeout or a lost connection — is deduplicated by
// the shard's state machine (dedup.go): the operation applies at most
// once, and every copy is answered with the first one's reply.

// The status byte of RAFT.TXNOP's answer.
const (
	txnRemoteOK          = 0 // the reply follows
	txnRemoteUnavailable = 1 // not applied (consistency.ErrUnavailable)
	txnRemoteTimeout     = 2 // outcome unknown (consistency.ErrTimeout)
	txnRemoteNotHosted   = 3 // the node hosts no replica of the shard
)

// txnOpCommand serves RAFT.TXNOP shard proposal.
func (s *Service) txnOpCommand(ctx context.Context, args [][]byte) core.Reply {
	if len(args) != 2 {
		return core.ErrorReply(core.Errorf(core.CodeErr, "wrong number of arguments for 'RAFT.TXNOP' (want 2)"))
	}
	sh, err := strconv.Atoi(string(args[0]))
	if err != nil || sh < 0 || sh >= s.cfg.Shards {
		return core.ErrorReply(core.Errorf(core.CodeErr, "RAFT.TXNOP: shard %q: want 0 to %d", args[0], s.cfg.Shards-1))
	}
	p, err := decodeProposal(args[1])
	if err != nil || p.tx == nil || p.proposer == 0 {
		return core.ErrorReply(core.Errorf(core.CodeErr, "RAFT.TXNOP: not a deduplicated two-phase commit proposal"))
	}
	if !s.Hosts(sh) {
		return core.Bulk(append([]byte{txnRemoteNotHosted}, fmt.Sprintf("%s hosts no replica of %s", s.cfg.NodeID, shardName(sh, s.cfg.Shards))...))
	}
	r, err := s.proposeTxnData(ctx, sh, args[1])
	switch {
	case err == nil:
		return core.Bulk(append([]byte{txnRemoteOK}, core.EncodeReply(r)...))
	case errors.Is(err, consistency.ErrUnavailable):
		return core.Bulk(append([]byte{txnRemoteUnavailable}, err.Error()...))
	}
	return core.Bulk(append([]byte{txnRemoteTimeout}, err.Error()...))
}

// proposeRemote proposes data (a two-phase commit proposal) to shard sh,
// not hosted here, through the nodes that may host it: the one that served
// the shard last, the initial placement, then every other node, round
// after round until ctx ends. Errors as proposeTxnOp's: ErrUnavailable
// when no attempt may have reached the log, else ErrTimeout.
func (s *Service) proposeRemote(ctx context.Context, sh int, data []byte) (core.Reply, error) {
	if s.cfg.Peer == nil {
		return core.Reply{}, fmt.Errorf("raft: %s hosts no replica of %s and has no peer caller: %w", s.cfg.NodeID, shardName(sh, s.cfg.Shards), consistency.ErrUnavailable)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	nodes := s.nodeList()
	var order []int
	seen := map[int]bool{s.self: true}
	add := func(i int) {
		if i >= 0 && i < len(nodes) && !seen[i] {
			seen[i] = true
			order = append(order, i)
		}
	}
	if v, ok := s.txnRoute.Load(sh); ok {
		add(v.(int))
	}
	for _, i := range Placement(sh, s.cfg.Replicas, s.cfg.InitialNodes) {
		add(i)
	}
	for i := range nodes {
		add(i)
	}
	if len(order) == 0 {
		return core.Reply{}, fmt.Errorf("raft: no other node to reach %s: %w", shardName(sh, s.cfg.Shards), consistency.ErrUnavailable)
	}
	cmd := core.Command{Name: "RAFT.TXNOP", Args: [][]byte{[]byte(strconv.Itoa(sh)), data}}
	// One attempt may wait for an election on the remote side; a node
	// that does not answer within it is left for the next.
	attempt := max(2*s.reproposeAfter(), time.Second)
	maybe := false // an attempt may have reached the log
	var last error
	for round := 1; ; round++ {
		for _, i := range order {
			if ctx.Err() != nil {
				break
			}
			actx, cancel := context.WithTimeout(ctx, attempt)
			r, err := s.cfg.Peer(actx, nodes[i], cmd)
			cancel()
			if err != nil {
				maybe = maybe || !errors.Is(err, consistency.ErrUnavailable)
				last = fmt.Errorf("RAFT.TXNOP at %s: %w", nodes[i].ID, err)
				continue
			}
			if r.Kind != core.KindBulk || len(r.Str) == 0 {
				// An error reply (bad input, no right): nothing proposed.
				last = fmt.Errorf("RAFT.TXNOP at %s answered %v", nodes[i].ID, r)
				continue
			}
			msg := string(r.Str[1:])
			switch r.Str[0] {
			case txnRemoteOK:
				rep, err := core.DecodeReply(r.Str[1:])
				if err != nil {
					return core.Reply{}, fmt.Errorf("raft: decode RAFT.TXNOP reply of %s: %w", nodes[i].ID, err)
				}
				s.txnRoute.Store(sh, i)
				return rep, nil
			case txnRemoteTimeout:
				maybe = true
			}
			last = fmt.Errorf("RAFT.TXNOP at %s: %s", nodes[i].ID, msg)
		}
		if !s.txnPause(ctx, round) {
			break
		}
	}
	if maybe {
		return core.Reply{}, fmt.Errorf("raft: two-phase commit, %s through other nodes: %w: %w", shardName(sh, s.cfg.Shards), consistency.ErrTimeout, last)
	}
	return core.Reply{}, fmt.Errorf("raft: two-phase commit, %s through other nodes: %w: %w", shardName(sh, s.cfg.Shards), consistency.ErrUnavailable, last)
}
