package client

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// BreakerState is the state of a node's circuit breaker.
type BreakerState string

// Circuit breaker states.
const (
	// BreakerClosed: the node is used normally.
	BreakerClosed BreakerState = "closed"
	// BreakerOpen: the node failed too often; it is skipped until RetryAt.
	BreakerOpen BreakerState = "open"
	// BreakerHalfOpen: the cool-down is over and one probe request is on
	// its way; its outcome closes or reopens the breaker.
	BreakerHalfOpen BreakerState = "half-open"
)

// Defaults of the failure handling options.
const (
	DefaultBreakerFailures = 5
	DefaultBreakerCoolDown = time.Second
	DefaultBreakerWindow   = 10 * time.Second
	DefaultSlowFactor      = 4.0
	DefaultSlowProbe       = time.Second
	// slowFloor: a node is slow only if it is also this much slower than
	// the median (sub-millisecond differences are noise).
	slowFloor = time.Millisecond
	// ewmaAlpha is the weight of a new latency sample in a node's EWMA.
	ewmaAlpha = 0.3
)

// NodeStats is what the client knows about one node.
type NodeStats struct {
	Addr string
	// Breaker is the node's circuit breaker state.
	Breaker BreakerState
	// Failures is the count of consecutive connection failures and
	// timeouts (within the breaker window).
	Failures int
	// Trips counts how many times the breaker opened.
	Trips int
	// RetryAt: while open, when the node will be tried again.
	RetryAt time.Time
	// Latency is the exponentially weighted moving average of the node's
	// answer times (0 until the first answer); Samples counts them.
	Latency time.Duration
	Samples int64
	// Slow: the node's latency is more than the slow factor times the
	// median of the nodes, so it gets only probe requests.
	Slow bool
}

// Stats is a snapshot of the client's view of its nodes.
type Stats struct {
	Nodes []NodeStats
}

// Trips is the total number of breaker trips over all nodes.
func (s Stats) Trips() int {
	n := 0
	for _, ns := range s.Nodes {
		n += ns.Trips
	}
	return n
}

// nodeHealth is the breaker and latency record of one node.
type nodeHealth struct {
	state     BreakerState
	failures  int
	firstFail time.Time
	trips     int
	retryAt   time.Time
	probeAt   time.Time // half-open: when the probe was let through
	ewma      float64   // nanoseconds
	samples   int64
	lastUsed  time.Time
}

// health tracks every node the client talks to. Its decisions take the
// time from the client's clock and randomness from its own source, so
// tests can drive them.
type health struct {
	failures   int // 0: breakers disabled
	coolDown   time.Duration
	window     time.Duration
	slowFactor float64 // 0: no slow-node routing
	slowProbe  time.Duration
	now        func() time.Time

	mu    sync.Mutex
	nodes map[string]*nodeHealth
	rng   *rand.Rand
}

