package sim

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dialkv/dialkv/clients/workload"
	"github.com/dialkv/dialkv/sim/faults"
	"github.com/dialkv/dialkv/sim/simrun"
)

const usageHead = `Usage: dialkv sim [flags]

Runs a whole cluster of one replication strategy under faults in virtual
time, deterministically from one seed, checks the history, and reports.
Same seed + same build = byte-identical history.jsonl and trace.log.

Examples:
  dialkv sim --strategy primary-backup --seed 7 --ops 2000 --faults partition,crash --out /tmp/run7
  dialkv sim --seeds 1..200 --faults all
  dialkv sim --bug stale-backup-read --seeds 1..20 --shrink
  dialkv sim --list-bugs

Exit codes: 0 passed, 1 safety violation, 2 liveness failure, 3 usage error.

Flags:
`

// cliFlags are the flags that are not run options.
type cliFlags struct {
	seeds                                     string
	listBugs, listFaults, shrink, quiet, help bool
	workers                                   int
}

// parseArgs parses `dialkv sim` flags into run options.
func parseArgs(args []string, out io.Writer) (simrun.Options, cliFlags, *flag.FlagSet, error) {
	fs := flag.NewFlagSet("dialkv sim", flag.ContinueOnError)
	fs.SetOutput(out)
	d := simrun.Defaults()
	var (
		o                              simrun.Options
		cf                             cliFlags
		faultList, rates, params, keep string
	)
	fs.StringVar(&o.Strategy, "strategy", d.Strategy, "strategy: "+strings.Join(StrategyNames(), ", "))
	fs.Uint64Var(&o.Seed, "seed", d.Seed, "the run's seed")
	fs.StringVar(&cf.seeds, "seeds", "", "sweep seeds A..B (inclusive) on --workers parallel runs")
	fs.IntVar(&o.Ops, "ops", d.Ops, "operations in the safety phase")
	fs.IntVar(&o.LiveOps, "live-ops", d.LiveOps, "operations in the liveness phase (then a final read of every key)")
	fs.IntVar(&o.Clients, "clients", d.Clients, "concurrent clients (each one operation at a time)")
	fs.IntVar(&o.Nodes, "nodes", d.Nodes, "replicas")
	fs.IntVar(&o.TokenlessReaders, "tokenless-readers", 0, "add N read-only clients that never send a session token, each stuck to one node of the last region (the writers then use only region 0's nodes)")
	fs.StringVar(&faultList, "faults", "", "comma-separated fault kinds, 'all' or 'none' (default: "+joinKinds(faults.DefaultKinds())+"); see --list-faults")
	fs.StringVar(&rates, "rates", "", "fix swarm-drawn rates, e.g. drop=0.05,crash/s=2 (names: "+strings.Join(faults.RateNames(), ", ")+")")
	fs.StringVar(&o.Bug, "bug", "", "run a deliberately broken variant (see --list-bugs)")
	fs.StringVar(&o.Workload, "workload", "", "workload: "+workloadNames()+" (default mixed, or the strategy's own: causal register)")
	fs.IntVar(&o.Keys, "keys", d.Keys, "keys per data type")
	fs.StringVar(&o.KeyDist, "key-dist", d.KeyDist, "key distribution: "+strings.Join(workload.KeyDists(), ", "))
	fs.StringVar(&o.Latency, "latency", d.Latency, "one-way latency within a region: const:D, uniform:A-B, exp:MEAN, pareto:SCALE,ALPHA, mix:W*DIST+W*DIST")
	fs.IntVar(&o.Regions, "regions", d.Regions, "spread the nodes round-robin over this many regions")
	fs.StringVar(&o.PairLatency, "pair-latency", "", "latency of directed region pairs, e.g. '0>1=const:80ms;1>0=exp:70ms' (regions from 0)")
	fs.IntVar(&o.Zones, "zones", d.Zones, "zones per region (links between zones add 0.5 ms to --latency)")
	fs.StringVar(&o.CrossRegion, "cross-region", d.CrossRegion, "one-way latency between regions (same syntax as --latency)")
	fs.DurationVar(&o.Think, "think", d.Think, "mean client think time between operations (exponential)")
	fs.DurationVar(&o.Timeout, "timeout", d.Timeout, "client operation timeout (writes then have an unknown outcome)")
	fs.DurationVar(&o.LivenessBound, "liveness-bound", 0, "virtual time after the faults stop within which the cluster must serve and converge (default "+d.LivenessBound.String()+", or three times the liveness phase's expected length, --live-ops/--clients x --think, when longer)")
	fs.DurationVar(&o.Horizon, "horizon", 0, "virtual time the fault plan spans (default: derived from --ops, --clients, --think)")
	fs.StringVar(&params, "params", "", "strategy parameters k=v,k=v (primary-backup: ack=all|majority, primary=nN)")
	fs.StringVar(&o.RingChange, "ring-change", "", "quorum only: change the ring during the run: add (the last node starts outside the ring and joins), remove (a member drawn from the seed leaves) or add,remove; at a virtual time drawn from the seed, through the joint, stream and stable states (docs/simulator.md)")
	fs.StringVar(&keep, "keep-faults", "", "keep only these fault-plan indices, e.g. 0,3 or none (set by --shrink)")
	fs.StringVar(&o.Out, "out", "", "report directory (default: a temporary directory, written only on failure)")
	fs.BoolVar(&cf.shrink, "shrink", false, "on failure, shrink the run (faults, operations, clients) and print the smaller reproducer")
	fs.BoolVar(&cf.listBugs, "list-bugs", false, "list the deliberately broken variants and exit")
	fs.BoolVar(&cf.listFaults, "list-faults", false, "list the fault kinds and exit")
	fs.IntVar(&cf.workers, "workers", runtime.GOMAXPROCS(0), "parallel runs for --seeds")
	fs.BoolVar(&cf.quiet, "quiet", false, "no progress bar")
	fs.BoolVar(&cf.help, "help", false, "show this help")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, cf, fs, err
	}
	if fs.NArg() > 0 {
		return o, cf, fs, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if faultList != "" {
		o.Faults = strings.Split(faultList, ",")
		if _, err := faults.ParseKinds(o.Faults); err != nil {
			return o, cf, fs, err
		}
	}
	if rates != "" {
		m, err := simrun.ParseMap(rates)
		if err != nil {
			return o, cf, fs, err
		}
		o.Rates = map[string]float64{}
		for k, v := range m {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 {
				return o, cf, fs, fmt.Errorf("rate %s=%q is not a non-negative number", k, v)
			}
			o.Rates[k] = f
		}
	}
	if params != "" {
		m, err := simrun.ParseMap(params)
		if err != nil {
			return o, cf, fs, err
		}
		o.Params = m
	}
	if keep != "" {
		o.KeepFaults = []int{}
		if keep != "none" {
			for _, s := range strings.Split(keep, ",") {
				i, err := strconv.Atoi(s)
				if err != nil || i < 0 {
					return o, cf, fs, fmt.Errorf("--keep-faults: %q is not an index", s)
				}
				o.KeepFaults = append(o.KeepFaults, i)
			}
		}
	}
	return o, cf, fs, nil
}

