// Command failover is experiment 7 of PAPER.md (simulator half): how long
// writes are unavailable after the node they depend on crashes — raft's
// leader, primary-backup's primary — over a seed sweep, in virtual time.
//
// Raft runs with leader-targeted crashes (--params target=leader: every
// planned crash hits the node leading shard 0 at that moment, Jepsen-style);
// primary-backup with crashes of random nodes, of which those of the
// primary (n1) count. Crash times come from the run's trace ("nX crash"
// lines). Two measures per crash:
//
//   - write recovery: from the crash to the completion of the first write
//     (put, delete, or a cas that took effect) invoked after the crash that
//     succeeded — what a client sees;
//   - for raft, also the simulator's own failover probe: from the crash to
//     the moment another node, believing itself leader, served a
//     linearizable read (the trace's "failover" lines).
//
// Primary-backup has a fixed view (no elections), so its "failover" is the
// primary's downtime plus recovery: shown as the baseline raft improves on.
// Rebalancing time, and failover on real clusters, are not measured here.
//
// Run: go run ./experiments/failover [--seeds N] [--quick].
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/experiments/internal/simexp"
	"github.com/dialkv/dialkv/sim/simrun"
)

func options(strategy string, seed uint64, ops int) simrun.Options {
	o := simrun.Options{Strategy: strategy, Seed: seed, Ops: ops, Workload: "register",
		Faults: []string{"crash"}, Rates: map[string]float64{"crash/s": 2, "fault-mean-ms": 400}}
	if strategy == "raft" {
		o.Params = map[string]string{"target": "leader"}
	}
	return o
}

// crashes returns the virtual times (ns) at which the node that writes
// depend on crashed, and raft's failover probe durations.
func crashes(trace []byte, strategy string) (at []int64, probes []time.Duration, err error) {
	sc := bufio.NewScanner(bytes.NewReader(trace))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		f := strings.SplitN(line, " ", 4)
		if len(f) < 4 {
			continue
		}
		switch {
		case f[2] == "crash":
			if strategy == "raft" && !strings.Contains(f[3], "(leader of shard 0: true)") {
				continue
			}
			if strategy == "primary-backup" && f[1] != "n1" {
				continue
			}
			t, err := simexp.TraceTime(f[0])
			if err != nil {
				return nil, nil, err
			}
			at = append(at, t)
		case f[2] == "failover":
			// "serving linearizable reads of shard 0 123.98ms after the leader crashed"
			w := strings.Fields(f[3])
			for i, x := range w {
				if x == "after" && i > 0 {
					d, err := time.ParseDuration(w[i-1])
					if err != nil {
						return nil, nil, fmt.Errorf("failover line %q: %w", line, err)
					}
					probes = append(probes, d)
				}
			}
		}
	}
	return at, probes, sc.Err()
}

// recoveries measures, for each crash, the time to the completion of the
// first successful write invoked after it (-1: none before the history
// ends).
func recoveries(ops []checker.Op, at []int64) []time.Duration {
	var out []time.Duration
	for _, c := range at {
		best := int64(-1)
		for _, op := range ops {
			if op.Invoke < c || op.Outcome != checker.OK || op.Complete == nil ||
				(op.F != checker.FPut && op.F != checker.FDelete && op.F != checker.FCAS) {
				continue
			}
			if best < 0 || *op.Complete < best {
				best = *op.Complete
			}
		}
		if best >= 0 {
			out = append(out, time.Duration(best-c))
		}
	}
	return out
}

func ms(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / 1e6
	}
	return out
}

