package security

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// ErrUnauthenticated is wrapped by every error that means "who you are is
// not known": no credentials, a wrong password, an unknown token.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrForbidden is wrapped by every error that means "you are known but may
// not do this".
var ErrForbidden = errors.New("forbidden")

// AuthError is the typed error of authentication and authorization. Kind is
// ErrUnauthenticated or ErrForbidden; errors.Is(err, ErrForbidden) works.
type AuthError struct {
	Kind      error  // ErrUnauthenticated or ErrForbidden
	Principal string // empty when unauthenticated
	Namespace string
	Action    Action
	Reason    string
}

func (e *AuthError) Error() string {
	if e.Kind == ErrUnauthenticated {
		return "unauthenticated: " + e.Reason
	}
	return fmt.Sprintf("forbidden: %q may not %s namespace %q", e.Principal, e.Action, e.Namespace)
}

// Unwrap returns Kind.
func (e *AuthError) Unwrap() error { return e.Kind }

func unauthenticated(reason string) error {
	return &AuthError{Kind: ErrUnauthenticated, Reason: reason}
}

// Action is what a request does to a namespace.
type Action uint8

// The actions. Admin implies Write and Read; Write does not imply Read (a
// write-only producer is a legitimate role).
const (
	Read Action = 1 << iota
	Write
	Admin
)

func (a Action) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Admin:
		return "admin"
	}
	var parts []string
	for _, x := range []Action{Read, Write, Admin} {
		if a&x != 0 {
			parts = append(parts, x.String())
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// ParseAction parses "read", "write" or "admin".
func ParseAction(s string) (Action, error) {
	switch s {
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	case "admin":
		return Admin, nil
	}
	return 0, fmt.Errorf("security: unknown action %q (want read, write or admin)", s)
}

// Principal is an authenticated identity.
type Principal struct {
	Name string // user name, token name or certificate common name
	// Method says how it was authenticated: "password", "token", "cert"
	// or MethodNode.
	Method string
	// bind ties a password or token principal to the credential it logged
	// in with (Policy.Valid); serial is a certificate principal's serial
	// number (lower-case hex). Neither is a secret.
	bind   [32]byte
	serial string
}

// MethodNode is the Method of a principal that presented a node
// certificate of the cluster's peer CA on the client listener (IsNodeCert):
// another node, or an operator holding a node's certificate. It has admin
// on every namespace and the whole cluster (Policy.Authorize); revoking its
// serial (revoked_certs) takes that away.
const MethodNode = "node"

// LogValue logs the principal's name and method (never a credential).
func (p Principal) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", p.Name), slog.String("method", p.Method))
}

var _ slog.LogValuer = Principal{}

// Authorizer decides whether a principal may perform an action on a
// namespace. It returns nil, or an *AuthError wrapping ErrUnauthenticated
// (the zero Principal) or ErrForbidden. It must be called before any work
// is done on the request.
type Authorizer interface {
	Authorize(p Principal, namespace string, action Action) error
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal carried by ctx, if any: the one a
// login bound to the connection's Session, else the one of WithPrincipal
// (a client certificate).
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	if s, _ := ctx.Value(sessionKey{}).(*Session); s != nil {
		if p, ok := s.Principal(); ok {
			return p, true
		}
	}
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok && p.Name != ""
}

// Session is the mutable authentication state of one connection: the
// principal its last successful login bound. It is safe for concurrent
// use.
type Session struct {
	mu sync.Mutex
	p  Principal
}

// Principal returns the principal bound by a login, if any.
func (s *Session) Principal() (Principal, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p, s.p.Name != ""
}

// set binds p (the zero Principal unbinds).
func (s *Session) set(p Principal) {
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
}

type sessionKey struct{}

// WithSession returns ctx carrying a new, unauthenticated Session: call it
// once per connection so that a login binds a principal to that connection
// only.
func WithSession(ctx context.Context) context.Context {
	return context.WithValue(ctx, sessionKey{}, &Session{})
}

// Authenticator checks credentials presented by a login. *Policy
// implements it.
type Authenticator interface {
	AuthenticatePassword(user string, password Secret) (Principal, error)
	AuthenticateToken(token Secret) (Principal, error)
}

// AllowAll is the Authorizer of a node without authentication: it allows
// everything, including anonymous requests.
type AllowAll struct{}

// Authorize always returns nil.
func (AllowAll) Authorize(Principal, string, Action) error { return nil }

var _ Authorizer = AllowAll{}
