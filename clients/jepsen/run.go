package jepsen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/clients/workload"
)

// The fault kinds.
const (
	FaultKill      = "kill"      // kill -9, restart after the fault's duration
	FaultPause     = "pause"     // SIGSTOP, SIGCONT after the fault's duration
	FaultPartition = "partition" // isolate one node from the network, then heal
	FaultRestart   = "restart"   // graceful stop (SIGTERM), start after the fault's duration
	FaultClock     = "clock"     // shift one node's clock by ±ClockSkew, reset it after the fault's duration
)

// FaultKinds lists the fault kinds with a description.
func FaultKinds() [][2]string {
	return [][2]string{
		{FaultKill, "kill -9 one node, restart it on the same data after --fault-for"},
		{FaultPause, "SIGSTOP one node, SIGCONT after --fault-for"},
		{FaultRestart, "graceful stop (SIGTERM) of one node, start it again after --fault-for (with --round-robin: a rolling restart)"},
		{FaultPartition, "cut one node off the network (docker network disconnect), reconnect after --fault-for (docker backend)"},
		{FaultClock, "shift one node's clock by +--clock-skew or -clock-skew (at random) through its admin API, reset it after --fault-for"},
	}
}

// Config configures a run.
type Config struct {
	// Namespace to create and test (default "jepsen"), with its strategy
	// (default local) and parameters.
	Namespace string
	Strategy  string
	Params    map[string]string
	Workload  workload.Config
	// Clients is the number of concurrent clients (default 4).
	Clients int
	// Duration of the workload with faults (default 10 s).
	Duration time.Duration
	// Faults to draw from (empty: none); a new fault starts FaultEvery
	// after the previous one healed and lasts FaultFor.
	Faults     []string
	FaultEvery time.Duration // default 2 s
	FaultFor   time.Duration // default 1 s
	// ClockSkew is the clock fault's offset magnitude (default 10 s).
	ClockSkew time.Duration
	// RoundRobin picks the faulty node in order n1, n2, ... instead of at
	// random (with FaultRestart: a rolling restart).
	RoundRobin bool
	// OpTimeout is each operation's deadline (default 2 s).
	OpTimeout time.Duration
	// Converge bounds the wait, after healing, for every node to answer
	// the same for every key (replicated strategies; default 30 s).
	Converge time.Duration
	Seed     uint64
	// Checks to run (empty: ChecksFor(Strategy)).
	Checks []string
	// Log receives progress lines (nil: discarded).
	Log io.Writer
	// Command is recorded in the summary as how to reproduce the run.
	Command string
}

// ChecksFor returns the checks that apply to a strategy's guarantees:
// local and raft are linearizable; quorum and causal are not, so they get
// durability (lost writes) and convergence.
func ChecksFor(strategy string) []string {
	switch strategy {
	case "", "local", "raft":
		return []string{checker.CheckLinearizable, checker.CheckDurability, checker.CheckConvergence}
	default:
		return []string{checker.CheckDurability, checker.CheckConvergence}
	}
}

