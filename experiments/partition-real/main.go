// Command partition-real is experiment 2 of PAPER.md on a real cluster:
// the fraction of operations that succeed on the majority and on the
// minority side of a network partition, per strategy and consistency
// level, with `dialkv node` processes on loopback and real partitions.
//
// Node i listens on 127.0.31.i and runs under uid 47300+i; a partition is a
// set of iptables DROP rules matching the sending socket's owner and the
// destination address (experiments/internal/netcut), so peer, gossip and
// raft traffic between the two sides is dropped while the experiment's
// clients (root) still reach every node. Each partition is checked by
// running `dialkv cli PING` as one node's uid against every other node.
// It needs root and iptables; elsewhere it prints why and exits 0.
//
// Every level has one client per node, pinned to that node (a client
// placed on the node's side of the cut), issuing a GET or a SET (half each,
// on KEYS keys of its own) every --interval, each with a --timeout
// deadline; nothing is redirected: raft runs with redirect=false, so a
// follower forwards inside Raft (Dragonboat), as in the simulator's
// experiment 2. An operation counts on the side of its node at the moment
// it was invoked (minority: the node is in the smaller group); it
// succeeded if the node answered without error before the deadline.
// The run has --rounds partitions of --partition each, the minority
// rotating over the nodes, with --gap of no partition before each and
// after the last.
//
// Run: go run ./experiments/partition-real [--quick] (as root; `make
// exp-partition-real`).
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
	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/experiments/internal/netcut"
	"github.com/dialkv/dialkv/experiments/internal/realnodes"
)

// level is one strategy and consistency level: a namespace and the
// per-request options of its operations.
type level struct {
	Label string
	NS    string // "" : the node's default namespace (strategy local)
	Opts  []client.CallOption
}

func levels() []level {
	return []level{
		{"local (each node its own)", "", nil},
		{"quorum R=1 W=1 sloppy", "q", []client.CallOption{client.R(1), client.W(1)}},
		{"quorum R=2 W=2 sloppy", "q", []client.CallOption{client.R(2), client.W(2)}},
		{"quorum R=2 W=2 strict", "q", []client.CallOption{client.R(2), client.W(2), client.Strict()}},
		{"quorum linearizable (ABD)", "q", []client.CallOption{client.Mode("linearizable")}},
		{"raft read=linearizable", "r", []client.CallOption{client.ReadMode("linearizable")}},
		{"raft read=lease", "r", []client.CallOption{client.ReadMode("lease")}},
		{"raft read=stale", "r", []client.CallOption{client.ReadMode("stale")}},
		{"causal, 1 region", "c1", nil},
		{"causal, 1 region per node", "cn", nil},
	}
}

// namespaces creates the levels' namespaces on a cluster of n nodes.
func namespaces(c *realnodes.Cluster) []client.NamespaceSpec {
	var regions []string
	for i, nd := range c.Nodes {
		regions = append(regions, fmt.Sprintf("r%d:%s", i+1, nd.ID))
	}
	raft := c.RaftParams()
	raft["shards"], raft["replicas"], raft["redirect"] = "1", strconv.Itoa(len(c.Nodes)), "false"
	return []client.NamespaceSpec{
		{Name: "q", Strategy: "quorum", Params: map[string]string{"n": "3", "r": "2", "w": "2", "resolve": "lww"}},
		{Name: "r", Strategy: "raft", Params: raft},
		{Name: "c1", Strategy: "causal", Params: nil},
		{Name: "cn", Strategy: "causal", Params: map[string]string{"regions": strings.Join(regions, ";")}},
	}
}

// Side of an operation.
type Side int

// Sides, in table order.
const (
	NoPartition Side = iota
	Majority
	Minority
)

func (s Side) String() string { return [...]string{"no partition", "majority", "minority"}[s] }

// record is one operation.
type record struct {
	Level, Node int           // indexes
	Invoke, Dur time.Duration // since the start of the run
	Write, OK   bool
	Code        string // error code when not OK
}

// window is one partition: [Start, End) with the minority's node indexes.
type window struct {
	Start, End time.Duration
	Minority   []int
}

// sideOf classifies an operation by the node it went to and when it was
// invoked; since is the time since the window's start (0 outside one).
func sideOf(ws []window, node int, at time.Duration) (Side, time.Duration) {
	for _, w := range ws {
		if at >= w.Start && at < w.End {
			if slices.Contains(w.Minority, node) {
				return Minority, at - w.Start
			}
			return Majority, at - w.Start
		}
	}
	return NoPartition, 0
}

