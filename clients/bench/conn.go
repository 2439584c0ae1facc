package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// thriftConn is one raw Thrift connection: no pooling and no retries, so
// that the benchmark measures the node, not the client library's policies.
// A failed request closes it; the next request redials.
type thriftConn struct {
	addr    string
	timeout time.Duration
	dopts   transport.DialOptions
	opts    *gen.RequestOptions
	c       *transport.Conn
	// deadline is the socket deadline set last (zero: none). Without a
	// context deadline a request is bounded by the connection's timeout:
	// the deadline is moved to now+timeout only once half of it is spent
	// (setting a socket deadline takes locks and two timer updates), so
	// a request may fail after between timeout/2 and timeout.
	deadline time.Time
	// w is reused for every request's wire commands.
	w wireCmds
}

var _ Conn = (*thriftConn)(nil)

// ThriftConnector dials addr with the given protocol ("binary" or
// "compact") and runs commands in namespace ns ("" for the default); a
// request without a context deadline gets timeout. addr may list several
// nodes separated by commas: connections go to them in turn.
//
// secure, if given, sets the TLS configuration and login credentials of
// every connection (only those two fields of it are used).
func ThriftConnector(addr, protocol, ns string, timeout time.Duration, secure ...transport.DialOptions) (Connector, error) {
	return ThriftConnectorFor(Config{Addr: addr, Protocol: protocol, Namespace: ns, Timeout: timeout}, secure...)
}

// ThriftConnectorFor is ThriftConnector with every connection setting of
// cfg: its addresses, protocol, namespace, timeout and per-request
// consistency options (R, W, Strict, ReadMode, Mode).
func ThriftConnectorFor(cfg Config, secure ...transport.DialOptions) (Connector, error) {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	p, err := transport.ParseProtocol(cfg.Protocol)
	if err != nil {
		return nil, fmt.Errorf("--protocol: %w", err)
	}
	dopts := transport.DialOptions{Protocol: p}
	for _, o := range secure {
		dopts.TLS, dopts.Login = o.TLS, o.Login
	}
	addrs := splitAddrs(cfg.Addr)
	if len(addrs) == 0 {
		return nil, fmt.Errorf("--addr: no address")
	}
	var next atomic.Uint64
	return func(ctx context.Context) (Conn, error) {
		addr := addrs[(next.Add(1)-1)%uint64(len(addrs))]
		tc := &thriftConn{addr: addr, timeout: timeout, dopts: dopts, opts: cfg.requestOptions()}
		if err := tc.dial(ctx); err != nil {
			return nil, err
		}
		return tc, nil
	}, nil
}

// requestOptions are the RequestOptions every request of cfg carries.
func (c Config) requestOptions() *gen.RequestOptions {
	o := &gen.RequestOptions{}
	if c.Namespace != "" {
		ns := c.Namespace
		o.Ns = &ns
	}
	if c.R != 0 {
		r := int32(c.R)
		o.R = &r
	}
	if c.W != 0 {
		w := int32(c.W)
		o.W = &w
	}
	if c.Strict {
		t := true
		o.Strict = &t
	}
	if c.ReadMode != "" {
		m := c.ReadMode
		o.ReadMode = &m
	}
	if c.Mode != "" {
		m := c.Mode
		o.Mode = &m
	}
	return o
}

// ParseQuorumSize parses an R or W flag: ONE, QUORUM, ALL, or a number
// (0: the namespace default). QUORUM and ALL map to the quorum strategy's
// -2 and -1.
func ParseQuorumSize(s string) (int, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "", "DEFAULT":
		return 0, nil
	case "ONE":
		return 1, nil
	case "QUORUM":
		return -2, nil
	case "ALL":
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q: want ONE, QUORUM, ALL or a number >= 0", s)
	}
	return n, nil
}

func (t *thriftConn) dial(ctx context.Context) error {
	c, err := transport.Dial(ctx, t.addr, t.dopts)
	if err != nil {
		return err
	}
	t.c = c
	t.deadline = time.Time{}
	return nil
}

func (t *thriftConn) Do(ctx context.Context, cmds []core.Command) (int, error) {
	if t.c == nil {
		if err := t.dial(ctx); err != nil {
			return 0, err
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		t.c.SetDeadline(dl)
		t.deadline = time.Time{} // the next request without one sets its own
	} else if now := time.Now(); t.deadline.Sub(now) < t.timeout/2 {
		t.deadline = now.Add(t.timeout)
		t.c.SetDeadline(t.deadline)
	}
	var (
		resp *gen.ExecuteResponse
		err  error
	)
	if len(cmds) == 1 {
		resp, err = t.c.Call(ctx, t.opts, t.w.single(cmds[0]))
	} else {
		resp, err = t.c.Execute(ctx, t.opts, t.w.batch(cmds))
	}
	if err != nil {
		if isException(err) {
			// A typed answer from the node: the connection is fine.
			return len(cmds), nil
		}
		t.c.Close()
		t.c = nil
		t.deadline = time.Time{}
		return 0, err
	}
	return countFailed(resp, len(cmds))
}

// isException reports whether err is one of the IDL's typed exceptions
// (the node answered) rather than a transport failure.
func isException(err error) bool {
	switch err.(type) {
	case *gen.WrongType, *gen.ConditionFailed, *gen.ValueTooLarge, *gen.InvalidArgument,
		*gen.Unavailable, *gen.Timeout, *gen.Corruption, *gen.NotLeader,
		*gen.Unauthenticated, *gen.Forbidden:
		return true
	}
	return false
}

func (t *thriftConn) Close() error {
	if t.c == nil {
		return nil
	}
	err := t.c.Close()
	t.c = nil
	return err
}
