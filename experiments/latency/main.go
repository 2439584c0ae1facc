// Command latency is experiment 1 of PAPER.md: operation latency (p50 and
// p99 of the reads and of the writes that completed) and throughput
// (completed operations per virtual second) per strategy and per
// consistency level, in the simulator, with a configured network latency
// and no faults.
//
// Every run is `dialkv sim --workload register --faults none` with the
// strategy's parameters; only get, put and delete count (cas is a
// transaction, which quorum and causal refuse), and only the safety phase's
// operations. Clients run a closed loop (one operation at a time, 2 ms mean
// think time), so throughput is what 5 such clients get, not a saturation
// point. Two topologies: one region (one-way latency exp:1ms) and three
// regions (one node in each, 20-40 ms between regions with a Pareto tail).
//
// Run: go run ./experiments/latency [--seeds N] [--ops N] [--quick].
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/experiments/internal/simexp"
	"github.com/dialkv/dialkv/sim/simrun"
)

// level is one strategy at one consistency level.
type level struct {
	Label    string
	Strategy string
	Params   map[string]string
}

func levels() []level {
	l := []level{
		{"primary-backup ack=all", "primary-backup", map[string]string{"ack": "all"}},
		{"primary-backup ack=majority", "primary-backup", map[string]string{"ack": "majority"}},
		{"raft read=linearizable", "raft", map[string]string{"read": "linearizable"}},
		{"raft read=lease", "raft", map[string]string{"read": "lease"}},
		{"raft read=stale", "raft", map[string]string{"read": "stale"}},
	}
	for r := 1; r <= 3; r++ {
		for w := 1; w <= 3; w++ {
			l = append(l, level{fmt.Sprintf("quorum R=%d W=%d", r, w), "quorum",
				map[string]string{"r": fmt.Sprint(r), "w": fmt.Sprint(w), "resolve": "lww"}})
		}
	}
	l = append(l,
		level{"quorum linearizable (ABD, R=W=2)", "quorum", map[string]string{"mode": "linearizable", "resolve": "lww"}},
		level{"causal", "causal", nil})
	return l
}

// topology is a network configuration.
type topology struct {
	Name        string
	Regions     int
	Latency     string
	CrossRegion string
}

func topologies() []topology {
	return []topology{
		{"1 region", 1, "exp:1ms", ""},
		{"3 regions", 3, "exp:1ms", "mix:0.9*uniform:20ms-40ms+0.1*pareto:30ms,1.5"},
	}
}

// stats summarises the safety-phase operations of one or more runs.
type stats struct {
	reads, writes []float64 // latencies of completed ok operations, ms
	okOps         int
	virtualNS     int64 // summed over runs: first invoke to last completion
	fails         int   // get/put/delete that failed or were unknown
}

func isWrite(f string) bool { return f == "put" || f == "delete" }

// add folds one run's history into s: the operations with id < ops.
func (s *stats) add(ops []checker.Op, safetyOps int) {
	var first, last int64 = -1, 0
	for _, op := range ops {
		if op.ID >= int64(safetyOps) {
			continue
		}
		if first < 0 || op.Invoke < first {
			first = op.Invoke
		}
		if op.Complete != nil && *op.Complete > last {
			last = *op.Complete
		}
		if op.F != "get" && !isWrite(op.F) {
			continue
		}
		if op.Outcome != checker.OK || op.Complete == nil {
			s.fails++
			continue
		}
		ms := float64(*op.Complete-op.Invoke) / 1e6
		if isWrite(op.F) {
			s.writes = append(s.writes, ms)
		} else {
			s.reads = append(s.reads, ms)
		}
		s.okOps++
	}
	if first >= 0 && last > first {
		s.virtualNS += last - first
	}
}

func (s *stats) throughput() float64 {
	if s.virtualNS == 0 {
		return 0
	}
	return float64(s.okOps) / (float64(s.virtualNS) / 1e9)
}

func options(l level, t topology, seed uint64, ops int) simrun.Options {
	o := simrun.Options{Strategy: l.Strategy, Seed: seed, Ops: ops, LiveOps: 1, Workload: "register",
		Faults: []string{"none"}, Regions: t.Regions, Latency: t.Latency, CrossRegion: t.CrossRegion}
	if len(l.Params) > 0 {
		o.Params = map[string]string{}
		for k, v := range l.Params {
			o.Params[k] = v
		}
	}
	return o
}

type cell struct {
	l  level
	t  topology
	st stats
	// failed runs (verdict not pass): reported, never hidden
	notPass []string
}

