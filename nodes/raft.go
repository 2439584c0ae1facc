package nodes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4/logger"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport"
	"github.com/dialkv/dialkv/transport/raftls"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// dragonboatLogsOnce guards the one process-wide setting of Dragonboat's
// log levels (Dragonboat's loggers are package state of its own).
var dragonboatLogsOnce sync.Once

// RaftStrategy starts this node's part of a namespace of strategy raft
// (consistency/raft: Dragonboat multi-Raft). Every node of the namespace
// creates it with the same parameters (raft.ConfigFromParams), e.g.
//
//	NAMESPACE CREATE kv raft nodes n1,n2,n3 raft-addrs 127.0.0.1:7381,127.0.0.1:7382,127.0.0.1:7383 client-addrs 127.0.0.1:7379,127.0.0.1:7389,127.0.0.1:7399 shards 2
//
// on n1, n2 and n3. The Raft log and snapshots live under the namespace's
// directory; Dragonboat fsyncs its log whatever --fsync says.
func RaftStrategy(env StrategyEnv) (consistency.Service, error) {
	if env.Dir == "" {
		return nil, errors.New("raft: needs a data directory (--engine pebble)")
	}
	cfg, err := raft.ConfigFromParams(env.NodeID, filepath.Join(env.Dir, "raft"), env.Spec.Params)
	if err != nil {
		return nil, err
	}
	// svc is set once raft.New returns; until then (the transport starts
	// inside it) the identity check uses the node list of the parameters.
	var svc atomic.Pointer[raft.Service]
	// RAFT.NODES changes of the node list go to the catalog, which
	// spreads them (raftnodes.go).
	cfg.OnNodesChange = env.UpdateParams
	// Cross-shard transactions touching shards this node does not host
	// propose their two-phase commit operations through nodes that do,
	// over pooled connections closed with the Service.
	peers := newPeerConns(env.ClientDial)
	peer := raftPeer(env, peers)
	cfg.Peer = peer
	if env.Clock != nil {
		cfg.Clock = env.Clock // the proposer's timestamp: TTLs
	}
	if f := env.PeerTLS; f.Cert != "" {
		// Raft traffic runs over transport/raftls with the node's peer
		// certificate: mutual TLS where both sides must present a node
		// certificate naming a node of this namespace (a client
		// certificate of the same CA, or a node outside the namespace, is
		// refused in the handshake). Dragonboat's own MutualTLS would
		// accept any certificate of the CA.
		//
		// Parameter transport=dragonboat names a plain-TCP transport; it
		// does not outrank the node's TLS settings. A namespace created
		// with it before --peer-tls-* was turned on must still open (a
		// refusal here would keep the namespace down on every node
		// restarted with TLS), so it runs over raftls in TLS mode and the
		// node says so once per open.
		if cfg.Transport == raft.TransportDragonboat {
			env.Logger.Warn("raft namespace parameter transport=dragonboat ignored: peer TLS is on, Raft runs over raftls with TLS",
				"namespace", env.Spec.Name)
		}
		initial := map[string]bool{}
		for _, n := range cfg.Nodes {
			initial[string(n.ID)] = true
		}
		isNode := func(name string) bool {
			if s := svc.Load(); s != nil {
				return s.IsNode(name)
			}
			return initial[name]
		}
		server, client, err := security.RaftConfigs(f, isNode, env.PeerRevoked)
		if err != nil {
			return nil, fmt.Errorf("raft namespace %s: %w", env.Spec.Name, err)
		}
		cfg.TransportFactory = raftls.Factory{Server: server, Client: client, Logger: env.Logger, Conns: env.PeerConns}
	} else if cfg.Transport != raft.TransportDragonboat {
		// Without TLS, transport/raftls in plain mode: a refused snapshot
		// stream does not trip Dragonboat's breaker for the peer, and a
		// message batch is one write. It speaks Dragonboat's format with
		// nodes of older builds (docs/raft.md, "Raft transport"), so a
		// rolling upgrade needs nothing set. transport dragonboat keeps
		// Dragonboat's own TCP transport (TransportFactory nil).
		cfg.TransportFactory = raftls.Factory{Logger: env.Logger}
	}
	// Dragonboat's log levels are process-wide: set them once, before
	// the first NodeHost exists, so no NodeHost is logging while they
	// change (a data race under -race when namespaces open concurrently).
	// The first raft namespace's logger decides the level.
	dragonboatLogsOnce.Do(func() { raft.QuietLogs(dragonboatLevel(env.Logger)) })
	s, err := raft.New(cfg)
	if err != nil {
		peers.close()
		return nil, fmt.Errorf("raft namespace %s: %w", env.Spec.Name, err)
	}
	svc.Store(s)
	go func() {
		<-s.Closed()
		peers.close()
	}()
	// Cross-shard transactions left by a coordinator that died are
	// resolved in the background too (ends when the Service closes).
	go s.RecoverTxnsEvery(0)
	for _, c := range s.Corrupt() {
		go rebuildRaftReplica(env, s, c, peer)
	}
	// The background scrub (--raft-scrub-every) quarantines a replica
	// whose state machine went bad while the node runs; it is rebuilt as
	// one found corrupt at start.
	go s.ScrubEvery(env.RaftScrubEvery, env.RaftScrubRate, func(c raft.CorruptReplica) {
		go rebuildRaftReplica(env, s, c, peer)
	})
	return s, nil
}

