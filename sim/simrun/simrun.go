// Package simrun holds the options and the result of one simulator run, the
// seed derivation every component uses, and the reproducer command line.
//
// It is a leaf package (it imports nothing of ours) so that both package sim
// and the strategies it dispatches to — sim/raftsim, which sim imports and
// which therefore cannot import sim — share one description of a run:
//
//	func Run(opts simrun.Options) (simrun.Result, error)
//
// is the shape every strategy runner has. Options.Args renders the options
// back into the `dialkv sim` flags that reproduce the run.
package simrun

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Verdict is the outcome of a run.
type Verdict string

// The verdicts and their exit codes.
const (
	Pass     Verdict = "pass"     // exit 0
	Safety   Verdict = "safety"   // exit 1: a checker found a safety violation
	Liveness Verdict = "liveness" // exit 2: the cluster did not serve or converge in the bound
)

// ExitCode maps a verdict to the `dialkv sim` exit code.
func (v Verdict) ExitCode() int {
	switch v {
	case Pass:
		return 0
	case Safety:
		return 1
	case Liveness:
		return 2
	}
	return 3
}

// Options describe one run. The zero value of a field means its default
// (see Defaults); Normalize fills them in.
type Options struct {
	Strategy string // primary-backup, raft, quorum, causal
	Seed     uint64
	Ops      int // operations issued in the safety phase (the liveness phase adds LiveOps)
	LiveOps  int // operations issued in the liveness phase
	Clients  int
	Nodes    int
	// Faults lists the enabled fault kinds (faults.Kinds); nil means the
	// default set, []string{"none"} none at all.
	Faults []string
	// Rates fixes swarm-drawn fault rates by name (faults.Rates names);
	// missing ones are drawn from the seed.
	Rates    map[string]float64
	Bug      string
	Workload string // register, counter, set, mixed, jepsen-set
	Keys     int
	KeyDist  string // uniform, zipfian, hotkey
	// Latency is the one-way link latency distribution (netmodel.ParseDist).
	Latency string
	Regions int // nodes are spread over this many regions (1: one region)
	// TokenlessReaders adds read-only clients that never send a session
	// token and stick to one node of the last region; the other clients
	// (the writers) then use only the nodes of region 0. They read in the
	// safety phase only.
	TokenlessReaders int
	Zones            int // zones per region (links between zones add 0.5 ms)
	// CrossRegion is the latency distribution between regions.
	CrossRegion string
	// PairLatency overrides the latency of directed region pairs:
	// "0>1=const:80ms;1>0=uniform:60ms-90ms" (netmodel.ParsePairs).
	PairLatency string
	Think       time.Duration // mean client think time between operations
	Timeout     time.Duration // client operation timeout
	// LivenessBound is how long (virtual) after the faults stop the
	// cluster has to serve again and converge.
	LivenessBound time.Duration
	Params        map[string]string // strategy parameters
	Out           string            // report directory ("" = write nothing)
	// Horizon is how far into the run the fault plan reaches (0: derived
	// from Ops, Clients and Think). The shrinker pins it so that cutting
	// operations keeps the same plan.
	Horizon time.Duration
	// KeepFaults, when not nil, keeps only the planned faults with these
	// indices (the shrinker's handle on the fault list).
	KeepFaults []int
	// RingChange, for the quorum strategy, changes the ring during the
	// run: "add" (the last node starts outside the ring and joins),
	// "remove" (a member drawn from the seed leaves), or "add,remove"
	// (one after the other). "" = no change.
	RingChange string
}

// Defaults returns the default options.
func Defaults() Options {
	return Options{
		Strategy:      "primary-backup",
		Seed:          1,
		Ops:           1000,
		LiveOps:       200,
		Clients:       5,
		Nodes:         3,
		Workload:      "mixed",
		Keys:          5,
		KeyDist:       "uniform",
		Latency:       "exp:1ms",
		Regions:       1,
		Zones:         1,
		CrossRegion:   "mix:0.9*uniform:20ms-40ms+0.1*pareto:30ms,1.5",
		Think:         2 * time.Millisecond,
		Timeout:       500 * time.Millisecond,
		LivenessBound: 10 * time.Second,
	}
}

