package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
)

func TestParseMix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		read int
		ok   bool
	}{
		{"read-only", 100, true}, {"95/5", 95, true}, {"70/30", 70, true}, {"50/50", 50, true},
		{"write-only", 0, true}, {"0/100", 0, true},
		{"70/20", 0, false}, {"x/y", 0, false}, {"", 0, false}, {"-10/110", 0, false},
	} {
		m, err := ParseMix(tc.in)
		if (err == nil) != tc.ok || (tc.ok && m.ReadPct != tc.read) {
			t.Errorf("ParseMix(%q) = %+v, %v; want read %d ok %v", tc.in, m, err, tc.read, tc.ok)
		}
	}
}

func TestKey(t *testing.T) {
	if got := string(Key(42)); got != "bench:0000000042" {
		t.Errorf("Key(42) = %q", got)
	}
	if len(Key(0)) != len(Key(9_999_999_999)) {
		t.Errorf("keys differ in size")
	}
}

// BatchReuse makes Batch's commands (same seed, same draws), with keys of
// any width, and allocates nothing once its commands have had storage.
func TestBatchReuse(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mix   int
		keys  int
		batch int
	}{
		{"70/30, batches of 100", 70, 100000, 100},
		{"reads, single", 100, 10, 1},
		{"writes, batches of 7", 0, 1000, 7},
		{"50/50, keys wider than 10 digits", 50, 1 << 40, 5},
	} {
		a := NewGenerator(Mix{ReadPct: tc.mix}, Uniform{N: tc.keys}, 100, 5)
		b := NewGenerator(Mix{ReadPct: tc.mix}, Uniform{N: tc.keys}, 100, 5)
		want, got := make([]core.Command, tc.batch), make([]core.Command, tc.batch)
		for i := range 200 {
			wr, gr := a.Batch(want), b.BatchReuse(got)
			if wr != gr {
				t.Fatalf("%s: batch %d: read %v, want %v", tc.name, i, gr, wr)
			}
			for j := range want {
				if want[j].String() != got[j].String() {
					t.Fatalf("%s: batch %d command %d: %v, want %v", tc.name, i, j, got[j], want[j])
				}
			}
		}
		if allocs := testing.AllocsPerRun(50, func() { b.BatchReuse(got) }); allocs != 0 {
			t.Errorf("%s: BatchReuse: %.1f allocations a batch, want 0", tc.name, allocs)
		}
	}
}

// The zipfian chooser must be skewed as Zipf's law says: the most popular
// rank is drawn with probability 1/zeta(n), and the top 1% of ranks take
// far more than 1% of draws; scrambled indexes stay in range.
func TestZipfian(t *testing.T) {
	const n, draws = 1000, 200000
	z, err := NewZipfian(n, 0.99, false)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	hist := make([]int, n)
	for range draws {
		hist[z.Rank(r)]++
	}
	p0 := float64(hist[0]) / draws
	want := 1 / zeta(n, 0.99)
	if math.Abs(p0-want) > 0.1*want {
		t.Errorf("P(rank 0) = %.4f, want %.4f ± 10%%", p0, want)
	}
	top := 0
	for _, c := range hist[:n/100] {
		top += c
	}
	if frac := float64(top) / draws; frac < 0.3 {
		t.Errorf("top 1%% of ranks got %.2f of draws, want a zipfian skew (> 0.3)", frac)
	}
	if hist[1] <= hist[10] || hist[10] <= hist[500] {
		t.Errorf("popularity not decreasing: rank1 %d rank10 %d rank500 %d", hist[1], hist[10], hist[500])
	}

	zs, _ := NewZipfian(n, 0.99, true)
	seen := map[int]int{}
	for range draws {
		k := zs.Next(r)
		if k < 0 || k >= n {
			t.Fatalf("scrambled key %d out of [0, %d)", k, n)
		}
		seen[k]++
	}
	// Scrambling moves the hottest key away from index 0.
	hottest, hc := 0, 0
	for k, c := range seen {
		if c > hc {
			hottest, hc = k, c
		}
	}
	if hottest == 0 || float64(hc)/draws < 0.5*want {
		t.Errorf("scrambled: hottest key %d with %d draws", hottest, hc)
	}
	if _, err := NewZipfian(0, 0.99, true); err == nil {
		t.Error("NewZipfian(0) succeeded")
	}
	if _, err := NewKeyChooser("pareto", 10); err == nil {
		t.Error("NewKeyChooser(pareto) succeeded")
	}
}

