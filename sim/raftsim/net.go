package raftsim

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/dialkv/dialkv/sim/netmodel"
)

// Network is the simulator-owned transport shared by every NodeHost of a
// run; the link state (partitions, clogs, drop and duplication rates,
// latency distributions) is a netmodel.Net. Every decision about a message
// draws from a generator seeded by a hash of (seed, link, send instant,
// message fields) — never from a shared stream, whose consumption order
// would depend on goroutine scheduling — so it is reproducible whenever the
// message is. Messages that arrive on one link at one instant are delivered
// together in a canonical order.
//
// Faults never surface as transport errors: Dragonboat answers those with a
// circuit breaker whose backoff uses real time and the global math/rand.
type Network struct {
	seed  uint64
	t0    time.Time
	names []string

	mu      sync.Mutex
	index   map[string]int
	hosts   map[string]*transport
	links   *netmodel.Net
	paused  []time.Time            // per node: paused until
	held    map[[2]int][]heldBatch // clogged links' messages
	pending map[bucketKey]*bucket  // batches in flight, by link and arrival instant
	trace   []string

	Delivered, Dropped atomic.Int64
	// DupPropose lets the network duplicate Propose messages like Raft's
	// own (params dup-propose, default true): the state machine
	// deduplicates proposals (consistency/raft dedup.go).
	DupPropose bool
	// DropPropose is the fraction of Propose messages (client proposals a
	// follower forwards to the leader) lost on top of the link's own loss
	// (params drop-propose, default 0): Dragonboat then never delivers a
	// result for the proposal, the Service must propose it again.
	DropPropose float64
	// onPropose, if set (tests), runs under the network's lock after a
	// Propose message from node index from to node index to was scheduled
	// for delivery, with the link model.
	onPropose func(from, to int, links *netmodel.Net)
}

type heldBatch struct {
	did  uint64
	msgs []pb.Message
}

type bucketKey struct {
	from, to string
	arrive   int64
}

type bucket struct {
	dst  string
	src  string
	did  uint64
	msgs []pb.Message
}

// NewNetwork returns a network between the named nodes with the given link
// model; decisions derive from seed.
func NewNetwork(seed uint64, names []string, links *netmodel.Net) *Network {
	n := &Network{
		seed: seed, t0: time.Now(), names: names, links: links,
		index: map[string]int{}, hosts: map[string]*transport{},
		paused: make([]time.Time, len(names)), held: map[[2]int][]heldBatch{},
		pending: map[bucketKey]*bucket{},
	}
	for i, name := range names {
		n.index[name] = i
	}
	return n
}

// Links runs f on the link model under the network's lock (partitions,
// rates, clogs). Unclogging delivers what the link held.
func (n *Network) Links(f func(nt *netmodel.Net)) {
	n.mu.Lock()
	f(n.links)
	var release [][2]int
	for l := range n.held {
		if !n.links.Clogged(l[0], l[1]) {
			release = append(release, l)
		}
	}
	sort.Slice(release, func(i, j int) bool {
		return release[i][0] < release[j][0] || release[i][0] == release[j][0] && release[i][1] < release[j][1]
	})
	now := time.Now()
	for _, l := range release {
		for _, hb := range n.held[l] {
			for _, m := range hb.msgs {
				n.schedule(n.names[l[0]], n.names[l[1]], now, now.Add(time.Microsecond), hb.did, m)
			}
		}
		delete(n.held, l)
	}
	n.mu.Unlock()
}

// Pause holds every message to or from node until now+d (a stop-the-world
// pause as the network sees it).
func (n *Network) Pause(node int, d time.Duration) {
	n.mu.Lock()
	n.paused[node] = time.Now().Add(d)
	n.mu.Unlock()
}

// PausedUntil returns when node's pause ends (zero if it is not paused).
func (n *Network) PausedUntil(node int) time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	if u := n.paused[node]; u.After(time.Now()) {
		return u
	}
	return time.Time{}
}

func (n *Network) hash(from, to string, at int64, m *pb.Message) uint64 {
	h := fnv.New64a()
	var b [8]byte
	put := func(v uint64) { binary.LittleEndian.PutUint64(b[:], v); h.Write(b[:]) }
	put(n.seed)
	h.Write([]byte(from))
	h.Write([]byte{0})
	h.Write([]byte(to))
	put(uint64(at))
	put(uint64(m.Type))
	put(m.ShardID)
	put(m.From)
	put(m.To)
	put(m.Term)
	put(m.LogTerm)
	put(m.LogIndex)
	put(m.Commit)
	// m.Hint is left out: for ReadIndex it carries a request key from
	// Dragonboat's pid+time seeded key generator.
	put(uint64(len(m.Entries)))
	return h.Sum64()
}

