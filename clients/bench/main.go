package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/transport"
)

const usage = `Usage: dialkv bench --addr HOST:PORT [flags]

A YCSB-like load generator. Each of --clients connections runs GETs and
SETs in the --workload mix on --keys keys chosen uniformly or by YCSB's
scrambled zipfian distribution, optionally in batches. Closed loop by
default (each connection sends its next request when the last is
answered); with --rate, open loop: requests leave on a fixed schedule and
latency is measured from each one's intended send time, so a slow server
is charged for the queueing it causes (no coordinated omission).
Prints a progress line each second and a summary with ops/s and
p50/p99/p99.9 latencies (HDR histograms) for reads and writes; --json
prints the summary as JSON on standard output instead.

Examples:
  dialkv bench --addr 127.0.0.1:7379 --workload 70/30 --clients 50 --duration 30s
  dialkv bench --addr 127.0.0.1:7379 --workload 95/5 --dist zipfian --rate 20000 --json
  dialkv bench --addr 127.0.0.1:7379 --workload 50/50 --batch 100 --clients 8

Flags:
`

// Main runs `dialkv bench`.
func Main(args []string, stdout, stderr io.Writer) int {
	cfg, asJSON, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "dialkv bench: %v\n", err)
		return 2
	}
	tlsCfg, login, err := cfg.Conn.Dial()
	if err != nil {
		fmt.Fprintf(stderr, "dialkv bench: %v\n", err)
		return 2
	}
	if cfg.IO == IOLoop && (tlsCfg != nil || login != nil) {
		fmt.Fprintln(stderr, "dialkv bench: --io loop: no TLS or login (use --io goroutine)")
		return 2
	}
	var (
		connect Connector
		lib     *client.Client
	)
	if cfg.ViaClient {
		copts, err := cfg.Conn.Options()
		if err != nil {
			fmt.Fprintf(stderr, "dialkv bench: %v\n", err)
			return 2
		}
		connect, lib, err = ClientConnector(cfg, copts...)
		if err != nil {
			fmt.Fprintf(stderr, "dialkv bench: %v\n", err)
			return 2
		}
		defer lib.Close()
	} else if cfg.Protocol == ProtocolRESP {
		if tlsCfg != nil || login != nil {
			fmt.Fprintln(stderr, "dialkv bench: --protocol resp: no TLS or login")
			return 2
		}
		if connect, err = RESPConnector(cfg); err != nil {
			fmt.Fprintf(stderr, "dialkv bench: %v\n", err)
			return 2
		}
	} else {
		connect, err = ThriftConnectorFor(cfg, transport.DialOptions{TLS: tlsCfg, Login: login})
		if err != nil {
			fmt.Fprintf(stderr, "dialkv bench: %v\n", err)
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintln(stderr, describe(cfg))
	res, err := Run(ctx, cfg, connect, stderr)
	if lib != nil {
		for _, n := range lib.Stats().Nodes {
			if n.Trips > 0 {
				res.BreakerTrips = append(res.BreakerTrips, NodeTrips{Addr: n.Addr, Trips: n.Trips, State: string(n.Breaker)})
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "dialkv bench: %v\n", err)
		writeTrips(stderr, res)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "dialkv bench: %v\n", err)
			return 1
		}
		return 0
	}
	WriteSummary(stdout, res)
	return 0
}