// tally counts operations and successes per side and kind (0 read, 1 write).
type tally struct{ n, ok [3][2]int }

func (t *tally) pct(s Side, kind int) string {
	n, ok := t.n[s][0]+t.n[s][1], t.ok[s][0]+t.ok[s][1]
	if kind >= 0 {
		n, ok = t.n[s][kind], t.ok[s][kind]
	}
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", 100*float64(ok)/float64(n))
}

func (t *tally) total(s Side) int { return t.n[s][0] + t.n[s][1] }

// tallies classifies every record per level; settle > 0 leaves out
// partition-side operations invoked less than settle after their cut.
func tallies(recs []record, ws []window, nlevels int, settle time.Duration) []tally {
	ts := make([]tally, nlevels)
	for _, r := range recs {
		s, since := sideOf(ws, r.Node, r.Invoke)
		if s != NoPartition && since < settle {
			continue
		}
		k := 0
		if r.Write {
			k = 1
		}
		ts[r.Level].n[s][k]++
		if r.OK {
			ts[r.Level].ok[s][k]++
		}
	}
	return ts
}

// minorities returns the minority of each round: (n-1)/2 nodes, rotating.
func minorities(n, rounds int) [][]int {
	size := (n - 1) / 2
	var out [][]int
	next := 0
	for range rounds {
		var m []int
		for range size {
			m = append(m, next%n)
			next++
		}
		slices.Sort(m)
		out = append(out, m)
	}
	return out
}

type params struct {
	Nodes, Rounds, Keys int
	Gap, Partition      time.Duration
	Interval, Timeout   time.Duration
	Settle, Bin         time.Duration
	Seed                uint64
}

func main() {
	var p params
	flag.IntVar(&p.Nodes, "nodes", 5, "nodes (3 or 5: raft runs a replica on each)")
	flag.IntVar(&p.Rounds, "rounds", 3, "partitions, the minority rotating over the nodes")
	flag.IntVar(&p.Keys, "keys", 20, "keys per level")
	flag.DurationVar(&p.Gap, "gap", 8*time.Second, "time without partition before each partition and after the last")
	flag.DurationVar(&p.Partition, "partition", 12*time.Second, "length of each partition")
	flag.DurationVar(&p.Interval, "interval", 50*time.Millisecond, "time between the starts of a client's operations (at least)")
	flag.DurationVar(&p.Timeout, "timeout", time.Second, "deadline of each operation")
	flag.DurationVar(&p.Settle, "settle", 3*time.Second, "the 'settled' columns leave out operations invoked less than this after the cut")
	flag.DurationVar(&p.Bin, "bin", 500*time.Millisecond, "width of the time bins of timeline.csv and the plots")
	flag.Uint64Var(&p.Seed, "seed", 1, "seed of the clients' key and operation choices")
	bin := flag.String("dialkv", realnodes.EnvOr("DIALKV_BIN", "bin/dialkv"), "dialkv binary (env DIALKV_BIN)")
	port := flag.Int("port", 27400, "client port of every node (peer +1, gossip +3, raft +5)")
	ipPrefix := flag.String("ip-prefix", "127.0.31.", "node i listens on this prefix + i")
	uidBase := flag.Int("uid-base", 47300, "node i runs as uid uid-base+i")
	quick := flag.Bool("quick", false, "3 nodes, 1 round of 6 s, 4 s gaps")
	dir := flag.String("out", "experiments/results/partition-real", "results directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: go run ./experiments/partition-real [flags]   (as root, with iptables)\n\n"+
			"Fraction of operations that succeed on the majority and minority side of real partitions\n"+
			"(iptables between dialkv node processes on loopback), per strategy and consistency level.")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *quick {
		p.Nodes, p.Rounds, p.Partition, p.Gap = 3, 1, 6*time.Second, 4*time.Second
	}
	if p.Nodes != 3 && p.Nodes != 5 {
		fmt.Fprintln(os.Stderr, "partition-real: --nodes must be 3 or 5")
		os.Exit(2)
	}
	cut, err := netcut.New("DIALKV-PARTITION-REAL", *uidBase+1, *uidBase+p.Nodes)
	if errors.Is(err, netcut.ErrUnsupported) {
		fmt.Fprintf(os.Stderr, "partition-real: skipped: real partitions need root and iptables with the owner match here (%v)\n", err)
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "partition-real:", err)
		os.Exit(1)
	}
	err = realnodes.Run("partition-real", realnodes.Config{Bin: *bin, N: p.Nodes, IPPrefix: *ipPrefix, Port: *port,
		UIDBase: *uidBase, Cluster: "preal", Fsync: "interval"}, *dir, cut.Close,
		func(out *expio.Out, cl *realnodes.Cluster) error { return run(out, cl, cut, p) })
	cut.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "partition-real:", err)
		os.Exit(1)
	}
}

