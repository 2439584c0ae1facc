// Command simspeed is experiment 6 of PAPER.md: how fast the simulator
// runs — the ratio of virtual to real (wall-clock) time, and simulated
// operations per CPU-second of the process — per strategy and cluster size
// (3, 5 and 7 nodes).
//
// Runs are made one at a time (so the process's CPU time, from getrusage,
// belongs to the run) with the default fault mix and workload (causal: the
// register workload), through sim.Run without a report directory, so the
// figures include the checkers but no report writing. Quorum runs with
// n = nodes and majority R and W; raft with replicas = nodes (one shard).
// The machine is shared: real time depends on its load; CPU time less so.
//
// A second table (load.md) holds the virtual/real ratio against the offered
// load: primary-backup on 5 nodes, register and mixed workloads, 5 and 10
// clients, mean think times from none (1 ns) and the default 2 ms to 1 s. A closed-loop
// cluster serves about clients/(think + latency) operations per virtual
// second, so the ratio is roughly ops per CPU-second divided by that: the
// 1000x goal needs 1000 times the cluster's operation rate in simulated
// operations per CPU-second.
//
// Run: go run ./experiments/simspeed [--seeds N] [--ops N] [--quick].
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/experiments/internal/simexp"
	"github.com/dialkv/dialkv/sim"
	"github.com/dialkv/dialkv/sim/simrun"
)

func options(strategy string, nodes int, seed uint64, ops int) simrun.Options {
	o := simrun.Options{Strategy: strategy, Nodes: nodes, Seed: seed, Ops: ops}
	maj := strconv.Itoa(nodes/2 + 1)
	switch strategy {
	case "quorum":
		o.Params = map[string]string{"n": strconv.Itoa(nodes), "r": maj, "w": maj}
	case "raft":
		o.Params = map[string]string{"replicas": strconv.Itoa(nodes)}
	}
	return o
}

// loadAvg is the machine's load average (1, 5 and 15 minutes), as uptime
// prints it, or "" where /proc/loadavg is missing.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type cell struct {
	strategy      string
	nodes         int
	ops           int
	virtual, real time.Duration
	cpu           time.Duration
	events        int64
	verdicts      map[simrun.Verdict]int
}

func main() {
	seeds := flag.Int("seeds", 3, "seeds per cell (1..N)")
	ops := flag.Int("ops", 2000, "operations per run (safety phase)")
	quick := flag.Bool("quick", false, "one seed, 200 operations, 3 nodes (for tests)")
	dir := flag.String("out", "experiments/results/simspeed", "results directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: go run ./experiments/simspeed [--seeds N] [--ops N] [--quick] [--out DIR]\n\n"+
			"Simulator speed: virtual/real time and simulated operations per CPU-second, per strategy and cluster size.")
		flag.PrintDefaults()
	}
	flag.Parse()
	sizes := []int{3, 5, 7}
	if *quick {
		*seeds, *ops, sizes = 1, 200, []int{3}
	}
	out, err := expio.New(*dir, os.Stderr)
	if err == nil {
		err = run(out, *seeds, *ops, sizes, *quick)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "simspeed:", err)
		os.Exit(1)
	}
}

