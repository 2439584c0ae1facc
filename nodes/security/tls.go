package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// ErrTLSConfig is wrapped by every error about TLS files or settings.
var ErrTLSConfig = errors.New("bad TLS configuration")

// TLSFiles names the PEM files of one side of a TLS connection.
type TLSFiles struct {
	Cert string // certificate chain (leaf first)
	Key  string // private key of the leaf
	CA   string // CA bundle used to verify the other side; empty: system roots (clients) / no client auth (servers)
}

func tlsErr(format string, args ...any) error {
	return fmt.Errorf("security: %w: "+format, append([]any{ErrTLSConfig}, args...)...)
}

// loadKeyPair loads a certificate and key with errors that say which file
// is wrong and how.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, tlsErr("a certificate needs both a cert file and a key file (got cert %q, key %q)", certFile, keyFile)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, tlsErr("certificate: %v", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, tlsErr("key: %v", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The tls error never contains key material.
		return tls.Certificate{}, tlsErr("certificate %s with key %s: %v", certFile, keyFile, err)
	}
	return cert, nil
}

// loadCAPool loads PEM bundles of one or more CA certificates into one
// pool.
func loadCAPool(caFiles ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, caFile := range caFiles {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, tlsErr("CA bundle: %v", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, tlsErr("CA bundle %s holds no PEM certificate", caFile)
		}
	}
	return pool, nil
}

// baseConfig is the shared hardening: TLS 1.2 or newer, and for TLS 1.2
// only AEAD suites with forward secrecy (Go's TLS 1.3 suites are fixed and
// all good).
func baseConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// ServerConfig returns the TLS configuration of the client listener
// (--tls-cert, --tls-key, --tls-ca). With a CA, clients must present a
// certificate signed by it (mutual TLS; the certificate's common name
// becomes the principal); without one, any client may connect and must
// authenticate otherwise.
func ServerConfig(f TLSFiles) (*tls.Config, error) {
	cert, err := loadKeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	cfg := baseConfig()
	cfg.Certificates = []tls.Certificate{cert}
	if f.CA != "" {
		pool, err := loadCAPool(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientConfig returns the TLS configuration of a client. CA empty: the
// system roots. Cert and Key are optional (both or neither): the client
// certificate for mutual TLS. serverName overrides the name checked in the
// node's certificate (empty: the host dialled).
func ClientConfig(f TLSFiles, serverName string) (*tls.Config, error) {
	cfg := baseConfig()
	cfg.ServerName = serverName
	if f.CA != "" {
		pool, err := loadCAPool(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if f.Cert != "" || f.Key != "" {
		cert, err := loadKeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// PeerConfigs returns the TLS configurations of the peer listener and of
// the peer dialer (--peer-tls-cert, --peer-tls-key, --peer-tls-ca). Between
// nodes TLS is always mutual: each side presents its node certificate and
// verifies the other's against the CA, so a machine without a node
// certificate cannot join or impersonate a replica. A node certificate must
// therefore allow both server and client use (dialkv certs makes it so).
func PeerConfigs(f TLSFiles) (server, client *tls.Config, err error) {
	if f.CA == "" {
		return nil, nil, tlsErr("peer TLS is mutual and needs a CA bundle (--peer-tls-ca)")
	}
	cert, err := loadKeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, err
	}
	pool, err := loadCAPool(f.CA)
	if err != nil {
		return nil, nil, err
	}
	server = baseConfig()
	server.Certificates = []tls.Certificate{cert}
	server.ClientCAs = pool
	server.ClientAuth = tls.RequireAndVerifyClientCert
	server.VerifyConnection = requireNodeCert
	client = baseConfig()
	client.Certificates = []tls.Certificate{cert}
	client.RootCAs = pool
	return server, client, nil
}

// ConnContext derives a request context from a connection: for a TLS
// connection whose client presented a verified certificate, it completes
// the handshake and carries the certificate's common name as a Principal
// (method "cert"). It returns an error if the handshake fails. Use it
// where the server accepts a connection.
func ConnContext(ctx context.Context, nc net.Conn) (context.Context, error) {
	return connContext(ctx, nc, nil)
}

// connContext is ConnContext; with nodeCAs, a certificate that is a node
// certificate signed by them (IsNodeCert) makes a node principal (method
// "node", see NodePrincipal) instead of a "cert" one.
func connContext(ctx context.Context, nc net.Conn, nodeCAs *x509.CertPool) (context.Context, error) {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return ctx, nil
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return ctx, fmt.Errorf("security: TLS handshake with %s: %w", nc.RemoteAddr(), err)
	}
	if p, ok := statePrincipal(tc.ConnectionState(), nodeCAs); ok {
		return WithPrincipal(ctx, p), nil
	}
	return ctx, nil
}

// IsNodeCert reports whether chain (leaf first, as a TLS peer sent it) is
// a node certificate signed by nodeCAs (the --peer-tls-ca bundle): it
// verifies against them and allows server use, which `dialkv certs` gives
// node certificates and never client ones. Such a certificate is trusted
// on the peer port to replicate every namespace, so on the client
// listener it is a node principal with admin everywhere (NodePrincipal):
// nodes call each other's client API for catalog sync, raft rebuilds and
// rebalancing, and an operator may run `dialkv admin` with a node's
// certificate.
func IsNodeCert(chain []*x509.Certificate, nodeCAs *x509.CertPool) bool {
	if len(chain) == 0 || nodeCAs == nil {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: nodeCAs, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err == nil && requireNodeCert(tls.ConnectionState{PeerCertificates: chain}) == nil
}

// requireNodeCert refuses a peer whose verified certificate is not a node
// certificate: node certificates allow server use, client certificates from
// `dialkv certs --clients` do not, so a client cannot pose as a node on the
// peer port.
func requireNodeCert(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return tlsErr("peer presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	for _, u := range leaf.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return nil
		}
	}
	return tlsErr("peer certificate %q is not a node certificate (it does not allow server use)", leaf.Subject.CommonName)
}

// NodeIdentity returns a tls.Config.VerifyConnection that accepts the
// other side only if it presented a node certificate (see PeerConfigs)
// whose name is a node: isNode must accept its common name or one of its
// DNS names. A client certificate of the same CA, and a node certificate
// of a machine that is not a member, are refused in the handshake.
func NodeIdentity(isNode func(name string) bool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if err := requireNodeCert(cs); err != nil {
			return err
		}
		leaf := cs.PeerCertificates[0]
		if leaf.Subject.CommonName != "" && isNode(leaf.Subject.CommonName) {
			return nil
		}
		for _, n := range leaf.DNSNames {
			if isNode(n) {
				return nil
			}
		}
		return tlsErr("peer certificate %q names no member node", leaf.Subject.CommonName)
	}
}

// RaftConfigs returns the TLS configurations of a Raft transport
// (transport/raftls) from the peer TLS files: mutual, and on both sides
// the other end must hold a node certificate of a member (NodeIdentity)
// and pass revoked, if set (Settings.PeerRevoked: the policy's
// revoked_certs).
func RaftConfigs(f TLSFiles, isNode func(name string) bool, revoked func(tls.ConnectionState) error) (server, client *tls.Config, err error) {
	server, client, err = PeerConfigs(f)
	if err != nil {
		return nil, nil, err
	}
	check := NodeIdentity(isNode)
	if revoked != nil {
		check = chainVerify(check, revoked)
	}
	server.VerifyConnection = check
	client.VerifyConnection = check
	return server, client, nil
}
