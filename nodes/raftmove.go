package nodes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// RaftCaller sends one raft membership command (RAFT.*) to the namespace
// ns at a node's client API address and returns the reply. An error
// reply is returned as an error.
type RaftCaller func(ctx context.Context, addr, ns string, args ...string) (core.Reply, error)

// DialRaftCaller is a RaftCaller over one Thrift connection per call,
// dialled with opts; each call is bounded by timeout.
func DialRaftCaller(opts transport.DialOptions, timeout time.Duration) RaftCaller {
	return func(ctx context.Context, addr, ns string, args ...string) (core.Reply, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c, err := transport.Dial(ctx, addr, opts)
		if err != nil {
			return core.Reply{}, fmt.Errorf("%s at %s: %w", args[0], addr, err)
		}
		defer c.Close()
		if d, ok := ctx.Deadline(); ok {
			c.SetDeadline(d)
		}
		o := gen.NewRequestOptions()
		o.Ns = &ns
		ms := int64(timeout / time.Millisecond)
		o.DeadlineMs = &ms
		argv := make([][]byte, len(args)-1)
		for i, a := range args[1:] {
			argv[i] = []byte(a)
		}
		resp, err := c.Call(ctx, o, &gen.Command{Name: args[0], Argv: argv})
		if err != nil {
			return core.Reply{}, fmt.Errorf("%s at %s: %w", strings.Join(args, " "), addr, err)
		}
		if len(resp.Replies) != 1 {
			return core.Reply{}, fmt.Errorf("%s at %s: %d replies", args[0], addr, len(resp.Replies))
		}
		r, err := transport.ReplyToCore(resp.Replies[0])
		if err != nil {
			return core.Reply{}, fmt.Errorf("%s at %s: %w", args[0], addr, err)
		}
		if r.IsError() {
			return r, fmt.Errorf("%s at %s: %s", strings.Join(args, " "), addr, r.Err.Msg)
		}
		return r, nil
	}
}

// RaftMover executes raft.Moves through the members' client APIs.
type RaftMover struct {
	Call      RaftCaller
	Namespace string
	// Addrs maps node IDs to client API addresses (the namespace's
	// client-addrs).
	Addrs map[string]string
	// Log receives each step (nil: none).
	Log func(msg string, args ...any)
}

// The steps of a move, as RaftMover.Move logs them.
const (
	stepAdd, stepJoin, stepSynced, stepPromote, stepRemove, stepLeave = "add", "join", "synced", "promote", "remove", "leave"
)

// Move executes mv on a shard whose current voting members are members:
// the configuration changes go through a member other than mv.From (the
// first that answers); To's replica is added as a non-voting member
// (RAFT.ADD ... NONVOTING: its new replica ID), started (RAFT.JOIN ...
// NONVOTING), caught up (RAFT.SYNCED: it has applied everything committed
// when asked) and promoted to a voter (RAFT.PROMOTE) before From's is
// removed (RAFT.REMOVE) and stopped (RAFT.LEAVE, best effort: From may be
// down) — or, with mv.RemoveFirst, From is removed first. While To catches
// up it does not count in the shard's quorum, so a slow catch-up cannot
// cost the shard its quorum (a voter added directly would: 3 voters plus
// one that has nothing need 3 of 4). Each step is retried until ctx ends;
// steps are idempotent (ADD of a member returns its ID, PROMOTE of a voter
// and REMOVE of a non-member succeed).
func (m RaftMover) Move(ctx context.Context, mv raft.Move, members []string) error {
	var via []string
	for _, id := range members {
		if id != mv.From {
			via = append(via, id)
		}
	}
	if len(via) == 0 {
		return fmt.Errorf("raft move %v: no member other than %s to propose through", mv, mv.From)
	}
	sh := strconv.Itoa(mv.Shard)
	remove := func() error {
		if _, err := m.retry(ctx, stepRemove, via, "RAFT.REMOVE", sh, mv.From); err != nil {
			return err
		}
		// The removed node stops its replica; it may be down (then the
		// rebalancer's cleanup stops it when it is back).
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := m.call(lctx, mv.From, "RAFT.LEAVE", sh); err != nil {
			m.log("raft move: leave failed (the replica is stopped later)", "move", mv.String(), "err", err)
		} else {
			m.log("raft move: "+stepLeave, "at", mv.From, "cmd", "RAFT.LEAVE "+sh)
		}
		return nil
	}
	if mv.From != "" && mv.RemoveFirst {
		if err := remove(); err != nil {
			return fmt.Errorf("raft move %v: %w", mv, err)
		}
	}
	if mv.To != "" {
		r, err := m.retry(ctx, stepAdd, via, "RAFT.ADD", sh, mv.To, "NONVOTING")
		if err != nil {
			return fmt.Errorf("raft move %v: %w", mv, err)
		}
		if r.Kind != core.KindInt || r.Int <= 0 {
			return fmt.Errorf("raft move %v: RAFT.ADD replied %v, want a replica ID", mv, r)
		}
		rid := strconv.FormatInt(r.Int, 10)
		if _, err := m.retry(ctx, stepJoin, []string{mv.To}, "RAFT.JOIN", sh, rid, "NONVOTING"); err != nil {
			// Joined already (a retried join after a lost reply): fine.
			if !strings.Contains(err.Error(), "already hosts") {
				return fmt.Errorf("raft move %v: %w", mv, err)
			}
		}
		// Caught up first: promoted, To counts in the quorum at once.
		if _, err := m.retry(ctx, stepSynced, []string{mv.To}, "RAFT.SYNCED", sh); err != nil {
			return fmt.Errorf("raft move %v: %w", mv, err)
		}
		if _, err := m.retry(ctx, stepPromote, via, "RAFT.PROMOTE", sh, mv.To); err != nil {
			return fmt.Errorf("raft move %v: %w", mv, err)
		}
	}
	if mv.From != "" && !mv.RemoveFirst {
		if err := remove(); err != nil {
			return fmt.Errorf("raft move %v: %w", mv, err)
		}
	}
	return nil
}