func parseFlags(args []string, stderr io.Writer) (Config, bool, error) {
	fs := flag.NewFlagSet("dialkv bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := Config{}
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:7379", "node address `HOST:PORT`, or several separated by commas (connections go to them in turn)")
	fs.StringVar(&cfg.Workload, "workload", "70/30", "read/write mix: read-only, 95/5, 70/30, 50/50 (any R/W adding to 100), write-only")
	fs.IntVar(&cfg.Keys, "keys", 100000, "number of distinct keys")
	fs.StringVar(&cfg.Dist, "dist", "uniform", "key distribution: uniform or zipfian (YCSB scrambled, theta 0.99)")
	fs.IntVar(&cfg.ValueSize, "value-size", 100, "value size in `bytes`")
	fs.IntVar(&cfg.Clients, "clients", 50, "concurrent connections")
	fs.IntVar(&cfg.Batch, "batch", 1, "commands per request (1: single calls; more: batches)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measurement time")
	fs.Float64Var(&cfg.Rate, "rate", 0, "target total `ops/s` for open-loop mode (0: closed loop)")
	fs.BoolVar(&cfg.Load, "load", true, "write every key once before measuring")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed of the key and value choices")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "deadline of each request")
	fs.StringVar(&cfg.Protocol, "protocol", "binary", "Thrift protocol: binary or compact (must match the node); resp: Redis's RESP2 instead of Thrift, to load redis-server with the same generator (a batch is a pipeline; no request options)")
	fs.StringVar(&cfg.Namespace, "namespace", "", "namespace (default: the default namespace)")
	fs.StringVar(&cfg.IO, "io", IOGoroutine, "how connections are driven: goroutine (one goroutine per connection) or loop (Linux: all of them from one epoll event loop, like redis-benchmark: fewer system calls and no goroutine wake-up per request; no TLS, login or --via-client)")
	fs.BoolVar(&cfg.ViaClient, "via-client", false, "send through the Go client library (its pool, retries, circuit breakers and latency-aware node choice) instead of one raw connection per client; the summary lists per-node breaker trips")
	cfg.Conn.Register(fs)
	fs.DurationVar(&cfg.Progress, "progress", time.Second, "period of the progress lines on standard error")
	rFlag := fs.String("r", "", "quorum namespaces: replicas a read waits for: ONE, QUORUM, ALL or a number (default: the namespace's r)")
	wFlag := fs.String("w", "", "quorum namespaces: replicas a write waits for: ONE, QUORUM, ALL or a number (default: the namespace's w)")
	fs.BoolVar(&cfg.Strict, "strict", false, "quorum namespaces: strict quorum (no hinted replicas outside the preference list)")
	fs.StringVar(&cfg.ReadMode, "read-mode", "", "raft namespaces: linearizable, lease or stale (default: the namespace's)")
	fs.StringVar(&cfg.Mode, "mode", "", "quorum namespaces: linearizable (ABD) for every request")
	asJSON := fs.Bool("json", false, "print the summary as JSON on standard output")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	var err error
	if cfg.R, err = ParseQuorumSize(*rFlag); err != nil {
		return cfg, false, fmt.Errorf("--r: %w", err)
	}
	if cfg.W, err = ParseQuorumSize(*wFlag); err != nil {
		return cfg, false, fmt.Errorf("--w: %w", err)
	}
	return cfg, *asJSON, cfg.Validate()
}

func describe(cfg Config) string {
	mode := "closed loop"
	if cfg.Rate > 0 {
		mode = fmt.Sprintf("open loop at %.0f ops/s", cfg.Rate)
	}
	return fmt.Sprintf("dialkv bench: %s, workload %s, %d keys %s, %d-byte values, %d clients, batch %d, %s, %v",
		cfg.Addr, cfg.Workload, cfg.Keys, cfg.Dist, cfg.ValueSize, cfg.Clients, cfg.Batch, mode, cfg.Duration)
}

// writeTrips prints the per-node breaker trips of a --via-client run (none:
// nothing).
func writeTrips(w io.Writer, r Result) {
	for _, t := range r.BreakerTrips {
		fmt.Fprintf(w, "  breaker   %s tripped %d times (now %s)\n", t.Addr, t.Trips, t.State)
	}
}

// WriteSummary prints a result for people.
func WriteSummary(w io.Writer, r Result) {
	defer writeTrips(w, r)
	fmt.Fprintln(w, describe(r.Config))
	if r.LoadS > 0 {
		fmt.Fprintf(w, "  load      %d keys in %.2fs\n", r.Config.Keys, r.LoadS)
	}
	fmt.Fprintf(w, "  total     %10d ops  %10.0f ops/s  in %.2fs  errors %d", r.Ops, r.OpsPerSec, r.ElapsedS, r.Errors)
	if r.Mode == "open-loop" {
		fmt.Fprintf(w, "  missed %d", r.Missed)
	}
	fmt.Fprintln(w)
	for _, row := range []struct {
		name string
		s    LatencyStats
	}{{"reads", r.Reads}, {"writes", r.Writes}} {
		if row.s.Ops == 0 {
			continue
		}
		fmt.Fprintf(w, "  %-7s   %10d ops  %10.0f ops/s  p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n",
			row.name, row.s.Ops, row.s.OpsPerSec, row.s.P50Ms, row.s.P99Ms, row.s.P999Ms, row.s.MaxMs)
	}
	fmt.Fprintf(w, "  latency per %s", r.LatencyPer)
	if r.Mode == "open-loop" {
		fmt.Fprint(w, ", from the intended send time")
	}
	fmt.Fprintln(w)
}
