package jepsen

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/clients/workload"
)

// Main is `dialkv jepsen`: start a cluster, run a workload with faults,
// check the history, write the reports. Exit status 0 pass, 1 violation,
// 2 unknown (a check could not finish, or a node or read never came back),
// 3 usage or setup error.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jepsen", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var (
		backend   = fs.String("backend", "process", "process (dialkv node children on loopback: kill, pause) or docker (containers: kill, pause, partition)")
		nodes     = fs.Int("nodes", 3, "number of nodes (1: a single node without --peers)")
		strategy  = fs.String("strategy", "quorum", "namespace strategy: local, quorum, causal or raft")
		params    = fs.String("params", "", "namespace parameters KEY=VALUE,... (e.g. w=2,r=2)")
		wl        = fs.String("workload", "jepsen-set", "workload: register, counter, set, mixed or jepsen-set")
		keys      = fs.Int("keys", 5, "keys per type")
		clients   = fs.Int("clients", 4, "concurrent clients")
		duration  = fs.Duration("duration", 20*time.Second, "workload duration (faults during it)")
		faults    = fs.String("faults", "kill", "comma-separated faults to draw from: kill, pause, restart, partition (\"\" for none)")
		every     = fs.Duration("fault-every", 2*time.Second, "time between a heal and the next fault")
		faultFor  = fs.Duration("fault-for", time.Second, "how long a fault lasts")
		clockSkew = fs.Duration("clock-skew", 10*time.Second, "the clock fault's offset: a node's clock moves by + or - this much")
		rr        = fs.Bool("round-robin", false, "fault the nodes in order n1, n2, ... (with --faults restart: a rolling restart)")
		fsync     = fs.String("fsync", "always", "nodes' --fsync")
		seed      = fs.Uint64("seed", 1, "seed of the workload and the fault choices")
		checks    = fs.String("checks", "", "checks to run (default: linearizable,durability,convergence for local/raft; durability,convergence otherwise)")
		out       = fs.String("out", "out/jepsen", "report directory")
		image     = fs.String("image", "", "docker backend: use this image instead of building dialkv-jepsen:latest from deploy/Dockerfile")
		bin       = fs.String("bin", "", "the static dialkv binary (default $DIALKV_BIN, else built with go build)")
		opTimeout = fs.Duration("op-timeout", 2*time.Second, "deadline of each operation")
	)
	fs.Usage = func() {
		fmt.Fprintln(stdout, `Usage: dialkv jepsen [flags]

Jepsen-style fault test on real processes: starts a cluster (child
processes on loopback, or Docker containers), creates a namespace, runs a
workload through the Go client recording its history, injects faults for
real (kill -9 and restart, SIGSTOP/SIGCONT, network partitions), heals,
waits for the nodes to converge, reads every key back and checks the
history. Reports (the simulator's layout) go to --out.

Examples:
  dialkv jepsen --backend process --nodes 1 --strategy local --workload jepsen-set --faults kill
  dialkv jepsen --backend docker --nodes 3 --strategy quorum --faults partition,kill,pause --duration 60s

Faults:`)
		for _, f := range FaultKinds() {
			fmt.Fprintf(stdout, "  %-10s %s\n", f[0], f[1])
		}
		fmt.Fprintln(stdout, "\nWorkloads:")
		for _, k := range workload.Kinds() {
			fmt.Fprintf(stdout, "  %-10s %s\n", k[0], k[1])
		}
		fmt.Fprintln(stdout, "\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 3
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "dialkv jepsen:", err)
		return 3
	}
	cfg := Config{Strategy: *strategy, Workload: workload.Config{Kind: *wl, Keys: *keys}, Clients: *clients, Duration: *duration,
		FaultEvery: *every, FaultFor: *faultFor, ClockSkew: *clockSkew, RoundRobin: *rr, Seed: *seed, OpTimeout: *opTimeout, Log: stdout,
		Command: "dialkv jepsen " + strings.Join(args, " ")}
	if *faults != "" {
		cfg.Faults = strings.Split(*faults, ",")
	}
	if *checks != "" {
		cs, err := checker.ParseChecks(*checks)
		if err != nil {
			return fail(err)
		}
		cfg.Checks = cs
	}
	if *params != "" {
		cfg.Params = map[string]string{}
		for _, kv := range strings.Split(*params, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fail(fmt.Errorf("--params: %q: want KEY=VALUE", kv))
			}
			cfg.Params[k] = v
		}
	}
	if err := cfg.fill(); err != nil {
		return fail(err)
	}
	tmp, err := os.MkdirTemp("", "dialkv-jepsen-bin-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	binary := *bin
	if binary == "" {
		if binary, err = Binary(tmp); err != nil {
			return fail(err)
		}
	}
	spec := Spec{Nodes: *nodes, Fsync: *fsync, Binary: binary}
	var cl Cluster
	switch *backend {
	case "process":
		cl, err = StartProcCluster(spec, "")
	case "docker":
		if err := DockerAvailable(); err != nil {
			return fail(err)
		}
		img := *image
		if img == "" {
			img = "dialkv-jepsen:latest"
			if err := BuildImage(binary, img); err != nil {
				return fail(err)
			}
		}
		cl, err = StartDockerCluster(spec, img, fmt.Sprintf("dialkv-jepsen-%d", os.Getpid()))
	default:
		return fail(fmt.Errorf("--backend %q: want process or docker", *backend))
	}
	if err != nil {
		return fail(err)
	}
	defer cl.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, cl, cfg)
	if err != nil {
		return fail(err)
	}
	logs := map[string]string{}
	for _, n := range cl.Nodes() {
		logs[n] = cl.Logs(n)
	}
	s := MakeSummary(res, *backend, len(cl.Nodes()), cfg)
	if err := WriteReport(*out, res, s, logs); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "%s: %d ops (ok %d, fail %d, unknown %d); report in %s/summary.md\n", strings.ToUpper(s.Verdict), s.Ops, s.OK, s.Failed, s.Unknown, *out)
	for _, c := range s.Checks {
		fmt.Fprintf(stdout, "  %-12s %-9s %s\n", c.Name, c.Verdict, c.Summary)
	}
	for _, p := range s.Problems {
		fmt.Fprintln(stdout, "  problem:", p)
	}
	return s.ExitCode
}
