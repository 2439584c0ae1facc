package nodes

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes/security"
)

// TestSecureRaft runs a 3-node raft namespace whose Raft traffic
// (transport/raftls in TLS mode, although the namespace asks for
// Dragonboat's plain transport) runs over mutual TLS with the nodes'
// --peer-tls-* certificates: writes replicate to every node, and the Raft
// port refuses a TLS client without a certificate and one whose
// certificate another CA signed.
func TestSecureRaft(t *testing.T) {
	certs := t.TempDir()
	var out, errb bytes.Buffer
	if code := security.CertsMain([]string{"--out", certs, "--nodes", "n1,n2,n3", "--clients", "alice"}, &out, &errb); code != 0 {
		t.Fatalf("dialkv certs: %d %s", code, errb.String())
	}
	other := t.TempDir()
	if code := security.CertsMain([]string{"--out", other, "--nodes", "n1"}, &out, &errb); code != 0 {
		t.Fatalf("dialkv certs (other CA): %d %s", code, errb.String())
	}
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
	for i, p := range peers {
		f := func(n string) string { return filepath.Join(certs, n) }
		sec := loadSecurity(t, "--peer-tls-cert", f("node-"+p.ID+".crt"), "--peer-tls-key", f("node-"+p.ID+".key"), "--peer-tls-ca", f("ca.crt"))
		cn, err := StartClusterNode(Config{ID: p.ID, Listen: p.Client, DataDir: t.TempDir(), Fsync: core.SyncAlways, Security: sec,
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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.New(clientAddrs, client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateNamespace(ctx, client.NamespaceSpec{Name: "rkv", Strategy: "raft", Params: map[string]string{
		"nodes": strings.Join(ids, ","), "raft-addrs": strings.Join(raftAddrs, ","),
		"client-addrs": strings.Join(clientAddrs, ","), "rtt": "5ms",
		// Dragonboat's plain TCP transport asked for: with peer TLS it is
		// ignored (a namespace created before TLS was turned on must
		// still open), and the intruder checks below show TLS guards
		// the Raft port.
		"transport": "dragonboat"}}); err != nil {
		t.Fatalf("create rkv: %v", err)
	}
	if err := waitRaftLeadersSpread(nodes, "rkv", 30*time.Second); err != nil {
		t.Fatalf("%v\nlogs:\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "transport=dragonboat ignored") {
		t.Fatalf("no node said that transport=dragonboat is ignored under peer TLS; logs:\n%s", logs.String())
	}
	rkv := client.With(ctx, client.Namespace("rkv"))
	for i := range 5 {
		if _, err := c.Set(rkv, fmt.Sprint("k", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("SET k%d over a raft namespace with mutual TLS: %v\nlogs:\n%s", i, err, logs.String())
		}
	}
	// Every node's replica applies the writes: Raft messages crossed TLS.
	for i := range ids {
		at, err := client.New([]string{clientAddrs[i]}, client.WithTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(20 * time.Second); ; {
			v, err := at.Get(client.With(rkv, client.ReadMode("stale")), "k4")
			if err == nil && string(v.Data) == "4" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not apply k4: %+v, %v", ids[i], v, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		at.Close()
	}

	// Intruders on n1's Raft port: TLS without a client certificate, a
	// node certificate of another CA, a client certificate of the nodes'
	// own CA, and a node certificate of that CA for a node (n9) that is
	// not in the namespace. All are refused in the handshake.
	if code := security.CertsMain([]string{"--out", certs, "--nodes", "n9"}, &out, &errb); code != 0 {
		t.Fatalf("dialkv certs (n9): %d %s", code, errb.String())
	}
	load := func(dir, name string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	intruders := []struct {
		name  string
		certs []tls.Certificate
		want  string
	}{
		{"no certificate", nil, "certificate"},
		{"other CA", []tls.Certificate{load(other, "node-n1")}, "certificate"},
		{"client certificate of the node CA", []tls.Certificate{load(certs, "client-alice")}, "certificate"},
		{"node certificate of a non-member", []tls.Certificate{load(certs, "node-n9")}, "certificate"},
	}
	for _, in := range intruders {
		conn, err := tls.Dial("tcp", raftAddrs[0], &tls.Config{InsecureSkipVerify: true, Certificates: in.certs})
		if err == nil {
			// TLS 1.3: the server's verdict on the client certificate
			// arrives after the client's side of the handshake.
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), in.want) {
			t.Fatalf("%s: Raft port accepted the connection (err %v)", in.name, err)
		}
	}
	// A member's own node certificate passes the same handshake (so the
	// refusals above are about identity, not about the dialler).
	conn, err := tls.Dial("tcp", raftAddrs[0], &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{load(certs, "node-n2")}})
	if err != nil {
		t.Fatalf("member n2's certificate refused: %v", err)
	}
	conn.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 1)); err == nil || !isTimeout(err) {
		t.Fatalf("member n2's connection: want it open and silent, got %v", err)
	}
	conn.Close()
	if !strings.Contains(logs.String(), "names no member node") || !strings.Contains(logs.String(), "not a node certificate") {
		t.Fatalf("refused Raft handshakes not logged:\n%s", logs.String())
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitRaftLeadersSpread waits until the namespace has spread to every node
// and each knows its shards' leaders.
func waitRaftLeadersSpread(nodes []*ClusterNode, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, cn := range nodes {
		for cn.namespace(name) == nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("namespace %s did not reach %s", name, cn.cfg.ID)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return waitRaftLeaders(nodes, name, time.Until(deadline))
}