// setup creates the namespaces and waits until every level serves a SET at
// every node.
func setup(cl *realnodes.Cluster, ls []level) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c0, err := client.New([]string{cl.Nodes[0].Client}, client.WithTimeout(10*time.Second))
	if err != nil {
		return err
	}
	defer c0.Close()
	for _, ns := range namespaces(cl) {
		if err := c0.NewSession("").CreateNamespace(ctx, ns); err != nil {
			return fmt.Errorf("create namespace %s: %w", ns.Name, err)
		}
	}
	for _, nd := range cl.Nodes {
		c, err := client.New([]string{nd.Client}, client.WithTimeout(2*time.Second), client.WithCircuitBreaker(0, 0))
		if err != nil {
			return err
		}
		for _, l := range ls {
			// A session per level: a session token of one namespace
			// means nothing to another.
			s := c.NewSession("")
			for {
				octx := ctx
				if l.NS != "" {
					octx = client.With(ctx, append([]client.CallOption{client.Namespace(l.NS)}, l.Opts...)...)
				}
				_, err := s.Set(octx, "warm", []byte("1"))
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					c.Close()
					return fmt.Errorf("%s not served at %s: %w", l.Label, nd.ID, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		c.Close()
	}
	return nil
}

func run(out *expio.Out, cl *realnodes.Cluster, cut *netcut.Cutter, p params) error {
	ls := levels()
	out.Logf("%d nodes up; creating namespaces", len(cl.Nodes))
	if err := setup(cl, ls); err != nil {
		return err
	}
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	loadStart := realnodes.Load1()
	out.Logf("all levels served at every node; load average %s", loadStart)

	start := time.Now()
	var mu sync.Mutex
	var recs []record
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for li, l := range ls {
		for ni, nd := range cl.Nodes {
			c, err := client.New([]string{nd.Client}, client.WithTimeout(p.Timeout), client.WithDialTimeout(p.Timeout),
				client.WithCircuitBreaker(0, 0))
			if err != nil {
				return err
			}
			defer c.Close()
			s := c.NewSession(fmt.Sprintf("w%d-%d", li, ni))
			rng := rand.New(rand.NewPCG(p.Seed, uint64(li*100+ni)))
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
					key := fmt.Sprintf("k%d", rng.IntN(p.Keys))
					write := rng.IntN(2) == 1
					ctx, cancel := context.WithTimeout(context.Background(), p.Timeout)
					if l.NS != "" {
						ctx = client.With(ctx, append([]client.CallOption{client.Namespace(l.NS)}, l.Opts...)...)
					}
					var err error
					if write {
						_, err = s.Set(ctx, key, []byte(fmt.Sprintf("%d-%d-%d", li, ni, seq)))
					} else {
						_, err = s.Get(ctx, key)
					}
					cancel()
					r := record{Level: li, Node: ni, Invoke: t0, Dur: time.Since(start) - t0, Write: write, OK: err == nil}
					if err != nil {
						var ce *client.Error
						if errors.As(err, &ce) {
							r.Code = ce.Code
						} else {
							r.Code = "other"
						}
					}
					mine = append(mine, r)
					if d := t0 + p.Interval - time.Since(start); d > 0 {
						time.Sleep(d)
					}
				}
			}()
		}
	}

	var ws []window
	var verify []string
	for round, minority := range minorities(len(cl.Nodes), p.Rounds) {
		time.Sleep(p.Gap)
		var groups [2][]netcut.Host
		var names []string
		for i, nd := range cl.Nodes {
			if slices.Contains(minority, i) {
				groups[0] = append(groups[0], nd.Host())
				names = append(names, nd.ID)
			} else {
				groups[1] = append(groups[1], nd.Host())
			}
		}
		w := window{Start: time.Since(start), Minority: minority}
		if err := cut.Partition(groups[:]); err != nil {
			close(stop)
			wg.Wait()
			return err
		}
		out.Logf("round %d: partition {%s} | rest at %.1fs (load %s)", round+1, strings.Join(names, ","), w.Start.Seconds(), realnodes.Load1())
		v := checkCut(cl, minority)
		verify = append(verify, fmt.Sprintf("round %d {%s}: %s", round+1, strings.Join(names, ","), v))
		out.Logf("  cut check: %s", v)
		time.Sleep(p.Partition - (time.Since(start) - w.Start))
		if err := cut.Heal(); err != nil {
			close(stop)
			wg.Wait()
			return err
		}
		w.End = time.Since(start)
		ws = append(ws, w)
		out.Logf("round %d: healed at %.1fs", round+1, w.End.Seconds())
		v = checkCut(cl, nil)
		verify = append(verify, fmt.Sprintf("round %d healed: %s", round+1, v))
		out.Logf("  heal check: %s", v)
	}
	time.Sleep(p.Gap)
	close(stop)
	wg.Wait()
	loadEnd := realnodes.Load1()
	out.Logf("%d operations; load average %s", len(recs), loadEnd)
	for _, v := range verify {
		if !strings.HasPrefix(strings.SplitN(v, ": ", 2)[1], "ok") {
			return fmt.Errorf("partition not in force as intended: %s", v)
		}
	}
	return write(out, p, ls, recs, ws, verify, strings.TrimSpace(string(commit)), loadStart, loadEnd, len(cl.Nodes))
}

