package nodes

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
	"github.com/dialkv/dialkv/consistency/quorum"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// ClusterPeer is one member of a static cluster.
type ClusterPeer struct {
	ID     string
	Client string // client API address (HOST:PORT), for forwarding and redirects
	Peer   string // peer API address (HOST:PORT), for replication messages
	// Region places the node in a region of the causal namespaces whose
	// regions parameter does not name it (a node added after their
	// creation: dialkv admin add-node --region); empty otherwise.
	Region string `json:",omitempty"`
}

// ClusterConfig configures a node's membership of a static cluster.
type ClusterConfig struct {
	// Name is the cluster's name; peer messages of another cluster are
	// rejected.
	Name string
	// PeerListen is this node's peer API address (default: the Peer address
	// of its own entry in Peers).
	PeerListen string
	// Peers lists every member, this node included.
	Peers []ClusterPeer
	// CatalogSync is how often the node pulls the catalog from its peers to
	// create namespaces it missed; default 2s.
	CatalogSync time.Duration
	// Tick is the replicas' tick interval; default 10ms.
	Tick time.Duration
	// PeerMinBackoff and PeerMaxBackoff bound the peer senders' reconnect
	// backoff (transport.PeerSenderOptions); defaults 10ms and 2s. A
	// sender's backoff ends early when its peer reaches us or gossip sees
	// it alive.
	PeerMinBackoff, PeerMaxBackoff time.Duration
	// PeerDelay adds a one-way delay to every peer message this node sends
	// to the given member (by ID): an injected WAN link, e.g. between the
	// regions of a causal namespace in `dialkv demo --region-delay`.
	PeerDelay map[string]time.Duration
	// Gossip, if set, runs hashicorp/memberlist: failure detection whose
	// verdicts are fed to the replicas (quorum: SetPeerState), and the
	// member table (CLUSTER MEMBERS). With no Peers, the static member
	// list is learned from the first Gossip.Join seed that answers.
	Gossip *GossipOptions
	// RaftRebalance configures the raft rebalancer (raftrebalance.go);
	// it runs only with Gossip.
	RaftRebalance RaftRebalanceOptions
	// RaftListen lists Raft addresses this node offers to raft namespaces
	// that do not list it (dialkv node --raft-listen; advertised in its
	// gossip metadata). Each raft namespace runs its own Dragonboat
	// NodeHost, so each needs an address of its own: the rebalancer adds
	// the node to the node list of a namespace with an address this node
	// uses in no other raft namespace (raftjoin.go).
	RaftListen []string

	// sec is the node's Config.Security (set by StartClusterNode): peer
	// TLS, and the TLS used to call the other members' client API.
	sec security.Settings
	// ringPullHold (tests) skips the member list pulls for this long
	// after the start: a node that cannot reach its peers' client API yet
	// keeps the list it persisted (TestClusterRingRemovedComesBack).
	ringPullHold time.Duration
}

// ParsePeers parses the --peers flag: "n1=CLIENT@PEER,n2=CLIENT@PEER,...",
// e.g. "n1=127.0.0.1:7379@127.0.0.1:7380,n2=127.0.0.1:7389@127.0.0.1:7390".
func ParsePeers(s string) ([]ClusterPeer, error) {
	var out []ClusterPeer
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, addrs, ok := strings.Cut(part, "=")
		client, peer, ok2 := strings.Cut(addrs, "@")
		if !ok || !ok2 || id == "" || client == "" || peer == "" {
			return nil, fmt.Errorf("--peers: %q: want ID=CLIENT_ADDR@PEER_ADDR", part)
		}
		if seen[id] {
			return nil, fmt.Errorf("--peers: node %q listed twice", id)
		}
		seen[id] = true
		out = append(out, ClusterPeer{ID: id, Client: client, Peer: peer})
	}
	if len(out) == 0 {
		return nil, errors.New("--peers: no peers")
	}
	return out, nil
}

// FormatPeers renders peers in the --peers format.
func FormatPeers(peers []ClusterPeer) string {
	parts := make([]string, len(peers))
	for i, p := range peers {
		parts[i] = p.ID + "=" + p.Client + "@" + p.Peer
	}
	return strings.Join(parts, ",")
}

