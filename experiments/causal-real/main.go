// Command causal-real measures the causal+ strategy on real loopback nodes
// against the quorum strategy at the same concurrency, and the causal
// strategy's cross-region visibility lag and dependency metadata.
//
// For each inter-region delay (--delays) and each strategy (quorum N=3 R=2
// W=2 with last-writer-wins; causal with last-writer-wins; causal with
// siblings; causal without session tokens) it starts four cluster
// members in this process (regions r1 = n1,n2 and r2 = n3,n4; the delay is
// added one way to every peer message between the regions, as `dialkv demo
// --region-delay` does), fsync always, and runs --clients closed-loop
// clients on n1 and n2 (region r1) for --duration: 50% GET / 50% SET of
// 100-byte values on --keys uniform keys, each client carrying its session
// token (the row causal-lww-no-token drops the tokens: no dependency
// waits, no causal guarantee for the session). Meanwhile a probe writes a fresh key at n1 every 50 ms and polls
// it at n3 (region r2) every millisecond until it is visible: the
// visibility lag a client sees, from the write's acknowledgement. After the
// load it reads the nodes' dialkv_causal_replication_lag_seconds histogram.
// Finally it runs the simulator (4 nodes, 2 regions, default faults) to
// count the dependency metadata per replicated write and per token.
//
// Results go to experiments/results/causal-real/: table.md, causal-real.csv,
// metadata.csv, params.json.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/internal/freeport"
	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/sim"
	"github.com/dialkv/dialkv/sim/simrun"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// setup is one strategy configuration measured.
type setup struct {
	name     string
	strategy string
	params   map[string]string
	noToken  bool // clients send no session token (ablation: no dependency waits)
}

var setups = []setup{
	// Quorum with last-writer-wins: with its default (siblings, at most 8)
	// this workload's blind concurrent SETs are refused once a key has 8.
	{"quorum-lww", "quorum", map[string]string{"resolve": "lww"}, false},
	{"causal-lww", "causal", map[string]string{"resolve": "lww"}, false},
	{"causal-siblings", "causal", map[string]string{"resolve": "siblings"}, false},
	{"causal-lww-no-token", "causal", map[string]string{"resolve": "lww"}, true},
}

const regions = "r1:n1,n2;r2:n3,n4"

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("causal-real", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "experiments/results/causal-real", "results directory")
	clients := fs.Int("clients", 50, "concurrent clients (connections), half on n1 and half on n2")
	duration := fs.Duration("duration", 10*time.Second, "load time per configuration")
	keys := fs.Int("keys", 1000, "distinct keys")
	delays := fs.String("delays", "0,50ms", "one-way inter-region delays to run, comma-separated")
	seeds := fs.Int("sim-seeds", 10, "simulator seeds for the metadata count")
	only := fs.String("setups", "", "comma-separated setups to run (default all: quorum-lww, causal-lww, causal-siblings, causal-lww-no-token)")
	quick := fs.Bool("quick", false, "a small version: 2s of load, delay 50ms only, 3 simulator seeds")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./experiments/causal-real [flags]\n\n"+
			"Causal+ against quorum on four real loopback nodes in two regions (latency, throughput),\n"+
			"cross-region visibility lag, and dependency metadata per write (simulator).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *quick {
		*duration, *delays, *seeds = 2*time.Second, "50ms", 3
	}
	var ds []time.Duration
	for _, s := range strings.Split(*delays, ",") {
		if s == "0" {
			ds = append(ds, 0)
			continue
		}
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < 0 {
			fmt.Fprintf(stderr, "causal-real: --delays %q: %v\n", s, err)
			return 2
		}
		ds = append(ds, d)
	}
	o, err := expio.New(*out, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	load := loadAvg()
	header := []string{"setup", "region_delay", "clients", "ops_per_s", "read_p50_ms", "read_p99_ms", "write_p50_ms", "write_p99_ms", "errors", "token_bytes_mean", "vis_lag_p50_ms", "vis_lag_p99_ms", "vis_probes", "repl_lag_mean_ms", "load_before"}
	var rows [][]string
	for _, d := range ds {
		for _, s := range setups {
			if *only != "" && !slices.Contains(strings.Split(*only, ","), s.name) {
				continue
			}
			o.Logf("%s, region delay %v: %d clients for %v (load %s)", s.name, d, *clients, *duration, loadAvg())
			r, err := measure(s, d, *clients, *keys, *duration)
			if err != nil {
				fmt.Fprintf(stderr, "causal-real: %s delay %v: %v\n", s.name, d, err)
				return 1
			}
			row := []string{s.name, d.String(), strconv.Itoa(*clients), f0(r.opsPerSec), ms(r.read.q(0.5)), ms(r.read.q(0.99)), ms(r.write.q(0.5)), ms(r.write.q(0.99)),
				strconv.FormatInt(r.errors, 10), f0(r.tokenMean), ms(r.vis.q(0.5)), ms(r.vis.q(0.99)), strconv.Itoa(len(r.vis)), r.replLagMean, r.load}
			o.Logf("  %v errors by kind %v", row, r.errKinds)
			rows = append(rows, row)
		}
	}
	if err := o.CSV("causal-real", header, rows); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	mheader, mrows := metadata(o, *seeds)
	if err := o.CSV("metadata", mheader, mrows); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	md := "# Causal+ against quorum on real loopback nodes\n\n" +
		fmt.Sprintf("Four nodes in one process, regions %s, fsync always; %d clients on n1/n2 (region r1), 50/50 GET/SET, %d keys, %v per row, session tokens carried. "+
			"vis_lag: a key written at n1, polled at n3 (region r2) every 1 ms, from the write's acknowledgement. repl_lag_mean: "+
			"dialkv_causal_replication_lag_seconds sum/count on n3 and n4. Load average at the start: %s.\n\n", regions, *clients, *keys, *duration, load) +
		expio.Table(header, rows) +
		fmt.Sprintf("\n## Dependency metadata per write (simulator, %d seeds, 4 nodes, 2 regions, default faults)\n\n", *seeds) +
		expio.Table(mheader, mrows)
	if err := o.Markdown("table", md); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := o.Params("go run ./experiments/causal-real "+strings.Join(args, " "), map[string]any{
		"clients": *clients, "duration": duration.String(), "keys": *keys, "delays": *delays, "regions": regions, "sim_seeds": *seeds, "load_start": load,
	}); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprint(stdout, md)
	return 0
}

