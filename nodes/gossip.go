package nodes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberInfo is one cluster member as this node sees it through gossip.
type MemberInfo struct {
	ID     string `json:"id"`
	Client string `json:"client"` // client API address
	Peer   string `json:"peer"`   // peer API address
	Gossip string `json:"gossip"` // gossip (memberlist) address; "" if never seen
	// Raft lists the Raft addresses the node offers to raft namespaces
	// that do not list it yet (ClusterConfig.RaftListen, from its gossip
	// metadata); the raft rebalancer adds it to their node lists.
	Raft []string `json:"raft,omitempty"`
	// State is "alive" (memberlist counts it as a member: alive or only
	// suspected), "down" (memberlist declared it dead, or it left), or
	// "unknown" (listed in --peers, never seen through gossip).
	State string `json:"state"`
	Self  bool   `json:"self,omitempty"`
}

// gossipMeta is what a node advertises in its memberlist metadata (at most
// 512 bytes).
type gossipMeta struct {
	Client string   `json:"c"`
	Peer   string   `json:"p"`
	Raft   []string `json:"r,omitempty"` // ClusterConfig.RaftListen
}

// gossipState is what a node hands a node it exchanges full state with
// (memberlist push/pull): the cluster's static member list, so that a node
// started with --join and no --peers learns it.
type gossipState struct {
	Peers []ClusterPeer `json:"peers"`
}

// gossip runs hashicorp/memberlist for one cluster node: it detects
// failures and keeps the member table. Liveness changes go to onChange
// (called from one goroutine, in order), never from memberlist's own
// callbacks, so a slow consumer cannot stall the protocol.
type gossip struct {
	self  string
	log   *slog.Logger
	ml    *memberlist.Memberlist
	meta  []byte
	seeds []string

	mu       sync.Mutex
	peers    []ClusterPeer // the member list (setPeers); nil until known (--join only)
	learned  []ClusterPeer // peers learned from a seed (--join without --peers)
	alive    map[string]bool
	gone     map[string]MemberInfo // last known entry of members no longer in memberlist's table
	events   chan gossipEvent
	stop     chan struct{}
	done     sync.WaitGroup
	onChange func(id string, alive bool)
}

type gossipEvent struct {
	id    string
	alive bool
}

var (
	_ memberlist.Delegate      = (*gossipDelegate)(nil)
	_ memberlist.EventDelegate = (*gossipDelegate)(nil)
)

