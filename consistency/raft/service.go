package raft

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	sm "github.com/lni/dragonboat/v4/statemachine"
	"github.com/lni/vfs"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/core/pebbleengine"
)

// CodeCrossShard is the error code of the reply to a multi-key command or a
// transaction whose keys live on more than one shard (like Redis Cluster's
// CROSSSLOT). Put such keys on one shard with a hash tag.
const CodeCrossShard core.Code = "CROSSSHARD"

// Node is one node of a namespace.
type Node struct {
	ID         consistency.NodeID
	RaftAddr   string // Dragonboat RaftAddress (host:port, or any name under a custom transport)
	ClientAddr string // where clients reach the node; Redirects point here
}

// Config describes one node's Service of one namespace. Zero values take
// the documented defaults.
type Config struct {
	NodeID consistency.NodeID // this node; must be in Nodes
	Nodes  []Node             // every node of the namespace, in a fixed order
	// Shards is the number of shards (default 1); Replicas the replicas per
	// shard, 3 or 5 (default 3, at most len(Nodes)).
	Shards, Replicas int
	// InitialNodes is how many of Nodes (the first ones) the initial
	// placement spreads the shards over (default len(Nodes)); nodes added
	// to the list later (SetNodes) host nothing until a replica is added.
	InitialNodes int
	// Retired lists nodes that are to host nothing (parameter retired):
	// read by the rebalancer (Plan), which moves their replicas away.
	Retired []consistency.NodeID
	// NodesVersion counts the changes of Nodes and Retired after creation
	// (parameter nodes-version); a node adopts a peer's list only if it is
	// newer.
	NodesVersion uint64
	// OnNodesChange persists a change of the node list made by RAFT.NODES
	// (nodes: the namespace's catalog entry, which spreads it to the
	// other nodes): the parameters nodes, raft-addrs, client-addrs,
	// initial-nodes, retired and nodes-version. An error refuses the
	// change. nil: RAFT.NODES cannot change the list.
	OnNodesChange func(params map[string]string) error
	// Rebalance lets the cluster's rebalancer move this namespace's
	// replicas (parameter rebalance, default true; nodes/raftrebalance.go).
	Rebalance bool
	// ShardIDBase is the Dragonboat shard ID of shard 0 (default 1); shard s
	// is ShardIDBase+s. Namespaces sharing a NodeHost need disjoint ranges.
	ShardIDBase uint64

	Dir        string        // NodeHostDir (required)
	WALDir     string        // default: Dir
	NodeHostID string        // fixed NodeHost ID (default: Dragonboat's random one)
	RTT        time.Duration // Dragonboat RTTMillisecond (default 10ms)
	// ElectionRTT and HeartbeatRTT in RTTs (defaults 10 and 1).
	ElectionRTT, HeartbeatRTT uint64
	// SnapshotEntries: take a snapshot every so many entries (default
	// 10000: each snapshot of the on-disk state machine is an fsync of its
	// engine and a synced snapshot record in the LogDB, during which the
	// LogDB's saves wait; etcd's own default is 100,000);
	// CompactionOverhead entries are kept after it (default 100).
	SnapshotEntries, CompactionOverhead uint64

	// MutualTLS runs Dragonboat's TCP transport over mutual TLS
	// (NodeHostConfig.MutualTLS): every Raft connection presents CertFile
	// and checks the other side's certificate against CAFile (PEM paths;
	// Dragonboat reads the files). The server name checked is the host of
	// the peer's RaftAddr, so node certificates need it as a SAN.
	MutualTLS                 bool
	CAFile, CertFile, KeyFile string

	// Simulator plug points (nil: Dragonboat's TCP transport, the OS disk).
	TransportFactory config.TransportFactory
	FS               vfs.FS // wrap custom disks with vfs.Wrap (see package doc)
	// Transport is the namespace parameter transport: TransportRaftls
	// ("": dialkv's transport, transport/raftls) or TransportDragonboat
	// (Dragonboat's TCP transport). The node that starts the namespace
	// sets TransportFactory from it (nodes.RaftStrategy); New does not
	// read it.
	Transport string
	// LogDB is Dragonboat's LogDB (logdb.go; namespace parameter logdb):
	// LogDBPebble ("": Dragonboat's default LogDB without an fsync for a
	// commit-index-only change), LogDBPebbleSync (the default LogDB as
	// it is) or LogDBTan. Dragonboat refuses to reopen a NodeHost
	// directory with tan after Pebble or the other way round.
	LogDB string
	// LogDBShards sets the LogDB's shard count (0: Dragonboat's default);
	// 1 keeps goroutines few in the simulator.
	LogDBShards uint64
	// SmallEngine runs Dragonboat with one worker of each kind (simulator).
	SmallEngine bool
	// BeforeSave, if set, is called on Dragonboat's step worker before
	// each save of Raft state with LogDBPebble, whether or not the save
	// writes anything. The simulator blocks it during a pause: a commit-
	// only update writes nothing, so a frozen disk alone would no longer
	// stop the step worker (ticks, CheckQuorum) of a paused node.
	BeforeSave func()
	// RaftEvents receives leader changes (optional).
	RaftEvents raftio.IRaftEventListener

	// Clock is the proposer's clock stamped into proposals (default
	// time.Now); the simulator skews it per node.
	Clock func() time.Time
	// RedirectToLeader answers requests for a shard whose leader is known
	// to be another node with a *consistency.Redirect to that node instead
	// of forwarding them inside Raft.
	RedirectToLeader bool
	// Limits bound keys and values (core.Limits defaults).
	Limits core.Limits
	// Storage is the state machine's storage: "memory" (the default: a
	// core.MemEngine, rebuilt from Dragonboat's snapshot and log at
	// restart) or "pebble" (an on-disk state machine over
	// core/pebbleengine under Dir, which keeps its applied index).
	Storage string
	// PebbleFS is the file system of the Pebble state machines (nil: the
	// operating system's); the simulator passes a crashable MemFS.
	PebbleFS pebblevfs.FS
	// Bug selects a deliberately broken variant (see Bugs); "" is correct.
	Bug string
	// BatchProposals proposes concurrent writes to one shard as one Raft
	// entry (batch.go; namespace parameter batch). Off by default: measured
	// slower than Dragonboat's own batching of concurrent proposals
	// (docs/raft.md); the simulator never uses it (the batcher starts
	// goroutines).
	BatchProposals bool
	// ReproposeAfter is how long a write waits for its result before the
	// Service proposes the same (deduplicated) proposal again, and again
	// after each such wait (dedup.go, propose). 0: two election timeouts;
	// negative: never (a write then waits for its deadline when
	// Dragonboat gives no result).
	ReproposeAfter time.Duration
	// TxnRecoverAfter is how old a prepared cross-shard transaction must
	// be before a request that meets its locks resolves it (txncoord.go;
	// default 2 s).
	TxnRecoverAfter time.Duration
	// TxnStagger: every two-phase commit operation waits TxnStagger
	// before it is proposed, plus a multiple of it keyed by the
	// transaction's ID (waiters woken at one instant propose at distinct
	// ones), the i-th of a transaction's concurrent ones i*TxnStagger
	// more (so they reach Raft in shard order); the recovery loop waits
	// it after each tick; and a proposal or read that could not enter
	// Raft retries after RTT plus a multiple keyed by request ID and
	// shard (retryWait). 0: no wait, nothing keyed. The simulator sets it
	// (1 ns): at one virtual instant, proposals and reads race with each
	// other and with Raft's own goroutines in the scheduler's order.
	TxnStagger time.Duration
	// Peer sends a command to this namespace at another node (its client
	// API): a cross-shard transaction touching a shard this node does not
	// host proposes its two-phase commit operations there (RAFT.TXNOP,
	// txnremote.go). nil: such transactions are refused (CROSSSHARD).
	Peer AdminCall

	// brokenTxnCommit: a deliberately broken coordinator that decides
	// commit on the coordinator shard's vote alone (Bug BugTxnOneVote, or
	// set by tests).
	brokenTxnCommit bool
}

