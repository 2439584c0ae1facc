package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/clients/workload"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/primarybackup"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/sim/faults"
	"github.com/dialkv/dialkv/sim/netmodel"
	"github.com/dialkv/dialkv/sim/simrun"
)

// epoch is virtual time zero on every node's clock (before skew).
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	tickEvery     = 10 * time.Millisecond
	pollEvery     = 50 * time.Millisecond
	maxRedirects  = 5
	checkerBudget = 30 * time.Second
)

type node struct {
	idx     int
	id      consistency.NodeID
	disk    *disk
	rep     consistency.Replica // nil while crashed
	paused  bool
	held    []func() // deliveries queued while paused
	clk     faults.Clock
	rnd     *rand.Rand
	nextReq uint64
	pending map[uint64]*call
	crashes int
	// tickAt is the virtual time of the node's one live tick event; -1
	// when none is scheduled. A tick event at another time is stale (a
	// later input asked for an earlier tick) and does nothing.
	tickAt int64
}

// tickBase is the virtual time of node idx's first tick: ticks are
// staggered (idx·1.37 ms + 333 ns, then every tickEvery) so that nodes
// never tick at the same instant. Every tick of the node falls on this
// grid.
func tickBase(idx int) int64 { return int64(idx)*1_370_000 + 333 }

func (n *node) clock(v int64) time.Time {
	return epoch.Add(n.clk.Offset + time.Duration(float64(v)*(1+n.clk.Drift)))
}

type client struct {
	idx     int
	proc    int // the history's client (process) id; changes after an unknown outcome
	session string
	home    int
	rnd     *rand.Rand
	token   []byte
	cur     *call
	idle    bool
	// reader: a tokenless read-only client (Options.TokenlessReaders),
	// stuck to its home node.
	reader bool
	// targets, when set, are the nodes the client may use (writers when
	// there are tokenless readers: region 0's nodes).
	targets []int
}

type call struct {
	idx       int32 // in runner.calls
	c         *client
	op        workload.Op
	rec       *checker.Op
	node      int
	reqID     uint64
	redirects int
	done      bool
	final     bool
	live      bool
}

// runner is one run's state. Everything happens on one goroutine.
type runner struct {
	meter     meters
	opts      simrun.Options
	userOpts  simrun.Options // as given (Horizon not filled in), for the reproducer
	noCheck   bool
	strat     Strategy
	now       int64
	seq       uint64
	q         queue
	net       *netmodel.Net
	netRand   *rand.Rand
	cliRand   *rand.Rand
	nodes     []*node
	ids       map[consistency.NodeID]int
	clients   []*client
	gen       *workload.Generator
	rec       *checker.Recorder
	plan      faults.Plan
	held      map[[2]int][]consistency.Message
	trace     *bytes.Buffer
	delays    [2]time.Duration // Decide's reused buffer
	fns       fnSlab           // closures of scheduled evFn events
	calls     []*call          // every call, by call.idx
	callChunk []call           // where newCall takes the next call from
	msgs      msgSlab          // messages in flight
	resps     respSlab         // responses in flight

	phase       int // phSafety ... phDone
	issued      int
	liveIssued  int
	finals      []workload.Op
	healAt      int64
	settledAt   int64 // when the replicas first agreed and were settled (before the final reads); -1 before
	recoveredAt int64
	convergedAt int64
	stopped     bool
	problems    []string
	liveness    []string

	events, messages int64
	liveOK, liveAll  int
	corruptReplies   int
	restartFailures  int

	ringc *ringDriver // the ring changes (--ring-change); nil without
}

// nodeIndex is the index of the node named id. Node i is named "n<i+1>",
// so the name is parsed instead of hashed (once per message sent and
// delivered); the map answers anything else.
func (r *runner) nodeIndex(id consistency.NodeID) (int, bool) {
	if len(id) >= 2 && len(id) <= 4 && id[0] == 'n' {
		i := 0
		for _, ch := range []byte(id[1:]) {
			if ch < '0' || ch > '9' {
				i = -1
				break
			}
			i = i*10 + int(ch-'0')
		}
		if i >= 1 && i <= len(r.nodes) && r.nodes[i-1].id == id {
			return i - 1, true
		}
	}
	i, ok := r.ids[id]
	return i, ok
}

// newCall returns a zeroed call from the current chunk (calls are allocated
// 256 at a time; a call lives as long as the run, so chunks never move).
func (r *runner) newCall() *call {
	if len(r.callChunk) == cap(r.callChunk) {
		r.callChunk = make([]call, 0, 256)
	}
	r.callChunk = r.callChunk[:len(r.callChunk)+1]
	return &r.callChunk[len(r.callChunk)-1]
}

func (r *runner) at(d int64, fn func()) {
	r.seq++
	r.q.push(event{at: r.now + d, seq: r.seq, kind: evFn, slot: r.fns.put(fn)})
}

// atEv schedules a typed event d from now.
func (r *runner) atEv(d int64, e event) {
	r.seq++
	e.at, e.seq = r.now+d, r.seq
	r.q.push(e)
}

