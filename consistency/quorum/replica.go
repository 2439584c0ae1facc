package quorum

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Error codes the strategy replies with, besides consistency.CodeTimeout
// (the quorum did not answer before the deadline: outcome unknown).
const (
	// CodeSiblings: a write would leave more than max_siblings concurrent
	// versions; read the key and write back with its token to resolve them.
	CodeSiblings core.Code = "SIBLINGS"
)

// Resolver merges the concurrent values (siblings) of a key into one, for
// namespaces whose conflicts Go code resolves (NewWithResolver). It must be
// deterministic and must not depend on the order of siblings.
type Resolver interface {
	Resolve(key []byte, siblings [][]byte) []byte
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(key []byte, siblings [][]byte) []byte

// Resolve calls f.
func (f ResolverFunc) Resolve(key []byte, siblings [][]byte) []byte { return f(key, siblings) }

// Engine key prefixes.
const (
	prefixObj  = "o/" // o/<key> → Object (main store)
	prefixHint = "h/" // h/<owner>\x00<key> → Object held for owner
	keyHLC     = "m/hlc"
	keyEpoch   = "m/epoch" // this disk's incarnation (see Replica.dotID)
)

type entry struct {
	obj    *Object
	seg    int
	digest uint64
}

type target struct {
	node    nodeID
	hintFor nodeID // "" when node is an owner
}

// op is one request in flight at its coordinator.
type op struct {
	id       uint64
	req      consistency.Request
	origin   nodeID // node that forwarded it ("" = our own client)
	originOp uint64
	key      string
	seg      int
	write    bool
	lin      bool
	repair   string // read repair mode for this read
	fwdTo    nodeID // a write forwarded to an owner
	r, w     int
	deadline time.Time
	targets  []target
	// During a ring change: the key's owners in the old and the new ring
	// (quorums count among each; see op.met). nil when the ring is stable.
	oldOwn, newOwn map[nodeID]bool
	jointAcks      bool                 // phase 1 counts acks by owner group (writes, ABD write-back)
	phase          int                  // 0: reading (reads, ABD writes); 1: writing (puts, repairs, write-back)
	resps          map[nodeID]*Object   // phase 0 answers (nil: key absent)
	acks           map[nodeID]bool      // phase 1 positive acks
	sent           map[nodeID]bool      // phase 1 puts sent (awaiting ack)
	need           int                  // phase 1 acks needed before replying
	merged         *Object              // reads: merged answers; writes: the object written
	reply          consistency.Response // prepared reply (sent once need is met)
	replied        bool
}

type hintOp struct {
	owner    nodeID
	key      string
	digest   uint64
	deadline time.Time
}

// Replica is one node's sloppy-quorum replica. It implements
// consistency.Replica; see the package documentation.
type Replica struct {
	id       nodeID
	dotID    nodeID // id.epoch: the name this incarnation mints dots and counts under
	p        params
	bug      string
	resolver Resolver
	ring     *ring
	clock    hlc
	eng      core.Engine
	now      time.Time

	objs   map[string]*entry
	hints  map[nodeID]map[string]*entry
	nhints int

	suspect map[nodeID]time.Time // skip until
	heard   map[nodeID]time.Time // last message from each peer
	down    map[nodeID]bool      // SetPeerState(id, false)

	nextID       uint64
	ops          map[uint64]*op
	hintOps      map[uint64]hintOp
	hintInflight map[nodeID]int
	nextHint     time.Time

	// anti-entropy and tombstone GC
	nextAAE   time.Time
	aaePeer   int
	shared    map[nodeID][]uint32 // segments we own together with each peer
	aaePeers  []nodeID
	conf      map[string]map[nodeID]uint64
	recentGC  map[string]uint64
	recentOrd []string

	// forwarded writes already taken (duplicate deliveries are dropped:
	// a write run twice is not idempotent, e.g. an ABD DEL re-run later
	// deletes a value written after it was acknowledged); bounded FIFO.
	fwdSeen map[fwdKey]bool
	fwdOrd  []fwdKey

	// ring changes (rebalance.go)
	ringVer      uint64
	prev         *ring // the ring before the change under way; nil when stable
	stream       bool  // hand off changed segments to the nodes that gain them
	handQ        []handItem
	handSet      map[handItem]bool
	handOps      map[uint64]handOp
	handInflight map[nodeID]int
	handDirty    map[string]bool   // changed after the stream began (rebalance.go)
	downLeaving  map[nodeID]bool   // RingState.Down: removed while down
	handRetry    map[handItem]bool // offers answered offerLater (handoff=one)
	handFull     map[handItem]bool // offers answered offerWant or timed out: push the object

	rnd   *rand.Rand
	out   consistency.Ready
	dirty bool
	stats Stats
}

// Stats are counters for tests and metrics.
type Stats struct {
	HintsStored, HintsDelivered, HintsRefused int
	ReadRepairs, AAEPushed, TombstonesGCed    int
	Timeouts, Forwarded                       int
	Corrupt                                   int   // records that failed their checksum at recovery
	HandedOff                                 int   // objects a ring change pushed to new owners, acknowledged
	Offered                                   int   // ring change offers a new owner answered offerOK (no object sent)
	HandoffBytes                              int64 // bytes of the ring change's pushes and offers sent (retries included)
}

// Engine records are sealed with a CRC-32C of their payload, so that a
// corrupted record is detected (and dropped) instead of decoded into a
// wrong version.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

func sealRecord(p []byte) []byte {
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(p)), crc32.Checksum(p, crcTable))
	return append(out, p...)
}

