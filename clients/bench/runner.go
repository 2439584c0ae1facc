package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
)

// Conn is one connection to the server under test. A worker owns one.
type Conn interface {
	// Do sends cmds as one request (one command: a single call; more: a
	// batch) and returns how many of them failed on their own (error
	// replies). err means the whole request failed. The request is bounded
	// by ctx's deadline if it has one, else by the connection's timeout.
	Do(ctx context.Context, cmds []core.Command) (failed int, err error)
	Close() error
}

// Connector opens a connection.
type Connector func(ctx context.Context) (Conn, error)

// Config is one benchmark run.
type Config struct {
	Addr      string        `json:"addr"`
	Workload  string        `json:"workload"`
	Keys      int           `json:"keys"`
	Dist      string        `json:"dist"`
	ValueSize int           `json:"value_size"`
	Clients   int           `json:"clients"`
	Batch     int           `json:"batch"`
	Duration  time.Duration `json:"-"`
	Rate      float64       `json:"rate,omitempty"` // target ops/s; 0: closed loop
	Load      bool          `json:"load"`           // write every key before measuring
	Seed      uint64        `json:"seed"`
	Timeout   time.Duration `json:"-"` // per request
	Protocol  string        `json:"protocol"`
	Namespace string        `json:"namespace,omitempty"`
	// ViaClient: through the Go client library (ClientConnector).
	ViaClient bool `json:"via_client,omitempty"`
	// IO is how the raw connections are driven: "goroutine" (or empty: one
	// goroutine per connection, through the Connector) or "loop" (Linux:
	// every connection from one event-loop goroutine with raw sockets; see
	// loop_linux.go). The loop needs neither TLS, a login nor ViaClient.
	IO string `json:"io,omitempty"`
	// Per-request consistency options (0 / "" / false: the namespace's
	// defaults). R and W: quorum sizes, -2 QUORUM, -1 ALL.
	R        int           `json:"r,omitempty"`
	W        int           `json:"w,omitempty"`
	Strict   bool          `json:"strict,omitempty"`
	ReadMode string        `json:"read_mode,omitempty"`
	Mode     string        `json:"mode,omitempty"`
	Progress time.Duration `json:"-"` // progress line period; 0: none
	// Conn holds the TLS and login flags (never reported).
	Conn client.ConnFlags `json:"-"`
}

// Interval is one progress period.
type Interval struct {
	T         float64 `json:"t_s"` // seconds since the start, at the end of the period
	OpsPerSec float64 `json:"ops_per_sec"`
	ReadP99   float64 `json:"read_p99_ms"`
	WriteP99  float64 `json:"write_p99_ms"`
	Errors    int64   `json:"errors"`
}

// Result is the outcome of a run (`--json` prints it).
type Result struct {
	Config     Config       `json:"config"`
	DurationS  float64      `json:"duration_s"`
	Mode       string       `json:"mode"` // "closed-loop" or "open-loop"
	ElapsedS   float64      `json:"elapsed_s"`
	Ops        int64        `json:"ops"`
	OpsPerSec  float64      `json:"ops_per_sec"`
	Errors     int64        `json:"errors"`
	Missed     int64        `json:"missed"` // open loop: operations due before the end but never sent
	Reads      LatencyStats `json:"reads"`
	Writes     LatencyStats `json:"writes"`
	LoadS      float64      `json:"load_s,omitempty"`
	Intervals  []Interval   `json:"intervals"`
	LatencyPer string       `json:"latency_per"` // "operation" or "batch of N"
	// BreakerTrips: with --via-client, the nodes whose circuit breaker
	// opened during the run.
	BreakerTrips []NodeTrips `json:"breaker_trips,omitempty"`
}

// NodeTrips is one node's circuit breaker record of a run.
type NodeTrips struct {
	Addr  string `json:"addr"`
	Trips int    `json:"trips"`
	State string `json:"state"` // at the end of the run
}

// Validate checks a configuration.
func (c *Config) Validate() error {
	if _, err := ParseMix(c.Workload); err != nil {
		return err
	}
	if c.Dist != "uniform" && c.Dist != "zipfian" {
		return fmt.Errorf("--dist %q: want uniform or zipfian", c.Dist)
	}
	if c.Keys < 1 {
		return fmt.Errorf("--keys %d: need at least 1", c.Keys)
	}
	if c.ValueSize < 0 || c.ValueSize > 1<<20 {
		return fmt.Errorf("--value-size %d: want 0 to 1048576 bytes", c.ValueSize)
	}
	if c.Clients < 1 || c.Clients > 100000 {
		return fmt.Errorf("--clients %d: want 1 to 100000", c.Clients)
	}
	if c.Batch < 1 || c.Batch > 100000 {
		return fmt.Errorf("--batch %d: want 1 to 100000", c.Batch)
	}
	if c.Duration <= 0 {
		return fmt.Errorf("--duration %v: must be positive", c.Duration)
	}
	if c.Rate < 0 {
		return fmt.Errorf("--rate %v: must not be negative", c.Rate)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("--timeout %v: must be positive", c.Timeout)
	}
	if c.Protocol == ProtocolRESP {
		// RESP carries the commands only: none of the node's request
		// options, and the client library speaks Thrift.
		if c.ViaClient || c.Namespace != "" || c.R != 0 || c.W != 0 || c.Strict || c.ReadMode != "" || c.Mode != "" {
			return errors.New("--protocol resp: not with --via-client, --namespace, --r, --w, --strict, --read-mode or --mode")
		}
	}
	switch c.IO {
	case "", IOGoroutine:
	case IOLoop:
		if c.ViaClient {
			return errors.New("--io loop: not with --via-client (the client library has its own connections)")
		}
		if !loopSupported {
			return errors.New("--io loop: only on Linux (use --io goroutine)")
		}
	default:
		return fmt.Errorf("--io %q: want goroutine or loop", c.IO)
	}
	return nil
}

