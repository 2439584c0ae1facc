// Command rebalance-real is the real-cluster half of experiment 7 of
// PAPER.md: rebalancing time of a quorum ring on `dialkv node` processes
// (loopback, 127.0.33.i, `--fsync always`). Three members hold a quorum
// namespace (N=3, R=W=2, lww) preloaded with --keys keys of 100 bytes; a
// fourth node started with --join (a proxy, not a member) is added to the
// ring (nodes.ChangeRing: joint phase, settle, streamed handoff of the
// changed segments, stable), and then n1 is removed the same way, both
// while --clients clients (spread over n2, n3 and n4, which serves as a
// proxy until it is added; n1 gets none) send a GET or SET
// every --interval with a --timeout deadline.
//
// For each change it reports the objects moved (acknowledged pushes to new
// owners), the stream time (from the stream phase to every node reporting
// no pending handoff: the data is rebalanced), the total time (joint phase
// to stable), the share of the clients' operations that succeeded during
// the change and the longest time without a successful operation. After
// both changes every key is read with R=ALL through a remaining member:
// keys not found (every key was written, none deleted) are lost data.
//
// Raft rebalancing (moving replicas between nodes) is not covered here.
//
// Run: go run ./experiments/rebalance-real [--keys 20000] [--quick]
// (`make exp-rebalance-real`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/experiments/internal/realnodes"
	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/transport"
)

type params struct {
	Keys, Clients     int
	Interval, Timeout time.Duration
	Settle, Pause     time.Duration
	Seed              uint64
}

// record is one operation of the load.
type record struct {
	Invoke, Done time.Duration // since the start
	OK           bool
}

// change is one ring change and its window.
type change struct {
	Name       string
	Start, End time.Duration
	Res        nodes.RingChangeResult
	Load1      string
}

func main() {
	var p params
	flag.IntVar(&p.Keys, "keys", 20000, "keys preloaded (100-byte values)")
	flag.IntVar(&p.Clients, "clients", 8, "load clients")
	flag.DurationVar(&p.Interval, "interval", 10*time.Millisecond, "time between the starts of a client's operations (at least)")
	flag.DurationVar(&p.Timeout, "timeout", 2*time.Second, "deadline of each operation")
	flag.DurationVar(&p.Settle, "settle", 2*time.Second, "ChangeRing's pause between the joint phase and the stream")
	flag.DurationVar(&p.Pause, "pause", 3*time.Second, "load without change before, between and after the changes")
	flag.Uint64Var(&p.Seed, "seed", 1, "seed of the clients' key and operation choices")
	bin := flag.String("dialkv", realnodes.EnvOr("DIALKV_BIN", "bin/dialkv"), "dialkv binary (env DIALKV_BIN)")
	port := flag.Int("port", 27600, "client port of every node (peer +1, gossip +3)")
	ipPrefix := flag.String("ip-prefix", "127.0.33.", "node i listens on this prefix + i")
	quick := flag.Bool("quick", false, "2000 keys, 2 s pauses")
	dir := flag.String("out", "experiments/results/rebalance-real", "results directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: go run ./experiments/rebalance-real [flags]\n\n"+
			"Rebalancing time of a quorum ring on real processes: add a node, then remove one, under load.")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *quick {
		p.Keys, p.Pause = 2000, 2*time.Second
	}
	err := realnodes.Run("rebalance-real", realnodes.Config{Bin: *bin, N: 3, IPPrefix: *ipPrefix, Port: *port,
		Cluster: "rreal", Fsync: "always"}, *dir, nil,
		func(out *expio.Out, cl *realnodes.Cluster) error { return run(out, cl, p) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "rebalance-real:", err)
		os.Exit(1)
	}
}

func key(i int) string { return fmt.Sprintf("key%07d", i) }

const ns = "q"

