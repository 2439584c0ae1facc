package security

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// devCerts makes a CA, node n1 and clients alice and reader in a temporary
// directory with dialkv certs, and returns the directory.
func devCerts(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := CertsMain([]string{"--out", dir, "--nodes", "n1,n2", "--clients", "alice,reader"}, &out, &errb); code != 0 {
		t.Fatalf("dialkv certs: exit %d: %s", code, errb.String())
	}
	return dir
}

func files(dir, base string, withCA bool) TLSFiles {
	f := TLSFiles{Cert: filepath.Join(dir, base+".crt"), Key: filepath.Join(dir, base+".key")}
	if withCA {
		f.CA = filepath.Join(dir, "ca.crt")
	}
	return f
}

// handshake runs a TLS handshake over loopback and returns the server's
// connection context and both errors.
func handshake(t *testing.T, server, client *tls.Config) (context.Context, error, error) {
	t.Helper()
	return handshakeWith(t, server, client, ConnContext)
}

// handshakeWith is handshake with the server side's connection context
// made by connCtx (e.g. Settings.ConnContext).
func handshakeWith(t *testing.T, server, client *tls.Config, connCtx func(context.Context, net.Conn) (context.Context, error)) (context.Context, error, error) {
	t.Helper()
	// Loopback TCP, not net.Pipe: a pipe has no buffer, so a side that
	// aborts mid-flight would deadlock against the other's pending write.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	deadline := time.Now().Add(5 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	type res struct {
		ctx context.Context
		err error
	}
	ch := make(chan res, 1)
	go func() {
		ctx, err := connCtx(context.Background(), tls.Server(a, server))
		if err != nil {
			a.Close() // unblock the client
		}
		ch <- res{ctx, err}
	}()
	tc := tls.Client(b, client)
	cerr := tc.Handshake()
	if cerr == nil {
		// With TLS 1.3 the client finishes before the server has checked
		// its certificate; a read surfaces the server's verdict.
		tc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		var one [1]byte
		if _, err := tc.Read(one[:]); err != nil {
			var ne net.Error
			if !(errors.As(err, &ne) && ne.Timeout()) {
				cerr = err
			}
		}
	}
	b.Close()
	r := <-ch
	return r.ctx, r.err, cerr
}

func TestTLSHandshakes(t *testing.T) {
	dir := devCerts(t)
	srvNoCA, err := ServerConfig(files(dir, "node-n1", false))
	if err != nil {
		t.Fatal(err)
	}
	srvMTLS, err := ServerConfig(files(dir, "node-n1", true))
	if err != nil {
		t.Fatal(err)
	}
	anon, err := ClientConfig(TLSFiles{CA: filepath.Join(dir, "ca.crt")}, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := ClientConfig(files(dir, "client-alice", true), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	noRoots, _ := ClientConfig(TLSFiles{}, "localhost")
	noRoots.RootCAs = x509.NewCertPool() // trusts nothing

	t.Run("server-only TLS, anonymous client", func(t *testing.T) {
		ctx, serr, cerr := handshake(t, srvNoCA, anon)
		if serr != nil || cerr != nil {
			t.Fatalf("server %v client %v", serr, cerr)
		}
		if _, ok := PrincipalFrom(ctx); ok {
			t.Fatal("anonymous client got a principal")
		}
	})
	t.Run("mutual TLS gives the CN as principal", func(t *testing.T) {
		ctx, serr, cerr := handshake(t, srvMTLS, alice)
		if serr != nil || cerr != nil {
			t.Fatalf("server %v client %v", serr, cerr)
		}
		p, ok := PrincipalFrom(ctx)
		if !ok || p.Name != "alice" || p.Method != "cert" || p.serial == "" {
			t.Fatalf("principal %+v %v; want alice/cert", p, ok)
		}
	})
	t.Run("mutual TLS refuses a client without a certificate", func(t *testing.T) {
		_, serr, _ := handshake(t, srvMTLS, anon)
		if serr == nil {
			t.Fatal("server accepted a client without a certificate")
		}
	})
	t.Run("client refuses a server it does not trust", func(t *testing.T) {
		_, _, cerr := handshake(t, srvNoCA, noRoots)
		if cerr == nil {
			t.Fatal("client accepted an untrusted server")
		}
	})
	t.Run("client refuses a wrong server name", func(t *testing.T) {
		wrong := anon.Clone()
		wrong.ServerName = "evil.example"
		_, _, cerr := handshake(t, srvNoCA, wrong)
		if cerr == nil || !strings.Contains(cerr.Error(), "evil.example") {
			t.Fatalf("client err %v; want a name mismatch", cerr)
		}
	})
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		old := anon.Clone()
		old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		_, serr, cerr := handshake(t, srvNoCA, old)
		if serr == nil || cerr == nil {
			t.Fatalf("TLS 1.1 accepted: server %v client %v", serr, cerr)
		}
	})
	t.Run("peers: mutual, and a client certificate cannot pose as a node", func(t *testing.T) {
		ps, pc, err := PeerConfigs(files(dir, "node-n1", true))
		if err != nil {
			t.Fatal(err)
		}
		_, pc2, err := PeerConfigs(files(dir, "node-n2", true))
		if err != nil {
			t.Fatal(err)
		}
		pc.ServerName, pc2.ServerName = "n1", "n1"
		ctx, serr, cerr := handshake(t, ps, pc2)
		if serr != nil || cerr != nil {
			t.Fatalf("n2 -> n1: server %v client %v", serr, cerr)
		}
		if p, _ := PrincipalFrom(ctx); p.Name != "n2" {
			t.Fatalf("peer principal %q; want n2", p.Name)
		}
		// alice's certificate lacks server use: as a "node" it is refused.
		aliceAsServer, err := ServerConfig(files(dir, "client-alice", false))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, cerr := handshake(t, aliceAsServer, pc); cerr == nil {
			t.Fatal("a peer accepted a client certificate as a node's")
		}
	})
}

