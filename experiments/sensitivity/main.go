// Command sensitivity is experiment 5 of PAPER.md: how well the simulator
// and its checkers catch each deliberately broken variant (sim.AllBugs()).
//
// For every bug, a fault setup meant to expose it (the ones the strategies'
// own tests and docs use) is run on seeds 1..N with the bug and, on the same
// seeds and setup, without it. Reported per bug: the fraction of seeds whose
// run is flagged (verdict safety or liveness), the correct variant's false-positive rate
// (any verdict but pass; it must be 0), and the operations until caught: for
// each flagged run, the position in the history (1 + the largest operation
// id) of the last operation of the earliest anomaly the checkers report —
// the point from which the history shows the bug. A lost write is only
// visible in the final reads, so durability bugs count the whole history.
// The median over flagged seeds is reported.
//
// Run: go run ./experiments/sensitivity [--seeds N] [--quick].
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/experiments/internal/simexp"
	"github.com/dialkv/dialkv/sim"
	"github.com/dialkv/dialkv/sim/raftsim"
	"github.com/dialkv/dialkv/sim/simrun"
)

// setup returns the fault setup for a bug ("" Bug: the correct variant).
func setup(bug, strategy string, quick bool) simrun.Options {
	o := simrun.Options{Strategy: strategy, Bug: bug, Ops: 500}
	switch bug {
	case "stale-backup-read":
		o.Workload, o.Clients = "register", 8
		o.Faults = []string{"partition", "delay", "pause"}
		o.Rates = map[string]float64{"partition/s": 3, "delay": 0.2}
	case "ack-before-replicate":
		o.Faults = []string{"crash", "partition", "delay"}
		o.Rates = map[string]float64{"crash/s": 2}
	case "read-repair-drops-siblings":
		o.Workload, o.Keys = "set", 20
	case "aae-skips-tombstones":
		o.Workload, o.Keys = "register", 100
		o.Params = map[string]string{"read_repair": "off"}
	case "lww-no-clock":
		o.Workload = "register"
		o.Faults = []string{"skew", "partition"}
		o.Rates = map[string]float64{"skew-ms": 500}
		o.Params = map[string]string{"resolve": "lww"}
	case "causal-no-dep-check":
		// Clients that carry session tokens wait for a value's
		// dependencies themselves, which masks this bug; token-less
		// readers stuck to one node see it (docs/simulator.md).
		o.Regions, o.Nodes, o.TokenlessReaders = 2, 4, 3
	case "causal-ignore-token":
		o.Regions, o.Nodes, o.Clients = 2, 4, 8
		o.Faults = []string{"partition", "delay", "clog"}
		o.Rates = map[string]float64{"delay": 0.3}
	case "local-read", "ack-before-commit":
		// sim/raftsim's bug-hunting configuration (sweep_test.go).
		o.Ops, o.Workload, o.Clients, o.Keys, o.Timeout = 1000, "register", 10, 2, 200*time.Millisecond
		o.Faults = []string{"pause", "partition", "crash"}
		o.Rates = map[string]float64{"pause/s": 4, "partition/s": 1, "crash/s": 1, "fault-mean-ms": 300}
		o.Params = map[string]string{"target": "leader"}
	case "txn-one-vote":
		// sim/raftsim's bank configuration (sweep_test.go bankOpts):
		// cross-shard transfers, the bank check.
		o.Ops, o.Workload, o.Clients, o.Keys, o.Timeout = 400, "bank", 10, 6, time.Second
		o.Faults = []string{"pause", "partition", "crash"}
		o.Rates = map[string]float64{"pause/s": 2, "partition/s": 1, "crash/s": 1, "fault-mean-ms": 300}
		o.Params = map[string]string{"target": "leader", "shards": "3", "logdb": "tan"}
	}
	if quick {
		o.Ops = 200
	}
	return o
}

