package nodes

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dialkv/dialkv/core"
)

// DemoMain runs `dialkv demo`: by default three cluster members on loopback
// with a raft namespace "demo" (temporary data directories), until Ctrl-C;
// --nodes 1 runs a single node.
func DemoMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dialkv demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", fmt.Sprintf("127.0.0.1:%d", DefaultPort), "client API address (use 127.0.0.1:0 for any free port)")
	metrics := fs.String("metrics", "127.0.0.1:0", "metrics address (empty: off)")
	keep := fs.Bool("keep", false, "keep the temporary data directory on exit")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	nodes := fs.Int("nodes", 3, "number of nodes; more than 1 starts a static cluster in this process (docs/cluster.md), 1 a single node")
	strategy := fs.String("strategy", "raft", "with --nodes > 1: strategy of the namespace \"demo\": raft, quorum, causal, or local (no shared namespace)")
	shards := fs.Int("shards", 2, "with --strategy raft: number of shards (Raft groups) of the namespace")
	regions := fs.Int("regions", 2, "with --strategy causal: number of regions the nodes are split into")
	regionDelay := fs.Duration("region-delay", 0, "with --strategy causal: one-way delay injected on peer links between regions (e.g. 50ms)")
	resolve := fs.String("resolve", "", "with --strategy causal: conflict handling, lww (default) or siblings")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: dialkv demo [--listen HOST:PORT] [--nodes N [--strategy raft|local|quorum|causal] [--shards N] [--regions N [--region-delay D] [--resolve lww|siblings]]]\n\n"+
			"Starts dialkv on loopback (temporary data directories, --fsync=always) and prints the\n"+
			"`dialkv cli` commands to talk to it. Ctrl-C stops it and removes the data.\n"+
			"By default (--nodes 3) it starts cluster members n1..nN (client ports PORT, PORT+10, ...; peer\n"+
			"ports one above each; raft ports two above) and creates the namespace \"demo\" of --strategy\n"+
			"(default raft, --shards Raft groups) on all of them. --nodes 1 starts a single node.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// Parse quietly: --help goes to stdout once, errors to stderr once.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		fs.SetOutput(stderr)
		fmt.Fprintln(stderr, err)
		fs.Usage()
		return 2
	}
	fs.SetOutput(stderr)
	logger, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		fmt.Fprintf(stderr, "dialkv demo: %v\n", err)
		return 2
	}
	if *nodes < 1 || *nodes > 9 {
		fmt.Fprintf(stderr, "dialkv demo: --nodes %d: want 1 to 9\n", *nodes)
		return 2
	}
	if *strategy != "local" && *strategy != "quorum" && *strategy != "causal" && *strategy != "raft" {
		fmt.Fprintf(stderr, "dialkv demo: --strategy %q: want raft, local, quorum or causal\n", *strategy)
		return 2
	}
	if *regionDelay < 0 || *regionDelay > time.Minute {
		fmt.Fprintf(stderr, "dialkv demo: --region-delay %v: want 0 to 1m\n", *regionDelay)
		return 2
	}
	if *shards < 1 || *shards > 64 {
		fmt.Fprintf(stderr, "dialkv demo: --shards %d: want 1 to 64\n", *shards)
		return 2
	}
	dir, err := os.MkdirTemp("", "dialkv-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "dialkv demo: %v\n", err)
		return 1
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	if *nodes > 1 {
		return runDemoCluster(demoClusterOptions{nodes: *nodes, strategy: *strategy, regions: *regions, regionDelay: *regionDelay, resolve: *resolve,
			metrics: *metrics, shards: *shards, listen: *listen, dir: dir, log: logger}, *keep, stdout, stderr)
	}
	n, err := Start(Config{ID: "demo1", Listen: *listen, DataDir: dir, Fsync: core.SyncAlways, MetricsAddr: *metrics, Logger: logger, Version: buildVersion()})
	if err != nil {
		fmt.Fprintf(stderr, "dialkv demo: %v\n", err)
		if errors.Is(err, syscall.EADDRINUSE) {
			fmt.Fprintf(stderr, "dialkv demo: %s is taken (another demo or node?); try --listen 127.0.0.1:0 for any free port\n", *listen)
		}
		return 1
	}
	removed := ", removed on exit"
	if *keep {
		removed = ", kept on exit"
	}
	fmt.Fprintf(stdout, "dialkv demo: 1 node (demo1) listening on %s (fsync always; data in %s%s)\n", n.Addr(), dir, removed)
	if m := n.MetricsAddr(); m != "" {
		fmt.Fprintf(stdout, "metrics: http://%s/metrics\n", m)
	}
	bin := demoBinary()
	fmt.Fprintf(stdout, "\nTalk to it from another terminal:\n")
	tw := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "  %s cli --addr %s\tinteractive; type \"help\"\n", bin, n.Addr())
	fmt.Fprintf(tw, "  %s cli --addr %s SET greeting hello\tone command\n", bin, n.Addr())
	fmt.Fprintf(tw, "  %s bench --addr %s --duration 10s\tload it\n", bin, n.Addr())
	tw.Flush()
	waitForStop(stdout)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		fmt.Fprintf(stderr, "dialkv demo: %v\n", err)
		return 1
	}
	return 0
}

// demoBinary is how the person ran this binary ("bin/dialkv" under make
// run), so that the printed commands work as they are; "dialkv" if it was
// found on the PATH.
func demoBinary() string {
	if a := os.Args[0]; strings.Contains(a, "/") {
		return a
	}
	return "dialkv"
}

// waitForStop says how to stop the demo and blocks until SIGINT or SIGTERM.
func waitForStop(stdout io.Writer) {
	fmt.Fprintf(stdout, "\nStop with Ctrl-C (or kill %d).\n", os.Getpid())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	<-sig
	fmt.Fprintln(stdout, "\nstopping")
}
