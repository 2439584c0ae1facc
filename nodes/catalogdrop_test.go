package nodes

import (
	"context"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// waitGone waits until no running member of tc has namespace name.
func (tc *testCluster) waitGone(name string) {
	tc.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, cn := range tc.nodes {
		for cn != nil && cn.namespace(name) != nil {
			if time.Now().After(deadline) {
				tc.t.Fatalf("namespace %s still on %s 10 s after the drop (rerun: go test -run TestClusterNamespaceDrop ./nodes, DIALKV_TEST_LOG=1 for logs)", name, cn.cfg.ID)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// readAll is GET key with R=3 at node i, retried for up to 5 s while it
// times out: right after a member restarted, its peers' senders may still
// be in their reconnect backoff (up to 2 s, transport/peer.go), longer than
// the 1 s quorum timeout.
func (tc *testCluster) readAll(i int, ns, key string) (*gen.ExecuteResponse, error) {
	r, err := tc.call(i, clusterOp{ns: ns, r: 3}, "GET", key)
	for deadline := time.Now().Add(5 * time.Second); err != nil && strings.Contains(err.Error(), "TIMEOUT") && time.Now().Before(deadline); {
		tc.t.Logf("GET %s at n%d (R=3): %v; retrying", key, i+1, err)
		time.Sleep(200 * time.Millisecond)
		r, err = tc.call(i, clusterOp{ns: ns, r: 3}, "GET", key)
	}
	return r, err
}

// TestClusterNamespaceDrop: NAMESPACE DROP at one member drops a quorum
// namespace on every member (tombstone forwarded), including one that was
// down during the drop (tombstone pulled at its start, and its stale copy
// not pulled back by the others); a re-create of the name starts empty
// with the next generation and survives restarts.
func TestClusterNamespaceDrop(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3")
	tc.createAt(0, "gone", "quorum", nil)
	tc.waitNamespace("gone")
	if r, err := tc.call(0, clusterOp{ns: "gone", w: 3}, "SET", "k", "old"); err != nil || replyStr(r) != "OK" {
		t.Fatalf("SET k at n1 (W=3) = %s, %v", replyStr(r), err)
	}
	tc.stop(2) // n3 is down during the drop and keeps its copy
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, tc.peers[0].Client, transport.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.DropNamespace(ctx, "gone"); err != nil {
		t.Fatalf("drop at n1: %v", err)
	}
	tc.waitGone("gone")
	for i := range 2 {
		if r, err := tc.call(i, clusterOp{ns: "gone"}, "GET", "k"); err == nil || !strings.Contains(err.Error(), "NONAMESPACE") {
			t.Fatalf("GET on the dropped namespace at n%d = %s, %v; want a NONAMESPACE error", i+1, replyStr(r), err)
		}
		if g, ok := tc.nodes[i].Tombstones()["gone"]; !ok || g != 0 {
			t.Fatalf("n%d tombstones = %v; want gone:0", i+1, tc.nodes[i].Tombstones())
		}
	}
	// n3 restarts with the namespace in its catalog: it pulls the
	// tombstone at start, and n1, n2 must not pull its copy back.
	tc.start(2)
	tc.waitGone("gone")
	time.Sleep(5 * 200 * time.Millisecond) // five catalog syncs
	for i, cn := range tc.nodes {
		if cn.namespace("gone") != nil {
			t.Fatalf("dropped namespace came back on n%d after n3 restarted with its old copy", i+1)
		}
	}
	// A re-create (at another member) is generation 1, spreads, and starts
	// empty.
	tc.createAt(1, "gone", "quorum", nil)
	tc.waitNamespace("gone")
	for i, cn := range tc.nodes {
		if g := cn.namespace("gone").spec.Params[GenerationParam]; g != "1" {
			t.Fatalf("re-created namespace at n%d has generation %q, want 1", i+1, g)
		}
	}
	r, err := tc.readAll(0, "gone", "k")
	if err != nil || len(r.Replies) == 0 || r.Replies[0].Kind != gen.ReplyKind_NIL {
		t.Fatalf("GET k on the re-created namespace (R=3) = %s, %v; want nil (the old data came back)", replyStr(r), err)
	}
	if r, err := tc.call(2, clusterOp{ns: "gone", w: 3}, "SET", "k", "new"); err != nil || replyStr(r) != "OK" {
		t.Fatalf("SET k at n3 on the re-created namespace = %s, %v", replyStr(r), err)
	}
	// The tombstone of generation 0 does not drop generation 1 on restart.
	tc.stop(0)
	tc.start(0)
	time.Sleep(3 * 200 * time.Millisecond)
	for i, cn := range tc.nodes {
		if cn.namespace("gone") == nil {
			t.Fatalf("re-created namespace missing on n%d after n1 restarted", i+1)
		}
	}
	if r, err := tc.readAll(0, "gone", "k"); err != nil || replyStr(r) != "new" {
		t.Fatalf("GET k at n1 after restart (R=3) = %s, %v; want new", replyStr(r), err)
	}
}

// TestNamespaceGenerations: the tombstone and generation rules on one node
// (catalog.go, GenerationParam), step by step, and that they persist.
func TestNamespaceGenerations(t *testing.T) {
	dir := t.TempDir()
	var sawGen bool
	cfg := Config{DataDir: dir, Strategies: map[string]StrategyFactory{"fake": func(env StrategyEnv) (consistency.Service, error) {
		if _, ok := env.Spec.Params[GenerationParam]; ok {
			sawGen = true
		}
		return &gatedService{gate: make(chan struct{})}, nil
	}}}
	n := startNode(t, cfg)
	gen0 := map[string]string{GenerationParam: "0"}
	steps := []struct {
		what     string
		do       func() error
		wantErr  string // substring; "" for success
		wantGen  string // "a"'s generation param afterwards; "-" for no namespace
		wantTomb map[string]uint64
	}{
		{"create", func() error { return n.CreateNamespace(NamespaceSpec{Name: "a", Strategy: "fake"}) }, "", "", nil},
		{"drop", func() error { return n.DropNamespace("a") }, "", "-", map[string]uint64{"a": 0}},
		{"stale create of generation 0", func() error { return n.CreateNamespace(NamespaceSpec{Name: "a", Strategy: "fake", Params: gen0}) }, "DROPPED", "-", map[string]uint64{"a": 0}},
		{"re-create", func() error { return n.CreateNamespace(NamespaceSpec{Name: "a", Strategy: "fake"}) }, "", "1", map[string]uint64{"a": 0}},
		{"older tombstone", func() error { _, err := n.ApplyTombstone("a", 0); return err }, "", "1", map[string]uint64{"a": 0}},
		{"covering tombstone", func() error { _, err := n.ApplyTombstone("a", 1); return err }, "", "-", map[string]uint64{"a": 1}},
		{"local drop leaves no tombstone", func() error {
			if err := n.CreateNamespace(NamespaceSpec{Name: "l", Strategy: "local"}); err != nil {
				return err
			}
			return n.DropNamespace("l")
		}, "", "-", map[string]uint64{"a": 1}},
	}
	for _, st := range steps {
		err := st.do()
		if st.wantErr == "" && err != nil || st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)) {
			t.Fatalf("%s: err = %v, want %q (rerun: go test -run TestNamespaceGenerations ./nodes)", st.what, err, st.wantErr)
		}
		got := "-"
		if ns := n.namespace("a"); ns != nil {
			got = ns.spec.Params[GenerationParam]
		}
		if got != st.wantGen {
			t.Fatalf("%s: generation of a = %q, want %q", st.what, got, st.wantGen)
		}
		if tomb := n.Tombstones(); !maps.Equal(tomb, st.wantTomb) {
			t.Fatalf("%s: tombstones = %v, want %v", st.what, tomb, st.wantTomb)
		}
	}
	if sawGen {
		t.Fatal("a strategy saw the generation parameter")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, dropped, err := loadCatalog(dir)
	if err != nil || !maps.Equal(dropped, map[string]uint64{"a": 1}) {
		t.Fatalf("persisted tombstones = %v, %v; want a:1", dropped, err)
	}
}

// TestClusterRaftNamespaceDrop: dropping a raft namespace at one member
// drops it on all three, and every member's NodeHost stops: its Raft
// address can be listened on again.
func TestClusterRaftNamespaceDrop(t *testing.T) {
	c := newRaftTestCluster(t, "rdrop", 3, RaftRebalanceOptions{})
	for i := range 3 {
		c.start(i, 3)
	}
	c.createRaft("r", 3, 3, []int{0, 1, 2}, nil)
	if err := c.nodes[0].DropNamespace("r"); err != nil {
		t.Fatalf("drop at n1: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var left []string
		for i, cn := range c.nodes {
			if cn.namespace("r") != nil {
				left = append(left, c.peers[i].ID)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("raft namespace still on %v 30 s after the drop (rerun: go test -run TestClusterRaftNamespaceDrop ./nodes)", left)
		}
	}
	// A member forgets the namespace before it stops its NodeHost
	// (Node.dropLocked: no new requests reach a closing namespace), so the
	// Raft address frees a moment after the namespace is gone.
	for i, a := range c.raftAddrs {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			ln, err := net.Listen("tcp", a)
			if err == nil {
				ln.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("n%d's Raft address %s still in use 10 s after the drop (NodeHost not stopped?): %v", i+1, a, err)
			}
		}
	}
}
