package client

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// Option configures a Client.
type Option func(*config)

type config struct {
	protocol    transport.Protocol
	maxFrame    int
	maxIdle     int
	timeout     time.Duration
	dialTimeout time.Duration
	retries     int
	backoffBase time.Duration
	backoffMax  time.Duration
	namespace   string
	clientID    string
	rec         *checker.Recorder
	recClient   int
	recStart    time.Time
	tls         *tls.Config
	login       *transport.Credentials

	breakerFailures int
	breakerCoolDown time.Duration
	breakerWindow   time.Duration
	slowFactor      float64
	slowProbe       time.Duration
	clock           func() time.Time

	hotInterval time.Duration
}

func defaults() config {
	return config{
		protocol:    transport.Binary,
		maxIdle:     16,
		timeout:     5 * time.Second,
		dialTimeout: 2 * time.Second,
		retries:     5,
		backoffBase: 10 * time.Millisecond,
		backoffMax:  time.Second,

		breakerFailures: DefaultBreakerFailures,
		breakerCoolDown: DefaultBreakerCoolDown,
		breakerWindow:   DefaultBreakerWindow,
		slowFactor:      DefaultSlowFactor,
		slowProbe:       DefaultSlowProbe,
	}
}

// WithProtocol selects "binary" (default) or "compact"; it must match the
// node's --protocol.
func WithProtocol(p string) Option {
	return func(c *config) { c.protocol = transport.Protocol(p) }
}

// WithMaxFrame bounds the frames sent and accepted (default 16 MiB).
func WithMaxFrame(n int) Option { return func(c *config) { c.maxFrame = n } }

// WithPoolSize sets how many idle connections are kept per node (default 16).
// Connections in use are not limited: each concurrent call holds one.
func WithPoolSize(n int) Option { return func(c *config) { c.maxIdle = n } }

// WithTimeout sets the deadline used when a call's context has none
// (default 5 s).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithDialTimeout bounds connecting (default 2 s).
func WithDialTimeout(d time.Duration) Option { return func(c *config) { c.dialTimeout = d } }

// WithRetries sets the number of retries after the first attempt (default 5;
// 0 disables retrying) and the backoff: attempt n waits a uniformly random
// time in [0, min(max, base*2^n)] ("full jitter").
func WithRetries(n int, base, max time.Duration) Option {
	return func(c *config) { c.retries, c.backoffBase, c.backoffMax = n, base, max }
}

// WithTLS connects over TLS with cfg (security.ClientConfig builds one
// from PEM files; a client certificate in it authenticates the client on
// nodes started with --tls-ca).
func WithTLS(cfg *tls.Config) Option { return func(c *config) { c.tls = cfg } }

// WithPassword logs every new connection in as user with password (nodes
// started with --auth-file). The password is checked once per connection.
func WithPassword(user, password string) Option {
	return func(c *config) { c.login = &transport.Credentials{User: user, Secret: password} }
}

// WithToken logs every new connection in with a bearer token (nodes
// started with --auth-file).
func WithToken(token string) Option {
	return func(c *config) { c.login = &transport.Credentials{Secret: token} }
}

// WithCircuitBreaker sets the per-node circuit breakers: after failures
// consecutive connection failures or timeouts on a node (within the breaker
// window, default 10 s) its breaker opens and the client skips the node —
// it tries the other addresses, or fails fast with a NODEDOWN error
// (ErrNodeDown) naming the node and when it will be retried — until
// coolDown has passed; then one probe request goes to it (half-open), and
// an answer closes the breaker while a failure opens it for another
// cool-down. failures 0 disables the breakers. Default: 5 failures, 1 s.
func WithCircuitBreaker(failures int, coolDown time.Duration) Option {
	return func(c *config) { c.breakerFailures, c.breakerCoolDown = failures, coolDown }
}

// WithBreakerWindow sets how close together the consecutive failures that
// open a breaker must be (default 10 s): a failure more than window after
// the first of the run starts a new run.
func WithBreakerWindow(window time.Duration) Option {
	return func(c *config) { c.breakerWindow = window }
}

// WithSlowNodeRouting sets how the client picks the node of a request any
// node can serve (namespaces of the quorum and causal strategies, raft
// stale reads; the client learns strategies from the namespace list): it
// keeps an EWMA of each node's answer time and picks the faster of two
// random nodes (power of two choices); a node slower than factor times the
// median is sent only one probe request every probe. Other requests, and
// all of them with factor 0, stick to one node until it fails. Default: 4,
// 1 s.
func WithSlowNodeRouting(factor float64, probe time.Duration) Option {
	return func(c *config) { c.slowFactor, c.slowProbe = factor, probe }
}

