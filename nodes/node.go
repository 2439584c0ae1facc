package nodes

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/core/pebbleengine"
	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// DefaultPort is the default client port.
const DefaultPort = 7379

// DefaultNamespace is created (strategy local) at a node's first start.
const DefaultNamespace = "default"

// Config configures a node. Zero fields take defaults.
type Config struct {
	ID           string          // node name (required)
	Listen       string          // client API address; default 127.0.0.1:7379
	DataDir      string          // data directory (required)
	Fsync        core.SyncPolicy // always (default), interval or never
	SyncInterval time.Duration   // for interval; default 100 ms
	MetricsAddr  string          // "" : no metrics endpoint
	// AdminAddr serves the admin HTTP API (backup, checkpoints;
	// nodes/backup.go); "" : off.
	AdminAddr string
	// CheckpointEvery > 0 takes a checkpoint into DATA/checkpoints every
	// interval; those older than CheckpointRetain are removed (0: kept).
	CheckpointEvery  time.Duration
	CheckpointRetain time.Duration
	// CacheSize is the node's block cache budget in bytes, shared by
	// every Pebble-backed namespace; default DefaultCacheSize.
	CacheSize int64
	Protocol  transport.Protocol
	ConnMode  transport.ConnMode // epoll (default on Linux) or goroutine
	// NoInline turns off serving small requests on the epoll event loop
	// (transport.ServerConfig.InlineMethods; --conn-inline=false): every
	// request is handed to a worker goroutine.
	NoInline    bool
	MaxConns    int
	IdleTimeout time.Duration
	MaxFrame    int
	// MaxBatch is the most commands one Execute batch or Transaction may
	// carry (--max-batch); a larger one is refused with ERR before any of
	// it runs. Default DefaultMaxBatch.
	MaxBatch int
	// Engine is "pebble" (default) or "memory" (tests: nothing survives a
	// restart).
	Engine string
	// SubscriptionTTL: a subscription not polled this long expires; default 60 s.
	SubscriptionTTL time.Duration
	// DefaultDeadline bounds requests that carry no deadline_ms; default 5 s.
	DefaultDeadline time.Duration
	Limits          core.Limits
	Logger          *slog.Logger
	// Strategies adds strategies by name beside the built-in "local".
	Strategies map[string]StrategyFactory
	// OnNamespaceCreated, if set, is called after CreateNamespace created a
	// namespace (StartClusterNode uses it to spread the creation). It must
	// not block.
	OnNamespaceCreated func(NamespaceSpec)
	// OnNamespaceDropped, if set, is called after DropNamespace dropped a
	// spreading (non-local) namespace, with its name and generation (the
	// tombstone; StartClusterNode spreads it). It must not block.
	OnNamespaceDropped func(name string, generation uint64)
	Version            string
	// NodeCommand, if set, answers commands that concern the node rather
	// than a namespace (StartClusterNode: CLUSTER MEMBERS) before they are
	// routed to a namespace; ok false passes the command on.
	NodeCommand func(cmd core.Command) (reply core.Reply, ok bool)
	// Security holds the TLS, authentication and limit settings
	// (security.Flags.Load); the zero value is a plain, open node.
	Security security.Settings
	// ClockOffset shifts the node's wall clock (Clock; --clock-offset, a
	// fault-test setting); the admin API changes it at run time.
	ClockOffset time.Duration
	// RaftScrubEvery > 0 runs the background scrub of every raft
	// namespace's on-disk state machines every interval (--raft-scrub-every;
	// consistency/raft/scrub.go); 0: off. RaftScrubRate bounds it in
	// records a second (0: no limit).
	RaftScrubEvery time.Duration
	RaftScrubRate  int
	// ReplicaScrubEvery > 0 runs the background scrub of every quorum and
	// causal replica's stored records every interval
	// (--replica-scrub-every; nodes/scrub_replica.go): quorum records
	// found corrupt are written again from the replica's copy, causal ones
	// are counted. ReplicaScrubRate bounds it in records a second per
	// namespace (0: no limit).
	ReplicaScrubEvery time.Duration
	ReplicaScrubRate  int
}

