package nodes

import (
	"strings"
	"testing"
	"time"
)

// TestReplicaScrub: records damaged under a running node (bytes flipped in
// its Pebble store, as bit rot would; no client reads them) are found by
// the node's background scrub (Config.ReplicaScrubEvery,
// --replica-scrub-every). A quorum record (anti-entropy and read repair
// off, so nothing else could fix it) is written again from the replica's
// copy, logged (found_by=scrub) and counted in
// dialkv_corruption_events_total{kind="record"}; after a restart the
// node's recovery finds no corrupt record and the node serves the key from
// its own copy. A causal record is logged and counted
// (kind="record-scrub"), not repaired. Before the damage, passes find
// nothing.
//
// Reproduce: go test -count=1 -run TestReplicaScrub ./nodes
func TestReplicaScrub(t *testing.T) {
	var logs syncBuffer
	tc := newTestCluster(t, "n1", "n2")
	tc.nodeCfg = func(i int, c *Config) {
		if i == 1 {
			c.ReplicaScrubEvery = 100 * time.Millisecond
		}
	}
	tc.logw = &logs
	tc.stop(1)
	tc.start(1)
	tc.createAt(0, "kv", "quorum", map[string]string{"n": "2", "read_repair": "off", "aae_interval": "1h", "timeout": "1s"})
	tc.createAt(0, "cz", "causal", map[string]string{"regions": "a:n1;b:n2"})
	tc.waitNamespace("kv")
	tc.waitNamespace("cz")
	for _, k := range []string{"k", "j"} {
		if r, err := tc.call(0, clusterOp{ns: "kv", w: 2}, "SET", k, "value-"+k); err != nil || replyStr(r) != "OK" {
			t.Fatalf("SET %s (W=2) = %s, %v", k, replyStr(r), err)
		}
		if r, err := tc.call(0, clusterOp{ns: "cz"}, "SET", k, "value-"+k); err != nil || replyStr(r) != "OK" {
			t.Fatalf("SET %s in cz = %s, %v", k, replyStr(r), err)
		}
	}
	tc.waitGet(1, "cz", "k", "value-k") // replicated to n2's region
	time.Sleep(500 * time.Millisecond)  // a few clean passes
	for _, kind := range []string{"record", "record-scrub"} {
		for _, ns := range []string{"kv", "cz"} {
			if got := corruptionEvents(t, tc.nodes[1].Node, ns, kind); got != 0 {
				t.Fatalf("sound stores: dialkv_corruption_events_total{%s, %s} = %v\nlogs:\n%s", ns, kind, got, logs.String())
			}
		}
	}
	damage := func(ns, key string) {
		t.Helper()
		eng := nsService(tc.nodes[1].namespace(ns)).(*clusterService).eng
		raw, err := eng.Get([]byte(key))
		if err != nil {
			t.Fatalf("reading %s in %s on n2: %v", key, ns, err)
		}
		raw = append([]byte(nil), raw...)
		raw[len(raw)-2] ^= 0x5a
		b := eng.NewBatch()
		b.Set([]byte(key), raw)
		if err := b.Commit(true); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	damage("kv", "o/k") // quorum's object record of k
	damage("cz", "v/k") // causal's record of k
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		q := corruptionEvents(t, tc.nodes[1].Node, "kv", "record")
		c := corruptionEvents(t, tc.nodes[1].Node, "cz", "record-scrub")
		if q >= 1 && c >= 1 {
			if q != 1 {
				t.Fatalf("the quorum record was counted %v times: the repair did not hold", q)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrub counted quorum %v, causal %v; want both\nlogs:\n%s", q, c, logs.String())
		}
	}
	out := logs.String()
	if !strings.Contains(out, "written again from the replica's copy") || !strings.Contains(out, "found_by=scrub") || !strings.Contains(out, "re-fetched from the other regions") {
		t.Fatalf("the scrub's findings are not logged:\n%s", out)
	}
	// The causal record the scrub found is re-fetched from the other
	// region (no request met it).
	for deadline := time.Now().Add(10 * time.Second); corruptionEvents(t, tc.nodes[1].Node, "cz", "record-repaired") != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the causal record the scrub found was not re-fetched (record-repaired %v)\nlogs:\n%s", corruptionEvents(t, tc.nodes[1].Node, "cz", "record-repaired"), logs.String())
		}
	}
	// The quorum record on disk is sound again: a restart's recovery finds
	// nothing, and n2 answers k from its own copy (R=1 at n2, no read
	// repair or anti-entropy to fetch it).
	tc.stop(1)
	var logs2 syncBuffer
	tc.logw = &logs2
	tc.nodeCfg = nil
	tc.start(1)
	if got := corruptionEvents(t, tc.nodes[1].Node, "kv", "record"); got != 0 {
		t.Fatalf("recovery after the scrub's repair counted %v corrupt quorum records\nlogs:\n%s", got, logs2.String())
	}
	tc.stop(0) // only n2's copy can answer now
	r, err := tc.call(1, clusterOp{ns: "kv", r: 1}, "GET", "k")
	if err != nil || replyStr(r) != "value-k" {
		t.Fatalf("GET k at n2 alone after the repair and a restart = %s, %v", replyStr(r), err)
	}
}
