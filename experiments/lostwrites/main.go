// Command lostwrites is experiment 4 of PAPER.md: acknowledged writes lost
// under partitions and clock skew by the quorum strategy's conflict
// resolvers — last-writer-wins (resolve=lww), siblings (resolve=siblings)
// and CRDTs (resolve=crdt) — over a seed sweep, in the simulator.
//
// Two workloads:
//
//   - jepsen-set: SADDs of unique elements, then a final read of every set;
//     a lost write is an acknowledged SADD missing from the final read (the
//     checker's durability check: adds_acknowledged - adds_present).
//   - register: get/put/delete/cas on a few keys. A lost write is an
//     acknowledged put that no later write superseded in real time (no
//     write to the key was invoked after it completed) and whose value is
//     not among the values of the key's last successful read (the final
//     read after the faults healed, siblings included).
//
// Faults: partitions (fixed rates) and a per-node clock offset drawn in
// ±skew-ms, for several skews. The siblings resolver serves only registers:
// on the set workload every SADD is refused (acknowledged = 0), which the
// table shows rather than hides.
//
// Run: go run ./experiments/lostwrites [--seeds N] [--ops N] [--quick].
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"sync/atomic"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/experiments/internal/simexp"
	"github.com/dialkv/dialkv/sim/simrun"
)

// config is one cell of the sweep.
type config struct {
	Resolve  string
	Workload string
	SkewMS   float64
}

func configs(skews []float64) []config {
	var out []config
	for _, w := range []string{"jepsen-set", "register"} {
		for _, r := range []string{"lww", "siblings", "crdt"} {
			for _, s := range skews {
				out = append(out, config{r, w, s})
			}
		}
	}
	return out
}

func options(c config, seed uint64, ops int) simrun.Options {
	o := simrun.Options{Strategy: "quorum", Seed: seed, Ops: ops, Workload: c.Workload,
		Faults: []string{"partition", "skew"},
		Rates:  map[string]float64{"partition/s": 2, "fault-mean-ms": 500, "skew-ms": c.SkewMS, "drift-ppm": 0},
		Params: map[string]string{"resolve": c.Resolve}}
	if c.Workload == "register" {
		o.Keys = 20 // more keys, more writes that stay the latest of their key
	}
	return o
}

// count is what one run lost.
type count struct{ acked, lost int64 }

// setLosses uses the checker's durability counts.
func setLosses(r *simexp.Run) (count, error) {
	opts := checker.DefaultOptions()
	opts.Checks = []string{checker.CheckDurability}
	res := checker.Check(r.Ops, r.Replicas, opts)
	d := res.Get(checker.CheckDurability)
	if d == nil {
		return count{}, fmt.Errorf("no durability result")
	}
	acked := d.Counts["adds_acknowledged"]
	return count{acked: acked, lost: acked - d.Counts["adds_present"]}, nil
}

// registerLosses counts acknowledged, never-superseded puts missing from
// the key's last successful read.
func registerLosses(ops []checker.Op) count {
	type keyInfo struct {
		puts      []checker.Op
		lastWrite int64 // latest invocation of any write (any outcome but fail)
		final     *checker.Op
	}
	keys := map[string]*keyInfo{}
	get := func(k string) *keyInfo {
		if keys[k] == nil {
			keys[k] = &keyInfo{lastWrite: -1}
		}
		return keys[k]
	}
	for i := range ops {
		op := &ops[i]
		ki := get(op.Key)
		switch op.F {
		case checker.FPut, checker.FDelete, checker.FCAS:
			if op.Outcome == checker.Fail {
				continue
			}
			ki.lastWrite = max(ki.lastWrite, op.Invoke)
			if op.F == checker.FPut && op.Outcome == checker.OK && len(op.Args) == 1 {
				ki.puts = append(ki.puts, *op)
			}
		case checker.FGet:
			if op.Outcome == checker.OK && op.Complete != nil && (ki.final == nil || *op.Complete > *ki.final.Complete) {
				ki.final = op
			}
		}
	}
	var c count
	for _, ki := range keys {
		if ki.final == nil {
			continue
		}
		var seen []string
		if ki.final.Value != nil {
			seen = append(seen, *ki.final.Value)
		}
		seen = append(seen, ki.final.Values...)
		for _, p := range ki.puts {
			// Superseded in real time: another write was invoked after p
			// completed (ids are unique, so compare against p's own).
			superseded := false
			for _, q := range ops {
				if q.Key == p.Key && q.ID != p.ID && q.Outcome != checker.Fail &&
					(q.F == checker.FPut || q.F == checker.FDelete || q.F == checker.FCAS) && q.Invoke > *p.Complete {
					superseded = true
					break
				}
			}
			if superseded || *p.Complete > ki.final.Invoke {
				continue // not a latest write, or not finished before the final read began
			}
			c.acked++
			if !slices.Contains(seen, p.Args[0]) {
				c.lost++
			}
		}
	}
	return c
}

type cell struct {
	c          config
	total      count
	seedsLossy int
	runs       int
	notPass    int
}