func msgLess(a, b *pb.Message) bool {
	switch {
	case a.ShardID != b.ShardID:
		return a.ShardID < b.ShardID
	case a.Type != b.Type:
		return a.Type < b.Type
	case a.Term != b.Term:
		return a.Term < b.Term
	case a.LogIndex != b.LogIndex:
		return a.LogIndex < b.LogIndex
	case a.Commit != b.Commit:
		return a.Commit < b.Commit
	}
	return len(a.Entries) < len(b.Entries)
}

// send routes one batch from -> to.
func (n *Network) send(from, to string, batch pb.MessageBatch) {
	now := time.Now()
	at := now.UnixNano()
	n.mu.Lock()
	defer n.mu.Unlock()
	fi, ok1 := n.index[from]
	ti, ok2 := n.index[to]
	if !ok1 || !ok2 || n.hosts[to] == nil {
		n.Dropped.Add(int64(len(batch.Requests)))
		return
	}
	// Deep copy: no entry buffer is shared between hosts.
	var cp pb.MessageBatch
	if err := cp.Unmarshal(pb.MustMarshal(&batch)); err != nil {
		panic(fmt.Sprintf("raftsim: copy message batch: %v", err))
	}
	for i := range cp.Requests {
		m := cp.Requests[i]
		h := n.hash(from, to, at, &m)
		r := rand.New(rand.NewPCG(h, n.seed))
		fate := n.links.Decide(fi, ti, r)
		if fate.Held {
			l := [2]int{fi, ti}
			n.held[l] = append(n.held[l], heldBatch{did: cp.DeploymentId, msgs: []pb.Message{m}})
			continue
		}
		if len(fate.Delays) == 0 || (m.Type == pb.Propose && n.DropPropose > 0 && r.Float64() < n.DropPropose) {
			n.Dropped.Add(1)
			continue
		}
		if m.Type == pb.Propose && len(fate.Delays) > 1 && !n.DupPropose {
			// A follower forwards client proposals to the leader in
			// Propose messages, and Raft appends whatever it receives:
			// a duplicated Propose is applied twice (no-op sessions do
			// not deduplicate). Dragonboat's own transport (one TCP
			// stream per peer, each batch sent once) never duplicates, so
			// neither does this one for Propose; Raft's own messages
			// are duplicated. (Found by the soak: seed 41, before
			// proposals were deduplicated; dup-propose=true lifts this.)
			fate.Delays = fate.Delays[:1]
		}
		for _, d := range fate.Delays {
			arrive := now.Add(d)
			for _, node := range []int{fi, ti} {
				if u := n.paused[node]; u.After(arrive) {
					arrive = u.Add(d)
				}
			}
			n.schedule(from, to, now, arrive, cp.DeploymentId, m)
		}
		if m.Type == pb.Propose && n.onPropose != nil {
			n.onPropose(fi, ti, n.links)
		}
	}
}

// schedule queues m for delivery at arrive; n.mu is held.
func (n *Network) schedule(from, to string, now, arrive time.Time, did uint64, m pb.Message) {
	if !arrive.After(now) {
		arrive = now.Add(time.Nanosecond)
	}
	key := bucketKey{from, to, arrive.UnixNano()}
	bk := n.pending[key]
	if bk == nil {
		bk = &bucket{dst: to, src: from, did: did}
		n.pending[key] = bk
		time.AfterFunc(arrive.Sub(now), func() { n.flush(key) })
	}
	bk.msgs = append(bk.msgs, m)
}

func (n *Network) flush(key bucketKey) {
	n.mu.Lock()
	bk := n.pending[key]
	delete(n.pending, key)
	dst := n.hosts[bk.dst]
	fi, ti := n.index[bk.src], n.index[bk.dst]
	if dst == nil || n.links.Blocked(fi, ti) { // crashed or cut while in flight
		n.mu.Unlock()
		n.Dropped.Add(int64(len(bk.msgs)))
		return
	}
	sort.SliceStable(bk.msgs, func(i, j int) bool { return msgLess(&bk.msgs[i], &bk.msgs[j]) })
	t := time.Since(n.t0).Nanoseconds()
	for _, m := range bk.msgs {
		n.trace = append(n.trace, fmt.Sprintf("%015d %s->%s s%d %s t%d li%d lt%d c%d e%d r%v",
			t, bk.src, bk.dst, m.ShardID, m.Type, m.Term, m.LogIndex, m.LogTerm, m.Commit, len(m.Entries), m.Reject))
	}
	n.mu.Unlock()
	n.Delivered.Add(int64(len(bk.msgs)))
	dst.handler(pb.MessageBatch{
		Requests:      bk.msgs,
		DeploymentId:  bk.did,
		SourceAddress: bk.src,
		BinVer:        raftio.TransportBinVersion,
	})
}