// setup creates the namespace, waits until every member serves it and
// preloads the keys in batches of 100 SETs.
func setup(out *expio.Out, cl *realnodes.Cluster, p params) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := client.New(cl.Addrs(), client.WithTimeout(30*time.Second), client.WithNamespace(ns))
	if err != nil {
		return err
	}
	defer c.Close()
	s := c.NewSession("")
	if err := s.CreateNamespace(ctx, client.NamespaceSpec{Name: ns, Strategy: "quorum",
		Params: map[string]string{"n": "3", "r": "2", "w": "2", "resolve": "lww"}}); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	for _, nd := range cl.Nodes {
		c1, err := client.New([]string{nd.Client}, client.WithTimeout(2*time.Second), client.WithNamespace(ns))
		if err != nil {
			return err
		}
		for {
			_, err := c1.NewSession("").Set(ctx, "warm", []byte("1"))
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				c1.Close()
				return fmt.Errorf("namespace not served at %s: %w", nd.ID, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		c1.Close()
	}
	t0 := time.Now()
	val := strings.Repeat("v", 100)
	for i := 0; i < p.Keys; i += 100 {
		var cmds []core.Command
		for k := i; k < min(i+100, p.Keys); k++ {
			cmds = append(cmds, core.Command{Name: "SET", Args: [][]byte{[]byte(key(k)), []byte(val)}})
		}
		rs, err := s.Pipeline(ctx, cmds)
		if err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		for _, r := range rs {
			if err := client.ReplyErr(r); err != nil {
				return fmt.Errorf("preload: %w", err)
			}
		}
	}
	out.Logf("preloaded %d keys in %.1fs", p.Keys, time.Since(t0).Seconds())
	return nil
}

func run(out *expio.Out, cl *realnodes.Cluster, p params) error {
	out.Logf("3 members up; creating the namespace")
	if err := setup(out, cl, p); err != nil {
		return err
	}
	n4, err := cl.Join()
	if err != nil {
		return err
	}
	out.Logf("%s started with --join (not a member yet)", n4.ID)
	// The load starts once n4 serves the namespace as a proxy (it pulls
	// the catalog every few seconds); the join itself is not measured.
	if err := waitServes(n4.Client); err != nil {
		return fmt.Errorf("%s: %w", n4.ID, err)
	}
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	loadStart := realnodes.Load1()

	start := time.Now()
	var mu sync.Mutex
	var recs []record
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range p.Clients {
		// Every client spreads over n2, n3 and n4 (a proxy until it is
		// added); n1, which is removed, gets no client requests.
		c, err := client.New([]string{cl.Nodes[1].Client, cl.Nodes[2].Client, n4.Client}, client.WithTimeout(p.Timeout), client.WithNamespace(ns), client.WithCircuitBreaker(0, 0))
		if err != nil {
			return err
		}
		defer c.Close()
		s := c.NewSession("")
		rng := rand.New(rand.NewPCG(p.Seed, uint64(i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []record
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					mu.Lock()
					recs = append(recs, mine...)
					mu.Unlock()
					return
				default:
				}
				t0 := time.Since(start)
				k := key(rng.IntN(p.Keys))
				ctx, cancel := context.WithTimeout(context.Background(), p.Timeout)
				var err error
				if rng.IntN(2) == 0 {
					_, err = s.Get(ctx, k)
				} else {
					_, err = s.Set(ctx, k, []byte(fmt.Sprintf("c%d-%d-%s", i, seq, strings.Repeat("w", 80))))
				}
				cancel()
				mine = append(mine, record{Invoke: t0, Done: time.Since(start), OK: err == nil})
				if d := t0 + p.Interval - time.Since(start); d > 0 {
					time.Sleep(d)
				}
			}
		}()
	}
	var changes []change
	var steps [][]string
	doChange := func(name, seed string, ch nodes.RingChange) error {
		time.Sleep(p.Pause)
		c := change{Name: name, Start: time.Since(start), Load1: realnodes.Load1()}
		out.Logf("%s at %.1fs (load %s)", name, c.Start.Seconds(), c.Load1)
		ch.Settle = p.Settle
		ch.Log = func(format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			out.Logf("  %.1fs %s", time.Since(start).Seconds(), msg)
			steps = append(steps, []string{name, fmt.Sprintf("%.3f", time.Since(start).Seconds()), msg})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		res, err := nodes.ChangeRing(ctx, seed, transport.DialOptions{}, ch)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		c.End, c.Res = time.Since(start), res
		out.Logf("%s: %d objects moved, stream %.2fs, total %.2fs", name, res.Moved, res.Stream.Seconds(), res.Total.Seconds())
		changes = append(changes, c)
		return nil
	}
	err = doChange("add "+n4.ID, cl.Nodes[1].Client, nodes.RingChange{Add: &nodes.ClusterPeer{ID: n4.ID, Client: n4.Client, Peer: n4.Peer}})
	if err == nil {
		err = doChange("remove "+cl.Nodes[0].ID, cl.Nodes[1].Client, nodes.RingChange{Remove: cl.Nodes[0].ID})
	}
	if err == nil {
		time.Sleep(p.Pause)
	}
	close(stop)
	wg.Wait()
	if err != nil {
		return err
	}
	loadEnd := realnodes.Load1()

	// Every key, read with R=ALL through n2 (a member throughout).
	missing, failed := 0, 0
	{
		c, err := client.New([]string{cl.Nodes[1].Client}, client.WithTimeout(10*time.Second), client.WithNamespace(ns))
		if err != nil {
			return err
		}
		s := c.NewSession("")
		for i := range p.Keys {
			ctx := client.With(context.Background(), client.R(3))
			v, err := s.Get(ctx, key(i))
			switch {
			case err != nil:
				failed++
			case !v.Found:
				missing++
			}
		}
		c.Close()
	}
	out.Logf("final read of %d keys with R=ALL: %d missing, %d failed", p.Keys, missing, failed)
	return write(out, p, recs, changes, steps, missing, failed, strings.TrimSpace(string(commit)), loadStart, loadEnd)
}

// waitServes waits until the node at addr answers a GET in the namespace.
func waitServes(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.New([]string{addr}, client.WithTimeout(2*time.Second), client.WithNamespace(ns), client.WithCircuitBreaker(0, 0))
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		_, err := c.NewSession("").Get(ctx, key(0))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("does not serve namespace %s: %w", ns, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// during summarises the operations invoked in [from, to): how many, the
// share that succeeded, and the longest time in the window without a
// successful completion.
func during(recs []record, from, to time.Duration) (n int, okPct float64, gap time.Duration) {
	var oks []time.Duration
	okN := 0
	for _, r := range recs {
		if r.Invoke >= from && r.Invoke < to {
			n++
			if r.OK {
				okN++
			}
		}
		if r.OK && r.Done >= from && r.Done < to {
			oks = append(oks, r.Done)
		}
	}
	if n > 0 {
		okPct = 100 * float64(okN) / float64(n)
	}
	slices.Sort(oks)
	last := from
	for _, t := range oks {
		gap = max(gap, t-last)
		last = t
	}
	gap = max(gap, to-last)
	return n, okPct, gap
}

func write(out *expio.Out, p params, recs []record, changes []change, steps [][]string, missing, failed int, commit, l0, l1 string) error {
	hdr := []string{"change", "members_before", "members_after", "keys", "objects_moved", "stream_s", "total_s", "ops_during", "ok_pct_during", "longest_gap_s", "load1"}
	var rows [][]string
	ids := func(m nodes.Membership) string {
		var s []string
		for _, x := range m.Members {
			s = append(s, x.ID)
		}
		return strings.Join(s, "+")
	}
	for _, c := range changes {
		n, ok, gap := during(recs, c.Start, c.End)
		rows = append(rows, []string{c.Name, ids(c.Res.From), ids(c.Res.To), strconv.Itoa(p.Keys), strconv.Itoa(c.Res.Moved),
			fmt.Sprintf("%.2f", c.Res.Stream.Seconds()), fmt.Sprintf("%.2f", c.Res.Total.Seconds()),
			strconv.Itoa(n), fmt.Sprintf("%.1f", ok), fmt.Sprintf("%.2f", gap.Seconds()), c.Load1})
	}
	// Outside the changes.
	var outside []record
	for _, r := range recs {
		in := false
		for _, c := range changes {
			if r.Invoke >= c.Start && r.Invoke < c.End {
				in = true
			}
		}
		if !in {
			outside = append(outside, r)
		}
	}
	nOut, okOut, _ := during(outside, 0, 1<<62)
	if err := out.CSV("results", hdr, rows); err != nil {
		return err
	}
	// Phases: the pauses and the changes, with the load's rate in each.
	var end time.Duration
	for _, r := range recs {
		end = max(end, r.Invoke)
	}
	end += time.Nanosecond
	phHdr := []string{"phase", "from_s", "to_s", "ops", "ok_pct", "ops_per_s"}
	var phRows [][]string
	from := time.Duration(0)
	phase := func(name string, to time.Duration) {
		n, ok, _ := during(recs, from, to)
		phRows = append(phRows, []string{name, fmt.Sprintf("%.1f", from.Seconds()), fmt.Sprintf("%.1f", to.Seconds()), strconv.Itoa(n),
			fmt.Sprintf("%.1f", ok), fmt.Sprintf("%.0f", float64(n)/max((to-from).Seconds(), 1e-9))})
		from = to
	}
	for i, c := range changes {
		phase(map[bool]string{true: "before", false: "between"}[i == 0], c.Start)
		phase(c.Name, c.End)
	}
	phase("after", end)
	if err := out.CSV("phases", phHdr, phRows); err != nil {
		return err
	}
	if err := out.CSV("steps", []string{"change", "seconds", "step"}, steps); err != nil {
		return err
	}
	// Timeline: successful and failed operations per second, 500 ms bins.
	const bin = 500 * time.Millisecond
	nb := int(end/bin) + 1
	okB, failB := make([]int, nb), make([]int, nb)
	for _, r := range recs {
		b := int(r.Invoke / bin)
		if r.OK {
			okB[b]++
		} else {
			failB[b]++
		}
	}
	var trow [][]string
	okS, failS := expio.Series{Name: "ok ops/s"}, expio.Series{Name: "failed ops/s"}
	for b := range nb {
		x := (time.Duration(b) * bin).Seconds()
		trow = append(trow, []string{fmt.Sprintf("%.1f", x), strconv.Itoa(okB[b]), strconv.Itoa(failB[b])})
		okS.X, okS.Y = append(okS.X, x), append(okS.Y, float64(okB[b])*float64(time.Second/bin))
		failS.X, failS.Y = append(failS.X, x), append(failS.Y, float64(failB[b])*float64(time.Second/bin))
	}
	series := []expio.Series{okS, failS}
	for _, c := range changes {
		series = append(series, expio.Series{Name: c.Name + " (joint to stable)", X: []float64{c.Start.Seconds(), c.End.Seconds()}, Y: []float64{0, 0}})
	}
	if err := out.CSV("timeline", []string{"seconds", "ok", "failed"}, trow); err != nil {
		return err
	}
	if err := out.LinePlot("timeline", "Quorum ring changes under load (3 nodes, add n4, remove n1)", "seconds", "operations/s", series, false); err != nil {
		return err
	}
	cmd := fmt.Sprintf("go run ./experiments/rebalance-real --keys %d --clients %d --interval %s --timeout %s --settle %s --pause %s --seed %d",
		p.Keys, p.Clients, p.Interval, p.Timeout, p.Settle, p.Pause, p.Seed)
	if err := out.Params(cmd, map[string]any{"keys": p.Keys, "clients": p.Clients, "interval": p.Interval.String(), "timeout": p.Timeout.String(),
		"settle": p.Settle.String(), "pause": p.Pause.String(), "seed": p.Seed, "commit": commit, "load_start": l0, "load_end": l1,
		"final_missing": missing, "final_failed": failed}); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Quorum ring changes on real processes: 3 `dialkv node` members on loopback (`--fsync always`), namespace N=3 R=W=2 lww "+
		"with %d preloaded 100-byte keys; n4 (started with --join) added, then n1 removed (nodes.ChangeRing, settle %s), while %d clients spread "+
		"over n2, n3 and n4 (a proxy until added) send a GET or SET every %s (deadline %s). objects_moved: pushes to new owners acknowledged; stream_s: stream phase until "+
		"no node has handoff pending (data rebalanced); total_s: joint phase to stable; ok_pct_during and longest_gap_s: the clients' operations "+
		"invoked during the change. Commit %s, load average %s at the start and %s at the end.\n\n", p.Keys, p.Settle, p.Clients, p.Interval, p.Timeout, commit, l0, l1)
	b.WriteString(expio.Table(hdr, rows))
	b.WriteString("\nThe load in each phase (operations invoked in it; closed loop, so a slow phase issues fewer):\n\n")
	b.WriteString(expio.Table(phHdr, phRows))
	fmt.Fprintf(&b, "\nOutside the changes: %d operations, %.1f%% ok. After both changes, every key read with R=ALL through n2: %d of %d missing, %d reads failed.\n",
		nOut, okOut, missing, p.Keys, failed)
	fmt.Fprintf(&b, "\nReproduce: `%s` (`make exp-rebalance-real`). Steps with times: steps.csv; operations over time: timeline.csv, timeline.png.\n", cmd)
	if err := out.Markdown("table", b.String()); err != nil {
		return err
	}
	fmt.Print(b.String())
	if missing > 0 || failed > 0 {
		return errors.New("keys lost or unreadable after the ring changes (results written)")
	}
	return nil
}