func (c *Config) defaults() error {
	if c.Shards <= 0 {
		c.Shards = 1
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.Replicas > len(c.Nodes) {
		c.Replicas = len(c.Nodes)
	}
	if c.InitialNodes <= 0 || c.InitialNodes > len(c.Nodes) {
		c.InitialNodes = len(c.Nodes)
	}
	if c.ShardIDBase == 0 {
		c.ShardIDBase = 1
	}
	if c.RTT <= 0 {
		c.RTT = 10 * time.Millisecond
	}
	if c.ElectionRTT == 0 {
		c.ElectionRTT = 10
	}
	if c.HeartbeatRTT == 0 {
		c.HeartbeatRTT = 1
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = 10000
	}
	if c.CompactionOverhead == 0 {
		c.CompactionOverhead = 100
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Dir == "" {
		return errors.New("raft: Config.Dir is required")
	}
	if len(c.Nodes) == 0 {
		return errors.New("raft: Config.Nodes is empty")
	}
	switch c.LogDB {
	case "", LogDBPebble, LogDBPebbleSync, LogDBTan:
	default:
		return fmt.Errorf("raft: unknown logdb %q (want %s, %s or %s)", c.LogDB, LogDBPebble, LogDBPebbleSync, LogDBTan)
	}
	switch c.Storage {
	case "":
		c.Storage = "memory"
	case "memory", "pebble":
	default:
		return fmt.Errorf("raft: unknown storage %q (want memory or pebble)", c.Storage)
	}
	if c.Bug != "" && !knownBug(c.Bug) {
		return fmt.Errorf("raft: unknown bug %q (see Bugs)", c.Bug)
	}
	if c.Bug == BugTxnOneVote {
		c.brokenTxnCommit = true
	}
	return nil
}

// Service is one node's part of a raft namespace: a Dragonboat NodeHost
// running this node's replicas of the namespace's shards.
type Service struct {
	cfg   Config
	self  int // index of this node in cfg.Nodes
	nh    *dragonboat.NodeHost
	mu    sync.RWMutex   // guards local, batch, former and nodes (membership changes)
	local map[int]uint64 // shard index -> this node's replica ID
	// nodes is the namespace's node list: cfg.Nodes, grown by SetNodes
	// (append only, so indexes never change). Read it with nodeList.
	nodes   []Node
	retired []consistency.NodeID // see Config.Retired
	version uint64               // see Config.NodesVersion
	nodesMu sync.Mutex           // serialises RAFT.NODES changes
	batch   map[int]*batcher
	// former: for a shard this node left (LeaveShard), the node indexes of
	// the shard's members as its replica last knew them, where requests
	// for the shard are redirected (in memory: after a restart, the
	// initial placement).
	former map[int][]int
	// left: shard index to the replica ID this node ran before LeaveShard
	// (in memory), whose data JoinShard removes before a new replica
	// starts.
	left map[int]uint64
	// nonVoting: shards whose replica joined as a non-voting member
	// (membership.go, hosted.json); started with IsNonVoting.
	nonVoting map[int]bool
	// corrupt: shards whose replica was found corrupt at start and not
	// started, until Rebuild restores them (rebuild.go).
	corrupt map[int]CorruptReplica
	// sms: Dragonboat shard ID to the on-disk state machine last created
	// for it (scrub.go waits for it to close before quarantining it).
	sms sync.Map
	// checked: shards whose state machine quarantine opened and checked
	// at start and left open for startReplica, which hands it to
	// Dragonboat (one Pebble open per replica start, not three).
	checked map[int]*diskSM
	closed  atomic.Bool
	// closing is closed by Close: background loops (RecoverTxnsEvery)
	// end at once.
	closing chan struct{}
	// proposer and seq identify proposals for deduplication (dedup.go):
	// one proposer ID per Service incarnation (a hash of the node, the
	// NodeHost ID and the clock at start), sequence numbers from 1.
	proposer uint64
	seq      atomic.Uint64
	// async: the writes started by DoAsync (async.go).
	async asyncState
	// txnRoute: shard index to the node index that last served a remote
	// two-phase commit operation for it (txnremote.go).
	txnRoute sync.Map
}

var _ consistency.Service = (*Service)(nil)

// New starts the NodeHost and this node's replicas. On a restart (the disk
// already holds the shards) it recovers them from the disk.
func New(cfg Config) (*Service, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, self: -1, closing: make(chan struct{}), local: map[int]uint64{}, batch: map[int]*batcher{}, former: map[int][]int{}, left: map[int]uint64{}, corrupt: map[int]CorruptReplica{}, nodes: cfg.Nodes, retired: cfg.Retired, version: cfg.NodesVersion}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%d", cfg.NodeID, cfg.NodeHostID, cfg.Clock().UnixNano())
	s.proposer = h.Sum64() | 1 // never 0 (0: not deduplicated)
	for i, n := range cfg.Nodes {
		if n.ID == cfg.NodeID {
			s.self = i
		}
	}
	if s.self < 0 {
		return nil, fmt.Errorf("raft: node %q is not in Config.Nodes", cfg.NodeID)
	}
	rtt := uint64(cfg.RTT / time.Millisecond)
	if rtt == 0 {
		rtt = 1
	}
	nhc := config.NodeHostConfig{
		NodeHostDir:       cfg.Dir,
		WALDir:            cfg.WALDir,
		NodeHostID:        cfg.NodeHostID,
		RTTMillisecond:    rtt,
		RaftAddress:       cfg.Nodes[s.self].RaftAddr,
		RaftEventListener: cfg.RaftEvents,
		MutualTLS:         cfg.MutualTLS,
		CAFile:            cfg.CAFile,
		CertFile:          cfg.CertFile,
		KeyFile:           cfg.KeyFile,
		Expert: config.ExpertConfig{
			TransportFactory: cfg.TransportFactory,
			FS:               cfg.FS,
		},
	}
	if cfg.LogDBShards > 0 {
		ldb := config.GetTinyMemLogDBConfig()
		ldb.Shards = cfg.LogDBShards
		nhc.Expert.LogDB = ldb
	}
	switch cfg.LogDB {
	case "", LogDBPebble:
		nhc.Expert.LogDBFactory = lazyCommitFactory{beforeSave: cfg.BeforeSave, applied: s.diskApplied}
	case LogDBTan:
		nhc.Expert.LogDBFactory = tanFactory{}
	}
	if cfg.SmallEngine {
		nhc.Expert.Engine = config.EngineConfig{ExecShards: 1, CommitShards: 1,
			ApplyShards: 1, SnapshotShards: 1, CloseShards: 1}
	}
	nh, err := dragonboat.NewNodeHost(nhc)
	if err != nil {
		return nil, fmt.Errorf("raft: start NodeHost %s: %w", cfg.NodeID, err)
	}
	if nh == nil { // NewNodeHost recovers non-error panics and returns (nil, nil)
		return nil, fmt.Errorf("raft: NodeHost %s failed to start (a custom FS must be wrapped with vfs.Wrap)", cfg.NodeID)
	}
	s.nh = nh
	hosted, restart, err := s.loadHosted()
	if err != nil {
		s.Close()
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for sh := 0; sh < cfg.Shards; sh++ {
		place := Placement(sh, cfg.Replicas, cfg.InitialNodes)
		members := map[uint64]dragonboat.Target{}
		mine := false
		for _, i := range place {
			members[LegacyReplicaID(i)] = cfg.Nodes[i].RaftAddr
			mine = mine || i == s.self
		}
		rid := LegacyReplicaID(s.self)
		if restart {
			// hosted.json (membership changes happened) decides, with the
			// replica ID this node was added under; the replicas are
			// bootstrapped: Dragonboat takes their members from its
			// bootstrap record (and refuses a member list for a replica
			// that joined).
			var id uint64
			id, mine = hosted[sh]
			if id != 0 {
				rid = id
			}
			members = nil
		}
		if !mine {
			continue
		}
		// A replica whose state machine is corrupt (or still being
		// rebuilt) is not started; Rebuild restores it (rebuild.go).
		if q, err := s.quarantine(sh, rid); err != nil || q {
			if err != nil {
				s.Close()
				return nil, err
			}
			continue
		}
		if err := s.startReplica(sh, members, false, rid); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// startReplica starts this node's replica rid of shard sh: a member of the
// initial placement (members), or a replica joining an existing shard
// (join). s.mu is held.
func (s *Service) startReplica(sh int, members map[uint64]dragonboat.Target, join bool, rid uint64) error {
	cfg := s.cfg
	rc := config.Config{
		ReplicaID:          rid,
		ShardID:            cfg.ShardIDBase + uint64(sh),
		ElectionRTT:        cfg.ElectionRTT,
		HeartbeatRTT:       cfg.HeartbeatRTT,
		CheckQuorum:        true,
		PreVote:            true,
		SnapshotEntries:    cfg.SnapshotEntries,
		CompactionOverhead: cfg.CompactionOverhead,
		IsNonVoting:        s.nonVoting[sh],
	}
	limits := cfg.Limits
	var err error
	if cfg.Storage == "pebble" {
		dir := s.smDir(sh)
		opts := pebbleengine.Options{FS: cfg.PebbleFS}
		// The state machine quarantine checked is already open: it is
		// the one Dragonboat gets (the factory runs once, inside
		// StartOnDiskReplica, on this goroutine).
		pre := s.checked[sh]
		delete(s.checked, sh)
		err = s.nh.StartOnDiskReplica(members, join, func(uint64, uint64) sm.IOnDiskStateMachine {
			m := pre
			if m == nil {
				m = newDiskSM(dir, opts, limits)
			}
			pre = nil
			s.sms.Store(rc.ShardID, m) // the scrub waits for its Close (scrub.go)
			return m
		}, rc)
		if pre != nil { // not handed to Dragonboat
			pre.Close()
		}
	} else {
		err = s.nh.StartReplica(members, join, func(uint64, uint64) sm.IStateMachine {
			m, err := newMemSM(limits)
			if err != nil { // a fresh memory engine cannot fail to open
				panic(err)
			}
			return m
		}, rc)
	}
	if err != nil {
		return fmt.Errorf("raft: start replica of shard %d on %s: %w", sh, cfg.NodeID, err)
	}
	s.local[sh] = rid
	s.batch[sh] = &batcher{s: s, shardID: rc.ShardID}
	return nil
}

// smDir is the directory of shard sh's Pebble state machine.
func (s *Service) smDir(sh int) string { return s.smDirOf(s.ShardID(sh)) }

// smDirOf is smDir by Dragonboat shard ID.
func (s *Service) smDirOf(shardID uint64) string {
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("sm-%d", shardID))
}

// NodeHost returns the underlying NodeHost (for the simulator and tests).
func (s *Service) NodeHost() *dragonboat.NodeHost { return s.nh }

// ShardID returns the Dragonboat shard ID of shard index sh.
func (s *Service) ShardID(sh int) uint64 { return s.cfg.ShardIDBase + uint64(sh) }

// Shards returns the namespace's shard count.
func (s *Service) Shards() int { return s.cfg.Shards }

// Hosts reports whether this node has a replica of shard sh.
func (s *Service) Hosts(sh int) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.local[sh]
	return ok
}

// replica returns this node's replica ID of shard sh and its batcher (ok
// false: not hosted here).
func (s *Service) replica(sh int) (uint64, *batcher, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.local[sh]
	return id, s.batch[sh], ok
}

// Leader returns the node this node believes leads shard sh.
func (s *Service) Leader(sh int) (consistency.NodeID, bool) {
	if !s.Hosts(sh) {
		return "", false
	}
	id, _, ok, err := s.nh.GetLeaderID(s.ShardID(sh))
	if err != nil || !ok || id == 0 {
		return "", false
	}
	i, ok := s.nodeOfReplica(s.ShardID(sh), id)
	if !ok {
		return "", false
	}
	return s.nodeList()[i].ID, true
}

// nodeList returns the namespace's node list (append only: an index stays
// valid).
func (s *Service) nodeList() []Node {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nodes
}

// nodeOfReplica returns the node index of replica rid of shardID, by its
// Raft address in the membership this node's replica applied (replica IDs
// are allocated per addition: replicaids.go), or by its legacy ID.
func (s *Service) nodeOfReplica(shardID, rid uint64) (int, bool) {
	m, _ := s.appliedMembers(shardID)
	return indexOfReplica(s.nodeList(), m, rid)
}

// Closed is closed when Close is called: for the owner's resources that
// live as long as the Service (the node's pooled connections of
// Config.Peer).
func (s *Service) Closed() <-chan struct{} { return s.closing }

// Close stops the NodeHost. Dragonboat panics on Close after a disk error;
// that panic is returned as an error.
func (s *Service) Close() (err error) {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.closing)
	nh := s.nh
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("raft: NodeHost %s close panicked: %v", s.cfg.NodeID, r)
		}
	}()
	nh.Close()
	return nil
}

