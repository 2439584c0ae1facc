package admin

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/internal/freeport"
	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport"
)

// loopbackPorts returns n free loopback addresses (internal/freeport: below
// the ephemeral range, so no outgoing connection takes one meanwhile).
func loopbackPorts(t testing.TB, n int) []string {
	t.Helper()
	out, err := freeport.Addrs(n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// backupCluster is three cluster members on loopback with admin APIs.
type backupCluster struct {
	t      testing.TB
	peers  []nodes.ClusterPeer
	raft   []string // Raft addresses, for the raft namespace's parameters
	nodes  []*nodes.ClusterNode
	admins map[string]string
	copts  []client.Option // how a client reaches the members (TLS, login)
}

// startBackupCluster starts n1..n3 on fresh ports over the data
// directories dirs; with p (secureEnv's files), with TLS, the policy and
// peer TLS (startSecure's flags), and clients log in with the "ops" token.
func startBackupCluster(t testing.TB, dirs []string, p func(string) string) *backupCluster {
	t.Helper()
	return startBackupClusterDelay(t, dirs, p, nil)
}

// startBackupClusterDelay is startBackupCluster where node i's peer
// messages to node j are delayed by delay(i, j) (nil: none), as between
// regions (ClusterConfig.PeerDelay).
func startBackupClusterDelay(t testing.TB, dirs []string, p func(string) string, delay func(i, j int) time.Duration) *backupCluster {
	t.Helper()
	addrs := loopbackPorts(t, 3*len(dirs))
	bc := &backupCluster{t: t, admins: map[string]string{}}
	secs := make([]security.Settings, len(dirs))
	if p != nil {
		for i := range dirs {
			secs[i] = secureSettings(t, p, fmt.Sprintf("n%d", i+1))
		}
		tlsCfg, err := security.ClientConfig(security.TLSFiles{CA: p("ca.crt")}, "")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := os.ReadFile(p("ops.tok"))
		if err != nil {
			t.Fatal(err)
		}
		bc.copts = []client.Option{client.WithTLS(tlsCfg), client.WithToken(string(tok))}
	}
	for i := range dirs {
		bc.peers = append(bc.peers, nodes.ClusterPeer{ID: fmt.Sprintf("n%d", i+1), Client: addrs[3*i], Peer: addrs[3*i+1]})
		bc.raft = append(bc.raft, addrs[3*i+2])
	}
	bc.nodes = make([]*nodes.ClusterNode, len(dirs))
	errs := make(chan error, len(dirs))
	for i := range dirs {
		var pd map[string]time.Duration
		if delay != nil {
			pd = map[string]time.Duration{}
			for j := range dirs {
				if d := delay(i, j); d > 0 {
					pd[bc.peers[j].ID] = d
				}
			}
		}
		go func() {
			cn, err := nodes.StartClusterNode(
				nodes.Config{ID: bc.peers[i].ID, Listen: bc.peers[i].Client, DataDir: dirs[i], Fsync: core.SyncAlways,
					AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler), Security: secs[i]},
				nodes.ClusterConfig{Name: "bk", Peers: bc.peers, CatalogSync: 200 * time.Millisecond, PeerDelay: pd})
			bc.nodes[i] = cn
			errs <- err
		}()
	}
	for range dirs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, cn := range bc.nodes {
		bc.admins[bc.peers[i].ID] = cn.AdminAddr()
	}
	t.Cleanup(bc.stop)
	return bc
}

func (bc *backupCluster) stop() {
	for i, cn := range bc.nodes {
		if cn == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := cn.Close(ctx); err != nil {
			bc.t.Errorf("close n%d: %v", i+1, err)
		}
		cancel()
		bc.nodes[i] = nil
	}
}

func (bc *backupCluster) addr(i int) string { return bc.peers[i].Client }

func (bc *backupCluster) adminList() []string {
	var out []string
	for _, p := range bc.peers {
		out = append(out, bc.admins[p.ID])
	}
	return out
}

// raftParams are a two-shard raft namespace's parameters over this
// cluster's addresses.
func (bc *backupCluster) raftParams() map[string]string {
	var ids, clients []string
	for _, p := range bc.peers {
		ids, clients = append(ids, p.ID), append(clients, p.Client)
	}
	return map[string]string{"nodes": strings.Join(ids, ","), "raft-addrs": strings.Join(bc.raft, ","),
		"client-addrs": strings.Join(clients, ","), "shards": "2", "rtt": "5ms", "small-engine": "true"}
}

// create creates a namespace at n1 and waits until every member lists it.
func (bc *backupCluster) create(name, strategy string, params map[string]string) {
	bc.t.Helper()
	c, err := client.New([]string{bc.addr(0)}, bc.copts...)
	if err != nil {
		bc.t.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateNamespace(context.Background(), client.NamespaceSpec{Name: name, Strategy: strategy, Params: params}); err != nil {
		bc.t.Fatalf("create %s: %v", name, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for i := range bc.peers {
		for {
			c, err := client.New([]string{bc.addr(i)}, bc.copts...)
			if err != nil {
				bc.t.Fatal(err)
			}
			specs, err := c.ListNamespaces(context.Background())
			c.Close()
			found := false
			for _, s := range specs {
				found = found || s.Name == name
			}
			if err == nil && found {
				break
			}
			if time.Now().After(deadline) {
				bc.t.Fatalf("namespace %s did not reach n%d (%v)", name, i+1, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// putRetry writes k<from>..k<to-1> = v<i> through addr, retrying a SET
// that failed (SET is idempotent; a raft namespace just created may still
// be electing its leaders on a loaded machine) for up to 20 s each.
func putRetry(t *testing.T, addr, ns string, from, to int, opts ...client.Option) {
	t.Helper()
	c, err := client.New([]string{addr}, append([]client.Option{client.WithNamespace(ns)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := from; i < to; i++ {
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := c.Set(context.Background(), fmt.Sprintf("k%03d", i), []byte(fmt.Sprintf("v%d", i)))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("SET k%03d in %s: %v", i, ns, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// waitContents waits until node i answers want for namespace ns (keys
// k000..k(n-1)) and returns what it answered last.
func waitContents(t *testing.T, addr, ns string, n int, want map[string]string, opts ...client.Option) map[string]string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := contents(t, addr, ns, n, opts...)
		if maps.Equal(got, want) || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterBackupRestore: a three-node cluster with TLS, a policy and
// peer TLS on (secureEnv), holding a raft (two shards), a quorum and a
// causal namespace, is backed up online (`backup --cluster`: every node's
// checkpoint and the raft shards' exports, over the nodes' HTTPS admin
// APIs with an admin token), written to afterwards, stopped, and restored
// into a new cluster on other ports: the node data directories from the
// backup, the raft namespace created anew with the new addresses and its
// shards imported (`restore --raft`, with a node certificate). Every node
// of the new cluster answers exactly the keys written before the backup,
// in each of the three namespaces. The admin commands without credentials
// or with a token that may only read and write are refused (401, 403) and
// change nothing.
func TestClusterBackupRestore(t *testing.T) {
	p, creds := secureEnv(t, "n1", "n2", "n3")
	root := t.TempDir()
	dirs := []string{filepath.Join(root, "a1"), filepath.Join(root, "a2"), filepath.Join(root, "a3")}
	a := startBackupCluster(t, dirs, p)
	start := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	a.create("r", "raft", a.raftParams())
	step("raft created")
	a.create("q", "quorum", nil)
	a.create("c", "causal", nil)
	const before, after = 40, 50
	for _, ns := range []string{"r", "q", "c"} {
		putRetry(t, a.addr(0), ns, 0, before, a.copts...)
	}
	// Causal replicates after acknowledging: wait until every node has
	// every write, so each node's checkpoint holds them all.
	for i := range a.peers {
		for _, ns := range []string{"q", "c"} {
			if got := waitContents(t, a.addr(i), ns, before, want(0, before), a.copts...); !maps.Equal(got, want(0, before)) {
				t.Fatalf("n%d %s before the backup: %d keys", i+1, ns, len(got))
			}
		}
	}
	step("converged")
	out := filepath.Join(root, "backup")
	var so, se bytes.Buffer
	adm := fmt.Sprintf("n1=%s,n2=%s,n3=%s", a.admins["n1"], a.admins["n2"], a.admins["n3"])
	for who, status := range map[string]string{"none": "401 Unauthorized", "writer": "403 Forbidden"} {
		so.Reset()
		se.Reset()
		if code := Main(append([]string{"backup", "--admin", adm, "--out", filepath.Join(root, "refused-"+who)}, creds[who]...), &so, &se); code != 1 || !strings.Contains(se.String(), status) {
			t.Errorf("backup as %s: exit %d, %q; want 1 and %s", who, code, se.String(), status)
		}
		if code := Main(append([]string{"checkpoint", "--admin", a.admins["n1"]}, creds[who]...), &so, &se); code != 1 || !strings.Contains(se.String(), status) {
			t.Errorf("checkpoint as %s: exit %d, %q; want 1 and %s", who, code, se.String(), status)
		}
	}
	so.Reset()
	se.Reset()
	if code := Main(append([]string{"backup", "--cluster", "--admin", adm, "--out", out}, creds["ops"]...), &so, &se); code != 0 {
		t.Fatalf("backup --cluster: exit %d: %s %s", code, so.String(), se.String())
	}
	t.Logf("backup:\n%s", so.String())
	m, err := readManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Raft) != 1 || !m.Raft[0].Complete() || m.Raft[0].Shards != 2 {
		t.Fatalf("manifest raft = %+v", m.Raft)
	}
	// A backup of two of the three members is not a cluster backup.
	so.Reset()
	se.Reset()
	if code := Main(append([]string{"backup", "--cluster", "--admin", "n1=" + a.admins["n1"] + ",n2=" + a.admins["n2"], "--out", filepath.Join(root, "partial")}, creds["ops"]...), &so, &se); code != 1 || !strings.Contains(se.String(), "member n3") {
		t.Errorf("backup --cluster of two members: exit %d, %q", code, se.String())
	}
	for _, ns := range []string{"r", "q", "c"} {
		putRetry(t, a.addr(0), ns, before, after, a.copts...)
	}
	step("about to stop")
	a.stop()

	step("stopped")
	var newDirs []string
	for _, id := range []string{"n1", "n2", "n3"} {
		d := filepath.Join(root, "b-"+id)
		if _, err := Restore(out, id, time.Time{}, d); err != nil {
			t.Fatal(err)
		}
		newDirs = append(newDirs, d)
	}
	b := startBackupCluster(t, newDirs, p)
	step("b started")
	b.create("r", "raft", b.raftParams())
	for who, status := range map[string]string{"none": "401 Unauthorized", "writer": "403 Forbidden"} {
		so.Reset()
		se.Reset()
		if code := Main(append([]string{"restore", "--from", out, "--raft", "--admin", strings.Join(b.adminList(), ",")}, creds[who]...), &so, &se); code != 1 || !strings.Contains(se.String(), status) {
			t.Errorf("restore --raft as %s: exit %d, %q; want 1 and %s", who, code, se.String(), status)
		}
	}
	if got := contents(t, b.addr(0), "r", before, b.copts...); len(got) != 0 {
		t.Fatalf("refused raft imports wrote %d keys", len(got))
	}
	so.Reset()
	se.Reset()
	if code := Main(append([]string{"restore", "--from", out, "--raft", "--admin", strings.Join(b.adminList(), ",")}, creds["node"]...), &so, &se); code != 0 {
		t.Fatalf("restore --raft: exit %d: %s %s", code, so.String(), se.String())
	}
	t.Logf("restore --raft:\n%s", so.String())
	for i := range b.peers {
		for _, ns := range []string{"r", "q", "c"} {
			got := waitContents(t, b.addr(i), ns, after, want(0, before), b.copts...)
			step(fmt.Sprintf("n%d %s read", i+1, ns))
			if !maps.Equal(got, want(0, before)) {
				t.Errorf("restored n%d %s: %d keys, want the %d written before the backup", i+1, ns, len(got), before)
			}
		}
	}
	step("compared")
	// A second import finds the shards full.
	ah, err := adminHTTP(credFlags(t, creds["ops"]))
	if err != nil {
		t.Fatal(err)
	}
	if err := ah.RaftRestore(out, b.adminList(), nil, &so); err == nil || !strings.Contains(err.Error(), "NOTEMPTY") {
		t.Errorf("second raft restore: %v, want NOTEMPTY", err)
	}
}

// credFlags parses connection flags (secureEnv's creds).
func credFlags(t *testing.T, args []string) *transport.ConnFlags {
	t.Helper()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cf := connFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cf
}