// StrategyEnv is what a strategy factory gets to start a namespace.
type StrategyEnv struct {
	Spec   NamespaceSpec
	Dir    string // the namespace's own data directory (exists)
	NodeID string
	Fsync  core.SyncPolicy
	Logger *slog.Logger
	// Cache is the node's shared block cache (nil: each engine its own).
	Cache *pebbleengine.SharedCache
	// Samples records measurements a hosted replica took
	// (consistency.Meter) in the node's metrics; it never blocks.
	Samples func([]consistency.Sample)
	// PeerTLS are the node's peer TLS files (--peer-tls-*; empty: plain
	// peer traffic). Strategies with a transport of their own (raft) use
	// them for mutual TLS.
	PeerTLS security.TLSFiles
	// PeerRevoked and PeerConns: the policy's deny-list check for peer
	// handshakes and the set of open node-to-node TLS connections
	// (security.Settings); nil without them.
	PeerRevoked func(tls.ConnectionState) error
	PeerConns   *transport.TLSConns
	// ClientDial is how this node dials another node's client API (TLS
	// with its node certificate when client listeners use TLS), e.g. for
	// a raft replica's rebuild (RAFT.REMOVE/RAFT.ADD at another node).
	ClientDial transport.DialOptions
	// UpdateParams merges params into the namespace's parameters and
	// persists them in the catalog (the cluster spreads the new spec: a
	// raft namespace's node list, nodes/raftnodes.go).
	UpdateParams func(params map[string]string) error
	// Clock is the node's wall clock (Clock.Now: time.Now plus the
	// node's offset); services read data timestamps from it.
	Clock func() time.Time
	// RaftScrubEvery and RaftScrubRate: see Config.
	RaftScrubEvery time.Duration
	RaftScrubRate  int
	// ReplicaScrubEvery and ReplicaScrubRate: see Config.
	ReplicaScrubEvery time.Duration
	ReplicaScrubRate  int
}

// StrategyFactory starts the Service of one namespace.
type StrategyFactory func(env StrategyEnv) (consistency.Service, error)

// DefaultCacheSize is the default node-wide block cache budget (--cache-size).
const DefaultCacheSize = 256 << 20

// maxDeadline caps a request's deadline_ms.
const maxDeadline = 60 * time.Second

// walPrefill is how far ahead of its records a local namespace's WAL is
// written with zeros under --fsync always (pebbleengine.Options.WALPrefill):
// the file's size then changes once per MiB instead of at every group
// commit.
const walPrefill = 1 << 20