// Dump renders the user-visible state of every shard this node hosts (one
// canonical string per live key, core.Store.Dump), read locally without
// any Raft round: for the convergence check after quiescence.
func (s *Service) Dump(now time.Time) (map[string]string, error) {
	out := map[string]string{}
	for sh := 0; sh < s.cfg.Shards; sh++ {
		if !s.Hosts(sh) {
			continue
		}
		v, err := s.nh.StaleRead(s.ShardID(sh), dumpQuery{now: now.UnixNano()})
		if err != nil {
			return nil, fmt.Errorf("raft: dump shard %d on %s: %w", sh, s.cfg.NodeID, err)
		}
		for k, val := range v.(map[string]string) {
			out[k] = val
		}
	}
	return out, nil
}

// route returns the shard of a request's keys, or an error reply.
func (s *Service) route(req consistency.Request) (int, *core.Error) {
	var keys [][]byte
	var name string
	switch {
	case req.Cmd != nil:
		if !core.KnownCommand(req.Cmd.Name) {
			return 0, core.Errorf(core.CodeUnknownCommand, "unknown command '%s'", req.Cmd.Name)
		}
		keys = core.CommandKeys(*req.Cmd)
		name = req.Cmd.Name
	case req.Txn != nil:
		for _, c := range req.Txn.Conds {
			keys = append(keys, c.Key)
		}
		for _, c := range req.Txn.Cmds {
			if !core.KnownCommand(c.Name) {
				return 0, core.Errorf(core.CodeUnknownCommand, "unknown command '%s' in transaction", c.Name)
			}
			keys = append(keys, core.CommandKeys(c)...)
		}
		name = "transaction"
	default:
		return 0, core.Errorf(core.CodeErr, "empty request")
	}
	if len(keys) == 0 {
		if s.cfg.Shards == 1 {
			return 0, nil
		}
		return 0, &core.Error{Code: CodeCrossShard, Msg: fmt.Sprintf(
			"%s touches no key and would span all %d shards of this namespace", name, s.cfg.Shards)}
	}
	sh := core.ShardOf(keys[0], s.cfg.Shards)
	for _, k := range keys[1:] {
		if o := core.ShardOf(k, s.cfg.Shards); o != sh {
			return 0, &core.Error{Code: CodeCrossShard, Msg: fmt.Sprintf(
				"keys of %s live on shards %d and %d; put them on one shard with a hash tag such as {user42}:key", name, sh, o)}
		}
	}
	return sh, nil
}