// gossipDelegate keeps memberlist's interfaces off gossip's method set.
type gossipDelegate struct{ g *gossip }

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	if len(d.g.meta) > limit {
		return nil
	}
	return d.g.meta
}
func (d *gossipDelegate) NotifyMsg([]byte)                {}
func (d *gossipDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(bool) []byte {
	b, _ := json.Marshal(gossipState{Peers: d.g.staticPeers()})
	return b
}
func (d *gossipDelegate) MergeRemoteState(buf []byte, _ bool) {
	d.g.mu.Lock()
	known := d.g.peers != nil
	d.g.mu.Unlock()
	if known {
		return
	}
	var s gossipState
	if json.Unmarshal(buf, &s) != nil || len(s.Peers) == 0 {
		return
	}
	d.g.mu.Lock()
	if d.g.learned == nil {
		d.g.learned = s.Peers
	}
	d.g.mu.Unlock()
}
func (d *gossipDelegate) NotifyJoin(n *memberlist.Node) {
	d.g.mu.Lock()
	delete(d.g.gone, n.Name)
	d.g.mu.Unlock()
	d.g.event(n.Name, true)
}
func (d *gossipDelegate) NotifyLeave(n *memberlist.Node) {
	d.g.mu.Lock()
	d.g.gone[n.Name] = MemberInfo{ID: n.Name, Gossip: n.Address(), State: "down"}
	d.g.mu.Unlock()
	d.g.event(n.Name, false)
}
func (d *gossipDelegate) NotifyUpdate(n *memberlist.Node) {}

// GossipOptions configure a node's gossip.
type GossipOptions struct {
	// Listen is the gossip address HOST:PORT (UDP and TCP); port 0 picks
	// one.
	Listen string
	// Join lists gossip addresses to join at start and to retry every
	// Rejoin while any static member is not seen alive.
	Join []string
	// ProbeInterval is memberlist's failure-detector probe period
	// (default 500ms); a silent node is declared dead a few probe
	// periods later.
	ProbeInterval time.Duration
	// Rejoin is the retry period of Join (default 2s).
	Rejoin time.Duration
	// SecretKey, if set (16, 24 or 32 bytes), encrypts and authenticates
	// every gossip message with AES-GCM (memberlist's keyring); messages
	// without it, or sealed with another key, are dropped. StartClusterNode
	// takes it from Config.Security.GossipKey.
	SecretKey []byte
}

// startGossip starts memberlist as node self of cluster name. peers may be
// nil (a node started with --join only): it is then learned from the first
// seed that answers (learnedPeers).
func startGossip(self, name string, meta gossipMeta, peers []ClusterPeer, o GossipOptions, logger *slog.Logger) (*gossip, error) {
	host, portS, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("gossip: listen address %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, fmt.Errorf("gossip: listen port %q: %w", portS, err)
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 500 * time.Millisecond
	}
	if o.Rejoin <= 0 {
		o.Rejoin = 2 * time.Second
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("gossip: metadata: %w", err)
	}
	g := &gossip{self: self, log: logger, meta: mb, peers: peers, seeds: o.Join,
		alive: map[string]bool{}, gone: map[string]MemberInfo{}, events: make(chan gossipEvent, 1024), stop: make(chan struct{})}
	cfg := memberlist.DefaultLocalConfig()
	cfg.Name = self
	cfg.BindAddr, cfg.BindPort = host, port
	cfg.Label = "dialkv/" + name // gossip of another cluster is rejected
	cfg.ProbeInterval = o.ProbeInterval
	cfg.ProbeTimeout = o.ProbeInterval / 2
	cfg.GossipInterval = 100 * time.Millisecond
	cfg.PushPullInterval = 10 * time.Second
	cfg.SuspicionMult = 3
	cfg.DeadNodeReclaimTime = time.Second // a restarted node may come back at once
	if len(o.SecretKey) > 0 {
		// GossipVerifyIncoming/Outgoing stay at their default (true):
		// plain gossip is neither sent nor accepted.
		cfg.SecretKey = o.SecretKey
	}
	d := &gossipDelegate{g: g}
	cfg.Delegate, cfg.Events = d, d
	cfg.Logger = log.New(slogWriter{logger}, "", 0)
	ml, err := memberlist.Create(cfg)
	if err != nil {
		return nil, fmt.Errorf("gossip: start on %s: %w", o.Listen, err)
	}
	g.ml = ml
	if len(o.Join) > 0 {
		if _, err := ml.Join(o.Join); err != nil {
			logger.Info("gossip: no seed answered yet; retrying", "seeds", o.Join, "err", err)
		}
	}
	g.done.Add(2)
	go g.dispatch()
	go g.rejoin(o.Rejoin)
	return g, nil
}

// event queues a liveness change; memberlist calls it under its own locks.
func (g *gossip) event(id string, alive bool) {
	if id == g.self {
		return
	}
	select {
	case g.events <- gossipEvent{id, alive}:
	default:
		g.log.Warn("gossip: event queue full; liveness change dropped", "node", id, "alive", alive)
	}
}

// setHandler sets the consumer of liveness changes and replays the current
// view to it.
func (g *gossip) setHandler(f func(id string, alive bool)) {
	g.mu.Lock()
	g.onChange = f
	g.mu.Unlock()
}

func (g *gossip) dispatch() {
	defer g.done.Done()
	for {
		select {
		case <-g.stop:
			return
		case e := <-g.events:
			g.mu.Lock()
			changed := g.alive[e.id] != e.alive
			g.alive[e.id] = e.alive
			f := g.onChange
			g.mu.Unlock()
			if changed {
				g.log.Info("gossip: member state changed", "node", e.id, "alive", e.alive)
			}
			if f != nil {
				f(e.id, e.alive)
			}
		}
	}
}

// downSet returns the members gossip has declared dead or gone.
func (g *gossip) downSet() map[string]bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]bool{}
	for id, a := range g.alive {
		if !a {
			out[id] = true
		}
	}
	return out
}