// The --io modes (Config.IO).
const (
	IOGoroutine = "goroutine"
	IOLoop      = "loop"
)

// maxStatShards bounds the number of histogram pairs of a run.
const maxStatShards = 64

// statShards is how many histogram pairs the workers of a run of clients
// connections share: a few per P (a worker holds a shard's lock only to
// record one latency, so more would not lower contention), at most
// maxStatShards. Each pair is merged into the interval's histograms and
// zeroed every progress period whether it saw 10 or 10,000 operations;
// with one pair per client (50 in the raft-vs-etcd driver) that fixed
// cost was 16% of the driver's CPU samples at 1,000-2,000 writes/s.
func statShards(clients int) int {
	return max(1, min(clients, 4*runtime.GOMAXPROCS(0), maxStatShards))
}

// Run runs the benchmark: it opens cfg.Clients connections, optionally
// loads every key, then runs the mix for cfg.Duration and returns the
// summary. Progress lines go to progress (nil: none). Cancelling ctx ends
// the measurement early; the result then covers the time actually run.
func Run(ctx context.Context, cfg Config, connect Connector, progress io.Writer) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	mix, _ := ParseMix(cfg.Workload)
	keys, err := NewKeyChooser(cfg.Dist, cfg.Keys)
	if err != nil {
		return Result{}, err
	}
	// The event loop (--io loop) dials its own sockets; the Connector's
	// connections then only load the keys.
	var lp *eventLoop
	nconns := cfg.Clients
	if cfg.IO == IOLoop {
		if lp, err = newEventLoop(cfg, mix, keys); err != nil {
			return Result{}, err
		}
		defer lp.close()
		nconns = 0
		if cfg.Load {
			nconns = min(cfg.Clients, 16)
		}
	}
	conns := make([]Conn, 0, nconns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range nconns {
		c, err := connect(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("bench: connection %d of %d: %w", i+1, cfg.Clients, err)
		}
		conns = append(conns, c)
	}
	res := Result{Config: cfg, DurationS: cfg.Duration.Seconds(), Mode: "closed-loop", LatencyPer: "operation"}
	if cfg.Rate > 0 {
		res.Mode = "open-loop"
	}
	if cfg.Batch > 1 {
		res.LatencyPer = fmt.Sprintf("batch of %d", cfg.Batch)
	}
	if cfg.Load {
		t0 := time.Now()
		if progress != nil {
			fmt.Fprintf(progress, "loading %d keys of %d bytes...\n", cfg.Keys, cfg.ValueSize)
		}
		if err := load(ctx, cfg, conns); err != nil {
			return res, err
		}
		res.LoadS = time.Since(t0).Seconds()
	}

	// Workers share statistics shards: a histogram pair takes ~280 KB, too
	// much to give each of 10,000 connections its own.
	stats := make([]*workerStats, statShards(cfg.Clients))
	for i := range stats {
		stats[i] = newWorkerStats()
	}
	var missed atomic.Int64
	start := time.Now()
	end := start.Add(cfg.Duration)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	workers := conns
	if lp != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			missed.Add(lp.run(runCtx, start, end, stats[0]))
		}()
		workers = nil // the loop drives its own sockets
	}
	for i, c := range workers {
		w := &worker{
			cfg:   cfg,
			conn:  c,
			gen:   NewGenerator(mix, keys, cfg.ValueSize, cfg.Seed*1_000_003+uint64(i)),
			stats: stats[i%len(stats)],
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cfg.Rate > 0 {
				offset, interval := openSlot(cfg, i)
				missed.Add(w.openLoop(runCtx, start.Add(offset), end, interval))
			} else {
				w.closedLoop(runCtx, end)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	totalRead, totalWrite := newHist(), newHist()
	var total counts
	ivRead, ivWrite := newHist(), newHist()
	collect := func(now time.Time, last time.Time) {
		ivRead.Reset()
		ivWrite.Reset()
		var c counts
		for _, s := range stats {
			s.drainInto(ivRead, ivWrite, &c)
		}
		totalRead.Merge(ivRead)
		totalWrite.Merge(ivWrite)
		total.add(c)
		secs := now.Sub(last).Seconds()
		iv := Interval{
			T:        now.Sub(start).Seconds(),
			ReadP99:  quantileMs(ivRead, 99),
			WriteP99: quantileMs(ivWrite, 99),
			Errors:   c.errors,
		}
		if secs > 0 {
			iv.OpsPerSec = float64(c.readOps+c.writeOps) / secs
		}
		res.Intervals = append(res.Intervals, iv)
		if progress != nil {
			fmt.Fprintf(progress, "[%5.1fs] %9.0f ops/s  read p99 %7.3f ms  write p99 %7.3f ms  errors %d\n",
				iv.T, iv.OpsPerSec, iv.ReadP99, iv.WriteP99, iv.Errors)
		}
	}
	period := cfg.Progress
	if period <= 0 {
		period = time.Second
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	last := start
loop:
	for {
		select {
		case now := <-tick.C:
			collect(now, last)
			last = now
		case <-ctx.Done():
			cancel()
			<-done
			break loop
		case <-done:
			break loop
		}
	}
	finish := time.Now()
	collect(finish, last)
	elapsed := finish.Sub(start) // includes the last in-flight requests
	res.ElapsedS = elapsed.Seconds()
	res.Ops = total.readOps + total.writeOps
	res.OpsPerSec = float64(res.Ops) / elapsed.Seconds()
	res.Errors = total.errors
	res.Missed = missed.Load()
	res.Reads = latencyStats(totalRead, total.readOps, total.readReqs, elapsed)
	res.Writes = latencyStats(totalWrite, total.writeOps, total.writeReqs, elapsed)
	if res.Ops == 0 && res.Errors > 0 {
		return res, errors.New("bench: every request failed")
	}
	return res, nil
}

func quantileMs(h *hdrhistogram.Histogram, q float64) float64 {
	if h.TotalCount() == 0 {
		return 0
	}
	return float64(h.ValueAtQuantile(q)) / 1000
}

type worker struct {
	cfg   Config
	conn  Conn
	gen   *Generator
	stats *workerStats
}

func (w *worker) send(ctx context.Context, cmds []core.Command, read bool, from time.Time) {
	// No per-request context: the connection applies its own timeout
	// (a socket deadline), which costs no timer allocation per request.
	failed, err := w.conn.Do(ctx, cmds)
	if err != nil && ctx.Err() != nil {
		return // cancelled by the end of the run, not a failure of the server
	}
	w.stats.record(read, len(cmds), failed, time.Since(from), err)
}

// closedLoop sends the next request as soon as the previous one is
// answered, until end.
func (w *worker) closedLoop(ctx context.Context, end time.Time) {
	cmds := make([]core.Command, w.cfg.Batch)
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		read := w.gen.Batch(cmds)
		w.send(ctx, cmds, read, t0)
	}
}

// openLoop sends requests on a fixed schedule (first at first, then every
// interval) until end. Latency is measured from each request's intended send
// time, so a slow server's queueing delay counts against it (no
// coordinated omission). It returns how many operations were due before end
// but not sent because the worker fell behind.
func (w *worker) openLoop(ctx context.Context, first, end time.Time, interval time.Duration) (missed int64) {
	cmds := make([]core.Command, w.cfg.Batch)
	next := first
	// One timer for the whole run, reset for each wait: a timer per
	// request was an allocation and a timer-heap insertion per operation.
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for next.Before(end) {
		now := time.Now()
		if !now.Before(end) || ctx.Err() != nil {
			break
		}
		if d := next.Sub(now); d > 0 {
			t.Reset(d) // (since Go 1.23 Reset also drains a stale fire)
			select {
			case <-t.C:
			case <-ctx.Done():
				return 0
			}
		}
		read := w.gen.Batch(cmds)
		w.send(ctx, cmds, read, next)
		next = next.Add(interval)
	}
	if ctx.Err() != nil {
		return 0
	}
	return missedOps(next, end, interval, w.cfg.Batch)
}

// load writes every key once, in batches of up to 100, over at most 16
// connections.
func load(ctx context.Context, cfg Config, conns []Conn) error {
	const batch = 100
	n := min(len(conns), 16)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := NewGenerator(Mix{}, Uniform{N: 1}, cfg.ValueSize, cfg.Seed+uint64(w)+7)
			cmds := make([]core.Command, 0, batch)
			flush := func() error {
				if len(cmds) == 0 {
					return nil
				}
				rctx, cancel := context.WithTimeout(ctx, cfg.Timeout*10)
				failed, err := conns[w].Do(rctx, cmds)
				cancel()
				if err != nil {
					return fmt.Errorf("bench: load: %w", err)
				}
				if failed > 0 {
					return fmt.Errorf("bench: load: %d of %d writes failed", failed, len(cmds))
				}
				cmds = cmds[:0]
				return nil
			}
			for k := w; k < cfg.Keys; k += n {
				cmds = append(cmds, core.Command{Name: "SET", Args: [][]byte{Key(k), g.Value()}})
				if len(cmds) == batch {
					if errs[w] = flush(); errs[w] != nil {
						return
					}
				}
			}
			errs[w] = flush()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
