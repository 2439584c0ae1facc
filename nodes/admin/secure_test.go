package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport"
)

// TestAdminCredentials runs `dialkv admin` against a cluster member with
// TLS, a policy and peer TLS: without credentials it is refused; a token
// that may write everywhere gets FORBIDDEN for namespace creation and for
// CLUSTER RING SET, and can still read the ring; an admin token and the
// node's own certificate (a node principal, no grant) succeed.
func TestAdminCredentials(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := security.CertsMain([]string{"--out", dir, "--nodes", "n1", "--clients", "alice"}, &out, &errb); code != 0 {
		t.Fatalf("dialkv certs: %d %s", code, errb.String())
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	const writerTok, opsTok = "tok-writer-2b7c1f0e9d8a", "tok-ops-5e4d3c2b1a09"
	pol, _ := json.Marshal(security.PolicyFile{
		Tokens: map[string]security.TokenEntry{"writer": {SHA256: security.TokenDigest(writerTok)}, "ops": {SHA256: security.TokenDigest(opsTok)}},
		Grants: []security.Grant{
			{Principals: []string{"writer"}, Namespaces: []string{"*"}, Actions: []string{"read", "write"}},
			{Principals: []string{"ops"}, Namespaces: []string{"*"}, Actions: []string{"admin"}},
		},
	})
	for name, content := range map[string]string{"policy.json": string(pol), "writer.tok": writerTok, "ops.tok": opsTok} {
		if err := os.WriteFile(p(name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var f security.Flags
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse([]string{"--tls-cert", p("node-n1.crt"), "--tls-key", p("node-n1.key"), "--auth-file", p("policy.json"),
		"--peer-tls-cert", p("node-n1.crt"), "--peer-tls-key", p("node-n1.key"), "--peer-tls-ca", p("ca.crt")}); err != nil {
		t.Fatal(err)
	}
	sec, err := f.Load(1)
	if err != nil {
		t.Fatal(err)
	}
	ports := loopbackPorts(t, 2)
	peers := []nodes.ClusterPeer{{ID: "n1", Client: ports[0], Peer: ports[1]}}
	cn, err := nodes.StartClusterNode(nodes.Config{ID: "n1", Listen: ports[0], Engine: "memory", Security: sec},
		nodes.ClusterConfig{Name: "sec", Peers: peers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cn.Close(ctx)
	})
	addr := ports[0]
	creds := map[string][]string{
		"none":   {"--tls-ca", p("ca.crt")},
		"writer": {"--tls-ca", p("ca.crt"), "--token-file", p("writer.tok")},
		"ops":    {"--tls-ca", p("ca.crt"), "--token-file", p("ops.tok")},
		"node":   {"--tls-ca", p("ca.crt"), "--tls-cert", p("node-n1.crt"), "--tls-key", p("node-n1.key")},
	}
	run := func(who string, args ...string) (int, string) {
		var o, e bytes.Buffer
		code := Main(append(append(args, "--addr", addr), creds[who]...), &o, &e)
		return code, o.String() + e.String()
	}
	for _, tc := range []struct {
		who  string
		args []string
		code int
		has  string
	}{
		{"none", []string{"ring"}, 1, "unauthenticated"},
		{"writer", []string{"ring"}, 0, "member list at n1"},
		{"writer", []string{"namespaces", "create", "w1", "quorum", "n", "1", "r", "1", "w", "1"}, 1, "forbidden"},
		{"ops", []string{"namespaces", "create", "o1", "quorum", "n", "1", "r", "1", "w", "1"}, 0, ""},
		{"node", []string{"namespaces", "create", "n1ns", "quorum", "n", "1", "r", "1", "w", "1"}, 0, ""},
		{"node", []string{"ring"}, 0, "member list at n1"},
	} {
		if code, text := run(tc.who, tc.args...); code != tc.code || !strings.Contains(text, tc.has) {
			t.Errorf("%s: dialkv admin %s: exit %d, want %d with %q; output:\n%s\n(go test ./nodes/admin -run TestAdminCredentials)", tc.who, strings.Join(tc.args, " "), code, tc.code, tc.has, text)
		}
	}
	// CLUSTER RING SET (what add-node and remove-node send) with the
	// member list the node has: refused for the writer, accepted (a no-op
	// at the same version) for an admin and for the node certificate.
	m := cn.Membership()
	for who, wantErr := range map[string]string{"writer": "forbidden", "ops": "", "node": ""} {
		var cf transport.ConnFlags
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		cf.Register(fs)
		if err := fs.Parse(creds[who]); err != nil {
			t.Fatal(err)
		}
		dopts, err := dialOptions(&cf)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := nodes.SetRingAt(ctx, addr, dopts, m)
		cancel()
		switch {
		case wantErr == "" && (err != nil || v != m.Version):
			t.Errorf("%s: CLUSTER RING SET: version %d, %v; want %d", who, v, err, m.Version)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("%s: CLUSTER RING SET: %v; want %s (go test ./nodes/admin -run TestAdminCredentials)", who, err, wantErr)
		}
	}
}