// gcPercent is the garbage collector's target for `dialkv sim` when GOGC is
// not set: runs allocate many short-lived objects and a larger heap target
// costs little memory here (measured: ~1.5x simulated operations per
// CPU-second over the default 100; docs/simulator.md).
const gcPercent = 400

// Main runs `dialkv sim`.
func Main(args []string, stdout, stderr io.Writer) int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	o, cf, fs, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) || (err == nil && cf.help) {
		fs.SetOutput(stdout)
		fs.Usage()
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "dialkv sim: %v\n", err)
		return 3
	}
	if cf.listBugs {
		for _, b := range AllBugs() {
			fmt.Fprintf(stdout, "%-28s %-16s %s\n", b.Name, b.Strategy, b.Breaks)
		}
		return 0
	}
	if cf.listFaults {
		for _, k := range faults.Kinds() {
			fmt.Fprintf(stdout, "%-10s %s\n", k.Kind, k.Desc)
		}
		return 0
	}
	if cf.seeds != "" {
		lo, hi, err := parseSeeds(cf.seeds)
		if err != nil {
			fmt.Fprintf(stderr, "dialkv sim: %v\n", err)
			return 3
		}
		return sweep(o, lo, hi, cf.workers, cf.shrink, cf.quiet, stdout, stderr)
	}
	return single(o, cf.shrink, stdout, stderr)
}

