package nodes

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport"
)

// Main runs `dialkv node`.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dialkv node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		id            = fs.String("id", "", "node name (required)")
		listen        = fs.String("listen", fmt.Sprintf("127.0.0.1:%d", DefaultPort), "client API address HOST:PORT")
		data          = fs.String("data", "", "data directory (required; created if missing)")
		fsync         = fs.String("fsync", "always", "durability: always (acknowledged writes are synced: group commit), interval (sync every --sync-interval), never (left to the OS)")
		syncEvery     = fs.Duration("sync-interval", 100*time.Millisecond, "sync period for --fsync=interval")
		metrics       = fs.String("metrics", "", "serve Prometheus metrics at http://HOST:PORT/metrics (empty: off)")
		maxConns      = fs.Int("max-conns", transport.DefaultMaxConns, "client connections beyond this are refused with an UNAVAILABLE error")
		idle          = fs.Duration("idle-timeout", transport.DefaultIdleTimeout, "close client connections silent this long")
		maxFrame      = fs.Int("max-frame", transport.DefaultMaxFrame, "largest request frame in bytes; a larger frame closes the connection")
		maxBatch      = fs.Int("max-batch", DefaultMaxBatch, "most commands in one batch or transaction; a larger one is refused with ERR before any of it runs")
		protocol      = fs.String("protocol", "binary", "Thrift protocol: binary or compact (clients must match)")
		connMode      = fs.String("conn-mode", "epoll", "connection handling: epoll (Linux: no goroutine per idle connection) or goroutine")
		connInline    = fs.Bool("conn-inline", true, "epoll mode: serve small local-strategy commands on the event loop when they need not wait (false: every request on a worker goroutine)")
		engine        = fs.String("engine", "pebble", "storage engine: pebble, or memory (nothing survives a restart)")
		subTTL        = fs.Duration("subscription-ttl", 60*time.Second, "pub/sub subscriptions not polled this long expire")
		maxValue      = fs.Int("max-value", core.DefaultMaxValueSize, "largest value in bytes")
		procs         = fs.Int("procs", 0, "Go Ps (GOMAXPROCS) for the node; N > 0 wins over GOMAXPROCS in the environment; 0: one more than the runtime's default (the CPUs, or the cgroup CPU limit) under --fsync always (the WAL goroutine's fdatasync then finds an idle P), unless GOMAXPROCS is in the environment; the runtime's otherwise")
		logLevel      = fs.String("log-level", "info", "log level: debug, info, warn, error")
		logFormat     = fs.String("log-format", "text", "log format: text or json")
		shutdownDur   = fs.Duration("shutdown-timeout", 10*time.Second, "on SIGTERM/SIGINT, how long requests in flight may take to finish")
		clusterName   = fs.String("cluster", "", "cluster name (with --peers); peer messages of another cluster are rejected")
		peerListen    = fs.String("peer-listen", "", "peer API address HOST:PORT (default: this node's PEER_ADDR in --peers)")
		peers         = fs.String("peers", "", "the initial cluster members, this node included: ID=CLIENT_ADDR@PEER_ADDR,... (empty: a single node; once the member list changed, the persisted one is used; see docs/cluster.md)")
		cacheSize     = fs.String("cache-size", "256MiB", "block cache budget, shared by every namespace stored in Pebble (memtables are charged to it too): bytes (268435456, 256MiB, 2GiB) or a percentage of the memory available (80%: of the cgroup limit, else the machine's RAM)")
		admin         = fs.String("admin", "", "serve the admin HTTP API (backup, checkpoints, raft import, clock) at HOST:PORT (empty: off; docs/operations.md): HTTPS with the --tls-* settings, and with --auth-file only principals with admin on \"*\" or a node certificate (docs/security.md)")
		cpEvery       = fs.Duration("checkpoint-every", 0, "take a checkpoint into DATA/checkpoints every interval, for point-in-time restore (0: off)")
		cpRetain      = fs.Duration("checkpoint-retain", 24*time.Hour, "remove retained checkpoints older than this (the newest is always kept; 0: keep all)")
		gossipAddr    = fs.String("gossip", "", "gossip (memberlist failure detector) address HOST:PORT, UDP and TCP (default: the peer address's host and port+2; \"off\": no gossip)")
		clockOff      = fs.Duration("clock-offset", 0, "fault tests only: shift this node's wall clock (TTLs, LWW and HLC timestamps, raft proposal times) by this much, e.g. -2s; the admin API's POST /v1/clock?offset=D changes it at run time")
		raftListen    = fs.String("raft-listen", "", "Raft addresses HOST:PORT[,HOST:PORT...] this node offers to raft namespaces that do not list it: the raft rebalancer adds it to their node lists and moves replicas onto it, one address per namespace (default with --join and no --peers: the --peer-listen port+1; \"off\": none; docs/operations.md)")
		scrubEvery    = fs.Duration("raft-scrub-every", 24*time.Hour, "check every record of the raft namespaces' on-disk state machines in the background every interval (CRC-32C; a replica found corrupt is rebuilt from the other replicas; 0: off, then corruption is found at the next start; docs/security.md)")
		scrubRate     = fs.Int("raft-scrub-rate", 5000, "records a second the raft scrub reads, per namespace (0: no limit)")
		repScrubEvery = fs.Duration("replica-scrub-every", 24*time.Hour, "check every stored record of the quorum and causal replicas in the background every interval (CRC-32C; a corrupt quorum record is written again from the replica's copy, a corrupt causal record is logged and counted; 0: off; docs/security.md)")
		repScrubRate  = fs.Int("replica-scrub-rate", 5000, "records a second the quorum and causal scrub reads, per namespace (0: no limit)")
		join          = fs.String("join", "", "gossip addresses to join, ADDR[,ADDR...] (default with --peers: every other member's peer port+2); without --peers the member list is learned from them, and a node not in it runs as a non-member proxy until dialkv admin add-node adds it")
	)
	rebalance := registerRebalanceFlags(fs)
	var secFlags security.Flags
	secFlags.Register(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: dialkv node --id NAME --listen HOST:PORT --data DIR [--fsync always|interval|never] [flags]\n\n"+
			"Runs a dialkv node: the Thrift client API (framed transport) on --listen, data in Pebble under --data,\n"+
			"one namespace \"default\" (strategy local) at first start. SIGTERM/SIGINT shut it down gracefully.\n"+
			"With --cluster NAME --peers n1=CLIENT@PEER,n2=... it is a cluster member and also serves\n"+
			"(with --join ADDR instead of --peers it learns the member list from a running member; a new node is\n"+
			"then added with `dialkv admin add-node ID`)\n"+
			"namespaces of strategy quorum and causal (docs/cluster.md).\n"+
			"TLS, mutual TLS between nodes, authentication and per-connection limits: --tls-*, --peer-tls-*,\n"+
			"--auth-file, --rate-limit, --max-inflight (docs/security.md; `dialkv certs` makes a development CA).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// Parse quietly: --help goes to stdout once, errors to stderr once.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		fs.SetOutput(stderr)
		fmt.Fprintln(stderr, err)
		fs.Usage()
		return 2
	}
	fs.SetOutput(stderr)
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dialkv node: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	policy, err := core.ParseSyncPolicy(*fsync)
	if err != nil {
		fmt.Fprintf(stderr, "dialkv node: --fsync: %v\n", err)
		return 2
	}
	proto, err := transport.ParseProtocol(*protocol)
	if err != nil {
		fmt.Fprintf(stderr, "dialkv node: --protocol: %v\n", err)
		return 2
	}
	mode, err := transport.ParseConnMode(*connMode)
	if err != nil {
		fmt.Fprintf(stderr, "dialkv node: --conn-mode: %v\n", err)
		return 2
	}
	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "dialkv node: %v\n", err)
		return 2
	}
	cache, cacheFrom, err := ParseCacheSize(*cacheSize, osMemory())
	if err != nil {
		fmt.Fprintf(stderr, "dialkv node: %v\n", err)
		return 2
	}
	logger.Info("block cache budget", "bytes", cache, "from", cacheFrom)
	// The shedder's jitter seed only spreads clients' retries apart.
	sec, err := secFlags.Load(uint64(time.Now().UnixNano()))
	if err != nil {
		fmt.Fprintf(stderr, "dialkv node: %v\n", err)
		return 2
	}
	n, err := startMember(Config{
		ID: *id, Listen: *listen, DataDir: *data, Fsync: policy, SyncInterval: *syncEvery,
		MetricsAddr: *metrics, AdminAddr: *admin, CacheSize: cache, CheckpointEvery: *cpEvery, CheckpointRetain: *cpRetain, Protocol: proto, ConnMode: mode, NoInline: !*connInline, MaxConns: *maxConns, IdleTimeout: *idle,
		MaxFrame: *maxFrame, MaxBatch: *maxBatch, Engine: *engine, SubscriptionTTL: *subTTL,
		Limits: core.Limits{MaxValueSize: *maxValue}, Logger: logger, Version: buildVersion(),
		Strategies: map[string]StrategyFactory{"raft": RaftStrategy}, Security: sec, ClockOffset: *clockOff,
		RaftScrubEvery: *scrubEvery, RaftScrubRate: *scrubRate, ReplicaScrubEvery: *repScrubEvery, ReplicaScrubRate: *repScrubRate,
	}, memberFlags{cluster: *clusterName, peerListen: *peerListen, peers: *peers, gossip: *gossipAddr, join: *join, raftListen: *raftListen, rebalance: *rebalance})
	if err != nil {
		fmt.Fprintf(stderr, "dialkv node: %v\n", err)
		return 1
	}
	// (Set once the node runs: a node that fails to start leaves the
	// process as it was.)
	// runtime.GOMAXPROCS(0) is read before the node sets it: the runtime's
	// default, which honours a cgroup CPU limit (runtime.NumCPU does not).
	// Capped at the CPUs: a process that runs a node again (a test) reads
	// what the last one set, and must not add a P each time.
	if p := nodeProcs(*procs, policy, os.Getenv("GOMAXPROCS") != "", min(runtime.GOMAXPROCS(0), runtime.NumCPU())); p > 0 {
		runtime.GOMAXPROCS(p)
		logger.Info("GOMAXPROCS set", "procs", p)
	}
	fmt.Fprintf(stdout, "dialkv node %s listening on %s\n", *id, n.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	s := <-sig
	for ; s == syscall.SIGHUP; s = <-sig {
		reloadSecurity(sec, logger)
	}
	logger.Info("shutting down", "signal", s.String())
	ctx, cancel := context.WithTimeout(context.Background(), *shutdownDur)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		logger.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	o := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return "(devel)"
}

// nodeProcs is the GOMAXPROCS a node sets (0: leave the runtime's): the
// --procs flag if set (over the environment), nothing if GOMAXPROCS is in
// the environment, and under --fsync always one P more than defaultProcs,
// the runtime's default (the CPUs, or fewer under a cgroup CPU limit). Pebble's WAL goroutine
// blocks in fdatasync for each group commit while the event loop runs on
// the other P; with no P idle, the runtime's monitor takes the syncing
// goroutine's P away after 20 µs and then wakes every 20 µs for the next
// millisecond, one context switch each (docs/performance.md, issue 3,
// session 8). An extra P stays idle through the sync.
func nodeProcs(flagProcs int, policy core.SyncPolicy, envSet bool, defaultProcs int) int {
	switch {
	case flagProcs > 0:
		return flagProcs
	case envSet || policy != core.SyncAlways:
		return 0
	}
	return defaultProcs + 1
}