func (c *Config) fill() error {
	if c.Namespace == "" {
		c.Namespace = "jepsen"
	}
	if c.Strategy == "" {
		c.Strategy = "local"
	}
	if c.Clients <= 0 {
		c.Clients = 4
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.FaultEvery <= 0 {
		c.FaultEvery = 2 * time.Second
	}
	if c.FaultFor <= 0 {
		c.FaultFor = time.Second
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 2 * time.Second
	}
	if c.ClockSkew <= 0 {
		c.ClockSkew = 10 * time.Second
	}
	if c.Converge <= 0 {
		c.Converge = 30 * time.Second
	}
	if len(c.Checks) == 0 {
		c.Checks = ChecksFor(c.Strategy)
	}
	if c.Strategy == "quorum" && c.Params["resolve"] == "" && strings.Contains(c.Workload.Kind, "set") {
		// Sets need a mergeable resolution under quorum (siblings refuse
		// SMEMBERS): the CRDT one, which is what loses no add.
		p := map[string]string{"resolve": "crdt"}
		for k, v := range c.Params {
			p[k] = v
		}
		c.Params = p
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	for _, f := range c.Faults {
		switch f {
		case FaultKill, FaultPause, FaultPartition, FaultRestart, FaultClock:
		default:
			return fmt.Errorf("jepsen: unknown fault %q (want kill, pause, restart, partition or clock)", f)
		}
	}
	if _, err := workload.New(c.Workload); err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	return nil
}

// Result is the outcome of a run.
type Result struct {
	Check    checker.Result
	Replicas []checker.ReplicaState
	History  []checker.Op
	// Faults is the fault log: one line per fault start and heal.
	Faults []string
	// Ops, OK, Failed, Unknown count the recorded operations.
	Ops, OK, Failed, Unknown int
	// Converged is how long after the last heal every node answered the
	// same for every key (-1: not within Config.Converge; 0 for one node).
	Converged time.Duration
	// MaxGap is the longest time during the workload (from its start,
	// after the namespace is created, for Config.Duration) with no
	// operation completing successfully (an availability measure).
	MaxGap time.Duration
	// Elapsed is the run's wall time.
	Elapsed time.Duration
	// Problems lists liveness failures (a node that did not come back, a
	// final read that never succeeded).
	Problems []string
}

// Verdict is "pass" when every check passed and there was no problem,
// "violation" when a check found an anomaly, else "unknown".
func (r *Result) Verdict() string {
	switch {
	case r.Check.Verdict == checker.VerdictViolation:
		return "violation"
	case len(r.Problems) > 0 || r.Check.Verdict == checker.VerdictUnknown:
		return "unknown"
	}
	return "pass"
}

type runner struct {
	cfg   Config
	cl    Cluster
	rec   *checker.Recorder
	start time.Time
	mu    sync.Mutex
	flog  []string
}

func (r *runner) logf(format string, args ...any) {
	line := fmt.Sprintf("%8.3fs ", time.Since(r.start).Seconds()) + fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.flog = append(r.flog, line)
	r.mu.Unlock()
	fmt.Fprintln(r.cfg.Log, line)
}

// Run creates the namespace on cl, runs the workload with faults, heals,
// waits for convergence, reads everything back and checks the history.
// The cluster is left running (healed); the caller closes it.
func Run(ctx context.Context, cl Cluster, cfg Config) (*Result, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if cfg.Strategy == "raft" && cfg.Params["nodes"] == "" {
		rc, ok := cl.(RaftCluster)
		if !ok {
			return nil, errors.New("jepsen: raft needs --params nodes=...,raft-addrs=...,client-addrs=... on this backend")
		}
		p := rc.RaftParams()
		for k, v := range cfg.Params {
			p[k] = v
		}
		cfg.Params = p
	}
	r := &runner{cfg: cfg, cl: cl, rec: checker.NewRecorder(nil), start: time.Now()}
	if err := r.createNamespace(ctx); err != nil {
		return nil, err
	}
	r.logf("namespace %s (%s %v) on %d nodes; workload %s, %d clients, %v, faults %v", cfg.Namespace, cfg.Strategy, cfg.Params,
		len(cl.Nodes()), cfg.Workload.Kind, cfg.Clients, cfg.Duration, cfg.Faults)

	// The workload's window in the recorder's time (since r.start): it
	// starts after the namespace is created, so setting up is not counted
	// as unavailability by maxGap.
	wstart := time.Since(r.start)
	wctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(wctx, i)
		}()
	}
	var problems []string
	var fwg sync.WaitGroup
	fwg.Add(1)
	go func() {
		defer fwg.Done()
		if err := r.nemesis(wctx); err != nil {
			r.mu.Lock()
			problems = append(problems, err.Error())
			r.mu.Unlock()
		}
	}()
	fwg.Wait()
	wg.Wait()
	healed := time.Now()
	r.logf("workload done; every fault healed")

	res := &Result{Converged: -1}
	// Every node must answer again.
	for _, n := range cl.Nodes() {
		if err := waitPing(cl.Addr(n), 30*time.Second); err != nil {
			problems = append(problems, fmt.Sprintf("%s did not answer after healing: %v", n, err))
		}
	}
	gen, _ := workload.New(cfg.Workload)
	finals := gen.Final()
	if len(cl.Nodes()) == 1 {
		res.Converged = 0
	} else {
		reps, ok := r.converge(ctx, finals, cfg.Converge)
		if ok {
			res.Converged = time.Since(healed)
			r.logf("converged %v after the last heal", res.Converged.Round(time.Millisecond))
		} else {
			r.logf("not converged within %v", cfg.Converge)
			problems = append(problems, fmt.Sprintf("the nodes did not answer the same for every key within %v of the last heal", cfg.Converge))
		}
		res.Replicas = reps
	}
	if len(cl.Nodes()) == 1 {
		res.Replicas = nil // one replica: convergence is trivially true; the check is skipped
	}
	problems = append(problems, r.finalReads(ctx, finals)...)
	res.History = r.rec.Ops()
	for i := range res.History {
		// A read that never answered changed nothing (as the simulator
		// records it).
		if op := &res.History[i]; op.Outcome == checker.Unknown && (op.F == checker.FGet || op.F == checker.FSMembers) {
			op.Outcome = checker.Fail
			if op.Complete == nil {
				op.Complete = checker.Int64Ptr(op.Invoke)
			}
		}
	}
	res.Ops = len(res.History)
	res.OK, res.Failed, res.Unknown = checker.Outcomes(res.History)
	res.MaxGap = maxGap(res.History, wstart, wstart+cfg.Duration)
	opts := checker.DefaultOptions()
	opts.Checks = cfg.Checks
	opts.Timeout = 60 * time.Second
	res.Check = checker.Check(res.History, res.Replicas, opts)
	res.Faults = r.flog
	res.Problems = problems
	res.Elapsed = time.Since(r.start)
	r.logf("checked: %s (%d ops: ok %d, fail %d, unknown %d)", res.Verdict(), res.Ops, res.OK, res.Failed, res.Unknown)
	res.Faults = append([]string(nil), r.flog...)
	return res, nil
}

