// Command raftrebalance-real is the raft half of experiment 7's
// rebalancing on real processes: four `dialkv node` processes on loopback
// (127.0.35.i, `--fsync always`, gossip on, all four cluster members) and a
// raft namespace of --shards shards x 3 replicas created on n1..n3. While
// --writers writers (a Go client over every node) SET fresh keys, n4 is
// appended to the namespace's node list (RAFT.NODES ADD) and the cluster's
// rebalancer moves replicas to it, one at a time, until the placement is
// balanced; then n1 is retired (RAFT.NODES RETIRE) and its replicas move
// to n2..n4. The placement is read every --poll with RAFT.HOSTED and
// RAFT.MEMBERS at every node (nodes.ReadRaftPlacement).
//
// For each change it reports the time until balanced (every shard has 3
// members, no replica on a retired node and none stale, replicas per node
// differing by at most one), the replicas moved (members that differ from
// the placement before the change), the writes attempted during the change
// and the share that succeeded, and the longest time without a successful
// write. Afterwards every acknowledged write is read back linearizably
// through n2..n4: a key not found or with another value is a lost write.
//
// Run: go run ./experiments/raftrebalance-real [--shards 4] [--quick]
// (`make exp-raftrebalance-real`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/experiments/internal/realnodes"
	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/transport"
)

const (
	ns       = "rb"
	replicas = 3
)

type params struct {
	Shards, Writers int
	Pause, Poll     time.Duration
	Limit           time.Duration
}

// write is one SET of the load.
type write struct {
	Invoke, Done time.Duration
	Key, Val     string
	OK           bool
}

// change is one node-list change and how long the rebalancer took.
type change struct {
	Name       string
	Start, End time.Duration
	Moved      int
	Before     map[int][]string
	After      map[int][]string
	Load1      string
}

