package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport"
)

// TestAdminCredentials runs `dialkv admin` against a cluster member with
// TLS, a policy and peer TLS: without credentials it is refused; a token
// that may write everywhere gets FORBIDDEN for namespace creation and for
// CLUSTER RING SET, and can still read the ring; an admin token and the
// node's own certificate (a node principal, no grant) succeed.
// secureEnv makes a development CA with node certificates for ids and a
// client certificate alice, a policy with a token "writer" (read and write
// on every namespace) and a token "ops" (admin on every namespace), and
// the admin tool's credential flags for: none, writer, ops, and the node
// certificate of ids[0].
func secureEnv(t *testing.T, ids ...string) (p func(string) string, creds map[string][]string) {
	t.Helper()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := security.CertsMain([]string{"--out", dir, "--nodes", strings.Join(ids, ","), "--clients", "alice"}, &out, &errb); code != 0 {
		t.Fatalf("dialkv certs: %d %s", code, errb.String())
	}
	p = func(name string) string { return filepath.Join(dir, name) }
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
	creds = map[string][]string{
		"none":   {"--tls-ca", p("ca.crt")},
		"writer": {"--tls-ca", p("ca.crt"), "--token-file", p("writer.tok")},
		"ops":    {"--tls-ca", p("ca.crt"), "--token-file", p("ops.tok")},
		"node":   {"--tls-ca", p("ca.crt"), "--tls-cert", p("node-" + ids[0] + ".crt"), "--tls-key", p("node-" + ids[0] + ".key")},
	}
	return p, creds
}

