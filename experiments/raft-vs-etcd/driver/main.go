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
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
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
	failover := fs.String("failover", "", "instead of a load: `ADDR=PID,...` of the nodes; find the leader of --key's shard, SIGKILL its process, and time the first successful write through the others")
	key := fs.String("key", "failover", "with --failover: the key written")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the load (the driver's own CPU) to `FILE`")
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
	if *failover != "" {
		return runFailover(c, *failover, cfg.Namespace, *key, stdout, stderr)
	}
	connect := func(ctx context.Context) (bench.Conn, error) {
		return &libConn{c: c, opts: opts}, nil
	}
	stop, err := startCPUProfile(*cpuProfile)
	if err != nil {
		fmt.Fprintf(stderr, "driver: %v\n", err)
		return 1
	}
	res, err := bench.Run(context.Background(), cfg, connect, nil)
	if perr := stop(); perr != nil {
		fmt.Fprintf(stderr, "driver: %v\n", perr)
		return 1
	}
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

// startCPUProfile starts a CPU profile into path ("": none) and returns
// the function that stops it and closes the file.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		return nil
	}, nil
}

// libConn is one benchmark worker's connection: a share of the client
// library's pool (connections are per node address).
type libConn struct {
	c    *client.Client
	opts []client.CallOption
	// parent and ctx: the last context Do was given and it with opts, so
	// that a worker's calls (all under the run's context) do not wrap it
	// again for every call.
	parent, ctx context.Context
}

var _ bench.Conn = (*libConn)(nil)

// Do sends one command as one call. A batch (the bench's initial load) is
// sent command by command: a raft node answers a batch's commands of other
// shards, or of shards it does not lead, with per-command MOVED replies,
// which the client does not re-route.
func (l *libConn) Do(ctx context.Context, cmds []core.Command) (int, error) {
	if ctx != l.parent {
		l.parent, l.ctx = ctx, client.With(ctx, l.opts...)
	}
	ctx = l.ctx
	for _, c := range cmds {
		if _, err := l.c.DoCmd(ctx, c); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

func (l *libConn) Close() error { return nil }

// runFailover finds the leader of key's shard (the node that does not
// redirect a write), kills its process with SIGKILL, and writes key through
// the other nodes every millisecond until a write succeeds; it prints the
// leader and the time from the kill to that write (and to the first
// linearizable read that returns it) as JSON, with the client's breaker
// trips and a timeline of every attempt (start after the kill, duration,
// error code, address and message), so a slow round shows where its time
// went.
func runFailover(c *client.Client, spec, ns, key string, stdout, stderr io.Writer) int {
	pids := map[string]int{}
	var addrs []string
	for _, kv := range strings.Split(spec, ",") {
		a, p, ok := strings.Cut(kv, "=")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil {
			fmt.Fprintf(stderr, "driver: --failover %q: want ADDR=PID,...\n", kv)
			return 2
		}
		pids[a] = pid
		addrs = append(addrs, a)
	}
	ctx := client.With(context.Background(), client.Namespace(ns))
	leader := ""
	for _, a := range addrs {
		one, err := client.New([]string{a})
		if err != nil {
			fmt.Fprintf(stderr, "driver: %v\n", err)
			return 1
		}
		_, err = one.Set(client.With(ctx, client.NoRetry()), key, []byte("before"))
		one.Close()
		var ce *client.Error
		if err == nil {
			leader = a
			break
		}
		if errors.As(err, &ce) && ce.Code == client.CodeMoved && pids[ce.Addr] != 0 {
			leader = ce.Addr
			break
		}
	}
	if leader == "" {
		fmt.Fprintln(stderr, "driver: no leader found")
		return 1
	}
	var others []string
	for _, a := range addrs {
		if a != leader {
			others = append(others, a)
		}
	}
	oc, err := client.New(others, client.WithRetries(5, time.Millisecond, 5*time.Millisecond), client.WithDialTimeout(100*time.Millisecond))
	if err != nil {
		fmt.Fprintf(stderr, "driver: %v\n", err)
		return 1
	}
	defer oc.Close()
	killed := time.Now()
	if err := syscall.Kill(pids[leader], syscall.SIGKILL); err != nil {
		fmt.Fprintf(stderr, "driver: kill %d: %v\n", pids[leader], err)
		return 1
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	// timeline: one entry per attempt (write or read), so a slow round
	// shows where its time went.
	var timeline []attemptLog
	logAttempt := func(op string, start time.Time, err error) {
		a := attemptLog{Op: op, StartMs: ms(start.Sub(killed)), Ms: ms(time.Since(start))}
		if err != nil {
			a.Err = err.Error()
			var ce *client.Error
			if errors.As(err, &ce) {
				a.Code, a.Addr = ce.Code, ce.Addr
			}
		}
		timeline = append(timeline, a)
	}
	var writeMs, readMs float64
	attempts := 0
	fail := func(msg string) int {
		fmt.Fprintln(stderr, msg)
		json.NewEncoder(stderr).Encode(timeline)
		return 1
	}
	for {
		if time.Since(killed) > 30*time.Second {
			return fail("driver: no successful write within 30 s")
		}
		attempts++
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		t0 := time.Now()
		_, err := oc.Set(wctx, key, []byte("after"))
		cancel()
		logAttempt("write", t0, err)
		if err == nil {
			writeMs = ms(time.Since(killed))
			break
		}
		time.Sleep(time.Millisecond)
	}
	for {
		rctx, cancel := context.WithTimeout(client.With(ctx, client.ReadMode("linearizable")), 200*time.Millisecond)
		t0 := time.Now()
		v, err := oc.Get(rctx, key)
		cancel()
		if err == nil && string(v.Data) != "after" {
			err = fmt.Errorf("read %q, want %q", v.Data, "after")
		}
		logAttempt("read", t0, err)
		if err == nil {
			readMs = ms(time.Since(killed))
			break
		}
		if time.Since(killed) > 30*time.Second {
			return fail("driver: no read of the write within 30 s")
		}
		time.Sleep(time.Millisecond)
	}
	json.NewEncoder(stdout).Encode(map[string]any{"leader": leader, "write_ms": writeMs, "read_ms": readMs, "attempts": attempts,
		"breaker_trips": oc.Stats().Trips(), "timeline": timeline})
	return 0
}

// attemptLog is one attempt of runFailover's timeline: when it started
// (ms after the kill), how long it took, and its error ("" = success).
type attemptLog struct {
	Op      string  `json:"op"`
	StartMs float64 `json:"start_ms"`
	Ms      float64 `json:"ms"`
	Code    string  `json:"code,omitempty"`
	Addr    string  `json:"addr,omitempty"`
	Err     string  `json:"err,omitempty"`
}
