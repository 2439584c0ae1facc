package raftsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"
	"github.com/lni/dragonboat/v4/logger"
	"github.com/lni/dragonboat/v4/raftio"
	"github.com/lni/vfs"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/clients/workload"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/sim/faults"
	"github.com/dialkv/dialkv/sim/netmodel"
	"github.com/dialkv/dialkv/sim/simrun"
)

// Outcome is everything one run produced.
type Outcome struct {
	Result   simrun.Result
	History  []byte // history.jsonl
	Trace    []byte // the trace: fault, phase and delivered-message lines, sorted
	Ops      []checker.Op
	Replicas []checker.ReplicaState
	Check    *checker.Result
	Plan     faults.Plan
	// Failovers are the measured failover times: from the crash of the
	// leader of shard 0 until another node, believing itself leader,
	// served a linearizable read.
	Failovers []time.Duration
}

// Checks are the checks a raft run must pass.
var Checks = []string{checker.CheckLinearizable, checker.CheckSession, checker.CheckConvergence, checker.CheckDurability}

const (
	stagger       = 33_333_337 * time.Nanosecond // NodeHost start spacing: distinct tick phases
	clientGap     = 1234 * time.Nanosecond       // before every client operation
	pollEvery     = 10 * time.Millisecond
	checkerBudget = 30 * time.Second
	maxRedirects  = 3
)

// params are the raft strategy's simulation parameters
// (simrun.Options.Params): shards, replicas, rtt, election-rtt,
// snapshot-entries, redirect (true/false), read (linearizable/stale),
// target (planned: crashes and pauses hit the planned node; leader: they
// hit the node leading shard 0 at that moment, Jepsen-style), storage
// (memory, or pebble: the on-disk state machine on a crashable MemFS),
// pause (freeze: a paused node's disk blocks, which stops its Raft
// processing; network: only its
// messages and client requests are held), dup-propose (true, the default:
// Propose messages are duplicated like the others, the state machine
// deduplicates proposals; false: never duplicated), drop-propose (a
// fraction of forwarded Propose messages lost, default 0), repropose (how
// long a write waits for its result before the Service proposes it again:
// a duration, or off; default two election timeouts).
type params struct {
	shards, replicas int
	rtt              time.Duration
	electionRTT      uint64
	snapshotEntries  uint64
	redirect         bool
	dupPropose       bool
	dropPropose      float64
	repropose        time.Duration // raft.Config.ReproposeAfter
	read             string
	leaderFaults     bool   // crashes and pauses hit the leader of shard 0
	storage          string // memory or pebble
	logdb            string // raft.Config.LogDB: pebble, pebble-sync or tan
	freeze           bool   // pauses freeze the node's disk (and so its Raft processing)
}

// ParamNames lists the parameters Options.Params accepts for raft.
func ParamNames() []string {
	return []string{"shards", "replicas", "rtt", "election-rtt", "snapshot-entries", "redirect", "read", "target", "storage", "pause", "dup-propose", "drop-propose", "repropose", "logdb"}
}

