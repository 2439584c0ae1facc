package nodes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// causalLoad is a session-token-carrying SET/GET load on a causal
// namespace, recorded for the checkers. Client c writes only its own keys
// (so the last acknowledged write of a key is known) and reads everyone's.
type causalLoad struct {
	tc      *testCluster
	ns      string
	keys    int
	start   time.Time
	mu      sync.Mutex
	ops     []checker.Op
	targets []int
	stop    chan struct{}
	wg      sync.WaitGroup
}

func (l *causalLoad) now() int64 { return int64(time.Since(l.start)) }

func (l *causalLoad) setTargets(ts ...int) {
	l.mu.Lock()
	l.targets = ts
	l.mu.Unlock()
}

func (l *causalLoad) client(c int) {
	defer l.wg.Done()
	var tok []byte
	sess := 0
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		l.mu.Lock()
		at := l.targets[(c+i)%len(l.targets)]
		l.mu.Unlock()
		op := checker.Op{Client: c, Session: fmt.Sprintf("c%d/%d", c, sess), Invoke: l.now(), Node: l.tc.peers[at].ID, TokenIn: string(tok)}
		var r *gen.ExecuteResponse
		var err error
		if i%2 == 0 {
			op.F, op.Key, op.Args = checker.FPut, fmt.Sprintf("c%d-%d", c, (i/2)%l.keys), []string{fmt.Sprintf("v%d-%d", c, i)}
			r, err = l.tc.call(at, clusterOp{ns: l.ns, token: tok}, "SET", op.Key, op.Args[0])
		} else {
			op.F, op.Key = checker.FGet, fmt.Sprintf("c%d-%d", (c+i)%4, (i*7)%l.keys)
			r, err = l.tc.call(at, clusterOp{ns: l.ns, token: tok}, "GET", op.Key)
		}
		done := l.now()
		op.Complete = &done
		var unavailable *gen.Unavailable
		switch {
		case errors.As(err, &unavailable):
			op.Outcome, op.Error = checker.Fail, err.Error() // certainly not executed (paused)
		case err != nil:
			op.Outcome, op.Error = checker.Unknown, err.Error()
		case len(r.Replies) != 1:
			op.Outcome, op.Error = checker.Unknown, fmt.Sprintf("%d replies", len(r.Replies))
		case r.Replies[0].Kind == gen.ReplyKind_ERROR:
			e := r.Replies[0].GetError()
			op.Outcome, op.Error = checker.Unknown, e.GetMessage()
			if e.GetCode() == string(consistency.CodeUnavailable) {
				op.Outcome = checker.Fail // certainly not executed
			}
		default:
			op.Outcome = checker.OK
			if len(r.Token) > 0 {
				tok = r.Token
			}
			op.TokenOut = string(tok)
			if op.F == checker.FGet && r.Replies[0].Kind == gen.ReplyKind_BULK {
				op.Value = checker.StrPtr(string(r.Replies[0].Str))
			}
		}
		if op.Outcome == checker.Unknown && op.F == checker.FPut {
			tok = nil // the session cannot tell its latest write any more: a new one
			sess++
		}
		l.mu.Lock()
		l.ops = append(l.ops, op)
		l.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
}

