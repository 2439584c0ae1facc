package security

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// HTTPAuth guards a node's admin HTTP API (backup, checkpoints, raft
// import, clock): it admits the same principals as the client listener.
// A request is authenticated by, in this order:
//
//   - an Authorization header: "Bearer TOKEN" (a policy token) or "Basic"
//     user and password (a policy user; argon2id, bounded by Logins). A
//     header that is present and wrong is refused: it never falls back to
//     the certificate;
//   - else the client certificate the TLS handshake verified: its common
//     name, or a node principal (MethodNode) for a node certificate of
//     NodeCAs, exactly as on the client listener (ConnContext).
//
// The principal then needs Action (Admin by default) on Scope (the
// whole cluster, ClusterScope, by default): an admin grant whose namespace
// pattern is "*", or a node certificate. With an AllowAll authorizer (a
// node without --auth-file) every request passes: the listener's TLS
// settings alone (a client certificate required with --tls-ca) decide, as
// on the client listener.
//
// A refusal is 401 (unauthenticated, with a WWW-Authenticate challenge)
// or 403 (forbidden), with a one-line text body "NOAUTH ..." or
// "FORBIDDEN ..." that names the principal but never a secret, reported
// to OnReject and logged at warn level.
type HTTPAuth struct {
	Auth  Authorizer    // nil: AllowAll
	Authn Authenticator // nil: no password or token accepted
	// NodeCAs: a verified certificate they signed that is a node
	// certificate (IsNodeCert) is a node principal.
	NodeCAs *x509.CertPool
	// Logins bounds the password checks run at once (NewLoginSlots); nil:
	// no bound.
	Logins chan struct{}
	// Scope and Action are what every request needs; "" and 0 mean
	// ClusterScope and Admin.
	Scope  string
	Action Action
	// OnReject is called once per refused request with RejectUnauthenticated
	// or RejectForbidden.
	OnReject func(reason string)
	Logger   *slog.Logger // nil: refusals are not logged
}

// Wrap returns h behind the checks.
func (a *HTTPAuth) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.Check(r); err != nil {
			a.refuse(w, r, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Check authenticates and authorizes r: nil, or an *AuthError.
func (a *HTTPAuth) Check(r *http.Request) error {
	auth := a.Auth
	if auth == nil {
		auth = AllowAll{}
	}
	if _, open := auth.(AllowAll); open {
		return nil
	}
	p, err := a.principal(r)
	if err != nil {
		return err
	}
	scope, action := a.Scope, a.Action
	if scope == "" {
		scope = ClusterScope
	}
	if action == 0 {
		action = Admin
	}
	return auth.Authorize(p, scope, action)
}

// principal is who r is (the zero Principal: nobody).
func (a *HTTPAuth) principal(r *http.Request) (Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		if a.Authn == nil {
			return Principal{}, unauthenticated("this node takes no passwords or tokens (no --auth-file)")
		}
		scheme, rest, _ := strings.Cut(h, " ")
		switch {
		case strings.EqualFold(scheme, "Bearer"):
			tok := strings.TrimSpace(rest)
			if tok == "" {
				return Principal{}, unauthenticated("empty bearer token")
			}
			return a.Authn.AuthenticateToken(Secret(tok))
		case strings.EqualFold(scheme, "Basic"):
			user, pw, ok := r.BasicAuth()
			if !ok || user == "" {
				return Principal{}, unauthenticated("malformed basic credentials")
			}
			if a.Logins != nil {
				select {
				case a.Logins <- struct{}{}:
					defer func() { <-a.Logins }()
				case <-r.Context().Done():
					return Principal{}, unauthenticated("request cancelled while waiting for a password check")
				}
			}
			return a.Authn.AuthenticatePassword(user, Secret(pw))
		}
		return Principal{}, unauthenticated("unsupported Authorization scheme (want Bearer or Basic)")
	}
	if r.TLS != nil {
		if p, ok := statePrincipal(*r.TLS, a.NodeCAs); ok {
			return p, nil
		}
	}
	return Principal{}, nil
}

// refuse answers a refused request.
func (a *HTTPAuth) refuse(w http.ResponseWriter, r *http.Request, err error) {
	reason, status, code := RejectForbidden, http.StatusForbidden, "FORBIDDEN"
	if !errors.Is(err, ErrForbidden) {
		reason, status, code = RejectUnauthenticated, http.StatusUnauthorized, "NOAUTH"
		w.Header().Set("WWW-Authenticate", `Bearer realm="dialkv-admin", Basic realm="dialkv-admin"`)
	}
	if a.OnReject != nil {
		a.OnReject(reason)
	}
	if a.Logger != nil {
		a.Logger.Warn("admin request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "reason", reason, "err", err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%s %v\n", code, err)
}

// statePrincipal is the principal of a verified client certificate (see
// connContext); ok false without one.
func statePrincipal(st tls.ConnectionState, nodeCAs *x509.CertPool) (Principal, bool) {
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return Principal{}, false
	}
	leaf := st.PeerCertificates[0]
	cn := leaf.Subject.CommonName
	if cn == "" {
		return Principal{}, false
	}
	method := "cert"
	if nodeCAs != nil && IsNodeCert(st.PeerCertificates, nodeCAs) {
		method = MethodNode
	}
	return Principal{Name: cn, Method: method, serial: leaf.SerialNumber.Text(16)}, true
}

// AdminHTTP returns the HTTPAuth of the node's admin API for these
// settings (OnReject and Logger left to the caller).
func (s Settings) AdminHTTP() *HTTPAuth {
	return &HTTPAuth{Auth: s.Authorizer, Authn: s.Authenticator, NodeCAs: s.NodeCAs, Logins: NewLoginSlots(2)}
}