// run executes one event.
func (r *runner) run(e event) {
	switch e.kind {
	case evFn:
		r.fns.take(e.slot)()
	case evTick:
		r.tick(r.nodes[e.a])
	case evDeliver:
		r.deliver(int(e.a), r.msgs.take(e.slot))
	case evArrive:
		r.arrive(r.calls[e.c], int(e.a))
	case evReply:
		r.reply(r.calls[e.c], r.nodes[e.a], r.resps.take(e.slot))
	case evTimeout:
		r.timeout(r.calls[e.c])
	case evNext:
		r.next(r.clients[e.a])
	}
}

func (r *runner) tracef(who, kind, format string, args ...any) {
	if r.trace == nil {
		return
	}
	b := r.trace
	// Virtual time in seconds with nanosecond digits, e.g. 1.000266728.
	b.WriteString(strconv.FormatInt(r.now/1e9, 10))
	b.WriteByte('.')
	ns := strconv.FormatInt(r.now%1e9, 10)
	b.WriteString("000000000"[len(ns):])
	b.WriteString(ns)
	b.WriteByte(' ')
	b.WriteString(who)
	b.WriteByte(' ')
	b.WriteString(kind)
	b.WriteByte(' ')
	fmt.Fprintf(b, format, args...)
	b.WriteByte('\n')
}

// outcome is a run's full output.
type outcome struct {
	res      simrun.Result
	history  []byte
	trace    []byte
	replicas []checker.ReplicaState
	ops      []checker.Op
	check    *checker.Result
	plan     faults.Plan
}

// runSansIO runs a sans-IO strategy and checks its history.
func runSansIO(opts simrun.Options, strat Strategy, withTrace bool) (*outcome, error) {
	return runSansIOWith(opts, strat, withTrace, false)
}

// runSansIOWith runs a sans-IO strategy; noCheck skips the checkers (for
// benchmarks of the simulator alone).
func runSansIOWith(opts simrun.Options, strat Strategy, withTrace, noCheck bool) (*outcome, error) {
	start := time.Now()
	opts = opts.Normalize()
	userOpts := opts
	gen, err := workload.New(workload.Config{Kind: opts.Workload, Keys: opts.Keys, KeyDist: opts.KeyDist})
	if err != nil {
		return nil, err
	}
	if opts.Nodes < 1 || opts.Clients < 1 || opts.Ops < 1 {
		return nil, fmt.Errorf("sim: --nodes, --clients and --ops must be at least 1")
	}
	if opts.Bug != "" && !hasBug(strat, opts.Bug) {
		return nil, fmt.Errorf("sim: strategy %s has no bug %q (see --list-bugs)", strat.Name, opts.Bug)
	}
	setup, err := faults.Prepare(opts)
	if err != nil {
		return nil, err
	}
	rates, plan := setup.Rates, setup.Plan
	opts.Horizon = setup.Horizon

	r := &runner{opts: opts, userOpts: userOpts, strat: strat, noCheck: noCheck, gen: gen, plan: plan,
		rec:         checker.NewRecorder(nil),
		netRand:     simrun.NewRand(opts.Seed, "net"),
		cliRand:     simrun.NewRand(opts.Seed, "client-links"),
		ids:         map[consistency.NodeID]int{},
		held:        map[[2]int][]consistency.Message{},
		convergedAt: -1,
		settledAt:   -1,
	}
	if withTrace {
		r.trace = &bytes.Buffer{}
	}
	topo := netmodel.Spread(opts.Nodes, opts.Regions, opts.Zones, setup.Latency, setup.CrossRegion)
	if topo.Pairs, err = netmodel.ParsePairs(opts.PairLatency, opts.Regions); err != nil {
		return nil, err
	}
	r.net = netmodel.NewNet(opts.Nodes, topo)
	peers := make([]consistency.NodeID, opts.Nodes)
	for i := range peers {
		peers[i] = consistency.NodeID("n" + strconv.Itoa(i+1))
		r.ids[peers[i]] = i
	}
	if strat.Params != nil {
		params := map[string]string{}
		for k, v := range opts.Params {
			params[k] = v
		}
		strat.Params(params, opts, peers, topo.Region)
		r.opts.Params = params
	}
	if r.ringc, err = parseRingChange(r.opts, strat, peers); err != nil {
		return nil, err
	}
	for i := range peers {
		n := &node{idx: i, id: peers[i], disk: newDisk(), clk: plan.Clocks[i], tickAt: -1,
			rnd: simrun.NewRand(opts.Seed, "node/"+string(peers[i])), pending: map[uint64]*call{}}
		r.nodes = append(r.nodes, n)
	}
	if r.trace != nil {
		r.tracef("sim", "start", "strategy=%s seed=%d nodes=%d clients=%d ops=%d bug=%q", opts.Strategy, opts.Seed, opts.Nodes, opts.Clients, opts.Ops, opts.Bug)
	}
	if r.trace != nil {
		r.tracef("sim", "rates", "%s", rates)
	}
	if r.trace != nil {
		r.tracef("sim", "topology", "%s", topo.Describe(idStrings(peers)))
	}
	for i, c := range plan.Clocks {
		if r.trace != nil {
			r.tracef(string(peers[i]), "clock", "offset=%v drift=%.0fppm", c.Offset, c.Drift*1e6)
		}
	}
	for _, n := range r.nodes {
		if err := r.startNode(n, peers); err != nil {
			return nil, err
		}
	}
	if r.ringc != nil {
		// The change starts at a time drawn from the seed, within the
		// first 20%..60% of the fault plan's horizon.
		at := time.Duration((0.2 + 0.4*simrun.NewRand(opts.Seed, "ring-change-at").Float64()) * float64(opts.Horizon))
		if r.trace != nil {
			r.tracef("sim", "ring", "change %s planned at %v (settle %v)", opts.RingChange, at, r.ringc.settle)
		}
		r.at(int64(at), r.ringBegin)
	}
	// Faults.
	r.net.Drop, r.net.Dup = rates["drop"], rates["dup"]
	if p := rates["delay"]; p > 0 {
		r.net.SpikeP = p
		r.net.Spike, _ = netmodel.ParseDist("mix:0.7*exp:20ms+0.3*pareto:10ms,1.2")
	}
	for _, f := range plan.Faults {
		r.at(int64(f.At), func() { r.startFault(f, peers) })
	}
	// Ticks, staggered so that nodes never tick at the same instant
	// (tickBase): each node's first, unless its replica sleeps
	// (consistency.Sleeper: startNode armed it already).
	for _, n := range r.nodes {
		r.armTick(n, 0)
	}
	// Clients.
	var first, last []int // the nodes of region 0 and of the last region
	maxRegion := slices.Max(topo.Region)
	for i, g := range topo.Region {
		if g == 0 {
			first = append(first, i)
		}
		if g == maxRegion {
			last = append(last, i)
		}
	}
	for i := 0; i < opts.Clients+opts.TokenlessReaders; i++ {
		c := &client{idx: i, proc: i, session: "s" + strconv.Itoa(i), home: i % opts.Nodes,
			rnd: simrun.NewRand(opts.Seed, "client/"+strconv.Itoa(i))}
		if opts.TokenlessReaders > 0 {
			if i < opts.Clients {
				c.targets = first
				c.home = first[i%len(first)]
			} else {
				c.reader = true
				c.home = last[(i-opts.Clients)%len(last)]
			}
		}
		r.clients = append(r.clients, c)
		r.atEv(int64(i)*100_003+1, event{kind: evNext, a: int32(i)})
	}
	// The loop.
	for !r.stopped {
		e, ok := r.q.next()
		if !ok {
			break
		}
		r.now = e.at
		r.events++
		r.run(e)
	}
	if r.phase < phDone && !r.stopped {
		r.liveness = append(r.liveness, "the run ran out of events before it finished")
	}
	return r.finish(start, peers)
}