// TestClusterCausalAddNode (issue 9): a causal namespace in two regions
// (r1: n1,n2; r2: n3) under a session-carrying load; n4, started with
// --join only, is added to r1 with ChangeRing (what `dialkv admin add-node
// n4 --region r1` runs). While it changes, only requests for the keys
// whose owner in r1 changes are refused (UNAVAILABLE, not executed); the
// others are served. Afterwards the session and causal checkers pass on
// the recorded history, every key reads its last acknowledged write at
// every node, each node of r1 holds exactly the keys it owns under the
// new list (n4 its share), and r1 and r2 agree.
func TestClusterCausalAddNode(t *testing.T) {
	if testing.Short() {
		t.Skip("about 15 s")
	}
	tc := newTestClusterGossip(t, true, "n1", "n2", "n3")
	for i := range 3 {
		tc.waitMembers(i, map[string]string{"n1": "alive", "n2": "alive", "n3": "alive"})
	}
	const ns = "c"
	tc.createAt(0, ns, "causal", map[string]string{"regions": "r1:n1,n2;r2:n3", "timeout": "1s"})
	tc.waitNamespace(ns)
	const keys = 40
	load := &causalLoad{tc: tc, ns: ns, keys: keys, start: time.Now(), targets: []int{0, 1, 2}, stop: make(chan struct{})}
	for c := range 4 {
		load.wg.Add(1)
		go load.client(c)
	}
	time.Sleep(2 * time.Second)

	addrs := freeAddrs(t, 3)
	n4 := ClusterPeer{ID: "n4", Client: addrs[0], Peer: addrs[1]}
	tc.peers = append(tc.peers, n4)
	tc.dirs = append(tc.dirs, t.TempDir())
	tc.gossip = append(tc.gossip, addrs[2])
	cn, err := StartClusterNode(
		Config{ID: "n4", Listen: n4.Client, DataDir: tc.dirs[3], Fsync: core.SyncAlways, Logger: slog.New(slog.DiscardHandler)},
		ClusterConfig{Name: "test", PeerListen: n4.Peer, CatalogSync: 200 * time.Millisecond,
			Gossip: &GossipOptions{Listen: addrs[2], Join: []string{tc.gossip[0]}, ProbeInterval: 100 * time.Millisecond, Rejoin: 300 * time.Millisecond}},
	)
	if err != nil {
		t.Fatalf("start n4 with --join: %v", err)
	}
	tc.nodes = append(tc.nodes, cn)
	tc.waitNamespace(ns) // n4 opens it as an outsider
	if r, err := tc.call(3, clusterOp{ns: ns}, "GET", "c0-0"); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("n4 served a causal request before it is a member: %v %v", r, err)
	}

	// r1's owner of every key the load uses, before the change.
	r1Owner := func() map[string]consistency.NodeID {
		out := map[string]consistency.NodeID{}
		tc.nodes[0].namespace(ns).svc.(*clusterService).Call(func(r consistency.Replica) {
			for c := range 4 {
				for k := range keys {
					key := fmt.Sprintf("c%d-%d", c, k)
					out[key] = r.(*causal.Replica).Holders(key)[0] // regions sorted: r1 first
				}
			}
		})
		return out
	}
	before := r1Owner()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Without a region for n4 the change is refused before anything moves.
	if _, err := ChangeRing(ctx, tc.peers[1].Client, transport.DialOptions{}, RingChange{Add: &n4}); err == nil || !strings.Contains(err.Error(), "no region") {
		t.Fatalf("add-node without --region: %v; want a refusal naming the missing region", err)
	}
	n4.Region = "r1"
	logf := func(f string, a ...any) { t.Logf("ring: "+f, a...) }
	uptime := func() string { b, _ := os.ReadFile("/proc/loadavg"); return strings.TrimSpace(string(b)) }
	changeStart := load.now()
	add, err := ChangeRing(ctx, tc.peers[1].Client, transport.DialOptions{}, RingChange{Add: &n4, Settle: 1500 * time.Millisecond, Log: logf})
	if err != nil {
		t.Fatalf("add n4: %v", err)
	}
	changeEnd := load.now()
	after := r1Owner()
	moved := map[string]bool{}
	for k, o := range before {
		if after[k] != o {
			moved[k] = true
		}
	}
	t.Logf("add n4: %d of %d keys move in r1, %d records handed off, stream %v, pause of the moved keys %v, total %v (loadavg %s)", len(moved), len(before), add.Moved, add.Stream.Round(time.Millisecond), add.CausalPause.Round(time.Millisecond), add.Total.Round(time.Millisecond), uptime())
	if add.Moved == 0 {
		t.Fatal("adding n4 handed off no record")
	}
	load.setTargets(0, 1, 2, 3)
	time.Sleep(2 * time.Second)
	close(load.stop)
	load.wg.Wait()
	time.Sleep(time.Second) // replication between regions settles

	ops := checkCausalFinal(t, tc, ns, load.ops, []int{0, 1, 2, 3}, "TestClusterCausalAddNode")
	nOK, nFail, nUnknown := checker.Outcomes(ops)
	t.Logf("load: %d ok, %d refused, %d unknown", nOK, nFail, nUnknown)
	// During the change only the keys that move are refused (and only
	// in r1); the others are served.
	refusedMoving, servedStaying, otherRefusals := 0, 0, 0
	for _, op := range ops {
		if op.Invoke < changeStart || op.Invoke > changeEnd {
			continue
		}
		switch {
		case op.Outcome == checker.Fail && strings.Contains(op.Error, "moves to another node"):
			refusedMoving++
			if !moved[op.Key] || op.Node == "n3" {
				t.Errorf("%s %s at %s refused as moving, but its owner in r1 stays %s (go test -run TestClusterCausalAddNode ./nodes)", op.F, op.Key, op.Node, before[op.Key])
			}
		case op.Outcome == checker.Fail:
			otherRefusals++ // a token's dependencies not visible within the timeout (load)
		case op.Outcome == checker.OK && !moved[op.Key]:
			servedStaying++
		}
	}
	t.Logf("during the change: %d requests for moving keys refused, %d for staying keys served, %d refused otherwise", refusedMoving, servedStaying, otherRefusals)
	if servedStaying == 0 {
		t.Error("no request for a key that stays was served during the change")
	}

	// Each node holds exactly what it owns; r1 (n1, n2, n4) and r2 agree.
	r1 := map[string]string{}
	for _, i := range []int{0, 1, 3} {
		var dump map[string]string
		var holders func(string) []consistency.NodeID
		tc.nodes[i].namespace(ns).svc.(*clusterService).Call(func(r consistency.Replica) {
			dump, _ = r.Dump(time.Now())
			holders = r.(*causal.Replica).Holders
		})
		for k, v := range dump {
			if !containsID(holders(k), tc.peers[i].ID) {
				t.Errorf("%s holds %s, which it does not own after the change", tc.peers[i].ID, k)
			}
			r1[k] = v
		}
		if i == 3 && len(dump) == 0 {
			t.Error("n4 holds no key after being added")
		}
	}
	var r2 map[string]string
	tc.nodes[2].namespace(ns).svc.(*clusterService).Call(func(r consistency.Replica) { r2, _ = r.Dump(time.Now()) })
	if len(r1) != len(r2) {
		t.Errorf("regions differ: r1 holds %d keys, r2 %d", len(r1), len(r2))
	}
	for k, v := range r2 {
		if r1[k] != v {
			t.Errorf("key %s: r1 %s, r2 %s", k, r1[k], v)
		}
	}
}