func joinKinds(ks []faults.Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ",")
}

func workloadNames() string {
	var s []string
	for _, k := range workload.Kinds() {
		s = append(s, k[0])
	}
	return strings.Join(s, ", ")
}

func parseSeeds(s string) (uint64, uint64, error) {
	a, b, ok := strings.Cut(s, "..")
	if !ok {
		return 0, 0, fmt.Errorf("--seeds %q: want A..B", s)
	}
	lo, err1 := strconv.ParseUint(a, 10, 64)
	hi, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || hi < lo {
		return 0, 0, fmt.Errorf("--seeds %q: want A..B with A <= B", s)
	}
	return lo, hi, nil
}

func defaultReportDir(o simrun.Options) string {
	name := "dialkv-sim-" + o.Normalize().Strategy
	if o.Bug != "" {
		name += "-" + o.Bug
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("%s-seed%d", name, o.Seed))
}

// single runs one seed and prints its verdict.
func single(o simrun.Options, shrink bool, stdout, stderr io.Writer) int {
	explicitOut := o.Out != ""
	res, err := Run(o)
	if err != nil {
		return runErr(err, stderr)
	}
	n := res.Options
	fmt.Fprintf(stdout, "strategy=%s seed=%d bug=%q rates: %s\n", n.Strategy, n.Seed, n.Bug, faults.Rates(res.Rates))
	fmt.Fprintf(stdout, "fault plan: %d faults over %v\n", len(res.FaultPlan), res.Horizon)
	fmt.Fprintf(stdout, "%s: %d ops (ok %d, fail %d, unknown %d), %d events, virtual %v, real %v\n",
		strings.ToUpper(string(res.Verdict)), res.Ops, res.OK, res.Failed, res.Unknown, res.Events,
		res.Virtual.Round(time.Millisecond), res.Real.Round(time.Millisecond))
	for _, p := range res.Problems {
		fmt.Fprintf(stdout, "  %s\n", p)
	}
	for _, l := range MeasureLines(res.Counters, res.Samples) {
		fmt.Fprintf(stdout, "measured: %s\n", l)
	}
	for _, c := range res.RingChanges {
		fmt.Fprintf(stdout, "ring change: %s\n", RingChangeLine(c))
	}
	if res.Verdict == simrun.Pass {
		if explicitOut {
			fmt.Fprintf(stdout, "report: %s\n", res.ReportDir)
		}
		return 0
	}
	if !explicitOut {
		o.Out = defaultReportDir(o)
		if res2, err := Run(o); err == nil {
			res = res2
		}
	}
	fmt.Fprintf(stdout, "reproduce: %s\nreport: %s\n", res.Options.Command(), o.Out)
	if shrink {
		so, sres := Shrink(res.Options, res.Verdict, 80, func(s string) { fmt.Fprintln(stderr, "shrink:", s) })
		fmt.Fprintf(stdout, "shrunk (%d ops, %d clients, %d faults): %s\n", sres.Ops, so.Clients, len(sres.FaultPlan), so.Command())
	}
	return res.Verdict.ExitCode()
}

func runErr(err error, stderr io.Writer) int {
	// Bad options and runs that could not be carried out alike: no
	// verdict, exit 3.
	fmt.Fprintf(stderr, "dialkv sim: %v\n", err)
	return 3
}