// ClusterStrategies are the strategies a cluster node adds to "local".
// Raft namespaces ("raft", RaftStrategy) carry their own member list in
// their parameters and are started the same way on each node.
var clusterStrategyNames = []string{"quorum", "causal"}

// cluster is a node's view of its static cluster: the peer server, one
// sender per remote node, and the replica hosts of its namespaces.
type cluster struct {
	self    string
	cfg     ClusterConfig
	dataDir string // where the member list is persisted ("" : not persisted)
	log     *slog.Logger
	srv     *transport.PeerServer

	mu      sync.RWMutex
	mem     Membership                       // the member list (ring.go)
	senders map[string]*transport.PeerSender // by node id; grows with the member list
	hosts   map[string]*ReplicaHost          // by namespace
	kinds   map[string]string                // strategy of each hosted namespace
	// regionSpecs is the regions parameter of each hosted causal
	// namespace (its replicas are placed by it and ClusterPeer.Region).
	regionSpecs map[string]string

	gossip *gossip // nil: no failure detector (static membership only)

	// ringPullFrom: member list pulls before it are skipped
	// (ClusterConfig.ringPullHold).
	ringPullFrom time.Time

	// incarnation is drawn from crypto/rand when the node starts and mixed
	// into every replica's seed (replicaRand): replicas draw request ids
	// from their Rand, and a node restarted with the same seed would reuse
	// the ids of its previous life, which peers still remember and drop as
	// duplicates (forwarded causal requests timed out after a quick
	// restart). Only the simulator needs replicas seeded reproducibly.
	incarnation uint64
}

// replicaRand is the randomness of this node's replica of namespace ns:
// seeded by the node, the namespace and this process's incarnation.
func (c *cluster) replicaRand(ns string) *rand.Rand {
	return rand.New(rand.NewPCG(seedOf(c.self)^c.incarnation, seedOf(ns)))
}

// peerStater is implemented by replicas that take membership as an input
// (quorum.Replica): a peer marked not alive is routed around.
type peerStater interface {
	SetPeerState(id consistency.NodeID, alive bool)
}

// setPeerState hands a liveness verdict to every hosted replica that takes
// one.
func (c *cluster) setPeerState(id string, alive bool) {
	c.mu.RLock()
	if snd := c.senders[id]; alive && snd != nil {
		snd.Wake() // back: reconnect now rather than after the backoff
	}
	hosts := make([]*ReplicaHost, 0, len(c.hosts))
	for _, h := range c.hosts {
		hosts = append(hosts, h)
	}
	c.mu.RUnlock()
	for _, h := range hosts {
		h.Call(func(r consistency.Replica) {
			if ps, ok := r.(peerStater); ok {
				ps.SetPeerState(consistency.NodeID(id), alive)
			}
		})
	}
}

// command answers CLUSTER MEMBERS: one line per member, "ID STATE
// client=ADDR peer=ADDR gossip=ADDR" (then " raft=ADDR,..." for a member
// that offers Raft addresses, and " self" for this node); CLUSTER RING
// (ringCommand) and CLUSTER REBUILD (rebuildCommand).
func (c *cluster) command(cmd core.Command) (core.Reply, bool) {
	if !strings.EqualFold(cmd.Name, "CLUSTER") {
		return core.Reply{}, false
	}
	if len(cmd.Args) >= 1 && strings.EqualFold(string(cmd.Args[0]), "RING") {
		return c.ringCommand(cmd.Args[1:]), true
	}
	if len(cmd.Args) >= 1 && strings.EqualFold(string(cmd.Args[0]), "REBUILD") {
		return c.rebuildCommand(cmd.Args[1:]), true
	}
	if len(cmd.Args) != 1 || !strings.EqualFold(string(cmd.Args[0]), "MEMBERS") {
		return core.ErrorReply(core.Errorf(core.CodeErr, "syntax: CLUSTER MEMBERS | CLUSTER RING [SET MEMBERSHIP_JSON] | CLUSTER REBUILD [NAMESPACE]")), true
	}
	var rs []core.Reply
	for _, m := range c.members() {
		line := fmt.Sprintf("%s %s client=%s peer=%s gossip=%s", m.ID, m.State, m.Client, m.Peer, m.Gossip)
		if len(m.Raft) > 0 {
			line += " raft=" + strings.Join(m.Raft, ",")
		}
		if m.Self {
			line += " self"
		}
		rs = append(rs, core.Bulk([]byte(line)))
	}
	return core.Array(rs...), true
}

