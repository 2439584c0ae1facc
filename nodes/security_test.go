package nodes

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/cli"
	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// The secrets of the security tests: they must never show in a log line or
// in /metrics.
const (
	testPassword = "correct-horse-battery-staple-7f3a"
	testToken    = "tok-5d1c9a0b7e2f48c6a1b3d5e7f9021436"
)

// secEnv is a development CA with node and client certificates and a
// policy file, as docs/security.md makes them.
type secEnv struct {
	dir, policy string
}

func (e secEnv) path(name string) string { return filepath.Join(e.dir, name) }

func newSecEnv(t *testing.T) secEnv {
	t.Helper()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := security.CertsMain([]string{"--out", dir, "--nodes", "n1,n2", "--clients", "alice,reader,mallory"}, &out, &errb); code != 0 {
		t.Fatalf("dialkv certs: %d %s", code, errb.String())
	}
	// Cheap argon2id parameters keep the test fast; the node reads the
	// parameters from the hash.
	hash, err := security.HashPassword(testPassword, security.HashParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	pf := security.PolicyFile{
		Users:  map[string]security.UserEntry{"bob": {Password: hash}},
		Tokens: map[string]security.TokenEntry{"ci-bot": {SHA256: security.TokenDigest(testToken)}},
		Grants: []security.Grant{
			{Principals: []string{"alice"}, Namespaces: []string{"default", "kv"}, Actions: []string{"read", "write"}},
			{Principals: []string{"reader", "bob"}, Namespaces: []string{"default"}, Actions: []string{"read"}},
			{Principals: []string{"ci-bot"}, Namespaces: []string{"default"}, Actions: []string{"read", "write"}},
			{Principals: []string{"n1", "n2"}, Namespaces: []string{"*"}, Actions: []string{"admin"}},
		},
	}
	b, err := json.Marshal(pf)
	if err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(pol, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return secEnv{dir: dir, policy: pol}
}

// loadSecurity parses security flags exactly as `dialkv node` does.
func loadSecurity(t *testing.T, args ...string) security.Settings {
	t.Helper()
	var f security.Flags
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	s, err := f.Load(1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (e secEnv) clientTLS(t *testing.T, cert string) *tls.Config {
	t.Helper()
	f := security.TLSFiles{CA: e.path("ca.crt")}
	if cert != "" {
		f.Cert, f.Key = e.path(cert+".crt"), e.path(cert+".key")
	}
	cfg, err := security.ClientConfig(f, "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func secClient(t *testing.T, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New([]string{addr}, append([]client.Option{client.WithRetries(0, time.Millisecond, time.Millisecond), client.WithTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSecureNode runs a node with TLS, client certificates, a policy and
// debug logs, and checks each way in and each refusal through the Go
// client, the raw Thrift client and the CLI.
func TestSecureNode(t *testing.T) {
	env := newSecEnv(t)
	var logs syncBuffer
	sec := loadSecurity(t, "--tls-cert", env.path("node-n1.crt"), "--tls-key", env.path("node-n1.key"),
		"--tls-ca", env.path("ca.crt"), "--auth-file", env.policy)
	n := startNode(t, Config{Engine: "memory", MetricsAddr: "127.0.0.1:0", Security: sec,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if n.server.Mode() != transport.ModeGoroutine {
		t.Fatalf("TLS node in %s mode", n.server.Mode())
	}
	ctx := context.Background()

	t.Run("plain TCP gets no answer", func(t *testing.T) {
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		c, err := transport.Dial(dctx, n.Addr(), transport.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Ping(ctx); err == nil {
			t.Fatal("a plain client was served by a TLS listener")
		}
	})
	t.Run("TLS client without the CA refuses the node", func(t *testing.T) {
		cfg, err := security.ClientConfig(security.TLSFiles{}, "") // system roots only
		if err != nil {
			t.Fatal(err)
		}
		_, err = secClient(t, n.Addr(), client.WithTLS(cfg)).Ping(ctx)
		var ue x509.UnknownAuthorityError
		if !errors.Is(err, client.ErrConnection) || !errors.As(err, &ue) {
			t.Fatalf("ping without the CA: %v; want a connection error for an unknown authority", err)
		}
	})
	t.Run("a certificate from another CA is refused", func(t *testing.T) {
		other := newSecEnv(t) // a second, unrelated CA
		cfg := env.clientTLS(t, "")
		cert, err := tls.LoadX509KeyPair(other.path("client-alice.crt"), other.path("client-alice.key"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
		_, err = secClient(t, n.Addr(), client.WithTLS(cfg)).Set(ctx, "k", []byte("v"))
		if err == nil || errors.Is(err, client.ErrForbidden) {
			t.Fatalf("foreign certificate: %v; want the handshake refused", err)
		}
	})
	t.Run("no credentials: Unauthenticated, ping open", func(t *testing.T) {
		c := secClient(t, n.Addr(), client.WithTLS(env.clientTLS(t, "")))
		if _, err := c.Ping(ctx); err != nil {
			t.Fatalf("ping: %v", err)
		}
		if _, err := c.Get(ctx, "k"); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("GET without credentials: %v; want NOAUTH", err)
		}
		if _, err := c.ListNamespaces(ctx); err == nil {
			t.Fatal("list_namespaces without credentials succeeded")
		}
	})
	t.Run("certificate principal: grants per namespace", func(t *testing.T) {
		alice := secClient(t, n.Addr(), client.WithTLS(env.clientTLS(t, "client-alice")))
		if _, err := alice.Set(ctx, "k", []byte("v1")); err != nil {
			t.Fatalf("alice SET: %v", err)
		}
		if v, err := alice.Get(ctx, "k"); err != nil || v.String() != "v1" {
			t.Fatalf("alice GET = %q, %v", v, err)
		}
		other := client.With(ctx, client.Namespace("other"))
		if _, err := alice.Set(other, "k", []byte("v")); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("alice SET in namespace other: %v; want FORBIDDEN", err)
		}
		if err := alice.CreateNamespace(ctx, client.NamespaceSpec{Name: "app-1", Strategy: "local"}); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("alice creates a namespace: %v; want FORBIDDEN (admin needed)", err)
		}
		reader := secClient(t, n.Addr(), client.WithTLS(env.clientTLS(t, "client-reader")))
		if v, err := reader.Get(ctx, "k"); err != nil || v.String() != "v1" {
			t.Fatalf("reader GET = %q, %v", v, err)
		}
		if _, err := reader.Set(ctx, "k", []byte("v2")); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("reader SET: %v; want FORBIDDEN", err)
		}
		if _, err := reader.Incr(ctx, "k", 1); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("reader INCR: %v; want FORBIDDEN", err)
		}
		mallory := secClient(t, n.Addr(), client.WithTLS(env.clientTLS(t, "client-mallory")))
		if _, err := mallory.Get(ctx, "k"); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("mallory (no grant) GET: %v; want FORBIDDEN", err)
		}
		if v, _ := alice.Get(ctx, "k"); v.String() != "v1" {
			t.Fatalf("a refused write changed k to %q", v)
		}
	})
	t.Run("password login", func(t *testing.T) {
		bob := secClient(t, n.Addr(), client.WithTLS(env.clientTLS(t, "")), client.WithPassword("bob", testPassword))
		if v, err := bob.Get(ctx, "k"); err != nil || v.String() != "v1" {
			t.Fatalf("bob GET = %q, %v", v, err)
		}
		if _, err := bob.Set(ctx, "k", []byte("x")); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("bob (read-only) SET: %v; want FORBIDDEN", err)
		}
		for _, tc := range []struct{ user, pw string }{{"bob", "wrong"}, {"nobody", testPassword}} {
			c := secClient(t, n.Addr(), client.WithTLS(env.clientTLS(t, "")), client.WithPassword(tc.user, tc.pw))
			if _, err := c.Get(ctx, "k"); !errors.Is(err, client.ErrUnauthenticated) {
				t.Fatalf("login %s/%s: %v; want NOAUTH", tc.user, tc.pw, err)
			}
		}
	})
	t.Run("token login", func(t *testing.T) {
		bot := secClient(t, n.Addr(), client.WithTLS(env.clientTLS(t, "")), client.WithToken(testToken))
		if _, err := bot.Set(ctx, "t", []byte("1")); err != nil {
			t.Fatalf("token SET: %v", err)
		}
		bad := secClient(t, n.Addr(), client.WithTLS(env.clientTLS(t, "")), client.WithToken(testToken+"x"))
		if _, err := bad.Set(ctx, "t", []byte("2")); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("wrong token: %v; want NOAUTH", err)
		}
	})
	t.Run("a failed login drops the connection's principal", func(t *testing.T) {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := transport.Dial(dctx, n.Addr(), transport.DialOptions{TLS: env.clientTLS(t, ""), Login: &transport.Credentials{Secret: testToken}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Call(ctx, noOpts(), cmd("GET", "t")); err != nil {
			t.Fatalf("GET after token login: %v", err)
		}
		var ua *gen.Unauthenticated
		if _, err := c.Login(ctx, "bob", []byte("wrong")); !errors.As(err, &ua) {
			t.Fatalf("second login with a wrong password: %v", err)
		}
		if _, err := c.Call(ctx, noOpts(), cmd("GET", "t")); !errors.As(err, &ua) {
			t.Fatalf("GET after a failed login: %v; want Unauthenticated", err)
		}
	})
	t.Run("cli", func(t *testing.T) {
		pwFile := filepath.Join(t.TempDir(), "pw")
		os.WriteFile(pwFile, []byte(testPassword+"\n"), 0o600)
		for _, tc := range []struct {
			args []string
			code int
			out  string
		}{
			{[]string{"--tls-cert", env.path("client-alice.crt"), "--tls-key", env.path("client-alice.key"), "SET", "c", "1"}, 0, "OK\n"},
			{[]string{"--user", "bob", "--password-file", pwFile, "GET", "c"}, 0, "\"1\"\n"},
			{[]string{"--user", "bob", "--password-file", pwFile, "-e", "SET", "c", "2"}, 1, "(error) FORBIDDEN"},
			{[]string{"-e", "GET", "c"}, 1, "(error) NOAUTH"},
		} {
			var out, errb bytes.Buffer
			args := append([]string{"--addr", n.Addr(), "--history", "", "--tls-ca", env.path("ca.crt")}, tc.args...)
			code := cli.Main(args, &out, &errb)
			if code != tc.code || !strings.HasPrefix(out.String(), tc.out) {
				t.Errorf("dialkv cli %v: exit %d, out %q, err %q; want %d, %q", tc.args, code, out.String(), errb.String(), tc.code, tc.out)
			}
		}
	})
	t.Run("secrets never in logs or metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + n.MetricsAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(logs.String(), "login failed") {
			t.Fatalf("no failed login logged; logs:\n%s", logs.String())
		}
		for _, secret := range []string{testPassword, testToken} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a secret is in the logs:\n%s", logs.String())
			}
			if bytes.Contains(body, []byte(secret)) {
				t.Error("a secret is in /metrics")
			}
		}
	})
}

// TestRateLimitNode: --rate-limit refuses the requests over a connection's
// budget with Unavailable and a retry-after hint, in epoll mode (no TLS),
// and another connection is not affected.
func TestRateLimitNode(t *testing.T) {
	sec := loadSecurity(t, "--rate-limit", "1", "--rate-burst", "3")
	n := startNode(t, Config{Engine: "memory", Security: sec})
	ctx := context.Background()
	c := dial(t, n.Addr())
	var ua *gen.Unavailable
	for i := range 3 {
		if _, err := c.Call(ctx, noOpts(), cmd("SET", "k", "v")); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	_, err := c.Call(ctx, noOpts(), cmd("GET", "k"))
	if !errors.As(err, &ua) || ua.RetryAfterMs <= 0 || ua.RetryAfterMs > 1000 {
		t.Fatalf("request over the rate: %v; want Unavailable with retry_after_ms in (0, 1000]", err)
	}
	// A batch costs one token per command: refused on the drained
	// connection too.
	if _, err := c.Execute(ctx, noOpts(), []*gen.Command{cmd("GET", "a"), cmd("GET", "b"), cmd("GET", "c"), cmd("GET", "d"), cmd("GET", "e")}); !errors.As(err, &ua) {
		t.Fatalf("batch on a drained connection: %v; want Unavailable", err)
	}
	if _, err := dial(t, n.Addr()).Call(ctx, noOpts(), cmd("GET", "k")); err != nil {
		t.Fatalf("a fresh connection was throttled: %v", err)
	}
	// The Go client waits out the hint and retries.
	cl := secClient(t, n.Addr(), client.WithRetries(3, time.Millisecond, 2*time.Second), client.WithPoolSize(1))
	for i := range 5 {
		if _, err := cl.Get(ctx, "k"); err != nil {
			t.Fatalf("client GET %d under the rate limit: %v", i, err)
		}
	}
}

// TestSecureCluster: two members with mutual TLS between them (and TLS,
// client certificates and a policy on their client listeners) spread a
// quorum namespace over their client APIs and replicate writes over the
// peer API; a peer connection without a node certificate is refused.
func TestSecureCluster(t *testing.T) {
	env := newSecEnv(t)
	addrs := freeAddrs(t, 4)
	peers := []ClusterPeer{{ID: "n1", Client: addrs[0], Peer: addrs[1]}, {ID: "n2", Client: addrs[2], Peer: addrs[3]}}
	var logs syncBuffer
	nodes := make([]*ClusterNode, 2)
	for i, p := range peers {
		sec := loadSecurity(t, "--tls-cert", env.path("node-"+p.ID+".crt"), "--tls-key", env.path("node-"+p.ID+".key"),
			"--tls-ca", env.path("ca.crt"), "--auth-file", env.policy,
			"--peer-tls-cert", env.path("node-"+p.ID+".crt"), "--peer-tls-key", env.path("node-"+p.ID+".key"), "--peer-tls-ca", env.path("ca.crt"))
		cn, err := StartClusterNode(Config{ID: p.ID, Listen: p.Client, Engine: "memory", Security: sec,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)).With("node", p.ID)},
			ClusterConfig{Name: "sec", Peers: peers, CatalogSync: 200 * time.Millisecond})
		if err != nil {
			t.Fatalf("start %s: %v", p.ID, err)
		}
		nodes[i] = cn
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cn.Close(ctx)
		})
	}
	ctx := context.Background()
	admin := secClient(t, peers[0].Client, client.WithTLS(env.clientTLS(t, "node-n1")))
	if err := admin.CreateNamespace(ctx, client.NamespaceSpec{Name: "kv", Strategy: "quorum", Params: map[string]string{"n": "2", "timeout": "1s"}}); err != nil {
		t.Fatalf("create kv: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for nodes[1].namespace("kv") == nil {
		if time.Now().After(deadline) {
			t.Fatalf("namespace kv did not spread to n2 over TLS; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	alice1 := secClient(t, peers[0].Client, client.WithTLS(env.clientTLS(t, "client-alice")))
	alice2 := secClient(t, peers[1].Client, client.WithTLS(env.clientTLS(t, "client-alice")))
	kv := client.With(ctx, client.Namespace("kv"))
	if _, err := alice1.Set(client.With(kv, client.W(2)), "k", []byte("v")); err != nil {
		t.Fatalf("SET at n1 with W=2 (n2 must acknowledge over mutual TLS): %v\nlogs:\n%s", err, logs.String())
	}
	if v, err := alice2.Get(client.With(kv, client.R(2)), "k"); err != nil || v.String() != "v" {
		t.Fatalf("GET at n2 with R=2 = %q, %v", v, err)
	}
	if d := nodes[1].PeerStats().Delivered; d == 0 {
		t.Fatal("n2 received no peer message")
	}

	// Intruders on n1's peer port: a client certificate from the same CA,
	// and plain TCP. Neither gets a message delivered.
	aliceTLS := env.clientTLS(t, "client-alice")
	for name, o := range map[string]transport.PeerSenderOptions{
		"client certificate": {TLS: aliceTLS, Timeout: time.Second},
		"plain TCP":          {Timeout: time.Second},
	} {
		before := nodes[0].PeerStats().Rejected
		s := transport.NewPeerSender(peers[0].Peer, "sec", o)
		deadline := time.Now().Add(10 * time.Second)
		for nodes[0].PeerStats().Rejected == before {
			if time.Now().After(deadline) {
				s.Close()
				t.Fatalf("%s: n1 did not refuse the connection", name)
			}
			s.Send(transport.PeerMessage{Namespace: "kv", From: "n2", To: "n1", Body: []byte("forged")})
			time.Sleep(50 * time.Millisecond)
		}
		if d := s.Stats().Delivered; d != 0 {
			t.Fatalf("%s: %d forged messages accepted", name, d)
		}
		s.Close()
	}
}
