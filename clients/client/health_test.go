package client

import (
	"testing"
	"time"
)

// fakeClock is a settable clock for the breaker tests.
type fakeClock struct{ t time.Time }

func (f *fakeClock) now() time.Time          { return f.t }
func (f *fakeClock) advance(d time.Duration) { f.t = f.t.Add(d) }

// TestBreakerStateMachine drives one node's breaker through sequences of
// events and checks the state after each.
func TestBreakerStateMachine(t *testing.T) {
	type step struct {
		advance time.Duration
		event   string // "fail", "ok", "acquire" (expect allowed), "refused" (expect NODEDOWN)
		want    BreakerState
		trips   int
	}
	const cool = time.Second
	tests := []struct {
		name     string
		failures int
		steps    []step
	}{
		{"opens after N consecutive failures", 3, []step{
			{0, "fail", BreakerClosed, 0},
			{0, "fail", BreakerClosed, 0},
			{0, "fail", BreakerOpen, 1},
			{0, "refused", BreakerOpen, 1},
			{cool / 2, "refused", BreakerOpen, 1},
		}},
		{"a success resets the count", 3, []step{
			{0, "fail", BreakerClosed, 0},
			{0, "fail", BreakerClosed, 0},
			{0, "ok", BreakerClosed, 0},
			{0, "fail", BreakerClosed, 0},
			{0, "fail", BreakerClosed, 0},
			{0, "fail", BreakerOpen, 1},
		}},
		{"failures outside the window do not add up", 3, []step{
			{0, "fail", BreakerClosed, 0},
			{0, "fail", BreakerClosed, 0},
			{11 * time.Second, "fail", BreakerClosed, 0},
			{0, "fail", BreakerClosed, 0},
			{0, "fail", BreakerOpen, 1},
		}},
		{"half-open probe succeeds", 2, []step{
			{0, "fail", BreakerClosed, 0},
			{0, "fail", BreakerOpen, 1},
			{cool, "acquire", BreakerHalfOpen, 1},
			{0, "refused", BreakerHalfOpen, 1}, // one probe at a time
			{0, "ok", BreakerClosed, 1},
			{0, "acquire", BreakerClosed, 1},
		}},
		{"half-open probe fails: open for another cool-down", 2, []step{
			{0, "fail", BreakerClosed, 0},
			{0, "fail", BreakerOpen, 1},
			{cool, "acquire", BreakerHalfOpen, 1},
			{0, "fail", BreakerOpen, 2},
			{cool / 2, "refused", BreakerOpen, 2},
			{cool / 2, "acquire", BreakerHalfOpen, 2},
			{0, "ok", BreakerClosed, 2},
		}},
		{"a lost probe is replaced after a cool-down", 1, []step{
			{0, "fail", BreakerOpen, 1},
			{cool, "acquire", BreakerHalfOpen, 1},
			{cool / 2, "refused", BreakerHalfOpen, 1},
			{cool / 2, "acquire", BreakerHalfOpen, 1},
		}},
		{"late failures of requests already sent do not trip again", 1, []step{
			{0, "fail", BreakerOpen, 1},
			{0, "fail", BreakerOpen, 1},
			{0, "fail", BreakerOpen, 1},
		}},
		{"disabled", 0, []step{
			{0, "fail", BreakerClosed, 0},
			{0, "fail", BreakerClosed, 0},
			{0, "acquire", BreakerClosed, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1000, 0)}
			cfg := defaults()
			cfg.breakerFailures, cfg.breakerCoolDown, cfg.clock = tt.failures, cool, clk.now
			h := newHealth(cfg)
			const a = "n1:1"
			for i, s := range tt.steps {
				clk.advance(s.advance)
				switch s.event {
				case "fail":
					h.failed(a)
				case "ok":
					h.answered(a, time.Millisecond)
				case "acquire":
					if e := h.acquire(a); e != nil {
						t.Fatalf("step %d: acquire refused: %v", i, e)
					}
				case "refused":
					e := h.acquire(a)
					if e == nil || e.Code != CodeNodeDown || e.Addr != a || e.RetryAfter <= 0 {
						t.Fatalf("step %d: acquire = %v, want NODEDOWN for %s with a retry time", i, e, a)
					}
				}
				ns := h.stats([]string{a}).Nodes[0]
				if ns.Breaker != s.want || ns.Trips != s.trips {
					t.Fatalf("step %d (%s): state %s trips %d, want %s trips %d", i, s.event, ns.Breaker, ns.Trips, s.want, s.trips)
				}
			}
		})
	}
}

