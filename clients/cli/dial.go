package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
)

// Transactor runs transactions (MULTI ... EXEC in the CLI): the reply is
// an array of the commands' replies, or an error reply (CONDFAILED when a
// condition did not hold).
type Transactor interface {
	Txn(ctx context.Context, ns string, conds []core.Condition, cmds []core.Command) (core.Reply, error)
}

// Subscriber subscribes to channels and patterns (SUBSCRIBE, PSUBSCRIBE).
type Subscriber interface {
	Subscribe(ctx context.Context, ns string, channels, patterns []string) (Subscription, error)
}

// Subscription receives published messages.
type Subscription interface {
	// Poll waits up to wait for messages and returns up to max of them.
	Poll(ctx context.Context, max int, wait time.Duration) ([]Message, error)
	Close(ctx context.Context) error
}

// Message is one published message.
type Message struct {
	Channel, Pattern string
	Payload          []byte
}

// clientExec runs the CLI's commands with the Go client library. Besides
// the core commands it answers PING, PUBLISH and NAMESPACE
// CREATE|DROP|LIST, which are typed calls of the API rather than commands.
type clientExec struct {
	c *client.Client
}

var (
	_ Executor   = (*clientExec)(nil)
	_ Transactor = (*clientExec)(nil)
	_ Subscriber = (*clientExec)(nil)
)

// dialClient connects with the Go client library and pings the node, so
// that a wrong address is reported at once (as redis-cli does).
func dialClient(ctx context.Context, addr string, opts ...client.Option) (Executor, error) {
	// A person is waiting: retry little.
	c, err := client.New([]string{addr}, append([]client.Option{client.WithRetries(1, 50*time.Millisecond, 200*time.Millisecond),
		client.WithDialTimeout(2 * time.Second), client.WithPoolSize(2), client.WithClientID("dialkv-cli")}, opts...)...)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Ping(pctx); err != nil {
		c.Close()
		return nil, err
	}
	return &clientExec{c: c}, nil
}

func nsCtx(ctx context.Context, ns string) context.Context {
	if ns == "" {
		return ctx
	}
	return client.With(ctx, client.Namespace(ns))
}

// asReply turns a client error that the node answered with (wrong type,
// failed condition, bad argument, ...) into an error reply, as redis-cli
// shows them; transport failures (connection, timeout, protocol) stay
// errors.
func asReply(err error) (core.Reply, error) {
	var ce *client.Error
	if !errors.As(err, &ce) {
		return core.Reply{}, err
	}
	switch ce.Code {
	case client.CodeConnection, client.CodeTimeout, client.CodeProtocol:
		return core.Reply{}, err
	}
	msg := strings.TrimPrefix(strings.TrimPrefix(ce.Msg, ce.Code), " ")
	return core.ErrorReply(&core.Error{Code: core.Code(ce.Code), Msg: msg, Condition: ce.Condition, Version: ce.Version}), nil
}

func (e *clientExec) Do(ctx context.Context, ns string, cmd core.Command) (core.Reply, error) {
	ctx = nsCtx(ctx, ns)
	switch cmd.Name {
	case "PING":
		if len(cmd.Args) > 1 {
			return core.ErrorReply(core.Errorf(core.CodeErr, "wrong number of arguments for 'ping' command")), nil
		}
		if _, err := e.c.Ping(ctx); err != nil {
			return asReply(err)
		}
		if len(cmd.Args) == 1 {
			return core.Bulk(cmd.Args[0]), nil
		}
		return core.Reply{Kind: core.KindStatus, Str: []byte("PONG")}, nil
	case "PUBLISH":
		if len(cmd.Args) != 2 {
			return core.ErrorReply(core.Errorf(core.CodeErr, "wrong number of arguments for 'publish' command")), nil
		}
		n, err := e.c.Publish(ctx, string(cmd.Args[0]), cmd.Args[1])
		if err != nil {
			return asReply(err)
		}
		return core.Int(n), nil
	case "NAMESPACE":
		return e.namespace(ctx, cmd.Args)
	}
	r, err := e.c.DoCmd(ctx, cmd)
	if err != nil {
		return asReply(err)
	}
	return r, nil
}

func (e *clientExec) namespace(ctx context.Context, args [][]byte) (core.Reply, error) {
	syntax := core.ErrorReply(core.Errorf(core.CodeErr, "syntax: NAMESPACE CREATE name strategy [param value ...] | NAMESPACE DROP name | NAMESPACE LIST"))
	if len(args) == 0 {
		return syntax, nil
	}
	switch strings.ToUpper(string(args[0])) {
	case "CREATE":
		if len(args) < 3 || len(args)%2 == 0 {
			return syntax, nil
		}
		spec := client.NamespaceSpec{Name: string(args[1]), Strategy: string(args[2]), Params: map[string]string{}}
		for i := 3; i+1 < len(args); i += 2 {
			spec.Params[string(args[i])] = string(args[i+1])
		}
		if err := e.c.CreateNamespace(ctx, spec); err != nil {
			return asReply(err)
		}
		return core.OK(), nil
	case "DROP":
		if len(args) != 2 {
			return syntax, nil
		}
		if err := e.c.DropNamespace(ctx, string(args[1])); err != nil {
			return asReply(err)
		}
		return core.OK(), nil
	case "LIST":
		specs, err := e.c.ListNamespaces(ctx)
		if err != nil {
			return asReply(err)
		}
		out := make([]core.Reply, 0, len(specs))
		for _, s := range specs {
			desc := s.Name + " " + s.Strategy
			keys := make([]string, 0, len(s.Params))
			for k := range s.Params {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				desc += fmt.Sprintf(" %s=%s", k, s.Params[k])
			}
			out = append(out, core.Bulk([]byte(desc)))
		}
		return core.Array(out...), nil
	}
	return syntax, nil
}

func (e *clientExec) Txn(ctx context.Context, ns string, conds []core.Condition, cmds []core.Command) (core.Reply, error) {
	rs, err := e.c.Txn(nsCtx(ctx, ns), conds, cmds...)
	if err != nil {
		return asReply(err)
	}
	return core.Array(rs...), nil
}

func (e *clientExec) Subscribe(ctx context.Context, ns string, channels, patterns []string) (Subscription, error) {
	sub, err := e.c.Subscribe(nsCtx(ctx, ns), channels, patterns)
	if err != nil {
		return nil, err
	}
	return clientSub{sub}, nil
}

type clientSub struct{ s *client.Subscription }

func (c clientSub) Poll(ctx context.Context, max int, wait time.Duration) ([]Message, error) {
	ms, err := c.s.Poll(ctx, max, wait)
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = Message{Channel: m.Channel, Pattern: m.Pattern, Payload: m.Payload}
	}
	return out, err
}

func (c clientSub) Close(ctx context.Context) error { return c.s.Close(ctx) }

func (e *clientExec) Close() error { return e.c.Close() }
