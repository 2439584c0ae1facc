package security

import (
	"context"
	"errors"
	"strings"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// Guard wraps a DialKV handler and checks every request before passing it
// on: the principal (from the request context, see WithPrincipal and
// ConnContext) must be authenticated and authorized for the namespace and
// action, or the request fails with the typed Thrift exception
// Unauthenticated or Forbidden and the inner handler never sees it.
//
// Actions: commands that core reports read-only (GET, SCAN, ...) are reads,
// every other command is a write (unknown commands too: fail closed); a
// batch or transaction needs the union of its commands' actions; scan and
// index queries read; publish writes; subscribe reads; creating or dropping
// a namespace needs admin on it. Poll and unsubscribe need an authenticated
// principal only (the subscription id was handed out to an authorized
// subscriber); ping is open, for health checks.
type Guard struct {
	Inner gen.DialKV
	Auth  Authorizer
}

var _ gen.DialKV = (*Guard)(nil)

// toThrift maps an authorization error to the IDL's exception.
func toThrift(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrUnauthenticated) {
		return &gen.Unauthenticated{Message: err.Error()}
	}
	return &gen.Forbidden{Message: err.Error()}
}

func (g *Guard) check(ctx context.Context, ns string, a Action) error {
	p, _ := PrincipalFrom(ctx)
	return toThrift(g.Auth.Authorize(p, ns, a))
}

func nsOf(opts *gen.RequestOptions) string {
	if opts == nil || opts.Ns == nil {
		return ""
	}
	return *opts.Ns
}

// CommandAction is the action a command needs.
func CommandAction(name string) Action {
	if core.IsReadOnly(strings.ToUpper(name)) {
		return Read
	}
	return Write
}

func commandsAction(cmds []*gen.Command) Action {
	var a Action
	for _, c := range cmds {
		if c == nil {
			a |= Write
			continue
		}
		a |= CommandAction(c.Name)
	}
	if a == 0 {
		a = Read
	}
	return a
}

// Ping is open.
func (g *Guard) Ping(ctx context.Context) (*gen.NodeInfo, error) { return g.Inner.Ping(ctx) }

// Call checks the command's action.
func (g *Guard) Call(ctx context.Context, opts *gen.RequestOptions, cmd *gen.Command) (*gen.ExecuteResponse, error) {
	a := Write
	if cmd != nil {
		a = CommandAction(cmd.Name)
	}
	if err := g.check(ctx, nsOf(opts), a); err != nil {
		return nil, err
	}
	return g.Inner.Call(ctx, opts, cmd)
}

// Execute checks the union of the commands' actions.
func (g *Guard) Execute(ctx context.Context, opts *gen.RequestOptions, cmds []*gen.Command) (*gen.ExecuteResponse, error) {
	if err := g.check(ctx, nsOf(opts), commandsAction(cmds)); err != nil {
		return nil, err
	}
	return g.Inner.Execute(ctx, opts, cmds)
}

// Transaction checks the union of the commands' actions (conditions read).
func (g *Guard) Transaction(ctx context.Context, opts *gen.RequestOptions, conds []*gen.Condition, cmds []*gen.Command) (*gen.ExecuteResponse, error) {
	a := commandsAction(cmds)
	if len(conds) > 0 {
		a |= Read
	}
	if err := g.check(ctx, nsOf(opts), a); err != nil {
		return nil, err
	}
	return g.Inner.Transaction(ctx, opts, conds, cmds)
}

// Scan reads.
func (g *Guard) Scan(ctx context.Context, opts *gen.RequestOptions, req *gen.ScanRequest) (*gen.ScanResponse, error) {
	if err := g.check(ctx, nsOf(opts), Read); err != nil {
		return nil, err
	}
	return g.Inner.Scan(ctx, opts, req)
}

// IndexQuery reads.
func (g *Guard) IndexQuery(ctx context.Context, opts *gen.RequestOptions, q *gen.IndexQuery) (*gen.IndexQueryResponse, error) {
	if err := g.check(ctx, nsOf(opts), Read); err != nil {
		return nil, err
	}
	return g.Inner.IndexQuery(ctx, opts, q)
}

// Publish writes.
func (g *Guard) Publish(ctx context.Context, opts *gen.RequestOptions, channel string, payload []byte) (int64, error) {
	if err := g.check(ctx, nsOf(opts), Write); err != nil {
		return 0, err
	}
	return g.Inner.Publish(ctx, opts, channel, payload)
}

// Subscribe reads.
func (g *Guard) Subscribe(ctx context.Context, opts *gen.RequestOptions, channels, patterns []string) (string, error) {
	if err := g.check(ctx, nsOf(opts), Read); err != nil {
		return "", err
	}
	return g.Inner.Subscribe(ctx, opts, channels, patterns)
}

// authenticated fails unless ctx carries a principal. Poll and unsubscribe
// declare no Unauthenticated exception in the IDL, so the error reaches the
// client as an application exception naming the cause.
func (g *Guard) authenticated(ctx context.Context) error {
	if _, ok := PrincipalFrom(ctx); ok {
		return nil
	}
	if _, open := g.Auth.(AllowAll); open {
		return nil
	}
	return unauthenticated("no credentials")
}

// Poll needs an authenticated principal.
func (g *Guard) Poll(ctx context.Context, sub string, maxN int32, waitMs int32) (*gen.PollResponse, error) {
	if err := g.authenticated(ctx); err != nil {
		return nil, err
	}
	return g.Inner.Poll(ctx, sub, maxN, waitMs)
}

// Unsubscribe needs an authenticated principal.
func (g *Guard) Unsubscribe(ctx context.Context, sub string) error {
	if err := g.authenticated(ctx); err != nil {
		return err
	}
	return g.Inner.Unsubscribe(ctx, sub)
}

// CreateNamespace needs admin on the new namespace.
func (g *Guard) CreateNamespace(ctx context.Context, spec *gen.NamespaceSpec) error {
	name := ""
	if spec != nil {
		name = spec.Name
	}
	if name == "" {
		name = "*" // an unnamed spec is checked against a wildcard grant only
	}
	if err := g.check(ctx, name, Admin); err != nil {
		return err
	}
	return g.Inner.CreateNamespace(ctx, spec)
}

// DropNamespace needs admin on the namespace.
func (g *Guard) DropNamespace(ctx context.Context, name string) error {
	if err := g.check(ctx, name, Admin); err != nil {
		return err
	}
	return g.Inner.DropNamespace(ctx, name)
}

// ListNamespaces needs an authenticated principal.
func (g *Guard) ListNamespaces(ctx context.Context) ([]*gen.NamespaceSpec, error) {
	if err := g.authenticated(ctx); err != nil {
		return nil, err
	}
	return g.Inner.ListNamespaces(ctx)
}