// traceLines returns the delivered-message log: one line per message
// (time, link, shard, type, term, indexes).
func (n *Network) traceLines() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.trace...)
}

// Factory returns the config.TransportFactory for the run's NodeHosts.
func (n *Network) Factory() config.TransportFactory { return &factory{net: n} }

type factory struct{ net *Network }

var _ config.TransportFactory = (*factory)(nil)

func (f *factory) Create(cfg config.NodeHostConfig, h raftio.MessageHandler,
	ch raftio.ChunkHandler) raftio.ITransport {
	return &transport{net: f.net, addr: cfg.RaftAddress, handler: h, chunkHandler: ch}
}

// Validate accepts any non-empty address: the simulator owns naming.
func (f *factory) Validate(addr string) bool { return addr != "" }

type transport struct {
	net          *Network
	addr         string
	handler      raftio.MessageHandler
	chunkHandler raftio.ChunkHandler
	closed       atomic.Bool
}

var _ raftio.ITransport = (*transport)(nil)

func (t *transport) Name() string { return "raftsim" }

func (t *transport) Start() error {
	t.net.mu.Lock()
	t.net.hosts[t.addr] = t
	t.net.mu.Unlock()
	return nil
}

func (t *transport) Close() error {
	t.closed.Store(true)
	t.net.mu.Lock()
	if t.net.hosts[t.addr] == t {
		delete(t.net.hosts, t.addr)
	}
	t.net.mu.Unlock()
	return nil
}

// GetConnection never fails: an unreachable peer silently loses messages.
func (t *transport) GetConnection(ctx context.Context, target string) (raftio.IConnection, error) {
	return &conn{t: t, target: target}, nil
}

func (t *transport) GetSnapshotConnection(ctx context.Context, target string) (raftio.ISnapshotConnection, error) {
	return &snapConn{t: t, target: target}, nil
}

type conn struct {
	t      *transport
	target string
}

func (c *conn) Close() {}

func (c *conn) SendMessageBatch(batch pb.MessageBatch) error {
	c.t.net.send(c.t.addr, c.target, batch)
	return nil
}

type snapConn struct {
	t      *transport
	target string
	// broken: a chunk of this stream was lost or refused, so the rest of
	// the stream is lost too (a TCP stream the receiver closed).
	broken bool
}

func (c *snapConn) Close() {}

// SendChunk delivers synchronously (the chunks of one snapshot stay in
// order). A chunk across a cut or clogged link, to a paused or crashed
// peer, or refused by the receiver (Dragonboat's chunk tracker refuses
// out-of-order chunks and snapshots it no longer needs) is lost with the
// rest of its stream, and SendChunk still reports success: an error would
// trip Dragonboat's circuit breaker for the peer, which then drops every
// message to it for a backoff of 500 ms ± 50% drawn from the global
// math/rand — neither reproducible from the seed nor a fault the plan
// asked for. For Raft the two outcomes are alike: the leader puts the
// follower in wait state whether the stream failed or not
// (handleLeaderSnapshotStatus), and probes it again at its next heartbeat
// response. Every chunk is traced (sent, lost or refused).
func (c *snapConn) SendChunk(chunk pb.Chunk) error {
	n := c.t.net
	n.mu.Lock()
	dst := n.hosts[c.target]
	fi, ok1 := n.index[c.t.addr]
	ti, ok2 := n.index[c.target]
	cut := !ok1 || !ok2 || n.links.Blocked(fi, ti) || n.links.Clogged(fi, ti) || n.paused[ti].After(time.Now())
	fate := "ok"
	if c.broken || dst == nil || cut || dst.closed.Load() {
		fate = "lost"
	}
	n.chunkTrace(c.t.addr, c.target, &chunk, fate)
	n.mu.Unlock()
	if fate != "ok" {
		c.broken = true
		return nil
	}
	var cc pb.Chunk
	if err := cc.Unmarshal(pb.MustMarshal(&chunk)); err != nil {
		panic(fmt.Sprintf("raftsim: copy snapshot chunk: %v", err))
	}
	if !dst.chunkHandler(cc) {
		c.broken = true
		n.mu.Lock()
		n.chunkTrace(c.t.addr, c.target, &chunk, "refused")
		n.mu.Unlock()
	}
	return nil
}

// chunkTrace traces one snapshot chunk; n.mu is held.
func (n *Network) chunkTrace(from, to string, c *pb.Chunk, fate string) {
	n.trace = append(n.trace, fmt.Sprintf("%015d %s=>%s s%d chunk %d/%d snapshot i%d t%d %s",
		time.Since(n.t0).Nanoseconds(), from, to, c.ShardID, c.ChunkId, c.ChunkCount, c.Index, c.Term, fate))
}