func main() {
	seeds := flag.Int("seeds", 3, "seeds per configuration (1..N)")
	ops := flag.Int("ops", 1000, "operations per run (safety phase)")
	workers := flag.Int("workers", 2, "parallel runs")
	quick := flag.Bool("quick", false, "one seed, 200 operations, one topology (for tests)")
	dir := flag.String("out", "experiments/results/latency", "results directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: go run ./experiments/latency [--seeds N] [--ops N] [--workers N] [--quick] [--out DIR]\n\n"+
			"Latency (p50/p99) and throughput per strategy and consistency level in the simulator, no faults.")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *quick {
		*seeds, *ops = 1, 200
	}
	out, err := expio.New(*dir, os.Stderr)
	if err == nil {
		err = run(out, *seeds, *ops, *workers, *quick)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

func run(out *expio.Out, seeds, ops, workers int, quick bool) error {
	tops := topologies()
	if quick {
		tops = tops[:1]
	}
	var cells []*cell
	for _, t := range tops {
		for _, l := range levels() {
			cells = append(cells, &cell{l: l, t: t})
		}
	}
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
	results := make([]*simexp.Run, len(jobs))
	var done atomic.Int64
	err := simexp.Parallel(len(jobs), workers, func(i int) error {
		j := jobs[i]
		r, err := simexp.Sim(options(j.c.l, j.c.t, j.seed, ops))
		if err != nil {
			return err
		}
		results[i] = r
		out.Logf("latency: %d/%d %s, %s, seed %d: %s", done.Add(1), len(jobs), j.c.l.Label, j.c.t.Name, j.seed, r.Res.Verdict)
		return nil
	})
	if err != nil {
		return err
	}
	for i, j := range jobs {
		j.c.st.add(results[i].Ops, ops)
		if results[i].Res.Verdict != simrun.Pass {
			j.c.notPass = append(j.c.notPass, results[i].Res.Options.Command())
		}
	}
	return write(out, cells, seeds, ops, workers, quick)
}

func write(out *expio.Out, cells []*cell, seeds, ops, workers int, quick bool) error {
	cmd := fmt.Sprintf("go run ./experiments/latency --seeds %d --ops %d", seeds, ops)
	if quick {
		cmd = "go run ./experiments/latency --quick"
	}
	var lv []string
	for _, l := range levels() {
		lv = append(lv, l.Label)
	}
	if err := out.Params(cmd, map[string]any{"seeds": fmt.Sprintf("1..%d", seeds), "ops": ops, "workers": workers,
		"workload": "register (get/put/delete counted)", "faults": "none", "clients": 5, "think": "2ms",
		"topologies": topologies(), "levels": levels(), "reproduce_one_run": options(levels()[0], topologies()[1], 1, ops).Command()}); err != nil {
		return err
	}
	header := []string{"topology", "level", "read_p50_ms", "read_p99_ms", "write_p50_ms", "write_p99_ms", "ok_ops", "failed_ops", "ok_ops_per_virtual_s", "runs_not_passing"}
	var rows [][]string
	for _, c := range cells {
		rows = append(rows, []string{c.t.Name, c.l.Label,
			simexp.F(simexp.Quantile(c.st.reads, 0.5), 2), simexp.F(simexp.Quantile(c.st.reads, 0.99), 2),
			simexp.F(simexp.Quantile(c.st.writes, 0.5), 2), simexp.F(simexp.Quantile(c.st.writes, 0.99), 2),
			fmt.Sprint(c.st.okOps), fmt.Sprint(c.st.fails), simexp.F(c.st.throughput(), 0), fmt.Sprint(len(c.notPass))})
	}
	if err := out.CSV("latency", header, rows); err != nil {
		return err
	}
	md := fmt.Sprintf("Latency and throughput in the simulator, no faults: register workload, 5 closed-loop clients "+
		"(2 ms mean think time), %d safety-phase operations per run, seeds 1..%d pooled. Latencies (ms, virtual) of "+
		"get (read) and put/delete (write) operations that completed ok; throughput = ok get/put/delete per virtual second. "+
		"failed_ops counts get/put/delete that failed or timed out; runs_not_passing counts runs whose checks did not pass.\n\n",
		ops, seeds) + expio.Table(header, rows) + "\nReproduce: `" + cmd + "`\n"
	for _, c := range cells {
		for _, cmdline := range c.notPass {
			md += "\nNot passing: `" + cmdline + "`"
		}
	}
	if err := out.Markdown("table", md); err != nil {
		return err
	}
	plotted := map[string]bool{"primary-backup ack=all": true, "raft read=linearizable": true, "raft read=stale": true,
		"quorum R=1 W=1": true, "quorum R=2 W=2": true, "quorum linearizable (ABD, R=W=2)": true, "causal": true}
	for _, t := range topologies() {
		for _, kind := range []string{"read", "write"} {
			var series []expio.Series
			for _, c := range cells {
				if c.t != t || !plotted[c.l.Label] {
					continue
				}
				xs := c.st.reads
				if kind == "write" {
					xs = c.st.writes
				}
				series = append(series, cdf(c.l.Label, xs))
			}
			if len(series) == 0 {
				continue
			}
			name := "cdf-" + kind + "-" + strings.ReplaceAll(t.Name, " ", "")
			if err := out.LinePlot(name, fmt.Sprintf("%s latency CDF, %s, no faults", kind, t.Name),
				"latency (ms, virtual, log)", "fraction of ok operations", series, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// cdf is the empirical CDF of xs (sorted by Quantile already or here).
func cdf(name string, xs []float64) expio.Series {
	s := expio.Series{Name: name}
	if len(xs) == 0 {
		return s
	}
	simexp.Quantile(xs, 0.5) // sorts
	step := max(1, len(xs)/400)
	for i := 0; i < len(xs); i += step {
		s.X = append(s.X, xs[i])
		s.Y = append(s.Y, float64(i+1)/float64(len(xs)))
	}
	s.X = append(s.X, xs[len(xs)-1])
	s.Y = append(s.Y, 1)
	return s
}