// readOnly reports whether the request can be served by a read.
func readOnly(req consistency.Request) bool {
	return req.Cmd != nil && core.IsReadOnly(req.Cmd.Name)
}

// defaultTimeout bounds requests whose context has no deadline.
const defaultTimeout = 5 * time.Second

// Do executes one request on its shard. Errors: *consistency.Redirect (the
// shard lives elsewhere, or its leader is another node and
// RedirectToLeader is set), consistency.ErrUnavailable (the request
// certainly did not take effect) and consistency.ErrTimeout (a write whose
// outcome is unknown).
func (s *Service) Do(ctx context.Context, req consistency.Request) (consistency.Response, error) {
	resp := consistency.Response{ID: req.ID}
	if s.closed.Load() {
		return resp, fmt.Errorf("raft: node %s closed: %w", s.cfg.NodeID, consistency.ErrUnavailable)
	}
	ctx = s.withStaggerKey(ctx, req.ID)
	if req.Cmd != nil && adminCommand(req.Cmd.Name) {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
			defer cancel()
		}
		r, err := s.admin(ctx, *req.Cmd)
		resp.Reply = r
		return resp, err
	}
	sh, rerr := s.route(req)
	if rerr != nil {
		if rerr.Code == CodeCrossShard {
			return s.doCrossShard(ctx, req) // two-phase commit (txncoord.go)
		}
		resp.Reply = core.ErrorReply(rerr)
		return resp, nil
	}
	me, bat, hosted := s.replica(sh)
	if !hosted {
		return resp, s.redirectElsewhere(sh, "has no replica of")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	shardID := s.ShardID(sh)
	leader, _, leaderKnown, _ := s.nh.GetLeaderID(shardID)
	stale := req.Opts.Read == "stale"
	if !stale && (!leaderKnown || leader != me) {
		// Not the leader: check the leader this replica knows against the
		// membership it applied (the leader is never removed while it
		// leads, so the leader's own path skips this).
		var removed bool
		var err error
		leader, leaderKnown, removed, err = s.memberLeader(ctx, sh, me)
		if removed {
			return resp, s.redirectElsewhere(sh, "was removed from")
		}
		if err != nil {
			return resp, fmt.Errorf("raft: shard %d on %s: %w: %w", sh, s.cfg.NodeID, consistency.ErrUnavailable, err)
		}
	}
	if s.cfg.RedirectToLeader && !stale && leaderKnown && leader != me {
		if i, ok := s.nodeOfReplica(shardID, leader); ok {
			return resp, &consistency.Redirect{Addr: s.nodeList()[i].ClientAddr, Reason: "not the leader of " + shardName(sh, s.cfg.Shards)}
		}
	}
	if readOnly(req) {
		q := readQuery{now: s.cfg.Clock().UnixNano(), cmd: *req.Cmd}
		var v any
		var err error
		switch {
		case stale:
			resp.Stale = true
			v, err = s.nh.StaleRead(shardID, q)
		case s.cfg.Bug == BugLocalRead && leaderKnown && leader == me:
			// BUG: believes it is leader, answers without ReadIndex.
			v, err = s.nh.StaleRead(shardID, q)
		default:
			v, err = s.linearizableRead(ctx, shardID, q)
		}
		if err != nil {
			// A read that failed changed nothing.
			return resp, fmt.Errorf("raft: read shard %d on %s: %w: %w", sh, s.cfg.NodeID, consistency.ErrUnavailable, err)
		}
		resp.Reply = v.(core.Reply)
		return resp, nil
	}
	p := proposal{now: s.cfg.Clock().UnixNano(), proposer: s.proposer, seq: s.seq.Add(1), cmd: req.Cmd, txn: req.Txn}
	data := encodeProposal(p)
	if s.cfg.Bug == BugAckBeforeCommit && req.Cmd != nil && req.Cmd.Name == "SET" {
		// BUG: acknowledge once the proposal is queued, before it commits.
		if _, err := s.nh.Propose(s.nh.GetNoOPSession(shardID), data, timeLeft(ctx)); err != nil {
			return resp, fmt.Errorf("raft: propose to shard %d on %s: %w: %w", sh, s.cfg.NodeID, consistency.ErrUnavailable, err)
		}
		resp.Reply = core.OK()
		return resp, nil
	}
	var out []byte
	var copies int
	var err error
	if s.cfg.BatchProposals {
		out, copies, err = bat.submit(ctx, data)
		if errors.Is(err, errOutcomeUnknown) {
			err = fmt.Errorf("%w: %w", consistency.ErrTimeout, err)
		}
	} else {
		var res sm.Result
		res, copies, err = s.propose(ctx, shardID, data)
		out = res.Data
	}
	return s.writeResult(ctx, req, sh, out, copies, err)
}

