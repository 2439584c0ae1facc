package realnodes

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/dialkv/dialkv/experiments/internal/expio"
)

// Run is the body of a real-cluster experiment's main: it starts the
// cluster cfg describes in a temporary directory (cfg.Dir is set here),
// opens the results directory, calls fn and stops the cluster. SIGINT and
// SIGTERM call onSignal (if not nil: e.g. heal partitions), stop the nodes
// and exit 1. The temporary directory is removed, unless the run failed and
// KEEP is set in the environment, in which case the nodes' logs stay there
// and a line says where. name prefixes that line.
func Run(name string, cfg Config, resultsDir string, onSignal func(), fn func(*expio.Out, *Cluster) error) error {
	work, err := os.MkdirTemp("", name+".")
	if err != nil {
		return err
	}
	cfg.Dir = work
	cl, err := Start(cfg)
	if err == nil {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-sig
			if onSignal != nil {
				onSignal()
			}
			cl.Stop()
			os.RemoveAll(work)
			os.Exit(1)
		}()
		var out *expio.Out
		out, err = expio.New(resultsDir, os.Stderr)
		if err == nil {
			err = fn(out, cl)
		}
		cl.Stop()
		signal.Stop(sig)
	}
	if err != nil && os.Getenv("KEEP") != "" {
		fmt.Fprintln(os.Stderr, name+": logs kept in", work)
	} else {
		os.RemoveAll(work)
	}
	return err
}

// EnvOr is the environment variable k, or def where it is unset or empty
// (the experiments' --dialkv flag defaults to $DIALKV_BIN).
func EnvOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Load1 is the 1-minute load average from /proc/loadavg, or "?": every
// real-cluster figure is recorded with it, the machine being shared.
func Load1() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}
