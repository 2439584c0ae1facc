package admin

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// NamespaceSpec is a namespace as the client API lists it.
type NamespaceSpec struct {
	Name     string
	Strategy string
	Params   map[string]string
}

// conn is one admin connection to a node's client API, with a deadline
// per call. The admin tool speaks the Thrift API directly (package
// transport) rather than through the Go client: it makes one call per
// node and must not retry, route or pool.
type conn struct {
	*transport.Conn
	timeout time.Duration
}

// connFlags adds the TLS and login flags (transport.ConnFlags: --tls-ca,
// --tls-cert, --tls-key, --tls-server-name, --user with --password-file or
// $DIALKV_PASSWORD, --token-file or $DIALKV_TOKEN) to fs. With
// authentication on, cluster-management commands need a principal with
// admin (docs/security.md): an admin user or token, or a node certificate.
func connFlags(fs *flag.FlagSet) *transport.ConnFlags {
	var f transport.ConnFlags
	f.Register(fs)
	return &f
}

// dialOptions are the DialOptions the flags ask for.
func dialOptions(f *transport.ConnFlags) (transport.DialOptions, error) {
	cfg, login, err := f.Dial()
	if err != nil {
		return transport.DialOptions{}, fmt.Errorf("credentials: %w", err)
	}
	return transport.DialOptions{TLS: cfg, Login: login}, nil
}

func dial(addr string, timeout time.Duration, dopts transport.DialOptions) (*conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := transport.Dial(ctx, addr, dopts)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, timeout: timeout}, nil
}

// bound bounds one call by the connection's timeout.
func (c *conn) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	c.SetDeadline(time.Now().Add(c.timeout))
	return context.WithTimeout(ctx, c.timeout)
}

func ping(addr string, timeout time.Duration, dopts transport.DialOptions) (*gen.NodeInfo, error) {
	c, err := dial(addr, timeout, dopts)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := c.bound(context.Background())
	defer cancel()
	info, err := c.Ping(ctx)
	if err != nil {
		return nil, fmt.Errorf("ping %s: %w", addr, err)
	}
	return info, nil
}

// clusterMembers returns the lines of CLUSTER MEMBERS at addr (the node's
// gossip view).
func clusterMembers(addr string, timeout time.Duration, dopts transport.DialOptions) ([]string, error) {
	c, err := dial(addr, timeout, dopts)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := c.bound(context.Background())
	defer cancel()
	resp, err := c.Call(ctx, gen.NewRequestOptions(), &gen.Command{Name: "CLUSTER", Argv: [][]byte{[]byte("MEMBERS")}})
	if err != nil {
		return nil, fmt.Errorf("CLUSTER MEMBERS at %s: %w", addr, err)
	}
	if len(resp.Replies) != 1 {
		return nil, fmt.Errorf("CLUSTER MEMBERS at %s: %d replies", addr, len(resp.Replies))
	}
	r := resp.Replies[0]
	switch r.Kind {
	case gen.ReplyKind_ERROR:
		return nil, fmt.Errorf("CLUSTER MEMBERS at %s: %s", addr, r.GetError().GetMessage())
	case gen.ReplyKind_ARRAY:
		var out []string
		for _, e := range r.Array {
			out = append(out, string(e.Str))
		}
		return out, nil
	}
	return []string{string(r.Str)}, nil
}

func listNamespaces(ctx context.Context, c *conn) ([]NamespaceSpec, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	specs, err := c.ListNamespaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("list namespaces at %s: %w", c.Addr(), err)
	}
	out := make([]NamespaceSpec, len(specs))
	for i, s := range specs {
		out[i] = NamespaceSpec{Name: s.Name, Strategy: s.Strategy, Params: s.Params}
	}
	return out, nil
}