// writeResult turns the outcome of a write proposed to shard sh (the
// applied result out, the copies proposed, the proposal's error) into Do's
// answer: a NOTAPPLIED or DUPLICATE reply becomes ErrUnavailable or
// ErrTimeout as the copies say; a TXNCONFLICT reply is retried
// (retryConflict, which waits: not for a caller that must not block, see
// async.go).
func (s *Service) writeResult(ctx context.Context, req consistency.Request, sh int, out []byte, copies int, err error) (consistency.Response, error) {
	resp := consistency.Response{ID: req.ID}
	if err != nil {
		return resp, fmt.Errorf("raft: write to shard %d on %s: %w", sh, s.cfg.NodeID, err)
	}
	reply, derr := core.DecodeReply(out)
	if derr != nil {
		return resp, fmt.Errorf("raft: decode reply of shard %d: %w", sh, derr)
	}
	if reply.IsError() {
		switch {
		case reply.Err.Code == CodeNotApplied && copies <= 1:
			// The only copy in the log was refused: certainly not applied.
			return resp, fmt.Errorf("raft: write to shard %d on %s: %w: %s", sh, s.cfg.NodeID, consistency.ErrUnavailable, reply.Err.Msg)
		case reply.Err.Code == CodeNotApplied, reply.Err.Code == CodeDuplicate:
			// An earlier copy may have been (NOTAPPLIED) or was
			// (DUPLICATE) applied; its reply is not known.
			return resp, fmt.Errorf("raft: write to shard %d on %s: %w: %s", sh, s.cfg.NodeID, consistency.ErrTimeout, reply.Err.Msg)
		case reply.Err.Code == CodeTxnConflict && ctx.Value(txnRetryKey{}) == nil:
			// A key locked by a prepared cross-shard transaction: not
			// applied; wait and retry (txncoord.go).
			resp.Reply = reply
			return s.retryConflict(ctx, req, sh, resp)
		}
	}
	resp.Reply = reply
	return resp, nil
}