func parseParams(m map[string]string, nodes int) (params, error) {
	p := params{shards: 1, replicas: min(3, nodes), rtt: 10 * time.Millisecond, electionRTT: 10,
		snapshotEntries: 200, redirect: true, dupPropose: true, read: "linearizable", storage: "memory", freeze: true}
	for k, v := range m {
		var err error
		var n uint64
		switch k {
		case "shards", "replicas", "election-rtt", "snapshot-entries":
			n, err = strconv.ParseUint(v, 10, 32)
			if err == nil && n == 0 {
				err = errors.New("must be at least 1")
			}
			switch k {
			case "shards":
				p.shards = int(n)
			case "replicas":
				p.replicas = int(n)
			case "election-rtt":
				p.electionRTT = n
			case "snapshot-entries":
				p.snapshotEntries = n
			}
		case "rtt":
			p.rtt, err = time.ParseDuration(v)
			if err == nil && p.rtt < time.Millisecond {
				err = errors.New("must be at least 1ms")
			}
		case "redirect":
			p.redirect, err = strconv.ParseBool(v)
		case "dup-propose":
			p.dupPropose, err = strconv.ParseBool(v)
		case "drop-propose":
			p.dropPropose, err = strconv.ParseFloat(v, 64)
			if err == nil && (p.dropPropose < 0 || p.dropPropose > 1) {
				err = errors.New("want a fraction from 0 to 1")
			}
		case "repropose":
			if v == "off" {
				p.repropose = -1
				break
			}
			p.repropose, err = time.ParseDuration(v)
			if err == nil && p.repropose <= 0 {
				err = errors.New("want a positive duration or off")
			}
		case "pause":
			switch v {
			case "freeze":
				p.freeze = true
			case "network":
				p.freeze = false
			default:
				err = errors.New("want freeze or network")
			}
		case "logdb":
			if v != raft.LogDBPebble && v != raft.LogDBPebbleSync && v != raft.LogDBTan {
				err = fmt.Errorf("want %s, %s or %s", raft.LogDBPebble, raft.LogDBPebbleSync, raft.LogDBTan)
			}
			p.logdb = v
		case "storage":
			if v != "memory" && v != "pebble" {
				err = errors.New("want memory or pebble")
			}
			p.storage = v
		case "target":
			switch v {
			case "planned":
			case "leader":
				p.leaderFaults = true
			default:
				err = errors.New("want planned or leader")
			}
		case "read":
			if v != "linearizable" && v != "stale" && v != "lease" {
				err = errors.New("want linearizable, lease or stale")
			}
			p.read = v
		default:
			err = fmt.Errorf("unknown parameter (known: %s)", strings.Join(ParamNames(), ", "))
		}
		if err != nil {
			return p, fmt.Errorf("raftsim: parameter %s=%q: %w", k, v, err)
		}
	}
	if p.replicas > nodes {
		return p, fmt.Errorf("raftsim: parameter replicas=%d exceeds --nodes %d", p.replicas, nodes)
	}
	return p, nil
}

type simNode struct {
	idx   int
	name  string
	cfg   raft.Config
	fs    *vfs.MemFS
	pfs   *pebblevfs.MemFS // the Pebble state machines' disk (storage=pebble)
	disk  *diskFaults
	clock faults.Clock

	// life is held (a token in the channel) while the node crashes or
	// restarts. A channel, not a mutex: blocking on a channel is durable
	// in a synctest bubble, on a mutex it is not, and a restart may sleep
	// on a paused disk.
	life    chan struct{}
	mu      sync.Mutex // guards svc, crashes
	svc     *raft.Service
	crashes int
}

func (n *simNode) service() *raft.Service {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.svc
}

type client struct {
	idx     int
	proc    int // process id in the history; a new one after an unknown outcome
	session string
	home    int
	rnd     *rand.Rand
	gen     *workload.Generator
}

type run struct {
	opts     simrun.Options
	userOpts simrun.Options
	p        params
	plan     faults.Plan
	net      *Network
	topo     netmodel.Topology
	nodes    []*simNode
	rec      *checker.Recorder
	t0       time.Time
	logf     func(string, ...any)

	bg sync.WaitGroup // fault timers and failover probes

	mu         sync.Mutex
	phase      int // 0 safety, 1 liveness, 2 done
	issued     int
	liveLeft   int
	finals     []workload.Op
	trace      []string
	problems   []string
	liveness   []string
	failovers  []time.Duration
	finalBad   []string
	crashCount int
}

func (r *run) now() int64 { return time.Since(r.t0).Nanoseconds() }

func (r *run) tracef(who, kind, format string, args ...any) {
	line := fmt.Sprintf("%015d %s %s %s", r.now(), who, kind, fmt.Sprintf(format, args...))
	r.mu.Lock()
	r.trace = append(r.trace, line)
	r.mu.Unlock()
	if r.logf != nil {
		r.logf("%s", line)
	}
}

func (r *run) getPhase() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

// leaderTracer traces every leader change a node sees.
type leaderTracer struct {
	r    *run
	node string
}

func (l leaderTracer) LeaderUpdated(info raftio.LeaderInfo) {
	l.r.tracef(l.node, "leader", "shard %d: leader r%d term %d", info.ShardID, info.LeaderID, info.Term)
}

