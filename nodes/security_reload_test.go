package nodes

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// TestPolicyReloadSIGHUP runs `dialkv node` with TLS and a policy as a
// child process, opens connections that logged in with a token, with a
// password and with a client certificate, then rewrites the policy file
// (token and user removed, certificate revoked) and sends SIGHUP: the next
// request on each already open connection is refused with
// Unauthenticated, new logins and handshakes with those credentials fail,
// and a credential the file kept still works.
func TestPolicyReloadSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	env := newSecEnv(t)
	child := startChild(t, "--id", "n1", "--listen", "127.0.0.1:0", "--engine", "memory",
		"--tls-cert", env.path("node-n1.crt"), "--tls-key", env.path("node-n1.key"), "--tls-ca", env.path("ca.crt"),
		"--auth-file", env.policy)
	ctx := context.Background()
	open := func(cert string, login *transport.Credentials) (*transport.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := transport.Dial(dctx, child.addr, transport.DialOptions{TLS: env.clientTLS(t, cert), Login: login})
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return c, nil
	}
	mustOpen := func(cert string, login *transport.Credentials) *transport.Conn {
		c, err := open(cert, login)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	conns := map[string]*transport.Conn{
		"token ci-bot":       mustOpen("", &transport.Credentials{Secret: testToken}),
		"password bob":       mustOpen("", &transport.Credentials{User: "bob", Secret: testPassword}),
		"certificate alice":  mustOpen("client-alice", nil),
		"certificate reader": mustOpen("client-reader", nil),
	}
	for name, c := range conns {
		if _, err := c.Call(ctx, noOpts(), cmd("GET", "k")); err != nil {
			t.Fatalf("%s before the reload: %v", name, err)
		}
	}

	// The new policy: ci-bot's token and user bob are gone, alice's
	// certificate is revoked; reader keeps its grant.
	pem1, err := os.ReadFile(env.path("client-alice.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pem1)
	aliceCert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var pf security.PolicyFile
	b, _ := os.ReadFile(env.policy)
	if err := json.Unmarshal(b, &pf); err != nil {
		t.Fatal(err)
	}
	pf.Tokens, pf.Users = nil, nil
	pf.RevokedCerts = []string{aliceCert.SerialNumber.Text(16)}
	if b, err = json.Marshal(pf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env.policy, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := child.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var ua *gen.Unauthenticated
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := conns["token ci-bot"].Call(ctx, noOpts(), cmd("GET", "k"))
		if errors.As(err, &ua) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("token connection after SIGHUP: %v (want Unauthenticated within 10 s)", err)
		}
	}
	for _, name := range []string{"password bob", "certificate alice"} {
		if _, err := conns[name].Call(ctx, noOpts(), cmd("GET", "k")); !errors.As(err, &ua) {
			t.Errorf("%s: open connection after the reload: %v; want Unauthenticated", name, err)
		}
	}
	if _, err := conns["certificate reader"].Call(ctx, noOpts(), cmd("GET", "k")); err != nil {
		t.Errorf("reader, kept by the new policy: %v", err)
	}
	if _, err := open("", &transport.Credentials{Secret: testToken}); err == nil {
		t.Error("a new login with the removed token succeeded")
	}
	if _, err := open("", &transport.Credentials{User: "bob", Secret: testPassword}); err == nil {
		t.Error("a new login of the removed user succeeded")
	}
	if c, err := open("client-alice", nil); err == nil {
		// TLS 1.3: the server's verdict arrives with the first read.
		if _, err := c.Call(ctx, noOpts(), cmd("GET", "k")); err == nil {
			t.Error("a new connection with the revoked certificate was served")
		}
	}
	if c := mustOpen("client-reader", nil); c != nil {
		if _, err := c.Call(ctx, noOpts(), cmd("GET", "k")); err != nil {
			t.Errorf("reader on a new connection: %v", err)
		}
	}
	// A broken file keeps the policy in force.
	os.WriteFile(env.policy, []byte("{not json"), 0o600)
	child.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if _, err := conns["certificate reader"].Call(ctx, noOpts(), cmd("GET", "k")); err != nil {
		t.Errorf("reader after a failed reload: %v", err)
	}
	if err := child.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("node died on a bad policy reload: %v", err)
	}
}
