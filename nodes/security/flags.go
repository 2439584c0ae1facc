package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"runtime"

	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// Flags are the security flags of `dialkv node` (docs/security.md lists
// them). Register adds them to a flag set;
// Load turns them into Settings, checking that they make sense together.
type Flags struct {
	TLSCert, TLSKey, TLSCA             string
	PeerTLSCert, PeerTLSKey, PeerTLSCA string
	AuthFile                           string
	GossipKeyFile                      string
	RateLimit                          float64 // requests per second per connection; 0: no limit
	RateBurst                          int
	MaxInFlight                        int // 0: no load shedding
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.TLSCert, "tls-cert", "", "PEM certificate of the client listener (enables TLS; needs --tls-key)")
	fs.StringVar(&f.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.TLSCA, "tls-ca", "", "CA bundle of client certificates (mutual TLS; the certificate's common name is the principal): required from every client, or with --auth-file one way to authenticate beside passwords and tokens")
	fs.StringVar(&f.PeerTLSCert, "peer-tls-cert", "", "PEM node certificate for mutual TLS between nodes (needs --peer-tls-key and --peer-tls-ca)")
	fs.StringVar(&f.PeerTLSKey, "peer-tls-key", "", "PEM private key of --peer-tls-cert")
	fs.StringVar(&f.PeerTLSCA, "peer-tls-ca", "", "CA bundle that signs every node certificate")
	fs.StringVar(&f.GossipKeyFile, "gossip-key-file", "", "file with the cluster's gossip key (base64 of 16, 24 or 32 bytes, from: dialkv secret gossip-key): memberlist traffic is encrypted and authenticated with AES-GCM, and members without the key cannot join")
	fs.StringVar(&f.AuthFile, "auth-file", "", "JSON policy of users, tokens and per-namespace grants (see docs/security.md)")
	fs.Float64Var(&f.RateLimit, "rate-limit", 0, "requests per second allowed per connection (0: no limit)")
	fs.IntVar(&f.RateBurst, "rate-burst", 0, "burst of --rate-limit (default: one second's worth, at least 1)")
	fs.IntVar(&f.MaxInFlight, "max-inflight", 0, "requests processed at once before shedding load with a retry-after hint (0: no limit)")
}

// Settings are loaded security flags.
type Settings struct {
	ClientTLS     *tls.Config // nil: plain TCP
	PeerServerTLS *tls.Config // nil: plain peer traffic
	PeerClientTLS *tls.Config
	// PeerTLSFiles are the files of --peer-tls-cert/-key/-ca (empty
	// without peer TLS). Raft namespaces hand them to Dragonboat, whose
	// transport loads them itself (NodeHostConfig.MutualTLS).
	PeerTLSFiles TLSFiles
	// NodeCAs is the --peer-tls-ca pool: on the client listener, a
	// certificate it signed that allows server use is a node principal
	// (IsNodeCert, MethodNode). nil without peer TLS.
	NodeCAs       *x509.CertPool
	Authorizer    Authorizer    // AllowAll without --auth-file
	Authenticator Authenticator // checks logins; nil without --auth-file
	// Policy is the reloadable --auth-file policy (also Authorizer and
	// Authenticator); nil without --auth-file. Reload it on SIGHUP.
	Policy *PolicyStore
	// NewLimiter makes one connection's rate limiter; nil without
	// --rate-limit.
	NewLimiter func() *TokenBucket
	Shedder    *Shedder // nil without --max-inflight
	// GossipKey is memberlist's SecretKey (raw 16, 24 or 32 bytes) from
	// --gossip-key-file; empty: gossip in clear.
	GossipKey Secret
	// PeerRevoked refuses, in a handshake, a peer certificate the current
	// policy revokes (revoked_certs): with --auth-file and peer TLS it is
	// in PeerServerTLS and PeerClientTLS already, and the Raft transport
	// adds it to its own configurations (RaftConfigs); nil otherwise.
	PeerRevoked func(tls.ConnectionState) error
	// PeerConns tracks the open node-to-node TLS connections (peer port,
	// peer senders, Raft), so CloseRevokedPeers can close those of a
	// certificate revoked by a reload; nil without peer TLS.
	PeerConns *transport.TLSConns
}

// CloseRevokedPeers closes the open node-to-node connections whose other
// end presented a certificate the current policy revokes, and returns how
// many it closed (call it after Policy.Reload; SIGHUP on dialkv node).
func (s Settings) CloseRevokedPeers() int {
	if s.Policy == nil {
		return 0
	}
	return s.PeerConns.CloseIf(func(leaf *x509.Certificate) bool { return s.Policy.Policy().CertRevoked(leaf.SerialNumber) })
}

// chainVerify returns a VerifyConnection that runs first, then second
// (either may be nil).
func chainVerify(first, second func(tls.ConnectionState) error) func(tls.ConnectionState) error {
	if first == nil {
		return second
	}
	return func(cs tls.ConnectionState) error {
		if err := first(cs); err != nil {
			return err
		}
		return second(cs)
	}
}

// ErrBadFlags is wrapped by errors about flags that do not fit together.
var ErrBadFlags = errors.New("bad security flags")