// checkCausalFinal reads, at each node of at with a fresh session, every
// key the load wrote and wants its last acknowledged write (each key has
// one writer, whose writes are sequential) or a later one of unknown
// outcome; then runs the session and causal checkers on the history. It
// returns the history with ids set. test names the test for the
// reproduce line.
func checkCausalFinal(t *testing.T, tc *testCluster, ns string, ops []checker.Op, at []int, test string) []checker.Op {
	t.Helper()
	last := map[string]int{}
	for i, op := range ops {
		if op.F == checker.FPut && op.Outcome == checker.OK {
			last[op.Key] = i
		}
	}
	for _, n := range at {
		for k, i := range last {
			r, err := tc.call(n, clusterOp{ns: ns}, "GET", k)
			if err != nil || r.Replies[0].Kind != gen.ReplyKind_BULK {
				t.Fatalf("final GET %s at %s: %v %v (go test -run %s ./nodes)", k, tc.peers[n].ID, r, err, test)
			}
			got := string(r.Replies[0].Str)
			if got != ops[i].Args[0] && !laterUnknown(ops, i, got) {
				t.Errorf("GET %s at %s = %q, want the last acknowledged %q (go test -run %s ./nodes)", k, tc.peers[n].ID, got, ops[i].Args[0], test)
			}
		}
	}
	for i := range ops {
		ops[i].ID = int64(i + 1)
	}
	res := checker.Check(ops, nil, checker.Options{Checks: []string{checker.CheckSession, checker.CheckCausal}, MaxExamples: 5})
	for _, name := range []string{checker.CheckSession, checker.CheckCausal} {
		cr := res.Get(name)
		t.Logf("%s: %s: %s", name, cr.Verdict, cr.Summary)
		if cr.Verdict != checker.VerdictOK {
			t.Errorf("%s: %s %v (go test -run %s ./nodes)", name, cr.Summary, cr.Anomalies, test)
		}
	}
	return ops
}

func containsID(ids []consistency.NodeID, id string) bool {
	for _, x := range ids {
		if string(x) == id {
			return true
		}
	}
	return false
}

// laterUnknown reports whether a put of val to the key of ops[i], after
// it and of unknown outcome, may explain a read of val.
func laterUnknown(ops []checker.Op, i int, val string) bool {
	for _, op := range ops[i+1:] {
		if op.F == checker.FPut && op.Key == ops[i].Key && op.Outcome == checker.Unknown && op.Args[0] == val {
			return true
		}
	}
	return false
}

