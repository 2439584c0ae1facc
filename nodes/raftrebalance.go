package nodes

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dialkv/dialkv/consistency/raft"
)

// RaftRebalanceOptions configure a cluster member's raft rebalancer: the
// loop that keeps every raft namespace's replicas on live nodes and
// spread evenly (raft.Plan), one move at a time, and that appends members
// that joined the cluster to the namespaces' node lists (raftjoin.go). It
// runs only with gossip (its failure detector says which nodes are
// alive), and for each namespace only on the elected member: the alive
// node of the namespace with the smallest ID.
type RaftRebalanceOptions struct {
	// Off disables it.
	Off bool
	// Interval between looks (default 1s).
	Interval time.Duration
	// Grace: a node down (gossip) for this long has its replicas replaced
	// (default 10s).
	Grace time.Duration
	// Settle: a shard whose membership changed less than this long ago is
	// left alone (an operator's move may be under way; default 3s).
	Settle time.Duration
	// MoveTimeout bounds one move (default 60s).
	MoveTimeout time.Duration
}

// registerRebalanceFlags adds dialkv node's raft rebalancer flags to fs;
// the options are filled in when fs is parsed (zero durations take the
// defaults).
func registerRebalanceFlags(fs *flag.FlagSet) *RaftRebalanceOptions {
	o := &RaftRebalanceOptions{}
	fs.BoolFunc("raft-rebalance", "run the raft rebalancer (true|false, default true): it replaces the replicas of a node gossip has seen down for --raft-rebalance-grace and moves replicas onto joined nodes (docs/node.md)", func(v string) error {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false: %w", err)
		}
		o.Off = !on
		return nil
	})
	fs.DurationVar(&o.Interval, "raft-rebalance-interval", time.Second, "how often the raft rebalancer looks at the shards")
	fs.DurationVar(&o.Grace, "raft-rebalance-grace", 10*time.Second, "a node down (gossip) this long has its raft replicas replaced")
	fs.DurationVar(&o.Settle, "raft-rebalance-settle", 3*time.Second, "a shard whose membership changed less than this long ago is left alone (an operator's move may be under way)")
	fs.DurationVar(&o.MoveTimeout, "raft-move-timeout", 60*time.Second, "bound on one replica move of the raft rebalancer")
	return o
}

func (o *RaftRebalanceOptions) defaults() {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	if o.Settle <= 0 {
		o.Settle = 3 * time.Second
	}
	if o.MoveTimeout <= 0 {
		o.MoveTimeout = 60 * time.Second
	}
}

// RaftMoveRecord is one move the rebalancer made (RaftMoves).
type RaftMoveRecord struct {
	Namespace  string
	Move       raft.Move
	Start, End time.Time
	Err        error
}

// raftRebalancer is a member's rebalancer state.
type raftRebalancer struct {
	cn   *ClusterNode
	opts RaftRebalanceOptions
	// downSince: when each node was first seen not alive (cleared when
	// alive again); firstLook stands in for nodes never seen alive.
	downSince map[string]time.Time
	// seen: per namespace and shard, the membership last read and since
	// when (Settle).
	seen map[string]map[int]seenMembers

	mu    sync.Mutex
	moves []RaftMoveRecord
}

type seenMembers struct {
	key   string
	since time.Time
}

// startRaftRebalancer starts the loop (nothing without gossip or with
// opts.Off).
func (cn *ClusterNode) startRaftRebalancer(opts RaftRebalanceOptions) {
	if opts.Off || cn.c.gossip == nil {
		return
	}
	opts.defaults()
	rb := &raftRebalancer{cn: cn, opts: opts, downSince: map[string]time.Time{}, seen: map[string]map[int]seenMembers{}}
	cn.rebalancer = rb
	cn.wg.Add(1)
	go func() {
		defer cn.wg.Done()
		t := time.NewTicker(opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-cn.stop:
				return
			case <-t.C:
				rb.look(time.Now())
			}
		}
	}()
}

// RaftMoves returns the moves this member's rebalancer made, oldest
// first (nil when it does not run).
func (cn *ClusterNode) RaftMoves() []RaftMoveRecord {
	rb := cn.rebalancer
	if rb == nil {
		return nil
	}
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return append([]RaftMoveRecord(nil), rb.moves...)
}

// look is one round: liveness from gossip, then, on the elected member,
// at most one move per raft namespace.
func (rb *raftRebalancer) look(now time.Time) {
	alive := map[string]bool{}
	for _, m := range rb.cn.Members() {
		if m.State == "alive" || m.Self {
			alive[m.ID] = true
			delete(rb.downSince, m.ID)
		} else if _, ok := rb.downSince[m.ID]; !ok {
			rb.downSince[m.ID] = now
		}
	}
	for _, ns := range rb.cn.namespaceList() {
		svc, ok := ns.svc.(*raft.Service)
		if !ok || !svc.Rebalance() || !rb.elected(svc, alive) {
			continue
		}
		select {
		case <-rb.cn.stop:
			return
		default:
		}
		rb.namespace(now, ns.spec.Name, svc, alive)
	}
}