// result is one configuration's measurements.
type result struct {
	opsPerSec   float64
	read, write durations
	errors      int64
	errKinds    map[string]int
	tokenMean   float64
	vis         durations
	replLagMean string
	load        string
}

type durations []time.Duration

func (d durations) q(p float64) time.Duration {
	if len(d) == 0 {
		return -1
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64)
}

func f0(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

// measure starts the cluster for s with the given inter-region delay, runs
// the load and the probe, and stops it.
func measure(s setup, delay time.Duration, clients, keys int, dur time.Duration) (result, error) {
	res := result{load: loadAvg(), errKinds: map[string]int{}}
	dir, err := os.MkdirTemp("", "dialkv-causal-real-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	addrs, err := freeport.Addrs(12)
	if err != nil {
		return res, err
	}
	var peers []nodes.ClusterPeer
	for i := range 4 {
		peers = append(peers, nodes.ClusterPeer{ID: fmt.Sprintf("n%d", i+1), Client: addrs[3*i], Peer: addrs[3*i+1]})
	}
	regionOf := func(id string) int { return map[string]int{"n1": 1, "n2": 1, "n3": 2, "n4": 2}[id] }
	var cns []*nodes.ClusterNode
	defer func() {
		for _, cn := range cns {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			cn.Close(ctx)
			cancel()
		}
	}()
	for i, p := range peers {
		cc := nodes.ClusterConfig{Name: "causal-real", Peers: peers, PeerDelay: map[string]time.Duration{}}
		for _, q := range peers {
			if regionOf(q.ID) != regionOf(p.ID) && delay > 0 {
				cc.PeerDelay[q.ID] = delay
			}
		}
		cn, err := nodes.StartClusterNode(nodes.Config{ID: p.ID, Listen: p.Client, DataDir: filepath.Join(dir, p.ID), Fsync: core.SyncAlways,
			MetricsAddr: addrs[3*i+2], Logger: slog.New(slog.DiscardHandler)}, cc)
		if err != nil {
			return res, fmt.Errorf("start %s: %w", p.ID, err)
		}
		cns = append(cns, cn)
	}
	params := map[string]string{}
	for k, v := range s.params {
		params[k] = v
	}
	if s.strategy == "causal" {
		params["regions"] = regions
	}
	const ns = "exp"
	if err := cns[0].CreateNamespace(nodes.NamespaceSpec{Name: ns, Strategy: s.strategy, Params: params}); err != nil {
		return res, fmt.Errorf("create namespace: %w", err)
	}
	// Wait until every node serves the namespace.
	for _, cn := range cns {
		if err := waitServing(cn.Addr(), ns, 15*time.Second); err != nil {
			return res, err
		}
	}
	value := strings.Repeat("x", 100)
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var nOps, nErr, tokBytes, tokN atomic.Int64
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := cns[c%2].Addr()
			conn, err := dialConn(addr)
			if err != nil {
				nErr.Add(1)
				return
			}
			defer conn.Close()
			rnd := rand.New(rand.NewPCG(uint64(c), 42))
			var reads, writes durations
			var tok []byte
			nsv := ns
			for ctx.Err() == nil {
				key := "k" + strconv.Itoa(rnd.IntN(keys))
				write := rnd.IntN(2) == 0
				cmd := &gen.Command{Name: "GET", Argv: [][]byte{[]byte(key)}}
				if write {
					cmd = &gen.Command{Name: "SET", Argv: [][]byte{[]byte(key), []byte(value)}}
				}
				start := time.Now()
				conn.SetDeadline(start.Add(5 * time.Second))
				resp, err := conn.Call(context.Background(), &gen.RequestOptions{Ns: &nsv, Token: tok}, cmd)
				el := time.Since(start)
				if err != nil || len(resp.Replies) != 1 || resp.Replies[0].Error != nil {
					nErr.Add(1)
					kind := fmt.Sprintf("%T", err)
					if err == nil && len(resp.Replies) == 1 {
						kind = resp.Replies[0].Error.Code
					}
					mu.Lock()
					res.errKinds[kind]++
					mu.Unlock()
					if err != nil && !isException(err) {
						conn.Close()
						if conn, err = dialConn(addr); err != nil {
							return
						}
					}
					continue
				}
				if resp.Token != nil && !s.noToken {
					tok = resp.Token
					tokBytes.Add(int64(len(tok)))
					tokN.Add(1)
				}
				if ctx.Err() != nil {
					break // finished after the measurement window
				}
				nOps.Add(1)
				if write {
					writes = append(writes, el)
				} else {
					reads = append(reads, el)
				}
			}
			mu.Lock()
			res.read = append(res.read, reads...)
			res.write = append(res.write, writes...)
			mu.Unlock()
		}()
	}
	// The visibility probe: write at n1, poll at n3.
	wg.Add(1)
	go func() {
		defer wg.Done()
		w, err1 := dialConn(cns[0].Addr())
		r, err2 := dialConn(cns[2].Addr())
		if err1 != nil || err2 != nil {
			return
		}
		defer w.Close()
		defer r.Close()
		nsv := ns
		for i := 0; ctx.Err() == nil; i++ {
			key, val := "probe-"+strconv.Itoa(i), "p"+strconv.Itoa(i)
			w.SetDeadline(time.Now().Add(5 * time.Second))
			resp, err := w.Call(context.Background(), &gen.RequestOptions{Ns: &nsv}, &gen.Command{Name: "SET", Argv: [][]byte{[]byte(key), []byte(val)}})
			if err != nil || resp.Replies[0].Error != nil {
				return
			}
			acked := time.Now()
			for time.Since(acked) < 5*time.Second {
				r.SetDeadline(time.Now().Add(5 * time.Second))
				g, err := r.Call(context.Background(), &gen.RequestOptions{Ns: &nsv}, &gen.Command{Name: "GET", Argv: [][]byte{[]byte(key)}})
				if err != nil {
					return
				}
				if rep := g.Replies[0]; rep.Error == nil && (string(rep.Str) == val || slices.ContainsFunc(rep.Siblings, func(b []byte) bool { return string(b) == val })) {
					mu.Lock()
					res.vis = append(res.vis, time.Since(acked))
					mu.Unlock()
					break
				}
				time.Sleep(time.Millisecond)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	wg.Wait()
	res.opsPerSec = float64(nOps.Load()) / dur.Seconds()
	res.errors = nErr.Load()
	if n := tokN.Load(); n > 0 {
		res.tokenMean = float64(tokBytes.Load()) / float64(n)
	}
	res.replLagMean = "-"
	var sum, count float64
	for _, cn := range cns[2:] {
		s, c, err := scrapeLag(cn.MetricsAddr())
		if err != nil {
			return res, err
		}
		sum, count = sum+s, count+c
	}
	if count > 0 {
		res.replLagMean = strconv.FormatFloat(sum/count*1000, 'f', 2, 64)
	}
	return res, nil
}

// isException reports a typed answer from the node (the connection is fine).
func isException(err error) bool {
	switch err.(type) {
	case *gen.WrongType, *gen.ConditionFailed, *gen.ValueTooLarge, *gen.InvalidArgument,
		*gen.Unavailable, *gen.Timeout, *gen.Corruption, *gen.NotLeader,
		*gen.Unauthenticated, *gen.Forbidden:
		return true
	}
	return false
}

func dialConn(addr string) (*transport.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return transport.Dial(ctx, addr, transport.DialOptions{})
}

// waitServing polls addr until a GET in namespace ns is answered.
func waitServing(addr, ns string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := dialConn(addr)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			nsv := ns
			resp, err2 := c.Call(context.Background(), &gen.RequestOptions{Ns: &nsv}, &gen.Command{Name: "GET", Argv: [][]byte{[]byte("warmup")}})
			c.Close()
			if err2 == nil && resp.Replies[0].Error == nil {
				return nil
			}
			err = err2
			if err == nil {
				err = fmt.Errorf("%s %s", resp.Replies[0].Error.Code, resp.Replies[0].Error.GetMessage())
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not serve namespace %s: %v", addr, ns, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrapeLag reads the sum and count of dialkv_causal_replication_lag_seconds
// (all labels) from a node's metrics endpoint.
func scrapeLag(addr string) (sum, count float64, err error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, 0, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok {
			continue
		}
		_, v, _ := strings.Cut(rest, "} ")
		x, perr := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if perr != nil {
			continue
		}
		switch name {
		case "dialkv_causal_replication_lag_seconds_sum":
			sum += x
		case "dialkv_causal_replication_lag_seconds_count":
			count += x
		}
	}
	return sum, count, sc.Err()
}

// metadata runs the simulator's causal sweep in both modes and reports the
// dependency metadata per write and per token.
func metadata(o *expio.Out, seeds int) ([]string, [][]string) {
	header := []string{"resolve", "seeds", "passed", "writes_shipped", "dep_bytes_per_write", "entry_bytes_per_write", "token_bytes_mean", "token_bytes_max", "sim_repl_lag_p50_ms", "sim_repl_lag_p99_ms"}
	var rows [][]string
	for _, mode := range []string{"lww", "siblings"} {
		counters, samples := map[string]float64{}, map[string][]float64{}
		passed := 0
		for seed := 1; seed <= seeds; seed++ {
			res, err := sim.Run(simrun.Options{Strategy: "causal", Seed: uint64(seed), Nodes: 4, Regions: 2, Params: map[string]string{"resolve": mode}})
			if err != nil {
				o.Logf("sim seed %d: %v", seed, err)
				continue
			}
			if res.Verdict == simrun.Pass {
				passed++
			}
			for k, v := range res.Counters {
				if strings.HasSuffix(k, "_max") {
					counters[k] = max(counters[k], v)
				} else {
					counters[k] += v
				}
			}
			for k, v := range res.Samples {
				samples[k] = append(samples[k], v...)
			}
		}
		per := func(name string) string {
			if n := counters[name+"_count"]; n > 0 {
				return strconv.FormatFloat(counters[name+"_sum"]/n, 'f', 1, 64)
			}
			return "-"
		}
		var lags durations
		for k, v := range samples {
			if strings.HasPrefix(k, "causal_replication_lag_seconds") {
				for _, x := range v {
					lags = append(lags, time.Duration(x*float64(time.Second)))
				}
			}
		}
		rows = append(rows, []string{mode, strconv.Itoa(seeds), strconv.Itoa(passed), f0(counters["causal_dep_bytes_per_write_count"]),
			per("causal_dep_bytes_per_write"), per("causal_entry_bytes_per_write"), per("causal_token_bytes"), f0(counters["causal_token_bytes_max"]),
			ms(lags.q(0.5)), ms(lags.q(0.99))})
	}
	return header, rows
}

// loadAvg is the 1/5/15-minute load average (the machine is shared).
func loadAvg() string {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			return strings.Join(f[:3], " ")
		}
	}
	if b, err := exec.Command("uptime").Output(); err == nil {
		return strings.TrimSpace(string(b))
	}
	return "?"
}