// checksFor lists the checks the strategy's runs must pass.
func checksFor(strategy string) []string {
	for _, s := range sim.Strategies() {
		if s.Name == strategy {
			return s.Checks
		}
	}
	return raftsim.Checks
}

// caughtAt is 1 + the largest operation id of the earliest anomaly (the
// one whose evidence is complete first); 0 when no anomaly is reported.
func caughtAt(ops []checker.Op, reps []checker.ReplicaState, checks []string) int64 {
	opts := checker.DefaultOptions()
	opts.Checks = checks
	opts.MaxExamples = 1 << 20
	opts.Visualize = 0
	opts.Timeout = 30 * time.Second
	res := checker.Check(ops, reps, opts)
	best := int64(0)
	for _, c := range res.Checks {
		for _, a := range c.Anomalies {
			last := int64(-1)
			for _, op := range a.Ops {
				last = max(last, op.ID)
			}
			if len(a.Ops) == 0 {
				last = int64(len(ops)) - 1 // e.g. convergence: the final states
			}
			if best == 0 || last+1 < best {
				best = last + 1
			}
		}
	}
	return best
}

type row struct {
	bug, strategy string
	caught, runs  int // caught: flagged (any verdict but pass)
	safety        int // flagged with a safety verdict
	fp            int
	fpCmds        []string
	at            []float64
	example       string // a flagged run's reproducer
	setup         simrun.Options
}

func main() {
	seeds := flag.Int("seeds", 20, "seeds per bug and for the correct variant (1..N)")
	workers := flag.Int("workers", 2, "parallel runs")
	quick := flag.Bool("quick", false, "2 seeds, 200 operations, first two bugs only (for tests)")
	dir := flag.String("out", "experiments/results/sensitivity", "results directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: go run ./experiments/sensitivity [--seeds N] [--workers N] [--quick] [--out DIR]\n\n"+
			"Per deliberately broken variant: fraction of seeds caught, median operations until caught, and the correct variant's false positives.")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *quick {
		*seeds = 2
	}
	out, err := expio.New(*dir, os.Stderr)
	if err == nil {
		err = run(out, *seeds, *workers, *quick)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sensitivity:", err)
		os.Exit(1)
	}
}

func run(out *expio.Out, seeds, workers int, quick bool) error {
	bugs := sim.AllBugs()
	if quick {
		bugs = bugs[:2]
	}
	rows := make([]*row, len(bugs))
	type job struct {
		r       *row
		seed    uint64
		correct bool
	}
	var jobs []job
	for i, b := range bugs {
		rows[i] = &row{bug: b.Name, strategy: b.Strategy, setup: setup(b.Name, b.Strategy, quick)}
		for s := 1; s <= seeds; s++ {
			jobs = append(jobs, job{rows[i], uint64(s), false}, job{rows[i], uint64(s), true})
		}
	}
	type result struct {
		verdict simrun.Verdict
		at      int64
		cmd     string
	}
	res := make([]result, len(jobs))
	var done atomic.Int64
	err := simexp.Parallel(len(jobs), workers, func(i int) error {
		j := jobs[i]
		o := j.r.setup
		o.Seed = j.seed
		if j.correct {
			o.Bug = ""
		}
		r, err := simexp.Sim(o)
		if err != nil {
			return err
		}
		res[i] = result{verdict: r.Res.Verdict, cmd: o.Command()}
		if !j.correct && r.Res.Verdict == simrun.Safety {
			checks := checksFor(o.Strategy)
			if o.Workload == "bank" {
				checks = append(slices.Clone(checks), checker.CheckBank)
			}
			res[i].at = caughtAt(r.Ops, r.Replicas, checks)
		}
		variant := "bug " + j.r.bug
		if j.correct {
			variant = "correct " + j.r.strategy + " (setup of " + j.r.bug + ")"
		}
		out.Logf("sensitivity: %d/%d %s seed %d: %s", done.Add(1), len(jobs), variant, j.seed, r.Res.Verdict)
		return nil
	})
	if err != nil {
		return err
	}
	for i, j := range jobs {
		r := j.r
		switch {
		case j.correct && res[i].verdict != simrun.Pass:
			r.fp++
			r.fpCmds = append(r.fpCmds, res[i].cmd+"  # "+string(res[i].verdict))
		case !j.correct:
			r.runs++
			if res[i].verdict == simrun.Safety {
				r.safety++
			}
			if res[i].verdict != simrun.Pass {
				r.caught++
				if r.example == "" {
					r.example = res[i].cmd
				}
				if res[i].at > 0 {
					r.at = append(r.at, float64(res[i].at))
				}
			}
		}
	}
	return write(out, rows, seeds, workers, quick)
}