// TestPick: breakers and latencies steer the choice of node.
func TestPick(t *testing.T) {
	addrs := []string{"a", "b", "c"}
	ms := time.Millisecond
	tests := []struct {
		name    string
		latency map[string]time.Duration // EWMA samples (one each)
		open    []string                 // nodes whose breaker is open
		avoid   string
		want    map[string]bool // acceptable picks; nil: ok must be false
	}{
		{"no samples: any node", nil, nil, "", map[string]bool{"a": true, "b": true, "c": true}},
		{"open breakers are skipped", nil, []string{"a", "b"}, "", map[string]bool{"c": true}},
		{"every breaker open", nil, []string{"a", "b", "c"}, "", nil},
		{"avoid the node that just failed", nil, []string{"a"}, "b", map[string]bool{"c": true}},
		{"the slowest of three never wins two choices", map[string]time.Duration{"a": ms, "b": 2 * ms, "c": 3 * ms}, nil, "", map[string]bool{"a": true, "b": true}},
		{"a node 4x slower but by under a millisecond is not slow", map[string]time.Duration{"a": ms / 10, "b": ms / 10, "c": ms / 2}, nil, "", map[string]bool{"a": true, "b": true}},
		{"a slow node (> 4x median) is left out", map[string]time.Duration{"a": ms, "b": ms, "c": 50 * ms}, nil, "", map[string]bool{"a": true, "b": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1000, 0)}
			cfg := defaults()
			cfg.breakerFailures, cfg.clock = 1, clk.now
			h := newHealth(cfg)
			for a, l := range tt.latency {
				h.answered(a, l)
				h.acquire(a) // marks it used now: no probe due
			}
			for _, a := range tt.open {
				h.failed(a)
			}
			for range 200 {
				got, ok := h.pick(addrs, 0, tt.avoid, true)
				if tt.want == nil {
					if ok {
						t.Fatalf("pick = %q with every breaker open", got)
					}
					return
				}
				if !ok || !tt.want[got] {
					t.Fatalf("pick = %q, %v; want one of %v", got, ok, tt.want)
				}
			}
		})
	}
}

// TestSlowProbe: a slow node gets one probe per probe interval, and a
// fast answer brings it back.
func TestSlowProbe(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	cfg := defaults()
	cfg.clock = clk.now
	h := newHealth(cfg)
	addrs := []string{"a", "b", "c"}
	for _, a := range addrs {
		h.acquire(a)
	}
	h.answered("a", time.Millisecond)
	h.answered("b", time.Millisecond)
	h.answered("c", 100*time.Millisecond)
	if s := h.stats(addrs); !s.Nodes[2].Slow || s.Nodes[0].Slow {
		t.Fatalf("stats = %+v, want only c slow", s)
	}
	clk.advance(DefaultSlowProbe)
	h.acquire("a") // a and b are in use; only c's probe is due
	h.acquire("b")
	if got, _ := h.pick(addrs, 0, "", true); got != "c" {
		t.Fatalf("pick after the probe interval = %q, want the probe to c", got)
	}
	h.acquire("c")
	for range 50 {
		h.acquire("a")
		h.acquire("b")
		if got, _ := h.pick(addrs, 0, "", true); got == "c" {
			t.Fatal("slow node picked again before the next probe interval")
		}
	}
	for range 20 { // c recovers: its probes answer fast
		h.answered("c", time.Millisecond)
	}
	if s := h.stats(addrs); s.Nodes[2].Slow {
		t.Fatalf("c still slow after fast answers: %+v", s.Nodes[2])
	}
}

// BenchmarkHealth is the bookkeeping a call adds: pick a node, acquire
// its breaker, record the answer.
func BenchmarkHealth(b *testing.B) {
	for _, factor := range []float64{0, DefaultSlowFactor} {
		name := "sticky"
		if factor > 0 {
			name = "p2c"
		}
		b.Run(name, func(b *testing.B) {
			cfg := defaults()
			cfg.slowFactor = factor
			h := newHealth(cfg)
			addrs := []string{"a:1", "b:1", "c:1"}
			for i := 0; b.Loop(); i++ {
				a, _ := h.pick(addrs, 0, "", true)
				h.acquire(a)
				h.answered(a, time.Duration(100+i%50)*time.Microsecond)
			}
		})
	}
}