// redirectElsewhere answers a request for shard sh at a node that does not
// host it or whose replica was removed from it (why says which): a
// redirect to a member as this node last knew them (former, or the
// membership its replica applied), else to the first other node of the
// initial placement; its answer names the leader.
func (s *Service) redirectElsewhere(sh int, why string) error {
	var cands []int
	s.mu.RLock()
	cands = append(cands, s.former[sh]...)
	s.mu.RUnlock()
	nodes := s.nodeList()
	if m, ok := s.appliedMembers(s.ShardID(sh)); ok {
		if lead, _, known, _ := s.nh.GetLeaderID(s.ShardID(sh)); known {
			if _, member := m[lead]; member {
				if i, ok := indexOfReplica(nodes, m, lead); ok {
					cands = append(cands, i)
				}
			}
		}
		cands = append(cands, memberIndexes(nodes, m)...)
	}
	cands = append(cands, Placement(sh, s.cfg.Replicas, s.cfg.InitialNodes)...)
	to := (s.self + 1) % len(nodes)
	for _, i := range cands {
		if i != s.self {
			to = i
			break
		}
	}
	return &consistency.Redirect{Addr: nodes[to].ClientAddr,
		Reason: fmt.Sprintf("%s %s %s", s.cfg.NodeID, why, shardName(sh, s.cfg.Shards))}
}

