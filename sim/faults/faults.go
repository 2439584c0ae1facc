// Package faults draws a run's fault plan from its seed, swarm-testing
// style: the enabled fault kinds come from the command line, the rate of
// each is drawn from the seed (unless fixed) and printed at the start of the
// run, and the plan is a list of timed faults that the shrinker can cut
// down one by one.
//
// It imports only the other leaf packages of the simulator (netmodel,
// simrun), so that package sim and sim/raftsim share it; Prepare derives a
// run's whole fault setup from its options for both.
package faults

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/sim/netmodel"
)

// Kind is a fault kind, as named in --faults.
type Kind string

// The fault kinds.
const (
	Partition Kind = "partition" // a partition of a drawn shape, healed after a while
	Drop      Kind = "drop"      // messages lost at a drawn rate
	Dup       Kind = "dup"       // messages delivered twice at a drawn rate
	Delay     Kind = "delay"     // latency spikes: a heavy-tailed mixture added to every link (reorders messages)
	Clog      Kind = "clog"      // one link holds its messages, then releases them
	Crash     Kind = "crash"     // a node loses its process and unsynced writes, restarts later
	Pause     Kind = "pause"     // a node stops (SIGSTOP), then resumes with its queue
	Skew      Kind = "skew"      // per-node clock offset and drift for the whole run
	IOErr     Kind = "ioerr"     // a node's disk fails a write or sync
	Corrupt   Kind = "corrupt"   // a node's disk returns corrupted records, which checksums must catch
)

// Kinds lists every fault kind with a one-line description.
func Kinds() []struct {
	Kind Kind
	Desc string
} {
	return []struct {
		Kind Kind
		Desc string
	}{
		{Partition, "network partitions (symmetric, asymmetric, isolate, minority, bridge), healed after a while"},
		{Drop, "messages between replicas lost at a drawn rate"},
		{Dup, "messages between replicas delivered twice at a drawn rate"},
		{Delay, "latency spikes from a Pareto/exponential mixture, which reorder messages"},
		{Clog, "a link holds its messages for a while, then delivers them all"},
		{Crash, "a node crashes (unsynced writes lost) and restarts later"},
		{Pause, "a node pauses (no ticks, no deliveries) and resumes"},
		{Skew, "per-node clock offset and drift"},
		{IOErr, "a node's disk fails a write or a sync (the node must fail safely)"},
		{Corrupt, "a node's disk returns corrupted records (checksums must catch them)"},
	}
}

// DefaultKinds are the kinds enabled when --faults is not given.
func DefaultKinds() []Kind {
	return []Kind{Partition, Drop, Dup, Delay, Clog, Crash, Pause, Skew}
}