// QuietLogs turns Dragonboat's and Pebble's loggers down to errors.
func QuietLogs() {
	raft.QuietLogs(logger.CRITICAL)
}

// simulate runs one simulation. It must run inside a synctest bubble (see
// RunT and Run): every NodeHost, timer and client lives in the bubble.
func simulate(opts simrun.Options, logf func(string, ...any)) (*Outcome, error) {
	opts = opts.Normalize()
	userOpts := opts
	if opts.Strategy != "raft" {
		return nil, fmt.Errorf("raftsim: strategy %q is not raft", opts.Strategy)
	}
	if opts.Nodes < 1 || opts.Clients < 1 || opts.Ops < 1 {
		return nil, errors.New("raftsim: --nodes, --clients and --ops must be at least 1")
	}
	if opts.Bug != "" && !slices.ContainsFunc(raft.Bugs(), func(b consistency.Bug) bool { return b.Name == opts.Bug }) {
		return nil, fmt.Errorf("raftsim: strategy raft has no bug %q (see --list-bugs)", opts.Bug)
	}
	p, err := parseParams(opts.Params, opts.Nodes)
	if err != nil {
		return nil, err
	}
	setup, err := faults.Prepare(opts)
	if err != nil {
		return nil, err
	}
	rates, plan := setup.Rates, setup.Plan
	opts.Horizon = setup.Horizon

	r := &run{opts: opts, userOpts: userOpts, p: p, plan: plan, rec: checker.NewRecorder(nil), logf: logf, t0: time.Now()}
	names := make([]string, opts.Nodes)
	nodes := make([]raft.Node, opts.Nodes)
	for i := range names {
		names[i] = "n" + strconv.Itoa(i+1)
		nodes[i] = raft.Node{ID: consistency.NodeID(names[i]), RaftAddr: names[i], ClientAddr: names[i]}
	}
	topo := netmodel.Spread(opts.Nodes, opts.Regions, 1, setup.Latency, setup.CrossRegion)
	links := netmodel.NewNet(opts.Nodes, topo)
	r.topo = topo
	r.net = NewNetwork(simrun.DeriveSeed(opts.Seed, "net"), names, links)
	r.net.DupPropose = p.dupPropose
	r.net.DropPropose = p.dropPropose
	r.net.t0 = r.t0
	seedElectionRand(int64(simrun.DeriveSeed(opts.Seed, "election")))

	r.tracef("sim", "start", "strategy=raft seed=%d nodes=%d shards=%d replicas=%d clients=%d ops=%d bug=%q read=%s",
		opts.Seed, opts.Nodes, p.shards, p.replicas, opts.Clients, opts.Ops, opts.Bug, p.read)
	r.tracef("sim", "rates", "%s", rates)
	r.tracef("sim", "topology", "%s", topo.Describe(names))
	for i, c := range plan.Clocks {
		r.tracef(names[i], "clock", "offset=%v drift=%.0fppm", c.Offset, c.Drift*1e6)
	}
	for i := range names {
		if i > 0 {
			time.Sleep(stagger)
		}
		n := &simNode{idx: i, name: names[i], fs: vfs.NewStrictMem(), disk: &diskFaults{}, clock: plan.Clocks[i],
			life: make(chan struct{}, 1)}
		t0, clk := r.t0, n.clock
		n.cfg = raft.Config{
			NodeID: nodes[i].ID, Nodes: nodes, Shards: p.shards, Replicas: p.replicas,
			Dir: "/" + names[i], NodeHostID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i+1),
			RTT: p.rtt, ElectionRTT: p.electionRTT, HeartbeatRTT: 1,
			SnapshotEntries: p.snapshotEntries, CompactionOverhead: p.snapshotEntries / 4,
			TransportFactory: r.net.Factory(), FS: vfs.Wrap(disk{n.fs}, n.disk),
			LogDBShards: 1, LogDB: p.logdb, SmallEngine: true, RedirectToLeader: p.redirect, Bug: opts.Bug,
			BeforeSave:     n.disk.wait,
			ReproposeAfter: p.repropose,
			TxnStagger:     time.Nanosecond, // a transaction's proposals enter in shard order
			RaftEvents:     leaderTracer{r: r, node: names[i]},
			Clock: func() time.Time {
				now := time.Now()
				return now.Add(clk.Offset + time.Duration(clk.Drift*float64(now.Sub(t0))))
			},
		}
		if p.storage == "pebble" {
			n.pfs = pebblevfs.NewCrashableMem()
			n.cfg.Storage, n.cfg.PebbleFS = "pebble", n.pfs
		}
		r.nodes = append(r.nodes, n)
		svc, err := raft.New(n.cfg)
		if err != nil {
			r.closeAll()
			return nil, fmt.Errorf("raftsim: start %s: %w", names[i], err)
		}
		n.svc = svc
		r.startTxnRecovery(svc)
	}
	defer r.closeAll()
	if err := r.waitLeaders(10 * time.Second); err != nil {
		r.liveness = append(r.liveness, "initial election: "+err.Error())
		return r.finish()
	}
	r.tracef("sim", "phase", "leaders elected; safety phase starts")

	// Faults.
	r.net.Links(func(nt *netmodel.Net) {
		nt.Drop, nt.Dup = rates["drop"], rates["dup"]
		if sp := rates["delay"]; sp > 0 {
			nt.SpikeP = sp
			nt.Spike, _ = netmodel.ParseDist("mix:0.7*exp:20ms+0.3*pareto:10ms,1.2")
		}
	})
	stopNemesis := make(chan struct{})
	nemesisDone := make(chan struct{})
	safetyStart := time.Now()
	go r.nemesis(safetyStart, stopNemesis, nemesisDone)

	// Safety phase.
	clients := make([]*client, opts.Clients)
	for i := range clients {
		gen, err := workload.New(workload.Config{Kind: opts.Workload, Keys: opts.Keys, KeyDist: opts.KeyDist})
		if err != nil {
			return nil, err
		}
		clients[i] = &client{idx: i, proc: i, session: "s" + strconv.Itoa(i), home: i % opts.Nodes,
			rnd: simrun.NewRand(opts.Seed, "client/"+strconv.Itoa(i)), gen: gen}
	}
	r.runClients(clients, time.Duration(1<<62))
	close(stopNemesis)
	<-nemesisDone

	// Liveness phase: heal everything, then the cluster must serve and
	// converge within the bound.
	r.heal()
	healAt := time.Now()
	deadline := healAt.Add(opts.LivenessBound)
	r.mu.Lock()
	r.phase = 1
	r.liveLeft = opts.LiveOps
	r.finals = clients[0].gen.Final()
	r.mu.Unlock()
	r.runClients(clients, opts.LivenessBound)
	r.mu.Lock()
	left := len(r.finals) + r.liveLeft
	bad := r.finalBad
	r.mu.Unlock()
	if left > 0 {
		r.liveness = append(r.liveness, fmt.Sprintf("not done %v after the faults stopped (%d operations left)", opts.LivenessBound, left))
	}
	for _, b := range bad {
		r.liveness = append(r.liveness, "final read "+b)
	}
	converged := time.Duration(-1)
	for time.Now().Before(deadline) {
		if r.agree() {
			converged = time.Since(healAt)
			r.tracef("sim", "converged", "replicas agree %v after the faults stopped", converged)
			break
		}
		time.Sleep(pollEvery)
	}
	if converged < 0 {
		r.liveness = append(r.liveness, fmt.Sprintf("replicas did not converge within %v after the faults stopped", opts.LivenessBound))
	}
	r.mu.Lock()
	r.phase = 2
	r.mu.Unlock()
	r.bg.Wait()
	out, err := r.finish()
	if out != nil {
		out.Result.Converged = converged
	}
	return out, err
}

