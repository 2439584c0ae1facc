// Command node-vs-redis measures one dialkv node against redis-server on
// the same machine in one run and reports dialkv/Redis ratios. run.sh
// beside this file installs Redis if needed, builds, and runs it.
//
// dialkv: `dialkv node` with --fsync never and always, loaded by
// `dialkv bench` (70/30 GET/SET, 100-byte values, N connections, single
// commands and batches of 100). Redis: redis-server without persistence and
// with appendonly + appendfsync always, loaded by redis-benchmark at the same
// concurrency (SET and GET tests run one after the other; the 70/30 figure
// is their time-weighted mix: 1 / (0.7/GET rps + 0.3/SET rps)).
//
// Latency is measured two ways, labelled in the results: (a) the saturated
// closed loop above (every connection sends its next request as soon as the
// last is answered: on a small machine its latencies are mostly queueing
// behind the other 49 connections; by Little's law its mean latency is
// connections / throughput, so a sub-millisecond p99 at 50 connections
// cannot hold at saturation), and (b) an open-loop sweep of offered rates,
// --open-fractions of dialkv's saturated single-command throughput
// (--open-fractions-always for fsync always): requests leave on a
// schedule and latency counts from the intended send time, so there is no
// coordinated omission. Both systems get every offered rate from the same
// load generator, `dialkv bench --io loop` (Redis with --protocol resp),
// alternating dialkv and Redis at each rate: redis-benchmark has no
// open-loop mode.
//
// The machine is shared and small, so besides throughput and latency it
// records CPU time per operation of each process (from /proc/PID/stat for
// the servers, from the exit status for the load generators): the server's
// CPU per operation does not depend on how much of the machine the run
// got, and the load generator's shows whether it, not the server, is the
// bottleneck.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dialkv/dialkv/clients/bench"
)

type options struct {
	dialkv   string
	duration time.Duration
	clients  int
	keys     int
	out      string
	port     int
	benchIO  string
	// openFracs and openFracsAlways are the open-loop sweep's offered
	// rates as fractions of dialkv's saturated single-command throughput
	// (fsync never paired with Redis without persistence; fsync always
	// with appendfsync always); openDur is each open-loop run's length.
	openFracs, openFracsAlways []float64
	openDur                    time.Duration
}