func newHealth(cfg config) *health {
	now := cfg.clock
	if now == nil {
		now = time.Now
	}
	return &health{
		failures:   cfg.breakerFailures,
		coolDown:   cfg.breakerCoolDown,
		window:     cfg.breakerWindow,
		slowFactor: cfg.slowFactor,
		slowProbe:  cfg.slowProbe,
		now:        now,
		nodes:      map[string]*nodeHealth{},
		rng:        rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

func (h *health) node(addr string) *nodeHealth {
	n := h.nodes[addr]
	if n == nil {
		n = &nodeHealth{state: BreakerClosed}
		h.nodes[addr] = n
	}
	return n
}

// allowLocked says whether a request may go to n now; it moves an open
// breaker whose cool-down is over to half-open and lets this request
// through as its probe. A half-open breaker whose probe got no outcome for
// a whole cool-down lets another probe through.
func (h *health) allowLocked(n *nodeHealth, now time.Time) bool {
	switch n.state {
	case BreakerOpen:
		if now.Before(n.retryAt) {
			return false
		}
		n.state, n.probeAt = BreakerHalfOpen, now
		return true
	case BreakerHalfOpen:
		if now.Sub(n.probeAt) < h.coolDown {
			return false
		}
		n.probeAt = now
		return true
	}
	return true
}

// usable reports, without changing anything, whether addr would accept a
// request now (closed, or open with its cool-down over).
func (h *health) usableLocked(addr string, now time.Time) bool {
	n := h.nodes[addr]
	if n == nil || h.failures <= 0 {
		return true
	}
	switch n.state {
	case BreakerOpen:
		return !now.Before(n.retryAt)
	case BreakerHalfOpen:
		return now.Sub(n.probeAt) >= h.coolDown
	}
	return true
}

// acquire is called before a request goes to addr. When the node's breaker
// refuses it, the error says the node is marked down and when it will be
// retried.
func (h *health) acquire(addr string) *Error {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	n := h.node(addr)
	n.lastUsed = now
	if h.failures <= 0 || h.allowLocked(n, now) {
		return nil
	}
	at := n.retryAt
	if n.state == BreakerHalfOpen {
		at = n.probeAt.Add(h.coolDown)
	}
	return &Error{
		Code:       CodeNodeDown,
		Msg:        fmt.Sprintf("node %s is marked down (%s breaker after %d consecutive failures); retried after %s", addr, n.state, n.failures, at.UTC().Format(time.RFC3339Nano)),
		Addr:       addr,
		RetryAfter: max(at.Sub(now), 0),
	}
}

// answered records that addr answered (successfully or with a typed
// error) after latency: it closes the breaker and feeds the EWMA (a
// negative latency: no sample).
func (h *health) answered(addr string, latency time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.node(addr)
	n.state, n.failures = BreakerClosed, 0
	if latency < 0 {
		return
	}
	x := float64(max(latency, 0))
	if n.samples == 0 {
		n.ewma = x
	} else {
		n.ewma += ewmaAlpha * (x - n.ewma)
	}
	n.samples++
}

// failed records a connection failure or timeout on addr.
func (h *health) failed(addr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failures <= 0 {
		return
	}
	now := h.now()
	n := h.node(addr)
	switch n.state {
	case BreakerHalfOpen:
		// The probe failed: open again for another cool-down.
		n.failures++
		n.state, n.retryAt = BreakerOpen, now.Add(h.coolDown)
		n.trips++
		return
	case BreakerOpen:
		// A request sent before the breaker opened.
		n.failures++
		return
	}
	if n.failures == 0 || now.Sub(n.firstFail) > h.window {
		n.failures, n.firstFail = 0, now
	}
	n.failures++
	if n.failures >= h.failures {
		n.state, n.retryAt = BreakerOpen, now.Add(h.coolDown)
		n.trips++
	}
}

// slowLocked reports which of addrs are slow: latency above slowFactor
// times the median of the nodes with samples.
func (h *health) slowLocked(addrs []string) map[string]bool {
	if h.slowFactor <= 0 || len(addrs) < 2 {
		return nil
	}
	var lat []float64
	for _, a := range addrs {
		if n := h.nodes[a]; n != nil && n.samples > 0 {
			lat = append(lat, n.ewma)
		}
	}
	if len(lat) < 2 {
		return nil
	}
	slices.Sort(lat)
	med := lat[len(lat)/2]
	if len(lat)%2 == 0 {
		med = (lat[len(lat)/2-1] + lat[len(lat)/2]) / 2
	}
	var slow map[string]bool
	for _, a := range addrs {
		if n := h.nodes[a]; n != nil && n.samples > 0 && n.ewma > h.slowFactor*med && n.ewma-med > float64(slowFloor) {
			if slow == nil {
				slow = map[string]bool{}
			}
			slow[a] = true
		}
	}
	return slow
}

// pick chooses the node for a request any node can serve, avoiding avoid
// (the node that just failed; "" none): among the nodes whose breaker lets
// requests through, a slow node whose last request is older than the probe
// interval is probed (so is any node not used for that long, to keep its
// average fresh); otherwise two nodes that are not slow are drawn at
// random and the one with the lower latency EWMA wins (power of two
// choices; a node without samples counts as fastest, so it gets measured).
// With slow-node routing disabled, or spread false (a namespace whose
// nodes do not share data), it keeps preferred (the client's sticky choice)
// unless it is unusable. ok is false when every node's breaker is
// open.
func (h *health) pick(addrs []string, preferred int, avoid string, spread bool) (addr string, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	var up []string
	for _, a := range addrs {
		if h.usableLocked(a, now) {
			up = append(up, a)
		}
	}
	if len(up) == 0 {
		return "", false
	}
	if len(up) > 1 && avoid != "" {
		if i := slices.Index(up, avoid); i >= 0 {
			up = slices.Delete(slices.Clone(up), i, i+1)
		}
	}
	if h.slowFactor <= 0 || !spread {
		for i := range addrs {
			a := addrs[(preferred+i)%len(addrs)]
			if slices.Contains(up, a) {
				return a, true
			}
		}
		return up[0], true
	}
	slow := h.slowLocked(up)
	var fast []string
	for _, a := range up {
		if n := h.nodes[a]; n == nil || now.Sub(n.lastUsed) >= h.slowProbe {
			return a, true // probe: its average is stale (or it is slow)
		}
		if !slow[a] {
			fast = append(fast, a)
		}
	}
	if len(fast) == 0 {
		fast = up
	}
	if len(fast) == 1 {
		return fast[0], true
	}
	i := h.rng.IntN(len(fast))
	j := h.rng.IntN(len(fast) - 1)
	if j >= i {
		j++
	}
	a, b := fast[i], fast[j]
	if h.latencyLocked(b) < h.latencyLocked(a) {
		a = b
	}
	return a, true
}

func (h *health) latencyLocked(addr string) float64 {
	if n := h.nodes[addr]; n != nil && n.samples > 0 {
		return n.ewma
	}
	return 0
}

// stats snapshots the nodes of addrs (and any other node seen).
func (h *health) stats(addrs []string) Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	all := append([]string(nil), addrs...)
	for _, a := range addrs {
		seen[a] = true
	}
	var extra []string
	for a := range h.nodes {
		if !seen[a] {
			extra = append(extra, a)
		}
	}
	slices.Sort(extra)
	all = append(all, extra...)
	slow := h.slowLocked(all)
	var s Stats
	for _, a := range all {
		ns := NodeStats{Addr: a, Breaker: BreakerClosed, Slow: slow[a]}
		if n := h.nodes[a]; n != nil {
			ns.Breaker, ns.Failures, ns.Trips = n.state, n.failures, n.trips
			if n.state != BreakerClosed {
				ns.RetryAt = n.retryAt
			}
			ns.Latency, ns.Samples = time.Duration(n.ewma), n.samples
		}
		s.Nodes = append(s.Nodes, ns)
	}
	return s
}