// Load reads the files the flags name. seed seeds the shedder's jitter.
func (f *Flags) Load(seed uint64) (Settings, error) {
	bad := func(format string, args ...any) (Settings, error) {
		return Settings{}, fmt.Errorf("security: %w: "+format, append([]any{ErrBadFlags}, args...)...)
	}
	s := Settings{Authorizer: AllowAll{}}
	if f.TLSCert != "" || f.TLSKey != "" || f.TLSCA != "" {
		if f.TLSCert == "" || f.TLSKey == "" {
			return bad("--tls-cert and --tls-key go together (--tls-ca needs both)")
		}
		cfg, err := ServerConfig(TLSFiles{Cert: f.TLSCert, Key: f.TLSKey, CA: f.TLSCA})
		if err != nil {
			return Settings{}, err
		}
		s.ClientTLS = cfg
	}
	if f.PeerTLSCert != "" || f.PeerTLSKey != "" || f.PeerTLSCA != "" {
		if f.PeerTLSCert == "" || f.PeerTLSKey == "" || f.PeerTLSCA == "" {
			return bad("--peer-tls-cert, --peer-tls-key and --peer-tls-ca go together (peer TLS is always mutual)")
		}
		srv, cli, err := PeerConfigs(TLSFiles{Cert: f.PeerTLSCert, Key: f.PeerTLSKey, CA: f.PeerTLSCA})
		if err != nil {
			return Settings{}, err
		}
		s.PeerServerTLS, s.PeerClientTLS = srv, cli
		s.NodeCAs = srv.ClientCAs
		s.PeerTLSFiles = TLSFiles{Cert: f.PeerTLSCert, Key: f.PeerTLSKey, CA: f.PeerTLSCA}
		s.PeerConns = transport.NewTLSConns()
	}
	if f.AuthFile != "" {
		if f.TLSCert == "" {
			// Passwords and tokens must not cross the network in clear.
			return bad("--auth-file needs TLS on the client listener (--tls-cert, --tls-key): passwords and tokens must not travel in clear")
		}
		p, err := OpenPolicyStore(f.AuthFile)
		if err != nil {
			return Settings{}, err
		}
		s.Policy, s.Authorizer, s.Authenticator = p, p, p
		if s.PeerServerTLS != nil {
			// The deny-list holds node certificates too: a revoked one is
			// refused by both ends of a peer or Raft handshake.
			s.PeerRevoked = p.VerifyPeerCert
			s.PeerServerTLS.VerifyConnection = chainVerify(s.PeerServerTLS.VerifyConnection, p.VerifyPeerCert)
			s.PeerClientTLS.VerifyConnection = chainVerify(s.PeerClientTLS.VerifyConnection, p.VerifyPeerCert)
		}
		if f.PeerTLSCA != "" {
			// Other nodes call this node's client API with their node
			// certificate (catalog sync, raft rebuild and rebalancing):
			// the listener also accepts certificates of the peer CA, and
			// a node certificate among them is a node principal.
			files := []string{f.PeerTLSCA}
			if f.TLSCA != "" {
				files = append(files, f.TLSCA)
			}
			pool, err := loadCAPool(files...)
			if err != nil {
				return Settings{}, err
			}
			s.ClientTLS.ClientCAs = pool
		}
		if s.ClientTLS.ClientCAs != nil {
			// A client certificate is one way in among three: clients
			// without one log in with a password or a token, and requests
			// with neither are refused by the policy.
			s.ClientTLS.ClientAuth = tls.VerifyClientCertIfGiven
			// Revoked certificates (the policy's revoked_certs, reloaded
			// with it) fail the handshake.
			s.ClientTLS.VerifyConnection = p.VerifyClientCert
		}
	}
	if f.GossipKeyFile != "" {
		k, err := LoadGossipKey(f.GossipKeyFile)
		if err != nil {
			return Settings{}, err
		}
		s.GossipKey = k
	}
	if f.RateLimit < 0 || f.RateBurst < 0 || f.MaxInFlight < 0 {
		return bad("--rate-limit, --rate-burst and --max-inflight must not be negative")
	}
	if f.RateLimit > 0 {
		burst := f.RateBurst
		if burst == 0 {
			burst = max(1, int(f.RateLimit))
		}
		if _, err := NewTokenBucket(f.RateLimit, burst); err != nil {
			return Settings{}, err
		}
		rate := f.RateLimit
		s.NewLimiter = func() *TokenBucket {
			b, _ := NewTokenBucket(rate, burst) // validated above
			return b
		}
	} else if f.RateBurst > 0 {
		return bad("--rate-burst needs --rate-limit")
	}
	if f.MaxInFlight > 0 {
		sh, err := NewShedder(ShedderConfig{MaxInFlight: f.MaxInFlight, Seed: seed})
		if err != nil {
			return Settings{}, err
		}
		s.Shedder = sh
	}
	return s, nil
}

// ConnContext is the transport.ServerConfig.ConnContext of the client
// listener: it completes a TLS handshake and binds a verified client
// certificate's common name (see the package-level ConnContext; a node
// certificate of NodeCAs makes a MethodNode principal), gives the
// connection a login Session and, with --rate-limit, its own TokenBucket.
// nc is nil in epoll mode (no TLS).
func (s Settings) ConnContext(ctx context.Context, nc net.Conn) (context.Context, error) {
	if nc != nil {
		var err error
		if ctx, err = connContext(ctx, nc, s.NodeCAs); err != nil {
			return nil, err
		}
	}
	ctx = WithSession(ctx)
	if s.NewLimiter != nil {
		ctx = WithLimiter(ctx, s.NewLimiter())
	}
	return ctx, nil
}

// Guard wraps a node's handler with the settings' authorization, login
// checks and load shedding. logger receives failed logins.
func (s Settings) Guard(inner gen.DialKV, logger *slog.Logger) *Guard {
	return &Guard{
		Inner:   inner,
		Auth:    s.Authorizer,
		Authn:   s.Authenticator,
		Shedder: s.Shedder,
		Logins:  NewLoginSlots(runtime.GOMAXPROCS(0)),
		Logger:  logger,
	}
}