func main() {
	seeds := flag.Int("seeds", 10, "seeds per configuration (1..N)")
	ops := flag.Int("ops", 1000, "operations per run (safety phase)")
	workers := flag.Int("workers", 2, "parallel runs")
	quick := flag.Bool("quick", false, "one seed, 300 operations, skews 0 and 500 ms (for tests)")
	dir := flag.String("out", "experiments/results/lostwrites", "results directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: go run ./experiments/lostwrites [--seeds N] [--ops N] [--workers N] [--quick] [--out DIR]\n\n"+
			"Acknowledged writes lost by quorum's lww, siblings and crdt resolvers under partitions and clock skew.")
		flag.PrintDefaults()
	}
	flag.Parse()
	skews := []float64{0, 100, 1000}
	if *quick {
		*seeds, *ops, skews = 1, 300, []float64{0, 500}
	}
	out, err := expio.New(*dir, os.Stderr)
	if err == nil {
		err = run(out, *seeds, *ops, *workers, skews, *quick)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lostwrites:", err)
		os.Exit(1)
	}
}

func run(out *expio.Out, seeds, ops, workers int, skews []float64, quick bool) error {
	cfgs := configs(skews)
	cells := make([]cell, len(cfgs))
	type job struct {
		c    int
		seed uint64
	}
	var jobs []job
	for i, c := range cfgs {
		cells[i].c = c
		for s := 1; s <= seeds; s++ {
			jobs = append(jobs, job{i, uint64(s)})
		}
	}
	counts := make([]count, len(jobs))
	verdicts := make([]simrun.Verdict, len(jobs))
	var done atomic.Int64
	err := simexp.Parallel(len(jobs), workers, func(i int) error {
		j := jobs[i]
		o := options(cfgs[j.c], j.seed, ops)
		r, err := simexp.Sim(o)
		if err != nil {
			return err
		}
		if cfgs[j.c].Workload == "register" {
			counts[i] = registerLosses(r.Ops)
		} else if counts[i], err = setLosses(r); err != nil {
			return fmt.Errorf("%s: %w", o.Command(), err)
		}
		verdicts[i] = r.Res.Verdict
		out.Logf("lostwrites: %d/%d %+v seed %d: %d of %d acknowledged writes lost (%s)", done.Add(1), len(jobs), cfgs[j.c], j.seed, counts[i].lost, counts[i].acked, r.Res.Verdict)
		return nil
	})
	if err != nil {
		return err
	}
	for i, j := range jobs {
		c := &cells[j.c]
		c.total.acked += counts[i].acked
		c.total.lost += counts[i].lost
		c.runs++
		if counts[i].lost > 0 {
			c.seedsLossy++
		}
		if verdicts[i] != simrun.Pass {
			c.notPass++
		}
	}
	return write(out, cells, seeds, ops, workers, skews, quick)
}

func (c count) frac() float64 {
	if c.acked == 0 {
		return -1
	}
	return float64(c.lost) / float64(c.acked)
}

func write(out *expio.Out, cells []cell, seeds, ops, workers int, skews []float64, quick bool) error {
	cmd := fmt.Sprintf("go run ./experiments/lostwrites --seeds %d --ops %d", seeds, ops)
	if quick {
		cmd = "go run ./experiments/lostwrites --quick"
	}
	if err := out.Params(cmd, map[string]any{"seeds": fmt.Sprintf("1..%d", seeds), "ops": ops, "workers": workers,
		"skews_ms": skews, "strategy": "quorum n=3 r=2 w=2 (defaults)", "faults": "partition,skew",
		"reproduce_one_run": options(cells[0].c, 1, ops).Command()}); err != nil {
		return err
	}
	header := []string{"workload", "resolve", "skew_ms", "acknowledged", "lost", "lost_pct", "runs_with_loss", "runs", "runs_not_passing"}
	var rows [][]string
	for _, c := range cells {
		pct := "-"
		if f := c.total.frac(); f >= 0 {
			pct = simexp.F(100*f, 2)
		}
		rows = append(rows, []string{c.c.Workload, c.c.Resolve, simexp.F(c.c.SkewMS, 0), fmt.Sprint(c.total.acked),
			fmt.Sprint(c.total.lost), pct, fmt.Sprint(c.seedsLossy), fmt.Sprint(c.runs), fmt.Sprint(c.notPass)})
	}
	if err := out.CSV("lostwrites", header, rows); err != nil {
		return err
	}
	md := fmt.Sprintf("Acknowledged writes lost by the quorum strategy (N=3, R=W=2) per conflict resolver, "+
		"under partitions (2/s, mean 500 ms) and a per-node clock offset uniform in ±skew; %d safety-phase "+
		"operations per run, seeds 1..%d. jepsen-set: acknowledged SADDs missing from the final read (checker "+
		"durability). register: acknowledged puts not superseded in real time and missing from the key's final "+
		"read. \"-\": nothing acknowledged (the siblings resolver refuses set operations). runs_not_passing: runs "+
		"whose simulator checks (convergence, durability) failed.\n\n", ops, seeds) +
		expio.Table(header, rows) + "\nReproduce: `" + cmd + "`\n"
	if err := out.Markdown("table", md); err != nil {
		return err
	}
	for _, w := range []string{"jepsen-set", "register"} {
		var series []expio.Series
		for _, r := range []string{"lww", "siblings", "crdt"} {
			s := expio.Series{Name: "resolve=" + r}
			for _, c := range cells {
				if c.c.Workload == w && c.c.Resolve == r && c.total.acked > 0 {
					s.X = append(s.X, c.c.SkewMS)
					s.Y = append(s.Y, 100*c.total.frac())
				}
			}
			if len(s.X) > 0 {
				series = append(series, s)
			}
		}
		if len(series) == 0 {
			continue
		}
		if err := out.LinePlot("lost-"+w, "acknowledged writes lost vs clock skew, "+w+", partitions 2/s",
			"clock skew bound (ms)", "lost (% of acknowledged)", series, false); err != nil {
			return err
		}
	}
	return nil
}