// checkCut pings, as each node's uid, every other node (in parallel): the
// result says "ok" if exactly the nodes of the same side answered.
func checkCut(cl *realnodes.Cluster, minority []int) string {
	type pair struct{ i, j int }
	var pairs []pair
	for i := range cl.Nodes {
		for j := range cl.Nodes {
			if i != j {
				pairs = append(pairs, pair{i, j})
			}
		}
	}
	bad := make([]string, len(pairs))
	var wg sync.WaitGroup
	for k, pr := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			same := slices.Contains(minority, pr.i) == slices.Contains(minority, pr.j)
			if got := cl.CanReach(cl.Nodes[pr.i], cl.Nodes[pr.j]); got != same {
				bad[k] = fmt.Sprintf("%s->%s reachable=%v", cl.Nodes[pr.i].ID, cl.Nodes[pr.j].ID, got)
			}
		}()
	}
	wg.Wait()
	bad = slices.DeleteFunc(bad, func(s string) bool { return s == "" })
	if len(bad) > 0 {
		return "WRONG " + strings.Join(bad, " ")
	}
	return fmt.Sprintf("ok (%d directed node pairs: same side reachable, other side not)", len(pairs))
}

func write(out *expio.Out, p params, ls []level, recs []record, ws []window, verify []string, commit, l0, l1 string, nodes int) error {
	all := tallies(recs, ws, len(ls), 0)
	settled := tallies(recs, ws, len(ls), p.Settle)
	hdr := []string{"level", "no_partition_ok_pct", "majority_read_ok_pct", "majority_write_ok_pct", "minority_read_ok_pct", "minority_write_ok_pct",
		"majority_settled_ok_pct", "minority_settled_ok_pct", "ops_no_partition", "ops_majority", "ops_minority"}
	var rows [][]string
	for i, l := range ls {
		t, s := &all[i], &settled[i]
		rows = append(rows, []string{l.Label, t.pct(NoPartition, -1), t.pct(Majority, 0), t.pct(Majority, 1), t.pct(Minority, 0), t.pct(Minority, 1),
			s.pct(Majority, -1), s.pct(Minority, -1), strconv.Itoa(t.total(NoPartition)), strconv.Itoa(t.total(Majority)), strconv.Itoa(t.total(Minority))})
	}
	if err := out.CSV("results", hdr, rows); err != nil {
		return err
	}
	// Errors per level and side, by code.
	codes := map[[3]string]int{}
	for _, r := range recs {
		if r.OK {
			continue
		}
		s, _ := sideOf(ws, r.Node, r.Invoke)
		codes[[3]string{ls[r.Level].Label, s.String(), r.Code}]++
	}
	var crow [][]string
	for k, n := range codes {
		crow = append(crow, []string{k[0], k[1], k[2], strconv.Itoa(n)})
	}
	slices.SortFunc(crow, func(a, b []string) int { return strings.Compare(strings.Join(a, "\x00"), strings.Join(b, "\x00")) })
	if err := out.CSV("errors", []string{"level", "side", "code", "count"}, crow); err != nil {
		return err
	}
	// Timeline: success fraction per level and side in bins of time since
	// the cut (pooled over rounds), from -gap/2 to the end of the partition
	// plus gap/2.
	nb := int((p.Partition + p.Gap) / p.Bin)
	type bin struct{ n, ok [3]int }
	tl := make([][]bin, len(ls))
	for i := range tl {
		tl[i] = make([]bin, nb)
	}
	for _, r := range recs {
		for _, w := range ws {
			rel := r.Invoke - w.Start + p.Gap/2
			b := int(rel / p.Bin)
			if rel < 0 || b >= nb {
				continue
			}
			s := Majority
			if slices.Contains(w.Minority, r.Node) {
				s = Minority
			}
			tl[r.Level][b].n[s]++
			if r.OK {
				tl[r.Level][b].ok[s]++
			}
		}
	}
	var trow [][]string
	series := map[Side][]expio.Series{}
	for i, l := range ls {
		for _, s := range []Side{Majority, Minority} {
			se := expio.Series{Name: l.Label}
			for b := range nb {
				x := (time.Duration(b)*p.Bin + p.Bin/2 - p.Gap/2).Seconds()
				n, ok := tl[i][b].n[s], tl[i][b].ok[s]
				trow = append(trow, []string{l.Label, s.String(), fmt.Sprintf("%.2f", x), strconv.Itoa(n), strconv.Itoa(ok)})
				if n > 0 {
					se.X = append(se.X, x)
					se.Y = append(se.Y, 100*float64(ok)/float64(n))
				}
			}
			series[s] = append(series[s], se)
		}
	}
	if err := out.CSV("timeline", []string{"level", "side", "seconds_since_cut", "ops", "ok"}, trow); err != nil {
		return err
	}
	for _, s := range []Side{Majority, Minority} {
		title := fmt.Sprintf("%s side: operations that succeed (cut at 0 s, healed after %.0f s)", s, p.Partition.Seconds())
		if err := out.LinePlot("timeline-"+s.String(), title, "seconds since the cut", "ok %", series[s], false); err != nil {
			return err
		}
	}
	cmd := fmt.Sprintf("go run ./experiments/partition-real --nodes %d --rounds %d --partition %s --gap %s --interval %s --timeout %s --keys %d --seed %d",
		nodes, p.Rounds, p.Partition, p.Gap, p.Interval, p.Timeout, p.Keys, p.Seed)
	if err := out.Params(cmd, map[string]any{"nodes": nodes, "rounds": p.Rounds, "partition": p.Partition.String(), "gap": p.Gap.String(),
		"interval": p.Interval.String(), "timeout": p.Timeout.String(), "keys": p.Keys, "seed": p.Seed, "settle": p.Settle.String(),
		"commit": commit, "load_start": l0, "load_end": l1, "cut_checks": verify}); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Availability under real partitions: %d `dialkv node` processes on loopback (one address and uid each, `--fsync interval`), "+
		"%d partition(s) of %s cutting off %d node(s) (rotating) with iptables, %s without partition around each. "+
		"Per level one client per node, pinned to it, a GET or SET (half each, %d keys) every %s with a %s deadline. "+
		"Percent of operations that succeeded by the side of their node when invoked; settled: leaving out the first %s after each cut. "+
		"Commit %s, load average %s at the start and %s at the end.\n\n",
		nodes, p.Rounds, p.Partition, (nodes-1)/2, p.Gap, p.Keys, p.Interval, p.Timeout, p.Settle, commit, l0, l1)
	b.WriteString(expio.Table(hdr, rows))
	fmt.Fprintf(&b, "\nReproduce (as root): `%s` (`make exp-partition-real`). Failures by error code: errors.csv; over time: timeline.csv, timeline-*.png.\n", cmd)
	for _, v := range verify {
		fmt.Fprintf(&b, "\nCut check, %s", v)
	}
	b.WriteString("\n")
	if err := out.Markdown("table", b.String()); err != nil {
		return err
	}
	fmt.Print(b.String())
	return nil
}