// memberIndexes returns the node indexes of the members in m (replica ID
// to Raft address), in ascending order.
func memberIndexes(nodes []Node, m map[uint64]string) []int {
	out := make([]int, 0, len(m))
	for id := range m {
		if i, ok := indexOfReplica(nodes, m, id); ok {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out
}

// appliedMembers returns the voting replicas (ID to Raft address) of
// shardID in the configuration this node's replica has applied, with no
// round trip; ok is false while it has applied none.
func (s *Service) appliedMembers(shardID uint64) (map[uint64]string, bool) {
	info := s.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true})
	if info == nil {
		return nil, false
	}
	for _, si := range info.ShardInfoList {
		if si.ShardID == shardID && !si.Pending && len(si.Replicas) > 0 {
			return si.Replicas, true
		}
	}
	return nil, false
}

// memberLeader returns shard sh's leader as this replica (me) knows it,
// unless that leader is no longer a member of the membership the replica
// applied. A follower keeps the ID of a leader removed from the shard
// until a new leader is elected (up to two election timeouts, longer on a
// loaded machine): a redirect there would come straight back (the removed
// node redirects to the members) and a proposal forwarded there would be
// lost. So memberLeader waits, checking every RTT, until the leader is
// unknown (the caller proceeds as with no leader) or a member, or ctx
// ends (err). removed reports that this replica itself is no longer a
// member (it was removed and is waiting for RAFT.LEAVE).
func (s *Service) memberLeader(ctx context.Context, sh int, me uint64) (leader uint64, known, removed bool, err error) {
	shardID := s.ShardID(sh)
	for {
		leader, _, known, _ = s.nh.GetLeaderID(shardID)
		m, ok := s.appliedMembers(shardID)
		if !ok {
			return leader, known, false, nil
		}
		if _, member := m[me]; !member {
			return leader, known, true, nil
		}
		if !known {
			return leader, false, false, nil
		}
		if _, member := m[leader]; member {
			return leader, true, false, nil
		}
		select {
		case <-ctx.Done():
			return 0, false, false, fmt.Errorf("leader %d was removed from the shard and no new leader is known yet: %w", leader, ctx.Err())
		case <-time.After(s.retryWait(ctx, shardID)):
		}
	}
}

// shardName names a shard in redirects as "shard S of N": clients parse it
// to cache each shard's leader (clients/client routes.go).
func shardName(sh, shards int) string { return fmt.Sprintf("shard %d of %d", sh, shards) }

func timeLeft(ctx context.Context) time.Duration {
	d, _ := ctx.Deadline()
	left := time.Until(d)
	if left < time.Millisecond {
		left = time.Millisecond
	}
	return left
}

// retryable errors say the shard cannot take the request yet (no leader
// known, queue full); the request did not enter the log.
func retryable(err error) bool {
	return errors.Is(err, dragonboat.ErrShardNotReady) || errors.Is(err, dragonboat.ErrSystemBusy) ||
		errors.Is(err, dragonboat.ErrShardNotInitialized)
}