func (c *Config) fill() error {
	if c.ID == "" {
		return errors.New("node: --id is required")
	}
	if c.DataDir == "" && c.Engine != "memory" {
		return errors.New("node: --data is required")
	}
	if c.Listen == "" {
		c.Listen = fmt.Sprintf("127.0.0.1:%d", DefaultPort)
	}
	if c.Protocol == "" {
		c.Protocol = transport.Binary
	}
	if c.Engine == "" {
		c.Engine = "pebble"
	}
	if c.Engine != "pebble" && c.Engine != "memory" {
		return fmt.Errorf("node: unknown engine %q (want pebble or memory)", c.Engine)
	}
	if c.SubscriptionTTL <= 0 {
		c.SubscriptionTTL = 60 * time.Second
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.DefaultDeadline <= 0 {
		c.DefaultDeadline = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Version == "" {
		c.Version = "(devel)"
	}
	return nil
}

// Node is a running dialkv node.
type Node struct {
	cfg      Config
	log      *slog.Logger
	hub      *hub
	metrics  *metrics
	server   *transport.Server
	ln       net.Listener
	mln      net.Listener
	httpSrv  *http.Server
	aln      net.Listener // admin API (nodes/backup.go)
	cache    *pebbleengine.SharedCache
	hot      *hotKeys // HOTKEYS (nodes/hotkeys.go)
	clock    *Clock   // wall time for data (nodes/clock.go)
	adminSrv *http.Server
	fence    writeFence // the write fence of a cluster backup (fence.go)
	// loopWrites counts the raft writes proposed from the event loop
	// (raftasync.go).
	loopWrites atomic.Int64
	stop       chan struct{}
	closing    sync.Once
	closeErr   error
	bg         sync.WaitGroup

	adminMu sync.Mutex // serialises namespace create/drop and catalog writes
	// dropped are the catalog's tombstones: name -> highest generation
	// dropped (catalog.go, GenerationParam). Guarded by adminMu.
	dropped map[string]uint64
	mu      sync.RWMutex
	nss     map[string]*namespace
}

// namespace is one open namespace.
type namespace struct {
	spec   NamespaceSpec
	svc    consistency.Service
	local  *Local               // for strategy local
	pebble *pebbleengine.Engine // when the namespace's engine is Pebble
	engine core.Engine          // closed with the namespace (nil: the service owns it)
	dir    string
}

// Start opens the data directory, the namespaces of the catalog (creating
// "default" at first start), and starts serving.
func Start(cfg Config) (*Node, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, nss: map[string]*namespace{}, stop: make(chan struct{}), clock: NewClock(cfg.ClockOffset)}
	n.hot = newHotKeys(64, 16, 10*time.Second)
	if cfg.Engine == "pebble" {
		size := cfg.CacheSize
		if size <= 0 {
			size = DefaultCacheSize
		}
		n.cache = pebbleengine.NewSharedCache(size)
	}
	n.hub = newHub(cfg.SubscriptionTTL, 1024)
	// Metrics first: namespaces report what their recovery found.
	n.metrics = newMetrics(n)
	if err := n.openNamespaces(); err != nil {
		n.closeNamespaces()
		return nil, err
	}
	tcfg := transport.ServerConfig{
		Protocol:    cfg.Protocol,
		Mode:        cfg.ConnMode,
		MaxConns:    cfg.MaxConns,
		IdleTimeout: cfg.IdleTimeout,
		MaxFrame:    cfg.MaxFrame,
		Logger:      n.log,
		Observer:    n.metrics,
		// Under --fsync always Pebble's WAL goroutine blocks in fdatasync
		// while the loop waits: waiting in the poller leaves it a P.
		WaitInPoller: cfg.Fsync == core.SyncAlways,
	}
	proc := n.processor(&tcfg)
	if !cfg.NoInline && !secured(cfg.Security) {
		// Single commands and batches of the local strategy are served on
		// the event loop when they need not wait (handler.Call, Execute).
		// Not under security: the Guard's rate limiter and login sessions
		// are not written for a request that is served twice.
		tcfg.InlineMethods = []string{"call", "execute"}
	}
	n.server = transport.NewServer(proc, tcfg)
	ln, err := n.listen()
	if err != nil {
		n.closeNamespaces()
		return nil, fmt.Errorf("node: listen %s: %w", cfg.Listen, err)
	}
	n.ln = ln
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			n.closeNamespaces()
			return nil, fmt.Errorf("node: metrics listen %s: %w", cfg.MetricsAddr, err)
		}
		n.mln = mln
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{Registry: n.metrics.reg}))
		// Go's profiler, for performance work on a running node
		// (`go tool pprof http://HOST:PORT/debug/pprof/profile?seconds=10`).
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		n.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		n.bg.Add(1)
		go func() {
			defer n.bg.Done()
			if err := n.httpSrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("metrics server stopped", "err", err)
			}
		}()
	}
	if err := n.startAdmin(); err != nil {
		ln.Close()
		if n.mln != nil {
			n.mln.Close()
		}
		close(n.stop)
		n.closeNamespaces()
		return nil, err
	}
	n.bg.Add(2)
	go func() {
		defer n.bg.Done()
		if err := n.server.Serve(ln); err != nil {
			n.log.Error("client server stopped", "err", err)
		}
	}()
	go n.housekeeping()
	n.log.Info("node started", "id", cfg.ID, "listen", n.Addr(), "data", cfg.DataDir, "fsync", cfg.Fsync.String(),
		"engine", cfg.Engine, "protocol", string(cfg.Protocol), "conn_mode", string(n.server.Mode()), "metrics", n.MetricsAddr(),
		"tls", cfg.Security.ClientTLS != nil, "auth", cfg.Security.Authenticator != nil)
	return n, nil
}

// Addr is the client API address the node listens on.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// MetricsAddr is the metrics address ("" if none).
func (n *Node) MetricsAddr() string {
	if n.mln == nil {
		return ""
	}
	return n.mln.Addr().String()
}

// NumConns is the number of open client connections.
func (n *Node) NumConns() int { return n.server.NumConns() }

// Close shuts the node down gracefully: it stops accepting, lets requests
// in flight finish (up to ctx), stops the namespaces (syncing their
// engines) and closes them.
func (n *Node) Close(ctx context.Context) error {
	// Close is idempotent: a later call returns the first call's result,
	// waiting for it if it is still running.
	n.closing.Do(func() { n.closeErr = n.close(ctx) })
	return n.closeErr
}

