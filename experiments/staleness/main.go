// Command staleness is experiment 3 of PAPER.md: the staleness of partial
// quorums, after Bailis et al., "Probabilistically Bounded Staleness for
// Practical Partial Quorums" (VLDB 2012), with their WARS model.
//
// As in Dynamo, the coordinator sends each request to all N replicas and
// waits for the first W acknowledgements (writes) or R responses (reads).
// A write request reaches replica i after W_i and its acknowledgement comes
// back after A_i; the write completes at c, the W-th smallest W_i+A_i. A read
// issued t after c reaches replica i after R_i, which answers with the new
// value if the write reached it first (W_i <= c+t+R_i); its response takes
// S_i. The read returns the newest of the first R responses (smallest
// R_i+S_i). The read is consistent if one of them has the write. For each
// trial the least consistent t is t* = max(0, min over the first R of
// W_i-c-R_i), so one set of trials yields the whole curve P(t* <= t).
//
// Latencies per message kind are weighted mixtures of Pareto and
// exponential distributions (sim/netmodel), the production profiles the PBS
// paper fitted. Run: go run ./experiments/staleness [--trials N] [--seed S].
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/sim/netmodel"
)

// profile is the latency model of one deployment.
type profile struct {
	name       string
	w, a, r, s netmodel.Dist
	// remote adds this one-way delay to every message between a
	// coordinator and a replica in another region (WAN). Every replica is
	// in its own region; the write is coordinated in replica 0's region and
	// the read in replica 1's, as in the PBS paper's WAN scenario.
	remote time.Duration
}

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

// pareto is Pareto(xm ms, alpha) without the simulator's safety cap (the
// fitted tails are what this experiment is about).
func pareto(xm, alpha float64) netmodel.Dist {
	return netmodel.Pareto{Scale: ms(xm), Alpha: alpha, Cap: time.Hour}
}

// exp is Exp(lambda) with lambda per ms: mean 1/lambda ms.
func exp(lambda float64) netmodel.Dist { return netmodel.Exponential{Mean: ms(1 / lambda)} }

func mix(w1 float64, d1 netmodel.Dist, w2 float64, d2 netmodel.Dist) netmodel.Dist {
	return netmodel.Mixture{Weights: []float64{w1, w2}, Parts: []netmodel.Dist{d1, d2}}
}

func profiles() []profile {
	ssd := mix(0.9122, pareto(0.235, 10), 0.0878, exp(1.66))
	diskW := mix(0.38, pareto(1.05, 1.51), 0.62, exp(0.183))
	ymmrW := mix(0.939, pareto(3, 3.35), 0.061, exp(0.0028))
	ymmrO := mix(0.982, pareto(1.5, 3.8), 0.018, exp(0.0217))
	return []profile{
		{name: "LNKD-SSD", w: ssd, a: ssd, r: ssd, s: ssd},
		{name: "LNKD-DISK", w: diskW, a: ssd, r: ssd, s: ssd},
		{name: "YMMR", w: ymmrW, a: ymmrO, r: ymmrO, s: ymmrO},
		{name: "WAN", w: diskW, a: ssd, r: ssd, s: ssd, remote: 75 * time.Millisecond},
	}
}

type quorum struct{ r, w int }

func configs() []quorum { return []quorum{{1, 1}, {1, 2}, {2, 1}, {2, 2}} }

// trial draws one write and read and returns t* for every configuration.
func trial(p profile, n int, rnd *rand.Rand, cfgs []quorum, out []float64) {
	var wl, al, rl, sl [8]float64
	for i := 0; i < n; i++ {
		wExtra, rExtra := 0.0, 0.0
		if i != 0 {
			wExtra = float64(p.remote)
		}
		if i != 1 {
			rExtra = float64(p.remote)
		}
		wl[i] = float64(p.w.Sample(rnd)) + wExtra
		al[i] = float64(p.a.Sample(rnd)) + wExtra
		rl[i] = float64(p.r.Sample(rnd)) + rExtra
		sl[i] = float64(p.s.Sample(rnd)) + rExtra
	}
	var acks, resp [8]int
	for i := 0; i < n; i++ {
		acks[i], resp[i] = i, i
	}
	sort.Slice(acks[:n], func(x, y int) bool { return wl[acks[x]]+al[acks[x]] < wl[acks[y]]+al[acks[y]] })
	sort.Slice(resp[:n], func(x, y int) bool { return rl[resp[x]]+sl[resp[x]] < rl[resp[y]]+sl[resp[y]] })
	for k, q := range cfgs {
		c := wl[acks[q.w-1]] + al[acks[q.w-1]]
		best := 0.0
		for j := 0; j < q.r; j++ {
			i := resp[j]
			need := wl[i] - c - rl[i]
			if j == 0 || need < best {
				best = need
			}
		}
		if best < 0 {
			best = 0
		}
		out[k] = best / float64(time.Millisecond)
	}
}