// waitLeaders waits until every shard has a leader that some replica
// knows.
func (r *run) waitLeaders(bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for sh := 0; sh < r.p.shards; sh++ {
		for {
			if _, ok := r.leader(sh); ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("shard %d has no leader after %v", sh, bound)
			}
			time.Sleep(r.p.rtt)
		}
	}
	return nil
}

// leader returns the index of a node that believes it leads shard sh.
func (r *run) leader(sh int) (int, bool) {
	for i, n := range r.nodes {
		svc := n.service()
		if svc == nil || !svc.Hosts(sh) {
			continue
		}
		if id, ok := svc.Leader(sh); ok && string(id) == n.name {
			return i, true
		}
	}
	return -1, false
}

func (r *run) closeAll() {
	for _, n := range r.nodes {
		n.life <- struct{}{}
		n.mu.Lock()
		svc := n.svc
		n.svc = nil
		n.mu.Unlock()
		if svc != nil {
			if err := svc.Close(); err != nil {
				r.tracef(n.name, "close", "%v", err)
			}
		}
		<-n.life
	}
}

// runClients runs every client until its phase has no operations left or
// bound passes.
func (r *run) runClients(clients []*client, bound time.Duration) {
	deadline := time.Now().Add(bound)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(c.idx)*100_003 + 1)
			for time.Now().Before(deadline) {
				op, final, ok := r.nextOp(c)
				if !ok {
					return
				}
				r.exec(c, op, final)
				think := time.Duration(c.rnd.ExpFloat64() * float64(r.opts.Think))
				time.Sleep(clientGap + think)
			}
		}()
	}
	wg.Wait()
}