func idStrings(ids []consistency.NodeID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

func (r *runner) startNode(n *node, peers []consistency.NodeID) error {
	if r.ringc != nil {
		// The ring a restarted node reads from its members.json: the
		// current state, handed over below.
		peers = r.ringc.cur.Members
	}
	cfg := consistency.Config{ID: n.id, Peers: peers, Engine: n.disk, Rand: n.rnd, Params: r.opts.Params, Bug: r.opts.Bug}
	rep, err := r.strat.Factory(cfg)
	if err != nil {
		return fmt.Errorf("sim: start %s: %w", n.id, err)
	}
	n.rep = rep
	r.drain(n)
	if r.ringc != nil {
		r.ringApply(n)
	}
	return nil
}

// tick runs node n's tick event. The node's Tick is called as it always
// was — at every grid point while the node is up and not paused — except
// where the replica says the call is a no-op (consistency.Sleeper), and
// the next tick event is scheduled only for a grid point where a call may
// matter (armTick): a sleeping node costs no events. Histories and traces
// are the same as with a tick event at every grid point.
func (r *runner) tick(n *node) {
	if r.now != n.tickAt {
		return // stale: an earlier tick was armed since
	}
	n.tickAt = -1
	if r.phase == phDone {
		return
	}
	if n.rep != nil && !n.paused {
		now := n.clock(r.now)
		call := true
		if sl, ok := n.rep.(consistency.Sleeper); ok {
			d := sl.NextTick()
			call = !d.IsZero() && !now.Before(d)
		}
		if call {
			n.rep.Tick(now)
			r.drain(n) // arms the next tick
			return
		}
	}
	r.armTick(n, r.now+1)
}

// armTick makes sure node n has a tick event at the first grid point (see
// tickBase) at or after from where its Tick may do anything: any grid point
// for a replica that is not a consistency.Sleeper, the first whose clock
// reading is at or after NextTick for one that is, none when NextTick is
// zero, or the node is down or paused (restart and resume arm it again;
// while down or paused no Tick is called anyway). An armed tick that is
// earlier stays: when it comes, tick asks the replica again.
func (r *runner) armTick(n *node, from int64) {
	if r.phase == phDone || n.rep == nil || n.paused {
		return
	}
	base := tickBase(n.idx)
	k := int64(0)
	if from > base {
		k = (from - base + int64(tickEvery) - 1) / int64(tickEvery)
	}
	if sl, ok := n.rep.(consistency.Sleeper); ok {
		d := sl.NextTick()
		if d.IsZero() {
			return
		}
		k = n.firstTickAt(d, base, k)
	}
	t := base + k*int64(tickEvery)
	if n.tickAt >= 0 && n.tickAt <= t {
		return
	}
	n.tickAt = t
	r.atEv(t-r.now, event{kind: evTick, a: int32(n.idx)})
}

// firstTickAt returns the first k >= k0 whose grid point base+k·tickEvery
// the node's clock reads at or after d. The clock is non-decreasing in
// virtual time, so the estimate from inverting it is corrected by stepping
// with the exact clock function tick uses.
func (n *node) firstTickAt(d time.Time, base, k0 int64) int64 {
	at := func(k int64) time.Time { return n.clock(base + k*int64(tickEvery)) }
	if !at(k0).Before(d) {
		return k0
	}
	// Virtual time v with clock(v) ≈ d.
	v := float64(d.Sub(epoch)-n.clk.Offset) / (1 + n.clk.Drift)
	k := max(k0, int64((v-float64(base))/float64(tickEvery))-1)
	for k > k0 && !at(k-1).Before(d) {
		k--
	}
	for at(k).Before(d) {
		k++
	}
	return k
}

// drain collects a replica's outputs: sync first, then messages and
// responses. A failed sync stops the node (fail-stop on I/O errors).
func (r *runner) drain(n *node) {
	r.meter.take(n.rep)
	rd := n.rep.Ready()
	if rd.Sync {
		if err := n.disk.Sync(); err != nil {
			if r.trace != nil {
				r.tracef(string(n.id), "ioerr", "%v: the node stops; %d messages and %d responses dropped", err, len(rd.Messages), len(rd.Responses))
			}
			r.crash(n, time.Duration(r.plan.Rates["fault-mean-ms"]*float64(time.Millisecond)))
			return
		}
	}
	for _, m := range rd.Messages {
		r.send(n, m)
	}
	for _, resp := range rd.Responses {
		r.respond(n, resp)
	}
	r.armTick(n, r.now+1)
}

func (r *runner) send(n *node, m consistency.Message) {
	to, ok := r.nodeIndex(m.To)
	if !ok {
		if r.trace != nil {
			r.tracef(string(n.id), "drop", "message to unknown node %q", m.To)
		}
		return
	}
	from := n.idx
	fate := r.net.DecideInto(from, to, r.netRand, r.delays[:0])
	switch {
	case fate.Held:
		r.held[[2]int{from, to}] = append(r.held[[2]int{from, to}], m)
		if r.trace != nil {
			r.tracef(string(n.id), "clogged", "->%s %dB held", m.To, len(m.Body))
		}
	case len(fate.Delays) == 0:
		if r.trace != nil {
			r.tracef(string(n.id), "lost", "->%s %dB", m.To, len(m.Body))
		}
	default:
		for i, d := range fate.Delays {
			if i > 0 {
				if r.trace != nil {
					r.tracef(string(n.id), "dup", "->%s %dB", m.To, len(m.Body))
				}
			}
			r.atEv(int64(d), event{kind: evDeliver, a: int32(to), slot: r.msgs.put(m)})
		}
	}
}

func (r *runner) deliver(to int, m consistency.Message) {
	n := r.nodes[to]
	if n.rep == nil {
		if r.trace != nil {
			r.tracef(string(n.id), "lost", "<-%s %dB (node down)", m.From, len(m.Body))
		}
		return
	}
	if n.paused {
		n.held = append(n.held, func() { r.deliver(to, m) })
		return
	}
	if from, _ := r.nodeIndex(m.From); r.net.Blocked(from, to) {
		// Cut while in flight.
		if r.trace != nil {
			r.tracef(string(n.id), "lost", "<-%s %dB (partitioned in flight)", m.From, len(m.Body))
		}
		return
	}
	r.messages++
	if r.trace != nil {
		r.tracef(string(n.id), "recv", "<-%s %dB", m.From, len(m.Body))
	}
	n.rep.Receive(n.clock(r.now), m)
	r.drain(n)
}

func (r *runner) respond(n *node, resp consistency.Response) {
	cl, ok := n.pending[resp.ID]
	if !ok {
		return
	}
	delete(n.pending, resp.ID)
	d := r.net.Topo.Local.Sample(r.cliRand)
	r.atEv(int64(d), event{kind: evReply, a: int32(n.idx), c: cl.idx, slot: r.resps.put(resp)})
}

// next starts a client's next operation, or leaves it idle when its phase
// has none left.
func (r *runner) next(c *client) {
	c.cur = nil
	var op workload.Op
	final, live := false, false
	switch r.phase {
	case phSafety:
		if r.issued >= r.opts.Ops {
			r.idle(c)
			return
		}
		if c.reader {
			reads := r.gen.Final()
			op = reads[c.rnd.IntN(len(reads))]
			break
		}
		r.issued++
		op = r.gen.Next(c.rnd, c.proc)
	case phLive:
		if c.reader || r.liveIssued >= r.opts.LiveOps {
			r.idle(c)
			return
		}
		live = true
		r.liveIssued++
		op = r.gen.Next(c.rnd, c.proc)
	case phFinal:
		if c.reader || len(r.finals) == 0 {
			r.idle(c)
			return
		}
		live, final = true, true
		op, r.finals = r.finals[0], r.finals[1:]
	default:
		r.idle(c)
		return
	}
	c.idle = false
	rec := op.Rec
	rec.Client = c.proc
	rec.Session = c.session
	rec.Invoke = r.now
	if c.token != nil {
		rec.TokenIn = hex.EncodeToString(c.token)
	}
	cl := r.newCall()
	*cl = call{idx: int32(len(r.calls)), c: c, op: op, rec: r.rec.Invoke(rec), final: final, live: live}
	r.calls = append(r.calls, cl)
	c.cur = cl
	target := c.home
	switch {
	case c.reader:
	case c.rnd.IntN(2) != 0:
	case c.targets != nil:
		target = c.targets[c.rnd.IntN(len(c.targets))]
	default:
		target = c.rnd.IntN(len(r.nodes))
	}
	if r.trace != nil {
		r.tracef("c"+strconv.Itoa(c.idx), "invoke", "op=%d %s -> %s", cl.rec.ID, describe(op), r.nodes[target].id)
	}
	r.sendRequest(cl, target)
	r.seq++ // every timeout is the same time from now: the queue's FIFO
	r.q.pushLate(event{at: r.now + int64(r.opts.Timeout), seq: r.seq, kind: evTimeout, c: cl.idx})
}

func describe(op workload.Op) string {
	if op.Cmd != nil {
		return op.Cmd.String()
	}
	var parts []string
	for _, c := range op.Txn.Cmds {
		parts = append(parts, c.String())
	}
	return fmt.Sprintf("TXN[%d conds] %s", len(op.Txn.Conds), strings.Join(parts, "; "))
}

func (r *runner) sendRequest(cl *call, target int) {
	cl.node = target
	d := r.net.Topo.Local.Sample(r.cliRand)
	r.atEv(int64(d), event{kind: evArrive, a: int32(target), c: cl.idx})
}

func (r *runner) arrive(cl *call, target int) {
	if cl.done {
		return
	}
	n := r.nodes[target]
	if n.rep == nil {
		if r.trace != nil {
			r.tracef(string(n.id), "refused", "op=%d (node down)", cl.rec.ID)
		}
		return
	}
	if n.paused {
		n.held = append(n.held, func() { r.arrive(cl, target) })
		return
	}
	n.nextReq++
	cl.reqID = n.nextReq
	n.pending[cl.reqID] = cl
	req := consistency.Request{ID: cl.reqID, Client: cl.c.session, Cmd: cl.op.Cmd, Txn: cl.op.Txn, Token: cl.c.token}
	if r.trace != nil {
		r.tracef(string(n.id), "request", "op=%d req=%d", cl.rec.ID, cl.reqID)
	}
	n.rep.Request(n.clock(r.now), req)
	r.drain(n)
}

func (r *runner) reply(cl *call, n *node, resp consistency.Response) {
	if cl.done || cl.node != n.idx {
		return
	}
	rep := resp.Reply
	if rep.IsError() && rep.Err != nil && rep.Err.Code == primarybackup.CodeMoved && cl.redirects < maxRedirects {
		if to, ok := r.nodeIndex(consistency.NodeID(rep.Err.Msg)); ok {
			cl.redirects++
			if r.trace != nil {
				r.tracef("c"+strconv.Itoa(cl.c.idx), "moved", "op=%d -> %s", cl.rec.ID, rep.Err.Msg)
			}
			r.sendRequest(cl, to)
			return
		}
	}
	cl.done = true
	if resp.Token != nil && !cl.c.reader {
		cl.c.token = resp.Token
		cl.rec.TokenOut = hex.EncodeToString(resp.Token)
	}
	if rep.IsError() && rep.Err != nil && rep.Err.Code == core.CodeCorruption {
		r.corruptReplies++
	}
	cl.rec.Node = string(n.id)
	outcome := workload.Complete(cl.rec, rep)
	if outcome == checker.OK {
		workload.RecordSiblings(cl.rec, resp.Values)
	}
	if outcome == checker.Unknown && cl.op.Read {
		outcome = checker.Fail
	}
	r.finishCall(cl, outcome)
}

func (r *runner) timeout(cl *call) {
	if cl.done {
		return
	}
	cl.done = true
	cl.rec.Node = string(r.nodes[cl.node].id)
	cl.rec.Error = "TIMEOUT no reply within " + r.opts.Timeout.String()
	outcome := checker.Unknown
	if cl.op.Read {
		outcome = checker.Fail // a read that never answered changed nothing
	}
	r.finishCall(cl, outcome)
}

func (r *runner) finishCall(cl *call, outcome checker.Outcome) {
	r.rec.Finish(cl.rec, r.now, outcome)
	r.ringDuring(outcome == checker.OK)
	c := cl.c
	if r.trace != nil {
		r.tracef("c"+strconv.Itoa(c.idx), "complete", "op=%d %s %s", cl.rec.ID, outcome, resultString(cl.rec))
	}
	if cl.live {
		r.liveAll++
		if outcome == checker.OK {
			if r.liveOK == 0 {
				r.recoveredAt = r.now
			}
			r.liveOK++
		}
	}
	if cl.final && outcome != checker.OK {
		if retryable(cl.rec.Error) {
			r.finals = append(r.finals, cl.op) // read it again
		} else {
			r.liveness = append(r.liveness, fmt.Sprintf("final read %s %s failed: %s", cl.rec.F, cl.rec.Key, cl.rec.Error))
		}
	}
	if outcome == checker.Unknown {
		c.proc += len(r.clients)
	}
	think := time.Duration(c.rnd.ExpFloat64() * float64(r.opts.Think))
	r.atEv(int64(think)+1, event{kind: evNext, a: int32(c.idx)})
}

func resultString(op *checker.Op) string {
	switch {
	case op.Error != "":
		return op.Error
	case op.Value != nil:
		return strconv.Quote(*op.Value)
	case op.Values != nil:
		return fmt.Sprintf("%q", op.Values)
	case op.Int != nil:
		return strconv.FormatInt(*op.Int, 10)
	}
	return ""
}

// idle parks a client; when every client is idle the phase ends.
func (r *runner) idle(c *client) {
	c.idle = true
	for _, o := range r.clients {
		if !o.idle {
			return
		}
	}
	switch r.phase {
	case phSafety:
		r.heal()
	case phLive:
		r.phase = phSettle
		if r.trace != nil {
			r.tracef("sim", "phase", "liveness workload done at +%v; waiting for the replicas to agree and settle before the final reads", time.Duration(r.now-r.healAt))
		}
		r.poll()
	case phFinal:
		r.phase = phConverge
		if r.trace != nil {
			r.tracef("sim", "phase", "final reads done at +%v; waiting for convergence", time.Duration(r.now-r.healAt))
		}
		r.poll()
	}
}

// The phases of a run.
const (
	phSafety   = iota // the workload under faults
	phLive            // faults stopped: the liveness workload
	phSettle          // waiting until the replicas agree and are settled (consistency.Settler)
	phFinal           // the final reads
	phConverge        // waiting until the replicas agree after the final reads
	phDone
)

// wake restarts every writer (a new phase has operations for them).
func (r *runner) wake() {
	for _, c := range r.clients {
		c.idle = false
		r.atEv(int64(c.idx)+1, event{kind: evNext, a: int32(c.idx)})
	}
}

// heal ends the safety phase: every fault stops, crashed nodes restart,
// paused ones resume, and the liveness phase starts.
func (r *runner) heal() {
	r.phase = phLive
	r.healAt = r.now
	if r.trace != nil {
		r.tracef("sim", "phase", "safety phase done: %d operations; healing every fault", r.issued)
	}
	r.net.Heal()
	r.net.Drop, r.net.Dup, r.net.SpikeP = 0, 0, 0
	for _, l := range r.net.UnclogAll() {
		r.release(l[0], l[1])
	}
	peers := make([]consistency.NodeID, len(r.nodes))
	for i, n := range r.nodes {
		peers[i] = n.id
	}
	for _, n := range r.nodes {
		n.disk.failNext, n.disk.corruptNext = false, false
		if n.paused {
			r.resume(n)
		}
		if n.rep == nil {
			r.restart(n, peers)
		}
	}
	r.finals = r.gen.Final()
	r.at(int64(r.opts.LivenessBound), func() {
		if r.phase < phDone {
			r.liveness = append(r.liveness, fmt.Sprintf("not done %v after the faults stopped (phase %s, %d/%d final reads left, settled=%v, converged=%v%s)",
				r.opts.LivenessBound, phaseName(r.phase), len(r.finals), len(r.gen.Final()), r.settledAt >= 0, r.convergedAt >= 0, r.unsettledText()+r.ringText()))
			r.phase = phDone
			r.stopped = true
		}
	})
	r.wake()
}

func phaseName(p int) string {
	return [...]string{"safety", "liveness", "settling", "final reads", "converging", "done"}[p]
}

// poll compares the replicas' states until they agree (and, before the
// final reads, until every replica is settled), then moves to the next
// phase.
func (r *runner) poll() {
	if r.phase != phSettle && r.phase != phConverge {
		return
	}
	states, err := r.states()
	if err != nil || !agree(states) || (r.phase == phSettle && (r.unsettled() > 0 || !r.ringDone())) {
		r.at(int64(pollEvery), r.poll)
		return
	}
	if r.phase == phSettle {
		r.settledAt = r.now
		if r.trace != nil {
			r.tracef("sim", "settled", "replicas agree and are settled %v after the faults stopped; final reads", time.Duration(r.now-r.healAt))
		}
		r.phase = phFinal
		r.wake()
		return
	}
	r.convergedAt = r.now
	if r.trace != nil {
		r.tracef("sim", "converged", "replicas agree %v after the faults stopped", time.Duration(r.now-r.healAt))
	}
	r.phase = phDone
	r.stopped = true
}

// unsettled sums what the replicas report as not settled yet
// (consistency.Settler: quorum's hints not yet handed off).
func (r *runner) unsettled() int {
	n := 0
	for _, nd := range r.nodes {
		if s, ok := nd.rep.(consistency.Settler); ok {
			n += s.Unsettled()
		}
	}
	return n
}

func (r *runner) unsettledText() string {
	if n := r.unsettled(); n > 0 {
		return fmt.Sprintf(", %d items unsettled", n)
	}
	return ""
}

// states dumps every replica. A sharded replica (consistency.Placement)
// also lists in Holds the keys it must hold: of every key seen in any dump
// or in the workload's key space, those whose Holders name it.
func (r *runner) states() ([]checker.ReplicaState, error) {
	var out []checker.ReplicaState
	for _, n := range r.nodes {
		if n.rep == nil {
			return out, fmt.Errorf("%s is down", n.id)
		}
		d, err := n.rep.Dump(n.clock(r.now))
		if err != nil {
			return out, fmt.Errorf("dump %s: %w", n.id, err)
		}
		out = append(out, checker.ReplicaState{Node: string(n.id), Data: d})
	}
	keys := map[string]bool{}
	for _, st := range out {
		for k := range st.Data {
			keys[k] = true
		}
	}
	for _, op := range r.gen.Final() {
		keys[op.Rec.Key] = true
	}
	sorted := sortedKeys(keys)
	for i, n := range r.nodes {
		p, ok := n.rep.(consistency.Placement)
		if !ok {
			continue
		}
		holds := []string{}
		for _, k := range sorted {
			if slices.Contains(p.Holders(k), n.id) {
				holds = append(holds, k)
			}
		}
		out[i].Holds = holds
	}
	return out, nil
}

// agree reports whether the replicas' states agree on every key, as the
// checker's convergence check compares them (honouring Holds).
func agree(states []checker.ReplicaState) bool {
	c := checker.Check(nil, states, checker.Options{Checks: []string{checker.CheckConvergence}}).Get(checker.CheckConvergence)
	return c.Verdict == checker.VerdictOK
}

func (r *runner) startFault(f faults.Fault, peers []consistency.NodeID) {
	if r.phase != 0 {
		return
	}
	if r.trace != nil {
		r.tracef("sim", "fault", "%s", f)
	}
	n := r.nodes[f.Node]
	switch f.Kind {
	case faults.Partition:
		id := r.net.AddCut(f.Cut)
		r.at(int64(f.For), func() {
			if r.net.RemoveCut(id) {
				if r.trace != nil {
					r.tracef("sim", "heal", "partition %s", f.Cut.Desc)
				}
			}
		})
	case faults.Clog:
		r.net.SetClog(f.Node, f.To, true)
		r.at(int64(f.For), func() {
			if r.net.Clogged(f.Node, f.To) {
				r.net.SetClog(f.Node, f.To, false)
				r.release(f.Node, f.To)
			}
		})
	case faults.Crash:
		if n.rep != nil {
			r.crash(n, f.For)
		}
	case faults.Pause:
		if n.rep != nil && !n.paused {
			n.paused = true
			r.at(int64(f.For), func() {
				if n.paused {
					r.resume(n)
				}
			})
		}
	case faults.IOErr:
		n.disk.failNext = true
	case faults.Corrupt:
		n.disk.corruptNext = true
	}
}

// release delivers the messages a clogged link held.
func (r *runner) release(from, to int) {
	msgs := r.held[[2]int{from, to}]
	delete(r.held, [2]int{from, to})
	if r.trace != nil {
		r.tracef(string(r.nodes[from].id), "unclog", "->%s %d messages released", r.nodes[to].id, len(msgs))
	}
	for _, m := range msgs {
		d := r.net.Topo.Latency(from, to).Sample(r.netRand)
		r.atEv(int64(d), event{kind: evDeliver, a: int32(to), slot: r.msgs.put(m)})
	}
}

func (r *runner) resume(n *node) {
	n.paused = false
	held := n.held
	n.held = nil
	if r.trace != nil {
		r.tracef(string(n.id), "resume", "%d deliveries queued", len(held))
	}
	for _, fn := range held {
		r.at(0, fn)
	}
	r.armTick(n, r.now+1)
}

// crash stops a node: its replica is dropped, its disk keeps only what was
// synced, and it restarts after down.
func (r *runner) crash(n *node, down time.Duration) {
	if n.rep != nil {
		r.meter.fold(n.rep)
		if rs, ok := n.rep.(ringSetter); ok && r.ringc != nil {
			r.ringc.folded += rs.RingStatus().Moved
		}
	}
	n.rep = nil
	n.paused = false
	n.held = nil
	n.pending = map[uint64]*call{}
	n.crashes++
	n.disk.crash()
	n.disk.failNext, n.disk.corruptNext = false, false
	if r.trace != nil {
		r.tracef(string(n.id), "crash", "unsynced writes lost; restart in %v", down)
	}
	peers := make([]consistency.NodeID, len(r.nodes))
	for i, m := range r.nodes {
		peers[i] = m.id
	}
	inc := n.crashes
	r.at(int64(down), func() {
		if n.rep == nil && n.crashes == inc {
			r.restart(n, peers)
		}
	})
}

// restartRetry is how long a node whose store refused to open on a
// corrupted read stays down before it is started again.
const restartRetry = 100 * time.Millisecond

func (r *runner) restart(n *node, peers []consistency.NodeID) {
	if err := r.startNode(n, peers); err != nil {
		r.restartFailures++
		if r.trace != nil {
			r.tracef(string(n.id), "restart-failed", "%v", err)
		}
		if errors.Is(err, core.ErrCorruption) {
			// An injected corruption is a one-shot misread (disk.corrupt),
			// and the store's checksum turned it into a typed error at
			// open (the version counter, since session 6): the node stays
			// down and is started again after restartRetry, as a
			// supervisor would; the second read is sound unless another
			// fault fires. Not a problem: refusing to open is the right
			// answer to a bad read.
			inc := n.crashes
			r.at(int64(restartRetry), func() {
				if n.rep == nil && n.crashes == inc {
					r.restart(n, peers)
				}
			})
			return
		}
		r.problems = append(r.problems, fmt.Sprintf("restart of %s failed: %v", n.id, err))
		return
	}
	if r.trace != nil {
		r.tracef(string(n.id), "restart", "from its synced disk")
	}
}

// finish dumps the replicas, runs the checkers and fills the result.
func (r *runner) finish(start time.Time, peers []consistency.NodeID) (*outcome, error) {
	o := &outcome{plan: r.plan}
	states, err := r.states()
	if err != nil {
		r.liveness = append(r.liveness, "at the end of the run: "+err.Error())
	}
	o.replicas = states
	o.ops = r.rec.Ops()
	o.history = checker.AppendHistory(make([]byte, 0, len(o.ops)*160), o.ops)
	copts := checker.DefaultOptions()
	copts.Checks = checksFor(r.strat, r.opts)
	copts.Timeout = checkerBudget
	if r.opts.Out == "" {
		copts.Visualize = 0
	}
	var cres checker.Result
	if r.noCheck {
		cres.Verdict = checker.VerdictSkipped
	} else {
		cres = checker.Check(o.ops, o.replicas, copts)
	}
	o.check = &cres
	simReal := time.Since(start)
	res := simrun.Result{Options: r.userOpts, Events: r.events, Messages: r.messages,
		Virtual: time.Duration(r.now), Converged: -1, Rates: r.plan.Rates, Horizon: r.opts.Horizon}
	if r.convergedAt >= 0 {
		res.Converged = time.Duration(r.convergedAt - r.healAt)
	}
	res.Settled = -1
	if r.settledAt >= 0 {
		res.Settled = time.Duration(r.settledAt - r.healAt)
	}
	res.Recovered = -1
	if r.liveOK > 0 {
		res.Recovered = time.Duration(r.recoveredAt - r.healAt)
	}
	for _, n := range r.nodes {
		res.IOErrors += n.disk.ioErrors
		res.Corruptions += n.disk.corruptions
	}
	res.CorruptReplies = r.corruptReplies
	if r.ringc != nil {
		res.RingChanges = r.ringc.results
	}
	for _, n := range r.nodes {
		if n.rep != nil {
			r.meter.fold(n.rep)
		}
	}
	res.Counters, res.Samples = r.meter.counters, r.meter.samples
	for _, f := range r.plan.Faults {
		res.FaultPlan = append(res.FaultPlan, f.String())
	}
	res.Ops = len(o.ops)
	res.OK, res.Failed, res.Unknown = checker.Outcomes(o.ops)
	// A replica state that differs is a safety violation only if the
	// cluster had the time to converge: when the liveness phase did not
	// finish, the convergence check's complaint is a liveness failure.
	unfinished := len(r.liveness) > 0
	var livenessChecks []string
	for _, c := range cres.Checks {
		if c.Verdict != checker.VerdictViolation {
			continue
		}
		line := fmt.Sprintf("%s: %s", c.Name, c.Summary)
		if unfinished && c.Name == checker.CheckConvergence {
			livenessChecks = append(livenessChecks, line)
			continue
		}
		r.problems = append(r.problems, line)
	}
	switch {
	case len(r.problems) > 0:
		res.Verdict = simrun.Safety
		res.Problems = append(append(r.problems, r.liveness...), livenessChecks...)
	case unfinished:
		res.Verdict = simrun.Liveness
		res.Problems = append(r.liveness, livenessChecks...)
	default:
		res.Verdict = simrun.Pass
	}
	if r.trace != nil {
		r.tracef("sim", "end", "verdict=%s ops=%d ok=%d fail=%d unknown=%d", res.Verdict, res.Ops, res.OK, res.Failed, res.Unknown)
		o.trace = r.trace.Bytes()
		res.TraceHash = sha(o.trace)
	}
	res.HistoryHash = sha(o.history)
	res.Real = time.Since(start)
	if r.noCheck {
		res.Real = simReal
	}
	o.res = res
	return o, nil
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// retryable reports whether an error means "try again": a timeout, an
// unavailable or redirected replica, or a disk fault.
func retryable(errText string) bool {
	code, _, _ := strings.Cut(errText, " ")
	switch core.Code(code) {
	case consistency.CodeTimeout, consistency.CodeUnavailable, primarybackup.CodeMoved, core.CodeCorruption, core.CodeIO:
		return true
	}
	return false
}

// checksFor is the checks a run must pass: the strategy's, plus
// linearizability for quorum registers in ABD mode (`--params
// mode=linearizable --workload register`), which promises it. Other
// workloads in that mode are left to the strategy's checks: ABD covers
// reads and writes of whole values, not set or counter updates.
func checksFor(strat Strategy, opts simrun.Options) []string {
	if strat.Name == "quorum" && opts.Params["mode"] == "linearizable" && opts.Workload == "register" &&
		!slices.Contains(strat.Checks, checker.CheckLinearizable) {
		return append(slices.Clone(strat.Checks), checker.CheckLinearizable)
	}
	return strat.Checks
}