func run(out *expio.Out, seeds, ops int, sizes []int, quick bool) error {
	loadStart := loadAvg()
	var cells []*cell
	for _, s := range sim.StrategyNames() {
		for _, n := range sizes {
			c := &cell{strategy: s, nodes: n, verdicts: map[simrun.Verdict]int{}}
			for seed := 1; seed <= seeds; seed++ {
				o := options(s, n, uint64(seed), ops)
				cpu0, t0 := cpuTime(), time.Now()
				res, err := sim.Run(o)
				if err != nil {
					return fmt.Errorf("%s: %w", o.Command(), err)
				}
				c.real += time.Since(t0)
				c.cpu += cpuTime() - cpu0
				c.virtual += res.Virtual
				c.ops += res.Ops
				c.events += res.Events
				c.verdicts[res.Verdict]++
				out.Logf("simspeed: %s nodes=%d seed %d: %s, %d ops, virtual %v, real %v", s, n, seed, res.Verdict, res.Ops,
					res.Virtual.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
			}
			cells = append(cells, c)
		}
	}
	loads, err := loadSweep(out, seeds, ops, quick)
	if err != nil {
		return err
	}
	cmd := fmt.Sprintf("go run ./experiments/simspeed --seeds %d --ops %d", seeds, ops)
	if quick {
		cmd = "go run ./experiments/simspeed --quick"
	}
	host, _ := os.Hostname()
	loadEnd := loadAvg()
	if err := out.Params(cmd, map[string]any{"seeds": fmt.Sprintf("1..%d", seeds), "ops": ops, "sizes": sizes,
		"faults": "default mix (drawn per seed)", "host": host, "when": time.Now().UTC().Format(time.RFC3339),
		"load_average_start": loadStart, "load_average_end": loadEnd,
		"reproduce_one_run": options("quorum", 5, 1, ops).Command()}); err != nil {
		return err
	}
	if err := writeLoad(out, loads, seeds, ops, cmd, loadStart, loadEnd); err != nil {
		return err
	}
	header := []string{"strategy", "nodes", "runs", "ops", "virtual_s", "real_s", "cpu_s", "virtual_per_real", "virtual_per_cpu", "ops_per_cpu_s", "events_per_cpu_s", "verdicts"}
	var rows [][]string
	for _, c := range cells {
		v := ""
		for _, k := range []simrun.Verdict{simrun.Pass, simrun.Safety, simrun.Liveness} {
			if c.verdicts[k] > 0 {
				v += fmt.Sprintf("%s:%d ", k, c.verdicts[k])
			}
		}
		rows = append(rows, []string{c.strategy, strconv.Itoa(c.nodes), strconv.Itoa(seeds), strconv.Itoa(c.ops),
			simexp.F(c.virtual.Seconds(), 2), simexp.F(c.real.Seconds(), 2), simexp.F(c.cpu.Seconds(), 2),
			simexp.F(c.virtual.Seconds()/c.real.Seconds(), 2), simexp.F(c.virtual.Seconds()/c.cpu.Seconds(), 0),
			simexp.F(float64(c.ops)/c.cpu.Seconds(), 0),
			simexp.F(float64(c.events)/c.cpu.Seconds(), 0), v})
	}
	if err := out.CSV("simspeed", header, rows); err != nil {
		return err
	}
	md := fmt.Sprintf("Simulator speed, one run at a time on the shared 2-core machine (load average %s at the start, "+
		"%s at the end): default fault mix, default "+
		"workload, %d safety-phase operations per run, seeds 1..%d summed. ops counts both phases; cpu_s is the process's "+
		"user+system time (getrusage), checkers included, no report written.\n\n", loadStart, loadEnd, ops, seeds) +
		expio.Table(header, rows) + "\nReproduce: `" + cmd + "`\n"
	if err := out.Markdown("table", md); err != nil {
		return err
	}
	var ratio, perCPU []expio.Series
	for _, s := range sim.StrategyNames() {
		a, b := expio.Series{Name: s}, expio.Series{Name: s}
		for _, c := range cells {
			if c.strategy == s {
				a.X, a.Y = append(a.X, float64(c.nodes)), append(a.Y, c.virtual.Seconds()/c.real.Seconds())
				b.X, b.Y = append(b.X, float64(c.nodes)), append(b.Y, float64(c.ops)/c.cpu.Seconds())
			}
		}
		ratio, perCPU = append(ratio, a), append(perCPU, b)
	}
	if len(sizes) < 2 {
		return nil
	}
	if err := out.LinePlot("virtual-per-real", "simulator: virtual time / real time", "nodes", "virtual s per real s", ratio, false); err != nil {
		return err
	}
	return out.LinePlot("ops-per-cpu", "simulator: simulated operations per CPU-second", "nodes", "operations per CPU-second", perCPU, false)
}

// loadCell is one configuration of the load sweep.
type loadCell struct {
	workload string
	clients  int
	think    time.Duration
	cell
}

// loadSweep runs primary-backup on 5 nodes over workloads, client counts
// and think times (the default configuration's clients and think are 5
// and 2 ms).
func loadSweep(out *expio.Out, seeds, ops int, quick bool) ([]*loadCell, error) {
	workloads, clients := []string{"register", "mixed"}, []int{5, 10}
	// 1 ns is a closed loop without think time (0 would mean the default):
	// virtual time then advances only by the network's latencies.
	thinks := []time.Duration{time.Nanosecond, 2 * time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond, time.Second}
	if quick {
		workloads, clients, thinks = []string{"register"}, []int{5}, thinks[1:2]
	}
	var cells []*loadCell
	for _, w := range workloads {
		for _, nc := range clients {
			for _, th := range thinks {
				c := &loadCell{workload: w, clients: nc, think: th,
					cell: cell{strategy: "primary-backup", nodes: 5, verdicts: map[simrun.Verdict]int{}}}
				for seed := 1; seed <= seeds; seed++ {
					o := options("primary-backup", 5, uint64(seed), ops)
					o.Workload, o.Clients, o.Think = w, nc, th
					o.LivenessBound = livenessBound(o)
					cpu0, t0 := cpuTime(), time.Now()
					res, err := sim.Run(o)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", o.Command(), err)
					}
					c.real += time.Since(t0)
					c.cpu += cpuTime() - cpu0
					c.virtual += res.Virtual
					c.ops += res.Ops
					c.events += res.Events
					c.verdicts[res.Verdict]++
					out.Logf("simspeed: load %s clients=%d think=%v seed %d: %s, %d ops, virtual %v, real %v", w, nc, th, seed,
						res.Verdict, res.Ops, res.Virtual.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
				}
				cells = append(cells, c)
			}
		}
	}
	return cells, nil
}

// livenessBound leaves the liveness phase the time its operations take at
// the run's think time (three times the mean, plus the default 10 s): with
// the default bound alone, 200 operations at 1 s of think time cannot finish
// and the run ends as a liveness failure.
func livenessBound(o simrun.Options) time.Duration {
	n := o.Normalize()
	return simrun.Defaults().LivenessBound + 3*time.Duration(n.LiveOps/n.Clients)*n.Think
}

// writeLoad writes the load sweep's table (load.csv, load.md).
func writeLoad(out *expio.Out, cells []*loadCell, seeds, ops int, cmd, loadStart, loadEnd string) error {
	header := []string{"workload", "clients", "think_ms", "ops", "ops_per_virtual_s", "virtual_s", "cpu_s", "real_s",
		"ops_per_cpu_s", "virtual_per_cpu", "virtual_per_real", "1000x_real", "verdicts"}
	var rows [][]string
	for _, c := range cells {
		v := ""
		for _, k := range []simrun.Verdict{simrun.Pass, simrun.Safety, simrun.Liveness} {
			if c.verdicts[k] > 0 {
				v += fmt.Sprintf("%s:%d ", k, c.verdicts[k])
			}
		}
		perReal := c.virtual.Seconds() / c.real.Seconds()
		meets := "no"
		if perReal >= 1000 {
			meets = "yes"
		}
		rows = append(rows, []string{c.workload, strconv.Itoa(c.clients), simexp.F(float64(c.think)/float64(time.Millisecond), 0),
			strconv.Itoa(c.ops), simexp.F(float64(c.ops)/c.virtual.Seconds(), 0), simexp.F(c.virtual.Seconds(), 2),
			simexp.F(c.cpu.Seconds(), 2), simexp.F(c.real.Seconds(), 2), simexp.F(float64(c.ops)/c.cpu.Seconds(), 0),
			simexp.F(c.virtual.Seconds()/c.cpu.Seconds(), 0), simexp.F(perReal, 0), meets, v})
	}
	if err := out.CSV("load", header, rows); err != nil {
		return err
	}
	md := fmt.Sprintf("Virtual/real time against the offered load: primary-backup, 5 nodes, default faults and latencies "+
		"(exp:1ms one way), %d safety-phase operations per run, seeds 1..%d summed, checkers included; load average %s "+
		"at the start of the experiment, %s at the end (shared 2-core machine). think_ms is the clients' mean think time "+
		"(default 2 ms; 0 is 1 ns: no think time, a closed loop paced only by the network; the default client count is 5); the liveness bound is 10 s plus three times the liveness phase's "+
		"expected length (live ops / clients x think). ops_per_virtual_s is the rate the cluster served in virtual time. "+
		"1000x_real: virtual_per_real of at least 1000.\n\n", ops, seeds, loadStart, loadEnd) +
		expio.Table(header, rows) + "\nReproduce: `" + cmd + "`\n"
	return out.Markdown("load", md)
}