func TestTLSConfigErrors(t *testing.T) {
	dir := devCerts(t)
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"), 0o600)
	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, nil, 0o600)
	missing := filepath.Join(dir, "missing.pem")
	node := files(dir, "node-n1", true)
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"missing cert", func() error { _, err := ServerConfig(TLSFiles{Cert: missing, Key: node.Key}); return err }, "missing.pem"},
		{"missing key", func() error { _, err := ServerConfig(TLSFiles{Cert: node.Cert, Key: missing}); return err }, "missing.pem"},
		{"no key named", func() error { _, err := ServerConfig(TLSFiles{Cert: node.Cert}); return err }, "both a cert file and a key file"},
		{"garbage cert", func() error { _, err := ServerConfig(TLSFiles{Cert: garbage, Key: node.Key}); return err }, "garbage.pem"},
		{"mismatched key", func() error {
			_, err := ServerConfig(TLSFiles{Cert: node.Cert, Key: filepath.Join(dir, "client-alice.key")})
			return err
		}, "does not match"},
		{"empty CA", func() error { _, err := ServerConfig(TLSFiles{Cert: node.Cert, Key: node.Key, CA: empty}); return err }, "no PEM certificate"},
		{"missing CA", func() error { _, err := ClientConfig(TLSFiles{CA: missing}, ""); return err }, "missing.pem"},
		{"client cert without key", func() error { _, err := ClientConfig(TLSFiles{Cert: node.Cert}, ""); return err }, "both"},
		{"peer without CA", func() error { _, _, err := PeerConfigs(TLSFiles{Cert: node.Cert, Key: node.Key}); return err }, "needs a CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, ErrTLSConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrTLSConfig mentioning %q", err, tc.want)
			}
			// The key file's contents never appear in an error.
			key, _ := os.ReadFile(node.Key)
			if bytes.Contains([]byte(err.Error()), key[30:60]) {
				t.Fatal("error contains key material")
			}
		})
	}
}

func TestCertsMain(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (int, string, string) {
		var o, e bytes.Buffer
		code := CertsMain(args, &o, &e)
		return code, o.String(), e.String()
	}
	if code, _, e := run("--help"); code != 0 || !strings.Contains(e, "--nodes") {
		t.Fatalf("--help: %d %q", code, e)
	}
	if code, _, _ := run("--out", dir, "--nodes", "bad name"); code != 1 {
		t.Fatalf("bad name: exit %d; want 1", code)
	}
	if code, _, _ := run("--days", "0"); code != 2 {
		t.Fatalf("--days 0: exit %d; want 2", code)
	}
	if code, _, e := run("--out", dir, "--nodes", "n1"); code != 0 {
		t.Fatalf("first run: %d %s", code, e)
	}
	ca1, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if code, _, e := run("--out", dir, "--nodes", "n1"); code != 1 || !strings.Contains(e, "--force") {
		t.Fatalf("overwrite without --force: %d %s", code, e)
	}
	if code, o, e := run("--out", dir, "--nodes", "n1", "--clients", "bob", "--force"); code != 0 || !strings.Contains(o, "reusing CA") {
		t.Fatalf("second run: %d %s %s", code, o, e)
	}
	ca2, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if !bytes.Equal(ca1, ca2) {
		t.Fatal("the CA was replaced")
	}
	for _, f := range []string{"ca.key", "node-n1.key", "client-bob.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v; want 0600", f, err, st.Mode().Perm())
		}
	}
	// The reissued node certificate still verifies against the kept CA.
	if _, err := ServerConfig(files(dir, "node-n1", true)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "ca.key"))
	if code, _, e := run("--out", dir, "--clients", "c"); code != 1 || !strings.Contains(e, "only one of") {
		t.Fatalf("half a CA: %d %s", code, e)
	}
}