// ParseKinds reads a comma-separated list; "all" enables every kind and
// "none" none.
func ParseKinds(list []string) ([]Kind, error) {
	if list == nil {
		return DefaultKinds(), nil
	}
	var out []Kind
	for _, s := range list {
		s = strings.TrimSpace(s)
		switch s {
		case "", "none":
			continue
		case "all":
			for _, k := range Kinds() {
				out = append(out, k.Kind)
			}
			continue
		}
		found := false
		for _, k := range Kinds() {
			if string(k.Kind) == s {
				out = append(out, k.Kind)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("faults: unknown fault %q (run dialkv sim --help for the list)", s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Rate names, as in --rates. Per-second rates are mean events per virtual
// second of the safety phase; probabilities are per message.
var rateNames = []string{
	"drop",          // probability
	"dup",           // probability
	"delay",         // probability a message takes the slow path
	"partition/s",   // partitions per second
	"clog/s",        // clogs per second
	"crash/s",       // crashes per second
	"pause/s",       // pauses per second
	"ioerr/s",       // disk I/O errors per second
	"corrupt/s",     // corrupted reads per second
	"skew-ms",       // maximum clock offset
	"drift-ppm",     // maximum clock drift
	"fault-mean-ms", // mean duration of a partition, clog, pause or crash
}

// RateNames lists the names --rates accepts.
func RateNames() []string { return slices.Clone(rateNames) }

// Rates maps rate names to values.
type Rates map[string]float64

// DrawRates draws the rates of the enabled kinds (swarm testing: each kind
// is also switched off with probability 1/4), keeping those in fixed.
func DrawRates(kinds []Kind, fixed map[string]float64, r *rand.Rand) (Rates, error) {
	for name := range fixed {
		if !slices.Contains(rateNames, name) {
			return nil, fmt.Errorf("faults: unknown rate %q (want one of %s)", name, strings.Join(rateNames, ", "))
		}
	}
	on := func(k Kind) bool { return slices.Contains(kinds, k) }
	rt := Rates{}
	draw := func(name string, k Kind, lo, hi float64) {
		// Always draw both numbers so that fixing one rate does not
		// shift the others.
		off := r.IntN(4) == 0
		v := lo + r.Float64()*(hi-lo)
		if !on(k) || off {
			v = 0
		}
		if f, ok := fixed[name]; ok {
			v = f
		}
		rt[name] = v
	}
	draw("drop", Drop, 0.001, 0.08)
	draw("dup", Dup, 0.001, 0.08)
	draw("delay", Delay, 0.01, 0.2)
	draw("partition/s", Partition, 0.2, 3)
	draw("clog/s", Clog, 0.2, 3)
	draw("crash/s", Crash, 0.2, 3)
	draw("pause/s", Pause, 0.2, 3)
	draw("ioerr/s", IOErr, 0.2, 3)
	draw("corrupt/s", Corrupt, 0.5, 5)
	draw("skew-ms", Skew, 1, 500)
	draw("drift-ppm", Skew, 10, 1000)
	mean := 50 + r.Float64()*400
	if f, ok := fixed["fault-mean-ms"]; ok {
		mean = f
	}
	rt["fault-mean-ms"] = mean
	return rt, nil
}

// String renders the rates in name order.
func (rt Rates) String() string {
	keys := make([]string, 0, len(rt))
	for k := range rt {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatFloat(rt[k], 'g', 4, 64)
	}
	return strings.Join(parts, " ")
}

// Fault is one timed fault of a plan.
type Fault struct {
	At    time.Duration // virtual time it starts
	For   time.Duration // how long it lasts (crash: downtime before restart)
	Kind  Kind
	Node  int // crash, pause, ioerr, corrupt: the node; clog: the sender
	To    int // clog: the receiver
	Shape netmodel.Shape
	Cut   netmodel.Cut // partition: the links cut
}

// String renders the fault for the trace and the summary.
func (f Fault) String() string {
	at := "t=" + f.At.String()
	switch f.Kind {
	case Partition:
		return fmt.Sprintf("%s partition %s for %v", at, f.Cut.Desc, f.For)
	case Clog:
		return fmt.Sprintf("%s clog n%d->n%d for %v", at, f.Node+1, f.To+1, f.For)
	case Crash:
		return fmt.Sprintf("%s crash n%d, restart after %v", at, f.Node+1, f.For)
	case Pause:
		return fmt.Sprintf("%s pause n%d for %v", at, f.Node+1, f.For)
	case IOErr:
		return fmt.Sprintf("%s ioerr n%d (next write or sync fails)", at, f.Node+1)
	case Corrupt:
		return fmt.Sprintf("%s corrupt n%d (next record read is corrupted)", at, f.Node+1)
	}
	return at + " " + string(f.Kind)
}

// Clock is one node's clock fault: its reading is offset + (1+drift)*t.
type Clock struct {
	Offset time.Duration
	Drift  float64 // fraction, e.g. 1e-4 = 100 ppm
}

// Plan is a run's fault plan.
type Plan struct {
	Rates  Rates
	Clocks []Clock // one per node
	Faults []Fault // in time order
}

// Draw makes the plan for n nodes over the first horizon of virtual time.
func Draw(kinds []Kind, rates Rates, n int, horizon time.Duration, r *rand.Rand) (Plan, error) {
	p := Plan{Rates: rates, Clocks: make([]Clock, n)}
	for i := range p.Clocks {
		off := (r.Float64()*2 - 1) * rates["skew-ms"] * float64(time.Millisecond)
		drift := (r.Float64()*2 - 1) * rates["drift-ppm"] * 1e-6
		p.Clocks[i] = Clock{Offset: time.Duration(off), Drift: drift}
	}
	mean := time.Duration(rates["fault-mean-ms"] * float64(time.Millisecond))
	dur := func() time.Duration { return time.Millisecond + time.Duration(r.ExpFloat64()*float64(mean)) }
	for _, k := range []Kind{Partition, Clog, Crash, Pause, IOErr, Corrupt} {
		rate := rates[string(k)+"/s"]
		if rate <= 0 || !slices.Contains(kinds, k) {
			continue
		}
		t := time.Duration(0)
		for {
			t += time.Duration(r.ExpFloat64() / rate * float64(time.Second))
			if t >= horizon {
				break
			}
			f := Fault{At: t, Kind: k, Node: r.IntN(n)}
			switch k {
			case Partition:
				f.For = dur()
				f.Shape = netmodel.Shapes()[r.IntN(len(netmodel.Shapes()))]
				c, err := netmodel.MakeCut(f.Shape, n, r)
				if err != nil {
					return p, err
				}
				f.Cut = c
			case Clog:
				f.For = dur()
				f.To = r.IntN(n)
				if n > 1 {
					for f.To == f.Node {
						f.To = r.IntN(n)
					}
				}
			case Crash, Pause:
				f.For = dur()
			}
			p.Faults = append(p.Faults, f)
		}
	}
	sort.SliceStable(p.Faults, func(i, j int) bool { return p.Faults[i].At < p.Faults[j].At })
	return p, nil
}

// Keep returns the plan with only the faults whose indices are in keep
// (nil keeps all).
func (p Plan) Keep(keep []int) Plan {
	if keep == nil {
		return p
	}
	q := p
	q.Faults = nil
	for _, i := range keep {
		if i >= 0 && i < len(p.Faults) {
			q.Faults = append(q.Faults, p.Faults[i])
		}
	}
	sort.SliceStable(q.Faults, func(i, j int) bool { return q.Faults[i].At < q.Faults[j].At })
	return q
}