func (r *run) nextOp(c *client) (workload.Op, bool, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.phase {
	case 0:
		if r.issued >= r.opts.Ops {
			return workload.Op{}, false, false
		}
		r.issued++
		return c.gen.Next(c.rnd, c.proc), false, true
	case 1:
		if r.liveLeft > 0 {
			r.liveLeft--
			return c.gen.Next(c.rnd, c.proc), false, true
		}
		if len(r.finals) > 0 {
			op := r.finals[0]
			r.finals = r.finals[1:]
			return op, true, true
		}
	}
	return workload.Op{}, false, false
}

// exec runs one operation against the cluster and records it.
func (r *run) exec(c *client, op workload.Op, final bool) {
	rec := op.Rec
	rec.Client = c.proc
	rec.Session = c.session
	rec.Invoke = r.now()
	opts := consistency.Options{}
	if op.Read {
		opts.Read = r.p.read
		rec.Options = map[string]string{"read": r.p.read}
	}
	p := r.rec.Invoke(rec)
	target := c.home
	if c.rnd.IntN(2) == 0 {
		target = c.rnd.IntN(len(r.nodes))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	outcome := checker.Unknown
	for hops := 0; ; hops++ {
		n := r.nodes[target]
		p.Node = n.name
		r.clientHop(c, target, ctx) // the request travels to the node
		if u := r.net.PausedUntil(target); !u.IsZero() {
			// A paused process serves the requests it queued as soon as it
			// resumes, one client after another (clientGap apart, after the
			// instant has settled), if the client still waits.
			select {
			case <-time.After(time.Until(u) + time.Duration(1+c.idx)*clientGap):
			case <-ctx.Done():
			}
		}
		svc := n.service()
		if svc == nil || ctx.Err() != nil {
			outcome = checker.Fail
			p.Error = "UNAVAILABLE node down or request not sent"
			if ctx.Err() != nil {
				p.Error = "UNAVAILABLE timed out before the request was sent"
			}
			break
		}
		resp, err := svc.Do(ctx, consistency.Request{ID: uint64(p.ID), Client: c.session, Cmd: op.Cmd, Txn: op.Txn, Opts: opts})
		r.clientHop(c, target, ctx) // the reply travels back
		var rd *consistency.Redirect
		switch {
		case err == nil:
			outcome = workload.Complete(p, resp.Reply)
		case errors.As(err, &rd) && hops < maxRedirects:
			if i := slices.IndexFunc(r.nodes, func(m *simNode) bool { return m.name == rd.Addr }); i >= 0 {
				target = i
				c.home = i
				continue
			}
			outcome = checker.Fail
			p.Error = "REDIRECT " + err.Error()
		case errors.Is(err, consistency.ErrUnavailable), errors.As(err, &rd):
			outcome = checker.Fail
			p.Error = "UNAVAILABLE " + err.Error()
		case op.Read:
			outcome = checker.Fail
			p.Error = "ERR " + err.Error()
		default:
			outcome = checker.Unknown
			p.Error = "TIMEOUT " + err.Error()
		}
		break
	}
	r.rec.Finish(p, r.now(), outcome)
	if outcome == checker.Unknown {
		c.proc += r.opts.Clients // the old process may still have its operation in flight
	}
	if outcome != checker.OK {
		c.home = (c.home + 1) % len(r.nodes)
		if final {
			r.mu.Lock()
			r.finalBad = append(r.finalBad, fmt.Sprintf("%s %s: %s %s", op.Rec.F, op.Rec.Key, outcome, p.Error))
			r.mu.Unlock()
		}
	}
}

// after runs fn after d on a timer the run waits for before it ends.
func (r *run) after(d time.Duration, fn func()) {
	r.bg.Add(1)
	time.AfterFunc(d, func() {
		defer r.bg.Done()
		fn()
	})
}

// clientHop sleeps one client-node network latency (the node's local
// latency distribution, sampled from the client's own generator).
func (r *run) clientHop(c *client, node int, ctx context.Context) {
	d := r.topo.Latency(node, node).Sample(c.rnd)
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// nemesis runs the fault plan of the safety phase.
func (r *run) nemesis(start time.Time, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for i, f := range r.plan.Faults {
		select {
		case <-stop:
			return
		case <-time.After(time.Until(start.Add(f.At))):
		}
		r.tracef("sim", "fault", "#%d %s", i, f)
		r.startFault(f)
	}
}

func (r *run) startFault(f faults.Fault) {
	if r.p.leaderFaults && (f.Kind == faults.Pause || f.Kind == faults.Crash) {
		if l, ok := r.leader(0); ok {
			f.Node = l
			r.tracef("sim", "target", "%s hits the leader n%d", f.Kind, l+1)
		}
	}
	switch f.Kind {
	case faults.Partition:
		var id int
		r.net.Links(func(nt *netmodel.Net) { id = nt.AddCut(f.Cut) })
		r.after(f.For, func() {
			if r.getPhase() == 0 {
				r.net.Links(func(nt *netmodel.Net) { nt.RemoveCut(id) })
				r.tracef("sim", "heal", "partition %s", f.Cut.Desc)
			}
		})
	case faults.Clog:
		r.net.Links(func(nt *netmodel.Net) { nt.SetClog(f.Node, f.To, true) })
		r.after(f.For, func() {
			if r.getPhase() == 0 {
				r.net.Links(func(nt *netmodel.Net) { nt.SetClog(f.Node, f.To, false) })
				r.tracef("sim", "unclog", "n%d->n%d", f.Node+1, f.To+1)
			}
		})
	case faults.Pause:
		r.net.Pause(f.Node, f.For)
		if r.p.freeze {
			r.nodes[f.Node].disk.pause(time.Now().Add(f.For))
		}
	case faults.Crash:
		r.crash(f.Node, f.For)
	case faults.IOErr:
		// Dragonboat stops at a disk error: the node's disk fails for a
		// moment, then the node crashes and restarts from its synced state.
		n := r.nodes[f.Node]
		n.disk.set(true)
		r.after(20*time.Millisecond, func() {
			if r.getPhase() == 0 {
				r.crash(f.Node, 100*time.Millisecond)
			}
		})
	case faults.Corrupt:
		r.tracef("sim", "skip", "corrupt is not modelled for raft (Dragonboat's LogDB checks its own records)")
	}
}

// crash cuts node i's power: its unsynced writes are lost, and it restarts
// from its disk after down (unless the liveness phase restarts it first).
func (r *run) crash(i int, down time.Duration) {
	n := r.nodes[i]
	n.life <- struct{}{}
	defer func() { <-n.life }()
	n.mu.Lock()
	svc := n.svc
	n.svc = nil
	n.crashes++
	inc := n.crashes
	n.mu.Unlock()
	if svc == nil {
		return
	}
	// A dead process is not paused any more.
	n.disk.pause(time.Time{})
	r.net.Pause(i, 0)
	wasLeader := false
	if id, ok := svc.Leader(0); ok && string(id) == n.name {
		wasLeader = true
	}
	at := time.Now()
	n.fs.SetIgnoreSyncs(true)
	var synced *pebblevfs.MemFS
	if n.pfs != nil {
		synced = n.pfs.CrashClone(pebblevfs.CrashCloneCfg{}) // what Pebble had synced
	}
	if err := svc.Close(); err != nil {
		r.tracef(n.name, "crash", "close: %v", err)
	}
	n.fs.ResetToSyncedState()
	n.fs.SetIgnoreSyncs(false)
	if synced != nil {
		n.pfs = synced
		n.cfg.PebbleFS = synced
	}
	n.disk.set(false)
	r.tracef(n.name, "crash", "unsynced writes lost; restart in %v (leader of shard 0: %v)", down, wasLeader)
	othersUp := true
	for j, m := range r.nodes {
		if j != i && m.service() == nil {
			othersUp = false
		}
	}
	r.mu.Lock()
	r.crashCount++
	r.mu.Unlock()
	if wasLeader && othersUp { // a failover of one crash, not of a lost quorum
		r.bg.Add(1)
		go func() {
			defer r.bg.Done()
			r.measureFailover(i, at)
		}()
	}
	r.after(down, func() {
		n.mu.Lock()
		again := n.svc == nil && n.crashes == inc
		n.mu.Unlock()
		if again && r.getPhase() == 0 {
			r.restart(i)
		}
	})
}

func (r *run) restart(i int) {
	n := r.nodes[i]
	n.life <- struct{}{}
	defer func() { <-n.life }()
	if n.service() != nil {
		return
	}
	svc, err := raft.New(n.cfg)
	if err != nil {
		r.tracef(n.name, "restart-failed", "%v", err)
		r.mu.Lock()
		r.problems = append(r.problems, fmt.Sprintf("restart of %s failed: %v", n.name, err))
		r.mu.Unlock()
		return
	}
	n.mu.Lock()
	n.svc = svc
	n.mu.Unlock()
	r.startTxnRecovery(svc)
	r.tracef(n.name, "restart", "from its synced disk")
}

// startTxnRecovery runs the Service's background resolution of stale
// cross-shard transactions and collection of their decision records
// (raft.Service.RecoverTxnsEvery, as real nodes do) in runs of the bank
// workload, the one whose transactions span shards. It ends at the first
// tick after the Service closes.
func (r *run) startTxnRecovery(svc *raft.Service) {
	if r.opts.Workload == "bank" {
		go svc.RecoverTxnsEvery(0)
	}
}

// measureFailover polls, every millisecond, for another node that
// believes it leads shard 0 and serves a linearizable read. It measures
// the failover of one crash: it starts only if every other node is up and
// gives up if another node crashes meanwhile.
func (r *run) measureFailover(crashed int, at time.Time) {
	deadline := at.Add(10 * time.Second)
	key := "failover-probe"
	if r.p.shards > 1 {
		for i := 0; core.ShardOf([]byte(key), r.p.shards) != 0; i++ {
			key = "failover-probe-" + strconv.Itoa(i)
		}
	}
	cmd := core.Cmd("GET", key)
	r.mu.Lock()
	crashes := r.crashCount
	r.mu.Unlock()
	for time.Now().Before(deadline) && r.getPhase() < 2 {
		r.mu.Lock()
		again := r.crashCount != crashes
		r.mu.Unlock()
		if again { // another crash: this is no longer one failover
			r.tracef("sim", "failover", "measurement abandoned: another node crashed")
			return
		}
		for i, n := range r.nodes {
			svc := n.service()
			if i == crashed || svc == nil {
				continue
			}
			if id, ok := svc.Leader(0); !ok || string(id) != n.name {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			_, err := svc.Do(ctx, consistency.Request{Cmd: &cmd})
			cancel()
			if err == nil {
				d := time.Since(at)
				r.mu.Lock()
				r.failovers = append(r.failovers, d)
				r.mu.Unlock()
				r.tracef(n.name, "failover", "serving linearizable reads of shard 0 %v after the leader crashed", d)
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
}

// heal ends the safety phase: partitions, clogs, loss and pauses stop,
// disks stop failing and crashed nodes restart.
func (r *run) heal() {
	r.mu.Lock()
	r.phase = 1
	issued := r.issued
	r.mu.Unlock()
	r.tracef("sim", "phase", "safety phase done: %d operations; healing every fault", issued)
	r.net.Links(func(nt *netmodel.Net) {
		nt.Heal()
		nt.UnclogAll()
		nt.Drop, nt.Dup, nt.SpikeP = 0, 0, 0
	})
	for i, n := range r.nodes {
		r.net.Pause(i, 0)
		n.disk.pause(time.Time{})
		n.disk.set(false)
		if n.service() == nil {
			r.restart(i)
		}
	}
}

// agree reports whether every node's replicas hold the same data.
func (r *run) agree() bool {
	var first map[string]string
	for i, n := range r.nodes {
		svc := n.service()
		if svc == nil {
			return false
		}
		d, err := svc.Dump(time.Now())
		if err != nil {
			return false
		}
		if i == 0 {
			first = d
		} else if !maps.Equal(first, d) {
			return false
		}
	}
	return true
}

// finish dumps the replicas, runs the checkers and fills the result.
func (r *run) finish() (*Outcome, error) {
	o := &Outcome{Plan: r.plan}
	allHostAll := r.p.replicas == len(r.nodes)
	for _, n := range r.nodes {
		svc := n.service()
		if svc == nil {
			r.liveness = append(r.liveness, n.name+" is down at the end of the run")
			continue
		}
		d, err := svc.Dump(time.Now())
		if err != nil {
			r.liveness = append(r.liveness, fmt.Sprintf("dump %s: %v", n.name, err))
			continue
		}
		if allHostAll { // replicas of different shard sets cannot be compared
			o.Replicas = append(o.Replicas, checker.ReplicaState{Node: n.name, Data: d})
		}
	}
	o.Ops = r.rec.Ops()
	var hist bytes.Buffer
	if err := checker.WriteHistory(&hist, o.Ops); err != nil {
		return nil, err
	}
	o.History = hist.Bytes()
	copts := checker.DefaultOptions()
	copts.Checks = Checks
	if r.opts.Workload == "bank" {
		// Cross-shard transfers: the totals must stay constant.
		copts.Checks = append(slices.Clone(Checks), checker.CheckBank)
	}
	copts.Timeout = checkerBudget
	if r.opts.Out == "" {
		copts.Visualize = 0
	}
	cres := checker.Check(o.Ops, o.Replicas, copts)
	o.Check = &cres
	delivered := r.net.Delivered.Load()
	res := simrun.Result{Options: r.userOpts, Events: delivered, Messages: delivered,
		Virtual: time.Since(r.t0), Converged: -1, Rates: r.plan.Rates, Horizon: r.opts.Horizon}
	for _, f := range r.plan.Faults {
		res.FaultPlan = append(res.FaultPlan, f.String())
	}
	res.Ops = len(o.Ops)
	res.OK, res.Failed, res.Unknown = checker.Outcomes(o.Ops)
	r.mu.Lock()
	problems := append([]string(nil), r.problems...)
	o.Failovers = append([]time.Duration(nil), r.failovers...)
	r.mu.Unlock()
	for _, c := range cres.Checks {
		if c.Verdict == checker.VerdictViolation {
			problems = append(problems, fmt.Sprintf("%s: %s", c.Name, c.Summary))
		}
	}
	switch {
	case len(problems) > 0:
		res.Verdict = simrun.Safety
		res.Problems = append(problems, r.liveness...)
	case len(r.liveness) > 0:
		res.Verdict = simrun.Liveness
		res.Problems = r.liveness
	default:
		res.Verdict = simrun.Pass
	}
	r.tracef("sim", "end", "verdict=%s ops=%d ok=%d fail=%d unknown=%d", res.Verdict, res.Ops, res.OK, res.Failed, res.Unknown)
	r.mu.Lock()
	lines := append([]string(nil), r.trace...)
	r.mu.Unlock()
	lines = append(lines, r.net.traceLines()...)
	sort.Strings(lines)
	o.Trace = []byte(strings.Join(lines, "\n") + "\n")
	res.TraceHash = sha(o.Trace)
	res.HistoryHash = sha(o.History)
	o.Result = res
	return o, nil
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