// secureSettings are member id's security settings with TLS, the policy
// and peer TLS (the flags of docs/security.md).
func secureSettings(t testing.TB, p func(string) string, id string) security.Settings {
	t.Helper()
	var f security.Flags
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	f.Register(fs)
	cert, key := p("node-"+id+".crt"), p("node-"+id+".key")
	if err := fs.Parse([]string{"--tls-cert", cert, "--tls-key", key, "--auth-file", p("policy.json"),
		"--peer-tls-cert", cert, "--peer-tls-key", key, "--peer-tls-ca", p("ca.crt")}); err != nil {
		t.Fatal(err)
	}
	sec, err := f.Load(1)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

// startSecure starts member id of peers with secureSettings and stops it
// at the end of the test.
func startSecure(t *testing.T, p func(string) string, id string, peers []nodes.ClusterPeer, data string) *nodes.ClusterNode {
	t.Helper()
	sec := secureSettings(t, p, id)
	engine := "memory"
	if data != "" {
		engine = ""
	}
	var listen string
	for _, pe := range peers {
		if pe.ID == id {
			listen = pe.Client
		}
	}
	cn, err := nodes.StartClusterNode(nodes.Config{ID: id, Listen: listen, Engine: engine, DataDir: data, Security: sec},
		nodes.ClusterConfig{Name: "sec", Peers: peers, CatalogSync: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cn.Close(ctx)
	})
	return cn
}

func TestAdminCredentials(t *testing.T) {
	p, creds := secureEnv(t, "n1")
	ports := loopbackPorts(t, 2)
	peers := []nodes.ClusterPeer{{ID: "n1", Client: ports[0], Peer: ports[1]}}
	cn := startSecure(t, p, "n1", peers, "")
	addr := ports[0]
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

// TestSecureRingChange: `dialkv admin remove-node` on a quorum cluster
// whose members run TLS, a policy and mutual peer TLS. A token that may
// write everywhere cannot change the ring (forbidden, nothing changes);
// with a node certificate the change runs through (joint list, handoff
// over the secured members' client and peer APIs, stable list) and every
// key written before is still read from the remaining members.
func TestSecureRingChange(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds")
	}
	p, creds := secureEnv(t, "n1", "n2", "n3")
	ports := loopbackPorts(t, 6)
	var peers []nodes.ClusterPeer
	for i, id := range []string{"n1", "n2", "n3"} {
		peers = append(peers, nodes.ClusterPeer{ID: id, Client: ports[2*i], Peer: ports[2*i+1]})
	}
	var cns []*nodes.ClusterNode
	for _, pe := range peers {
		cns = append(cns, startSecure(t, p, pe.ID, peers, ""))
	}
	run := func(who string, args ...string) (int, string) {
		var o, e bytes.Buffer
		code := Main(append(append(args, "--addr", peers[0].Client), creds[who]...), &o, &e)
		return code, o.String() + e.String()
	}
	if code, text := run("ops", "namespaces", "create", "kv", "quorum", "n", "2", "r", "1", "w", "2", "timeout", "2s"); code != 0 {
		t.Fatalf("create kv: exit %d: %s", code, text)
	}
	tlsCfg, err := security.ClientConfig(security.TLSFiles{CA: p("ca.crt")}, "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p("writer.tok"))
	c, err := client.New([]string{peers[0].Client}, client.WithTLS(tlsCfg), client.WithToken(string(b)), client.WithNamespace("kv"), client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	const keys = 40
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < keys; i++ {
		// The namespace reaches n2 and n3 by catalog sync (over TLS with
		// node certificates); until then a W=2 write may fail.
		if _, err := c.Set(ctx, fmt.Sprintf("k%02d", i), []byte(fmt.Sprint(i))); err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("SET k%02d: %v", i, err)
			}
			time.Sleep(100 * time.Millisecond)
			i--
		}
	}
	before := cns[0].Membership().Version
	if code, text := run("writer", "remove-node", "n3", "--settle", "200ms", "--timeout", "30s"); code != 1 || !strings.Contains(text, "forbidden") {
		t.Fatalf("remove-node as writer: exit %d, want 1 with forbidden; output:\n%s", code, text)
	}
	if v := cns[0].Membership().Version; v != before {
		t.Fatalf("a refused ring change moved the member list from version %d to %d", before, v)
	}
	if code, text := run("node", "remove-node", "n3", "--settle", "200ms", "--timeout", "60s"); code != 0 {
		t.Fatalf("remove-node with n1's certificate: exit %d; output:\n%s\n(go test ./nodes/admin -run TestSecureRingChange)", code, text)
	}
	for i, cn := range cns[:2] {
		m := cn.Membership()
		if m.Phase != nodes.PhaseStable || len(m.Members) != 2 || nodes.FormatPeers(m.Members) != nodes.FormatPeers(peers[:2]) {
			t.Fatalf("n%d's member list after the change: %+v", i+1, m)
		}
	}
	for i := 0; i < keys; i++ {
		k := fmt.Sprintf("k%02d", i)
		v, err := c.Get(ctx, k)
		if err != nil || v.String() != fmt.Sprint(i) {
			t.Fatalf("GET %s after removing n3 = %q, %v; want %d", k, v, err, i)
		}
	}
}

// TestSecureMoveShard: `dialkv admin move-shard` on a raft namespace whose
// four members run TLS, a policy and mutual peer TLS (Raft over
// transport/raftls). The write-everywhere token may read the placement but
// its move is forbidden and changes nothing; with a node certificate the
// replica moves (RAFT.ADD, JOIN, SYNCED, REMOVE, LEAVE through the
// secured client APIs) and the value is still read.
func TestSecureMoveShard(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds")
	}
	ids := []string{"n1", "n2", "n3", "n4"}
	p, creds := secureEnv(t, ids...)
	ports := loopbackPorts(t, 12)
	var peers []nodes.ClusterPeer
	var raftAddrs, clientAddrs []string
	for i, id := range ids {
		peers = append(peers, nodes.ClusterPeer{ID: id, Client: ports[3*i], Peer: ports[3*i+1]})
		raftAddrs, clientAddrs = append(raftAddrs, ports[3*i+2]), append(clientAddrs, ports[3*i])
	}
	spec := nodes.NamespaceSpec{Name: "mv", Strategy: "raft", Params: map[string]string{
		"nodes": strings.Join(ids, ","), "raft-addrs": strings.Join(raftAddrs, ","), "client-addrs": strings.Join(clientAddrs, ","),
		"shards": "1", "replicas": "3", "rtt": "5ms", "rebalance": "false"}}
	dir := t.TempDir()
	start := time.Now()
	for _, pe := range peers {
		cn := startSecure(t, p, pe.ID, peers, filepath.Join(dir, pe.ID))
		if err := cn.CreateNamespace(spec); err != nil && !strings.Contains(err.Error(), "EXISTS") {
			t.Fatalf("create mv at %s: %v", pe.ID, err)
		}
	}
	tlsCfg, err := security.ClientConfig(security.TLSFiles{CA: p("ca.crt")}, "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p("writer.tok"))
	c, err := client.New(clientAddrs, client.WithTLS(tlsCfg), client.WithToken(string(b)), client.WithNamespace("mv"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if _, err := c.Set(ctx, "k", []byte("v1")); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("no write served: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%v: first write served", time.Since(start))
	run := func(who string, args ...string) (int, string) {
		defer func(t0 time.Time) {
			t.Logf("%v: dialkv admin %s as %s took %v", time.Since(start), args[0], who, time.Since(t0))
		}(time.Now())
		var o, e bytes.Buffer
		code := Main(append(append(args, "--addr", peers[1].Client), creds[who]...), &o, &e)
		return code, o.String() + e.String()
	}
	where := func(who, want string) {
		t.Helper()
		code, out := run(who, "where-shards", "--namespace", "mv")
		if code != 0 || !strings.Contains(out, "shard 0: "+want+"\n") {
			t.Fatalf("where-shards as %s: exit %d, want shard 0: %s; output:\n%s", who, code, want, out)
		}
	}
	where("writer", "n1, n2, n3")
	move := []string{"move-shard", "--namespace", "mv", "--shard", "0", "--from", "n1", "--to", "n4"}
	if code, out := run("writer", move...); code != 1 || !strings.Contains(out, "forbidden") {
		t.Fatalf("move-shard as writer: exit %d, want 1 with forbidden; output:\n%s", code, out)
	}
	where("node", "n1, n2, n3")
	if code, out := run("node", move...); code != 0 {
		t.Fatalf("move-shard with n1's certificate: exit %d; output:\n%s\n(go test ./nodes/admin -run TestSecureMoveShard)", code, out)
	}
	where("node", "n2, n3, n4")
	gctx, gcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer gcancel()
	v, err := c.Get(client.With(gctx, client.ReadMode("linearizable")), "k")
	if err != nil || string(v.Data) != "v1" {
		t.Fatalf("GET k after the move = %+v, %v", v, err)
	}
}