func (n *Node) close(ctx context.Context) error {
	close(n.stop)
	err := n.server.Shutdown(ctx)
	if n.httpSrv != nil {
		n.httpSrv.Shutdown(ctx)
	}
	if n.adminSrv != nil {
		n.adminSrv.Shutdown(ctx)
	}
	n.bg.Wait()
	if cerr := n.closeNamespaces(); err == nil {
		err = cerr
	}
	n.log.Info("node stopped", "id", n.cfg.ID)
	return err
}

func (n *Node) housekeeping() {
	defer n.bg.Done()
	t := time.NewTicker(max(n.cfg.SubscriptionTTL/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case now := <-t.C:
			if k := n.hub.sweep(now); k > 0 {
				n.log.Info("expired abandoned subscriptions", "count", k)
			}
		}
	}
}

func (n *Node) nsDir(name string) string { return filepath.Join(n.cfg.DataDir, "ns", name) }

func (n *Node) openNamespaces() error {
	var specs []NamespaceSpec
	if n.cfg.Engine == "pebble" {
		if err := os.MkdirAll(n.cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("node: data dir: %w", err)
		}
		var err error
		if specs, n.dropped, err = loadCatalog(n.cfg.DataDir); err != nil {
			return fmt.Errorf("node: %w", err)
		}
	}
	if len(specs) == 0 {
		specs = []NamespaceSpec{{Name: DefaultNamespace, Strategy: "local"}}
		if n.cfg.Engine == "pebble" {
			if err := saveCatalog(n.cfg.DataDir, specs, n.dropped); err != nil {
				return fmt.Errorf("node: %w", err)
			}
		}
	}
	for _, s := range specs {
		ns, err := n.openNamespace(s)
		if err != nil {
			return err
		}
		n.nss[s.Name] = ns
	}
	return nil
}

// openNamespace starts one namespace's strategy.
func (n *Node) openNamespace(spec NamespaceSpec) (*namespace, error) {
	dir := ""
	if n.cfg.Engine == "pebble" {
		dir = n.nsDir(spec.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("node: namespace %s: %w", spec.Name, err)
		}
	}
	log := n.log.With("namespace", spec.Name)
	if spec.Strategy == "local" {
		ns := &namespace{spec: spec, dir: dir}
		if n.cfg.Engine == "memory" {
			ns.engine = core.NewMemEngine()
		} else {
			// Local decides when to sync (group commit), so Pebble's own
			// commits never sync. Under --fsync always the WAL is synced
			// once per group commit: it is written ahead with zeros, so
			// that a sync does not also commit the file's new size.
			po := pebbleengine.Options{Sync: core.SyncNever, Logger: log, Cache: n.cache}
			if n.cfg.Fsync == core.SyncAlways {
				po.WALPrefill = walPrefill
			}
			pe, err := pebbleengine.Open(filepath.Join(dir, "pebble"), po)
			if err != nil {
				return nil, fmt.Errorf("node: namespace %s: %w", spec.Name, err)
			}
			ns.engine, ns.pebble = pe, pe
		}
		st, err := core.NewStore(ns.engine, n.cfg.Limits)
		if err != nil {
			ns.engine.Close()
			return nil, fmt.Errorf("node: namespace %s: %w", spec.Name, err)
		}
		ns.local = NewLocal(LocalConfig{Store: st, Policy: n.cfg.Fsync, SyncInterval: n.cfg.SyncInterval, Logger: log, Clock: n.clock.Now})
		ns.svc = ns.local
		return ns, nil
	}
	f := n.cfg.Strategies[spec.Strategy]
	if f == nil {
		return nil, fmt.Errorf("node: namespace %s: unknown strategy %q (this node has: %v)", spec.Name, spec.Strategy, n.strategyNames())
	}
	svc, err := f(StrategyEnv{Spec: strategySpec(spec), Dir: dir, NodeID: n.cfg.ID, Fsync: n.cfg.Fsync, Logger: log, Cache: n.cache, Clock: n.clock.Now,
		PeerTLS: n.cfg.Security.PeerTLSFiles, PeerRevoked: n.cfg.Security.PeerRevoked, PeerConns: n.cfg.Security.PeerConns, ClientDial: n.clientDial(),
		RaftScrubEvery: n.cfg.RaftScrubEvery, RaftScrubRate: n.cfg.RaftScrubRate,
		ReplicaScrubEvery: n.cfg.ReplicaScrubEvery, ReplicaScrubRate: n.cfg.ReplicaScrubRate,
		Samples:      func(s []consistency.Sample) { n.metrics.samples(spec.Name, s) },
		UpdateParams: func(p map[string]string) error { return n.updateParams(spec.Name, p) }})
	if err != nil {
		return nil, fmt.Errorf("node: namespace %s (%s): %w", spec.Name, spec.Strategy, err)
	}
	return &namespace{spec: spec, svc: svc, dir: dir}, nil
}