// dragonboatLevel maps the node's log level onto Dragonboat's
// (process-wide) loggers, one step quieter: Dragonboat logs every election
// step as a warning. debug: INFO; info (dialkv node's default): WARNING;
// warn (dialkv demo's default): CRITICAL, so that the demo's expected
// start-up and shut-down noise (peers not listening yet, peers gone) stays
// off the terminal; error: CRITICAL.
func dragonboatLevel(log *slog.Logger) logger.LogLevel {
	ctx := context.Background()
	switch {
	case log == nil:
		return logger.WARNING
	case log.Enabled(ctx, slog.LevelDebug):
		return logger.INFO
	case log.Enabled(ctx, slog.LevelInfo):
		return logger.WARNING
	}
	return logger.CRITICAL
}

// demoRaftParams are the parameters of the demo's raft namespace: every
// cluster member is a node of it; its Raft (Dragonboat) address is two
// above the client port (n1: PORT+2, n2: PORT+12, ...), or a free port when
// the base port is 0.
func demoRaftParams(listen string, peers []ClusterPeer, shards int) (map[string]string, error) {
	addrs, err := demoPortAddrs(listen, len(peers), 2)
	if err != nil {
		return nil, err
	}
	ids, raftAddrs, clientAddrs := make([]string, len(peers)), make([]string, len(peers)), make([]string, len(peers))
	for i, p := range peers {
		ids[i], clientAddrs[i], raftAddrs[i] = p.ID, p.Client, addrs[i][0]
	}
	return map[string]string{
		"nodes":        strings.Join(ids, ","),
		"raft-addrs":   strings.Join(raftAddrs, ","),
		"client-addrs": strings.Join(clientAddrs, ","),
		"shards":       strconv.Itoa(max(shards, 1)),
		// Shorter than the 10 ms default: loopback round trips take
		// microseconds, and failover takes 10-20 RTTs.
		"rtt": "5ms",
	}, nil
}