// Normalize fills zero fields with their defaults.
func (o Options) Normalize() Options {
	d := Defaults()
	if o.Strategy == "" {
		o.Strategy = d.Strategy
	}
	if o.Ops == 0 {
		o.Ops = d.Ops
	}
	if o.LiveOps == 0 {
		o.LiveOps = d.LiveOps
	}
	if o.Clients == 0 {
		o.Clients = d.Clients
	}
	if o.Nodes == 0 {
		o.Nodes = d.Nodes
	}
	if o.Workload == "" {
		o.Workload = d.Workload
	}
	if o.Keys == 0 {
		o.Keys = d.Keys
	}
	if o.KeyDist == "" {
		o.KeyDist = d.KeyDist
	}
	if o.Latency == "" {
		o.Latency = d.Latency
	}
	if o.Regions == 0 {
		o.Regions = d.Regions
	}
	if o.Zones == 0 {
		o.Zones = d.Zones
	}
	if o.CrossRegion == "" {
		o.CrossRegion = d.CrossRegion
	}
	if o.Think == 0 {
		o.Think = d.Think
	}
	if o.Timeout == 0 {
		o.Timeout = d.Timeout
	}
	if o.LivenessBound == 0 {
		o.LivenessBound = o.defaultLivenessBound()
	}
	return o
}

// defaultLivenessBound is the liveness bound of a run that names none:
// Defaults().LivenessBound (10 s), or three times the liveness phase's
// expected length when that is longer — LiveOps/Clients operations per
// client, a think time apart — so that a run with long think times is not
// ended as a liveness failure while its clients are still thinking (200
// operations at 1 s of think time need about 40 s). At the default think
// time it is 10 s. It needs o's LiveOps, Clients and Think normalized.
func (o Options) defaultLivenessBound() time.Duration {
	b := Defaults().LivenessBound
	if e := 3 * time.Duration(o.LiveOps/max(o.Clients, 1)) * o.Think; e > b {
		b = e
	}
	return b
}

// Args renders the options as `dialkv sim` flags, every non-default one,
// in a fixed order. Out is left out.
func (o Options) Args() []string {
	o = o.Normalize()
	d := Defaults()
	a := []string{"--strategy", o.Strategy, "--seed", strconv.FormatUint(o.Seed, 10)}
	num := func(flag string, v, def int) {
		if v != def {
			a = append(a, flag, strconv.Itoa(v))
		}
	}
	str := func(flag, v, def string) {
		if v != def {
			a = append(a, flag, v)
		}
	}
	dur := func(flag string, v, def time.Duration) {
		if v != def {
			a = append(a, flag, v.String())
		}
	}
	num("--ops", o.Ops, d.Ops)
	num("--live-ops", o.LiveOps, d.LiveOps)
	num("--clients", o.Clients, d.Clients)
	num("--tokenless-readers", o.TokenlessReaders, d.TokenlessReaders)
	num("--nodes", o.Nodes, d.Nodes)
	if o.Faults != nil {
		a = append(a, "--faults", strings.Join(o.Faults, ","))
	}
	if len(o.Rates) > 0 {
		a = append(a, "--rates", FormatMap(floatMap(o.Rates)))
	}
	str("--bug", o.Bug, "")
	str("--workload", o.Workload, d.Workload)
	num("--keys", o.Keys, d.Keys)
	str("--key-dist", o.KeyDist, d.KeyDist)
	str("--latency", o.Latency, d.Latency)
	num("--regions", o.Regions, d.Regions)
	num("--zones", o.Zones, d.Zones)
	str("--cross-region", o.CrossRegion, d.CrossRegion)
	str("--pair-latency", o.PairLatency, "")
	dur("--think", o.Think, d.Think)
	dur("--timeout", o.Timeout, d.Timeout)
	dur("--liveness-bound", o.LivenessBound, o.defaultLivenessBound())
	dur("--horizon", o.Horizon, 0)
	str("--ring-change", o.RingChange, "")
	if len(o.Params) > 0 {
		a = append(a, "--params", FormatMap(o.Params))
	}
	if o.KeepFaults != nil {
		s := make([]string, len(o.KeepFaults))
		for i, k := range o.KeepFaults {
			s[i] = strconv.Itoa(k)
		}
		v := strings.Join(s, ",")
		if v == "" {
			v = "none"
		}
		a = append(a, "--keep-faults", v)
	}
	return a
}