// WithHotKeySpreading turns on hot-key read spreading: every interval the
// client asks each node for its HOTKEYS and counts as hot the keys some
// node guarantees at least HotMinCount sampled requests (RefreshHotKeys
// refreshes at once). A read-only single-command call (GET, SMEMBERS, ...;
// not pipelines or transactions) on a hot key whose request any node may
// serve — quorum and causal namespaces, raft reads with ReadMode("stale") —
// goes to the client's nodes in turn (round-robin over every address: the
// client does not know a key's replicas; a quorum node that is not one
// coordinates the read from the replicas, a raft node without the shard
// redirects) instead of the sticky or latency-preferred node. Raft
// linearizable and lease reads stay at the shard's leader. interval <= 0
// (the default) leaves it off.
func WithHotKeySpreading(interval time.Duration) Option {
	return func(c *config) { c.hotInterval = interval }
}

// WithClock replaces the clock of the breakers and the latency averages
// (default time.Now); for tests.
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

// WithNamespace sets the default namespace (default "default").
func WithNamespace(ns string) Option { return func(c *config) { c.namespace = ns } }

// WithClientID names the client in node logs and session state.
func WithClientID(id string) Option { return func(c *config) { c.clientID = id } }

// WithRecorder records the operations of the convenience methods (Get, Set,
// Del, CAS, Incr, SAdd, SRem, SMembers) into rec, in the checker's history
// format; client is the history's client number of the default session
// (sessions made by NewSession take client+1, client+2, ...), and times are
// nanoseconds since start.
func WithRecorder(rec *checker.Recorder, client int, start time.Time) Option {
	return func(c *config) { c.rec, c.recClient, c.recStart = rec, client, start }
}

// CallOption is a per-operation option; attach them to a context with With.
type CallOption func(*callOpts)

type callOpts struct {
	ns         string
	readMode   string
	r, w       int32
	strict     bool
	mode       string
	idempotent bool
	noRetry    bool
}

type ctxKey struct{}

// With returns ctx carrying per-operation options for the calls made with it.
func With(ctx context.Context, opts ...CallOption) context.Context {
	var co callOpts
	if prev, ok := ctx.Value(ctxKey{}).(*callOpts); ok {
		co = *prev
	}
	for _, o := range opts {
		o(&co)
	}
	return context.WithValue(ctx, ctxKey{}, &co)
}

func optsFrom(ctx context.Context) callOpts {
	if co, ok := ctx.Value(ctxKey{}).(*callOpts); ok {
		return *co
	}
	return callOpts{}
}

// Namespace sends the operation to namespace ns.
func Namespace(ns string) CallOption { return func(o *callOpts) { o.ns = ns } }

// ReadMode sets the raft read mode: "linearizable", "lease" or "stale".
func ReadMode(m string) CallOption { return func(o *callOpts) { o.readMode = m } }

// R sets the quorum read size.
func R(n int) CallOption { return func(o *callOpts) { o.r = int32(n) } }

// W sets the quorum write size.
func W(n int) CallOption { return func(o *callOpts) { o.w = int32(n) } }

// Strict forbids sloppy quorum.
func Strict() CallOption { return func(o *callOpts) { o.strict = true } }

// Mode sets the quorum mode ("linearizable" for ABD).
func Mode(m string) CallOption { return func(o *callOpts) { o.mode = m } }

// Idempotent declares the operation safe to repeat, so that it is retried
// even when its outcome is unknown.
func Idempotent() CallOption { return func(o *callOpts) { o.idempotent = true } }

// NoRetry disables retries for the operation.
func NoRetry() CallOption { return func(o *callOpts) { o.noRetry = true } }

// wire builds the RequestOptions of a call.
func (s *Session) wire(co callOpts, budget time.Duration) *gen.RequestOptions {
	o := &gen.RequestOptions{}
	ns := co.ns
	if ns == "" {
		ns = s.c.cfg.namespace
	}
	if ns != "" {
		o.Ns = &ns
	}
	if co.readMode != "" {
		m := co.readMode
		o.ReadMode = &m
	}
	if co.r != 0 {
		r := co.r
		o.R = &r
	}
	if co.w != 0 {
		w := co.w
		o.W = &w
	}
	if co.strict {
		t := true
		o.Strict = &t
	}
	if co.mode != "" {
		m := co.mode
		o.Mode = &m
	}
	if tok := s.Token(); tok != nil {
		o.Token = tok
	}
	if budget > 0 {
		ms := max(budget.Milliseconds(), 1)
		o.DeadlineMs = &ms
	}
	if s.id != "" {
		id := s.id
		o.ClientID = &id
	}
	return o
}