func (r *runner) createNamespace(ctx context.Context) error {
	nodes := r.cl.Nodes()
	c, err := client.New([]string{r.cl.Addr(nodes[0])}, client.WithTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	defer c.Close()
	spec := client.NamespaceSpec{Name: r.cfg.Namespace, Strategy: r.cfg.Strategy, Params: r.cfg.Params}
	if err := c.CreateNamespace(ctx, spec); err != nil {
		return fmt.Errorf("jepsen: create namespace %s: %w", spec.Name, err)
	}
	// A replicated namespace spreads to the other members in the
	// background: wait until each has it.
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes[1:] {
		for {
			if hasNamespace(ctx, r.cl.Addr(n), spec.Name) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("jepsen: namespace %s did not reach %s within 30s", spec.Name, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func hasNamespace(ctx context.Context, addr, name string) bool {
	c, err := client.New([]string{addr}, client.WithTimeout(2*time.Second), client.WithRetries(0, 0, 0))
	if err != nil {
		return false
	}
	defer c.Close()
	specs, err := c.ListNamespaces(ctx)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(specs, func(s client.NamespaceSpec) bool { return s.Name == name })
}

// waitPing waits until the node at addr answers a ping.
func waitPing(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := client.New([]string{addr}, client.WithTimeout(time.Second), client.WithRetries(0, 0, 0))
		if err == nil {
			_, err = c.Ping(context.Background())
			c.Close()
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("jepsen: %s did not answer a ping within %v: %w", addr, limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// addrsFrom returns every node's address, starting with node i's.
func (r *runner) addrsFrom(i int) []string {
	nodes := r.cl.Nodes()
	out := make([]string, len(nodes))
	for j := range nodes {
		out[j] = r.cl.Addr(nodes[(i+j)%len(nodes)])
	}
	return out
}

func (r *runner) newClient(addrs []string, proc int) (*client.Client, error) {
	return client.New(addrs, client.WithNamespace(r.cfg.Namespace), client.WithRecorder(r.rec, proc, r.start),
		client.WithTimeout(r.cfg.OpTimeout), client.WithDialTimeout(r.cfg.OpTimeout), client.WithClientID("jepsen-"+strconv.Itoa(proc)))
}

// worker runs operations until ctx ends. After an operation whose outcome
// is not known it continues as a new process (a new client number), as
// Jepsen does, so that the checkers see at most one open operation per
// process.
func (r *runner) worker(ctx context.Context, i int) {
	gen, err := workload.New(r.cfg.Workload)
	if err != nil {
		return
	}
	rnd := rand.New(rand.NewPCG(r.cfg.Seed, uint64(i)))
	proc := i
	addrs := r.addrsFrom(i)
	c, err := r.newClient(addrs, proc)
	if err != nil {
		return
	}
	defer func() { c.Close() }()
	for ctx.Err() == nil {
		op := gen.Next(rnd, proc)
		// Each operation gets its own deadline, not the workload's: an
		// operation in flight when the workload ends still finishes.
		octx, cancel := context.WithTimeout(context.Background(), r.cfg.OpTimeout)
		err := do(octx, c.Session, op)
		cancel()
		if err != nil {
			if e := (*client.Error)(nil); !errors.As(err, &e) || e.MaybeApplied || e.Code == client.CodeTimeout || e.Code == client.CodeConnection || e.Code == client.CodeProtocol {
				c.Close()
				proc += r.cfg.Clients
				if c, err = r.newClient(addrs, proc); err != nil {
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// finalProc is the first process number of the final reads.
const finalProc = 1_000_000

// maxGap returns the longest interval within the workload's window
// [from, to) (recorder time) in which no workload operation completed
// successfully.
func maxGap(h []checker.Op, from, to time.Duration) time.Duration {
	var ts []int64
	for _, op := range h {
		if op.Outcome == checker.OK && op.Client < finalProc && op.Complete != nil && *op.Complete >= int64(from) && *op.Complete < int64(to) {
			ts = append(ts, *op.Complete)
		}
	}
	slices.Sort(ts)
	prev, gap := int64(from), int64(0)
	for _, t := range ts {
		gap = max(gap, t-prev)
		prev = t
	}
	return time.Duration(max(gap, int64(to)-prev))
}

// do runs op through the session's recording methods.
func do(ctx context.Context, s *client.Session, op workload.Op) error {
	k, a := op.Rec.Key, op.Rec.Args
	var err error
	switch op.Rec.F {
	case checker.FGet:
		_, err = s.Get(ctx, k)
	case checker.FPut:
		_, err = s.Set(ctx, k, []byte(a[0]))
	case checker.FDelete:
		_, err = s.Del(ctx, k)
	case checker.FCAS:
		_, err = s.CAS(ctx, k, []byte(a[0]), []byte(a[1]))
	case checker.FIncr:
		var d int64
		d, err = strconv.ParseInt(a[0], 10, 64)
		if err == nil {
			_, err = s.Incr(ctx, k, d)
		}
	case checker.FSAdd:
		_, err = s.SAdd(ctx, k, a[0])
	case checker.FSRem:
		_, err = s.SRem(ctx, k, a[0])
	case checker.FSMembers:
		_, err = s.SMembers(ctx, k)
	default:
		err = fmt.Errorf("jepsen: operation %q not supported", op.Rec.F)
	}
	return err
}

// nemesis injects one fault at a time until ctx ends, then heals.
func (r *runner) nemesis(ctx context.Context) error {
	if len(r.cfg.Faults) == 0 {
		<-ctx.Done()
		return nil
	}
	rnd := rand.New(rand.NewPCG(r.cfg.Seed, 0xfa17))
	nodes := r.cl.Nodes()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.cfg.FaultEvery):
		}
		kind := r.cfg.Faults[rnd.IntN(len(r.cfg.Faults))]
		n := nodes[rnd.IntN(len(nodes))]
		if r.cfg.RoundRobin {
			n = nodes[i%len(nodes)]
		}
		var do, undo func(string) error
		var doName, undoName string
		switch kind {
		case FaultKill:
			do, undo, doName, undoName = r.cl.Kill, r.cl.Start, "kill -9", "restart"
		case FaultPause:
			do, undo, doName, undoName = r.cl.Pause, r.cl.Resume, "SIGSTOP", "SIGCONT"
		case FaultPartition:
			do, undo, doName, undoName = r.cl.Isolate, r.cl.Heal, "isolate", "heal"
		case FaultRestart:
			do, undo, doName, undoName = r.cl.Stop, r.cl.Start, "stop", "start"
		case FaultClock:
			sk, ok := r.cl.(ClockSkewer)
			if !ok {
				return fmt.Errorf("fault clock: %w", ErrUnsupported)
			}
			d := r.cfg.ClockSkew
			if rnd.IntN(2) == 0 {
				d = -d
			}
			do = func(n string) error { return sk.SetClockOffset(n, d) }
			undo = func(n string) error { return sk.SetClockOffset(n, 0) }
			doName, undoName = "clock "+signed(d), "clock reset"
		}
		r.logf("fault %s %s", doName, n)
		if err := do(n); err != nil {
			r.logf("fault %s %s failed: %v", doName, n, err)
			return fmt.Errorf("fault %s %s: %w", doName, n, err)
		}
		// The fault lasts FaultFor even if the workload ends meanwhile.
		time.Sleep(r.cfg.FaultFor)
		if err := undo(n); err != nil {
			r.logf("%s %s failed: %v", undoName, n, err)
			return fmt.Errorf("%s %s: %w", undoName, n, err)
		}
		r.logf("%s %s", undoName, n)
	}
}

// signed renders d with its sign (+10s, -10s).
func signed(d time.Duration) string {
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

// retryable says whether a failed read is worth repeating: the node was
// unreachable, overloaded or too slow, rather than refusing the command.
func retryable(err error) bool {
	var e *client.Error
	if !errors.As(err, &e) {
		return true
	}
	switch e.Code {
	case client.CodeUnavailable, client.CodeTimeout, client.CodeConnection, client.CodeMoved:
		return true
	}
	return false
}

// readKey returns a key's value as a node answers it, for convergence. as a node answers it, for convergence.
func readKey(ctx context.Context, s *client.Session, op workload.Op) (string, bool, error) {
	switch op.Rec.F {
	case checker.FSMembers:
		vs, err := s.SMembers(ctx, op.Rec.Key)
		if err != nil {
			return "", false, err
		}
		slices.Sort(vs)
		return "set:" + strings.Join(vs, ","), len(vs) > 0, nil
	default:
		v, err := s.Get(ctx, op.Rec.Key)
		if err != nil {
			return "", false, err
		}
		return "str:" + string(v.Data), v.Found, nil
	}
}

// converge reads every key at every node with R=1 (quorum: the node's own
// copy answers first; raft: a stale read of the node's replica) until all
// nodes answer the same, or limit passes. A node that could not answer
// every read is left out of the returned states.
// These reads are not recorded.
func (r *runner) converge(ctx context.Context, finals []workload.Op, limit time.Duration) ([]checker.ReplicaState, bool) {
	deadline := time.Now().Add(limit)
	for {
		states := make([]checker.ReplicaState, 0, len(r.cl.Nodes()))
		complete := true
		for _, n := range r.cl.Nodes() {
			st := checker.ReplicaState{Node: n, Data: map[string]string{}}
			c, err := client.New([]string{r.cl.Addr(n)}, client.WithNamespace(r.cfg.Namespace), client.WithTimeout(2*time.Second), client.WithRetries(0, 0, 0))
			if err != nil {
				complete = false
				continue
			}
			// quorum/causal: R=1 (the node's own copy answers first);
			// raft: a stale read, served by the node's own replica.
			rctx := client.With(ctx, client.R(1))
			if r.cfg.Strategy == "raft" {
				rctx = client.With(ctx, client.ReadMode("stale"))
			}
			ok := true
			for _, op := range finals {
				v, found, err := readKey(rctx, c.Session, op)
				if err != nil {
					complete, ok = false, false
					if !retryable(err) {
						c.Close()
						return nil, false
					}
					break
				}
				if found {
					st.Data[op.Rec.Key] = v
				}
			}
			c.Close()
			if ok {
				states = append(states, st)
			}
		}
		if complete && len(states) > 0 {
			same := true
			for _, st := range states[1:] {
				if !maps.Equal(st.Data, states[0].Data) {
					same = false
				}
			}
			if same {
				return states, true
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return states, false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// finalReads records a read of every key at every node (the checkers take
// the last successful one per key as the final state), retrying a read
// that fails for up to 30 s.
func (r *runner) finalReads(ctx context.Context, finals []workload.Op) []string {
	var problems []string
	proc := finalProc
	for i, n := range r.cl.Nodes() {
		c, err := r.newClient([]string{r.cl.Addr(n)}, proc+i)
		if err != nil {
			problems = append(problems, fmt.Sprintf("final reads at %s: %v", n, err))
			continue
		}
		for _, op := range finals {
			deadline := time.Now().Add(30 * time.Second)
			for {
				octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
				err := do(octx, c.Session, op)
				cancel()
				if err == nil {
					break
				}
				if !retryable(err) || time.Now().After(deadline) {
					problems = append(problems, fmt.Sprintf("final read %s %s at %s failed for 30s: %v", op.Rec.F, op.Rec.Key, n, err))
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		c.Close()
	}
	return problems
}