// members is the member table: gossip's view, or the static list.
func (c *cluster) members() []MemberInfo {
	if c.gossip != nil {
		return c.gossip.members()
	}
	ps := c.membership().all()
	out := make([]MemberInfo, 0, len(ps))
	for _, p := range ps {
		m := MemberInfo{ID: p.ID, Client: p.Client, Peer: p.Peer, State: "unknown", Self: p.ID == c.self}
		if m.Self {
			m.State = "alive"
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// newCluster sets up the peer endpoints. The member list is the one
// persisted in dataDir if any (a ring change survives restarts), else
// cc.Peers as version 1. A node not in it is refused unless joining
// (started with --join only: it runs as a non-member until
// `dialkv admin add-node` adds it).
func newCluster(self string, cc ClusterConfig, dataDir string, joining bool, log *slog.Logger) (*cluster, error) {
	if cc.Name == "" {
		return nil, errors.New("cluster: --cluster NAME is required with --peers")
	}
	if cc.CatalogSync <= 0 {
		cc.CatalogSync = 2 * time.Second
	}
	c := &cluster{self: self, cfg: cc, dataDir: dataDir, log: log, senders: map[string]*transport.PeerSender{}, hosts: map[string]*ReplicaHost{}, kinds: map[string]string{}, regionSpecs: map[string]string{},
		ringPullFrom: time.Now().Add(cc.ringPullHold)}
	var inc [8]byte
	if _, err := crand.Read(inc[:]); err != nil {
		return nil, fmt.Errorf("cluster: incarnation: %w", err)
	}
	c.incarnation = binary.LittleEndian.Uint64(inc[:])
	mem, ok, err := loadMembership(dataDir)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if !ok {
		mem = Membership{Version: 1, Phase: PhaseStable, Members: cc.Peers}
		if err := mem.validate(); err != nil {
			return nil, fmt.Errorf("cluster: --peers: %w", err)
		}
	} else if len(cc.Peers) > 0 && FormatPeers(mem.Members) != FormatPeers(cc.Peers) {
		log.Info("cluster: using the persisted member list; --peers is only the initial one", "version", mem.Version, "members", FormatPeers(mem.Members))
	}
	c.mem = mem
	for _, p := range mem.all() {
		if p.ID == self && c.cfg.PeerListen == "" {
			c.cfg.PeerListen = p.Peer
		}
	}
	if !hasPeer(mem.all(), self) {
		if !joining {
			return nil, fmt.Errorf("cluster: this node (%s) is not in --peers", self)
		}
		if c.cfg.PeerListen == "" {
			return nil, fmt.Errorf("cluster: %s is not a member yet: --peer-listen is needed", self)
		}
		log.Info("cluster: not a member of the ring yet; serving as a proxy until `dialkv admin add-node` adds this node", "members", FormatPeers(mem.Members))
	}
	c.addSenders(mem.all())
	srv, err := transport.ListenPeer(c.cfg.PeerListen, cc.Name, c.deliver, transport.PeerServerOptions{Logger: log, TLS: cc.sec.PeerServerTLS, Conns: cc.sec.PeerConns})
	if err != nil {
		c.closeSenders()
		return nil, fmt.Errorf("cluster: peer listen %s: %w", c.cfg.PeerListen, err)
	}
	c.srv = srv
	return c, nil
}

// deliver routes a peer message to its namespace's replica host; messages of
// namespaces not (yet) open here are dropped — the strategies retry.
func (c *cluster) deliver(m transport.PeerMessage) {
	c.mu.RLock()
	h := c.hosts[m.Namespace]
	snd := c.senders[m.From]
	c.mu.RUnlock()
	if snd != nil {
		// The sender is reachable again (it reached us): our sender to it
		// need not finish a reconnect backoff (up to 2 s, longer than a
		// request's timeout) before delivering the answers.
		snd.Wake()
	}
	if h == nil || m.To != c.self { // messages from nodes not (yet) in our list are taken: the sender's list may be newer
		return
	}
	h.Deliver(consistency.Message{From: consistency.NodeID(m.From), To: consistency.NodeID(m.To), Body: m.Body})
}

func (c *cluster) closeSenders() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.senders {
		s.Close()
	}
}

func (c *cluster) close() error {
	var err error
	if c.gossip != nil {
		if gerr := c.gossip.close(); gerr != nil {
			c.log.Info("gossip: leaving", "err", gerr)
		}
	}
	if c.srv != nil {
		err = c.srv.Close()
	}
	c.closeSenders()
	return err
}

func seedOf(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// strategies returns the factories of the sans-IO strategies on this
// cluster.
func (c *cluster) strategies() map[string]StrategyFactory {
	return map[string]StrategyFactory{
		"quorum": func(env StrategyEnv) (consistency.Service, error) { return c.startReplica(env, quorum.New, true) },
		"causal": func(env StrategyEnv) (consistency.Service, error) { return c.startReplica(env, causal.New, false) },
		"raft":   RaftStrategy,
	}
}

// noSyncEngine drops Sync calls (--fsync=never).
type noSyncEngine struct{ core.Engine }

func (noSyncEngine) Sync() error { return nil }

// startReplica opens the namespace's Pebble engine, builds its replica and
// hosts it. keyed: the strategy's keys are independent, so a batch's
// commands on different keys may run at the same time (HostOptions).
func (c *cluster) startReplica(env StrategyEnv, f consistency.Factory, keyed bool) (consistency.Service, error) {
	name := env.Spec.Name
	// openReplica (integrity.go) rebuilds a quorum replica whose store is
	// found corrupt.
	eng, rep, err := c.openReplica(env, f)
	if err != nil {
		return nil, err
	}
	hostEng := eng
	if env.Fsync == core.SyncNever {
		hostEng = noSyncEngine{eng}
	}
	send := func(m consistency.Message) {
		s := c.sender(string(m.To))
		if s == nil {
			return
		}
		pm := transport.PeerMessage{Namespace: name, From: string(m.From), To: string(m.To), Body: m.Body}
		if d := c.cfg.PeerDelay[string(m.To)]; d > 0 {
			time.AfterFunc(d, func() { s.Send(pm) })
			return
		}
		s.Send(pm)
	}
	h := NewReplicaHost(rep, hostEng, send, HostOptions{Tick: c.cfg.Tick, Logger: env.Logger, KeyedBatches: keyed, Samples: env.Samples, Now: env.Clock})
	c.mu.Lock()
	c.hosts[name] = h
	c.kinds[name] = env.Spec.Strategy
	if env.Spec.Strategy == "causal" {
		c.regionSpecs[name] = env.Spec.Params["regions"]
	}
	c.mu.Unlock()
	// The member list may have changed since the replica was built (from
	// the list then): hand it the current one, on the host's goroutine.
	c.applyRing(name, h)
	if env.ReplicaScrubEvery > 0 {
		go c.scrubReplica(h, env) // ends when the host stops (scrub_replica.go)
	}
	if c.gossip != nil {
		// Members already found dead; later changes reach the host
		// through setPeerState, now that it is in c.hosts. The set is read
		// on the host's goroutine, so a change racing with this one is
		// applied after it.
		h.Call(func(r consistency.Replica) {
			if ps, ok := r.(peerStater); ok {
				for id := range c.gossip.downSet() {
					ps.SetPeerState(consistency.NodeID(id), false)
				}
			}
		})
	}
	return &clusterService{ReplicaHost: h, c: c, name: name, eng: eng}, nil
}

// clusterService is a hosted replica that leaves the routing table and
// closes its engine when closed.
type clusterService struct {
	*ReplicaHost
	c    *cluster
	name string
	eng  core.Engine
}

func (s *clusterService) Close() error {
	s.c.mu.Lock()
	if s.c.hosts[s.name] == s.ReplicaHost {
		delete(s.c.hosts, s.name)
		delete(s.c.kinds, s.name)
		delete(s.c.regionSpecs, s.name)
	}
	s.c.mu.Unlock()
	err := s.ReplicaHost.Close()
	if cerr := s.eng.Sync(); err == nil {
		err = cerr
	}
	if cerr := s.eng.Close(); err == nil {
		err = cerr
	}
	return err
}

// ClusterNode is a node that is a member of a static cluster: a Node plus
// its peer server, peer senders and the catalog spreading.
type ClusterNode struct {
	*Node
	c      *cluster
	stop   chan struct{}
	wg     sync.WaitGroup
	warned sync.Map // spec conflicts and failures already logged
	// rebalancer is the raft rebalancer (nil: not running).
	rebalancer *raftRebalancer
}

// StartClusterNode starts a node that is a member of the cluster cc. Besides
// "local", its namespaces may use the strategies quorum and causal
// (hosted sans-IO replicas whose peers are every member of the cluster) and
// raft. A namespace created on one node is created on every member: the node
// forwards the creation to its peers' client APIs, and every node pulls its
// peers' catalogs at start and every cc.CatalogSync.
func StartClusterNode(cfg Config, cc ClusterConfig) (*ClusterNode, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Security.ClientTLS != nil && cfg.Security.PeerClientTLS == nil {
		return nil, errors.New("cluster: TLS on the client listener needs peer TLS too (--peer-tls-cert/-key/-ca): members call each other's client API to spread namespaces")
	}
	cc.sec = cfg.Security
	var g *gossip
	joining := false
	if cc.Gossip == nil && cfg.Security.GossipKey != "" {
		return nil, errors.New("cluster: --gossip-key-file needs gossip (--gossip is off)")
	}
	if cc.Gossip != nil {
		if cc.Name == "" {
			return nil, errors.New("cluster: --cluster NAME is required with gossip")
		}
		if k := cfg.Security.GossipKey; k != "" && cc.Gossip.SecretKey == nil {
			o := *cc.Gossip
			o.SecretKey = []byte(k.Reveal())
			cc.Gossip = &o
		}
		meta := gossipMeta{Client: cfg.Listen, Peer: cc.PeerListen}
		for _, p := range cc.Peers {
			if p.ID == cfg.ID {
				meta = gossipMeta{Client: p.Client, Peer: p.Peer}
			}
		}
		meta.Raft = cc.RaftListen
		var err error
		if g, err = startGossip(cfg.ID, cc.Name, meta, cc.Peers, *cc.Gossip, cfg.Logger); err != nil {
			return nil, err
		}
		if len(cc.Peers) == 0 {
			joining = true
			if cc.Peers, err = g.waitLearnedPeers(10 * time.Second); err != nil {
				g.close()
				return nil, fmt.Errorf("cluster: --join: %w", err)
			}
			cfg.Logger.Info("cluster: member list learned through gossip", "peers", FormatPeers(cc.Peers))
		}
	}
	c, err := newCluster(cfg.ID, cc, cfg.DataDir, joining, cfg.Logger)
	if err != nil {
		if g != nil {
			g.close()
		}
		return nil, err
	}
	if g != nil {
		c.gossip = g
		g.setPeers(c.membership().all())
		g.setHandler(c.setPeerState)
	}
	cn := &ClusterNode{c: c, stop: make(chan struct{})}
	// Ordering rule: the member list is pulled from the peers before the
	// client API serves and the namespaces open, so that a node removed
	// while it was down (or that missed a change) does not coordinate with
	// the list it persisted once a peer answers (its replicas would count
	// themselves as owners; peers refuse their puts meanwhile, see
	// quorum's staleOutsider). Peers that do not answer are skipped.
	cn.pullRings()
	strats := c.strategies()
	for k, v := range cfg.Strategies {
		strats[k] = v
	}
	cfg.Strategies = strats
	prevCmd := cfg.NodeCommand
	// started is the node once Start returned: CLUSTER DROP/DROPPED need
	// it, and the client API may answer before then.
	var started atomic.Pointer[Node]
	cfg.NodeCommand = func(cmd core.Command) (core.Reply, bool) {
		if n := started.Load(); n != nil {
			if r, ok := cn.tombstoneCommand(n, cmd); ok {
				return r, true
			}
		}
		if r, ok := c.command(cmd); ok {
			return r, true
		}
		if prevCmd != nil {
			return prevCmd(cmd)
		}
		return core.Reply{}, false
	}
	prev := cfg.OnNamespaceCreated
	cfg.OnNamespaceCreated = func(spec NamespaceSpec) {
		if prev != nil {
			prev(spec)
		}
		cn.forwardCreate(spec)
	}
	prevDrop := cfg.OnNamespaceDropped
	cfg.OnNamespaceDropped = func(name string, g uint64) {
		if prevDrop != nil {
			prevDrop(name, g)
		}
		cn.forwardDrop(name, g)
	}
	n, err := Start(cfg)
	if err != nil {
		c.close()
		return nil, err
	}
	cn.Node = n
	started.Store(n)
	cn.pullCatalogs()
	cn.wg.Add(1)
	go cn.catalogLoop()
	cn.startRaftRebalancer(cc.RaftRebalance)
	n.log.Info("cluster member started", "cluster", cc.Name, "peer_listen", c.srv.Addr(), "peers", FormatPeers(cc.Peers))
	return cn, nil
}

// Members returns the member table: every static member with its state as
// gossip sees it ("unknown" for all but this node when gossip is off).
func (cn *ClusterNode) Members() []MemberInfo { return cn.c.members() }

// GossipAddr is the gossip address the node listens on ("" when off).
func (cn *ClusterNode) GossipAddr() string {
	if cn.c.gossip == nil {
		return ""
	}
	return cn.c.gossip.addr()
}

// PeerAddr is the peer API address the node listens on.
func (cn *ClusterNode) PeerAddr() string { return cn.c.srv.Addr() }

// PeerStats are the peer server's counters.
func (cn *ClusterNode) PeerStats() transport.PeerStats { return cn.c.srv.Stats() }

// Close stops the catalog spreading, the node, and then the peer endpoints.
func (cn *ClusterNode) Close(ctx context.Context) error {
	close(cn.stop)
	cn.wg.Wait()
	err := cn.Node.Close(ctx)
	if cerr := cn.c.close(); err == nil {
		err = cerr
	}
	return err
}

// spreads reports whether a namespace of this strategy is created on every
// member.
func spreads(strategy string) bool { return strategy != "local" }

// forwardCreate sends a namespace creation to every peer's client API, in
// the background; peers that miss it pull it later.
func (cn *ClusterNode) forwardCreate(spec NamespaceSpec) {
	if !spreads(spec.Strategy) {
		return
	}
	cn.toEveryPeer("forwarding namespace creation failed; the peer will pull it", spec.Name, func(ctx context.Context, p ClusterPeer) error {
		return createAt(ctx, p.Client, cn.c.clientDial(), explicitGeneration(spec))
	})
}

// toEveryPeer runs call for every other member in the background (3 s
// each), unless the node is stopping; a failure is logged with msg (the
// catalog pull repairs what a lost call missed).
func (cn *ClusterNode) toEveryPeer(msg, namespace string, call func(ctx context.Context, p ClusterPeer) error) {
	select {
	case <-cn.stop:
		return
	default:
	}
	for _, p := range cn.c.membership().all() {
		if p.ID == cn.c.self {
			continue
		}
		cn.wg.Add(1)
		go func() {
			defer cn.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if err := call(ctx, p); err != nil {
				cn.c.log.Info(msg, "peer", p.ID, "namespace", namespace, "err", err)
			}
		}()
	}
}

// createAt creates spec at a node's client API; EXISTS counts as success
// (the spec is compared when the catalogs are pulled).
func createAt(ctx context.Context, addr string, dopts transport.DialOptions, spec NamespaceSpec) error {
	conn, err := transport.Dial(ctx, addr, dopts)
	if err != nil {
		return err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	err = conn.CreateNamespace(ctx, &gen.NamespaceSpec{Name: spec.Name, Strategy: spec.Strategy, Params: spec.Params})
	var ia *gen.InvalidArgument
	if errors.As(err, &ia) && ia.Code == "EXISTS" {
		return nil
	}
	return err
}

func (cn *ClusterNode) catalogLoop() {
	defer cn.wg.Done()
	t := time.NewTicker(cn.c.cfg.CatalogSync)
	defer t.Stop()
	for {
		select {
		case <-cn.stop:
			return
		case <-t.C:
			cn.pullCatalogs()
		}
	}
}

// pullCatalogs asks every reachable peer for its catalog and creates the
// spreading namespaces missing here. A namespace that exists here with
// another spec is a conflict: the local one is kept and the conflict logged
// (once).
func (cn *ClusterNode) pullCatalogs() {
	for _, p := range cn.c.membership().all() {
		if p.ID == cn.c.self {
			continue
		}
		select {
		case <-cn.stop:
			return
		default:
		}
		cn.pullRing(p)
		// Tombstones before specs: a peer's spec of a newer generation
		// implies a tombstone of the older one there, which then drops
		// the older one here first instead of showing as a conflict.
		if err := cn.pullTombstones(p); err != nil {
			cn.warnOnce("tombstones/"+p.ID+"/"+err.Error(), "pulling a peer's namespace tombstones failed", "peer", p.ID, "err", err)
		}
		specs, err := listAt(p.Client, cn.c.clientDial())
		if err != nil {
			continue
		}
		for _, s := range specs {
			// droppedBy: a peer that was down during a drop still lists
			// the dropped incarnation until it pulls the tombstone.
			if !spreads(s.Strategy) || !raftListsNode(s, cn.c.self) || cn.droppedBy(s) {
				continue
			}
			if have := cn.namespace(s.Name); have != nil {
				if sameSpec(have.spec, s) {
					continue
				}
				// A raft namespace's node list changed (raftnodes.go).
				if handled, err := cn.adoptRaftNodes(have, s); handled {
					if err != nil {
						cn.warnOnce("nodes/"+p.ID+"/"+s.Name+"/"+s.Params["nodes-version"], "adopting a raft node list from a peer failed", "namespace", s.Name, "peer", p.ID, "err", err)
					}
					continue
				}
				cn.warnOnce("conflict/"+p.ID+"/"+s.Name, "namespace spec conflict: keeping the local one", "namespace", s.Name, "peer", p.ID,
					"local", fmt.Sprint(have.spec), "peer_spec", fmt.Sprint(s))
				continue
			}
			if err := cn.CreateNamespace(explicitGeneration(s)); err != nil {
				var ia *gen.InvalidArgument
				if errors.As(err, &ia) && (ia.Code == "EXISTS" || ia.Code == "DROPPED") {
					continue
				}
				cn.warnOnce("fail/"+s.Name, "creating a namespace pulled from a peer failed", "namespace", s.Name, "peer", p.ID, "err", err)
			}
		}
	}
}

// raftListsNode reports whether spec, if of a raft namespace, lists node
// id among its nodes (true for other strategies). A raft namespace is
// created only on its nodes: a node that joined the cluster creates it
// once the rebalancer has appended it to the list (raftjoin.go), and
// until then is not warned of a creation that cannot succeed.
func raftListsNode(spec NamespaceSpec, id string) bool {
	if spec.Strategy != "raft" {
		return true
	}
	for _, n := range strings.Split(spec.Params["nodes"], ",") {
		if strings.TrimSpace(n) == id {
			return true
		}
	}
	return false
}

func (cn *ClusterNode) warnOnce(key, msg string, args ...any) {
	if _, loaded := cn.warned.LoadOrStore(key, true); !loaded {
		cn.c.log.Warn(msg, args...)
	}
}

func sameSpec(a, b NamespaceSpec) bool {
	if len(a.Params) == 0 && len(b.Params) == 0 {
		return a.Name == b.Name && a.Strategy == b.Strategy
	}
	return a.Name == b.Name && a.Strategy == b.Strategy && reflect.DeepEqual(a.Params, b.Params)
}

func listAt(addr string, dopts transport.DialOptions) ([]NamespaceSpec, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := transport.Dial(ctx, addr, dopts)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	list, err := conn.ListNamespaces(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]NamespaceSpec, 0, len(list))
	for _, s := range list {
		out = append(out, NamespaceSpec{Name: s.Name, Strategy: s.Strategy, Params: s.Params})
	}
	return out, nil
}

// clientDial is how this member dials another member's client API: under
// TLS (with its node certificate, which authenticates it as the node's
// name on members started with --tls-ca) when the client listeners use TLS.
func (c *cluster) clientDial() transport.DialOptions {
	if c.cfg.sec.ClientTLS == nil {
		return transport.DialOptions{}
	}
	return transport.DialOptions{TLS: c.cfg.sec.PeerClientTLS}
}

// member is a running node, alone or a cluster member.
type member interface {
	Addr() string
	Close(ctx context.Context) error
}

// memberFlags are dialkv node's cluster flags.
type memberFlags struct {
	cluster, peerListen, peers, gossip, join, raftListen string
	// rebalance are the raft rebalancer's options (--raft-rebalance*).
	rebalance RaftRebalanceOptions
}

// portPlus returns addr with its port increased by d.
func portPlus(addr string, d int) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", fmt.Errorf("port %q: %w", port, err)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+d)), nil
}

// startMember starts a single node when neither --peers nor --join is
// given, else a cluster member.
func startMember(cfg Config, f memberFlags) (member, error) {
	if f.peers == "" && f.join == "" {
		if f.cluster != "" || f.peerListen != "" {
			return nil, errors.New("node: --cluster and --peer-listen need --peers or --join")
		}
		if cfg.Security.GossipKey != "" {
			return nil, errors.New("node: --gossip-key-file needs a cluster (--peers or --join)")
		}
		return Start(cfg)
	}
	var ps []ClusterPeer
	if f.peers != "" {
		var err error
		if ps, err = ParsePeers(f.peers); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	cc := ClusterConfig{Name: f.cluster, PeerListen: f.peerListen, Peers: ps}
	if f.gossip != "off" {
		g := &GossipOptions{Listen: f.gossip}
		if f.join != "" {
			for _, a := range strings.Split(f.join, ",") {
				if a = strings.TrimSpace(a); a != "" {
					g.Join = append(g.Join, a)
				}
			}
		}
		for _, p := range ps {
			if p.ID == cfg.ID && g.Listen == "" {
				peerAddr := p.Peer
				if f.peerListen != "" {
					peerAddr = f.peerListen
				}
				a, err := portPlus(peerAddr, 2)
				if err != nil {
					return nil, fmt.Errorf("node: default --gossip from peer address %q: %w", peerAddr, err)
				}
				g.Listen = a
			}
			if p.ID != cfg.ID && f.join == "" {
				a, err := portPlus(p.Peer, 2)
				if err != nil {
					return nil, fmt.Errorf("node: default --join from %s's peer address %q: %w", p.ID, p.Peer, err)
				}
				g.Join = append(g.Join, a)
			}
		}
		if g.Listen == "" {
			if f.peerListen == "" {
				return nil, errors.New("node: --join without --peers needs --gossip HOST:PORT (or --peer-listen)")
			}
			a, err := portPlus(f.peerListen, 2)
			if err != nil {
				return nil, fmt.Errorf("node: default --gossip from --peer-listen %q: %w", f.peerListen, err)
			}
			g.Listen = a
		}
		cc.Gossip = g
	} else if len(ps) == 0 {
		return nil, errors.New("node: --join needs gossip (--gossip is off)")
	}
	rl, err := raftListen(f)
	if err != nil {
		return nil, err
	}
	cc.RaftListen = rl
	cc.RaftRebalance = f.rebalance
	return StartClusterNode(cfg, cc)
}

// raftListen returns the Raft addresses a member offers to raft
// namespaces (--raft-listen, ClusterConfig.RaftListen): the flag's list;
// by default, for a node started with --join and no --peers, one address
// at its peer port+1 (the layout of dialkv demo: client, peer, Raft and
// gossip ports in a row); none with "off" or for a static member by
// default.
func raftListen(f memberFlags) ([]string, error) {
	switch f.raftListen {
	case "off":
		return nil, nil
	case "":
		if f.peers != "" || f.peerListen == "" {
			return nil, nil
		}
		a, err := portPlus(f.peerListen, 1)
		if err != nil {
			return nil, fmt.Errorf("node: default --raft-listen from --peer-listen %q: %w", f.peerListen, err)
		}
		return []string{a}, nil
	}
	var out []string
	for _, a := range strings.Split(f.raftListen, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("node: --raft-listen %q: %w", a, err)
		}
		out = append(out, a)
	}
	return out, nil
}
