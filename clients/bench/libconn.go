package bench

import (
	"context"
	"errors"
	"fmt"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
)

// libConn is one worker's share of a Go client (--via-client): requests go
// through the client library's pool, retries, circuit breakers and
// latency-aware choice of node.
type libConn struct {
	c    *client.Client
	opts []client.CallOption
}

var _ Conn = (*libConn)(nil)

// ClientConnector returns a Connector whose connections share one Go
// client over every address of cfg.Addr (with cfg's protocol, namespace,
// timeout and per-request options, plus opts), and that client (Stats
// reports its breakers; the caller closes it).
func ClientConnector(cfg Config, opts ...client.Option) (Connector, *client.Client, error) {
	addrs := splitAddrs(cfg.Addr)
	all := []client.Option{client.WithPoolSize(cfg.Clients + 4), client.WithProtocol(cfg.Protocol), client.WithClientID("dialkv-bench")}
	if cfg.Timeout > 0 {
		all = append(all, client.WithTimeout(cfg.Timeout))
	}
	if cfg.Namespace != "" {
		all = append(all, client.WithNamespace(cfg.Namespace))
	}
	c, err := client.New(addrs, append(all, opts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("--addr: %w", err)
	}
	var co []client.CallOption
	if cfg.R != 0 {
		co = append(co, client.R(cfg.R))
	}
	if cfg.W != 0 {
		co = append(co, client.W(cfg.W))
	}
	if cfg.Strict {
		co = append(co, client.Strict())
	}
	if cfg.ReadMode != "" {
		co = append(co, client.ReadMode(cfg.ReadMode))
	}
	if cfg.Mode != "" {
		co = append(co, client.Mode(cfg.Mode))
	}
	return func(context.Context) (Conn, error) { return &libConn{c: c, opts: co}, nil }, c, nil
}

// Do sends one command as a call and several as a pipeline. An error
// answer of the node counts as failed commands; a connection failure,
// timeout or open breaker fails the request.
func (l *libConn) Do(ctx context.Context, cmds []core.Command) (int, error) {
	ctx = client.With(ctx, l.opts...)
	if len(cmds) == 1 {
		_, err := l.c.DoCmd(ctx, cmds[0])
		if err != nil && !transportFailure(err) {
			return 1, nil
		}
		return 0, err
	}
	rs, err := l.c.Pipeline(ctx, cmds)
	if err != nil {
		if transportFailure(err) {
			return 0, err
		}
		return len(cmds), nil
	}
	failed := 0
	for _, r := range rs {
		if r.IsError() {
			failed++
		}
	}
	return failed, nil
}

// transportFailure: the request failed as a whole (no answer from a node).
func transportFailure(err error) bool {
	return errors.Is(err, client.ErrConnection) || errors.Is(err, client.ErrTimeout) || errors.Is(err, client.ErrProtocol)
}

// Close does nothing: the client is shared.
func (l *libConn) Close() error { return nil }