// elected reports whether this member acts for the namespace: it is the
// alive node of the namespace's node list with the smallest ID. (Not the
// smallest alive cluster member: a member that joined with --join may not
// be a node of the namespace yet, or sort first, e.g. n10 before n2, and
// would hold the election while unable to act.) Members whose views of
// the list or of liveness differ for a moment may both act: each
// configuration change is proposed against the membership it read, so
// concurrent changes do not mix (membership.go).
func (rb *raftRebalancer) elected(svc *raft.Service, alive map[string]bool) bool {
	var ids []string
	for _, n := range svc.Nodes() {
		if alive[string(n.ID)] {
			ids = append(ids, string(n.ID))
		}
	}
	sort.Strings(ids)
	return len(ids) > 0 && ids[0] == rb.cn.c.self
}

// namespace plans and makes at most one move in one raft namespace.
func (rb *raftRebalancer) namespace(now time.Time, name string, svc *raft.Service, alive map[string]bool) {
	log := rb.cn.c.log.With("namespace", name)
	call := DialRaftCaller(rb.cn.c.clientDial(), 3*time.Second)
	nodes := svc.Nodes()
	var up []raft.Node
	addrs := map[string]string{}
	in := raft.PlanInput{Replicas: svc.Replicas()}
	for _, n := range nodes {
		id := string(n.ID)
		addrs[id] = n.ClientAddr
		in.Nodes = append(in.Nodes, id)
		if alive[id] {
			up = append(up, n)
			in.Alive = append(in.Alive, id)
		} else if since, ok := rb.downSince[id]; ok && now.Sub(since) >= rb.opts.Grace {
			in.Dead = append(in.Dead, id)
		}
	}
	for _, r := range svc.Retired() {
		in.Retired = append(in.Retired, string(r))
	}
	// A member that joined the cluster and offers a Raft address becomes
	// a node of the namespace first (raftjoin.go); the moves onto it are
	// planned at the next look, with the new list.
	if rb.extendRaftNodes(name, svc, call) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	p, err := ReadRaftPlacement(ctx, call, name, up)
	cancel()
	if err != nil {
		log.Info("raft rebalancer: reading the placement failed", "err", err)
		return
	}
	mover := RaftMover{Call: call, Namespace: name, Addrs: addrs, Log: func(msg string, args ...any) { log.Info(msg, args...) }}
	// Replicas removed from their shard but still running: stop them.
	for node, shards := range p.Stale {
		for _, sh := range shards {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := mover.call(ctx, node, "RAFT.LEAVE", strconv.Itoa(sh))
			cancel()
			log.Info("raft rebalancer: stopped a removed replica", "node", node, "shard", sh, "err", err)
		}
	}
	// Shards whose membership changed recently are left alone.
	seen := rb.seen[name]
	if seen == nil {
		seen = map[int]seenMembers{}
		rb.seen[name] = seen
	}
	in.Members = map[int][]string{}
	for sh, ms := range p.Members {
		sorted := append([]string(nil), ms...)
		sort.Strings(sorted)
		key := strings.Join(sorted, ",")
		if s, ok := seen[sh]; !ok || s.key != key {
			seen[sh] = seenMembers{key: key, since: now}
		}
		if now.Sub(seen[sh].since) >= rb.opts.Settle {
			in.Members[sh] = ms
		}
	}
	mv, found := raft.Plan(in)
	if !found {
		return
	}
	if len(in.Members) < svc.Shards() {
		// Some shards are unknown or settling: balancing moves wait for
		// the whole picture (replacing dead or retired members does not).
		if mv.Kind == raft.MoveBalance {
			return
		}
	}
	log.Info("raft rebalancer: move", "move", mv.String())
	rec := RaftMoveRecord{Namespace: name, Move: mv, Start: time.Now()}
	ctx, cancel = context.WithTimeout(context.Background(), rb.opts.MoveTimeout)
	go func() { // a move stops with the node
		select {
		case <-rb.cn.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	rec.Err = mover.Move(ctx, mv, p.Members[mv.Shard])
	cancel()
	rec.End = time.Now()
	if rec.Err != nil {
		log.Warn("raft rebalancer: move failed", "move", mv.String(), "err", rec.Err)
	}
	rb.mu.Lock()
	rb.moves = append(rb.moves, rec)
	rb.mu.Unlock()
}
