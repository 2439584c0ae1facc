package nodes

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/internal/freeport"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// freeAddrs returns n distinct free loopback addresses, below the kernel's
// ephemeral port range (a restarted node reuses its addresses; see
// internal/freeport for why not ":0").
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	out, err := freeport.Addrs(n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// testCluster is a loopback cluster whose members can be stopped and
// restarted on the same addresses and data directories.
type testCluster struct {
	t     *testing.T
	peers []ClusterPeer
	dirs  []string
	nodes []*ClusterNode
	// gossip, if set, holds each member's gossip address: members run
	// memberlist and join each other.
	gossip []string
	logw   io.Writer // if set, members log here
	// nodeCfg, if set, adjusts member i's Config at each start.
	nodeCfg func(i int, c *Config)
	// clusterCfg, if set, adjusts member i's ClusterConfig at each start.
	clusterCfg func(i int, c *ClusterConfig)
}

func newTestCluster(t *testing.T, ids ...string) *testCluster {
	t.Helper()
	return newTestClusterGossip(t, false, ids...)
}

// newTestClusterGossip is newTestCluster, with memberlist on every member
// if gossip is set.
func newTestClusterGossip(t *testing.T, gossip bool, ids ...string) *testCluster {
	t.Helper()
	return newTestClusterWith(t, gossip, nil, ids...)
}

// newTestClusterWith is newTestClusterGossip with clusterCfg applied to
// every member's ClusterConfig (nil: none).
func newTestClusterWith(t *testing.T, gossip bool, clusterCfg func(i int, c *ClusterConfig), ids ...string) *testCluster {
	t.Helper()
	addrs := freeAddrs(t, 3*len(ids))
	tc := &testCluster{t: t, clusterCfg: clusterCfg}
	if gossip {
		tc.gossip = addrs[2*len(ids):]
	}
	for i, id := range ids {
		tc.peers = append(tc.peers, ClusterPeer{ID: id, Client: addrs[2*i], Peer: addrs[2*i+1]})
		tc.dirs = append(tc.dirs, t.TempDir())
	}
	tc.nodes = make([]*ClusterNode, len(ids))
	for i := range ids {
		tc.start(i)
	}
	t.Cleanup(func() {
		for i := range tc.nodes {
			tc.stop(i)
		}
	})
	return tc
}

func (tc *testCluster) start(i int) {
	tc.t.Helper()
	log := slog.New(slog.DiscardHandler)
	if tc.logw != nil {
		log = slog.New(slog.NewTextHandler(tc.logw, nil)).With("node", tc.peers[i].ID)
	} else if os.Getenv("DIALKV_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", tc.peers[i].ID)
	}
	cc := ClusterConfig{Name: "test", Peers: tc.peers, CatalogSync: 200 * time.Millisecond}
	if tc.gossip != nil {
		g := &GossipOptions{Listen: tc.gossip[i], ProbeInterval: 100 * time.Millisecond, Rejoin: 300 * time.Millisecond}
		for j, a := range tc.gossip {
			if j != i {
				g.Join = append(g.Join, a)
			}
		}
		cc.Gossip = g
	}
	if tc.clusterCfg != nil {
		tc.clusterCfg(i, &cc)
	}
	cfg := Config{ID: tc.peers[i].ID, Listen: tc.peers[i].Client, DataDir: tc.dirs[i], Fsync: core.SyncAlways, Logger: log}
	if tc.nodeCfg != nil {
		tc.nodeCfg(i, &cfg)
	}
	cn, err := StartClusterNode(cfg, cc)
	if err != nil {
		tc.t.Fatalf("start %s: %v", tc.peers[i].ID, err)
	}
	tc.nodes[i] = cn
}

func (tc *testCluster) stop(i int) {
	if tc.nodes[i] == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tc.nodes[i].Close(ctx); err != nil {
		tc.t.Errorf("close %s: %v", tc.peers[i].ID, err)
	}
	tc.nodes[i] = nil
}

