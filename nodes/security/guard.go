package security

import (
	"context"
	"errors"
	"log/slog"
	"time"

	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// Guard wraps a DialKV handler and checks every request before passing it
// on: the principal (from the request context, see WithPrincipal and
// ConnContext) must be authenticated and authorized for the namespace and
// action, or the request fails with the typed Thrift exception
// Unauthenticated or Forbidden and the inner handler never sees it.
//
// Actions (CommandNeed): commands that core reports read-only (GET, SCAN,
// ...) are reads, every other command is a write (unknown commands too:
// fail closed); cluster-management commands (CLUSTER RING SET, RAFT.ADD,
// RAFT.REMOVE, ...) need admin; a batch or transaction needs the union of
// its commands' needs; scan and
// index queries read; publish writes; subscribe reads; creating or dropping
// a namespace needs admin on it. Poll and unsubscribe need an authenticated
// principal only (the subscription id was handed out to an authorized
// subscriber); ping is open, for health checks.
//
// Limits: the calls whose IDL declares Unavailable (call, execute,
// transaction, scan, index_query, create/drop namespace) first take tokens
// from the connection's rate limiter (see WithLimiter; a batch of n
// commands costs n), then, once authorized, a slot from Shedder; either
// refusal is an Unavailable exception with retry_after_ms set. Rate
// limiting comes before authorization so that a flood of bad requests is
// throttled too.
type Guard struct {
	Inner gen.DialKV
	Auth  Authorizer
	// Shedder, if set, bounds the requests in flight.
	Shedder *Shedder
	// Authn checks login credentials; nil: login is refused with
	// InvalidArgument (a node without --auth-file needs none).
	Authn Authenticator
	// Logins bounds the password checks run at once (argon2id takes tens
	// of MiB and hundreds of ms each); nil: no bound. Make it with
	// NewLoginSlots.
	Logins chan struct{}
	// Logger receives one line per failed login (principal name and
	// remote cause only; never a secret); nil: none.
	Logger *slog.Logger
	// Now reads the clock for the limiters; nil: time.Now.
	Now func() time.Time
	// OnReject, if set, is called once per request the Guard refuses,
	// with the reason: one of RejectReasons (never a principal or a
	// secret, so it can label a metric).
	OnReject func(reason string)
}

// The reasons OnReject reports.
const (
	RejectUnauthenticated = "unauthenticated" // no, wrong or revoked credentials (a failed login included)
	RejectForbidden       = "forbidden"       // authenticated, but no grant for the action
	RejectRateLimited     = "rate_limited"    // over the connection's --rate-limit
	RejectOverloaded      = "overloaded"      // shed: over --max-inflight
)

// RejectReasons lists every reason OnReject reports.
var RejectReasons = []string{RejectUnauthenticated, RejectForbidden, RejectRateLimited, RejectOverloaded}

// reject reports a refusal and returns err.
func (g *Guard) reject(reason string, err error) error {
	if g.OnReject != nil {
		g.OnReject(reason)
	}
	return err
}

// authReason is the OnReject reason of an authorization error.
func authReason(err error) string {
	if _, ok := err.(*gen.Unauthenticated); ok {
		return RejectUnauthenticated
	}
	return RejectForbidden
}

// NewLoginSlots returns a semaphore for Guard.Logins allowing n password
// checks at once.
func NewLoginSlots(n int) chan struct{} { return make(chan struct{}, max(n, 1)) }

// Login authenticates the connection (see the IDL): user and password, or
// an empty user and a bearer token. It is rate limited like every other
// request; password checks are bounded by Logins. The connection's
// context must carry a Session (WithSession).
func (g *Guard) Login(ctx context.Context, user string, secret []byte) (string, error) {
	if err := g.limit(ctx, 1); err != nil {
		return "", err
	}
	if g.Authn == nil {
		return "", &gen.InvalidArgument{Message: "login: this node has no authentication configured (--auth-file); no login is needed", Code: "ERR"}
	}
	sess, _ := ctx.Value(sessionKey{}).(*Session)
	if sess == nil {
		return "", &gen.InvalidArgument{Message: "login: this connection cannot hold a session", Code: "ERR"}
	}
	var p Principal
	var err error
	if user == "" {
		p, err = g.Authn.AuthenticateToken(Secret(secret))
	} else {
		if g.Logins != nil {
			select {
			case g.Logins <- struct{}{}:
				defer func() { <-g.Logins }()
			case <-ctx.Done():
				return "", unavailable(ctx.Err())
			}
		}
		p, err = g.Authn.AuthenticatePassword(user, Secret(secret))
	}
	if err != nil {
		sess.set(Principal{})
		if g.Logger != nil {
			g.Logger.Warn("login failed", "user", user, "method", map[bool]string{true: "token", false: "password"}[user == ""], "err", err)
		}
		return "", g.reject(RejectUnauthenticated, toThrift(err))
	}
	sess.set(p)
	return p.Name, nil
}

type limiterKey struct{}

// WithLimiter returns ctx carrying a connection's rate limiter.
func WithLimiter(ctx context.Context, b *TokenBucket) context.Context {
	return context.WithValue(ctx, limiterKey{}, b)
}

func (g *Guard) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// unavailable maps a limiter refusal to the IDL's exception.
func unavailable(err error) error {
	var retry time.Duration
	var rl *RateLimitError
	var oe *OverloadError
	switch {
	case errors.As(err, &rl):
		retry = rl.RetryAfter
	case errors.As(err, &oe):
		retry = oe.RetryAfter
	}
	ms := int32(min((retry+time.Millisecond-1)/time.Millisecond, 1<<30))
	return &gen.Unavailable{Message: err.Error(), RetryAfterMs: ms}
}

// limit takes cost tokens from the connection's limiter, if it has one.
func (g *Guard) limit(ctx context.Context, cost int) error {
	b, _ := ctx.Value(limiterKey{}).(*TokenBucket)
	if b == nil {
		return nil
	}
	if err := b.AllowN(g.now(), max(cost, 1)); err != nil {
		return g.reject(RejectRateLimited, unavailable(err))
	}
	return nil
}

func noop() {}

// admit takes a shedder slot; call the returned release when done.
func (g *Guard) admit() (func(), error) {
	if g.Shedder == nil {
		return noop, nil
	}
	release, err := g.Shedder.Acquire(g.now())
	if err != nil {
		return nil, g.reject(RejectOverloaded, unavailable(err))
	}
	return release, nil
}

// gate is limit, then check, then admit.
func (g *Guard) gate(ctx context.Context, cost int, ns string, a Action) (func(), error) {
	if err := g.limit(ctx, cost); err != nil {
		return nil, err
	}
	if err := g.check(ctx, ns, a); err != nil {
		return nil, err
	}
	return g.admit()
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
	if err := toThrift(g.Auth.Authorize(p, ns, a)); err != nil {
		return g.reject(authReason(err), err)
	}
	return nil
}

func nsOf(opts *gen.RequestOptions) string {
	if opts == nil || opts.Ns == nil {
		return ""
	}
	return *opts.Ns
}

// Ping is open.
func (g *Guard) Ping(ctx context.Context) (*gen.NodeInfo, error) { return g.Inner.Ping(ctx) }

// Call checks the command's action.
func (g *Guard) Call(ctx context.Context, opts *gen.RequestOptions, cmd *gen.Command) (*gen.ExecuteResponse, error) {
	n := commandNeed(cmd)
	release, err := g.gate(ctx, 1, n.scope(opts), n.Action)
	if err != nil {
		return nil, err
	}
	defer release()
	return g.Inner.Call(ctx, opts, cmd)
}

// Execute checks the union of the commands' needs.
func (g *Guard) Execute(ctx context.Context, opts *gen.RequestOptions, cmds []*gen.Command) (*gen.ExecuteResponse, error) {
	n := commandsNeed(cmds)
	release, err := g.gate(ctx, len(cmds), n.scope(opts), n.Action)
	if err != nil {
		return nil, err
	}
	defer release()
	return g.Inner.Execute(ctx, opts, cmds)
}

// Transaction checks the union of the commands' needs (conditions read).
func (g *Guard) Transaction(ctx context.Context, opts *gen.RequestOptions, conds []*gen.Condition, cmds []*gen.Command) (*gen.ExecuteResponse, error) {
	n := commandsNeed(cmds)
	if len(conds) > 0 {
		n.Action |= Read
	}
	release, err := g.gate(ctx, len(cmds), n.scope(opts), n.Action)
	if err != nil {
		return nil, err
	}
	defer release()
	return g.Inner.Transaction(ctx, opts, conds, cmds)
}

// Scan reads.
func (g *Guard) Scan(ctx context.Context, opts *gen.RequestOptions, req *gen.ScanRequest) (*gen.ScanResponse, error) {
	release, err := g.gate(ctx, 1, nsOf(opts), Read)
	if err != nil {
		return nil, err
	}
	defer release()
	return g.Inner.Scan(ctx, opts, req)
}

// IndexQuery reads.
func (g *Guard) IndexQuery(ctx context.Context, opts *gen.RequestOptions, q *gen.IndexQuery) (*gen.IndexQueryResponse, error) {
	release, err := g.gate(ctx, 1, nsOf(opts), Read)
	if err != nil {
		return nil, err
	}
	defer release()
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
	if p, ok := PrincipalFrom(ctx); ok {
		if v, ok := g.Auth.(interface{ Valid(Principal) error }); ok {
			if err := v.Valid(p); err != nil { // a revoked credential is refused here too
				return g.reject(RejectUnauthenticated, err)
			}
		}
		return nil
	}
	if _, open := g.Auth.(AllowAll); open {
		return nil
	}
	return g.reject(RejectUnauthenticated, unauthenticated("no credentials"))
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
	release, err := g.gate(ctx, 1, name, Admin)
	if err != nil {
		return err
	}
	defer release()
	return g.Inner.CreateNamespace(ctx, spec)
}

// DropNamespace needs admin on the namespace.
func (g *Guard) DropNamespace(ctx context.Context, name string) error {
	release, err := g.gate(ctx, 1, name, Admin)
	if err != nil {
		return err
	}
	defer release()
	return g.Inner.DropNamespace(ctx, name)
}

// ListNamespaces needs an authenticated principal.
func (g *Guard) ListNamespaces(ctx context.Context) ([]*gen.NamespaceSpec, error) {
	if err := g.authenticated(ctx); err != nil {
		return nil, err
	}
	return g.Inner.ListNamespaces(ctx)
}
