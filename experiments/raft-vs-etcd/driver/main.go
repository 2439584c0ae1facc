// Command driver loads dialkv nodes for experiments/raft-vs-etcd: the
// workload engine of `dialkv bench` (clients/bench: closed loop, HDR
// histograms, fixed-width 16-byte keys) over the Go client library
// (clients/client), which follows NotLeader/Moved and caches each shard's
// leader, so a raft namespace is driven at its leaders as etcd's benchmark
// drives etcd's. It prints the bench Result as JSON on standard output.
//
//	go run ./experiments/raft-vs-etcd/driver --addrs A,B,C --namespace r1 --workload write-only --clients 50 --duration 10s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dialkv/dialkv/clients/bench"
	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("driver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addrs", "127.0.0.1:7379", "comma-separated node client addresses")
	cfg := bench.Config{Dist: "uniform", Timeout: 5 * time.Second, Protocol: "binary", Batch: 1, Seed: 1}
	fs.StringVar(&cfg.Namespace, "namespace", "", "namespace")
	fs.StringVar(&cfg.Workload, "workload", "write-only", "read/write mix, as dialkv bench --workload")
	fs.IntVar(&cfg.Keys, "keys", 100000, "distinct keys")
	fs.IntVar(&cfg.ValueSize, "value-size", 100, "value size in bytes")
	fs.IntVar(&cfg.Clients, "clients", 50, "concurrent clients")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measurement time")
	fs.BoolVar(&cfg.Load, "load", false, "write every key once before measuring")
	readMode := fs.String("read", "linearizable", "read mode: linearizable or stale")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: driver --addrs A,B,C --namespace NS [flags]\n\nLoads dialkv through the Go client library; prints the result as JSON.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg.Addr = *addrs
	c, err := client.New(strings.Split(*addrs, ","), client.WithPoolSize(cfg.Clients+4), client.WithClientID("raft-vs-etcd"))
	if err != nil {
		fmt.Fprintf(stderr, "driver: %v\n", err)
		return 1
	}
	defer c.Close()
	opts := []client.CallOption{client.ReadMode(*readMode)}
	if cfg.Namespace != "" {
		opts = append(opts, client.Namespace(cfg.Namespace))
	}
	connect := func(ctx context.Context) (bench.Conn, error) {
		return &libConn{c: c, opts: opts}, nil
	}
	res, err := bench.Run(context.Background(), cfg, connect, nil)
	if err != nil {
		fmt.Fprintf(stderr, "driver: %v\n", err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(res); err != nil {
		fmt.Fprintf(stderr, "driver: %v\n", err)
		return 1
	}
	return 0
}

// libConn is one benchmark worker's connection: a share of the client
// library's pool (connections are per node address).
type libConn struct {
	c    *client.Client
	opts []client.CallOption
}

var _ bench.Conn = (*libConn)(nil)

// Do sends one command as one call. A batch (the bench's initial load) is
// sent command by command: a raft node answers a batch's commands of other
// shards, or of shards it does not lead, with per-command MOVED replies,
// which the client does not re-route.
func (l *libConn) Do(ctx context.Context, cmds []core.Command) (int, error) {
	ctx = client.With(ctx, l.opts...)
	for _, c := range cmds {
		if _, err := l.c.DoCmd(ctx, c); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

func (l *libConn) Close() error { return nil }
