// Command availability is experiment 2 of PAPER.md: under network
// partitions, the fraction of operations that succeed on the majority side
// and on the minority side, per strategy and consistency level, in the
// simulator.
//
// Every run is `dialkv sim --workload register --faults partition` with
// fixed partition rates (the shapes — symmetric, asymmetric, isolate one
// node, minority, bridge — are drawn from the seed). The partition windows
// are read back from the run's trace (fault and heal lines). Each get, put
// or delete of the safety phase (cas is left out: quorum and causal refuse
// transactions) is classified by the node the client sent it to, at the
// moment it was invoked: "majority" if that node was in two-way contact
// with a majority of the nodes (itself included) under every partition in
// force, "minority" otherwise, "no partition" when none was in force. It
// succeeded if its outcome is ok; failures and timeouts (unknown) count
// against availability. Clients themselves are never partitioned: a
// primary-backup backup answers MOVED and the client follows it to the
// primary (the op is still counted on the side of the node first
// contacted), and raft runs with redirect=false, so a follower forwards a
// request inside Raft.
//
// Run: go run ./experiments/availability [--seeds N] [--ops N] [--quick].
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/experiments/internal/simexp"
	"github.com/dialkv/dialkv/sim/simrun"
)

type level struct {
	Label    string
	Strategy string
	Params   map[string]string
}

func levels() []level {
	return []level{
		{"primary-backup ack=all", "primary-backup", map[string]string{"ack": "all"}},
		{"primary-backup ack=majority", "primary-backup", map[string]string{"ack": "majority"}},
		{"raft read=linearizable", "raft", map[string]string{"read": "linearizable", "redirect": "false"}},
		{"raft read=stale", "raft", map[string]string{"read": "stale", "redirect": "false"}},
		{"quorum R=1 W=1 sloppy", "quorum", map[string]string{"r": "1", "w": "1", "resolve": "lww"}},
		{"quorum R=2 W=2 sloppy", "quorum", map[string]string{"r": "2", "w": "2", "resolve": "lww"}},
		{"quorum R=2 W=2 strict", "quorum", map[string]string{"r": "2", "w": "2", "resolve": "lww", "sloppy": "false"}},
		{"quorum linearizable (ABD)", "quorum", map[string]string{"mode": "linearizable", "resolve": "lww"}},
		{"causal, 1 region (sharded)", "causal", nil},
		{"causal, 3 regions of 1 node", "causal", map[string]string{"regions": "a:n1;b:n2;c:n3"}},
	}
}

// Rates of the partitions: about two per virtual second, half a second long
// on average, so some overlap.
var rates = map[string]float64{"partition/s": 2, "fault-mean-ms": 500}

func options(l level, seed uint64, ops int) simrun.Options {
	o := simrun.Options{Strategy: l.Strategy, Seed: seed, Ops: ops, LiveOps: 1, Workload: "register",
		Faults: []string{"partition"}, Rates: rates}
	if len(l.Params) > 0 {
		o.Params = map[string]string{}
		for k, v := range l.Params {
			o.Params[k] = v
		}
	}
	return o
}

// tally counts operations and successes per side and kind.
type tally struct {
	n, ok [3][2]int // [side][0 read, 1 write]
}

func (t *tally) frac(side simexp.Side, kind int) float64 {
	if kind < 0 {
		n := t.n[side][0] + t.n[side][1]
		if n == 0 {
			return -1
		}
		return float64(t.ok[side][0]+t.ok[side][1]) / float64(n)
	}
	if t.n[side][kind] == 0 {
		return -1
	}
	return float64(t.ok[side][kind]) / float64(t.n[side][kind])
}

// contacted maps op ids to the node the client first sent them to, from
// the sans-IO simulator's "cN invoke op=ID ... -> nX" trace lines.
func contacted(trace []byte) map[int64]string {
	m := map[int64]string{}
	sc := bufio.NewScanner(bytes.NewReader(trace))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[2] != "invoke" || !strings.HasPrefix(f[3], "op=") || f[len(f)-2] != "->" {
			continue
		}
		id, err := strconv.ParseInt(strings.TrimPrefix(f[3], "op="), 10, 64)
		if err == nil {
			m[id] = f[len(f)-1]
		}
	}
	return m
}

// add classifies the safety-phase get/put/delete operations of one run.
func (t *tally) add(r *simexp.Run, nodes, safetyOps int) error {
	var end int64
	for _, op := range r.Ops {
		end = max(end, op.Invoke)
	}
	ws, err := simexp.Partitions(r.Trace, end+1)
	if err != nil {
		return err
	}
	first := contacted(r.Trace)
	for _, op := range r.Ops {
		if op.ID >= int64(safetyOps) || (op.F != checker.FGet && op.F != checker.FPut && op.F != checker.FDelete) {
			continue
		}
		name := op.Node
		if n, ok := first[op.ID]; ok {
			name = n
		}
		idx, ok := simexp.NodeIndex(name)
		if !ok {
			return fmt.Errorf("op %d: no node (%q)", op.ID, name)
		}
		side := simexp.SideAt(ws, nodes, idx, op.Invoke)
		kind := 0
		if op.F != checker.FGet {
			kind = 1
		}
		t.n[side][kind]++
		if op.Outcome == checker.OK {
			t.ok[side][kind]++
		}
	}
	return nil
}