// RedisTest is one redis-benchmark test line.
type RedisTest struct {
	Test string  `json:"test"`
	RPS  float64 `json:"rps"`
	// ServerCPUUs and ClientCPUUs are redis-server's and
	// redis-benchmark's CPU microseconds per request.
	ServerCPUUs float64 `json:"server_cpu_us_per_op"`
	ClientCPUUs float64 `json:"client_cpu_us_per_op"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	N           int     `json:"n"`
}

// RedisRun is one redis-server configuration.
type RedisRun struct {
	Config   string               `json:"config"`
	Pipeline int                  `json:"pipeline"`
	Tests    map[string]RedisTest `json:"tests"`
	Mix7030  float64              `json:"mix_70_30_ops_per_sec"`
	// ServerCPUUs and ClientCPUUs are the 70/30 mix of the tests' CPU
	// microseconds per operation.
	ServerCPUUs float64 `json:"server_cpu_us_per_op"`
	ClientCPUUs float64 `json:"client_cpu_us_per_op"`
}

// OpenRun is an open-loop run of Redis at a fixed offered rate, driven by
// `dialkv bench --protocol resp` (the same load generator and flags as
// dialkv's open-loop run at that rate).
type OpenRun struct {
	Config string `json:"config"`
	// Fraction is the offered rate as a fraction of dialkv's saturated
	// single-command throughput (of the paired fsync setting).
	Fraction float64      `json:"fraction,omitempty"`
	Result   bench.Result `json:"result"`
	// ServerCPUUs and BenchCPUUs are redis-server's and the load
	// generator's CPU microseconds per operation.
	ServerCPUUs float64 `json:"server_cpu_us_per_op"`
	BenchCPUUs  float64 `json:"bench_cpu_us_per_op,omitempty"`
}

// DialkvRun is one dialkv configuration.
type DialkvRun struct {
	Fsync string `json:"fsync"`
	Batch int    `json:"batch"`
	// Rate is the open-loop offered rate in ops/s (0: saturated closed
	// loop).
	Rate float64 `json:"rate,omitempty"`
	// Fraction is Rate as a fraction of the saturated single-command
	// throughput of the same fsync setting (open loop only).
	Fraction float64      `json:"fraction,omitempty"`
	Result   bench.Result `json:"result"`
	// NodeCPUUs and BenchCPUUs are the node's and `dialkv bench`'s CPU
	// microseconds per operation during the measured run.
	NodeCPUUs  float64 `json:"node_cpu_us_per_op"`
	BenchCPUUs float64 `json:"bench_cpu_us_per_op"`
}

// Results is what results.json holds.
type Results struct {
	Date     string      `json:"date"`
	Host     string      `json:"host"`
	Duration string      `json:"duration"`
	Clients  int         `json:"clients"`
	Keys     int         `json:"keys"`
	Dialkv   []DialkvRun `json:"dialkv"`
	Redis    []RedisRun  `json:"redis"`
	// RedisOpen are Redis's open-loop runs, at the offered rates of
	// dialkv's open-loop runs.
	RedisOpen []OpenRun `json:"redis_open"`
	// OpenFractions and OpenFractionsAlways are the open-loop sweep's
	// offered rates as fractions of dialkv's saturated single-command
	// throughput, for fsync never and always; OpenDuration is each
	// open-loop run's length.
	OpenFractions       []float64 `json:"open_fractions"`
	OpenFractionsAlways []float64 `json:"open_fractions_always"`
	OpenDuration        string    `json:"open_duration"`
	Command             string    `json:"command"`
	Commit              string    `json:"commit,omitempty"` // git HEAD of the work tree, if known
	// LoadAvg is /proc/loadavg at the start and the end: the machine is
	// shared, and figures only compare within one run.
	LoadAvg []string `json:"loadavg"`
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func main() {
	var o options
	flag.StringVar(&o.dialkv, "dialkv", "bin/dialkv", "the dialkv binary")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "measurement time of each dialkv configuration (Redis tests are sized to about half of it each)")
	flag.IntVar(&o.clients, "clients", 50, "connections")
	flag.IntVar(&o.keys, "keys", 100000, "distinct keys")
	flag.StringVar(&o.out, "out", "experiments/results/node-vs-redis", "output directory")
	flag.IntVar(&o.port, "port", 17390, "first loopback port to use")
	flag.StringVar(&o.benchIO, "bench-io", "loop", "dialkv bench --io: loop (one event-loop goroutine, like redis-benchmark) or goroutine (one goroutine per connection; uses about as much CPU as the node on this machine)")
	fracs := flag.String("open-fractions", "0.1,0.25,0.5,0.75", "open-loop sweep (fsync never, Redis without persistence): offered rates as fractions of dialkv's saturated single-command throughput, comma-separated (empty: none)")
	fracsAlways := flag.String("open-fractions-always", "0.5", "the same for fsync always and Redis appendfsync always")
	flag.DurationVar(&o.openDur, "open-duration", 10*time.Second, "measurement time of each open-loop run")
	flag.Parse()
	var err error
	if o.openFracs, err = parseFractions(*fracs); err != nil {
		fmt.Fprintln(os.Stderr, "node-vs-redis: --open-fractions:", err)
		os.Exit(2)
	}
	if o.openFracsAlways, err = parseFractions(*fracsAlways); err != nil {
		fmt.Fprintln(os.Stderr, "node-vs-redis: --open-fractions-always:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "node-vs-redis:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "node-vs-redis-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	host, _ := os.Hostname()
	res := Results{
		Date: time.Now().UTC().Format(time.RFC3339), Host: host, Duration: o.duration.String(),
		Clients: o.clients, Keys: o.keys, OpenFractions: o.openFracs, OpenFractionsAlways: o.openFracsAlways,
		OpenDuration: o.openDur.String(),
		Command: fmt.Sprintf("DURATION=%s OPEN_DURATION=%s CLIENTS=%d KEYS=%d OPEN_FRACTIONS=%s OPEN_FRACTIONS_ALWAYS=%s experiments/node-vs-redis/run.sh",
			o.duration, o.openDur, o.clients, o.keys, joinFractions(o.openFracs), joinFractions(o.openFracsAlways)),
	}
	res.LoadAvg = append(res.LoadAvg, loadavg())
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		res.Commit = strings.TrimSpace(string(out))
	}
	port := o.port
	for _, fsync := range []string{"never", "always"} {
		port = freePort(port + 1)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		data := filepath.Join(tmp, "dialkv-"+fsync)
		node, err := start(o.dialkv, "node", "--id", "bench", "--listen", addr, "--data", data, "--fsync", fsync, "--log-level", "warn")
		if err != nil {
			return err
		}
		if err := waitPort(addr, 15*time.Second); err != nil {
			node.stop()
			return fmt.Errorf("dialkv node (fsync %s): %w", fsync, err)
		}
		// Load every key first, unmeasured (a bench run of 1 ms).
		if _, _, err := dialkvBench(o, addr, "binary", 100, true, time.Millisecond, 0); err != nil {
			node.stop()
			return fmt.Errorf("dialkv bench --load (fsync %s): %w", fsync, err)
		}
		for _, batch := range []int{1, 100} {
			run, err := dialkvRun(o, node, addr, fsync, batch, 0, o.duration)
			if err != nil {
				node.stop()
				return err
			}
			res.Dialkv = append(res.Dialkv, run)
		}
		if err := node.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "dialkv node (fsync %s) exited: %v\n", fsync, err)
		}
	}
	for _, rc := range []struct {
		name     string
		args     []string
		pipeline int
		fsync    string // the dialkv configuration it pairs with
	}{
		{"no persistence", []string{"--save", "", "--appendonly", "no"}, 1, "never"},
		{"appendfsync always", []string{"--save", "", "--appendonly", "yes", "--appendfsync", "always"}, 1, "always"},
		{"no persistence", []string{"--save", "", "--appendonly", "no"}, 100, "never"},
		{"appendfsync always", []string{"--save", "", "--appendonly", "yes", "--appendfsync", "always"}, 100, "always"},
	} {
		port = freePort(port + 1)
		dir := filepath.Join(tmp, fmt.Sprintf("redis-%d", port))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--daemonize", "no", "--loglevel", "warning"}, rc.args...)
		srv, err := start("redis-server", args...)
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitPort(addr, 15*time.Second); err != nil {
			srv.stop()
			return fmt.Errorf("redis-server: %w", err)
		}
		rr, err := redisBench(o, port, rc.pipeline, srv.cmd.Process.Pid)
		if err != nil {
			srv.stop()
			return fmt.Errorf("redis-benchmark (%s, pipeline %d): %w", rc.name, rc.pipeline, err)
		}
		srv.stop()
		rr.Config = rc.name
		res.Redis = append(res.Redis, rr)
		fmt.Fprintf(os.Stderr, "redis %s pipeline %d: SET %.0f/s GET %.0f/s, 70/30 mix %.0f ops/s\n",
			rc.name, rc.pipeline, rr.Tests["SET"].RPS, rr.Tests["GET"].RPS, rr.Mix7030)
	}
	for _, sw := range []struct {
		fsync, redis string
		redisArgs    []string
		fracs        []float64
	}{
		{"never", "no persistence", []string{"--save", "", "--appendonly", "no"}, o.openFracs},
		{"always", "appendfsync always", []string{"--save", "", "--appendonly", "yes", "--appendfsync", "always"}, o.openFracsAlways},
	} {
		port = freePort(port + 1)
		if err := sweep(o, &res, tmp, port, sw.fsync, sw.redis, sw.redisArgs, sw.fracs); err != nil {
			return err
		}
	}
	res.LoadAvg = append(res.LoadAvg, loadavg())
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(o.out, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	var md bytes.Buffer
	summary(&md, res)
	if err := os.WriteFile(filepath.Join(o.out, "summary.md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	os.Stdout.Write(md.Bytes())
	return nil
}

type proc struct {
	cmd  *exec.Cmd
	done chan error
}

func start(bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout = io.Discard
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// stop sends SIGTERM and waits up to 10 s, then kills.
func (p *proc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return errors.New("did not stop within 10 s of SIGTERM; killed")
	}
}

// freePort is the first loopback port from p on that can be listened on
// now: the ports the experiment uses lie in Linux's ephemeral range
// (32768-60999), where a client connection's local end may hold one (a
// session-8 run failed with "address already in use").
func freePort(p int) int {
	for ; p < 65535; p++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	return p
}

func waitPort(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v: %w", addr, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dialkvRun is one measured `dialkv bench` run against the dialkv node
// (open loop at rate ops/s if rate > 0) with the node's CPU time.
func dialkvRun(o options, node *proc, addr, fsync string, batch int, rate float64, d time.Duration) (DialkvRun, error) {
	cpu0 := procCPU(node.cmd.Process.Pid)
	r, benchCPU, err := dialkvBench(o, addr, "binary", batch, false, d, rate)
	if err != nil {
		return DialkvRun{}, fmt.Errorf("dialkv bench (fsync %s, batch %d, rate %.0f): %w", fsync, batch, rate, err)
	}
	run := DialkvRun{Fsync: fsync, Batch: batch, Rate: rate, Result: r}
	if r.Ops > 0 {
		run.NodeCPUUs = (procCPU(node.cmd.Process.Pid) - cpu0).Seconds() * 1e6 / float64(r.Ops)
		run.BenchCPUUs = benchCPU.Seconds() * 1e6 / float64(r.Ops)
	}
	fmt.Fprintf(os.Stderr, "dialkv fsync=%s batch=%d rate=%.0f: %.0f ops/s, read p99 %.3f ms, write p99 %.3f ms, CPU per op: node %.1f µs, bench %.1f µs\n",
		fsync, batch, rate, r.OpsPerSec, r.Reads.P99Ms, r.Writes.P99Ms, run.NodeCPUUs, run.BenchCPUUs)
	return run, nil
}

// sweep runs the open-loop sweep of one durability pairing: a fresh dialkv
// node (--fsync fsync) and a fresh redis-server (redisArgs) side by side,
// every key loaded into both, then at each offered rate (fracs of dialkv's
// saturated single-command throughput of that fsync setting, measured
// before) one dialkv run and one Redis run, alternating, from the same load
// generator with the same flags.
func sweep(o options, res *Results, tmp string, port int, fsync, redis string, redisArgs []string, fracs []float64) error {
	sat := dk(*res, fsync, 1, false).Result.OpsPerSec
	if len(fracs) == 0 || sat < 1 {
		return nil
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	node, err := start(o.dialkv, "node", "--id", "bench", "--listen", addr, "--data", filepath.Join(tmp, "sweep-dialkv-"+fsync), "--fsync", fsync, "--log-level", "warn")
	if err != nil {
		return err
	}
	defer node.stop()
	dir := filepath.Join(tmp, "sweep-redis-"+fsync)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rport := freePort(port + 1)
	raddr := fmt.Sprintf("127.0.0.1:%d", rport)
	srv, err := start("redis-server", append([]string{"--port", strconv.Itoa(rport), "--bind", "127.0.0.1", "--dir", dir, "--daemonize", "no", "--loglevel", "warning"}, redisArgs...)...)
	if err != nil {
		return err
	}
	defer srv.stop()
	for _, a := range []struct{ addr, proto string }{{addr, "binary"}, {raddr, bench.ProtocolRESP}} {
		if err := waitPort(a.addr, 15*time.Second); err != nil {
			return fmt.Errorf("open-loop sweep (fsync %s): %w", fsync, err)
		}
		if _, _, err := dialkvBench(o, a.addr, a.proto, 100, true, time.Millisecond, 0); err != nil {
			return fmt.Errorf("open-loop sweep (fsync %s): load %s: %w", fsync, a.addr, err)
		}
	}
	for _, f := range fracs {
		rate := math.Round(f * sat)
		if rate < 1 {
			continue
		}
		run, err := dialkvRun(o, node, addr, fsync, 1, rate, o.openDur)
		if err != nil {
			return err
		}
		run.Fraction = f
		res.Dialkv = append(res.Dialkv, run)
		cpu0 := procCPU(srv.cmd.Process.Pid)
		r, benchCPU, err := dialkvBench(o, raddr, bench.ProtocolRESP, 1, false, o.openDur, rate)
		if err != nil {
			return fmt.Errorf("redis open loop (%s, %.0f ops/s): %w", redis, rate, err)
		}
		or := OpenRun{Config: redis, Fraction: f, Result: r}
		if r.Ops > 0 {
			or.ServerCPUUs = (procCPU(srv.cmd.Process.Pid) - cpu0).Seconds() * 1e6 / float64(r.Ops)
			or.BenchCPUUs = benchCPU.Seconds() * 1e6 / float64(r.Ops)
		}
		res.RedisOpen = append(res.RedisOpen, or)
		fmt.Fprintf(os.Stderr, "redis %s open loop at %.0f ops/s: %.0f ops/s, read p99 %.3f ms, write p99 %.3f ms, CPU per op: server %.1f µs, bench %.1f µs\n",
			redis, rate, r.OpsPerSec, r.Reads.P99Ms, r.Writes.P99Ms, or.ServerCPUUs, or.BenchCPUUs)
	}
	return nil
}

// parseFractions parses a comma-separated list of fractions in (0, 1.5],
// sorted ascending without duplicates (the sweep runs in this order, and
// meetsUpTo reads the highest fraction up to which the goals held).
func parseFractions(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || v > 1.5 {
			return nil, fmt.Errorf("%q: want fractions in (0, 1.5]", f)
		}
		out = append(out, v)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func joinFractions(fs []float64) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}

// dialkvBench runs `dialkv bench` (open loop at rate ops/s if rate > 0)
// against addr speaking proto ("binary" Thrift to a dialkv node, "resp" to
// redis-server) and returns its result and its CPU time.
func dialkvBench(o options, addr, proto string, batch int, load bool, d time.Duration, rate float64) (bench.Result, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.dialkv, "bench", "--addr", addr, "--protocol", proto, "--workload", "70/30",
		"--clients", strconv.Itoa(o.clients), "--value-size", "100", "--keys", strconv.Itoa(o.keys),
		"--batch", strconv.Itoa(batch), "--duration", d.String(), "--load="+strconv.FormatBool(load),
		"--rate", strconv.FormatFloat(rate, 'f', 0, 64), "--progress", "5s", "--json", "--io", o.benchIO)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return bench.Result{}, 0, err
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var r bench.Result
	if err := json.Unmarshal(out, &r); err != nil {
		return r, cpu, fmt.Errorf("parse dialkv bench --json: %w", err)
	}
	return r, cpu, nil
}

// procCPU is the user+system CPU time process pid has used so far (0 if
// /proc cannot say). Resolution: one clock tick (10 ms).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: state is
	// the first, utime the 12th, stime the 13th.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * time.Second / clockTicks
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc.
const clockTicks = 100

func redisBench(o options, port, pipeline, serverPid int) (RedisRun, error) {
	rr := RedisRun{Pipeline: pipeline, Tests: map[string]RedisTest{}}
	// Calibrate: a short SET run sizes the measured runs to about half the
	// dialkv duration each.
	cal, err := redisBenchmark(port, o.clients, pipeline, o.keys, 20000*pipeline, "set", 0)
	if err != nil {
		return rr, err
	}
	for _, test := range []string{"set", "get"} {
		n := int(cal["SET"].RPS * o.duration.Seconds() / 2)
		if test == "get" && pipeline == 1 {
			n = int(float64(n) * 1.5) // GET is faster than SET under appendfsync
		}
		n = max(n, 10000)
		ts, err := redisBenchmark(port, o.clients, pipeline, o.keys, n, test, serverPid)
		if err != nil {
			return rr, err
		}
		for k, v := range ts {
			rr.Tests[k] = v
		}
	}
	if g, s := rr.Tests["GET"].RPS, rr.Tests["SET"].RPS; g > 0 && s > 0 {
		rr.Mix7030 = 1 / (0.7/g + 0.3/s)
	}
	g, s := rr.Tests["GET"], rr.Tests["SET"]
	rr.ServerCPUUs = 0.7*g.ServerCPUUs + 0.3*s.ServerCPUUs
	rr.ClientCPUUs = 0.7*g.ClientCPUUs + 0.3*s.ClientCPUUs
	return rr, nil
}

// redisBenchmark runs one redis-benchmark test; with serverPid > 0 it also
// measures redis-server's and redis-benchmark's CPU time per request.
func redisBenchmark(port, clients, pipeline, keys, n int, test string, serverPid int) (map[string]RedisTest, error) {
	var cpu0 time.Duration
	if serverPid > 0 {
		cpu0 = procCPU(serverPid)
	}
	cmd := exec.Command("redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-c", strconv.Itoa(clients),
		"-P", strconv.Itoa(pipeline), "-d", "100", "-r", strconv.Itoa(keys), "-n", strconv.Itoa(n), "-t", test, "--csv")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	var serverUs, clientUs float64
	if serverPid > 0 {
		serverUs = (procCPU(serverPid) - cpu0).Seconds() * 1e6 / float64(n)
		clientUs = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds() * 1e6 / float64(n)
	}
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil || len(recs) < 2 {
		return nil, fmt.Errorf("parse redis-benchmark --csv %q: %v", out, err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, h := range []string{"test", "rps", "p50_latency_ms", "p99_latency_ms", "max_latency_ms"} {
		if _, ok := col[h]; !ok {
			return nil, fmt.Errorf("redis-benchmark --csv lacks column %q: %q", h, recs[0])
		}
	}
	f := func(rec []string, h string) float64 { v, _ := strconv.ParseFloat(rec[col[h]], 64); return v }
	ts := map[string]RedisTest{}
	for _, rec := range recs[1:] {
		name := rec[col["test"]]
		name, _, _ = strings.Cut(name, " ")
		ts[name] = RedisTest{Test: name, RPS: f(rec, "rps"), P50Ms: f(rec, "p50_latency_ms"), P99Ms: f(rec, "p99_latency_ms"), MaxMs: f(rec, "max_latency_ms"), N: n,
			ServerCPUUs: serverUs, ClientCPUUs: clientUs}
	}
	return ts, nil
}

func summary(w io.Writer, r Results) {
	fmt.Fprintf(w, "#### dialkv node vs Redis (%s, %s, commit %s)\n\n", r.Date, r.Host, r.Commit)
	fmt.Fprintf(w, "One node on loopback, %d connections, 70/30 GET/SET, 100-byte values, %d keys; dialkv runs %s each", r.Clients, r.Keys, r.Duration)
	if len(r.Dialkv) > 0 && r.Dialkv[0].Result.Config.IO != "" {
		fmt.Fprintf(w, " (dialkv bench --io %s)", r.Dialkv[0].Result.Config.IO)
	}
	fmt.Fprintln(w, ".")
	fmt.Fprintf(w, "Load average (1/5/15 min) at the start: %s; at the end: %s.\n\n", r.LoadAvg[0], r.LoadAvg[len(r.LoadAvg)-1])
	fmt.Fprintln(w, "(a) Saturated closed loop: each connection sends its next request as soon as the last is answered; latencies include queueing behind the other connections.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| system | durability | batch | ops/s | read p50 ms | read p99 ms | write p50 ms | write p99 ms | server CPU µs/op | load generator CPU µs/op |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, d := range r.Dialkv {
		if d.Rate > 0 {
			continue
		}
		fmt.Fprintf(w, "| dialkv | fsync %s | %d | %.0f | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f |\n", d.Fsync, d.Batch, d.Result.OpsPerSec,
			d.Result.Reads.P50Ms, d.Result.Reads.P99Ms, d.Result.Writes.P50Ms, d.Result.Writes.P99Ms, d.NodeCPUUs, d.BenchCPUUs)
	}
	for _, x := range r.Redis {
		fmt.Fprintf(w, "| redis | %s | pipeline %d | %.0f (mix) | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f |\n", x.Config, x.Pipeline, x.Mix7030,
			x.Tests["GET"].P50Ms, x.Tests["GET"].P99Ms, x.Tests["SET"].P50Ms, x.Tests["SET"].P99Ms, x.ServerCPUUs, x.ClientCPUUs)
	}
	if len(r.RedisOpen) > 0 || hasOpen(r) {
		fmt.Fprintf(w, "\n(b) Open-loop sweep, single commands, %s per run: offered rates as fractions of dialkv's saturated single-command throughput of the same durability (row (a)); requests leave on a schedule and latency counts from the intended send time (no coordinated omission). Both systems are loaded by the same generator with the same flags, `dialkv bench --io loop` (Redis: `--protocol resp`), dialkv and Redis alternating at each rate (redis-benchmark has no open-loop mode).\n\n", r.OpenDuration)
		fmt.Fprintln(w, "| system | durability | offered % | offered ops/s | achieved ops/s | missed | read p50 ms | read p99 ms | read p99.9 ms | write p50 ms | write p99 ms | write p99.9 ms | server CPU µs/op | load generator CPU µs/op |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
		open := func(system, durability string, frac float64, res bench.Result, cpu, benchCPU float64) {
			fmt.Fprintf(w, "| %s | %s | %.0f | %.0f | %.0f | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f |\n", system, durability, 100*frac, res.Config.Rate, res.OpsPerSec, res.Missed,
				res.Reads.P50Ms, res.Reads.P99Ms, res.Reads.P999Ms, res.Writes.P50Ms, res.Writes.P99Ms, res.Writes.P999Ms, cpu, benchCPU)
		}
		// Rows in run order: each dialkv run, then Redis's at its rate.
		for _, pair := range openPairs(r) {
			if d := pair.dialkv; d != nil {
				open("dialkv", "fsync "+d.Fsync, d.Fraction, d.Result, d.NodeCPUUs, d.BenchCPUUs)
			}
			if x := pair.redis; x != nil {
				open("redis", x.Config, x.Fraction, x.Result, x.ServerCPUUs, x.BenchCPUUs)
			}
		}
	}
	fmt.Fprintln(w, "\n| goal (issue 3) | fsync never | fsync always |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, g := range []struct {
		name  string
		open  bool
		read  bool
		limit float64
	}{{"p99 read < 1 ms, (a) saturated", false, true, 1}, {"p99 read < 1 ms, (b) open loop, the run nearest 50 %", true, true, 1},
		{"p99 write < 5 ms, (a) saturated", false, false, 5}, {"p99 write < 5 ms, (b) open loop, the run nearest 50 %", true, false, 5}} {
		cell := func(fsync string) string {
			d := dk(r, fsync, 1, g.open)
			if d.Result.Ops == 0 {
				return "not run"
			}
			v := d.Result.Writes.P99Ms
			if g.read {
				v = d.Result.Reads.P99Ms
			}
			verdict := "not met"
			if v < g.limit {
				verdict = "met"
			}
			if g.open { // the offered rate dk chose (the sweep may lack 50 %)
				return fmt.Sprintf("%s (%.3f ms at %s %%)", verdict, v, strconv.FormatFloat(100*d.Fraction, 'g', 4, 64))
			}
			return fmt.Sprintf("%s (%.3f ms)", verdict, v)
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", g.name, cell("never"), cell("always"))
	}
	if len(r.RedisOpen) > 0 || hasOpen(r) {
		fmt.Fprintln(w, "\n| (b) highest offered rate of the sweep up to which p99 read < 1 ms and p99 write < 5 ms (% of dialkv's saturated rate) | dialkv | Redis |")
		fmt.Fprintln(w, "|---|---|---|")
		for _, pair := range []struct{ fsync, redis string }{{"never", "no persistence"}, {"always", "appendfsync always"}} {
			var ds, xs []bench.Result
			var fr []float64
			for _, p := range openPairs(r) {
				if p.dialkv != nil && p.dialkv.Fsync == pair.fsync {
					fr = append(fr, p.dialkv.Fraction)
					ds = append(ds, p.dialkv.Result)
					if p.redis != nil {
						xs = append(xs, p.redis.Result)
					} else {
						xs = append(xs, bench.Result{})
					}
				}
			}
			if len(fr) > 0 {
				fmt.Fprintf(w, "| fsync %s / Redis %s | %s | %s |\n", pair.fsync, pair.redis, meetsUpTo(fr, ds), meetsUpTo(fr, xs))
			}
		}
	}
	find := func(fsync string, batch int) *bench.Result {
		for i := range r.Dialkv {
			if r.Dialkv[i].Fsync == fsync && r.Dialkv[i].Batch == batch && r.Dialkv[i].Rate == 0 {
				return &r.Dialkv[i].Result
			}
		}
		return nil
	}
	redis := func(cfg string, pipeline int) *RedisRun {
		for i := range r.Redis {
			if r.Redis[i].Config == cfg && r.Redis[i].Pipeline == pipeline {
				return &r.Redis[i]
			}
		}
		return nil
	}
	fmt.Fprintln(w, "\n| ratio (dialkv / Redis) | ops/s | read p99 | write p99 | server CPU per op |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, pair := range []struct{ fsync, redis string }{{"never", "no persistence"}, {"always", "appendfsync always"}} {
		d, x := find(pair.fsync, 1), redis(pair.redis, 1)
		if d == nil || x == nil || x.Mix7030 == 0 {
			continue
		}
		fmt.Fprintf(w, "| fsync %s vs Redis %s | %.2f | %.2f | %.2f | %.2f |\n", pair.fsync, pair.redis,
			d.OpsPerSec/x.Mix7030, ratio(d.Reads.P99Ms, x.Tests["GET"].P99Ms), ratio(d.Writes.P99Ms, x.Tests["SET"].P99Ms),
			ratio(dk(r, pair.fsync, 1, false).NodeCPUUs, x.ServerCPUUs))
	}
	for _, pair := range []struct{ fsync, redis string }{{"never", "no persistence"}, {"always", "appendfsync always"}} {
		d, x := find(pair.fsync, 100), redis(pair.redis, 100)
		if d == nil || x == nil || x.Mix7030 == 0 {
			continue
		}
		fmt.Fprintf(w, "| fsync %s batch 100 vs Redis %s pipeline 100 | %.2f | | | %.2f |\n", pair.fsync, pair.redis, d.OpsPerSec/x.Mix7030,
			ratio(dk(r, pair.fsync, 100, false).NodeCPUUs, x.ServerCPUUs))
	}
	fmt.Fprintln(w, "\n| batching gain (batch 100 / single) | ops/s | node CPU per op |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, fsync := range []string{"never", "always"} {
		if one, hundred := find(fsync, 1), find(fsync, 100); one != nil && hundred != nil && one.OpsPerSec > 0 {
			fmt.Fprintf(w, "| dialkv fsync %s | %.1fx | %.1fx less |\n", fsync, hundred.OpsPerSec/one.OpsPerSec,
				ratio(dk(r, fsync, 1, false).NodeCPUUs, dk(r, fsync, 100, false).NodeCPUUs))
		}
	}
	for _, cfg := range []string{"no persistence", "appendfsync always"} {
		var one, hundred *RedisRun
		for i := range r.Redis {
			if r.Redis[i].Config == cfg && r.Redis[i].Pipeline == 1 {
				one = &r.Redis[i]
			}
			if r.Redis[i].Config == cfg && r.Redis[i].Pipeline == 100 {
				hundred = &r.Redis[i]
			}
		}
		if one != nil && hundred != nil && one.Mix7030 > 0 {
			fmt.Fprintf(w, "| redis %s (pipeline 100 / 1) | %.1fx | %.1fx less |\n", cfg, hundred.Mix7030/one.Mix7030, ratio(one.ServerCPUUs, hundred.ServerCPUUs))
		}
	}
	fmt.Fprintf(w, "\nReproduce: `%s`. Redis's 70/30 figure is the time-weighted mix of its separate SET and GET runs; dialkv's batch latencies are per batch of 100. CPU µs/op: the server process's and the load generator's user+system CPU time over the measured run (Redis: over the SET and GET tests, mixed 70/30) divided by the operations done; it does not depend on how much of the shared machine the run got.\n", r.Command)
}

// dk is the dialkv run of fsync and batch, closed loop (open false) or
// open loop (open true: the one offered nearest 50 % of saturation); a
// zero run if there is none.
func dk(r Results, fsync string, batch int, open bool) DialkvRun {
	var best DialkvRun
	for _, d := range r.Dialkv {
		if d.Fsync != fsync || d.Batch != batch || (d.Rate > 0) != open {
			continue
		}
		if !open {
			return d
		}
		if best.Rate == 0 || math.Abs(d.Fraction-0.5) < math.Abs(best.Fraction-0.5) {
			best = d
		}
	}
	return best
}

// openPair is a dialkv open-loop run and Redis's at the same offered rate
// (either may be missing).
type openPair struct {
	dialkv *DialkvRun
	redis  *OpenRun
}

// openPairs pairs the open-loop runs by offered rate and durability, in
// run order.
func openPairs(r Results) []openPair {
	redisOf := map[string]string{"never": "no persistence", "always": "appendfsync always"}
	var out []openPair
	used := make([]bool, len(r.RedisOpen))
	for i := range r.Dialkv {
		d := &r.Dialkv[i]
		if d.Rate <= 0 {
			continue
		}
		p := openPair{dialkv: d}
		for j := range r.RedisOpen {
			x := &r.RedisOpen[j]
			if !used[j] && x.Config == redisOf[d.Fsync] && x.Result.Config.Rate == d.Rate {
				p.redis, used[j] = x, true
				break
			}
		}
		out = append(out, p)
	}
	for j := range r.RedisOpen {
		if !used[j] {
			out = append(out, openPair{redis: &r.RedisOpen[j]})
		}
	}
	return out
}

// meetsUpTo is the highest of the fractions fr (rs[i] ran at fr[i]) up to
// which every run of rs met both latency goals (p99 read < 1 ms, p99 write
// < 5 ms) and achieved at least 95 % of its offered rate.
func meetsUpTo(fr []float64, rs []bench.Result) string {
	// In ascending fraction (results written by an older build may hold
	// a sweep in the order it was given).
	order := make([]int, len(fr))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(fr[a], fr[b]) })
	best := -1.0
	for _, i := range order {
		res := rs[i]
		if res.Ops == 0 || res.Reads.P99Ms >= 1 || res.Writes.P99Ms >= 5 || res.OpsPerSec < 0.95*res.Config.Rate {
			break
		}
		best = fr[i]
	}
	if best < 0 {
		return "none of the sweep's rates"
	}
	return fmt.Sprintf("%.0f %%", 100*best)
}

// hasOpen says whether r has dialkv open-loop runs.
func hasOpen(r Results) bool {
	for _, d := range r.Dialkv {
		if d.Rate > 0 {
			return true
		}
	}
	return false
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