func write(out *expio.Out, rows []*row, seeds, workers int, quick bool) error {
	cmd := fmt.Sprintf("go run ./experiments/sensitivity --seeds %d", seeds)
	if quick {
		cmd = "go run ./experiments/sensitivity --quick"
	}
	setups := map[string]string{}
	for _, r := range rows {
		setups[r.bug] = r.setup.Command()
	}
	if err := out.Params(cmd, map[string]any{"seeds": fmt.Sprintf("1..%d", seeds), "workers": workers, "setups": setups}); err != nil {
		return err
	}
	header := []string{"bug", "strategy", "caught", "caught_pct", "safety_verdicts", "median_ops_until_caught", "correct_false_positives", "setup (add --bug NAME --seed N)"}
	var tr [][]string
	for _, r := range rows {
		s := r.setup
		s.Bug = ""
		args := strings.Join(s.Args()[2:], " ")
		args = strings.Replace(args, "--seed 0 ", "", 1)
		tr = append(tr, []string{r.bug, r.strategy, fmt.Sprintf("%d/%d", r.caught, r.runs),
			simexp.F(100*float64(r.caught)/float64(max(1, r.runs)), 0), fmt.Sprint(r.safety), simexp.F(simexp.Median(r.at), 0),
			fmt.Sprintf("%d/%d", r.fp, r.runs), "`" + args + "`"})
	}
	csvRows := make([][]string, len(tr))
	for i := range tr {
		csvRows[i] = append([]string(nil), tr[i]...)
		csvRows[i][7] = strings.Trim(csvRows[i][7], "`")
	}
	if err := out.CSV("sensitivity", header, csvRows); err != nil {
		return err
	}
	md := fmt.Sprintf("Checker sensitivity in the simulator: each deliberately broken variant on seeds 1..%d under the "+
		"fault setup shown, and the correct variant of the same strategy on the same seeds and setup. caught = runs "+
		"flagged (verdict safety or liveness; safety_verdicts counts the former); median_ops_until_caught = median over caught runs of 1 + the largest operation id of "+
		"the earliest anomaly the checkers report (lost writes show only in the final reads, so they count the whole "+
		"history); correct_false_positives = correct runs whose verdict was not pass (must be 0).\n\n", seeds) +
		expio.Table(header, tr) + "\nReproduce: `" + cmd + "`\n"
	for _, r := range rows {
		if r.example != "" {
			md += "\nFlagged example, " + r.bug + ": `" + r.example + "`"
		}
		for _, c := range r.fpCmds {
			md += "\nFalse positive: `" + c + "`"
		}
	}
	if err := out.Markdown("table", md+"\n"); err != nil {
		return err
	}
	// Cumulative fraction of seeds caught by operations-until-caught.
	var series []expio.Series
	for _, r := range rows {
		if len(r.at) == 0 {
			continue
		}
		sort.Float64s(r.at)
		s := expio.Series{Name: r.bug}
		for i, x := range r.at {
			s.X = append(s.X, x)
			s.Y = append(s.Y, float64(i+1)/float64(r.runs))
		}
		series = append(series, s)
	}
	if len(series) == 0 {
		return nil
	}
	return out.LinePlot("caught-by-ops", "fraction of seeds caught vs operations until caught", "operations into the history (log)", "fraction of seeds caught", series, true)
}
