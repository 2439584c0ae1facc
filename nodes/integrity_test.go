package nodes

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/quorum"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/core/pebbleengine"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// corruptionEvents reads dialkv_corruption_events_total{namespace, kind}
// from a node's metrics registry.
func corruptionEvents(t *testing.T, n *Node, ns, kind string) float64 {
	t.Helper()
	mfs, err := n.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dialkv_corruption_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns && labels["kind"] == kind {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// waitGet polls GET key at member i (R=1: its own copy) until it is want.
func (tc *testCluster) waitGet(i int, ns, key, want string) {
	tc.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := tc.call(i, clusterOp{ns: ns, r: 1}, "GET", key)
		if err == nil && replyStr(r) == want {
			return
		}
		if time.Now().After(deadline) {
			tc.t.Fatalf("GET %s at %s = %s, %v; want %s (not rebuilt from the other replicas)", key, tc.peers[i].ID, replyStr(r), err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCorruptRecordRebuilt: a quorum record corrupted on a stopped node's
// disk is found at restart (CRC-32C), dropped, logged and counted, and
// rebuilt from the other replicas by anti-entropy (read repair is off).
func TestCorruptRecordRebuilt(t *testing.T) {
	var logs syncBuffer
	tc := newTestCluster(t, "n1", "n2", "n3")
	tc.createAt(0, "kv", "quorum", map[string]string{"read_repair": "off", "aae_interval": "200ms", "timeout": "1s"})
	tc.waitNamespace("kv")
	for _, k := range []string{"k", "j"} {
		if r, err := tc.call(0, clusterOp{ns: "kv", w: 3}, "SET", k, "value-"+k); err != nil || replyStr(r) != "OK" {
			t.Fatalf("SET %s (W=3) = %s, %v", k, replyStr(r), err)
		}
	}
	tc.stop(1)
	dir := filepath.Join(tc.dirs[1], "ns", "kv", "pebble")
	eng, err := pebbleengine.Open(dir, pebbleengine.Options{Sync: core.SyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("o/k") // quorum's object record of key k
	raw, err := eng.Get(key)
	if err != nil {
		t.Fatalf("reading k's record on n2: %v", err)
	}
	raw = append([]byte(nil), raw...)
	raw[len(raw)-2] ^= 0x5a // still decodable, wrong: only the checksum tells
	b := eng.NewBatch()
	b.Set(key, raw)
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	eng.Close()

	tc.logw = &logs
	tc.start(1)
	if got := corruptionEvents(t, tc.nodes[1].Node, "kv", "record"); got != 1 {
		t.Fatalf("dialkv_corruption_events_total{kind=record} = %v; want 1", got)
	}
	if !strings.Contains(logs.String(), "records failed their checksum at recovery") {
		t.Fatalf("the corruption was not logged:\n%s", logs.String())
	}
	tc.waitGet(1, "kv", "k", "value-k")
	tc.waitGet(1, "kv", "j", "value-j")
}

// TestCorruptStoreRebuilt: a quorum replica whose store fails its recovery
// with a checksum error is moved aside, logged and counted, and the
// replica restarts empty and is refilled by its peers.
func TestCorruptStoreRebuilt(t *testing.T) {
	tc := &cluster{self: "n1", mem: Membership{Version: 1, Phase: PhaseStable, Members: []ClusterPeer{{ID: "n1", Client: "c1", Peer: "p1"}, {ID: "n2", Client: "c2", Peer: "p2"}}}}
	dir := t.TempDir()
	var samples []consistency.Sample
	var logs syncBuffer
	env := StrategyEnv{Spec: NamespaceSpec{Name: "kv", Strategy: "quorum", Params: map[string]string{"n": "2"}}, Dir: dir, NodeID: "n1",
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Samples: func(s []consistency.Sample) { samples = append(samples, s...) }}
	// A store with a key, then a factory whose first recovery reports a
	// checksum failure, as pebble does for a bad block.
	fails := 1
	f := func(cfg consistency.Config) (consistency.Replica, error) {
		if fails > 0 {
			fails--
			return nil, errors.New("quorum: recovering objects: pebble: block checksum mismatch: " + core.ErrCorruption.Error() + ": x")
		}
		return quorum.New(cfg)
	}
	// Without ErrCorruption in the chain nothing is moved aside.
	if _, _, err := tc.openReplica(env, f); err == nil || len(samples) != 0 {
		t.Fatalf("a non-corruption error: %v, samples %v", err, samples)
	}
	fails = 1
	f2 := func(cfg consistency.Config) (consistency.Replica, error) {
		if fails > 0 {
			fails--
			return nil, errors.Join(errors.New("quorum: recovering objects: block checksum mismatch"), core.ErrCorruption)
		}
		return quorum.New(cfg)
	}
	eng, rep, err := tc.openReplica(env, f2)
	if err != nil || rep == nil {
		t.Fatalf("rebuild: %v", err)
	}
	eng.Close()
	if len(samples) != 1 || samples[0].Name != corruptionSample || samples[0].Label != corruptStore {
		t.Fatalf("samples %v; want one store corruption event", samples)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "pebble.corrupt-*"))
	if len(aside) != 1 {
		t.Fatalf("moved-aside stores: %v", aside)
	}
	if _, err := os.Stat(filepath.Join(dir, "pebble")); err != nil {
		t.Fatalf("no fresh store: %v", err)
	}
	if !strings.Contains(logs.String(), "replica store is corrupt: moved aside") {
		t.Fatalf("not logged:\n%s", logs.String())
	}
	// Other strategies are never rebuilt behind their back.
	env.Spec.Strategy = "causal"
	fails = 1
	if _, _, err := tc.openReplica(env, f2); !errors.Is(err, core.ErrCorruption) {
		t.Fatalf("causal store corruption: %v; want the error, not a rebuild", err)
	}
}

// TestCorruptCausalRecordRepaired (issue 11): a causal record corrupted on
// a stopped node's disk is never decoded into a wrong value: at restart a
// read of it is refused (UNAVAILABLE, naming the checksum), counted in
// dialkv_corruption_events_total{kind="record-read"} and logged, while
// the node serves its other keys; the record is then re-fetched from the
// other region, the repair counted (kind="record-repaired") and logged,
// and the key reads its value again.
func TestCorruptCausalRecordRepaired(t *testing.T) {
	var logs syncBuffer
	tc := newTestCluster(t, "n1", "n2")
	tc.createAt(0, "cz", "causal", map[string]string{"regions": "a:n1;b:n2"})
	tc.waitNamespace("cz")
	for _, k := range []string{"k", "j"} {
		if r, err := tc.call(0, clusterOp{ns: "cz"}, "SET", k, "value-"+k); err != nil || replyStr(r) != "OK" {
			t.Fatalf("SET %s = %s, %v", k, replyStr(r), err)
		}
	}
	tc.waitGet(1, "cz", "k", "value-k") // replicated to region b
	tc.stop(0)
	eng, err := pebbleengine.Open(filepath.Join(tc.dirs[0], "ns", "cz", "pebble"), pebbleengine.Options{Sync: core.SyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("v/k") // causal's record of key k
	raw, err := eng.Get(key)
	if err != nil {
		t.Fatalf("reading k's record on n1: %v", err)
	}
	raw = append([]byte(nil), raw...)
	raw[len(raw)-3] ^= 0x01 // still JSON-shaped: only the checksum tells
	b := eng.NewBatch()
	b.Set(key, raw)
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	eng.Close()

	tc.logw = &logs
	tc.start(0)
	tc.waitNamespace("cz")
	r, err := tc.call(0, clusterOp{ns: "cz"}, "GET", "k")
	var ue *gen.Unavailable
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("GET of the corrupt record: %+v, %v; want the typed Unavailable exception naming the checksum", r, err)
	}
	if r, err := tc.call(0, clusterOp{ns: "cz"}, "GET", "j"); err != nil || replyStr(r) != "value-j" {
		t.Fatalf("GET of a sound key: %s, %v", replyStr(r), err)
	}
	for deadline := time.Now().Add(5 * time.Second); corruptionEvents(t, tc.nodes[0].Node, "cz", "record-read") < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("dialkv_corruption_events_total{kind=record-read} not counted\nlogs:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "failed its checksum") {
		t.Fatalf("the corrupt read was not logged:\n%s", logs.String())
	}
	tc.waitGet(0, "cz", "k", "value-k") // re-fetched from the other region
	for deadline := time.Now().Add(5 * time.Second); corruptionEvents(t, tc.nodes[0].Node, "cz", "record-repaired") != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("dialkv_corruption_events_total{kind=record-repaired} = %v, want 1\nlogs:\n%s", corruptionEvents(t, tc.nodes[0].Node, "cz", "record-repaired"), logs.String())
		}
	}
	if !strings.Contains(logs.String(), "rebuilt corrupt records") {
		t.Fatalf("the repair was not logged:\n%s", logs.String())
	}
	tc.waitGet(1, "cz", "k", "value-k") // the other region's copy
}
