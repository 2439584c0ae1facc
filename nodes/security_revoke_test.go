package nodes

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes/security"
)

// TestPeerRevocation: three members with TLS, a policy and peer TLS run a
// raft namespace (Raft over transport/raftls) and the peer port. n3's node
// certificate is then revoked in the policy file (revoked_certs) and n1
// and n2 reload it (reloadSecurity, what SIGHUP runs): connections already
// open with n3's certificate to n1's Raft port and peer port are closed,
// new handshakes with it are refused on both ports, and the reload logs
// how many connections it closed. n1 and n2 go on committing writes; n3,
// cut off, does not apply them. Checked to fail without the reload's
// CloseRevokedPeers (the open connections stay) and without the handshake
// check (the new handshakes pass).
func TestPeerRevocation(t *testing.T) {
	certs := t.TempDir()
	var out, errb bytes.Buffer
	if code := security.CertsMain([]string{"--out", certs, "--nodes", "n1,n2,n3"}, &out, &errb); code != 0 {
		t.Fatalf("dialkv certs: %d %s", code, errb.String())
	}
	f := func(n string) string { return filepath.Join(certs, n) }
	policy := f("policy.json")
	writePolicy := func(pf security.PolicyFile) {
		b, _ := json.Marshal(pf)
		if err := os.WriteFile(policy, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy(security.PolicyFile{Grants: []security.Grant{}})
	addrs := freeAddrs(t, 9)
	ids := []string{"n1", "n2", "n3"}
	var peers []ClusterPeer
	var raftAddrs, clientAddrs []string
	for i, id := range ids {
		peers = append(peers, ClusterPeer{ID: id, Client: addrs[3*i], Peer: addrs[3*i+1]})
		clientAddrs = append(clientAddrs, addrs[3*i])
		raftAddrs = append(raftAddrs, addrs[3*i+2])
	}
	var logs syncBuffer
	nodes := make([]*ClusterNode, len(ids))
	secs := make([]security.Settings, len(ids))
	for i, p := range peers {
		cert, key := f("node-"+p.ID+".crt"), f("node-"+p.ID+".key")
		secs[i] = loadSecurity(t, "--tls-cert", cert, "--tls-key", key, "--auth-file", policy,
			"--peer-tls-cert", cert, "--peer-tls-key", key, "--peer-tls-ca", f("ca.crt"))
		cn, err := StartClusterNode(Config{ID: p.ID, Listen: p.Client, DataDir: t.TempDir(), Fsync: core.SyncAlways, Security: secs[i],
			Logger: slog.New(slog.NewTextHandler(&logs, nil)).With("node", p.ID)},
			ClusterConfig{Name: "sec", Peers: peers, CatalogSync: 200 * time.Millisecond})
		if err != nil {
			t.Fatalf("start %s: %v", p.ID, err)
		}
		nodes[i] = cn
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cn.Close(ctx)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	clientAs := func(addr string) *client.Client {
		cfg, err := security.ClientConfig(security.TLSFiles{CA: f("ca.crt"), Cert: f("node-n1.crt"), Key: f("node-n1.key")}, "")
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.New([]string{addr}, client.WithTLS(cfg), client.WithTimeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := clientAs(clientAddrs[0])
	if err := c.CreateNamespace(ctx, client.NamespaceSpec{Name: "rkv", Strategy: "raft", Params: map[string]string{
		"nodes": strings.Join(ids, ","), "raft-addrs": strings.Join(raftAddrs, ","),
		"client-addrs": strings.Join(clientAddrs, ","), "rtt": "5ms"}}); err != nil {
		t.Fatalf("create rkv: %v", err)
	}
	if err := waitRaftLeadersSpread(nodes, "rkv", 30*time.Second); err != nil {
		t.Fatalf("%v\nlogs:\n%s", err, logs.String())
	}
	rkv := client.With(ctx, client.Namespace("rkv"))
	applied := func(i int, key, want string, wait time.Duration) bool {
		at := clientAs(clientAddrs[i])
		for deadline := time.Now().Add(wait); ; {
			v, err := at.Get(client.With(rkv, client.ReadMode("stale")), key)
			if err == nil && string(v.Data) == want {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	setRetry := func(key, val string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; {
			_, err := c.Set(rkv, key, []byte(val))
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("SET %s: %v\nlogs:\n%s", key, err, logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	setRetry("before", "1")
	if !applied(2, "before", "1", 20*time.Second) {
		t.Fatal("n3 did not apply a write before the revocation")
	}

	n3, err := tls.LoadX509KeyPair(f("node-n3.crt"), f("node-n3.key"))
	if err != nil {
		t.Fatal(err)
	}
	// dialAs opens a TLS connection to addr with n3's certificate; with
	// TLS 1.3 the server's verdict on it arrives after the client's side
	// of the handshake, so a short read tells an accepted connection
	// (timeout) from a refused one.
	dialAs := func(addr string) (*tls.Conn, error) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{n3}})
		if err != nil {
			return nil, err
		}
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := conn.Read(make([]byte, 1)); !isTimeout(err) {
			conn.Close()
			return nil, fmt.Errorf("connection refused after the handshake: %w", err)
		}
		conn.SetReadDeadline(time.Time{})
		return conn, nil
	}
	ports := map[string]string{"raft": raftAddrs[0], "peer": peers[0].Peer}
	open := map[string]*tls.Conn{}
	for name, addr := range ports {
		conn, err := dialAs(addr)
		if err != nil {
			t.Fatalf("n3's certificate on n1's %s port before the revocation: %v", name, err)
		}
		defer conn.Close()
		open[name] = conn
	}

	// Revoke n3's certificate and reload on n1 and n2.
	block, _ := pem.Decode(must(os.ReadFile(f("node-n3.crt"))))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	writePolicy(security.PolicyFile{Grants: []security.Grant{}, RevokedCerts: []string{leaf.SerialNumber.Text(16)}})
	for i := range 2 {
		reloadSecurity(secs[i], nodes[i].log)
	}
	for name, conn := range open {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("n3's open connection to n1's %s port survived the revocation (read: %v) (go test ./nodes -run TestPeerRevocation)", name, err)
		}
	}
	for name, addr := range ports {
		if conn, err := dialAs(addr); err == nil {
			conn.Close()
			t.Errorf("n3's revoked certificate passed the handshake on n1's %s port (go test ./nodes -run TestPeerRevocation)", name)
		} else if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("n3 on n1's %s port: %v, want a certificate error", name, err)
		}
	}
	if !strings.Contains(logs.String(), "is revoked") {
		t.Errorf("refused handshakes do not say the certificate is revoked:\n%s", logs.String())
	}
	closedLog := false
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "security policy reloaded") && strings.Contains(l, "node=n1") && !strings.Contains(l, "peer_conns_closed=0") {
			closedLog = true
		}
	}
	if !closedLog {
		t.Errorf("n1's reload did not log closed peer connections:\n%s", logs.String())
	}
	// n1 and n2 are a majority: writes go on; n3 no longer hears of them.
	setRetry("after", "2")
	if !applied(1, "after", "2", 20*time.Second) {
		t.Fatal("n2 did not apply a write after the revocation")
	}
	if applied(2, "after", "2", 2*time.Second) {
		t.Error("n3, revoked, still applies new writes")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