// TestClusterCausalRemoveDown (issue 9): a causal namespace in two regions
// (r1: n1,n2; r2: n3,n4) under a session-carrying load through every
// node; n2 is stopped for good (after the load moved off it for a moment,
// so that its replication to r2 drained: the writes a dead node
// acknowledged that no other region has are lost by design, docs/causal.md
// "Membership"), gossip marks it down, and it is removed with ChangeRing's
// Down (what `dialkv admin remove-node n2 --down` runs) under the load on
// n1, n3 and n4. The keys n2 owned in r1 are seeded to n1 from r2's
// owners. Afterwards every key reads its last acknowledged write at n1, n3
// and n4, the session and causal checkers pass on the recorded history, n1
// holds exactly what it owns, and r1 and r2 agree (convergence).
func TestClusterCausalRemoveDown(t *testing.T) {
	if testing.Short() {
		t.Skip("about 15 s")
	}
	tc := newTestClusterGossip(t, true, "n1", "n2", "n3", "n4")
	all := map[string]string{"n1": "alive", "n2": "alive", "n3": "alive", "n4": "alive"}
	for i := range 4 {
		tc.waitMembers(i, all)
	}
	const ns = "c"
	tc.createAt(0, ns, "causal", map[string]string{"regions": "r1:n1,n2;r2:n3,n4", "timeout": "1s"})
	tc.waitNamespace(ns)
	const keys = 40
	load := &causalLoad{tc: tc, ns: ns, keys: keys, start: time.Now(), targets: []int{0, 1, 2, 3}, stop: make(chan struct{})}
	for c := range 4 {
		load.wg.Add(1)
		go load.client(c)
	}
	time.Sleep(2 * time.Second)
	// No client write reaches n2 for a moment (r2's nodes own their keys
	// in r2; n1 would forward n2's keys to it), so that what n2
	// acknowledged has reached r2 when it stops.
	load.setTargets(2, 3)
	time.Sleep(time.Second)
	tc.stop(1)
	load.setTargets(0, 2, 3)
	tc.waitMembers(0, map[string]string{"n2": "down"})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logf := func(f string, a ...any) { t.Logf("ring: "+f, a...) }
	uptime := func() string { b, _ := os.ReadFile("/proc/loadavg"); return strings.TrimSpace(string(b)) }
	if _, err := ChangeRing(ctx, tc.peers[0].Client, transport.DialOptions{}, RingChange{Remove: "n2", Log: logf}); err == nil || !strings.Contains(err.Error(), "--down") {
		t.Fatalf("removing stopped n2 without Down: %v, want a refusal that names --down", err)
	}
	rm, err := ChangeRing(ctx, tc.peers[0].Client, transport.DialOptions{}, RingChange{Remove: "n2", Down: true, Log: logf})
	if err != nil {
		t.Fatalf("remove down n2: %v", err)
	}
	t.Logf("remove down n2: %d records seeded, stream %v, pause of the moved keys %v, total %v (loadavg %s)", rm.Moved, rm.Stream.Round(time.Millisecond), rm.CausalPause.Round(time.Millisecond), rm.Total.Round(time.Millisecond), uptime())
	if rm.Moved == 0 {
		t.Fatal("removing n2 seeded no record")
	}
	time.Sleep(2 * time.Second)
	close(load.stop)
	load.wg.Wait()
	time.Sleep(time.Second) // replication between regions settles

	ops := checkCausalFinal(t, tc, ns, load.ops, []int{0, 2, 3}, "TestClusterCausalRemoveDown")
	nOK, nFail, nUnknown := checker.Outcomes(ops)
	t.Logf("load: %d ok, %d refused, %d unknown", nOK, nFail, nUnknown)

	// n1 holds exactly what it owns, r1 (now n1 alone) and r2 agree.
	var r1, r2 map[string]string
	var holders func(string) []consistency.NodeID
	tc.nodes[0].namespace(ns).svc.(*clusterService).Call(func(r consistency.Replica) {
		r1, _ = r.Dump(time.Now())
		holders = r.(*causal.Replica).Holders
	})
	for k := range r1 {
		if !containsID(holders(k), "n1") {
			t.Errorf("n1 holds %s, which it does not own after the change", k)
		}
	}
	r2 = map[string]string{}
	for _, i := range []int{2, 3} {
		tc.nodes[i].namespace(ns).svc.(*clusterService).Call(func(r consistency.Replica) {
			d, _ := r.Dump(time.Now())
			for k, v := range d {
				r2[k] = v
			}
		})
	}
	if len(r1) != len(r2) || len(r1) < 4*keys/2 {
		t.Errorf("regions differ or are short: r1 holds %d keys, r2 %d (go test -run TestClusterCausalRemoveDown ./nodes)", len(r1), len(r2))
	}
	for k, v := range r2 {
		if r1[k] != v {
			t.Errorf("key %s: r1 %s, r2 %s (go test -run TestClusterCausalRemoveDown ./nodes)", k, r1[k], v)
		}
	}
}

// TestClusterCausalRemoveDownOneRegion: with a causal namespace of one
// region (every key has one copy), removing a node that is down is
// refused before anything moves, with a message that says why.
func TestClusterCausalRemoveDownOneRegion(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3")
	tc.createAt(0, "c", "causal", nil)
	tc.waitNamespace("c")
	tc.stop(2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := ChangeRing(ctx, tc.peers[0].Client, transport.DialOptions{}, RingChange{Remove: "n3", Down: true})
	if err == nil || !strings.Contains(err.Error(), "single region") {
		t.Fatalf("remove-node n3 --down with a one-region causal namespace: %v, want a refusal naming the single region (go test -run TestClusterCausalRemoveDownOneRegion ./nodes)", err)
	}
	t.Logf("refused: %v", err)
	if m := tc.nodes[0].Membership(); m.Version > 1 || m.Phase != PhaseStable {
		t.Fatalf("the refused change moved the member list: %+v", m)
	}
}
