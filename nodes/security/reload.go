package security

import (
	"crypto/tls"
	"errors"
	"sync"
	"sync/atomic"
)

// PolicyStore holds a node's current policy (--auth-file) and replaces it
// when the file changes: Reload (SIGHUP on `dialkv node`). It is the
// node's Authorizer and Authenticator, so every request is checked against
// the policy current when it arrives. A request on a connection that
// logged in earlier is checked too (Policy.Valid): removing a user or a
// token, or changing a password or a token's digest, refuses the next
// request of every session that used it, and revoking a certificate
// (revoked_certs) refuses the next request of every connection that
// presented it, as well as new handshakes (VerifyClientCert).
type PolicyStore struct {
	path string
	mu   sync.Mutex // serializes Reload
	cur  atomic.Pointer[Policy]
}

var (
	_ Authorizer    = (*PolicyStore)(nil)
	_ Authenticator = (*PolicyStore)(nil)
)

// OpenPolicyStore loads the policy file at path.
func OpenPolicyStore(path string) (*PolicyStore, error) {
	p, err := LoadPolicy(path)
	if err != nil {
		return nil, err
	}
	s := &PolicyStore{path: path}
	s.cur.Store(p)
	return s, nil
}

// NewPolicyStore holds p; it has no file, so Reload fails.
func NewPolicyStore(p *Policy) *PolicyStore {
	s := &PolicyStore{}
	s.cur.Store(p)
	return s
}

// Policy is the current policy.
func (s *PolicyStore) Policy() *Policy { return s.cur.Load() }

// Reload reads the file again. A file that does not parse leaves the
// current policy in force and returns the error (which names the entry,
// never a secret).
func (s *PolicyStore) Reload() (PolicySummary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		return PolicySummary{}, errors.New("security: this policy has no file to reload")
	}
	p, err := LoadPolicy(s.path)
	if err != nil {
		return PolicySummary{}, err
	}
	s.cur.Store(p)
	return p.Summary(), nil
}

// Authorize implements Authorizer with the current policy.
func (s *PolicyStore) Authorize(pr Principal, namespace string, action Action) error {
	return s.cur.Load().Authorize(pr, namespace, action)
}

// Valid checks pr's credential against the current policy (Policy.Valid).
func (s *PolicyStore) Valid(pr Principal) error { return s.cur.Load().Valid(pr) }

// AuthenticatePassword implements Authenticator with the current policy.
func (s *PolicyStore) AuthenticatePassword(user string, password Secret) (Principal, error) {
	return s.cur.Load().AuthenticatePassword(user, password)
}

// AuthenticateToken implements Authenticator with the current policy.
func (s *PolicyStore) AuthenticateToken(token Secret) (Principal, error) {
	return s.cur.Load().AuthenticateToken(token)
}

// VerifyClientCert is a tls.Config.VerifyConnection for the client
// listener: it refuses a client certificate whose serial number the
// current policy revokes. Connections without a certificate pass (they
// log in, or are refused by the policy).
func (s *PolicyStore) VerifyClientCert(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if s.cur.Load().CertRevoked(leaf.SerialNumber) {
		return tlsErr("client certificate %q (serial %s) is revoked", leaf.Subject.CommonName, leaf.SerialNumber.Text(16))
	}
	return nil
}

// VerifyPeerCert is a tls.Config.VerifyConnection for node-to-node TLS
// (peer port, peer senders, Raft): it refuses a peer whose certificate the
// current policy revokes (revoked_certs), whichever side dialled. The
// other checks (a node certificate of the CA, of a member) are the
// configuration's own.
func (s *PolicyStore) VerifyPeerCert(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if s.cur.Load().CertRevoked(leaf.SerialNumber) {
		return tlsErr("peer certificate %q (serial %s) is revoked", leaf.Subject.CommonName, leaf.SerialNumber.Text(16))
	}
	return nil
}
