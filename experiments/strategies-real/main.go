// Command strategies-real is experiment 1 of PAPER.md on a real cluster:
// latency and throughput per strategy and per consistency level, three
// `dialkv node` processes on loopback (127.0.32.1-3, `--fsync always`,
// gossip on) in one cluster, every configuration driven by `dialkv bench
// --json` (50 clients, 70/30 GET/SET, 100-byte values) in the same run:
//
//	local   the default namespace of one node (no replication)
//	quorum  N=3, resolve=lww: R=W=1, R=W=2 sloppy, R=W=2 strict, R=W=3,
//	        and linearizable (ABD) (per-request options)
//	raft    3 replicas, 1 shard: linearizable and lease reads at the
//	        leader, and stale reads spread over every node (through the Go
//	        client, --via-client, which sends writes on to the leader)
//	causal  regions a:n1,n2 and b:n3 (writes acknowledged in the region)
//
// Quorum and causal clients are spread over the three nodes (any member
// serves them). The configurations run in --rounds interleaved rounds so
// that the shared machine's load hits them alike; every row carries the
// 1-minute load average before it ran. Each namespace is loaded (every key
// written once) before its first configuration of round 1, except causal:
// its load phase's 100-write chains exceed the bench's 5 s deadline on a
// loaded 2-core machine (docs/causal.md), so its reads find the keys its
// writes made during the runs.
//
// Run: go run ./experiments/strategies-real [--duration 10s] [--rounds 2]
// (`make exp-strategies-real`; `--quick`: 3 s, one round).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/clients/bench"
	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/experiments/internal/realnodes"
)

// config is one row of the table: where the bench sends and its flags.
type config struct {
	Strategy, Level string
	NS              string   // "": the default namespace (local)
	At              string   // "one": n1; "leader": the raft leader; "all": every node
	Flags           []string // extra bench flags
}

func configs() []config {
	return []config{
		{"local", "one node, no replication", "", "one", nil},
		{"quorum", "R=1 W=1", "q", "all", []string{"--r", "1", "--w", "1"}},
		{"quorum", "R=2 W=2 sloppy", "q", "all", []string{"--r", "2", "--w", "2"}},
		{"quorum", "R=2 W=2 strict", "q", "all", []string{"--r", "2", "--w", "2", "--strict"}},
		{"quorum", "R=3 W=3", "q", "all", []string{"--r", "3", "--w", "3"}},
		{"quorum", "linearizable (ABD)", "q", "all", []string{"--mode", "linearizable"}},
		{"raft", "linearizable reads, at the leader", "r", "leader", []string{"--read-mode", "linearizable"}},
		{"raft", "lease reads, at the leader", "r", "leader", []string{"--read-mode", "lease"}},
		{"raft", "stale reads, spread (via client)", "r", "all", []string{"--read-mode", "stale", "--via-client"}},
		{"causal", "regions a=n1+n2 b=n3", "c", "all", nil},
	}
}

func (c config) label() string { return c.Strategy + " " + c.Level }

type params struct {
	Duration        time.Duration
	Rounds, Clients int
	Keys            int
}

func main() {
	var p params
	flag.DurationVar(&p.Duration, "duration", 10*time.Second, "measurement time of each configuration per round")
	flag.IntVar(&p.Rounds, "rounds", 2, "interleaved rounds")
	flag.IntVar(&p.Clients, "clients", 50, "bench clients")
	flag.IntVar(&p.Keys, "keys", 10000, "keys")
	bin := flag.String("dialkv", realnodes.EnvOr("DIALKV_BIN", "bin/dialkv"), "dialkv binary (env DIALKV_BIN)")
	port := flag.Int("port", 27500, "client port of every node (peer +1, gossip +3, raft +5)")
	ipPrefix := flag.String("ip-prefix", "127.0.32.", "node i listens on this prefix + i")
	quick := flag.Bool("quick", false, "3 s per configuration, one round, 1000 keys")
	dir := flag.String("out", "experiments/results/strategies-real", "results directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: go run ./experiments/strategies-real [flags]\n\n"+
			"Latency and throughput per strategy and consistency level on three dialkv node processes (loopback).")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *quick {
		p.Duration, p.Rounds, p.Keys = 3*time.Second, 1, 1000
	}
	err := realnodes.Run("strategies-real", realnodes.Config{Bin: *bin, N: 3, IPPrefix: *ipPrefix, Port: *port,
		Cluster: "sreal", Fsync: "always"}, *dir, nil,
		func(out *expio.Out, cl *realnodes.Cluster) error { return run(out, cl, *bin, p) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "strategies-real:", err)
		os.Exit(1)
	}
}