// waitRaftLeaders waits until every node's replicas of the namespace know
// their shard's leader, so that the first command typed is served at once.
func waitRaftLeaders(nodes []*ClusterNode, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, cn := range nodes {
		for {
			ns := cn.namespace(name)
			svc, _ := nsService(ns).(*raft.Service)
			ready := svc != nil
			for sh := 0; ready && sh < svc.Shards(); sh++ {
				if svc.Hosts(sh) {
					_, ok := svc.Leader(sh)
					ready = ok
				}
			}
			if ready {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("raft namespace %s: no leader known on %s after %v", name, cn.cfg.ID, timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func nsService(ns *namespace) consistency.Service {
	if ns == nil {
		return nil
	}
	return ns.svc
}

// rebuildRaftReplica restores a replica the raft Service found corrupt
// at start or by its background scrub (raft.Service.Corrupt: its state
// machine was moved aside): it
// logs and counts the event (dialkv_corruption_events_total{kind="store"},
// as for quorum), then has another node of the namespace remove the
// replica and add it back under a fresh ID, and the new replica gets the
// shard from the leader (raft.Service.Rebuild) through call. It runs until
// done or the namespace closes.
func rebuildRaftReplica(env StrategyEnv, svc *raft.Service, c raft.CorruptReplica, call raft.AdminCall) {
	log := env.Logger.With("shard", c.Shard, "replica", c.ReplicaID)
	if c.Scrub {
		log = log.With("found_by", "scrub")
	}
	if c.Err != nil {
		log.Error("raft replica's state machine is corrupt: moved aside; the replica is rebuilt from the other replicas",
			"err", c.Err, "moved_to", c.MovedTo)
		if env.Samples != nil {
			env.Samples([]consistency.Sample{{Name: corruptionSample, Label: corruptStore, Value: 1}})
		}
	} else {
		log.Warn("resuming the rebuild of a raft replica found corrupt before the restart")
	}
	start := time.Now()
	rid, err := svc.Rebuild(context.Background(), c.Shard, call)
	if err != nil {
		log.Error("raft replica rebuild failed", "err", err)
		return
	}
	log.Info("raft replica rebuilt: it rejoined under a new replica ID and gets the shard from the leader",
		"new_replica", rid, "took", time.Since(start).Round(time.Millisecond))
}

// raftPeer sends one command to the namespace at another node's client
// API, over a connection of pool (dialled with the node's client options:
// a node certificate, which admin commands such as RAFT.TXNOP need); the
// request carries ctx's deadline. A failed dial wraps
// consistency.ErrUnavailable (nothing was sent). A connection whose call
// failed is closed, never reused: its stream may hold a late reply.
func raftPeer(env StrategyEnv, pool *peerConns) raft.AdminCall {
	return func(ctx context.Context, n raft.Node, cmd core.Command) (core.Reply, error) {
		conn, err := pool.get(ctx, n.ClientAddr)
		if err != nil {
			return core.Reply{}, fmt.Errorf("dial %s: %w: %w", n.ClientAddr, consistency.ErrUnavailable, err)
		}
		opts := &gen.RequestOptions{}
		ns := env.Spec.Name
		opts.Ns = &ns
		d, hasDeadline := ctx.Deadline()
		if hasDeadline {
			ms := max(time.Until(d).Milliseconds(), 1)
			opts.DeadlineMs = &ms
		}
		conn.SetDeadline(d) // zero: none (a pooled connection keeps no earlier call's)
		resp, err := conn.Call(ctx, opts, transport.CommandFromCore(cmd))
		if err != nil {
			conn.Close()
			return core.Reply{}, err
		}
		pool.put(n.ClientAddr, conn)
		if len(resp.Replies) != 1 {
			return core.Reply{}, fmt.Errorf("%d replies to %s", len(resp.Replies), cmd.Name)
		}
		return transport.ReplyToCore(resp.Replies[0])
	}
}

// peerConns keeps one idle client connection per node address for
// raftPeer: a cross-shard transaction's two-phase commit sends several
// operations to the same nodes, and each used to dial (TCP, and TLS with
// a node certificate) a connection of its own. Concurrent calls to one
// address dial extra connections; only one goes back to the pool, the
// others are closed.
type peerConns struct {
	opts transport.DialOptions

	mu     sync.Mutex
	idle   map[string]*transport.Conn
	closed bool
}

func newPeerConns(opts transport.DialOptions) *peerConns {
	return &peerConns{opts: opts, idle: map[string]*transport.Conn{}}
}

// get takes addr's idle connection, or dials one. An idle connection is
// checked first (transport.Conn.Alive: a zero-timeout poll for a hang-up,
// then on plain TCP a non-blocking peek for unsolicited bytes, both
// regardless of the past deadline the connection's last call left): the
// node may have closed it (its idle timeout, a restart) while it sat in
// the pool.
func (p *peerConns) get(ctx context.Context, addr string) (*transport.Conn, error) {
	p.mu.Lock()
	c, ok := p.idle[addr]
	delete(p.idle, addr)
	p.mu.Unlock()
	if ok {
		if c.Alive() {
			return c, nil
		}
		c.Close()
	}
	return transport.Dial(ctx, addr, p.opts)
}

// put returns a connection whose call succeeded: kept as addr's idle one
// if there is none (and the pool is open), else closed.
func (p *peerConns) put(addr string, c *transport.Conn) {
	p.mu.Lock()
	_, taken := p.idle[addr]
	if !taken && !p.closed {
		p.idle[addr] = c
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// close closes the idle connections; connections put back later are
// closed too.
func (p *peerConns) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = map[string]*transport.Conn{}, true
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}