// retry calls args at the nodes of at in turn until one succeeds or ctx
// ends. Replies that say the request cannot succeed (already hosts, or
// refused as unauthenticated or forbidden) end it at once.
func (m RaftMover) retry(ctx context.Context, step string, at []string, args ...string) (core.Reply, error) {
	var err error
	for attempt := 0; ctx.Err() == nil; attempt++ {
		node := at[attempt%len(at)]
		var r core.Reply
		r, err = m.call(ctx, node, args...)
		if err == nil {
			m.log("raft move: "+step, "at", node, "cmd", strings.Join(args, " "))
			return r, nil
		}
		if strings.Contains(err.Error(), "already hosts") {
			return r, err
		}
		var ue *gen.Unauthenticated
		var fe *gen.Forbidden
		if errors.As(err, &ue) || errors.As(err, &fe) {
			// Refused by the node's policy: another node or another
			// attempt gets the same answer.
			return r, fmt.Errorf("%s: %w", step, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return core.Reply{}, fmt.Errorf("%s: %w", step, err)
}

func (m RaftMover) call(ctx context.Context, node string, args ...string) (core.Reply, error) {
	addr, ok := m.Addrs[node]
	if !ok || addr == "" {
		return core.Reply{}, errors.New("no client address for node " + node)
	}
	return m.Call(ctx, addr, m.Namespace, args...)
}

func (m RaftMover) log(msg string, args ...any) {
	if m.Log != nil {
		m.Log(msg, args...)
	}
}

// RaftPlacement is what the rebalancer and `dialkv admin where-shards`
// read of a raft namespace: each shard's voting members (asked with
// RAFT.MEMBERS at a node hosting it) and the replicas that nodes still run
// after being removed (Stale: node to shards).
type RaftPlacement struct {
	Members map[int][]string
	// NonVoting: shard to the nodes of its non-voting members (a move
	// under way: catching up before its promotion); neither members nor
	// stale.
	NonVoting map[int][]string
	Stale     map[string][]int
	// Hosted: node to the shards it reports (RAFT.HOSTED); nodes that did
	// not answer are absent.
	Hosted map[string][]raft.HostedReplica
}

// ReadRaftPlacement asks every node of nodes (ID to client address) for
// its replicas (RAFT.HOSTED), then each shard's members at a node that
// hosts it as a member. Nodes that do not answer are skipped; a shard no
// answering node hosts is absent from Members.
func ReadRaftPlacement(ctx context.Context, call RaftCaller, ns string, nodes []raft.Node) (RaftPlacement, error) {
	p := RaftPlacement{Members: map[int][]string{}, NonVoting: map[int][]string{}, Stale: map[string][]int{}, Hosted: map[string][]raft.HostedReplica{}}
	hostsOf := map[int][]string{}
	for _, n := range nodes {
		r, err := call(ctx, n.ClientAddr, ns, "RAFT.HOSTED")
		if err != nil {
			continue
		}
		var hs []raft.HostedReplica
		for _, e := range r.Array {
			var h raft.HostedReplica
			if _, err := fmt.Sscanf(string(e.Str), "%d %d %s", &h.Shard, &h.ReplicaID, &h.State); err != nil {
				return p, fmt.Errorf("RAFT.HOSTED at %s: %q: %w", n.ID, e.Str, err)
			}
			hs = append(hs, h)
			if h.State == "member" {
				hostsOf[h.Shard] = append(hostsOf[h.Shard], string(n.ID))
			}
		}
		p.Hosted[string(n.ID)] = hs
	}
	addr := map[string]string{}
	for _, n := range nodes {
		addr[string(n.ID)] = n.ClientAddr
	}
	for sh, hosts := range hostsOf {
		for _, h := range hosts {
			r, err := call(ctx, addr[h], ns, "RAFT.MEMBERS", strconv.Itoa(sh))
			if err != nil {
				continue
			}
			var ms, nv []string
			for _, e := range r.Array {
				f := strings.Fields(string(e.Str))
				switch {
				case len(f) >= 4 && f[3] == "nonvoting":
					nv = append(nv, f[1])
				case len(f) >= 2:
					ms = append(ms, f[1])
				}
			}
			p.Members[sh] = ms
			if len(nv) > 0 {
				p.NonVoting[sh] = nv
			}
			break
		}
	}
	// A replica is stale when the shard's membership does not list its
	// node, as a voter or a non-voting member (removed, waiting for
	// RAFT.LEAVE; a node down while it was removed may still believe it is
	// a member). The membership was read after the replicas: a replica
	// being added (RAFT.ADD precedes RAFT.JOIN) is in it.
	for node, hs := range p.Hosted {
		for _, h := range hs {
			ms, known := p.Members[h.Shard]
			if !known {
				continue
			}
			member := false
			for _, m := range append(ms, p.NonVoting[h.Shard]...) {
				member = member || m == node
			}
			if !member {
				p.Stale[node] = append(p.Stale[node], h.Shard)
			}
		}
	}
	return p, nil
}
