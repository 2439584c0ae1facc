package transport

import (
	"crypto/tls"
	"crypto/x509"
	"sync"
)

// TLSConns is a set of open TLS connections whose handshake completed,
// so that the ones whose other end presented a given certificate can be
// closed later: a node revokes a peer's certificate (the policy's
// revoked_certs, reloaded on SIGHUP) and closes the connections already
// open with it. The peer server, the peer senders and the Raft transport
// (transport/raftls) add their connections when a TLS set is configured.
// A nil *TLSConns tracks nothing. It is safe for concurrent use.
type TLSConns struct {
	mu sync.Mutex
	m  map[*tls.Conn]struct{}
}

// NewTLSConns returns an empty set.
func NewTLSConns() *TLSConns { return &TLSConns{m: map[*tls.Conn]struct{}{}} }

// Add tracks c (its handshake must be complete) until the returned
// function is called; call it when c is closed.
func (s *TLSConns) Add(c *tls.Conn) (remove func()) {
	if s == nil {
		return func() {}
	}
	s.mu.Lock()
	s.m[c] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.m, c)
		s.mu.Unlock()
	}
}

// Len is the number of tracked connections.
func (s *TLSConns) Len() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// CloseIf closes (and stops tracking) every connection whose other end's
// leaf certificate makes drop true, and returns how many it closed.
func (s *TLSConns) CloseIf(drop func(leaf *x509.Certificate) bool) int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	var victims []*tls.Conn
	for c := range s.m {
		if st := c.ConnectionState(); len(st.PeerCertificates) > 0 && drop(st.PeerCertificates[0]) {
			victims = append(victims, c)
			delete(s.m, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
	return len(victims)
}