func TestGeneratorMix(t *testing.T) {
	for _, pct := range []int{100, 95, 70, 50, 0} {
		g := NewGenerator(Mix{ReadPct: pct}, Uniform{N: 10}, 100, 3)
		reads := 0
		const draws = 20000
		cmds := make([]core.Command, 1)
		for range draws {
			if g.Batch(cmds) {
				reads++
				if cmds[0].Name != "GET" || len(cmds[0].Args) != 1 {
					t.Fatalf("read batch holds %v", cmds[0])
				}
			} else if cmds[0].Name != "SET" || len(cmds[0].Args[1]) != 100 {
				t.Fatalf("write batch holds %s with a %d-byte value", cmds[0].Name, len(cmds[0].Args[1]))
			}
		}
		if got := 100 * float64(reads) / draws; math.Abs(got-float64(pct)) > 1.5 {
			t.Errorf("mix %d%%: %.1f%% reads", pct, got)
		}
	}
	// Same seed, same commands.
	a, b := NewGenerator(Mix{ReadPct: 50}, Uniform{N: 1000}, 8, 9), NewGenerator(Mix{ReadPct: 50}, Uniform{N: 1000}, 8, 9)
	for range 100 {
		if x, y := a.Write(), b.Write(); x.String() != y.String() {
			t.Fatalf("same seed, different commands: %v vs %v", x, y)
		}
	}
}

func TestLatencyStats(t *testing.T) {
	h := newHist()
	for i := 1; i <= 1000; i++ {
		h.RecordValue(int64(i) * 10) // 10 µs .. 10 ms
	}
	s := latencyStats(h, 1000, 1000, 2*time.Second)
	near := func(got, want float64) bool { return math.Abs(got-want) <= want*0.01 }
	if !near(s.P50Ms, 5) || !near(s.P99Ms, 9.9) || !near(s.P999Ms, 9.99) || !near(s.MaxMs, 10) || s.OpsPerSec != 500 {
		t.Errorf("stats = %+v", s)
	}
	if micros(0) != histMin || micros(time.Hour) != histMax {
		t.Error("micros does not clamp")
	}
}

// fakeConn is a server that takes delay per request and answers every
// command; every failEvery-th request fails whole (0: never).
type fakeConn struct {
	delay     time.Duration
	failEvery int64
	n         *atomic.Int64
	gets      *atomic.Int64
	sets      *atomic.Int64
	mu        sync.Mutex
	closed    bool
}

func (f *fakeConn) Do(ctx context.Context, cmds []core.Command) (int, error) {
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if i := f.n.Add(1); f.failEvery > 0 && i%f.failEvery == 0 {
		return 0, errors.New("fake: connection reset")
	}
	for _, c := range cmds {
		switch c.Name {
		case "GET":
			f.gets.Add(1)
		case "SET":
			f.sets.Add(1)
		}
	}
	return 0, nil
}

func (f *fakeConn) Close() error { f.mu.Lock(); f.closed = true; f.mu.Unlock(); return nil }

type fakeServer struct {
	delay     time.Duration
	failEvery int64
	n, gs, ss atomic.Int64
	mu        sync.Mutex
	conns     []*fakeConn
}

func (s *fakeServer) connect(context.Context) (Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &fakeConn{delay: s.delay, failEvery: s.failEvery, n: &s.n, gets: &s.gs, sets: &s.ss}
	s.conns = append(s.conns, c)
	return c, nil
}

func baseConfig() Config {
	return Config{Workload: "70/30", Keys: 1000, Dist: "uniform", ValueSize: 16, Clients: 4, Batch: 1,
		Duration: 300 * time.Millisecond, Timeout: time.Second, Seed: 1, Progress: 100 * time.Millisecond}
}

// Every command the fake server saw is counted once, on the right side.
func TestRunClosedLoopCounts(t *testing.T) {
	srv := &fakeServer{delay: 200 * time.Microsecond}
	cfg := baseConfig()
	cfg.Load = true
	var progress bytes.Buffer
	res, err := Run(context.Background(), cfg, srv.connect, &progress)
	if err != nil {
		t.Fatal(err)
	}
	loadSets := int64(cfg.Keys)
	if res.Reads.Ops != srv.gs.Load() || res.Writes.Ops != srv.ss.Load()-loadSets {
		t.Errorf("counted %d reads / %d writes; the server saw %d GETs and %d SETs (%d of them loading)",
			res.Reads.Ops, res.Writes.Ops, srv.gs.Load(), srv.ss.Load(), loadSets)
	}
	if res.Ops == 0 || res.Errors != 0 || res.Mode != "closed-loop" {
		t.Errorf("result %+v", res)
	}
	// Binomial: 4 standard deviations around 0.7 for this many operations
	// (a slow machine runs few).
	if frac, tol := float64(res.Reads.Ops)/float64(res.Ops), 4*math.Sqrt(0.21/float64(res.Ops)); math.Abs(frac-0.7) > tol {
		t.Errorf("read fraction %.3f of %d ops, want 0.70 ± %.3f", frac, res.Ops, tol)
	}
	// Latency can't be below the server's delay.
	if res.Reads.P50Ms < 0.2 {
		t.Errorf("read p50 %.3f ms below the fake server's 0.2 ms", res.Reads.P50Ms)
	}
	if !strings.Contains(progress.String(), "ops/s") || len(res.Intervals) < 2 {
		t.Errorf("progress %q, %d intervals", progress.String(), len(res.Intervals))
	}
	for _, c := range srv.conns {
		if !c.closed {
			t.Error("a connection was left open")
		}
	}
	// The JSON form carries the figures experiments read.
	b, _ := json.Marshal(res)
	for _, field := range []string{`"ops_per_sec"`, `"p99_ms"`, `"p999_ms"`, `"reads"`, `"writes"`, `"workload":"70/30"`} {
		if !bytes.Contains(b, []byte(field)) {
			t.Errorf("JSON lacks %s: %s", field, b)
		}
	}
}