func main() {
	seeds := flag.Int("seeds", 5, "seeds per level (1..N)")
	ops := flag.Int("ops", 2000, "operations per run (safety phase)")
	workers := flag.Int("workers", 2, "parallel runs")
	quick := flag.Bool("quick", false, "one seed, 300 operations (for tests)")
	dir := flag.String("out", "experiments/results/availability", "results directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: go run ./experiments/availability [--seeds N] [--ops N] [--workers N] [--quick] [--out DIR]\n\n"+
			"Fraction of operations that succeed on the majority and minority side of partitions, per strategy and level.")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *quick {
		*seeds, *ops = 1, 300
	}
	out, err := expio.New(*dir, os.Stderr)
	if err == nil {
		err = run(out, *seeds, *ops, *workers, *quick)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "availability:", err)
		os.Exit(1)
	}
}

const nodes = 3

func run(out *expio.Out, seeds, ops, workers int, quick bool) error {
	ls := levels()
	tallies := make([]tally, len(ls))
	notPass := make([][]string, len(ls))
	type job struct {
		l    int
		seed uint64
	}
	var jobs []job
	for i := range ls {
		for s := 1; s <= seeds; s++ {
			jobs = append(jobs, job{i, uint64(s)})
		}
	}
	runs := make([]*simexp.Run, len(jobs))
	var done atomic.Int64
	err := simexp.Parallel(len(jobs), workers, func(i int) error {
		j := jobs[i]
		r, err := simexp.Sim(options(ls[j.l], j.seed, ops))
		if err != nil {
			return err
		}
		runs[i] = r
		out.Logf("availability: %d/%d %s seed %d: %s", done.Add(1), len(jobs), ls[j.l].Label, j.seed, r.Res.Verdict)
		return nil
	})
	if err != nil {
		return err
	}
	for i, j := range jobs {
		if err := tallies[j.l].add(runs[i], nodes, ops); err != nil {
			return fmt.Errorf("%s: %w", runs[i].Res.Options.Command(), err)
		}
		if runs[i].Res.Verdict != simrun.Pass {
			notPass[j.l] = append(notPass[j.l], runs[i].Res.Options.Command())
		}
	}
	cmd := fmt.Sprintf("go run ./experiments/availability --seeds %d --ops %d", seeds, ops)
	if quick {
		cmd = "go run ./experiments/availability --quick"
	}
	if err := out.Params(cmd, map[string]any{"seeds": fmt.Sprintf("1..%d", seeds), "ops": ops, "nodes": nodes,
		"faults": "partition", "rates": rates, "workload": "register (get/put/delete counted)", "levels": ls,
		"reproduce_one_run": options(ls[0], 1, ops).Command()}); err != nil {
		return err
	}
	pct := func(x float64) string {
		if x < 0 {
			return "-"
		}
		return simexp.F(100*x, 1)
	}
	header := []string{"level", "no_partition_ok_pct", "majority_read_ok_pct", "majority_write_ok_pct", "minority_read_ok_pct", "minority_write_ok_pct", "ops_no_partition", "ops_majority", "ops_minority", "runs_not_passing"}
	var rows [][]string
	for i, l := range ls {
		t := &tallies[i]
		rows = append(rows, []string{l.Label, pct(t.frac(simexp.Whole, -1)),
			pct(t.frac(simexp.Majority, 0)), pct(t.frac(simexp.Majority, 1)),
			pct(t.frac(simexp.Minority, 0)), pct(t.frac(simexp.Minority, 1)),
			fmt.Sprint(t.n[simexp.Whole][0] + t.n[simexp.Whole][1]),
			fmt.Sprint(t.n[simexp.Majority][0] + t.n[simexp.Majority][1]),
			fmt.Sprint(t.n[simexp.Minority][0] + t.n[simexp.Minority][1]),
			fmt.Sprint(len(notPass[i]))})
	}
	if err := out.CSV("availability", header, rows); err != nil {
		return err
	}
	md := fmt.Sprintf("Availability under partitions in the simulator: %d nodes, register workload, 5 clients, "+
		"%d safety-phase operations per run, seeds 1..%d pooled, `--faults partition --rates %s`. "+
		"Percent of get (read) and put/delete (write) operations that succeeded, by the side of the node the client "+
		"contacted when it invoked them (majority: in two-way contact with a majority of nodes, itself included).\n\n",
		nodes, ops, seeds, simrun.FormatMap(floatMap(rates))) + expio.Table(header, rows) + "\nReproduce: `" + cmd + "`\n"
	for i := range ls {
		for _, c := range notPass[i] {
			md += "\nNot passing: `" + c + "`"
		}
	}
	return out.Markdown("table", md)
}

func floatMap(m map[string]float64) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return out
}