func main() {
	seeds := flag.Int("seeds", 20, "seeds per strategy (1..N)")
	ops := flag.Int("ops", 1500, "operations per run (safety phase)")
	workers := flag.Int("workers", 2, "parallel runs (raft runs are serialised anyway)")
	quick := flag.Bool("quick", false, "2 seeds, 600 operations (for tests)")
	dir := flag.String("out", "experiments/results/failover", "results directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: go run ./experiments/failover [--seeds N] [--ops N] [--workers N] [--quick] [--out DIR]\n\n"+
			"Failover time in the simulator: leader (raft) or primary (primary-backup) crash to the first successful write.")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *quick {
		*seeds, *ops = 2, 600
	}
	out, err := expio.New(*dir, os.Stderr)
	if err == nil {
		err = run(out, *seeds, *ops, *workers, *quick)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

type cell struct {
	strategy string
	crashes  int
	writes   []time.Duration
	probes   []time.Duration
	notPass  []string
}

func run(out *expio.Out, seeds, ops, workers int, quick bool) error {
	cells := []*cell{{strategy: "raft"}, {strategy: "primary-backup"}}
	type job struct {
		c    *cell
		seed uint64
	}
	var jobs []job
	for _, c := range cells {
		for s := 1; s <= seeds; s++ {
			jobs = append(jobs, job{c, uint64(s)})
		}
	}
	type result struct {
		crashes        int
		writes, probes []time.Duration
		verdict        simrun.Verdict
		cmd            string
	}
	res := make([]result, len(jobs))
	var done atomic.Int64
	err := simexp.Parallel(len(jobs), workers, func(i int) error {
		j := jobs[i]
		o := options(j.c.strategy, j.seed, ops)
		r, err := simexp.Sim(o)
		if err != nil {
			return err
		}
		at, probes, err := crashes(r.Trace, j.c.strategy)
		if err != nil {
			return fmt.Errorf("%s: %w", o.Command(), err)
		}
		res[i] = result{crashes: len(at), writes: recoveries(r.Ops, at), probes: probes, verdict: r.Res.Verdict, cmd: o.Command()}
		out.Logf("failover: %d/%d %s seed %d: %s, %d crashes, write recovery %v", done.Add(1), len(jobs), j.c.strategy, j.seed,
			r.Res.Verdict, len(at), res[i].writes)
		return nil
	})
	if err != nil {
		return err
	}
	for i, j := range jobs {
		j.c.crashes += res[i].crashes
		j.c.writes = append(j.c.writes, res[i].writes...)
		j.c.probes = append(j.c.probes, res[i].probes...)
		if res[i].verdict != simrun.Pass {
			j.c.notPass = append(j.c.notPass, res[i].cmd)
		}
	}
	cmd := fmt.Sprintf("go run ./experiments/failover --seeds %d --ops %d", seeds, ops)
	if quick {
		cmd = "go run ./experiments/failover --quick"
	}
	if err := out.Params(cmd, map[string]any{"seeds": fmt.Sprintf("1..%d", seeds), "ops": ops,
		"raft": options("raft", 1, ops).Command(), "primary-backup": options("primary-backup", 1, ops).Command(),
		"raft_timing": "RTT 10ms, election 10 RTT (sim/raftsim defaults)"}); err != nil {
		return err
	}
	header := []string{"strategy", "measure", "crashes", "samples", "median_ms", "p90_ms", "max_ms", "runs_not_passing"}
	var rows [][]string
	add := func(c *cell, measure string, ds []time.Duration) {
		xs := ms(ds)
		mx := "-"
		if len(xs) > 0 {
			mx = simexp.F(simexp.Quantile(xs, 1), 1)
		}
		rows = append(rows, []string{c.strategy, measure, fmt.Sprint(c.crashes), fmt.Sprint(len(xs)),
			simexp.F(simexp.Median(xs), 1), simexp.F(simexp.Quantile(xs, 0.9), 1), mx, fmt.Sprint(len(c.notPass))})
	}
	add(cells[0], "crash to first ok write", cells[0].writes)
	add(cells[0], "crash to linearizable read at new leader (sim probe)", cells[0].probes)
	add(cells[1], "crash to first ok write", cells[1].writes)
	if err := out.CSV("failover", header, rows); err != nil {
		return err
	}
	md := fmt.Sprintf("Failover in the simulator (virtual time), seeds 1..%d, %d safety-phase operations per run, "+
		"register workload, crashes at 2/s with mean downtime 400 ms. Raft: every crash hits the current leader "+
		"(RTT 10 ms, election timeout 10 RTT). Primary-backup: crashes of random nodes, those of the primary n1 "+
		"counted; it has no failover, so its figure is the primary's downtime plus recovery.\n\n", seeds, ops) +
		expio.Table(header, rows) + "\nReproduce: `" + cmd + "`\n"
	for _, c := range cells {
		for _, x := range c.notPass {
			md += "\nNot passing: `" + x + "`"
		}
	}
	if err := out.Markdown("table", md+"\n"); err != nil {
		return err
	}
	var series []expio.Series
	for _, s := range []struct {
		name string
		ds   []time.Duration
	}{{"raft: first ok write", cells[0].writes}, {"raft: new leader serves reads", cells[0].probes}, {"primary-backup: first ok write", cells[1].writes}} {
		xs := ms(s.ds)
		if len(xs) == 0 {
			continue
		}
		simexp.Median(xs) // sorts
		se := expio.Series{Name: s.name}
		for i, x := range xs {
			se.X, se.Y = append(se.X, x), append(se.Y, float64(i+1)/float64(len(xs)))
		}
		series = append(series, se)
	}
	if len(series) == 0 {
		return nil
	}
	return out.LinePlot("failover-cdf", "failover time CDF (virtual)", "ms after the crash (log)", "fraction of crashes", series, true)
}
