package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// Client talks to dialkv nodes. It is safe for concurrent use; it embeds
// its default Session, so c.Get, c.Set, ... carry one session token.
type Client struct {
	*Session
	cfg      config
	addrs    []string
	prefer   atomic.Int64 // index into addrs of the node to try first
	sessions atomic.Int64

	routes routes  // where NotLeader/Moved answers sent requests
	health *health // circuit breakers and latency per node
	ns     nsCache // namespace strategies, for choosing nodes
	hot    *hotSet // hot keys (nil: WithHotKeySpreading is off)

	mu     sync.Mutex
	pools  map[string]*pool
	closed bool
}

// New returns a client for the nodes at addrs ("host:port"). It does not
// connect until the first call.
func New(addrs []string, opts ...Option) (*Client, error) {
	if len(addrs) == 0 {
		return nil, &Error{Code: CodeInvalid, Msg: "client: no node addresses"}
	}
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	if _, err := transport.ParseProtocol(string(cfg.protocol)); err != nil {
		return nil, &Error{Code: CodeInvalid, Msg: err.Error()}
	}
	c := &Client{cfg: cfg, addrs: append([]string(nil), addrs...), pools: map[string]*pool{}, health: newHealth(cfg)}
	c.Session = &Session{c: c, id: cfg.clientID, recClient: cfg.recClient}
	if cfg.hotInterval > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		c.hot = &hotSet{interval: cfg.hotInterval, ctx: ctx, cancel: cancel, done: make(chan struct{})}
		go c.refreshHotKeys()
	}
	return c, nil
}

// Close closes every pooled connection and stops the hot-key refresh.
// Calls in flight finish; later calls fail.
func (c *Client) Close() error {
	if c.hot != nil {
		// Stop the refresh before taking c.mu: it takes c.mu to get
		// connections.
		c.hot.cancel()
		<-c.hot.done
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, p := range c.pools {
		p.drain()
	}
	return nil
}

// NewSession returns a session sharing the client's connections but with
// its own session token (and, when recording, its own client number).
func (c *Client) NewSession(id string) *Session {
	n := int(c.sessions.Add(1))
	return &Session{c: c, id: id, recClient: c.cfg.recClient + n}
}

// Session is a sequence of operations that carries a session token: each
// response's token is sent with the next request, which is what gives
// read-your-writes and monotonic reads under the causal and quorum
// strategies. It is safe for concurrent use, but tokens only order the calls
// of one goroutine.
type Session struct {
	c         *Client
	id        string
	recClient int
	mu        sync.Mutex
	token     []byte
}

// Token returns the session's current token (nil before the first response
// that carried one).
func (s *Session) Token() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// SetToken replaces the session's token (to resume a session elsewhere).
func (s *Session) SetToken(t []byte) {
	s.mu.Lock()
	s.token = t
	s.mu.Unlock()
}

func (s *Session) observe(tok []byte) {
	if len(tok) == 0 {
		return
	}
	s.mu.Lock()
	s.token = tok
	s.mu.Unlock()
}

// ---------------------------------------------------------------- pool

// idleCheckAfter: a pooled connection idle longer than this is checked
// for liveness before use (the node may have closed it).
const idleCheckAfter = time.Second

type pooled struct {
	conn     *transport.Conn
	lastUsed time.Time
}

type pool struct {
	addr string
	idle chan pooled
}

func (p *pool) drain() {
	for {
		select {
		case pc := <-p.idle:
			pc.conn.Close()
		default:
			return
		}
	}
}

func (c *Client) pool(addr string) (*pool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, &Error{Code: CodeConnection, Msg: "client is closed"}
	}
	p := c.pools[addr]
	if p == nil {
		p = &pool{addr: addr, idle: make(chan pooled, max(c.cfg.maxIdle, 1))}
		c.pools[addr] = p
	}
	return p, nil
}

// get returns an idle connection to addr or dials one.
func (c *Client) get(ctx context.Context, addr string) (*transport.Conn, error) {
	return c.getBounded(func() context.Context { return ctx }, addr)
}