// Command is the one-line reproducer: `dialkv sim` and Args, shell-quoted.
func (o Options) Command() string {
	parts := []string{"dialkv", "sim"}
	for _, a := range o.Args() {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.,:=/+@%", c)) {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}

func floatMap(m map[string]float64) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return out
}

// FormatMap renders a map as k=v,k=v in key order.
func FormatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, ",")
}

// ParseMap parses k=v,k=v.
func ParseMap(s string) (map[string]string, error) {
	m := map[string]string{}
	if s == "" {
		return m, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("simrun: %q is not key=value", kv)
		}
		m[k] = v
	}
	return m, nil
}

// Result is what a run found.
type Result struct {
	Options  Options
	Verdict  Verdict
	Problems []string // one line each: what failed
	Ops      int      // operations invoked (both phases)
	OK       int      // operations that completed ok
	Failed   int      // operations that certainly did not happen
	Unknown  int      // operations whose outcome is unknown
	Events   int64    // simulator events processed
	Messages int64    // messages delivered between replicas
	Virtual  time.Duration
	Real     time.Duration
	// Converged is the virtual time from the end of the faults to the
	// moment the replicas agreed after the final reads (-1: they never
	// did).
	Converged time.Duration
	// Settled is the virtual time from the end of the faults to the moment
	// the replicas first agreed and were settled (no hints left to hand
	// off), when the final reads started (-1: never).
	Settled time.Duration
	// Horizon is how far the fault plan reached.
	Horizon time.Duration
	// Recovered is the virtual time from the end of the faults to the
	// first operation that succeeded after it (-1: none did).
	Recovered time.Duration
	// FaultPlan is the plan that was run, one line per fault.
	FaultPlan []string
	// Rates are the fault rates in effect (drawn or fixed).
	Rates map[string]float64
	// Disk faults that fired: injected I/O errors, corrupted reads, and
	// client replies that reported a CORRUPTION error.
	IOErrors, Corruptions, CorruptReplies int
	// ReportDir is where the report was written ("" if none).
	ReportDir string
	// HistoryHash and TraceHash are SHA-256 hex digests of the history
	// and the trace, for reproducibility checks.
	HistoryHash, TraceHash string
	// Counters and Samples are what the replicas measured about
	// themselves (consistency.Meter): counters summed over the replicas and
	// their incarnations, samples by "name{label}". Nil for strategies
	// that measure nothing.
	Counters map[string]float64
	Samples  map[string][]float64
	// RingChanges are the ring changes of the run (Options.RingChange), in
	// order.
	RingChanges []RingChange
}

// RingChange is one ring change of a run, its times in virtual time since
// the start of the run (-1: not reached).
type RingChange struct {
	Kind string   `json:"kind"` // add or remove
	Node string   `json:"node"` // the node added or removed
	From []string `json:"from"` // the ring before
	To   []string `json:"to"`   // the ring after
	// StartNS is when the joint state was handed out, StreamNS when the
	// stream state was, StreamEndNS when every replica reported its
	// handoff done, StableNS when the stable state was handed out.
	StartNS     int64 `json:"start_ns"`
	StreamNS    int64 `json:"stream_ns"`
	StreamEndNS int64 `json:"stream_end_ns"`
	StableNS    int64 `json:"stable_ns"`
	// Moved counts the objects pushed to new owners and acknowledged,
	// summed over the replicas and their incarnations.
	Moved int `json:"moved"`
	// OpsDuring and OKDuring count the client operations that completed
	// between StartNS and StableNS, and those of them that succeeded.
	OpsDuring int `json:"ops_during"`
	OKDuring  int `json:"ok_during"`
}

// DeriveSeed derives a component's seed from the run's seed and the
// component's name (splitmix64 over the seed mixed with an FNV-1a hash of
// the name), so components draw independent streams and adding a component
// does not shift the others.
func DeriveSeed(seed uint64, name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return SplitMix64(seed ^ h)
}

// SplitMix64 is one step of the splitmix64 generator.
func SplitMix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// NewRand returns a PCG-seeded generator for the named component.
func NewRand(seed uint64, name string) *rand.Rand {
	s := DeriveSeed(seed, name)
	return rand.New(rand.NewPCG(s, SplitMix64(s)))
}