func (n *Node) strategyNames() []string {
	names := []string{"local"}
	for k := range n.cfg.Strategies {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func (ns *namespace) close() error {
	err := ns.svc.Close()
	if ns.engine != nil {
		if cerr := ns.engine.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

func (n *Node) closeNamespaces() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var err error
	for name, ns := range n.nss {
		if cerr := ns.close(); cerr != nil && err == nil {
			err = fmt.Errorf("node: close namespace %s: %w", name, cerr)
		}
		delete(n.nss, name)
	}
	if n.cache != nil {
		n.cache.Close() // the engines closed above held their own references
		n.cache = nil
	}
	return err
}

// namespace returns the open namespace called name ("" is "default").
func (n *Node) namespace(name string) *namespace {
	if name == "" {
		name = DefaultNamespace
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.nss[name]
}

func (n *Node) namespaceList() []*namespace {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]*namespace, 0, len(n.nss))
	for _, ns := range n.nss {
		out = append(out, ns)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].spec.Name < out[j].spec.Name })
	return out
}

func (n *Node) specs() []NamespaceSpec {
	var out []NamespaceSpec
	for _, ns := range n.namespaceList() {
		out = append(out, ns.spec)
	}
	return out
}

// CreateNamespace creates and persists a namespace.
func (n *Node) CreateNamespace(spec NamespaceSpec) error {
	if err := validNamespace(spec.Name); err != nil {
		return &gen.InvalidArgument{Message: "ERR " + err.Error(), Code: "ERR"}
	}
	if spec.Strategy != "local" && n.cfg.Strategies[spec.Strategy] == nil {
		return &gen.InvalidArgument{Message: fmt.Sprintf("ERR unknown strategy %q (this node has: %v)", spec.Strategy, n.strategyNames()), Code: "ERR"}
	}
	g, err := specGeneration(spec)
	if err != nil {
		return &gen.InvalidArgument{Message: "ERR " + err.Error(), Code: "ERR"}
	}
	n.adminMu.Lock()
	defer n.adminMu.Unlock()
	if n.namespace(spec.Name) != nil {
		return &gen.InvalidArgument{Message: fmt.Sprintf("EXISTS namespace %q already exists", spec.Name), Code: "EXISTS"}
	}
	// Generations (catalog.go, GenerationParam): a create without one is a
	// new incarnation, one above the name's tombstone; a create that names
	// one (forwarded or pulled from a peer) is refused when a tombstone
	// covers it, so a drop is never undone by an older creation arriving
	// late.
	t, dropped := n.dropped[spec.Name]
	if _, explicit := spec.Params[GenerationParam]; !explicit && dropped && spec.Strategy != "local" {
		g = t + 1
	}
	if dropped && g <= t && spec.Strategy != "local" {
		return &gen.InvalidArgument{Message: fmt.Sprintf("DROPPED namespace %q generation %d was dropped (tombstone generation %d)", spec.Name, g, t), Code: "DROPPED"}
	}
	spec = withGeneration(spec, g)
	if n.cfg.Engine == "pebble" {
		// A directory left by a drop that crashed before removing it.
		if err := os.RemoveAll(n.nsDir(spec.Name)); err != nil {
			return fmt.Errorf("node: create namespace %s: %w", spec.Name, err)
		}
	}
	ns, err := n.openNamespace(spec)
	if err != nil {
		return err
	}
	if n.cfg.Engine == "pebble" {
		if err := saveCatalog(n.cfg.DataDir, append(n.specs(), spec), n.dropped); err != nil {
			ns.close()
			os.RemoveAll(n.nsDir(spec.Name))
			return err
		}
	}
	n.mu.Lock()
	n.nss[spec.Name] = ns
	n.mu.Unlock()
	n.log.Info("namespace created", "namespace", spec.Name, "strategy", spec.Strategy, "params", spec.Params)
	if n.cfg.OnNamespaceCreated != nil {
		n.cfg.OnNamespaceCreated(spec)
	}
	return nil
}