// getBounded is get within the context bounded returns, called only to
// dial (a call without a deadline of its own makes none on its hot path).
func (c *Client) getBounded(bounded func() context.Context, addr string) (*transport.Conn, error) {
	p, err := c.pool(addr)
	if err != nil {
		return nil, err
	}
	for {
		select {
		case pc := <-p.idle:
			if time.Since(pc.lastUsed) > idleCheckAfter && !pc.conn.Alive() {
				pc.conn.Close()
				continue
			}
			return pc.conn, nil
		default:
		}
		break
	}
	dctx, cancel := context.WithTimeout(bounded(), c.cfg.dialTimeout)
	defer cancel()
	return transport.Dial(dctx, addr, transport.DialOptions{Protocol: c.cfg.protocol, MaxFrame: c.cfg.maxFrame, TLS: c.cfg.tls, Login: c.cfg.login})
}

func (c *Client) put(conn *transport.Conn) {
	p, err := c.pool(conn.Addr())
	if err != nil {
		conn.Close()
		return
	}
	select {
	case p.idle <- pooled{conn: conn, lastUsed: time.Now()}:
	default:
		conn.Close()
	}
}

// ---------------------------------------------------------------- calls

// meta is what a response says besides its replies.
type meta struct {
	node  string
	token []byte
}

// attempt is one try of a call on a connection.
type attempt func(ctx context.Context, conn *transport.Conn, o *gen.RequestOptions) (meta, error)

// invoke runs fn with deadlines, redirects and retries (see the package
// documentation for what is retried). idempotent says whether the operation
// may be repeated when its outcome is unknown.
func (s *Session) invoke(ctx context.Context, idempotent bool, fn attempt) (meta, error) {
	return s.invokeRoute(ctx, idempotent, false, nil, fn)
}