// linearizableRead runs a ReadIndex read. Reads change nothing, so a read
// is retried until ctx expires: while the replica knows no leader, and
// after an attempt that took two election timeouts (a ReadIndex request
// can be lost, e.g. while the replica installs a snapshot).
func (s *Service) linearizableRead(ctx context.Context, shardID uint64, q any) (any, error) {
	attempt := 2 * time.Duration(s.cfg.ElectionRTT) * s.cfg.RTT
	var err error = dragonboat.ErrShardNotReady
	for ctx.Err() == nil {
		if _, _, ok, _ := s.nh.GetLeaderID(shardID); ok {
			actx, cancel := context.WithTimeout(ctx, attempt)
			var v any
			v, err = s.nh.SyncRead(actx, shardID, q)
			cancel()
			if err == nil || !(retryable(err) || errors.Is(err, dragonboat.ErrTimeout)) {
				return v, err
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(s.retryWait(ctx, shardID)):
		}
	}
	return nil, err
}

// reproposeAfter is how long propose waits for a result before it
// proposes the same bytes again (Config.ReproposeAfter; 0: never).
func (s *Service) reproposeAfter() time.Duration {
	switch {
	case s.cfg.ReproposeAfter < 0:
		return 0
	case s.cfg.ReproposeAfter > 0:
		return s.cfg.ReproposeAfter
	}
	return 2 * time.Duration(s.cfg.ElectionRTT) * s.cfg.RTT
}

// staggerKeyCtx carries a request's stagger key (Service.withStaggerKey).
type staggerKeyCtx struct{}

// withStaggerKey gives ctx the stagger key key (the request's ID) when
// Config.TxnStagger is set (the simulator); otherwise ctx is returned as
// it is, at no cost.
func (s *Service) withStaggerKey(ctx context.Context, key uint64) context.Context {
	if s.cfg.TxnStagger <= 0 {
		return ctx
	}
	if _, ok := ctx.Value(staggerKeyCtx{}).(uint64); ok {
		return ctx // a request's own sub-requests keep its key
	}
	return context.WithValue(ctx, staggerKeyCtx{}, key)
}

// retryWait is how long a proposal or read that could not enter Raft
// waits before it tries again: one RTT, plus, with Config.TxnStagger set,
// a few TxnStaggers taken from the request's stagger key and the shard.
// Ordering rule: requests that fail at one instant (a leader lost, every
// waiting proposal dropped at once) retry at distinct instants, so the
// order they reach Raft in is not the goroutine scheduler's (a bank run
// diverged so after a paused leader resumed).
func (s *Service) retryWait(ctx context.Context, shardID uint64) time.Duration {
	d := s.cfg.RTT
	if s.cfg.TxnStagger > 0 {
		key, _ := ctx.Value(staggerKeyCtx{}).(uint64)
		d += time.Duration(1+int(shardID%staggerSlots)+staggerSlots*int(key%staggerKeys)) * s.cfg.TxnStagger
	}
	return d
}

// propose proposes data and waits for it to be applied. Until the proposal
// enters Raft, failures are ErrUnavailable (it certainly did not happen);
// after, a timeout or abort is ErrTimeout (outcome unknown).
//
// Dragonboat delivers no result for an accepted proposal whose forwarded
// Propose message was lost, or whose entry this replica learned from a
// snapshot instead of applying it. So when no result came within
// reproposeAfter of the last copy, propose proposes the same
// bytes again: same proposer and sequence number, so the state machine
// applies at most one copy and answers every later copy with the first
// one's kept reply (dedup.go). Every copy's request stays watched; the
// first result wins. copies is how many copies were proposed: after more
// than one, a NOTAPPLIED reply no longer means "certainly not applied" (an
// earlier copy may have been), which Do accounts for.
func (s *Service) propose(ctx context.Context, shardID uint64, data []byte) (res sm.Result, copies int, err error) {
	return s.proposeFrom(ctx, shardID, data, nil)
}

// proposeFrom is propose; first, if not nil, is a copy already proposed
// (by DoAsync) and unanswered for reproposeAfter: proposeFrom goes on
// watching it, and looks at it and proposes the next copy at once, as
// propose does when its timer fires.
func (s *Service) proposeFrom(ctx context.Context, shardID uint64, data []byte, first *dragonboat.RequestState) (res sm.Result, copies int, err error) {
	session := s.nh.GetNoOPSession(shardID)
	var watched []*dragonboat.RequestState // unanswered copies, oldest first
	// copies counts the copies that may be in the log: accepted by Propose
	// and not answered Dropped or Rejected.
	wait := s.reproposeAfter()
	var next <-chan time.Time // when to propose (another copy)
	start := true             // propose the first copy
	if first != nil {
		watched, copies, start = append(watched, first), 1, false
		fired := make(chan time.Time, 1)
		fired <- time.Time{}
		next = fired
	}
	notInLog := func(why string) (sm.Result, int, error) {
		if copies == 0 {
			return sm.Result{}, 0, fmt.Errorf("%w: %s", consistency.ErrUnavailable, why)
		}
		return sm.Result{}, copies, fmt.Errorf("%w: %s, an earlier copy unanswered", consistency.ErrTimeout, why)
	}
	for propose := start; ; {
		if propose {
			propose = false
			rs, err := s.nh.Propose(session, data, timeLeft(ctx))
			switch {
			case err == nil:
				watched = append(watched, rs)
				copies++
				if wait > 0 {
					next = time.After(wait)
				}
			case retryable(err) && ctx.Err() == nil:
				next = time.After(s.retryWait(ctx, shardID)) // not in the log: try again
			case len(watched) == 0:
				return notInLog(err.Error())
			}
		}
		// Wait for the newest copy's result, the next copy, or the end;
		// older copies are looked at when the timer fires.
		var newest chan dragonboat.RequestResult
		if len(watched) > 0 {
			newest = watched[len(watched)-1].ResultC()
		}
		select {
		case r := <-newest:
			watched[len(watched)-1].Release()
			watched = watched[:len(watched)-1]
			switch {
			case r.Completed():
				return r.GetResult(), copies, nil
			case r.Dropped() || r.Rejected():
				// Not in the log (dropped: no leader yet): try again
				// after an RTT while there is time.
				copies--
				if ctx.Err() == nil && r.Dropped() {
					next = time.After(s.retryWait(ctx, shardID))
					continue
				}
				if len(watched) == 0 {
					return notInLog("proposal " + resultString(r))
				}
			default: // timeout, aborted, terminated: it may still commit
				return sm.Result{}, copies, fmt.Errorf("%w: proposal %s", consistency.ErrTimeout, resultString(r))
			}
		case <-next:
			next = nil
			kept := watched[:0:0]
			for _, rs := range watched {
				select {
				case r := <-rs.ResultC():
					rs.Release()
					if r.Completed() {
						return r.GetResult(), copies, nil
					}
					if r.Dropped() || r.Rejected() {
						copies--
					}
				default:
					kept = append(kept, rs)
				}
			}
			watched = kept
			propose = ctx.Err() == nil
		case <-ctx.Done():
			if copies == 0 {
				return sm.Result{}, 0, fmt.Errorf("%w: %w", consistency.ErrUnavailable, ctx.Err())
			}
			return sm.Result{}, copies, fmt.Errorf("%w: %w", consistency.ErrTimeout, ctx.Err())
		}
	}
}

func resultString(r dragonboat.RequestResult) string {
	switch {
	case r.Timeout():
		return "timed out"
	case r.Aborted():
		return "aborted"
	case r.Terminated():
		return "terminated (shard closed)"
	case r.Dropped():
		return "dropped"
	case r.Rejected():
		return "rejected"
	}
	return "failed"
}