// waitNamespace waits until every running member has namespace name.
func (tc *testCluster) waitNamespace(name string) {
	tc.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, cn := range tc.nodes {
		for cn != nil && cn.namespace(name) == nil {
			if time.Now().After(deadline) {
				tc.t.Fatalf("namespace %s did not reach %s", name, cn.cfg.ID)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

type clusterOp struct {
	ns    string
	r, w  int32
	token []byte
}

func (o clusterOp) opts() *gen.RequestOptions {
	ro := &gen.RequestOptions{Ns: &o.ns, Token: o.token}
	// Negative values are quorum.ALL and quorum.QUORUM (they were dropped
	// here before, so R=ALL reads silently ran with the default R).
	if o.r != 0 {
		ro.R = &o.r
	}
	if o.w != 0 {
		ro.W = &o.w
	}
	ms := int64(3000)
	ro.DeadlineMs = &ms
	return ro
}

// call runs one command at node i's client API.
func (tc *testCluster) call(i int, o clusterOp, name string, args ...string) (*gen.ExecuteResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, tc.peers[i].Client, transport.DialOptions{})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c.Call(ctx, o.opts(), cmd(name, args...))
}

func (tc *testCluster) createAt(i int, name, strategy string, params map[string]string) {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, tc.peers[i].Client, transport.DialOptions{})
	if err != nil {
		tc.t.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateNamespace(ctx, &gen.NamespaceSpec{Name: name, Strategy: strategy, Params: params}); err != nil {
		tc.t.Fatalf("create namespace %s at %s: %v", name, tc.peers[i].ID, err)
	}
}

func replyStr(r *gen.ExecuteResponse) string {
	if r == nil || len(r.Replies) == 0 {
		return "<none>"
	}
	return string(r.Replies[0].Str)
}

func TestParsePeers(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"n1=127.0.0.1:7379@127.0.0.1:7380", 1, false},
		{"n1=a:1@a:2, n2=b:1@b:2,n3=c:1@c:2", 3, false},
		{"n1=a:1", 0, true},
		{"n1=a:1@a:2,n1=b:1@b:2", 0, true},
		{"=a:1@a:2", 0, true},
		{"", 0, true},
	} {
		got, err := ParsePeers(tt.in)
		if (err != nil) != tt.wantErr || len(got) != tt.want {
			t.Errorf("ParsePeers(%q) = %v, %v; want %d peers, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil {
			if back, _ := ParsePeers(FormatPeers(got)); len(back) != len(got) {
				t.Errorf("FormatPeers round trip of %q lost peers", tt.in)
			}
		}
	}
}

// TestClusterQuorum: a write at n1 is read at n3 with R=2; with n2 closed,
// writes with W=2 still succeed; n2 restarted on its data directory catches
// up without read repair (hinted handoff / anti-entropy).
func TestClusterQuorum(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3")
	// Read repair off: only hinted handoff and anti-entropy can bring n2
	// the write it missed.
	tc.createAt(0, "kv", "quorum", map[string]string{"read_repair": "off", "hint_interval": "100ms", "aae_interval": "300ms", "timeout": "500ms"})
	tc.waitNamespace("kv")
	ns := "kv"

	if r, err := tc.call(0, clusterOp{ns: ns, w: 2}, "SET", "k1", "v1"); err != nil || replyStr(r) != "OK" {
		t.Fatalf("SET k1 at n1 (W=2) = %s, %v", replyStr(r), err)
	}
	if r, err := tc.call(2, clusterOp{ns: ns, r: 2}, "GET", "k1"); err != nil || replyStr(r) != "v1" {
		t.Fatalf("GET k1 at n3 (R=2) = %s, %v; want v1", replyStr(r), err)
	}

	tc.stop(1)
	if r, err := tc.call(0, clusterOp{ns: ns, w: 2}, "SET", "k2", "v2"); err != nil || replyStr(r) != "OK" {
		t.Fatalf("SET k2 at n1 (W=2) with n2 down = %s, %v", replyStr(r), err)
	}
	if r, err := tc.call(2, clusterOp{ns: ns, r: 2}, "GET", "k2"); err != nil || replyStr(r) != "v2" {
		t.Fatalf("GET k2 at n3 (R=2) with n2 down = %s, %v; want v2", replyStr(r), err)
	}
	// R=3 cannot be met with n2 down.
	if r, err := tc.call(0, clusterOp{ns: ns, r: 3}, "GET", "k2"); err == nil {
		t.Fatalf("GET k2 (R=3) with n2 down succeeded: %s", replyStr(r))
	}

	tc.start(1)
	// A read with R=1 coordinated by n2 answers from n2's own copy.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := tc.call(1, clusterOp{ns: ns, r: 1}, "GET", "k2")
		if err == nil && replyStr(r) == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted n2 did not catch up on k2 in 10s: last GET (R=1) at n2 = %s, %v", replyStr(r), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r, err := tc.call(1, clusterOp{ns: ns, r: 1}, "GET", "k1"); err != nil || replyStr(r) != "v1" {
		t.Fatalf("GET k1 at restarted n2 (R=1) = %s, %v; want v1 (lost across restart?)", replyStr(r), err)
	}
	for i := range 3 {
		if r, err := tc.call(i, clusterOp{ns: ns, r: 3}, "GET", "k2"); err != nil || replyStr(r) != "v2" {
			t.Fatalf("GET k2 at n%d (R=3) = %s, %v; want v2", i+1, replyStr(r), err)
		}
	}
}

// TestClusterNamespaceCatchUp: a member that was down when a namespace was
// created gets it from a peer's catalog when it starts.
func TestClusterNamespaceCatchUp(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3")
	tc.stop(2)
	tc.createAt(0, "late", "quorum", nil)
	tc.waitNamespace("late")
	if tc.nodes[1].namespace("late") == nil {
		t.Fatal("namespace did not reach n2")
	}
	tc.start(2)
	if tc.nodes[2].namespace("late") == nil {
		t.Fatal("n3 did not pull the namespace created while it was down at start-up")
	}
	// A conflicting create elsewhere is refused (EXISTS), not applied.
	ctx := context.Background()
	c := dial(t, tc.peers[2].Client)
	err := c.CreateNamespace(ctx, &gen.NamespaceSpec{Name: "late", Strategy: "causal"})
	if err == nil {
		t.Fatal("conflicting create succeeded")
	}
	if got := tc.nodes[2].namespace("late").spec.Strategy; got != "quorum" {
		t.Fatalf("namespace strategy at n3 = %s, want quorum", got)
	}
}

// TestClusterCausal: two regions; a session that writes at n1 (region east)
// and moves to n3 (region west) reads its own write, by its session token.
func TestClusterCausal(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3")
	tc.createAt(0, "cz", "causal", map[string]string{"regions": "east:n1,n2;west:n3"})
	tc.waitNamespace("cz")
	for i := range 5 {
		v := "v" + string(rune('0'+i))
		w, err := tc.call(0, clusterOp{ns: "cz"}, "SET", "k", v)
		if err != nil || replyStr(w) != "OK" {
			t.Fatalf("SET k %s at n1 = %s, %v", v, replyStr(w), err)
		}
		if len(w.Token) == 0 {
			t.Fatal("causal write returned no session token")
		}
		r, err := tc.call(2, clusterOp{ns: "cz", token: w.Token}, "GET", "k")
		if err != nil || replyStr(r) != v {
			t.Fatalf("GET k at n3 with the write's token = %s, %v; want %s (read-your-writes across regions)", replyStr(r), err, v)
		}
	}
}

func TestDemoRegions(t *testing.T) {
	peers := []ClusterPeer{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}}
	for _, tt := range []struct {
		k    int
		want string
	}{{1, "r1:n1,n2,n3"}, {2, "r1:n1,n2;r2:n3"}, {3, "r1:n1;r2:n2;r3:n3"}, {7, "r1:n1;r2:n2;r3:n3"}} {
		if got := demoRegions(peers, tt.k); got != tt.want {
			t.Errorf("demoRegions(3 nodes, %d) = %q, want %q", tt.k, got, tt.want)
		}
	}
}