// DropNamespace removes a namespace and its data. A spreading (non-local)
// namespace leaves a tombstone of its generation in the catalog, which
// OnNamespaceDropped spreads.
func (n *Node) DropNamespace(name string) error {
	if name == DefaultNamespace {
		return &gen.InvalidArgument{Message: "ERR the default namespace cannot be dropped", Code: "ERR"}
	}
	n.adminMu.Lock()
	ns := n.namespace(name)
	if ns == nil {
		n.adminMu.Unlock()
		return &gen.InvalidArgument{Message: fmt.Sprintf("NONAMESPACE no namespace %q", name), Code: "NONAMESPACE"}
	}
	g, _ := specGeneration(ns.spec) // validated when it was created or loaded
	err := n.dropLocked(ns, g)
	n.adminMu.Unlock()
	if err == nil && ns.spec.Strategy != "local" && n.cfg.OnNamespaceDropped != nil {
		n.cfg.OnNamespaceDropped(name, g)
	}
	return err
}

// ApplyTombstone records the tombstone (name, generation) and drops the
// namespace called name if its generation is covered (<= generation). It
// reports whether it changed anything (a newer tombstone, or a drop).
func (n *Node) ApplyTombstone(name string, generation uint64) (bool, error) {
	if err := validNamespace(name); err != nil || name == DefaultNamespace {
		return false, fmt.Errorf("node: tombstone for %q: not a droppable namespace name", name)
	}
	n.adminMu.Lock()
	defer n.adminMu.Unlock()
	ns := n.namespace(name)
	if ns != nil && ns.spec.Strategy != "local" {
		if g, _ := specGeneration(ns.spec); g <= generation {
			return true, n.dropLocked(ns, generation)
		}
	}
	if t, ok := n.dropped[name]; ok && t >= generation {
		return false, nil
	}
	prev, had := n.dropped[name]
	n.setTombstone(name, generation)
	if n.cfg.Engine == "pebble" {
		if err := saveCatalog(n.cfg.DataDir, n.specs(), n.dropped); err != nil {
			if had {
				n.dropped[name] = prev
			} else {
				delete(n.dropped, name)
			}
			return false, fmt.Errorf("node: tombstone for %s: %w", name, err)
		}
	}
	return true, nil
}

// Tombstones returns a copy of the catalog's tombstones.
func (n *Node) Tombstones() map[string]uint64 {
	n.adminMu.Lock()
	defer n.adminMu.Unlock()
	return maps.Clone(n.dropped)
}

// setTombstone raises name's tombstone to at least g. Caller holds adminMu.
func (n *Node) setTombstone(name string, g uint64) {
	if n.dropped == nil {
		n.dropped = map[string]uint64{}
	}
	if t, ok := n.dropped[name]; !ok || g > t {
		n.dropped[name] = g
	}
}

// dropLocked removes ns from the node, records a tombstone of generation g
// for a spreading namespace, persists the catalog, and then closes ns and
// removes its data. Caller holds adminMu. Order: the catalog is saved
// before the data is removed, so a crash in between leaves a directory
// that CreateNamespace clears, never a catalog entry without data.
func (n *Node) dropLocked(ns *namespace, g uint64) error {
	name := ns.spec.Name
	n.mu.Lock()
	delete(n.nss, name)
	n.mu.Unlock()
	prev, had := n.dropped[name]
	if ns.spec.Strategy != "local" {
		n.setTombstone(name, g)
	}
	if n.cfg.Engine == "pebble" {
		if err := saveCatalog(n.cfg.DataDir, n.specs(), n.dropped); err != nil {
			n.mu.Lock()
			n.nss[name] = ns
			n.mu.Unlock()
			if had {
				n.dropped[name] = prev
			} else {
				delete(n.dropped, name)
			}
			return err
		}
	}
	if err := ns.close(); err != nil {
		n.log.Error("closing dropped namespace", "namespace", name, "err", err)
	}
	if ns.dir != "" {
		if err := os.RemoveAll(ns.dir); err != nil {
			n.log.Error("removing dropped namespace's data", "namespace", name, "err", err)
		}
	}
	n.log.Info("namespace dropped", "namespace", name)
	return nil
}