// invokeRoute is invoke for a request whose shard is decided by key rk
// (routeKey; nil: none): it starts at the node the routing cache names for
// it, and records where redirects lead. read says the request only reads
// (one read-only command): a read of a hot key that any node may serve
// starts at the next node in turn instead (WithHotKeySpreading).
func (s *Session) invokeRoute(ctx context.Context, idempotent, read bool, rk []byte, fn attempt) (meta, error) {
	c := s.c
	cleanup := func() {}
	co := optsFrom(ctx)
	if co.idempotent {
		idempotent = true
	}
	// The call's deadline is ctx's, else now + the client's timeout. It is
	// kept as a time rather than a derived context: a context.WithTimeout
	// per call cost a timer and its cancellation on every call (~6% of the
	// raft-vs-etcd driver's CPU). Each attempt is bounded by the deadline
	// on its socket; what else waits (a dial, a namespace lookup, a
	// back-off) is bounded by bounded(), a derived context made only then.
	deadline, ok := ctx.Deadline()
	if !ok && c.cfg.timeout > 0 {
		deadline = time.Now().Add(c.cfg.timeout)
	}
	var bctx context.Context
	bounded := func() context.Context {
		switch {
		case bctx != nil:
		case deadline.IsZero():
			bctx = ctx
		default:
			bctx, cleanup = context.WithDeadline(ctx, deadline)
		}
		return bctx
	}
	defer func() { cleanup() }()
	retries := c.cfg.retries
	if co.noRetry {
		retries = 0
	}
	h := c.health
	// addr is the node of the next attempt ("": pick one, avoiding avoid).
	addr, avoid := c.routes.lookup(co.ns, rk), ""
	// A hot read overrides the routing cache (a raft stale read may go to
	// a follower); retries after it use the normal choice.
	if read && rk != nil && c.hot != nil && len(c.addrs) > 1 && c.hot.has(c.nsName(co), rk) && c.anyNode(bounded(), co) {
		addr = c.hot.pick(c.addrs)
	}
	var last *Error
	// maybe is set once an attempt may have taken effect: every error
	// returned after it says so (MaybeApplied), even a definite one of a
	// later retry.
	maybe := false
	fail := func(e *Error) (meta, error) {
		if maybe && !e.MaybeApplied {
			c := *e
			c.MaybeApplied = true
			e = &c
		}
		return meta{}, e
	}
	skips := 0
	spread, spreadKnown := false, false
	for n := 0; ; n++ {
		if err := expired(ctx, deadline); err != nil {
			if last == nil {
				last = &Error{Code: CodeTimeout, Msg: err.Error(), err: err}
			}
			return fail(last)
		}
		if addr == "" {
			if !spreadKnown {
				spread, spreadKnown = c.spreads(bounded(), co), true
			}
			a, down := c.pickNode(avoid, spread)
			if down != nil {
				return fail(down)
			}
			addr = a
		}
		if down := h.acquire(addr); down != nil {
			// The node's breaker is open: skip it without spending a retry.
			c.routes.forget(co.ns, addr)
			skips++
			if skips > len(c.addrs)+2 {
				return fail(down)
			}
			avoid, addr = addr, ""
			n--
			continue
		}
		var e *Error
		conn, err := c.getBounded(bounded, addr)
		if err != nil {
			e = dialError(err)
			if e.Code == CodeConnection {
				h.failed(addr)
			} else {
				h.answered(addr, -1)
			}
		} else {
			conn.SetDeadline(deadline)
			var budget time.Duration
			if !deadline.IsZero() {
				budget = time.Until(deadline)
			}
			t0 := h.now()
			m, err := fn(ctx, conn, s.wire(co, budget))
			lat := h.now().Sub(t0)
			if err == nil {
				h.answered(addr, lat)
				c.put(conn)
				s.observe(m.token)
				return m, nil
			}
			e = fromWire(err, true)
			switch {
			case e.err == nil:
				h.answered(addr, lat) // a typed exception: the node answered
				c.put(conn)           // and the connection is fine
			case e.Code == CodeConnection || e.Code == CodeTimeout:
				h.failed(addr)
				conn.Close()
			default:
				h.answered(addr, -1)
				conn.Close()
			}
		}
		last = e
		if ((e.Code == CodeTimeout || e.Code == CodeConnection) && e.Sent) || e.Code == CodeProtocol {
			maybe = true
		}
		retry := false
		var wait time.Duration
		switch {
		case e.Code == CodeMoved:
			retry = true
			if e.Addr != "" {
				addr = e.Addr
				c.routes.moved(co.ns, rk, addr, e.Msg)
			} else {
				avoid, addr = addr, ""
			}
		case e.Code == CodeUnavailable:
			retry, wait = true, e.RetryAfter
		case e.Code == CodeConnection && !e.Sent:
			retry = true
			c.routes.forget(co.ns, addr)
			c.movePreferred(addr)
			avoid, addr = addr, ""
		case (e.Code == CodeConnection || e.Code == CodeTimeout) && idempotent:
			retry = true
			if e.Code == CodeConnection {
				c.routes.forget(co.ns, addr)
				avoid, addr = addr, ""
			}
		}
		if !retry || n >= retries {
			return fail(e)
		}
		ceil := min(c.cfg.backoffMax, c.cfg.backoffBase<<min(n, 30))
		d := time.Duration(rand.Int64N(int64(ceil) + 1))
		d = max(d, wait)
		if !deadline.IsZero() {
			// Wait at most until the deadline; the loop's check then ends
			// the call with the last error.
			d = min(d, time.Until(deadline))
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fail(e)
		case <-t.C:
		}
	}
}

