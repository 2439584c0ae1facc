package nodes

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/core/pebbleengine"
	"github.com/dialkv/dialkv/transport"
)

// TestClusterCausalRebuildAfterCorruptQueue: a siblings-mode causal
// namespace in two regions (r1: n1,n2; r2: n3,n4) under a
// session-carrying load; then, with r2 stopped, n2 acknowledges three
// writes of its own keys (kx twice, ky once) that only its outbound queue
// holds, and stops; the entries of kx's first write and of ky are
// corrupted on its disk for good. At restart the store is moved aside
// (kept), n2 is rebuilt from r2 and serves again: kx reads its second
// (salvaged) write in both regions, ky — which no copy holds — is
// reported as "version lost" for both regions (log line and
// dialkv_corruption_events_total{kind="version-lost"}) and r2 applies its
// gone notice (kind="version-gone"), a second load
// phase runs through every node, every load key reads its last
// acknowledged write everywhere, the session and causal checkers pass on
// the whole history, and the regions converge.
func TestClusterCausalRebuildAfterCorruptQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("about 15 s")
	}
	var logs syncBuffer
	tc := newTestCluster(t, "n1", "n2", "n3", "n4")
	const ns = "c"
	tc.createAt(0, ns, "causal", map[string]string{"regions": "r1:n1,n2;r2:n3,n4", "timeout": "1s", "resolve": causal.ResolveSiblings})
	tc.waitNamespace(ns)
	const keys = 20
	load := &causalLoad{tc: tc, ns: ns, keys: keys, start: time.Now(), targets: []int{0, 1, 2, 3}}
	// Each phase's clients are new ones (their keys and values differ
	// from the earlier phase's: the checkers need unique written values).
	runLoad := func(d time.Duration, first int) {
		load.stop = make(chan struct{})
		for c := first; c < first+4; c++ {
			load.wg.Add(1)
			go load.client(c)
		}
		time.Sleep(d)
		close(load.stop)
		load.wg.Wait()
	}
	runLoad(2*time.Second, 0)
	time.Sleep(time.Second) // replication between regions settles

	// Two keys n2 owns in r1.
	var owned []string
	tc.nodes[1].namespace(ns).svc.(*clusterService).Call(func(r consistency.Replica) {
		for i := 0; len(owned) < 2; i++ {
			if k := "own" + string(rune('a'+i%26)) + strings.Repeat("x", i/26); r.(*causal.Replica).Holders(k)[0] == "n2" {
				owned = append(owned, k)
			}
		}
	})
	kx, ky := owned[0], owned[1]
	tc.stop(2)
	tc.stop(3)
	for _, w := range [][2]string{{kx, "x1"}, {kx, "x2"}, {ky, "y1"}} {
		if r, err := tc.call(1, clusterOp{ns: ns}, "SET", w[0], w[1]); err != nil || replyStr(r) != "OK" {
			t.Fatalf("SET %s at n2 with r2 down: %s %v", w[0], replyStr(r), err)
		}
	}
	tc.stop(1)
	dir := filepath.Join(tc.dirs[1], "ns", ns, "pebble")
	eng, err := pebbleengine.Open(dir, pebbleengine.Options{Sync: core.SyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	var qkeys []string
	it := eng.NewIter([]byte("q/"), []byte("q0"))
	for ok := it.First(); ok; ok = it.Next() {
		qkeys = append(qkeys, string(it.Key()))
	}
	it.Close()
	sort.Strings(qkeys)
	if len(qkeys) != 3 {
		eng.Close()
		t.Fatalf("n2's queue holds %d entries, want 3 (its writes with r2 down)", len(qkeys))
	}
	b := eng.NewBatch()
	for _, k := range []string{qkeys[0], qkeys[2]} { // kx's first write, ky's
		v, err := eng.Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		v = append([]byte(nil), v...)
		v[len(v)/2] ^= 0x5a
		b.Set([]byte(k), v)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	eng.Close()

	tc.start(2)
	tc.start(3)
	tc.logw = &logs
	tc.start(1)
	tc.logw = nil
	if aside, _ := filepath.Glob(dir + ".corrupt-*"); len(aside) != 1 {
		t.Fatalf("moved-aside stores: %v, want 1", aside)
	}
	if got := corruptionEvents(t, tc.nodes[1].Node, ns, corruptStore); got != 1 {
		t.Fatalf("dialkv_corruption_events_total{kind=store} = %v, want 1", got)
	}
	for _, i := range []int{1, 2} {
		tc.waitGet(i, ns, kx, "x2") // the salvaged write, in both regions
	}
	for _, i := range []int{1, 2} {
		if r, err := tc.call(i, clusterOp{ns: ns}, "GET", ky); err != nil || replyStr(r) != "(nil)" && replyStr(r) != "" {
			t.Fatalf("GET %s (lost) at %s: %q %v, want nil", ky, tc.peers[i].ID, replyStr(r), err)
		}
	}
	// ky's only write is lost for both regions (r1's copy was n2's old
	// store); r2's owner of ky applies the gone notice.
	if got := corruptionEvents(t, tc.nodes[1].Node, ns, "version-lost"); got != 2 {
		t.Fatalf("dialkv_corruption_events_total{kind=version-lost} = %v, want 2 (%s for r1 and r2)", got, ky)
	}
	deadline := time.Now().Add(5 * time.Second)
	for gone := 0.0; gone != 1; {
		gone = corruptionEvents(t, tc.nodes[2].Node, ns, "version-gone") + corruptionEvents(t, tc.nodes[3].Node, ns, "version-gone")
		if gone != 1 && time.Now().After(deadline) {
			t.Fatalf("dialkv_corruption_events_total{kind=version-gone} in r2 = %v, want 1 (%s's gone notice)", gone, ky)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// What dialkv admin rebuild shows (CLUSTER REBUILD): n2 rebuilt,
	// seeded by both nodes of r2, ky lost for both regions; r2 applied
	// the gone notice.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rr, err := RebuildAt(ctx, tc.peers[1].Client, transport.DialOptions{}, ns)
	if err != nil {
		t.Fatal(err)
	}
	st := rr.Namespaces[ns]
	if st.Rebuilding || st.Finished.IsZero() || nodeList(st.SeededBy) != "n3,n4" || len(st.Lost) != 2 {
		t.Fatalf("CLUSTER REBUILD at n2: %+v, want rebuilt, seeded by n3,n4, 2 versions lost", st)
	}
	lines := strings.Join(FormatRebuild(rr.Node, ns, st), "\n")
	if !strings.Contains(lines, "n2 c: rebuilt") || !strings.Contains(lines, "seeded by n3,n4") || !strings.Contains(lines, "lost: \""+ky+"\"") {
		t.Fatalf("admin lines:\n%s", lines)
	}
	gone := int64(0)
	for _, i := range []int{2, 3} {
		rr, err := RebuildAt(ctx, tc.peers[i].Client, transport.DialOptions{}, "")
		if err != nil {
			t.Fatal(err)
		}
		gone += rr.Namespaces[ns].GoneApplied
	}
	if gone != 1 {
		t.Fatalf("gone notices applied in r2 (CLUSTER REBUILD): %d, want 1", gone)
	}
	for _, want := range []string{"causal store lost replication entries: moved aside", "version lost", ky, "causal store rebuilt from the other regions"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs.String())
		}
	}

	runLoad(2*time.Second, 4)
	time.Sleep(time.Second)
	checkCausalFinal(t, tc, ns, load.ops, []int{0, 1, 2, 3}, "TestClusterCausalRebuildAfterCorruptQueue")
	dump := func(nodes ...int) map[string]string {
		out := map[string]string{}
		for _, i := range nodes {
			tc.nodes[i].namespace(ns).svc.(*clusterService).Call(func(r consistency.Replica) {
				d, _ := r.Dump(time.Now())
				for k, v := range d {
					out[k] = v
				}
			})
		}
		return out
	}
	r1, r2 := dump(0, 1), dump(2, 3)
	if len(r1) != len(r2) || len(r1) < 4*keys/2 {
		t.Errorf("regions differ or are short: r1 %d keys, r2 %d", len(r1), len(r2))
	}
	for k, v := range r2 {
		if r1[k] != v {
			t.Errorf("key %s: r1 %s, r2 %s (go test -run TestClusterCausalRebuildAfterCorruptQueue ./nodes)", k, r1[k], v)
		}
	}
}

// TestCausalRebuildRefusedWithOneRegion: a siblings-mode causal store with
// a corrupt replication entry in a namespace of a single region has no
// other copy to be rebuilt from: opening it fails with a message saying
// so, and nothing is moved aside.
func TestCausalRebuildRefusedWithOneRegion(t *testing.T) {
	tc := &cluster{self: "n1", mem: Membership{Version: 1, Phase: PhaseStable, Members: []ClusterPeer{{ID: "n1", Client: "c1", Peer: "p1"}, {ID: "n2", Client: "c2", Peer: "p2"}}}}
	dir := t.TempDir()
	var logs syncBuffer
	env := StrategyEnv{Spec: NamespaceSpec{Name: "c", Strategy: "causal", Params: map[string]string{"resolve": causal.ResolveSiblings}}, Dir: dir, NodeID: "n1",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	eng, err := pebbleengine.Open(filepath.Join(dir, "pebble"), pebbleengine.Options{Sync: core.SyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	b := eng.NewBatch()
	b.Set([]byte("q/\x00\x00\x00\x00\x00\x00\x00\x01"), []byte("garbage, not a sealed entry"))
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	eng.Close()
	_, _, err = tc.openReplica(env, causal.New)
	if !errors.Is(err, causal.ErrNoOtherRegion) || !strings.Contains(err.Error(), "single region") {
		t.Fatalf("open: %v, want a refusal naming the single region", err)
	}
	if aside, _ := filepath.Glob(filepath.Join(dir, "pebble.*")); len(aside) != 0 {
		t.Fatalf("moved or left behind: %v", aside)
	}
	t.Logf("refused: %v", err)
}