// sweep runs seeds lo..hi in parallel and prints a table.
func sweep(o simrun.Options, lo, hi uint64, workers int, shrink, quiet bool, stdout, stderr io.Writer) int {
	start := time.Now()
	total := int(hi - lo + 1)
	workers = max(1, min(workers, total))
	outRoot := o.Out
	results := make([]simrun.Result, total)
	errs := make([]error, total)
	next := make(chan int)
	var mu sync.Mutex
	done, failed := 0, 0
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				so := o
				so.Seed = lo + uint64(i)
				so.Out = ""
				res, err := Run(so)
				if err == nil && res.Verdict != simrun.Pass {
					if outRoot != "" {
						so.Out = filepath.Join(outRoot, fmt.Sprintf("seed-%d", so.Seed))
					} else {
						so.Out = defaultReportDir(so)
					}
					if r2, err2 := Run(so); err2 == nil {
						res = r2
					}
				}
				mu.Lock()
				results[i], errs[i] = res, err
				done++
				if err != nil || res.Verdict != simrun.Pass {
					failed++
				}
				if !quiet {
					progress(stderr, done, total, failed)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < total; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if !quiet {
		fmt.Fprintln(stderr)
	}
	var ops int
	var virt time.Duration
	passed := 0
	exit := 0
	var fails []string
	counters, samples := map[string]float64{}, map[string][]float64{}
	for i, res := range results {
		if errs[i] != nil {
			return runErr(errs[i], stderr)
		}
		ops += res.Ops
		virt += res.Virtual
		mergeMeasures(counters, samples, res.Counters, res.Samples)
		switch res.Verdict {
		case simrun.Pass:
			passed++
		case simrun.Safety:
			exit = 1
		case simrun.Liveness:
			if exit == 0 {
				exit = 2
			}
		}
		if res.Verdict != simrun.Pass {
			line := fmt.Sprintf("  seed %d: %s (%s) — %s\n      report: %s", res.Options.Seed, res.Verdict, firstProblem(res.Problems), res.Options.Command(), res.ReportDir)
			fails = append(fails, line)
		}
	}
	real := time.Since(start)
	fmt.Fprintf(stdout, "strategy      %s%s\n", o.Normalize().Strategy, bugNote(o.Bug))
	fmt.Fprintf(stdout, "seeds run     %d (%d..%d)\n", total, lo, hi)
	fmt.Fprintf(stdout, "passed        %d\n", passed)
	fmt.Fprintf(stdout, "failed        %d\n", total-passed)
	for _, f := range fails {
		fmt.Fprintln(stdout, f)
	}
	fmt.Fprintf(stdout, "operations    %d\n", ops)
	fmt.Fprintf(stdout, "virtual time  %v\n", virt.Round(time.Millisecond))
	fmt.Fprintf(stdout, "real time     %v on %d workers (virtual/real %.0fx)\n", real.Round(time.Millisecond), workers, float64(virt)/float64(real))
	for _, l := range MeasureLines(counters, samples) {
		fmt.Fprintf(stdout, "measured      %s\n", l)
	}
	if shrink {
		for _, res := range results {
			if res.Verdict != simrun.Pass {
				so, sres := Shrink(res.Options, res.Verdict, 80, func(string) {})
				fmt.Fprintf(stdout, "shrunk seed %d (%d ops, %d clients, %d faults): %s\n", so.Seed, sres.Ops, so.Clients, len(sres.FaultPlan), so.Command())
				break
			}
		}
	}
	return exit
}

func bugNote(b string) string {
	if b == "" {
		return ""
	}
	return " (bug " + b + ")"
}

func firstProblem(p []string) string {
	if len(p) == 0 {
		return ""
	}
	s := p[0]
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return s
}

func progress(w io.Writer, done, total, failed int) {
	const width = 30
	n := done * width / total
	fmt.Fprintf(w, "\r[%s%s] %d/%d seeds, %d failed", strings.Repeat("=", n), strings.Repeat(" ", width-n), done, total, failed)
}