// expired is the error that ends a call: ctx's, or
// context.DeadlineExceeded once deadline (zero: none) has passed.
func expired(ctx context.Context, deadline time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// pickNode chooses the node of a request that has no known leader (see
// health.pick); when every node's breaker is open it returns the NODEDOWN
// error of the one retried first.
func (c *Client) pickNode(avoid string, spread bool) (string, *Error) {
	if a, ok := c.health.pick(c.addrs, int(c.prefer.Load()), avoid, spread); ok {
		return a, nil
	}
	var first *Error
	for _, a := range c.addrs {
		e := c.health.acquire(a)
		if e == nil {
			return a, nil // its cool-down just ended
		}
		if first == nil || e.RetryAfter < first.RetryAfter {
			first = e
		}
	}
	return "", first
}

// movePreferred moves the client's sticky node past addr (it failed).
func (c *Client) movePreferred(addr string) {
	for i, a := range c.addrs {
		if a == addr {
			c.prefer.Store(int64((i + 1) % len(c.addrs)))
			return
		}
	}
}

// Stats reports the client's view of its nodes: breaker states and trips,
// latency averages, and which nodes count as slow.
func (c *Client) Stats() Stats { return c.health.stats(c.addrs) }

// call runs one command with the `call` method: errors are typed.
func (s *Session) call(ctx context.Context, cmd core.Command) (core.Reply, meta, error) {
	var reply core.Reply
	m, err := s.invokeRoute(ctx, isIdempotent(cmd), readOnly[strings.ToUpper(cmd.Name)], routeKey(cmd), func(ctx context.Context, conn *transport.Conn, o *gen.RequestOptions) (meta, error) {
		resp, err := conn.Call(ctx, o, transport.CommandFromCore(cmd))
		if err != nil {
			return meta{}, err
		}
		if len(resp.Replies) != 1 {
			return meta{}, &Error{Code: CodeProtocol, Msg: fmt.Sprintf("call returned %d replies", len(resp.Replies))}
		}
		reply, err = transport.ReplyToCore(resp.Replies[0])
		if err != nil {
			return meta{}, &Error{Code: CodeProtocol, Msg: err.Error()}
		}
		return meta{node: resp.GetServedBy(), token: resp.Token}, nil
	})
	if err != nil {
		return core.Reply{}, m, err
	}
	if reply.IsError() {
		return reply, m, fromCore(reply.Err)
	}
	return reply, m, nil
}

// Cmd builds a command from Go values: string, []byte, int, int64, uint64,
// float64 and fmt.Stringer arguments.
func Cmd(name string, args ...any) (core.Command, error) {
	c := core.Command{Name: name, Args: make([][]byte, len(args))}
	for i, a := range args {
		switch v := a.(type) {
		case string:
			c.Args[i] = []byte(v)
		case []byte:
			c.Args[i] = v
		case int:
			c.Args[i] = strconv.AppendInt(nil, int64(v), 10)
		case int64:
			c.Args[i] = strconv.AppendInt(nil, v, 10)
		case int32:
			c.Args[i] = strconv.AppendInt(nil, int64(v), 10)
		case uint64:
			c.Args[i] = strconv.AppendUint(nil, v, 10)
		case float64:
			c.Args[i] = strconv.AppendFloat(nil, v, 'g', -1, 64)
		case fmt.Stringer:
			c.Args[i] = []byte(v.String())
		default:
			return core.Command{}, &Error{Code: CodeInvalid, Msg: fmt.Sprintf("argument %d: unsupported type %T", i, a)}
		}
	}
	return c, nil
}

// Do runs one command (Redis-style name and arguments) and returns its
// reply; an error reply is returned as an *Error.
func (s *Session) Do(ctx context.Context, name string, args ...any) (core.Reply, error) {
	cmd, err := Cmd(name, args...)
	if err != nil {
		return core.Reply{}, err
	}
	r, _, err := s.call(ctx, cmd)
	return r, err
}

// DoCmd runs one command.
func (s *Session) DoCmd(ctx context.Context, cmd core.Command) (core.Reply, error) {
	r, _, err := s.call(ctx, cmd)
	return r, err
}

// Pipeline sends cmds as one batch (the `execute` method) and returns one
// reply per command. A command that fails on its own has a reply of kind
// core.KindError (see ReplyErr) and the others still run; the batch is not
// atomic (use Txn). It is retried only when every command is idempotent or
// the failure certainly executed nothing.
func (s *Session) Pipeline(ctx context.Context, cmds []core.Command) ([]core.Reply, error) {
	idem := true
	wire := make([]*gen.Command, len(cmds))
	for i, c := range cmds {
		idem = idem && isIdempotent(c)
		wire[i] = transport.CommandFromCore(c)
	}
	var out []core.Reply
	_, err := s.invokeRoute(ctx, idem, false, routeKey(cmds...), func(ctx context.Context, conn *transport.Conn, o *gen.RequestOptions) (meta, error) {
		resp, err := conn.Execute(ctx, o, wire)
		if err != nil {
			return meta{}, err
		}
		if out, err = repliesToCore(resp.Replies, len(cmds)); err != nil {
			return meta{}, err
		}
		return meta{node: resp.GetServedBy(), token: resp.Token}, nil
	})
	return out, err
}

func repliesToCore(rs []*gen.Reply, want int) ([]core.Reply, error) {
	if want >= 0 && len(rs) != want {
		return nil, &Error{Code: CodeProtocol, Msg: fmt.Sprintf("%d replies for %d commands", len(rs), want)}
	}
	out := make([]core.Reply, len(rs))
	for i, r := range rs {
		c, err := transport.ReplyToCore(r)
		if err != nil {
			return nil, &Error{Code: CodeProtocol, Msg: err.Error()}
		}
		out[i] = c
	}
	return out, nil
}

// Batch accumulates commands for Pipeline.
type Batch struct {
	s    *Session
	cmds []core.Command
	err  error
}

// Batch starts a batch.
func (s *Session) Batch() *Batch { return &Batch{s: s} }

// Add appends a command (see Cmd for the argument types).
func (b *Batch) Add(name string, args ...any) *Batch {
	c, err := Cmd(name, args...)
	if err != nil && b.err == nil {
		b.err = err
	}
	b.cmds = append(b.cmds, c)
	return b
}

// Len is the number of commands added.
func (b *Batch) Len() int { return len(b.cmds) }

// Exec sends the batch.
func (b *Batch) Exec(ctx context.Context) ([]core.Reply, error) {
	if b.err != nil {
		return nil, b.err
	}
	return b.s.Pipeline(ctx, b.cmds)
}

// Txn runs a transaction: if every condition holds, every command is
// applied atomically and their replies are returned; otherwise the error is
// CONDFAILED (errors.Is(err, ErrConditionFailed)) with the failed condition
// and the key's current version. Transactions are never retried after an
// unknown outcome.
func (s *Session) Txn(ctx context.Context, conds []core.Condition, cmds ...core.Command) ([]core.Reply, error) {
	wc := make([]*gen.Condition, len(conds))
	for i, c := range conds {
		wc[i] = transport.CondFromCore(c)
	}
	wcmds := make([]*gen.Command, len(cmds))
	for i, c := range cmds {
		wcmds[i] = transport.CommandFromCore(c)
	}
	rk := routeKey(cmds...)
	if len(conds) > 0 {
		rk = conds[0].Key
	}
	var out []core.Reply
	_, err := s.invokeRoute(ctx, false, false, rk, func(ctx context.Context, conn *transport.Conn, o *gen.RequestOptions) (meta, error) {
		resp, err := conn.Transaction(ctx, o, wc, wcmds)
		if err != nil {
			return meta{}, err
		}
		if out, err = repliesToCore(resp.Replies, len(cmds)); err != nil {
			return meta{}, err
		}
		return meta{node: resp.GetServedBy(), token: resp.Token}, nil
	})
	return out, err
}

// NodeInfo describes the node that answered a Ping.
type NodeInfo struct {
	ID, Version, Address string
}

// Ping asks a node who it is.
func (s *Session) Ping(ctx context.Context) (NodeInfo, error) {
	var ni NodeInfo
	_, err := s.invoke(ctx, true, func(ctx context.Context, conn *transport.Conn, _ *gen.RequestOptions) (meta, error) {
		r, err := conn.Ping(ctx)
		if err != nil {
			return meta{}, err
		}
		ni = NodeInfo{ID: r.ID, Version: r.GetVersion(), Address: r.GetAddress()}
		return meta{node: r.ID}, nil
	})
	return ni, err
}

// errorsAs is errors.As for *Error.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