func main() {
	var p params
	flag.IntVar(&p.Shards, "shards", 4, "shards of the raft namespace (3 replicas each)")
	flag.IntVar(&p.Writers, "writers", 4, "concurrent writers")
	flag.DurationVar(&p.Pause, "pause", 3*time.Second, "load without change before, between and after the changes")
	flag.DurationVar(&p.Poll, "poll", 200*time.Millisecond, "how often the placement is read")
	flag.DurationVar(&p.Limit, "limit", 5*time.Minute, "give up on a change not balanced after this long")
	bin := flag.String("dialkv", realnodes.EnvOr("DIALKV_BIN", "bin/dialkv"), "dialkv binary (env DIALKV_BIN)")
	port := flag.Int("port", 27800, "client port of every node (peer +1, gossip +3, raft +5)")
	ipPrefix := flag.String("ip-prefix", "127.0.35.", "node i listens on this prefix + i")
	quick := flag.Bool("quick", false, "2 shards, 2 s pauses")
	dir := flag.String("out", "experiments/results/raftrebalance-real", "results directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: go run ./experiments/raftrebalance-real [flags]\n\n"+
			"Raft rebalancing on real processes: a node joins a raft namespace, then one is retired, under writes.")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *quick {
		p.Shards, p.Pause = 2, 2*time.Second
	}
	err := realnodes.Run("raftrebalance-real", realnodes.Config{Bin: *bin, N: 4, IPPrefix: *ipPrefix, Port: *port,
		Cluster: "rbreal", Fsync: "always"}, *dir, nil,
		func(out *expio.Out, cl *realnodes.Cluster) error { return run(out, cl, p) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftrebalance-real:", err)
		os.Exit(1)
	}
}

// balanced reports whether every shard has the replication factor of
// members, no member is on a node outside on, no replica is stale, and
// the members per node of on differ by at most one; and the count per node.
func balanced(p nodes.RaftPlacement, shards int, on []string) (bool, map[string]int) {
	load := map[string]int{}
	for _, n := range on {
		load[n] = 0
	}
	ok := len(p.Members) == shards
	for _, ms := range p.Members {
		if len(ms) != replicas {
			ok = false
		}
		for _, m := range ms {
			if !slices.Contains(on, m) {
				ok = false
			}
			load[m]++
		}
	}
	for _, st := range p.Stale {
		if len(st) > 0 {
			ok = false
		}
	}
	lo, hi := 1<<30, 0
	for _, n := range on {
		lo, hi = min(lo, load[n]), max(hi, load[n])
	}
	return ok && hi-lo <= 1, load
}

// moved counts the (shard, node) members of after that before lacks.
func moved(before, after map[int][]string) int {
	n := 0
	for sh, ms := range after {
		for _, m := range ms {
			if !slices.Contains(before[sh], m) {
				n++
			}
		}
	}
	return n
}

func run(out *expio.Out, cl *realnodes.Cluster, p params) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var rnodes []raft.Node
	for _, n := range cl.Nodes {
		rnodes = append(rnodes, raft.Node{ID: consistency.NodeID(n.ID), RaftAddr: n.RaftAddr, ClientAddr: n.Client})
	}
	var ids, raddrs, caddrs []string
	for _, n := range cl.Nodes[:3] {
		ids, raddrs, caddrs = append(ids, n.ID), append(raddrs, n.RaftAddr), append(caddrs, n.Client)
	}
	c0, err := client.New([]string{cl.Nodes[0].Client}, client.WithTimeout(30*time.Second))
	if err != nil {
		return err
	}
	defer c0.Close()
	out.Logf("4 members up; creating raft namespace %s on n1..n3 (%d shards x %d)", ns, p.Shards, replicas)
	if err := c0.NewSession("").CreateNamespace(ctx, client.NamespaceSpec{Name: ns, Strategy: "raft", Params: map[string]string{
		"nodes": strings.Join(ids, ","), "raft-addrs": strings.Join(raddrs, ","), "client-addrs": strings.Join(caddrs, ","),
		"shards": strconv.Itoa(p.Shards), "replicas": strconv.Itoa(replicas)}}); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	wc, err := client.New(cl.Addrs(), client.WithTimeout(10*time.Second), client.WithNamespace(ns))
	if err != nil {
		return err
	}
	defer wc.Close()
	// Every shard answers a write (keys spread over the shards).
	for i := 0; ; i++ {
		okAll := true
		for k := range 4 * p.Shards {
			if _, err := wc.Set(ctx, fmt.Sprintf("warm%d", k), []byte("1")); err != nil {
				okAll = false
				break
			}
		}
		if okAll {
			break
		}
		if i > 300 || ctx.Err() != nil {
			return errors.New("the raft namespace did not serve writes within a minute")
		}
		time.Sleep(200 * time.Millisecond)
	}
	call := nodes.DialRaftCaller(transport.DialOptions{}, 3*time.Second)
	placement := func() (nodes.RaftPlacement, error) { return nodes.ReadRaftPlacement(ctx, call, ns, rnodes) }
	if pl, err := placement(); err != nil {
		return err
	} else if ok, load := balanced(pl, p.Shards, ids); !ok {
		out.Logf("initial placement not balanced yet: %v", load)
	}
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	loadStart := realnodes.Load1()

	start := time.Now()
	var mu sync.Mutex
	var writes []write
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range p.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := wc.NewSession("")
			var mine []write
			for i := 0; ; i++ {
				select {
				case <-stop:
					mu.Lock()
					writes = append(writes, mine...)
					mu.Unlock()
					return
				default:
				}
				k, v := fmt.Sprintf("w%d-%d", w, i), strconv.Itoa(i)
				t0 := time.Since(start)
				octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := s.Set(octx, k, []byte(v))
				ocancel()
				mine = append(mine, write{Invoke: t0, Done: time.Since(start), Key: k, Val: v, OK: err == nil})
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}

	var changes []change
	doChange := func(name string, at *realnodes.Node, args []string, on []string) error {
		time.Sleep(p.Pause)
		before, err := placement()
		if err != nil {
			return err
		}
		c := change{Name: name, Start: time.Since(start), Before: before.Members, Load1: realnodes.Load1()}
		out.Logf("%s at %.1fs (load %s): RAFT.NODES %s", name, c.Start.Seconds(), c.Load1, strings.Join(args, " "))
		if _, err := call(ctx, at.Client, ns, append([]string{"RAFT.NODES"}, args...)...); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		last := ""
		for {
			pl, err := placement()
			if err == nil {
				ok, load := balanced(pl, p.Shards, on)
				if s := fmt.Sprint(load); s != last {
					out.Logf("  %.1fs replicas per node %s", time.Since(start).Seconds(), s)
					last = s
				}
				if ok {
					c.End, c.After = time.Since(start), pl.Members
					c.Moved = moved(c.Before, c.After)
					break
				}
			}
			if time.Since(start)-c.Start > p.Limit {
				return fmt.Errorf("%s: not balanced after %v (last: %s)", name, p.Limit, last)
			}
			time.Sleep(p.Poll)
		}
		out.Logf("%s: balanced after %.2fs, %d replicas moved", name, (c.End - c.Start).Seconds(), c.Moved)
		changes = append(changes, c)
		return nil
	}
	n1, n4 := cl.Nodes[0], cl.Nodes[3]
	err = doChange("n4 joins", n1, []string{"ADD", n4.ID, n4.RaftAddr, n4.Client}, []string{"n1", "n2", "n3", "n4"})
	if err == nil {
		err = doChange("n1 retires", cl.Nodes[1], []string{"RETIRE", n1.ID}, []string{"n2", "n3", "n4"})
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
	// n1 hosts nothing now: stop it, then read every acknowledged write
	// back linearizably through n2..n4.
	cl.StopNode(n1)
	rc, err := client.New(cl.Addrs()[1:], client.WithTimeout(10*time.Second), client.WithNamespace(ns))
	if err != nil {
		return err
	}
	defer rc.Close()
	lost, unreadable, acked := 0, 0, 0
	rs := rc.NewSession("")
	for _, w := range writes {
		if !w.OK {
			continue
		}
		acked++
		v, err := rs.Get(client.With(ctx, client.ReadMode("linearizable")), w.Key)
		switch {
		case err != nil:
			unreadable++
		case !v.Found || string(v.Data) != w.Val:
			lost++
		}
	}
	out.Logf("read back %d acknowledged writes: %d lost, %d unreadable", acked, lost, unreadable)
	return report(out, p, writes, changes, acked, lost, unreadable, strings.TrimSpace(string(commit)), loadStart, loadEnd)
}

// during summarises the writes invoked in [from, to) and the longest time
// in the window without a successful completion.
func during(ws []write, from, to time.Duration) (n int, okPct float64, gap time.Duration) {
	var oks []time.Duration
	okN := 0
	for _, w := range ws {
		if w.Invoke >= from && w.Invoke < to {
			n++
			if w.OK {
				okN++
			}
		}
		if w.OK && w.Done >= from && w.Done < to {
			oks = append(oks, w.Done)
		}
	}
	if n > 0 {
		okPct = 100 * float64(okN) / float64(n)
	}
	sort.Slice(oks, func(i, j int) bool { return oks[i] < oks[j] })
	last := from
	for _, t := range oks {
		gap = max(gap, t-last)
		last = t
	}
	return n, okPct, max(gap, to-last)
}

func placementString(m map[int][]string) string {
	var shs []int
	for sh := range m {
		shs = append(shs, sh)
	}
	sort.Ints(shs)
	var parts []string
	for _, sh := range shs {
		ms := slices.Clone(m[sh])
		sort.Strings(ms)
		parts = append(parts, fmt.Sprintf("%d:%s", sh, strings.Join(ms, "+")))
	}
	return strings.Join(parts, " ")
}

func report(out *expio.Out, p params, writes []write, changes []change, acked, lost, unreadable int, commit, l0, l1 string) error {
	hdr := []string{"change", "balanced_after_s", "replicas_moved", "writes_during", "ok_pct_during", "longest_gap_s", "placement_before", "placement_after", "load1"}
	var rows [][]string
	for _, c := range changes {
		n, ok, gap := during(writes, c.Start, c.End)
		rows = append(rows, []string{c.Name, fmt.Sprintf("%.2f", (c.End - c.Start).Seconds()), strconv.Itoa(c.Moved), strconv.Itoa(n),
			fmt.Sprintf("%.1f", ok), fmt.Sprintf("%.2f", gap.Seconds()), placementString(c.Before), placementString(c.After), c.Load1})
	}
	if err := out.CSV("results", hdr, rows); err != nil {
		return err
	}
	const bin = 500 * time.Millisecond
	var end time.Duration
	for _, w := range writes {
		end = max(end, w.Invoke)
	}
	nb := int(end/bin) + 1
	okB, failB := make([]int, nb), make([]int, nb)
	for _, w := range writes {
		if b := int(w.Invoke / bin); w.OK {
			okB[b]++
		} else {
			failB[b]++
		}
	}
	var trow [][]string
	okS, failS := expio.Series{Name: "ok writes/s"}, expio.Series{Name: "failed writes/s"}
	for b := range nb {
		x := (time.Duration(b) * bin).Seconds()
		trow = append(trow, []string{fmt.Sprintf("%.1f", x), strconv.Itoa(okB[b]), strconv.Itoa(failB[b])})
		okS.X, okS.Y = append(okS.X, x), append(okS.Y, float64(okB[b])*2)
		failS.X, failS.Y = append(failS.X, x), append(failS.Y, float64(failB[b])*2)
	}
	series := []expio.Series{okS, failS}
	for _, c := range changes {
		series = append(series, expio.Series{Name: c.Name + " (until balanced)", X: []float64{c.Start.Seconds(), c.End.Seconds()}, Y: []float64{0, 0}})
	}
	if err := out.CSV("timeline", []string{"seconds", "ok", "failed"}, trow); err != nil {
		return err
	}
	if err := out.LinePlot("timeline", "Raft rebalancing under writes (n4 joins, n1 retires)", "seconds", "writes/s", series, false); err != nil {
		return err
	}
	cmd := fmt.Sprintf("go run ./experiments/raftrebalance-real --shards %d --writers %d --pause %s --poll %s", p.Shards, p.Writers, p.Pause, p.Poll)
	if err := out.Params(cmd, map[string]any{"shards": p.Shards, "replicas": replicas, "writers": p.Writers, "pause": p.Pause.String(),
		"poll": p.Poll.String(), "commit": commit, "load_start": l0, "load_end": l1, "acked": acked, "lost": lost, "unreadable": unreadable}); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Raft rebalancing on real processes: 4 `dialkv node` cluster members on loopback (`--fsync always`), a raft namespace of %d shards x %d replicas "+
		"created on n1..n3; n4 appended to its node list (RAFT.NODES ADD), then n1 retired (RAFT.NODES RETIRE); the cluster's rebalancer moves one "+
		"replica at a time. %d writers SET fresh keys through a Go client over every node (10 s deadline). balanced_after_s: from the command to a "+
		"placement with 3 members per shard, none stale or on a retired node, and replicas per node within one (read every %s); replicas_moved: "+
		"members not in the placement before. Commit %s, load average %s at the start and %s at the end.\n\n",
		p.Shards, replicas, p.Writers, p.Poll, commit, l0, l1)
	b.WriteString(expio.Table(hdr, rows))
	fmt.Fprintf(&b, "\nEvery acknowledged write (%d) read back linearizably through n2..n4 after n1 stopped: %d lost, %d unreadable.\n", acked, lost, unreadable)
	fmt.Fprintf(&b, "\nReproduce: `%s` (`make exp-raftrebalance-real`). Writes over time: timeline.csv, timeline.png.\n", cmd)
	if err := out.Markdown("table", b.String()); err != nil {
		return err
	}
	fmt.Print(b.String())
	if lost > 0 || unreadable > 0 {
		return errors.New("acknowledged writes lost or unreadable (results written)")
	}
	return nil
}