func TestRunBatchesAndErrors(t *testing.T) {
	srv := &fakeServer{failEvery: 10}
	cfg := baseConfig()
	cfg.Batch = 10
	cfg.Workload = "50/50"
	res, err := Run(context.Background(), cfg, srv.connect, nil)
	if err != nil {
		t.Fatal(err)
	}
	reqs := res.Reads.Requests + res.Writes.Requests
	if res.Ops != 10*reqs {
		t.Errorf("%d ops in %d requests of 10", res.Ops, reqs)
	}
	// One request in ten fails whole: its 10 commands are errors.
	if want := srv.n.Load() / 10 * 10; res.Errors != want {
		t.Errorf("errors %d, want %d", res.Errors, want)
	}
	if res.LatencyPer != "batch of 10" {
		t.Errorf("latency per %q", res.LatencyPer)
	}
}

// Open loop sends at the target rate, and when the server is slower than
// the schedule, latency is charged from the intended send time: the queue
// shows in p99, unlike in closed loop (no coordinated omission).
func TestRunOpenLoop(t *testing.T) {
	srv := &fakeServer{}
	cfg := baseConfig()
	cfg.Rate = 2000
	cfg.Duration = 500 * time.Millisecond
	res, err := Run(context.Background(), cfg, srv.connect, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 1000 operations are due; a busy machine may leave many unsent
	// (see TestEventLoop/open): every due operation must be counted,
	// sent or missed, and the loop must send.
	if due := res.Ops + res.Missed; due < 950 || due > 1010 || res.Ops < 100 {
		t.Errorf("open loop at 2000 ops/s for 0.5 s: %d sent + %d missed, want ~1000 due", res.Ops, res.Missed)
	}

	slow := &fakeServer{delay: 10 * time.Millisecond}
	cfg = baseConfig()
	cfg.Clients = 1
	cfg.Duration = 400 * time.Millisecond
	closed, err := Run(context.Background(), cfg, slow.connect, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rate = 200 // one request per 5 ms on a server that takes 10 ms
	open, err := Run(context.Background(), cfg, slow.connect, nil)
	if err != nil {
		t.Fatal(err)
	}
	closedP50 := math.Max(closed.Reads.P50Ms, closed.Writes.P50Ms)
	if closedP50 < 10 {
		t.Errorf("closed loop p50 %.1f ms below the server's 10 ms", closedP50)
	}
	// Behind schedule by 5 ms per request, the last requests of 0.4 s wait
	// ~200 ms: a measurement from the actual send time would see ~10 ms.
	worst := math.Max(open.Reads.MaxMs, open.Writes.MaxMs)
	if worst < 100 || worst < 4*closedP50 {
		t.Errorf("open loop on an overloaded server: max latency %.1f ms (closed-loop p50 %.1f ms), want the queueing delay (> 100 ms)", worst, closedP50)
	}
	if open.Missed == 0 {
		t.Errorf("open loop on an overloaded server missed no operation")
	}
}

func TestRunCancel(t *testing.T) {
	srv := &fakeServer{delay: time.Millisecond}
	cfg := baseConfig()
	cfg.Duration = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	res, err := Run(ctx, cfg, srv.connect, nil)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(t0) > 5*time.Second || res.Ops == 0 {
		t.Errorf("cancelled run took %v with %d ops", time.Since(t0), res.Ops)
	}
}

func TestValidateAndFlags(t *testing.T) {
	var stderr bytes.Buffer
	for _, args := range [][]string{
		{"--workload", "60/30"}, {"--clients", "0"}, {"--batch", "0"}, {"--duration", "0s"},
		{"--dist", "normal"}, {"--keys", "0"}, {"--rate", "-1"}, {"--value-size", "-1"}, {"extra"},
		{"--io", "threads"}, {"--io", "loop", "--via-client"},
	} {
		if _, _, err := parseFlags(args, &stderr); err == nil {
			t.Errorf("flags %q accepted", args)
		}
	}
	if code := Main([]string{"--help"}, &stderr, &stderr); code != 0 || !strings.Contains(stderr.String(), "Usage: dialkv bench") {
		t.Errorf("--help: exit %d, %q", code, stderr.String())
	}
}

// Many connections share a bounded number of histogram shards, and every
// operation is still counted once.
func TestRunManyClients(t *testing.T) {
	srv := &fakeServer{delay: time.Millisecond}
	cfg := baseConfig()
	cfg.Clients = 3 * maxStatShards
	cfg.Duration = 200 * time.Millisecond
	res, err := Run(context.Background(), cfg, srv.connect, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.gs.Load() + srv.ss.Load(); res.Ops != got || res.Ops == 0 {
		t.Errorf("counted %d ops; the server saw %d", res.Ops, got)
	}
	if len(srv.conns) != cfg.Clients {
		t.Errorf("%d connections, want %d", len(srv.conns), cfg.Clients)
	}
}