func openRecord(v []byte) ([]byte, bool) {
	if len(v) < 4 || binary.BigEndian.Uint32(v) != crc32.Checksum(v[4:], crcTable) {
		return nil, false
	}
	return v[4:], true
}

func openObject(v []byte) *Object {
	p, ok := openRecord(v)
	if !ok {
		return nil
	}
	d := &dec{b: p}
	o := decodeObject(d)
	if d.err != nil || len(d.b) != 0 {
		return nil
	}
	return o
}

var (
	_ consistency.Replica   = (*Replica)(nil)
	_ consistency.Placement = (*Replica)(nil)
	_ consistency.Settler   = (*Replica)(nil)
	_ consistency.Factory   = New
)

// New starts a replica (a consistency.Factory). It recovers every object and
// hint from cfg.Engine, which after a crash holds only what was synced.
func New(cfg consistency.Config) (consistency.Replica, error) {
	r, err := newReplica(cfg, nil)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// NewWithResolver starts a replica whose siblings are merged by res
// (resolve=custom): at every write coordinator and on every read.
func NewWithResolver(cfg consistency.Config, res Resolver) (*Replica, error) {
	if res == nil {
		return nil, fmt.Errorf("quorum: NewWithResolver: nil resolver")
	}
	return newReplica(cfg, res)
}

func newReplica(cfg consistency.Config, res Resolver) (*Replica, error) {
	in := cfg.Params
	if res != nil {
		in = map[string]string{}
		for k, v := range cfg.Params {
			if k == "resolve" && v != ResolveCustom {
				return nil, fmt.Errorf("quorum: NewWithResolver with resolve=%q (want custom or unset)", v)
			}
			if k != "resolve" {
				in[k] = v
			}
		}
	}
	p, err := parseParams(in, len(cfg.Peers))
	if err != nil {
		return nil, err
	}
	if res != nil {
		p.resolve = ResolveCustom
	}
	if cfg.Bug != "" && !knownBug(cfg.Bug) {
		return nil, fmt.Errorf("quorum: unknown bug %q (see Bugs)", cfg.Bug)
	}
	if cfg.Engine == nil {
		return nil, fmt.Errorf("quorum: no engine")
	}
	// A replica need not be among the peers: a node that is not (yet, or
	// no longer) a ring member owns no key and coordinates by forwarding.
	r := &Replica{
		id: cfg.ID, p: p, bug: cfg.Bug, resolver: res, eng: cfg.Engine,
		ring:    newRing(cfg.Peers, p.vnodes, p.n),
		objs:    map[string]*entry{},
		hints:   map[nodeID]map[string]*entry{},
		suspect: map[nodeID]time.Time{}, heard: map[nodeID]time.Time{}, down: map[nodeID]bool{},
		ops: map[uint64]*op{}, hintOps: map[uint64]hintOp{}, hintInflight: map[nodeID]int{},
		shared: map[nodeID][]uint32{}, conf: map[string]map[nodeID]uint64{}, recentGC: map[string]uint64{},
		fwdSeen: map[fwdKey]bool{},
		handSet: map[handItem]bool{}, handOps: map[uint64]handOp{}, handInflight: map[nodeID]int{}, handDirty: map[string]bool{},
		downLeaving: map[nodeID]bool{}, handRetry: map[handItem]bool{}, handFull: map[handItem]bool{},
	}
	for seg := range r.ring.walks {
		if !r.ring.isOwner(seg, r.id) {
			continue
		}
		for _, o := range r.ring.owners(seg) {
			if o != r.id {
				r.shared[o] = append(r.shared[o], uint32(seg))
			}
		}
	}
	for _, x := range cfg.Peers {
		if len(r.shared[x]) > 0 {
			r.aaePeers = append(r.aaePeers, x)
		}
	}
	// Start the anti-entropy rotation at a per-node offset so that nodes
	// do not all pick the same peer.
	r.rnd = cfg.Rand
	if len(r.aaePeers) > 0 {
		r.aaePeer = int(r.jitter(int64(len(r.aaePeers))))
	}
	if err := r.recover(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Replica) recover() error {
	// The epoch names this disk's incarnation. Dots and counter shares are
	// minted as "id.epoch": a node whose disk was wiped gets a new epoch
	// and cannot re-mint dots (or restart a counter share) that others
	// already hold. A crash keeps the synced epoch, so the name is stable.
	// A new disk gets its epoch at the first input (ensureEpoch), from that
	// input's clock reading and the replica's randomness.
	if v, err := r.eng.Get([]byte(keyEpoch)); err == nil {
		if p, ok := openRecord(v); ok {
			r.dotID = r.id + "." + nodeID(p)
		}
	}
	if v, err := r.eng.Get([]byte(keyHLC)); err == nil {
		if p, ok := openRecord(v); ok {
			d := &dec{b: p}
			if t := d.ts(); d.err == nil {
				r.clock.observe(t)
			}
		} else {
			r.stats.Corrupt++
		}
	}
	it := r.eng.NewIter([]byte(prefixObj), []byte("o0"))
	for it.First(); it.Valid(); it.Next() {
		key := string(it.Key()[len(prefixObj):])
		o := openObject(it.Value())
		if o == nil {
			// A corrupt record: forget it; the other owners still hold the
			// key and anti-entropy (or the next write) brings it back.
			r.stats.Corrupt++
			continue
		}
		r.objs[key] = &entry{obj: o, seg: r.ring.segment(key), digest: o.digest()}
		r.clock.observe(o.Mod)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("quorum: recovering objects: %w", err)
	}
	it = r.eng.NewIter([]byte(prefixHint), []byte("h0"))
	for it.First(); it.Valid(); it.Next() {
		rest := string(it.Key()[len(prefixHint):])
		i := strings.IndexByte(rest, 0)
		if i < 0 {
			continue
		}
		owner, key := nodeID(rest[:i]), rest[i+1:]
		o := openObject(it.Value())
		if o == nil {
			r.stats.Corrupt++ // a lost hint: anti-entropy among the owners is the backstop
			continue
		}
		if r.hints[owner] == nil {
			r.hints[owner] = map[string]*entry{}
		}
		r.hints[owner][key] = &entry{obj: o, seg: r.ring.segment(key), digest: o.digest()}
		r.nhints++
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("quorum: recovering hints: %w", err)
	}
	return nil
}

// ensureEpoch gives a fresh disk its epoch. It is committed in the same
// step as anything minted under it, so both are synced before any message
// leaves (a crash before that loses both, harmlessly).
func (r *Replica) ensureEpoch(now time.Time) {
	if r.dotID != "" {
		return
	}
	epoch := strconv.FormatInt(now.UnixNano(), 36) + strconv.FormatUint(uint64(r.jitter(1<<40)), 36)
	b := r.eng.NewBatch()
	defer b.Close()
	b.Set([]byte(keyEpoch), sealRecord([]byte(epoch)))
	if err := b.Commit(false); err != nil {
		return // retried at the next input; no dot is minted without it
	}
	r.dirty = true
	r.dotID = r.id + "." + nodeID(epoch)
}

// SetPeerState feeds membership (memberlist on real nodes): a peer marked
// not alive is skipped by sloppy quorum until marked alive again. Without
// it, the replica suspects peers that miss a request's deadline.
func (r *Replica) SetPeerState(id consistency.NodeID, alive bool) {
	if alive {
		delete(r.down, id)
		delete(r.suspect, id)
	} else {
		r.down[id] = true
	}
}

// Unsettled implements consistency.Settler: the hints this replica keeps
// for other nodes, not yet handed off.
func (r *Replica) Unsettled() int { return r.nhints }

// Holders implements consistency.Placement: a key's preference list.
func (r *Replica) Holders(key string) []consistency.NodeID {
	return append([]nodeID(nil), r.ring.owners(r.ring.segment(key))...)
}

// coord is the ring that coordinates requests: the old one during a ring
// change.
func (r *Replica) coord() *ring {
	if r.prev != nil {
		return r.prev
	}
	return r.ring
}

// jitter returns a number in [0, n) from the replica's own randomness (0
// without one).
func (r *Replica) jitter(n int64) int64 {
	if r.rnd == nil || n <= 0 {
		return 0
	}
	return r.rnd.Int64N(n)
}

// Stats returns the replica's counters.
func (r *Replica) Stats() Stats { return r.stats }

func (r *Replica) suspected(n nodeID) bool {
	if n == r.id {
		return false
	}
	if r.down[n] || r.downLeaving[n] {
		return true
	}
	t, ok := r.suspect[n]
	return ok && r.now.Before(t)
}

// Ready returns and clears the outputs.
func (r *Replica) Ready() consistency.Ready {
	out := r.out
	out.Sync = r.dirty
	r.out = consistency.Ready{}
	r.dirty = false
	return out
}

func (r *Replica) send(to nodeID, m *msg) {
	m.ts = r.clock.now(r.now)
	if m.kind == mPut {
		m.putVer = r.ringVer
	}
	r.out.Messages = append(r.out.Messages, consistency.Message{From: r.id, To: to, Body: encodeMsg(m)})
}

func (r *Replica) newID() uint64 {
	r.nextID++
	return r.nextID
}

// ---- persistence ----

func (r *Replica) persist(engKey string, o *Object) error {
	b := r.eng.NewBatch()
	defer b.Close()
	if o == nil {
		b.Delete([]byte(engKey))
	} else {
		b.Set([]byte(engKey), sealRecord(encodeObject(o)))
	}
	var e enc
	e.ts(r.clock.last())
	b.Set([]byte(keyHLC), sealRecord(e.b))
	if err := b.Commit(false); err != nil {
		return fmt.Errorf("quorum: persisting %q: %w", engKey, err)
	}
	r.dirty = true
	return nil
}

func hintKey(owner nodeID, key string) string { return prefixHint + string(owner) + "\x00" + key }

// merge joins two copies of a key under the namespace's resolution. Under
// lww, counters, sets and maps are whole-object last-write-wins (the copy
// with the later HLC time replaces the other): that is what a store without
// CRDTs does with a read-modify-write, and it loses concurrent updates — it
// exists to measure that loss against resolve=crdt.
func (r *Replica) merge(a, b *Object) *Object {
	if r.p.resolve == ResolveLWW && a != nil && b != nil && (a.Kind != KindRegister || b.Kind != KindRegister) {
		if a.Mod == b.Mod && a.digest() < b.digest() || a.Mod.Less(b.Mod) {
			return b.clone()
		}
		return a.clone()
	}
	return merge(a, b)
}

// normalize applies the namespace's resolution to a merged register.
func (r *Replica) normalize(o *Object) {
	if o == nil || o.Kind != KindRegister {
		return
	}
	if r.p.resolve == ResolveLWW || r.p.resolve == ResolveCRDT {
		o.lwwReduce()
	}
}

// mergeMain merges an object into the main store and persists it if it
// changed.
func (r *Replica) mergeMain(key string, o *Object) error { return r.mergeMainFrom(key, o, false) }

// mergeMainFrom is mergeMain for a write that covered says reaches the
// key's new owners during a ring change without this replica's help (a
// joint write's put, a handoff push; see changedInStream).
func (r *Replica) mergeMainFrom(key string, o *Object, covered bool) error {
	e := r.objs[key]
	if e == nil {
		if dg, ok := r.recentGC[key]; ok && dg == o.digest() {
			return nil // a copy of a tombstone we already collected
		}
		e = &entry{seg: r.ring.segment(key)}
	}
	n := r.merge(e.obj, o)
	r.normalize(n)
	dg := n.digest()
	if e.obj != nil && dg == e.digest {
		return nil
	}
	r.clock.observe(n.Mod)
	if err := r.persist(prefixObj+key, n); err != nil {
		return err
	}
	e.obj, e.digest = n, dg
	r.objs[key] = e
	r.changedInStream(key, covered) // during a ring change's stream (rebalance.go)
	return nil
}

func (r *Replica) storeHint(owner nodeID, key string, o *Object) (bool, error) {
	if r.prev != nil && r.stream && !hasID(r.ring.members, owner) {
		// A hint for a node that leaves: kept for the key's new owners
		// (rebalance.go), so it need not wait for the leaving node.
		for _, x := range r.ring.owners(r.ring.segment(key)) {
			if err := r.rehome(x, key, o); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	hm := r.hints[owner]
	if hm == nil {
		hm = map[string]*entry{}
		r.hints[owner] = hm
	}
	e := hm[key]
	if e == nil {
		if r.nhints >= r.p.hintLimit {
			r.stats.HintsRefused++
			return false, nil
		}
		e = &entry{seg: r.ring.segment(key)}
	}
	n := r.merge(e.obj, o)
	r.normalize(n)
	if err := r.persist(hintKey(owner, key), n); err != nil {
		return false, err
	}
	if e.obj == nil {
		r.nhints++
		r.stats.HintsStored++
	}
	e.obj, e.digest = n, n.digest()
	hm[key] = e
	return true, nil
}

// ---- requests ----

func errReply(id uint64, e *core.Error) consistency.Response {
	return consistency.Response{ID: id, Reply: core.ErrorReply(e)}
}

// Request hands the replica a client request.
func (r *Replica) Request(now time.Time, req consistency.Request) {
	r.now = now
	r.ensureEpoch(now)
	r.handleRequest(req, "", 0)
}

func (r *Replica) respond(o *op, resp consistency.Response) {
	if o.replied {
		return
	}
	o.replied = true
	resp.ID = o.req.ID
	if o.origin != "" {
		r.send(o.origin, &msg{kind: mFwdReply, op: o.originOp, resp: resp})
		return
	}
	r.out.Responses = append(r.out.Responses, resp)
}

func (r *Replica) handleRequest(req consistency.Request, origin nodeID, originOp uint64) {
	fail := func(e *core.Error) {
		r.respond(&op{req: req, origin: origin, originOp: originOp}, errReply(req.ID, e))
	}
	if req.Txn != nil || req.Cmd == nil {
		fail(core.Errorf(core.CodeErr, "transactions are not supported by the quorum strategy; use a raft namespace"))
		return
	}
	name := strings.ToUpper(req.Cmd.Name)
	ci, ok := commands[name]
	if !ok {
		fail(core.Errorf(core.CodeErr, "command %s is not supported by the quorum strategy; use a raft namespace", name))
		return
	}
	args := req.Cmd.Args
	if name == "SET" && len(args) > 2 {
		fail(core.Errorf(core.CodeErr, "SET options (%s) are not supported by the quorum strategy; use a raft namespace", strings.ToUpper(string(args[2]))))
		return
	}
	if len(args) < ci.minA || (ci.maxA >= 0 && len(args) > ci.maxA) || (ci.pairs && (len(args)-1)%2 != 0) {
		fail(core.Errorf(core.CodeErr, "wrong number of arguments for '%s' command", strings.ToLower(name)))
		return
	}
	if ci.crdt && r.p.resolve != ResolveCRDT && r.p.resolve != ResolveLWW {
		fail(core.Errorf(core.CodeErr, "command %s needs a namespace with resolve=crdt (or lww) in the quorum strategy (this one has resolve=%s)", name, r.p.resolve))
		return
	}
	mode := req.Opts.Mode
	if mode == "" {
		mode = r.p.mode
	}
	lin := mode == "linearizable"
	if mode != "" && !lin {
		fail(core.Errorf(core.CodeErr, "unknown quorum mode %q (want linearizable or empty)", req.Opts.Mode))
		return
	}
	rr, err := r.p.count(req.Opts.R, r.p.r)
	if err != nil {
		fail(core.Errorf(core.CodeErr, "R: %v", err))
		return
	}
	ww, err := r.p.count(req.Opts.W, r.p.w)
	if err != nil {
		fail(core.Errorf(core.CodeErr, "W: %v", err))
		return
	}
	if lin && rr+ww <= r.p.n {
		fail(core.Errorf(core.CodeErr, "linearizable mode needs R+W>N (R=%d, W=%d, N=%d)", rr, ww, r.p.n))
		return
	}
	repair := req.Opts.Repair
	if repair == "" {
		repair = r.p.readRepair
	}
	if repair != RepairSync && repair != RepairAsync && repair != RepairOff {
		fail(core.Errorf(core.CodeErr, "unknown read repair mode %q (want sync, async or off)", repair))
		return
	}
	if ci.write && r.dotID == "" {
		fail(core.Errorf(core.CodeIO, "quorum: the engine could not record this disk's epoch; writes are refused"))
		return
	}
	key := string(args[0])
	// During a ring change the old ring coordinates (its owners hold the
	// key's history, so only they mint dots); see rebalance.go.
	seg := r.coord().segment(key)
	o := &op{id: r.newID(), req: req, origin: origin, originOp: originOp, key: key, seg: seg,
		write: ci.write, lin: lin, repair: repair, r: rr, w: ww, deadline: r.now.Add(r.p.timeout)}
	if o.write && !r.coord().isOwner(seg, r.id) {
		if origin != "" {
			// The forwarder's ring differs from ours (a ring change is
			// under way): not applied, the client may retry.
			fail(core.Errorf(consistency.CodeUnavailable, "write forwarded to %s, which does not own key %q in ring version %d (a ring change is under way; retry)", r.id, key, r.ringVer))
			return
		}
		r.forward(o)
		return
	}
	r.ops[o.id] = o
	o.targets = r.targetsFor(seg, req.Opts.Strict || lin)
	if r.prev != nil {
		r.jointTargets(o)
	}
	if o.write && !lin {
		e := r.objs[key]
		var base *Object
		if e != nil {
			base = e.obj
		}
		r.beginPut(o, base)
		return
	}
	r.beginRead(o)
}

// forward hands a write to an owner of its key: only owners mint dots.
func (r *Replica) forward(o *op) {
	// Prefer, in ring order, an owner that is not suspected and that we
	// heard from recently (it is probably on our side of a partition).
	owners := r.coord().owners(o.seg)
	o.fwdTo = ""
	for pass := 0; pass < 3 && o.fwdTo == ""; pass++ {
		for _, x := range owners {
			if r.downLeaving[x] {
				continue
			}
			recent := r.now.Sub(r.heard[x]) < r.p.suspectFor
			if pass == 2 || (!r.suspected(x) && (pass == 1 || recent)) {
				o.fwdTo = x
				break
			}
		}
	}
	r.ops[o.id] = o
	r.stats.Forwarded++
	r.send(o.fwdTo, &msg{kind: mFwd, op: o.id, req: o.req})
}

// targetsFor lists the replicas of a segment: the owners, with suspected
// owners replaced (sloppy quorum) by the next healthy fallbacks, which hold
// the write as a hint for the owner.
func (r *Replica) targetsFor(seg int, strict bool) []target {
	var owners []nodeID
	for _, x := range r.coord().owners(seg) {
		// A node removed as down is in no quorum (rebalance.go).
		if !r.downLeaving[x] {
			owners = append(owners, x)
		}
	}
	ts := make([]target, 0, len(owners))
	if strict || !r.p.sloppy {
		for _, x := range owners {
			ts = append(ts, target{node: x})
		}
		return ts
	}
	fb := r.coord().fallbacks(seg)
	for _, x := range owners {
		if !r.suspected(x) {
			ts = append(ts, target{node: x})
			continue
		}
		sub := target{node: x}
		for len(fb) > 0 {
			c := fb[0]
			fb = fb[1:]
			if !r.suspected(c) {
				sub = target{node: c, hintFor: x}
				break
			}
		}
		ts = append(ts, sub)
	}
	return ts
}

func (r *Replica) localObj(key string, hintFor nodeID) *Object {
	if hintFor != "" && hintFor != r.id {
		if r.prev != nil && r.stream && !hasID(r.ring.members, hintFor) {
			// Hints for a leaving node are kept for the key's new owners
			// from the stream on (rebalance.go): answer with everything we
			// hold of the key, so a read still sees what a hint held.
			var m *Object
			if e := r.objs[key]; e != nil {
				m = r.merge(m, e.obj)
			}
			owners := append([]nodeID{hintFor}, r.ring.owners(r.ring.segment(key))...)
			for _, o := range owners {
				if e := r.hints[o][key]; e != nil {
					m = r.merge(m, e.obj)
				}
			}
			return m
		}
		if e := r.hints[hintFor][key]; e != nil {
			return e.obj
		}
		return nil
	}
	if e := r.objs[key]; e != nil {
		return e.obj
	}
	return nil
}

func (r *Replica) beginRead(o *op) {
	o.phase = 0
	o.resps = map[nodeID]*Object{}
	for _, t := range o.targets {
		if t.node == r.id {
			o.resps[r.id] = r.localObj(o.key, t.hintFor).clone()
			continue
		}
		r.send(t.node, &msg{kind: mGet, op: o.id, key: o.key, hintFor: t.hintFor})
	}
	r.progress(o)
}

func maxTS(o *Object) Timestamp {
	if o == nil {
		return Timestamp{}
	}
	return o.Mod
}

// beginPut applies a write on base (the local object, or the merged quorum
// read under ABD), stores it and replicates it to the targets.
func (r *Replica) beginPut(o *op, base *Object) {
	r.clock.observe(maxTS(base))
	ts := r.clock.now(r.now)
	if r.bug == BugLWWNoClock {
		ts = Timestamp{Wall: r.now.UnixNano()}
	}
	ctx := decodeToken(o.key, o.req.Token)
	if base != nil && len(ctx.VV) == 0 && len(ctx.Dots) == 0 && strings.EqualFold(o.req.Cmd.Name, "DEL") {
		// A DEL without a token deletes what its coordinator has seen.
		ctx = Context{VV: base.Clock}
	}
	if o.lin && base != nil {
		ctx = Context{VV: base.Clock}
		for _, s := range base.Sibs {
			ctx.Dots = append(ctx.Dots, s.Dot)
		}
	}
	nobj, reply, tok, e := r.applyWrite(o.key, base, ctx, o.req.Cmd, ts, o.lin)
	if e != nil {
		delete(r.ops, o.id)
		r.respond(o, errReply(o.req.ID, e))
		return
	}
	r.normalize(nobj)
	if r.p.resolve == ResolveCustom && nobj.Kind == KindRegister {
		if lv := nobj.live(); len(lv) > 1 {
			nobj = r.resolveCustom(o.key, nobj, lv, ts)
		}
	}
	if r.p.resolve == ResolveSiblings && nobj.Kind == KindRegister {
		if n := len(nobj.live()); n > r.p.maxSiblings {
			delete(r.ops, o.id)
			r.respond(o, errReply(o.req.ID, core.Errorf(CodeSiblings,
				"key %q would have %d siblings (max_siblings %d): read it and write back with its token to resolve them", o.key, n, r.p.maxSiblings)))
			return
		}
	}
	if err := r.mergeMainFrom(o.key, nobj, o.newOwn != nil); err != nil {
		delete(r.ops, o.id)
		r.respond(o, errReply(o.req.ID, core.AsError(err)))
		return
	}
	o.merged = r.objs[o.key].obj
	o.reply = consistency.Response{Reply: reply, Token: tok}
	r.startPhase1(o, o.merged, o.w, nil)
}

// resolveCustom replaces the live siblings by the resolver's value, with a
// fresh dot that supersedes them all.
func (r *Replica) resolveCustom(key string, o *Object, live []Sibling, ts Timestamp) *Object {
	vals := make([][]byte, len(live))
	for i, s := range live {
		vals[i] = s.Val
	}
	sort.Slice(vals, func(i, j int) bool { return bytes.Compare(vals[i], vals[j]) < 0 })
	v := r.resolver.Resolve([]byte(key), vals)
	ctx := Context{VV: o.Clock}
	return putSibling(o, ctx, Sibling{Dot: o.nextDot(r.dotID, ctx), TS: ts, Val: v})
}

// startPhase1 sends obj to the targets (all of them for writes and ABD
// write-back; only stale owners for read repair) and replies once need acks
// arrived. skip lists targets that already hold obj (they count as acks).
func (r *Replica) startPhase1(o *op, obj *Object, need int, only map[nodeID]bool) {
	o.phase = 1
	o.need = need
	o.jointAcks = only == nil && o.newOwn != nil
	o.acks = map[nodeID]bool{}
	o.sent = map[nodeID]bool{}
	dg := obj.digest()
	for _, t := range o.targets {
		if only != nil && !only[t.node] {
			continue
		}
		if t.node == r.id {
			if t.hintFor == "" {
				if e := r.objs[o.key]; e != nil && e.digest == dg {
					o.acks[r.id] = true
					continue
				}
				if err := r.mergeMainFrom(o.key, obj, o.jointAcks); err == nil {
					o.acks[r.id] = true
				}
			}
			continue
		}
		if o.resps != nil {
			if prev, ok := o.resps[t.node]; ok && prev != nil && prev.digest() == dg && t.hintFor == "" {
				o.acks[t.node] = true
				continue
			}
		}
		o.sent[t.node] = true
		r.send(t.node, &msg{kind: mPut, op: o.id, key: o.key, hintFor: t.hintFor, obj: obj, covered: o.jointAcks})
	}
	r.progress(o)
}

// progress moves an op forward after an answer.
func (r *Replica) progress(o *op) {
	if o.phase == 0 {
		if o.newOwn == nil && len(o.resps) < o.r ||
			o.newOwn != nil && !o.met(func(n nodeID) bool { _, ok := o.resps[n]; return ok }, o.r, true) {
			return
		}
		var merged *Object
		var nodes []nodeID
		for n := range o.resps {
			nodes = append(nodes, n)
		}
		sort.Slice(nodes, func(i, j int) bool { return nodes[i] < nodes[j] })
		for _, n := range nodes {
			merged = r.merge(merged, o.resps[n])
		}
		r.normalize(merged)
		r.clock.observe(maxTS(merged))
		o.merged = merged
		if o.write { // ABD write: the read phase found the latest versions
			if e := r.objs[o.key]; e != nil {
				merged = r.merge(merged, e.obj)
			}
			r.beginPut(o, merged)
			return
		}
		o.reply = r.readReply(o, merged)
		if merged == nil {
			r.finishRead(o)
			return
		}
		repair := r.repairObject(o, merged)
		switch {
		case o.lin: // ABD: write the value back to a write quorum first
			r.stats.ReadRepairs++
			r.startPhase1(o, repair, o.w, nil)
		case o.repair == RepairSync:
			stale := r.staleOwners(o, repair)
			if len(stale) == 0 {
				r.finishRead(o)
				return
			}
			r.stats.ReadRepairs += len(stale)
			r.startPhase1(o, repair, len(stale), stale)
		default:
			r.finishRead(o)
		}
		return
	}
	// phase 1
	enough := len(o.acks) >= o.need
	if o.jointAcks {
		enough = o.met(func(n nodeID) bool { return o.acks[n] }, o.need, true)
	}
	if enough && !o.replied {
		r.respond(o, o.reply)
	}
	r.maybeDone(o)
}

// finishRead replies to a read and keeps the op open to repair late
// answers asynchronously.
func (r *Replica) finishRead(o *op) {
	o.phase = 2
	r.respond(o, o.reply)
	if o.repair != RepairOff && o.merged != nil {
		r.asyncRepair(o)
	}
	r.maybeDone(o)
}

func (r *Replica) asyncRepair(o *op) {
	repair := r.repairObject(o, o.merged)
	stale := r.staleOwners(o, repair)
	var nodes []nodeID
	for n := range stale {
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i] < nodes[j] }) // deterministic sends
	for _, n := range nodes {
		if o.sent == nil {
			o.sent = map[nodeID]bool{}
		}
		if o.sent[n] {
			continue
		}
		o.sent[n] = true
		r.stats.ReadRepairs++
		if n == r.id {
			_ = r.mergeMain(o.key, repair)
			continue
		}
		r.send(n, &msg{kind: mPut, key: o.key, obj: repair})
	}
}

// repairObject is what read repair writes: the merged object. Under the
// read-repair-drops-siblings bug it is one version with the merged clock, so
// the concurrent versions it does not hold are superseded wherever it
// lands: for a register only the latest sibling, for a set the answer of
// the replica written last (the members others added concurrently go).
func (r *Replica) repairObject(o *op, m *Object) *Object {
	if r.bug != BugReadRepairDropsSiblings || m == nil {
		return m
	}
	switch m.Kind {
	case KindRegister:
		c := m.clone()
		if lv := c.live(); len(lv) > 1 {
			c.Sibs = []Sibling{lv[0]}
		}
		return c
	case KindSet:
		var best *Object
		var nodes []nodeID
		for n := range o.resps {
			nodes = append(nodes, n)
		}
		sort.Slice(nodes, func(i, j int) bool { return nodes[i] < nodes[j] })
		for _, n := range nodes {
			if x := o.resps[n]; x != nil && x.Kind == KindSet && (best == nil || best.Mod.Less(x.Mod)) {
				best = x
			}
		}
		if best == nil {
			return m
		}
		c := best.clone()
		c.Clock = m.Clock
		c.Mod = m.Mod
		return c
	}
	return m
}

// staleOwners are the owners among the answers whose copy differs from obj.
func (r *Replica) staleOwners(o *op, obj *Object) map[nodeID]bool {
	dg := obj.digest()
	out := map[nodeID]bool{}
	for _, t := range o.targets {
		if t.hintFor != "" {
			continue
		}
		prev, ok := o.resps[t.node]
		if ok && (prev == nil || prev.digest() != dg) {
			out[t.node] = true
		}
	}
	return out
}

func (r *Replica) maybeDone(o *op) {
	if !o.replied {
		return
	}
	if o.phase == 1 {
		for n := range o.sent {
			if !o.acks[n] {
				return
			}
		}
	}
	if o.phase == 2 && len(o.resps) < len(o.targets) && o.repair != RepairOff {
		return // wait for late answers to repair them
	}
	delete(r.ops, o.id)
}