// result is the t* sample of one profile and configuration, sorted.
type result struct {
	p  string
	q  quorum
	ts []float64
}

// consistentAt is P(t* <= t).
func (r result) consistentAt(t float64) float64 {
	i := sort.Search(len(r.ts), func(i int) bool { return r.ts[i] > t })
	return float64(i) / float64(len(r.ts))
}

// quantile is the t by which a fraction q of reads are consistent.
func (r result) quantile(q float64) float64 {
	i := int(q*float64(len(r.ts))+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(r.ts) {
		i = len(r.ts) - 1
	}
	return r.ts[i]
}

func run(trials int, seed uint64, n int, progress *expio.Out) []result {
	var out []result
	cfgs := configs()
	for pi, p := range profiles() {
		rnd := rand.New(rand.NewPCG(seed, uint64(pi)))
		samples := make([][]float64, len(cfgs))
		for k := range samples {
			samples[k] = make([]float64, trials)
		}
		buf := make([]float64, len(cfgs))
		for t := 0; t < trials; t++ {
			trial(p, n, rnd, cfgs, buf)
			for k := range cfgs {
				samples[k][t] = buf[k]
			}
		}
		for k, q := range cfgs {
			sort.Float64s(samples[k])
			out = append(out, result{p: p.name, q: q, ts: samples[k]})
		}
		if progress != nil {
			progress.Logf("staleness: %s done (%d/%d profiles, %d trials each)", p.name, pi+1, len(profiles()), trials)
		}
	}
	return out
}

func main() {
	trials := flag.Int("trials", 1_000_000, "trials per profile")
	seed := flag.Uint64("seed", 1, "seed")
	dir := flag.String("out", "experiments/results/staleness", "results directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: go run ./experiments/staleness [--trials N] [--seed S] [--out DIR]\n\nPBS staleness of partial quorums (N=3) under the LNKD-SSD, LNKD-DISK, YMMR and WAN latency profiles.")
		flag.PrintDefaults()
	}
	flag.Parse()
	out, err := expio.New(*dir, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	const n = 3
	res := run(*trials, *seed, n, out)
	if err := write(out, res, *trials, *seed, n); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func f(x float64, prec int) string { return strconv.FormatFloat(x, 'f', prec, 64) }

func write(out *expio.Out, res []result, trials int, seed uint64, n int) error {
	cmd := fmt.Sprintf("go run ./experiments/staleness --trials %d --seed %d", trials, seed)
	if err := out.Params(cmd, map[string]any{"trials": trials, "seed": seed, "n": n, "model": "WARS (Bailis et al. VLDB 2012)"}); err != nil {
		return err
	}
	grid := []float64{0, 0.1, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}
	var rows [][]string
	for _, r := range res {
		for _, t := range grid {
			rows = append(rows, []string{r.p, strconv.Itoa(r.q.r), strconv.Itoa(r.q.w), f(t, 1), f(r.consistentAt(t), 6)})
		}
	}
	if err := out.CSV("curves", []string{"profile", "r", "w", "t_ms", "p_consistent"}, rows); err != nil {
		return err
	}
	var trows [][]string
	for _, r := range res {
		trows = append(trows, []string{r.p, fmt.Sprintf("R=%d W=%d", r.q.r, r.q.w), f(r.consistentAt(0), 4), f(r.consistentAt(1), 4), f(r.consistentAt(10), 4), f(r.quantile(0.999), 2)})
	}
	md := fmt.Sprintf("Staleness of partial quorums, N=%d, %d trials per profile (seed %d).\n"+
		"P(t) is the probability that a read issued t ms after a write completes returns it; "+
		"t(99.9%%) is the delay after which 99.9%% of reads do.\n\n", n, trials, seed) +
		expio.Table([]string{"profile", "quorum", "P(0 ms)", "P(1 ms)", "P(10 ms)", "t(99.9%) ms"}, trows) +
		"\nReproduce: `" + cmd + "`\n"
	if err := out.Markdown("table", md); err != nil {
		return err
	}
	var xs []float64
	for x := 0.01; x <= 2000; x *= 1.08 {
		xs = append(xs, x)
	}
	byProfile := map[string][]expio.Series{}
	var order []string
	for _, r := range res {
		if _, ok := byProfile[r.p]; !ok {
			order = append(order, r.p)
		}
		s := expio.Series{Name: fmt.Sprintf("R=%d W=%d", r.q.r, r.q.w)}
		for _, x := range xs {
			s.X = append(s.X, x)
			s.Y = append(s.Y, r.consistentAt(x))
		}
		byProfile[r.p] = append(byProfile[r.p], s)
	}
	for _, p := range order {
		if err := out.LinePlot("curve-"+p, "P(consistent read) vs time after write, "+p+", N=3", "t after the write completes (ms, log)", "P(read returns the write)", byProfile[p], true); err != nil {
			return err
		}
	}
	return nil
}