// setup creates the namespaces, waits until each serves a SET at every
// node, and returns the raft leader's client address (a follower answers
// MOVED naming it).
func setup(cl *realnodes.Cluster) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c0, err := client.New([]string{cl.Nodes[0].Client}, client.WithTimeout(10*time.Second))
	if err != nil {
		return "", err
	}
	defer c0.Close()
	raft := cl.RaftParams()
	raft["shards"] = "1"
	for _, ns := range []client.NamespaceSpec{
		{Name: "q", Strategy: "quorum", Params: map[string]string{"n": "3", "r": "2", "w": "2", "resolve": "lww"}},
		{Name: "c", Strategy: "causal", Params: map[string]string{"regions": fmt.Sprintf("a:%s,%s;b:%s", cl.Nodes[0].ID, cl.Nodes[1].ID, cl.Nodes[2].ID)}},
		{Name: "r", Strategy: "raft", Params: raft},
	} {
		if err := c0.NewSession("").CreateNamespace(ctx, ns); err != nil {
			return "", fmt.Errorf("create namespace %s: %w", ns.Name, err)
		}
	}
	leader := ""
	for _, nd := range cl.Nodes {
		c, err := client.New([]string{nd.Client}, client.WithTimeout(2*time.Second), client.WithCircuitBreaker(0, 0))
		if err != nil {
			return "", err
		}
		for _, ns := range []string{"q", "c", "r"} {
			for {
				_, err := c.NewSession("").Set(client.With(ctx, client.Namespace(ns), client.NoRetry()), "warm", []byte("1"))
				var ce *client.Error
				if ns == "r" && errors.As(err, &ce) && ce.Code == client.CodeMoved && ce.Addr != "" {
					leader = ce.Addr
					break
				}
				if err == nil {
					if ns == "r" {
						leader = nd.Client
					}
					break
				}
				if ctx.Err() != nil {
					c.Close()
					return "", fmt.Errorf("namespace %s not served at %s: %w", ns, nd.ID, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		c.Close()
	}
	return leader, nil
}

// row is one measured configuration in one round.
type row struct {
	Round  int
	Cfg    config
	Res    bench.Result
	Load1  string
	Cmd    string
	Failed string // the bench's error output when it failed
}

func run(out *expio.Out, cl *realnodes.Cluster, bin string, p params) error {
	out.Logf("3 nodes up; creating namespaces")
	leader, err := setup(cl)
	if err != nil {
		return err
	}
	out.Logf("raft leader: %s; settling 5 s", leader)
	time.Sleep(5 * time.Second)
	all := strings.Join(cl.Addrs(), ",")
	addrOf := func(c config) string {
		switch c.At {
		case "one":
			return cl.Nodes[0].Client
		case "leader":
			return leader
		}
		return all
	}
	loaded := map[string]bool{}
	var rows []row
	for round := 1; round <= p.Rounds; round++ {
		for _, c := range configs() {
			load := round == 1 && c.Strategy != "causal" && !loaded[c.NS]
			loaded[c.NS] = true
			args := []string{"bench", "--addr", addrOf(c), "--workload", "70/30", "--clients", strconv.Itoa(p.Clients),
				"--value-size", "100", "--keys", strconv.Itoa(p.Keys), "--load=" + strconv.FormatBool(load),
				"--duration", p.Duration.String(), "--progress", "0", "--json"}
			if c.NS != "" {
				args = append(args, "--namespace", c.NS)
			}
			args = append(args, c.Flags...)
			r := row{Round: round, Cfg: c, Load1: realnodes.Load1(), Cmd: "dialkv " + strings.Join(args, " ")}
			out.Logf("round %d: %s (load %s)", round, c.label(), r.Load1)
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				r.Failed = strings.TrimSpace(stderr.String())
				out.Logf("  bench failed: %v: %s", err, r.Failed)
			} else if err := json.Unmarshal(stdout.Bytes(), &r.Res); err != nil {
				return fmt.Errorf("%s: bench output: %w", c.label(), err)
			} else {
				out.Logf("  %.0f ops/s, read p50 %.2f ms, write p50 %.2f ms, %d errors", r.Res.OpsPerSec, r.Res.Reads.P50Ms, r.Res.Writes.P50Ms, r.Res.Errors)
			}
			rows = append(rows, r)
		}
	}
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	return write(out, p, rows, leader, strings.TrimSpace(string(commit)))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func write(out *expio.Out, p params, rows []row, leader, commit string) error {
	f2 := func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
	hdr := []string{"round", "strategy", "level", "ops_per_sec", "read_p50_ms", "read_p99_ms", "write_p50_ms", "write_p99_ms", "errors", "load1", "failed", "command"}
	var csvRows [][]string
	for _, r := range rows {
		csvRows = append(csvRows, []string{strconv.Itoa(r.Round), r.Cfg.Strategy, r.Cfg.Level, fmt.Sprintf("%.0f", r.Res.OpsPerSec),
			f2(r.Res.Reads.P50Ms), f2(r.Res.Reads.P99Ms), f2(r.Res.Writes.P50Ms), f2(r.Res.Writes.P99Ms),
			strconv.FormatInt(r.Res.Errors, 10), r.Load1, r.Failed, r.Cmd})
	}
	if err := out.CSV("results", hdr, csvRows); err != nil {
		return err
	}
	// Medians over the rounds that ran, per configuration, in table order.
	var raftOps float64
	type agg struct {
		c               config
		ops, rp50, rp99 []float64
		wp50, wp99      []float64
		errs            int64
		loads           []string
		failed          int
	}
	var aggs []*agg
	for _, c := range configs() {
		a := &agg{c: c}
		for _, r := range rows {
			if r.Cfg.label() != c.label() {
				continue
			}
			a.loads = append(a.loads, r.Load1)
			if r.Failed != "" {
				a.failed++
				continue
			}
			a.ops = append(a.ops, r.Res.OpsPerSec)
			a.rp50, a.rp99 = append(a.rp50, r.Res.Reads.P50Ms), append(a.rp99, r.Res.Reads.P99Ms)
			a.wp50, a.wp99 = append(a.wp50, r.Res.Writes.P50Ms), append(a.wp99, r.Res.Writes.P99Ms)
			a.errs += r.Res.Errors
		}
		if c.Strategy == "raft" && strings.HasPrefix(c.Level, "linearizable") {
			raftOps = median(a.ops)
		}
		aggs = append(aggs, a)
	}
	mdHdr := []string{"strategy", "level", "ops/s", "vs raft linearizable", "read p50 / p99 ms", "write p50 / p99 ms", "errors", "failed runs", "load1"}
	var md [][]string
	var labels []string
	var ops, rp50, wp50, rp99, wp99 []float64
	for _, a := range aggs {
		ratio := "-"
		if raftOps > 0 && len(a.ops) > 0 {
			ratio = fmt.Sprintf("%.2fx", median(a.ops)/raftOps)
		}
		o := median(a.ops)
		md = append(md, []string{a.c.Strategy, a.c.Level, fmt.Sprintf("%.0f", o), ratio,
			f2(median(a.rp50)) + " / " + f2(median(a.rp99)), f2(median(a.wp50)) + " / " + f2(median(a.wp99)),
			strconv.FormatInt(a.errs, 10), strconv.Itoa(a.failed), strings.Join(a.loads, "/")})
		labels = append(labels, a.c.label())
		ops = append(ops, o)
		rp50, wp50 = append(rp50, median(a.rp50)), append(wp50, median(a.wp50))
		rp99, wp99 = append(rp99, median(a.rp99)), append(wp99, median(a.wp99))
	}
	if err := out.BarPlot("throughput", "Throughput per strategy and level (3 nodes, loopback, medians)", "ops/s", labels,
		[]expio.Bars{{Name: "ops/s", Values: ops}}); err != nil {
		return err
	}
	if err := out.BarPlot("latency", "Latency per strategy and level (3 nodes, loopback, medians)", "ms", labels,
		[]expio.Bars{{Name: "read p50", Values: rp50}, {Name: "write p50", Values: wp50}, {Name: "read p99", Values: rp99}, {Name: "write p99", Values: wp99}}); err != nil {
		return err
	}
	cmd := fmt.Sprintf("go run ./experiments/strategies-real --duration %s --rounds %d --clients %d --keys %d", p.Duration, p.Rounds, p.Clients, p.Keys)
	if err := out.Params(cmd, map[string]any{"duration": p.Duration.String(), "rounds": p.Rounds, "clients": p.Clients, "keys": p.Keys,
		"workload": "70/30", "value_size": 100, "seed": 1, "fsync": "always", "raft_leader": leader, "commit": commit}); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# Strategies and consistency levels on real processes (experiments/strategies-real)\n\n")
	fmt.Fprintf(&b, "Three `dialkv node` processes on loopback, `--fsync always`, %d clients, 70/30 GET/SET, 100-byte values, %d keys, bench seed 1, "+
		"%s per run, %d interleaved round(s); commit %s. Medians over rounds; ratios against raft with linearizable reads. "+
		"load1: the 1-minute load average before each round's run. Every run's command is in results.csv; plots: throughput.png, latency.png.\n\n",
		p.Clients, p.Keys, p.Duration, p.Rounds, commit)
	b.WriteString(expio.Table(mdHdr, md))
	fmt.Fprintf(&b, "\nReproduce: `%s` (`make exp-strategies-real`).\n", cmd)
	if err := out.Markdown("summary", b.String()); err != nil {
		return err
	}
	fmt.Print(b.String())
	return nil
}