// TestDemoCluster: `dialkv demo --nodes 3 --strategy causal` starts a
// cluster whose demo namespace is on every node and serves requests.
func TestDemoCluster(t *testing.T) {
	nodes, spec, err := startDemoCluster(demoClusterOptions{nodes: 3, strategy: "causal", regions: 2, listen: "127.0.0.1:0", dir: t.TempDir(), log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, cn := range nodes {
			cn.Close(context.Background())
		}
	}()
	if spec == nil || spec.Params["regions"] != "r1:n1,n2;r2:n3" {
		t.Fatalf("demo namespace spec = %+v", spec)
	}
	for _, cn := range nodes {
		if cn.namespace(demoNamespace) == nil {
			t.Fatalf("namespace %s missing on %s", demoNamespace, cn.cfg.ID)
		}
	}
	ns := demoNamespace
	c := dial(t, nodes[0].Addr())
	w, err := c.Call(context.Background(), &gen.RequestOptions{Ns: &ns}, cmd("SET", "greeting", "hello"))
	if err != nil || replyStr(w) != "OK" {
		t.Fatalf("SET at n1 = %s, %v", replyStr(w), err)
	}
	c3 := dial(t, nodes[2].Addr())
	r, err := c3.Call(context.Background(), &gen.RequestOptions{Ns: &ns, Token: w.Token}, cmd("GET", "greeting"))
	if err != nil || replyStr(r) != "hello" {
		t.Fatalf("GET at n3 = %s, %v", replyStr(r), err)
	}
}

// TestDemoCausalRegionDelayAndLagMetric: `dialkv demo --strategy causal
// --regions 2 --region-delay 200ms`: a write at n1 (region r1) is not yet
// visible at n2 (region r2) right away, becomes visible, and n2 exports its
// propagation lag — at least the injected delay — as the histogram
// dialkv_causal_replication_lag_seconds{source_region="r1"}.
func TestDemoCausalRegionDelayAndLagMetric(t *testing.T) {
	const delay = 200 * time.Millisecond
	nodes, _, err := startDemoCluster(demoClusterOptions{nodes: 2, strategy: "causal", regions: 2, regionDelay: delay, listen: "127.0.0.1:0", dir: t.TempDir(), log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, cn := range nodes {
			cn.Close(context.Background())
		}
	}()
	ns := demoNamespace
	c1, c2 := dial(t, nodes[0].Addr()), dial(t, nodes[1].Addr())
	if w, err := c1.Call(context.Background(), &gen.RequestOptions{Ns: &ns}, cmd("SET", "k", "v")); err != nil || replyStr(w) != "OK" {
		t.Fatalf("SET at n1 = %s, %v", replyStr(w), err)
	}
	if r, err := c2.Call(context.Background(), &gen.RequestOptions{Ns: &ns}, cmd("GET", "k")); err != nil || replyStr(r) == "v" {
		t.Fatalf("GET at n2 right after the write = %s, %v; want it not yet visible (%v delay)", replyStr(r), err, delay)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := c2.Call(context.Background(), &gen.RequestOptions{Ns: &ns}, cmd("GET", "k"))
		if err == nil && replyStr(r) == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write never became visible at n2: %s, %v", replyStr(r), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mfs, err := nodes[1].metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dialkv_causal_replication_lag_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			if h.GetSampleCount() != 1 {
				t.Fatalf("lag histogram has %d samples, want 1", h.GetSampleCount())
			}
			if h.GetSampleSum() < delay.Seconds()*0.95 {
				t.Fatalf("lag %vs, want at least the injected %v", h.GetSampleSum(), delay)
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "source_region" && l.GetValue() != "r1" {
					t.Fatalf("source_region %q, want r1", l.GetValue())
				}
			}
			return
		}
	}
	t.Fatal("n2 exports no dialkv_causal_replication_lag_seconds")
}
