// Package simexp is what the simulator experiments share: running one
// simulation through sim.Run and reading back its history and trace,
// percentiles, a worker pool, and the partition timeline of a run (which
// nodes could talk to which, when) recovered from its trace.
package simexp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/sim"
	"github.com/dialkv/dialkv/sim/simrun"
)

// Run is one finished simulation.
type Run struct {
	Res      simrun.Result
	Ops      []checker.Op
	Replicas []checker.ReplicaState
	Trace    []byte
}

// Sim runs one simulation with its report written to a temporary
// directory, reads the history, replica states and trace back, and removes
// the directory.
func Sim(o simrun.Options) (*Run, error) {
	dir, err := os.MkdirTemp("", "dialkv-exp-")
	if err != nil {
		return nil, fmt.Errorf("simexp: %w", err)
	}
	defer os.RemoveAll(dir)
	o.Out = dir
	res, err := sim.Run(o)
	if err != nil {
		return nil, fmt.Errorf("simexp: %s: %w", o.Command(), err)
	}
	ops, err := checker.ReadHistoryFile(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("simexp: %s: %w", o.Command(), err)
	}
	reps, err := checker.ReadReplicasFile(filepath.Join(dir, "replicas.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("simexp: %s: %w", o.Command(), err)
	}
	trace, err := os.ReadFile(filepath.Join(dir, "trace.log"))
	if err != nil {
		return nil, fmt.Errorf("simexp: %s: %w", o.Command(), err)
	}
	res.ReportDir = ""
	return &Run{Res: res, Ops: ops, Replicas: reps, Trace: trace}, nil
}

// Parallel runs jobs 0..n-1 on up to workers goroutines and returns the
// first error. Raft runs are serialised inside sim/raftsim anyway.
func Parallel(n, workers int, job func(i int) error) error {
	if workers < 1 {
		workers = 1
	}
	next := make(chan int)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = job(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// Quantile is the q-quantile (nearest rank) of xs, which it sorts; NaN for
// an empty slice.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	sort.Float64s(xs)
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// Median of xs (nearest rank).
func Median(xs []float64) float64 { return Quantile(xs, 0.5) }

// F formats x with prec decimals, "-" for NaN.
func F(x float64, prec int) string {
	if math.IsNaN(x) {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', prec, 64)
}

// Window is one partition in force: the directed links it cut, from its
// start to its heal (virtual nanoseconds, the history's time base).
type Window struct {
	From, To int64
	Desc     string
	blocked  map[[2]int]bool
}

// Blocks reports whether the partition cuts a -> b (node indices from 0).
func (w Window) Blocks(a, b int) bool { return w.blocked[[2]int{a, b}] }

var groupRE = regexp.MustCompile(`\{([^}]*)\}`)

// parseCut turns a partition description (netmodel's Cut.Desc:
// "symmetric {n1,n3} | {n2}", "asymmetric {n3} -/-> {n1,n2} (one way
// only)", "bridge {n1} ~ {n2} ~ {n3} (last group bridges)", ...) into the
// links it cuts.
func parseCut(desc string) (map[[2]int]bool, error) {
	var groups [][]int
	for _, m := range groupRE.FindAllStringSubmatch(desc, -1) {
		var g []int
		for _, name := range strings.Split(m[1], ",") {
			i, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(name), "n"))
			if err != nil || i < 1 {
				return nil, fmt.Errorf("simexp: partition %q: bad node %q", desc, name)
			}
			g = append(g, i-1)
		}
		groups = append(groups, g)
	}
	blocked := map[[2]int]bool{}
	cut := func(from, to []int) {
		for _, a := range from {
			for _, b := range to {
				blocked[[2]int{a, b}] = true
			}
		}
	}
	shape, _, _ := strings.Cut(desc, " ")
	switch {
	case len(groups) < 2:
		// one node, nothing cut
	case shape == "asymmetric":
		cut(groups[0], groups[1])
	case shape == "bridge":
		cut(groups[0], groups[1])
		cut(groups[1], groups[0])
	case len(groups) == 2:
		cut(groups[0], groups[1])
		cut(groups[1], groups[0])
	default:
		return nil, fmt.Errorf("simexp: partition %q: unknown shape", desc)
	}
	return blocked, nil
}

// TraceTime parses a trace line's time: "s.ns" (sans-IO simulator) or
// zero-padded nanoseconds (sim/raftsim).
func TraceTime(s string) (int64, error) {
	if sec, frac, ok := strings.Cut(s, "."); ok {
		a, err1 := strconv.ParseInt(sec, 10, 64)
		b, err2 := strconv.ParseInt(frac, 10, 64)
		if err1 != nil || err2 != nil || len(frac) != 9 {
			return 0, fmt.Errorf("simexp: bad trace time %q", s)
		}
		return a*1e9 + b, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("simexp: bad trace time %q", s)
	}
	return n, nil
}

// Partitions recovers the partitions of a run from its trace: each "sim
// fault ... partition DESC for D" line opens one, the matching "sim heal
// partition DESC" line closes it. One still open at the end of the trace
// lasts until end.
func Partitions(trace []byte, end int64) ([]Window, error) {
	var out []Window
	open := map[string][]int{} // desc -> indices into out, oldest first
	sc := bufio.NewScanner(bytes.NewReader(trace))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) < 4 || f[1] != "sim" || (f[2] != "fault" && f[2] != "heal") {
			continue
		}
		rest := f[3]
		var desc string
		if f[2] == "fault" {
			_, after, ok := strings.Cut(rest, " partition ")
			if !ok {
				continue
			}
			i := strings.LastIndex(after, " for ")
			if i < 0 {
				return nil, fmt.Errorf("simexp: fault line without duration: %q", sc.Text())
			}
			desc = after[:i]
		} else {
			d, ok := strings.CutPrefix(rest, "partition ")
			if !ok {
				continue
			}
			desc = d
		}
		t, err := TraceTime(f[0])
		if err != nil {
			return nil, err
		}
		if f[2] == "fault" {
			b, err := parseCut(desc)
			if err != nil {
				return nil, err
			}
			open[desc] = append(open[desc], len(out))
			out = append(out, Window{From: t, To: -1, Desc: desc, blocked: b})
			continue
		}
		if q := open[desc]; len(q) > 0 {
			out[q[0]].To = t
			open[desc] = q[1:]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("simexp: trace: %w", err)
	}
	for i := range out {
		if out[i].To < 0 {
			out[i].To = end
		}
	}
	return out, nil
}

// Side is where a node stood at a moment.
type Side int

// The sides.
const (
	Whole    Side = iota // no partition in force
	Majority             // partitioned, but in two-way contact with a majority (itself included)
	Minority             // partitioned and in two-way contact with no majority
)

func (s Side) String() string { return [...]string{"no partition", "majority", "minority"}[s] }

// SideAt says where node (index from 0) of n stood at virtual time t: in
// two-way contact (no partition in force cuts either direction) with a
// majority of the n nodes, itself included, or not.
func SideAt(ws []Window, n, node int, t int64) Side {
	var active []Window
	for _, w := range ws {
		if w.From <= t && t < w.To {
			active = append(active, w)
		}
	}
	if len(active) == 0 {
		return Whole
	}
	reach := 0
	for j := 0; j < n; j++ {
		ok := true
		for _, w := range active {
			if w.Blocks(node, j) || w.Blocks(j, node) {
				ok = false
				break
			}
		}
		if ok {
			reach++
		}
	}
	if 2*reach > n {
		return Majority
	}
	return Minority
}

// NodeIndex parses "n3" into 2.
func NodeIndex(name string) (int, bool) {
	i, err := strconv.Atoi(strings.TrimPrefix(name, "n"))
	if err != nil || i < 1 || !strings.HasPrefix(name, "n") {
		return 0, false
	}
	return i - 1, true
}
