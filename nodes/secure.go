package nodes

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// Login is only reached on a node without security settings (with them,
// security.Guard answers it): there is nothing to log in to.
func (h *handler) Login(context.Context, string, []byte) (string, error) {
	return "", &gen.InvalidArgument{Message: "login: this node has no authentication configured (--auth-file); no login is needed", Code: "ERR"}
}

// secured reports whether any security setting is on. Without one the
// node serves its handler directly (the Guard costs ~1 µs and 4
// allocations per call).
func secured(s security.Settings) bool {
	_, open := s.Authorizer.(security.AllowAll)
	return s.ClientTLS != nil || s.Authenticator != nil || s.NewLimiter != nil || s.Shedder != nil ||
		(s.Authorizer != nil && !open)
}

// processor builds the client API's processor and the transport settings
// the security settings need: the Guard around the handler, the
// per-connection context (TLS principal, login session, rate limiter), and
// goroutine mode under TLS (epoll mode reads raw sockets).
func (n *Node) processor(tc *transport.ServerConfig) thrift.TProcessor {
	h := &handler{n: n}
	s := n.cfg.Security
	if !secured(s) {
		p := gen.NewDialKVProcessor(h)
		transport.FastExecute(p, h)
		return p
	}
	if s.Authorizer == nil {
		s.Authorizer = security.AllowAll{}
	}
	tc.ConnContext = s.ConnContext
	if s.ClientTLS != nil {
		tc.Mode = transport.ModeGoroutine
	}
	g := s.Guard(h, n.log)
	g.OnReject = n.metrics.rejected
	p := gen.NewDialKVProcessor(g)
	transport.FastExecute(p, g)
	return p
}

// listen opens the client listener, under TLS when configured. The TLS
// handshake runs in the connection's goroutine (transport's ConnContext),
// never in Accept.
func (n *Node) listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return nil, err
	}
	if n.cfg.Security.ClientTLS != nil {
		ln = tls.NewListener(ln, n.cfg.Security.ClientTLS)
	}
	return ln, nil
}

// reloadSecurity re-reads the --auth-file policy (dialkv node on SIGHUP):
// users, tokens, grants and revoked certificates take effect on the next
// request of every connection, open ones included, and the open peer and
// Raft connections of revoked node certificates are closed. A file that does not
// parse leaves the previous policy in force; either way the outcome is
// logged, with counts and the parse error but never a secret.
func reloadSecurity(sec security.Settings, log *slog.Logger) {
	if sec.Policy == nil {
		log.Warn("SIGHUP: nothing to reload (no --auth-file)")
		return
	}
	sum, err := sec.Policy.Reload()
	if err != nil {
		log.Error("security policy reload failed; the previous policy stays in force", "err", err)
		return
	}
	// Node certificates revoked by this file lose their open peer and
	// Raft connections now; their next handshake is refused.
	closed := sec.CloseRevokedPeers()
	log.Info("security policy reloaded", "users", sum.Users, "tokens", sum.Tokens, "grants", sum.Grants, "revoked_certs", sum.RevokedCerts,
		"revoked_tokens", sum.RevokedTokens, "revoked_users", sum.RevokedUsers, "peer_conns_closed", closed)
}

// clientDial is how this node dials another node's client API: under TLS
// with its node certificate (--peer-tls-*) when client listeners use TLS
// (the same rule as a cluster member's catalog calls).
func (n *Node) clientDial() transport.DialOptions {
	if n.cfg.Security.ClientTLS == nil {
		return transport.DialOptions{}
	}
	return transport.DialOptions{TLS: n.cfg.Security.PeerClientTLS}
}
