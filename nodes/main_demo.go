package nodes

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dialkv/dialkv/core"
)

// DemoMain runs `dialkv demo`: one node on loopback with a temporary data
// directory, until Ctrl-C. (Later issues make it a three-node cluster.)
func DemoMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dialkv demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", fmt.Sprintf("127.0.0.1:%d", DefaultPort), "client API address (use 127.0.0.1:0 for any free port)")
	metrics := fs.String("metrics", "127.0.0.1:0", "metrics address (empty: off)")
	keep := fs.Bool("keep", false, "keep the temporary data directory on exit")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: dialkv demo [--listen HOST:PORT]\n\n"+
			"Starts a local dialkv node on loopback (temporary data directory, --fsync=always) and prints\n"+
			"the `dialkv cli` command to talk to it. Ctrl-C stops it and removes the data.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		return 2
	}
	logger, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		fmt.Fprintf(stderr, "dialkv demo: %v\n", err)
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
	n, err := Start(Config{ID: "demo1", Listen: *listen, DataDir: dir, Fsync: core.SyncAlways, MetricsAddr: *metrics, Logger: logger, Version: buildVersion()})
	if err != nil {
		fmt.Fprintf(stderr, "dialkv demo: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "dialkv demo: 1 node (demo1) on %s, data in %s\n", n.Addr(), dir)
	if m := n.MetricsAddr(); m != "" {
		fmt.Fprintf(stdout, "metrics: http://%s/metrics\n", m)
	}
	fmt.Fprintf(stdout, "\nTry:\n  dialkv cli --addr %s\n  dialkv cli --addr %s SET greeting hello\n\nCtrl-C to stop.\n", n.Addr(), n.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	<-sig
	fmt.Fprintln(stdout, "\nstopping")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		fmt.Fprintf(stderr, "dialkv demo: %v\n", err)
		return 1
	}
	return 0
}