// rejoin joins the seeds again while a static member is missing from the
// member table (nodes that started at the same time, or a healed
// partition).
func (g *gossip) rejoin(every time.Duration) {
	defer g.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		if len(g.seeds) == 0 {
			continue
		}
		seen := map[string]bool{}
		for _, n := range g.ml.Members() {
			if n.State == memberlist.StateAlive || n.State == memberlist.StateSuspect {
				seen[n.Name] = true
			}
		}
		missing := false
		for _, p := range g.staticPeers() {
			if !seen[p.ID] {
				missing = true
			}
		}
		if missing || len(seen) < 2 {
			g.ml.Join(g.seeds) // errors: the missing members are down; retried
		}
	}
}

// staticPeers is the static member list: --peers, or the one learned from
// a seed.
func (g *gossip) staticPeers() []ClusterPeer {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.peers != nil {
		return g.peers
	}
	return g.learned
}

// setPeers replaces the member list (a ring change, nodes/ring.go): the
// members rejoin watches for, and the one handed to --join-only nodes.
func (g *gossip) setPeers(ps []ClusterPeer) {
	g.mu.Lock()
	g.peers = append([]ClusterPeer(nil), ps...)
	g.mu.Unlock()
}

// members renders the member table: every static member and every node
// gossip knows, sorted by id.
func (g *gossip) members() []MemberInfo {
	byID := map[string]*MemberInfo{}
	for _, p := range g.staticPeers() {
		byID[p.ID] = &MemberInfo{ID: p.ID, Client: p.Client, Peer: p.Peer, State: "unknown"}
	}
	// Members() lists only live and suspect nodes; the others are in
	// g.gone.
	for _, n := range g.ml.Members() {
		m := byID[n.Name]
		if m == nil {
			m = &MemberInfo{ID: n.Name}
			byID[n.Name] = m
		}
		var meta gossipMeta
		if json.Unmarshal(n.Meta, &meta) == nil {
			if m.Client == "" {
				m.Client = meta.Client
			}
			if m.Peer == "" {
				m.Peer = meta.Peer
			}
			m.Raft = meta.Raft
		}
		m.Gossip = n.Address()
		m.State = "alive" // memberlist lists live and suspected nodes; it does not say which
	}
	g.mu.Lock()
	for id, gm := range g.gone {
		if m := byID[id]; m != nil && (m.State == "unknown" || m.State == "") {
			m.State, m.Gossip = gm.State, gm.Gossip
		}
	}
	g.mu.Unlock()
	out := make([]MemberInfo, 0, len(byID))
	for _, m := range byID {
		m.Self = m.ID == g.self
		if m.Self {
			m.State = "alive"
		}
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// addr is the gossip address this node listens on.
func (g *gossip) addr() string { return g.ml.LocalNode().Address() }

// close leaves the cluster (so peers see "left" at once, not after the
// failure detector's timeout) and stops memberlist.
func (g *gossip) close() error {
	err := g.ml.Leave(time.Second)
	if serr := g.ml.Shutdown(); err == nil {
		err = serr
	}
	close(g.stop)
	g.done.Wait()
	return err
}

// slogWriter turns memberlist's log lines into debug records (its warnings
// about unreachable nodes are expected while a member is down).
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("memberlist: " + string(bytes.TrimSpace(p)))
	return len(p), nil
}

var _ io.Writer = slogWriter{}

// waitLearnedPeers waits until a seed has told a --join-only node the
// static member list.
func (g *gossip) waitLearnedPeers(timeout time.Duration) ([]ClusterPeer, error) {
	deadline := time.Now().Add(timeout)
	for {
		if ps := g.staticPeers(); len(ps) > 0 {
			return ps, nil
		}
		if time.Now().After(deadline) {
			return nil, errors.New("gossip: no seed told this node the member list (is --join right, and is the seed running?)")
		}
		if len(g.seeds) > 0 {
			g.ml.Join(g.seeds)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
