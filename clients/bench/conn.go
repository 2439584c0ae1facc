package bench

import (
	"context"
	"fmt"
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
}

var _ Conn = (*thriftConn)(nil)

// ThriftConnector dials addr with the given protocol ("binary" or
// "compact") and runs commands in namespace ns ("" for the default); a
// request without a context deadline gets timeout.
//
// secure, if given, sets the TLS configuration and login credentials of
// every connection (only those two fields of it are used).
func ThriftConnector(addr, protocol, ns string, timeout time.Duration, secure ...transport.DialOptions) (Connector, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	p, err := transport.ParseProtocol(protocol)
	if err != nil {
		return nil, fmt.Errorf("--protocol: %w", err)
	}
	dopts := transport.DialOptions{Protocol: p}
	for _, o := range secure {
		dopts.TLS, dopts.Login = o.TLS, o.Login
	}
	return func(ctx context.Context) (Conn, error) {
		tc := &thriftConn{addr: addr, timeout: timeout, dopts: dopts, opts: &gen.RequestOptions{}}
		if ns != "" {
			tc.opts.Ns = &ns
		}
		if err := tc.dial(ctx); err != nil {
			return nil, err
		}
		return tc, nil
	}, nil
}

func (t *thriftConn) dial(ctx context.Context) error {
	c, err := transport.Dial(ctx, t.addr, t.dopts)
	if err != nil {
		return err
	}
	t.c = c
	return nil
}

func (t *thriftConn) Do(ctx context.Context, cmds []core.Command) (int, error) {
	if t.c == nil {
		if err := t.dial(ctx); err != nil {
			return 0, err
		}
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(t.timeout)
	}
	t.c.SetDeadline(dl)
	var (
		resp *gen.ExecuteResponse
		err  error
	)
	if len(cmds) == 1 {
		resp, err = t.c.Call(ctx, t.opts, transport.CommandFromCore(cmds[0]))
	} else {
		wire := make([]*gen.Command, len(cmds))
		for i, c := range cmds {
			wire[i] = transport.CommandFromCore(c)
		}
		resp, err = t.c.Execute(ctx, t.opts, wire)
	}
	if err != nil {
		if isException(err) {
			// A typed answer from the node: the connection is fine.
			return len(cmds), nil
		}
		t.c.Close()
		t.c = nil
		return 0, err
	}
	if len(resp.Replies) != len(cmds) {
		return 0, fmt.Errorf("bench: %d replies to %d commands", len(resp.Replies), len(cmds))
	}
	failed := 0
	for _, r := range resp.Replies {
		if r.Kind == gen.ReplyKind_ERROR {
			failed++
		}
	}
	return failed, nil
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
