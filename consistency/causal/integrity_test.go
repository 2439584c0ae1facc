package causal

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// corruptStored flips a byte in the middle of every stored value whose key
// starts with prefix on a crashed node's disk, durably (persistent
// corruption, not a flaky read), and returns how many it flipped.
func corruptStored(t *testing.T, c *cluster, id consistency.NodeID, prefix string) int {
	t.Helper()
	eng := c.nodes[id].eng
	type kv struct{ k, v []byte }
	var all []kv
	it := eng.NewIter([]byte(prefix), nil)
	for ok := it.First(); ok && strings.HasPrefix(string(it.Key()), prefix); ok = it.Next() {
		v := append([]byte(nil), it.Value()...)
		v[len(v)/2] ^= 0x5a
		all = append(all, kv{append([]byte(nil), it.Key()...), v})
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	b := eng.NewBatch()
	for _, e := range all {
		b.Set(e.k, e.v)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := eng.Sync(); err != nil {
		t.Fatal(err)
	}
	return len(all)
}

// TestCorruptMetadataIsRebuiltAtRestart: an owner writes during a partition
// between regions (so its replication entries stay queued), crashes, and
// restarts on a disk whose meta or queue entries are corrupt. The restart
// must succeed, keep the acknowledged write, still replicate it to the
// other region, and keep accepting writes that win over the old ones.
func TestCorruptMetadataIsRebuiltAtRestart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prefix string
		check  func(t *testing.T, s Stats, flipped int)
	}{
		{"meta", keyMeta, func(t *testing.T, s Stats, flipped int) {
			if s.CorruptMeta != 1 || s.CorruptQueue != 0 {
				t.Errorf("stats %+v: want CorruptMeta=1, CorruptQueue=0", s)
			}
		}},
		{"queue", prefixQueue, func(t *testing.T, s Stats, flipped int) {
			if s.CorruptQueue != int64(flipped) || s.Requeued == 0 {
				t.Errorf("stats %+v: want CorruptQueue=%d and writes requeued", s, flipped)
			}
		}},
		{"meta and queue", "", func(t *testing.T, s Stats, flipped int) {
			if s.CorruptMeta != 1 || s.CorruptQueue == 0 || s.Requeued == 0 {
				t.Errorf("stats %+v: want meta and queue rebuilt", s)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 11, twoRegions, "")
			c.partition("us", "eu", true)
			owner := c.nodes["u1"].rep.owner("us", "k")
			for _, v := range []string{"v0", "v1"} {
				if r := c.do(owner, nil, "SET", "k", v); replyString(r.Reply) != "OK" {
					t.Fatalf("SET k %s: %s", v, replyString(r.Reply))
				}
			}
			c.crash(owner)
			flipped := 0
			if tc.prefix == "" {
				flipped = corruptStored(t, c, owner, keyMeta) + corruptStored(t, c, owner, prefixQueue)
			} else {
				flipped = corruptStored(t, c, owner, tc.prefix)
			}
			if flipped == 0 {
				t.Fatal("nothing to corrupt")
			}
			c.restart(owner)
			tc.check(t, c.nodes[owner].rep.stats, flipped)
			if r := c.do(owner, nil, "GET", "k"); replyString(r.Reply) != "v1" {
				t.Fatalf("after restart: %s, want v1", replyString(r.Reply))
			}
			c.partition("us", "eu", false)
			c.run(2 * time.Second)
			if r := c.do("e1", nil, "GET", "k"); replyString(r.Reply) != "v1" {
				t.Fatalf("eu after restart and heal: %s, want v1 (the acknowledged write replicated)", replyString(r.Reply))
			}
			// New writes still win everywhere and drain the queue.
			if r := c.do(owner, nil, "SET", "k", "v2"); replyString(r.Reply) != "OK" {
				t.Fatalf("SET after restart: %s", replyString(r.Reply))
			}
			c.run(2 * time.Second)
			for _, at := range []consistency.NodeID{"u2", "e2"} {
				if r := c.do(at, nil, "GET", "k"); replyString(r.Reply) != "v2" {
					t.Fatalf("%s: %s, want v2", at, replyString(r.Reply))
				}
			}
			if q := len(c.nodes[owner].rep.queue); q != 0 {
				t.Errorf("%d replication entries still queued after healing", q)
			}
			// A second restart reads back clean metadata.
			c.crash(owner)
			c.restart(owner)
			if s := c.nodes[owner].rep.stats; s.CorruptMeta != 0 || s.CorruptQueue != 0 {
				t.Errorf("second restart found corruption again: %+v", s)
			}
		})
	}
}

// TestCorruptQueueInSiblingsModeIsRebuilt: siblings-mode writes cannot be
// rebuilt from the store, so a lost replication entry fails the restart
// with ErrLostReplication (and core.ErrCorruption); the store is then
// rebuilt (PrepareRebuild into a fresh one): the node refuses its keys
// until every node of the other region seeded them, keeps the salvaged
// write (whose dependency on a lost entry's write is dropped, else the
// other region would wait for it for good), reports the write no copy
// holds, and both regions converge. With a single region it refuses.
func TestCorruptQueueInSiblingsModeIsRebuilt(t *testing.T) {
	c := newClusterWith(t, 12, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
	u1 := c.nodes["u1"].rep
	a, b, lostKey := keyOwnedBy(t, u1, "us", "u1", "a"), keyOwnedBy(t, u1, "us", "u1", "b"), keyOwnedBy(t, u1, "us", "u1", "k")
	s := keyOwnedBy(t, u1, "us", "u2", "s")
	// Before the partition: concurrent writes of a in both regions
	// (siblings), and a session whose write at u2 depends on u1's.
	ea := u1.owner("eu", a)
	c.do("u1", nil, "SET", a, "a-us")
	c.do(ea, nil, "SET", a, "a-eu")
	r := c.do("u1", nil, "SET", "d", "d0")
	c.do("u2", r.Token, "SET", s, "s0")
	c.run(time.Second)
	// During it: b twice (the second write depends on the first) and
	// lostKey once, each queued for eu only.
	c.partition("us", "eu", true)
	var seqs []uint64
	for _, w := range [][2]string{{b, "b1"}, {b, "b2"}, {lostKey, "x"}} {
		if r := c.do("u1", nil, "SET", w[0], w[1]); replyString(r.Reply) != "OK" {
			t.Fatalf("SET %s: %s", w[0], replyString(r.Reply))
		}
		seqs = append(seqs, c.nodes["u1"].rep.seq)
	}
	c.crash("u1")
	corruptQueue(t, c, "u1", seqs[0], seqs[2]) // b1 and lostKey's entries
	cfg := consistency.Config{ID: "u1", Peers: c.peers, Engine: c.nodes["u1"].eng, Rand: rand.New(rand.NewPCG(1, 2)), Params: c.params}
	_, err := NewReplica(cfg)
	if !errors.Is(err, ErrLostReplication) || !errors.Is(err, core.ErrCorruption) {
		t.Fatalf("restart: err=%v, want ErrLostReplication and core.ErrCorruption", err)
	}
	one := cfg
	one.Peers, one.Params = []consistency.NodeID{"u1", "u2"}, map[string]string{"regions": "us:u1,u2", "resolve": ResolveSiblings}
	if _, err := PrepareRebuild(one, core.NewMemEngine()); !errors.Is(err, ErrNoOtherRegion) {
		t.Fatalf("single region: err=%v, want ErrNoOtherRegion", err)
	}
	fresh := core.NewMemEngine()
	rep, err := PrepareRebuild(cfg, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Salvaged != 1 || len(rep.Lost) != 2 {
		t.Fatalf("report %+v: want 1 entry salvaged, 2 lost", rep)
	}
	c.nodes["u1"].eng = fresh
	c.restart("u1")
	if st := c.nodes["u1"].rep.RebuildStatus(); !st.Rebuilding || len(st.Waiting) != 2 {
		t.Fatalf("status after restart: %+v, want rebuilding, waiting for e1 and e2", st)
	}
	if r := c.do("u2", nil, "GET", a); r.Reply.Kind != core.KindError || r.Reply.Err.Code != consistency.CodeUnavailable {
		t.Fatalf("GET %s while rebuilding: %s, want UNAVAILABLE", a, replyString(r.Reply))
	}
	c.partition("us", "eu", false)
	c.run(3 * time.Second)
	// lostKey's only write is lost in both regions: eu never got it,
	// and this region's copy was the old store's record.
	st := c.nodes["u1"].rep.RebuildStatus()
	if st.Rebuilding || len(st.Lost) != 2 || st.Lost[0].Key != lostKey || st.Lost[0].Region != "eu" || st.Lost[1].Key != lostKey || st.Lost[1].Region != "us" {
		t.Fatalf("status after the rebuild: %+v, want done, %s lost for eu and us", st, lostKey)
	}
	samples := map[string]float64{}
	for _, x := range c.nodes["u1"].rep.TakeSamples() {
		if x.Name == LostVersionMetric {
			samples[x.Label] += x.Value
		}
	}
	for _, l := range st.Lost {
		if samples[l.String()] != 1 {
			t.Fatalf("lost-version samples of %s: %v, want 1", l, samples)
		}
	}
	for _, at := range []consistency.NodeID{"u1", "u2", "e1", "e2"} {
		if r := c.do(at, nil, "GET", b); replyString(r.Reply) != "b2" {
			t.Fatalf("GET %s at %s: %s, want b2 (the salvaged write)", b, at, replyString(r.Reply))
		}
	}
	us, eu := c.regionDump("us"), c.regionDump("eu")
	if fmt.Sprint(us) != fmt.Sprint(eu) {
		t.Fatalf("regions diverge after the rebuild:\nus %v\neu %v", us, eu)
	}
	want := map[string]string{a: `siblings["a-eu","a-us"]`, b: `"b2"`, "d": `"d0"`, s: `"s0"`}
	if fmt.Sprint(us) != fmt.Sprint(want) {
		t.Fatalf("after the rebuild: %v, want %v (%s lost)", us, want, lostKey)
	}
	// New writes replicate and drain the queue.
	c.do("u1", nil, "SET", b, "b3")
	c.run(time.Second)
	if r := c.do(c.nodes["u1"].rep.owner("eu", b), nil, "GET", b); replyString(r.Reply) != "b3" {
		t.Fatalf("eu after a new write: %s, want b3", replyString(r.Reply))
	}
	if q := len(c.nodes["u1"].rep.queue); q != 0 {
		t.Errorf("%d replication entries still queued", q)
	}
}

// TestRebuildKeepsReplacedSiblingReplaced: a salvaged write that replaced
// another region's sibling (its Over) must leave the rebuilt record having
// seen that sibling, so that region's seed does not bring it back on the
// rebuilt node only (the regions would diverge for good). Review finding:
// the rebuilt record was made from the write alone (Seen held only this
// node's version).
func TestRebuildKeepsReplacedSiblingReplaced(t *testing.T) {
	c := newClusterWith(t, 12, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
	u1 := c.nodes["u1"].rep
	a, lostKey := keyOwnedBy(t, u1, "us", "u1", "a"), keyOwnedBy(t, u1, "us", "u1", "k")
	ea := u1.owner("eu", a)
	c.do("u1", nil, "SET", a, "a-us")
	c.do(ea, nil, "SET", a, "a-eu")
	c.run(time.Second)
	g := c.do("u1", nil, "GET", a) // both siblings: the next write replaces them
	c.partition("us", "eu", true)
	if r := c.do("u1", g.Token, "SET", a, "a-new"); replyString(r.Reply) != "OK" {
		t.Fatalf("SET %s: %s", a, replyString(r.Reply))
	}
	c.do("u1", nil, "SET", lostKey, "x")
	seq := c.nodes["u1"].rep.seq
	c.crash("u1")
	corruptQueue(t, c, "u1", seq)
	rebuildAndRestart(t, c, "u1")
	c.partition("us", "eu", false)
	c.run(5 * time.Second)
	us, eu := c.regionDump("us"), c.regionDump("eu")
	if fmt.Sprint(us) != fmt.Sprint(eu) {
		t.Fatalf("regions diverge after the rebuild:\nus %v\neu %v", us, eu)
	}
	if got := fmt.Sprint(us[a]); got != `"a-new"` {
		t.Fatalf("%s after the rebuild: %s, want \"a-new\" (the replaced siblings stay replaced)", a, got)
	}
}

// TestRebuildDropsEveryRegionsLostDeps: with three regions a salvaged
// write has one entry per region, and each region may have lost a
// different dependency of it; the stored sibling must lose them all (the
// union), or a reader of it inherits a dependency that one region will
// never see and that reader's writes wait there for good. Review finding:
// each entry rewrote the record as read from the engine, so the last
// entry's drop overwrote the earlier ones.
func TestRebuildDropsEveryRegionsLostDeps(t *testing.T) {
	c := newClusterWith(t, 12, "us:u1,u2;eu:e1,e2;ap:a1", "", map[string]string{"resolve": ResolveSiblings})
	u1 := c.nodes["u1"].rep
	l1, l2 := keyOwnedBy(t, u1, "us", "u1", "l"), keyOwnedBy(t, u1, "us", "u1", "m")
	b, w := keyOwnedBy(t, u1, "us", "u1", "b"), keyOwnedBy(t, u1, "us", "u1", "w")
	// l1 reaches ap only; l2 and b (which depends on both) reach no one.
	c.partition("us", "eu", true)
	r := c.do("u1", nil, "SET", l1, "1")
	c.run(time.Second)
	c.partition("us", "ap", true)
	r = c.do("u1", r.Token, "SET", l2, "2")
	if r = c.do("u1", r.Token, "SET", b, "b"); replyString(r.Reply) != "OK" {
		t.Fatalf("SET %s: %s", b, replyString(r.Reply))
	}
	// Lose l1's entry for eu and l2's for ap: eu never gets l1, ap never
	// gets l2 (l2's entry for eu is salvaged).
	var corrupt []uint64
	for seq, e := range c.nodes["u1"].rep.queue {
		if (e.Key == l1 && e.Region == "eu") || (e.Key == l2 && e.Region == "ap") {
			corrupt = append(corrupt, seq)
		}
	}
	c.crash("u1")
	if len(corrupt) != 2 {
		t.Fatalf("entries to corrupt: %v, want 2", corrupt)
	}
	for _, seq := range corrupt {
		if corruptStored(t, c, "u1", string(queueKey(seq))) != 1 {
			t.Fatalf("entry %d not found", seq)
		}
	}
	rebuildAndRestart(t, c, "u1")
	c.partition("us", "eu", false)
	c.partition("us", "ap", false)
	c.run(3 * time.Second)
	if st := c.nodes["u1"].rep.RebuildStatus(); st.Rebuilding {
		t.Fatalf("still rebuilding: %+v", st)
	}
	// A reader of b writes w: w must reach every region.
	g := c.do("u1", nil, "GET", b)
	if replyString(g.Reply) != "b" {
		t.Fatalf("GET %s: %s", b, replyString(g.Reply))
	}
	c.do("u1", g.Token, "SET", w, "w")
	c.run(3 * time.Second)
	for _, reg := range []string{"eu", "ap"} {
		if r := c.do(u1.owner(reg, w), nil, "GET", w); replyString(r.Reply) != "w" {
			t.Errorf("GET %s in %s: %s, want w (its write waits for a lost dependency)", w, reg, replyString(r.Reply))
		}
	}
}

// rebuildingU1 returns a two-region siblings cluster whose u1 is
// rebuilding its store (a corrupt replication entry), cut off from eu so
// the rebuild cannot finish until the caller heals the partition.
func rebuildingU1(t *testing.T) *cluster {
	t.Helper()
	c := newClusterWith(t, 12, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
	u1 := c.nodes["u1"].rep
	for _, p := range []string{"a", "b", "c"} {
		k := keyOwnedBy(t, u1, "us", "u1", p)
		c.do(u1.owner("eu", k), nil, "SET", k, "eu-"+p) // seeds for u1 later
	}
	c.run(time.Second)
	c.partition("us", "eu", true)
	c.do("u1", nil, "SET", keyOwnedBy(t, u1, "us", "u1", "k"), "x")
	seq := u1.seq
	c.crash("u1")
	corruptQueue(t, c, "u1", seq)
	rebuildAndRestart(t, c, "u1")
	c.run(time.Second)
	if !c.nodes["u1"].rep.RebuildStatus().Rebuilding {
		t.Fatal("u1 is not rebuilding")
	}
	return c
}

// TestRebuildingNodeAnswersRebuildReqPartially: a node whose own store is
// being rebuilt answers another region's rebuilding node (else two
// rebuilds wait for each other for good), but marks its seeds and its
// done Partial (its store is partial: the asker notes, does not store);
// once its rebuild finished it answers in full. Before session 8 it did
// not answer at all (TestTwoRegionsRebuildAtOnce hung).
func TestRebuildingNodeAnswersRebuildReqPartially(t *testing.T) {
	c := rebuildingU1(t)
	u1 := c.nodes["u1"].rep
	ask := func(id uint64) (feeds int, done, partial bool) {
		u1.Ready() // drop what was pending
		body := mustJSON(msg{Kind: kindRebuildReq, ID: id, Region: "eu"})
		u1.Receive(c.now, consistency.Message{From: "e1", To: "u1", Body: body})
		for _, m := range u1.Ready().Messages {
			var in msg
			if err := json.Unmarshal(m.Body, &in); err == nil && in.Kind == kindRebuildDone && m.To == "e1" {
				done, partial = true, in.Partial
			}
		}
		for _, p := range u1.feeds {
			if p.to == "e1" {
				feeds++
			}
		}
		return feeds, done, partial
	}
	if _, done, partial := ask(7); !done || !partial {
		t.Fatalf("rebuilding u1 and e1's rebuild-req: done %v partial %v, want a partial done", done, partial)
	}
	c.partition("us", "eu", false)
	c.run(3 * time.Second)
	if u1.RebuildStatus().Rebuilding {
		t.Fatal("u1 still rebuilding")
	}
	feeds, done, partial := ask(8)
	if feeds == 0 && !done || partial {
		t.Fatalf("u1 after its rebuild: %d seeds, done %v, partial %v; want a full answer", feeds, done, partial)
	}
}

// TestMalformedRebuildSeedAckIsDropped: a seed-ack of a rebuild (ID set)
// without its entry or version is dropped, not dereferenced. Review
// finding: onFeedAck lacked onSeedAck's nil check.
func TestMalformedRebuildSeedAckIsDropped(t *testing.T) {
	c := newClusterWith(t, 12, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
	key := "k"
	for _, m := range []msg{
		{Kind: kindSeedAck, ID: 3},
		{Kind: kindSeedAck, ID: 3, Entry: &outEntry{Key: key}},
		{Kind: kindSeedAck, ID: 3, Ver: &Version{Wall: 1, Node: "u1"}},
	} {
		c.nodes["e1"].rep.Receive(c.now, consistency.Message{From: "u1", To: "e1", Body: mustJSON(m)})
	}
	c.run(100 * time.Millisecond)
	if r := c.do("e1", nil, "SET", key, "v"); replyString(r.Reply) != "OK" {
		t.Fatalf("SET after malformed acks: %s", replyString(r.Reply))
	}
}

// TestCorruptMetaAloneInSiblingsModeIsRebuilt: a siblings-mode store whose
// meta alone is corrupt (every replication entry decodes) is not rebuilt
// from the other regions: the restart rebuilds the meta from the store and
// writes it back, the acknowledged write survives, and a later write wins
// in both regions.
func TestCorruptMetaAloneInSiblingsModeIsRebuilt(t *testing.T) {
	c := newClusterWith(t, 13, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
	owner := c.nodes["u1"].rep.owner("us", "k")
	c.partition("us", "eu", true) // k's entry stays queued
	c.do(owner, nil, "SET", "k", "v1")
	c.crash(owner)
	if corruptStored(t, c, owner, keyMeta) != 1 {
		t.Fatal("meta not found")
	}
	c.restart(owner)
	rep := c.nodes[owner].rep
	if st := rep.RebuildStatus(); st.Rebuilding || rep.stats.CorruptMeta != 1 || len(rep.queue) != 1 {
		t.Fatalf("after restart: status %+v, stats %+v, %d queued; want no rebuild, the meta rebuilt, the entry kept", st, rep.stats, len(rep.queue))
	}
	b, err := c.nodes[owner].eng.Get([]byte(keyMeta))
	var m meta
	if err != nil || openJSON([]byte(keyMeta), b, &m) != nil || m.Seq != rep.seq {
		t.Fatalf("stored meta after restart: %+v (err %v), want the rebuilt one (seq %d) written back", m, err, rep.seq)
	}
	if r := c.do(owner, nil, "GET", "k"); replyString(r.Reply) != "v1" {
		t.Fatalf("GET k after the meta rebuild: %s, want v1", replyString(r.Reply))
	}
	c.partition("us", "eu", false)
	c.do(owner, nil, "SET", "k", "v2")
	c.run(2 * time.Second)
	for _, at := range []consistency.NodeID{owner, rep.owner("eu", "k")} {
		if r := c.do(at, nil, "GET", "k"); replyString(r.Reply) != "v2" {
			t.Fatalf("GET k at %s: %s, want v2", at, replyString(r.Reply))
		}
	}
}

// writeThenCorrupt writes x=vx and y=vy at their us owners, lets them
// settle, and corrupts x's stored record while its owner is down; it
// returns x's owner, restarted.
func writeThenCorrupt(t *testing.T, c *cluster, x, y string) consistency.NodeID {
	t.Helper()
	ox := c.nodes["u1"].rep.owner("us", x)
	oy := c.nodes["u1"].rep.owner("us", y)
	c.do(ox, nil, "SET", x, "vx")
	c.do(oy, nil, "SET", y, "vy")
	c.run(time.Second)
	c.crash(ox)
	if corruptStored(t, c, ox, prefixValue+x) != 1 {
		t.Fatal("record not found")
	}
	c.restart(ox)
	return ox
}

// TestCorruptRecordIsATypedError: with a single region (no other copy), a
// record that fails its checksum is answered with a CORRUPTION error,
// never decoded into a wrong value, and the node keeps serving its other
// keys; the corrupt read is reported once as a corruption sample.
func TestCorruptRecordIsATypedError(t *testing.T) {
	c := newCluster(t, 14, "us:u1,u2", "")
	x, y := keysWithOwners1(t, c)
	ox := writeThenCorrupt(t, c, x, y)
	r := c.do(ox, nil, "GET", x)
	if r.Reply.Kind != core.KindError || r.Reply.Err.Code != core.CodeCorruption {
		t.Fatalf("GET of a corrupt record: %s, want a CORRUPTION error", replyString(r.Reply))
	}
	if r := c.do(ox, nil, "GET", y); replyString(r.Reply) != "vy" {
		t.Fatalf("GET of a sound key through the same node: %s, want vy", replyString(r.Reply))
	}
	// The corrupt read is reported once, as a corruption sample (a node
	// counts it in dialkv_corruption_events_total{kind="record-read"}).
	if n := countSamples(c.nodes[ox].rep, CorruptionMetric, "record-read"); n < 1 {
		t.Fatalf("corrupt reads reported: %v; want at least 1", n)
	}
	if n := countSamples(c.nodes[ox].rep, CorruptionMetric, "record-read"); n != 0 {
		t.Fatalf("corrupt reads reported again: %v", n)
	}
}

func countSamples(r *Replica, name, label string) (n float64) {
	for _, s := range r.TakeSamples() {
		if s.Name == name && s.Label == label {
			n += s.Value
		}
	}
	return n
}

// keysWithOwners1 finds two keys with different owners in region us.
func keysWithOwners1(t *testing.T, c *cluster) (string, string) {
	r := c.nodes["u1"].rep
	for i := 0; i < 100; i++ {
		if x, y := fmt.Sprintf("x%d", i), fmt.Sprintf("y%d", i); r.owner("us", x) != r.owner("us", y) {
			return x, y
		}
	}
	t.Fatal("no keys with distinct owners")
	return "", ""
}

// TestCorruptRecordIsRefetched (issue 11): a record that fails its
// checksum for good is re-fetched from the key's owners in the other
// regions and applied like a remote write, after its dependencies are
// visible here. Cases:
//   - replicated: the other region has the same version; reads are
//     refused (UNAVAILABLE, not executed) until the repair, then answer
//     the value; the repair is counted and reported once;
//   - own write not replicated yet: the other region has only the older
//     version, the outbound queue the newer one, which must win;
//   - newer with a dependency: the other region has a newer version of x
//     that depends on y, whose replication here is held back; x must not
//     become visible before y.
func TestCorruptRecordIsRefetched(t *testing.T) {
	for _, mode := range []string{ResolveLWW, ResolveSiblings} {
		t.Run(mode+"/replicated", func(t *testing.T) {
			c := newClusterWith(t, 14, twoRegions, "", map[string]string{"resolve": mode})
			x, y := keysWithOwners(t, c)
			ox := writeThenCorrupt(t, c, x, y)
			c.partition("us", "eu", true) // the repair cannot finish yet
			r := c.do(ox, nil, "GET", x)
			if r.Reply.Kind != core.KindError || r.Reply.Err.Code != consistency.CodeUnavailable || !strings.Contains(r.Reply.Err.Error(), "checksum") {
				t.Fatalf("GET of a corrupt record being repaired: %s, want UNAVAILABLE naming the checksum", replyString(r.Reply))
			}
			if r := c.do(ox, nil, "GET", y); replyString(r.Reply) != "vy" {
				t.Fatalf("GET of a sound key through the same node: %s, want vy", replyString(r.Reply))
			}
			c.partition("us", "eu", false)
			c.run(time.Second)
			if r := c.do(ox, nil, "GET", x); replyString(r.Reply) != "vx" {
				t.Fatalf("GET %s after the repair: %s, want vx (go test -run TestCorruptRecordIsRefetched ./consistency/causal)", x, replyString(r.Reply))
			}
			if s := c.nodes[ox].rep.stats; s.Repaired != 1 || s.CorruptReads < 1 {
				t.Fatalf("stats %+v: want Repaired=1 and the corrupt reads counted", s)
			}
			if n := countSamples(c.nodes[ox].rep, RepairMetric, "record"); n != 1 {
				t.Fatalf("repairs reported: %v, want 1", n)
			}
			// Writes go on, and reach the other region.
			if r := c.do(ox, nil, "SET", x, "vx2"); replyString(r.Reply) != "OK" {
				t.Fatalf("SET after the repair: %s", replyString(r.Reply))
			}
			c.run(time.Second)
			if r := c.do(c.nodes["e1"].rep.owner("eu", x), nil, "GET", x); replyString(r.Reply) != "vx2" {
				t.Fatalf("GET %s in eu after a write following the repair: %s, want vx2", x, replyString(r.Reply))
			}
		})
		t.Run(mode+"/own-write-not-replicated", func(t *testing.T) {
			c := newClusterWith(t, 15, twoRegions, "", map[string]string{"resolve": mode})
			owner := c.nodes["u1"].rep.owner("us", "k")
			tok := c.do(owner, nil, "SET", "k", "v1").Token
			c.run(time.Second)
			c.partition("us", "eu", true)
			if r := c.do(owner, tok, "SET", "k", "v2"); replyString(r.Reply) != "OK" {
				t.Fatalf("SET k v2: %s", replyString(r.Reply))
			}
			c.crash(owner)
			if corruptStored(t, c, owner, prefixValue+"k") != 1 {
				t.Fatal("record not found")
			}
			c.restart(owner)
			if r := c.do(owner, nil, "GET", "k"); r.Reply.Err == nil || r.Reply.Err.Code != consistency.CodeUnavailable {
				t.Fatalf("GET k while eu is cut off: %s, want UNAVAILABLE", replyString(r.Reply))
			}
			c.partition("us", "eu", false)
			c.run(2 * time.Second)
			for _, at := range []consistency.NodeID{owner, c.nodes["e1"].rep.owner("eu", "k")} {
				if r := c.do(at, nil, "GET", "k"); replyString(r.Reply) != "v2" {
					t.Fatalf("GET k at %s after the repair: %s, want the acknowledged v2 (go test -run TestCorruptRecordIsRefetched ./consistency/causal)", at, replyString(r.Reply))
				}
			}
		})
		t.Run(mode+"/newer-with-dependency", func(t *testing.T) {
			c := newClusterWith(t, 16, twoRegions, "", map[string]string{"resolve": mode})
			x, y := keysWithOwners(t, c)
			ux, uy := c.nodes["u1"].rep.owner("us", x), c.nodes["u1"].rep.owner("us", y)
			ex, ey := c.nodes["e1"].rep.owner("eu", x), c.nodes["e1"].rep.owner("eu", y)
			c.do(ux, nil, "SET", x, "x1")
			c.run(time.Second)
			c.crash(ux)
			if corruptStored(t, c, ux, prefixValue+x) != 1 {
				t.Fatal("record not found")
			}
			// In eu: y = y1, then x = x2 from y1's session (x2 depends on
			// y1); y1's replication to us is held back.
			c.cut[[2]consistency.NodeID{ey, uy}] = true
			tok := c.do(ey, nil, "SET", y, "y1").Token
			if r := c.do(ex, tok, "SET", x, "x2"); replyString(r.Reply) != "OK" {
				t.Fatalf("SET %s x2 in eu: %s", x, replyString(r.Reply))
			}
			c.restart(ux)
			c.do(ux, nil, "GET", x) // starts the repair
			c.run(2 * time.Second)
			if r := c.do(ux, nil, "GET", x); replyString(r.Reply) == "x2" {
				t.Fatalf("GET %s in us = x2 while its dependency %s=y1 is not visible there (GET %s: %s)", x, y, y, replyString(c.do(uy, nil, "GET", y).Reply))
			}
			c.cut[[2]consistency.NodeID{ey, uy}] = false
			c.run(2 * time.Second)
			r := c.do(ux, nil, "GET", x)
			if replyString(r.Reply) != "x2" {
				t.Fatalf("GET %s in us after y1 arrived: %s, want x2 (go test -run TestCorruptRecordIsRefetched ./consistency/causal)", x, replyString(r.Reply))
			}
			if ry := c.do(uy, r.Token, "GET", y); replyString(ry.Reply) != "y1" {
				t.Fatalf("GET %s after reading x2: %s, want its dependency y1", y, replyString(ry.Reply))
			}
			if s := c.nodes[ux].rep.stats; s.Repaired != 1 {
				t.Fatalf("stats %+v: want Repaired=1", s)
			}
		})
	}
}

// TestAckNamesTheVersion: an acknowledgement whose version differs from
// the queued entry's (a sequence number reused after a lost meta) leaves
// the entry queued; the right one retires it.
func TestAckNamesTheVersion(t *testing.T) {
	c := newCluster(t, 15, twoRegions, "")
	c.partition("us", "eu", true)
	owner := c.nodes["u1"].rep.owner("us", "k")
	c.do(owner, nil, "SET", "k", "v1")
	rep := c.nodes[owner].rep
	if len(rep.queue) != 1 {
		t.Fatalf("%d entries queued, want 1", len(rep.queue))
	}
	var e *outEntry
	for _, x := range rep.queue {
		e = x
	}
	for _, tc := range []struct {
		ver  *Version
		kept bool
	}{
		{nil, true},
		{&Version{Wall: e.Rec.V.Wall - 1, Node: e.Rec.V.Node}, true},
		{&e.Rec.V, false},
	} {
		rep.Receive(c.now, consistency.Message{From: "e1", To: owner, Body: mustJSON(msg{Kind: kindReplicateAck, ID: e.Seq, Region: "eu", Ver: tc.ver})})
		if _, ok := rep.queue[e.Seq]; ok != tc.kept {
			t.Errorf("ack with version %v: entry kept=%v, want %v", tc.ver, ok, tc.kept)
		}
	}
}

// TestScrubStartsRepair: a corrupt record found by the background scrub
// (no request has met it) is re-fetched from the other region, so the
// first read of the key answers its value.
func TestScrubStartsRepair(t *testing.T) {
	c := newCluster(t, 17, twoRegions, "")
	owner := c.nodes["u1"].rep.owner("us", "k")
	c.do(owner, nil, "SET", "k", "v1")
	c.run(time.Second)
	c.crash(owner)
	if corruptStored(t, c, owner, prefixValue+"k") != 1 {
		t.Fatal("record not found")
	}
	c.restart(owner)
	rep := c.nodes[owner].rep
	var cursor []byte
	found := 0
	for {
		next, sr, err := rep.ScrubRecords(cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		found += sr.Corrupt
		if next == nil {
			break
		}
		cursor = next
	}
	if found != 1 {
		t.Fatalf("scrub found %d corrupt values, want 1", found)
	}
	c.run(time.Second)
	if s := rep.stats; s.Repaired != 1 {
		t.Fatalf("stats %+v: want the record repaired after the scrub found it", s)
	}
	if r := c.do(owner, nil, "GET", "k"); replyString(r.Reply) != "v1" {
		t.Fatalf("first GET k after the scrub: %s, want v1 (go test -run TestScrubStartsRepair ./consistency/causal)", replyString(r.Reply))
	}
}

// rebuildAndRestart prepares a rebuild of crashed node id's store into a
// fresh memory engine (what the host does with a store whose replication
// entries are corrupt) and restarts the node on it.
func rebuildAndRestart(t *testing.T, c *cluster, id consistency.NodeID) RebuildReport {
	t.Helper()
	cfg := consistency.Config{ID: id, Peers: c.peers, Engine: c.nodes[id].eng, Rand: rand.New(rand.NewPCG(1, 2)), Params: c.params}
	fresh := core.NewMemEngine()
	rep, err := PrepareRebuild(cfg, fresh)
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[id].eng = fresh
	c.restart(id)
	return rep
}

// corruptQueue corrupts node id's stored replication-queue entries seqs
// (the node must be down); each must be found.
func corruptQueue(t *testing.T, c *cluster, id consistency.NodeID, seqs ...uint64) {
	t.Helper()
	for _, seq := range seqs {
		if corruptStored(t, c, id, string(queueKey(seq))) != 1 {
			t.Fatalf("%s: queue entry %d not found", id, seq)
		}
	}
}

// keyOwnedByBoth returns a key whose owner is u in region us and e in
// region eu.
func keyOwnedByBoth(t *testing.T, r *Replica, u, e consistency.NodeID, prefix string) string {
	t.Helper()
	for i := range 10000 {
		k := fmt.Sprintf("%s%d", prefix, i)
		if r.owner("us", k) == u && r.owner("eu", k) == e {
			return k
		}
	}
	t.Fatalf("no key %s* owned by %s and %s", prefix, u, e)
	return ""
}

// TestTwoRegionsRebuildAtOnce: u1 (us) and e1 (eu) both restart on
// stores with a corrupt replication entry and rebuild at once. Each needs
// the other's seeds; before session 8 neither answered the other while
// rebuilding, and both refused their keys for good. Now each answers the
// other Partial: both finish, the salvaged writes reach both regions,
// what only the two old stores held is reported lost — for both regions,
// by its origin — the regions converge and new writes replicate.
func TestTwoRegionsRebuildAtOnce(t *testing.T) {
	c := newClusterWith(t, 12, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
	u1 := c.nodes["u1"].rep
	a, b, x := keyOwnedByBoth(t, u1, "u1", "e1", "a"), keyOwnedByBoth(t, u1, "u1", "e1", "b"), keyOwnedByBoth(t, u1, "u1", "e1", "x")
	k, z := keyOwnedByBoth(t, u1, "u1", "e1", "k"), keyOwnedByBoth(t, u1, "u1", "e1", "z")
	o := keyOwnedByBoth(t, u1, "u2", "e2", "o")
	c.do("u1", nil, "SET", a, "a1") // in both regions, then only in the two old stores
	c.do("u2", nil, "SET", o, "o1") // neither rebuilding node holds it
	c.run(time.Second)
	c.partition("us", "eu", true)
	var seqs []uint64
	for _, w := range []struct {
		at     consistency.NodeID
		key, v string
	}{{"u1", b, "b1"}, {"u1", x, "x1"}, {"e1", k, "k1"}, {"e1", z, "z1"}} {
		if r := c.do(w.at, nil, "SET", w.key, w.v); replyString(r.Reply) != "OK" {
			t.Fatalf("SET %s at %s: %s", w.key, w.at, replyString(r.Reply))
		}
		seqs = append(seqs, c.nodes[w.at].rep.seq)
	}
	c.crash("u1")
	c.crash("e1")
	corruptQueue(t, c, "u1", seqs[1])
	corruptQueue(t, c, "e1", seqs[3])
	rebuildAndRestart(t, c, "u1")
	rebuildAndRestart(t, c, "e1")
	c.partition("us", "eu", false)
	c.run(5 * time.Second)
	lost := map[consistency.NodeID][]string{}
	for _, id := range []consistency.NodeID{"u1", "e1"} {
		st := c.nodes[id].rep.RebuildStatus()
		if st.Rebuilding {
			t.Fatalf("%s still rebuilding: %+v (the two rebuilds wait for each other)", id, st)
		}
		if len(st.Partial) != 1 {
			t.Errorf("%s: partial answers %v, want the other rebuilding node's", id, st.Partial)
		}
		for _, l := range st.Lost {
			lost[id] = append(lost[id], l.Key+"@"+l.Region)
		}
	}
	want := map[consistency.NodeID][]string{"u1": {a + "@eu", a + "@us", x + "@eu", x + "@us"}, "e1": {z + "@eu", z + "@us"}}
	if fmt.Sprint(lost) != fmt.Sprint(want) {
		t.Fatalf("lost: %v, want %v", lost, want)
	}
	us, eu := c.regionDump("us"), c.regionDump("eu")
	if fmt.Sprint(us) != fmt.Sprint(eu) {
		t.Fatalf("regions diverge after the rebuilds:\nus %v\neu %v", us, eu)
	}
	if got, wantDump := fmt.Sprint(us), fmt.Sprint(map[string]string{b: `"b1"`, k: `"k1"`, o: `"o1"`}); got != wantDump {
		t.Fatalf("after the rebuilds: %s, want %s", got, wantDump)
	}
	c.do("u1", nil, "SET", a, "a2")
	c.do("e1", nil, "SET", x, "x2")
	c.run(time.Second)
	for _, at := range []consistency.NodeID{"u1", "u2", "e1", "e2"} {
		if r := c.do(at, nil, "GET", a); replyString(r.Reply) != "a2" {
			t.Errorf("GET %s at %s: %s, want a2", a, at, replyString(r.Reply))
		}
		if r := c.do(at, nil, "GET", x); replyString(r.Reply) != "x2" {
			t.Errorf("GET %s at %s: %s, want x2", x, at, replyString(r.Reply))
		}
	}
}

// TestGoneNoticeFreesDependents: u1's write x1 is acknowledged during a
// partition and lost with its replication entry. Before the crash a
// session read it at u1, then wrote s at u2 (u2's entry for eu depends on
// x1), and u2 wrote s again (that write depends on the first). Without
// the gone notice both of u2's writes waited in eu for good, and so did
// the session when it moved to eu. With it: eu's owner of x applies the
// notice (counted), the writes of s arrive, the session is served in eu,
// x reads as missing everywhere (its only write is lost: reported for
// both regions) and the regions converge.
func TestGoneNoticeFreesDependents(t *testing.T) {
	c := newClusterWith(t, 12, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
	u1 := c.nodes["u1"].rep
	x, s := keyOwnedBy(t, u1, "us", "u1", "x"), keyOwnedBy(t, u1, "us", "u2", "s")
	c.partition("us", "eu", true)
	if r := c.do("u1", nil, "SET", x, "x1"); replyString(r.Reply) != "OK" {
		t.Fatalf("SET %s: %s", x, replyString(r.Reply))
	}
	seq := u1.seq
	g := c.do("u1", nil, "GET", x)
	if replyString(g.Reply) != "x1" {
		t.Fatalf("GET %s: %s", x, replyString(g.Reply))
	}
	w := c.do("u2", g.Token, "SET", s, "s1")
	c.do("u2", nil, "SET", s, "s2")
	c.crash("u1")
	corruptQueue(t, c, "u1", seq)
	rebuildAndRestart(t, c, "u1")
	c.partition("us", "eu", false)
	c.run(5 * time.Second)
	st := c.nodes["u1"].rep.RebuildStatus()
	if st.Rebuilding || len(st.Lost) != 2 {
		t.Fatalf("u1: %+v, want done, %s lost for eu and us", st, x)
	}
	ex, es := u1.owner("eu", x), u1.owner("eu", s)
	if n := c.nodes[ex].rep.stats.GoneApplied; n != 1 {
		t.Errorf("gone notices applied at %s: %d, want 1", ex, n)
	}
	if r := c.do(es, nil, "GET", s); replyString(r.Reply) != "s2" {
		t.Fatalf("GET %s in eu: %s, want s2 (u2's writes wait for the lost x1)", s, replyString(r.Reply))
	}
	// The session that read x1 (and wrote s1) moves to eu.
	if r := c.do(es, w.Token, "GET", s); replyString(r.Reply) != "s2" {
		t.Fatalf("the session in eu: %s, want s2", replyString(r.Reply))
	}
	if r := c.do(ex, g.Token, "GET", x); r.Reply.Kind != core.KindNil {
		t.Fatalf("GET %s in eu: %s, want nil (lost)", x, replyString(r.Reply))
	}
	us, eu := c.regionDump("us"), c.regionDump("eu")
	if fmt.Sprint(us) != fmt.Sprint(eu) {
		t.Fatalf("regions diverge:\nus %v\neu %v", us, eu)
	}
	// Nothing stays queued: the notices were acknowledged.
	c.run(2 * time.Second)
	for _, id := range []consistency.NodeID{"u1", "u2"} {
		if q := len(c.nodes[id].rep.queue); q != 0 {
			t.Errorf("%s: %d entries still queued", id, q)
		}
	}
}

// TestRebuildStallIsReported: a rebuild whose nodes of the other region do
// not answer (cut off here; down in practice) reports itself stalled — a
// StalledMetric sample naming them, once per rebuildStallAfter retries —
// and its status names whom it waits for and counts the requests it
// refused; once they answer it finishes.
func TestRebuildStallIsReported(t *testing.T) {
	c := rebuildingU1(t)
	u1 := c.nodes["u1"].rep
	k := keyOwnedBy(t, u1, "us", "u1", "a")
	c.do("u2", nil, "GET", k)
	c.do("u1", nil, "GET", k)
	stalls := func() (n int, label string) {
		for _, x := range u1.TakeSamples() {
			if x.Name == StalledMetric {
				n++
				label = x.Label
			}
		}
		return n, label
	}
	stalls()
	c.run(time.Duration(rebuildStallAfter+10) * u1.retry)
	n, label := stalls()
	if n != 1 || !strings.Contains(label, "[e1 e2]") {
		t.Fatalf("stall samples %d (%q), want 1 naming e1 and e2", n, label)
	}
	st := u1.RebuildStatus()
	if !st.Rebuilding || fmt.Sprint(st.Waiting) != "[e1 e2]" || st.Refused != 2 || st.RefusedKeys != 1 || st.Began.IsZero() {
		t.Fatalf("status %+v: want rebuilding, waiting for e1 e2, 2 requests refused (1 key)", st)
	}
	c.partition("us", "eu", false)
	c.run(3 * time.Second)
	if st := u1.RebuildStatus(); st.Rebuilding || fmt.Sprint(st.SeededBy) != "[e1 e2]" || st.Finished.IsZero() {
		t.Fatalf("status after healing: %+v", st)
	}
}

// TestTwoRebuildsWithAThirdRegion: u1 (us) and e1 (eu) rebuild at once,
// ap's a1 does not. a's write, acknowledged by every region long before,
// is only in ap now; u1 must not report it lost for eu — e1 answered
// partially, and ap's seed reaches e1 as it reached u1 — nor for us; x's
// only write is lost for all three regions. Without the partial regions'
// estimate u1 reported a lost for eu.
func TestTwoRebuildsWithAThirdRegion(t *testing.T) {
	c := newClusterWith(t, 12, "us:u1,u2;eu:e1,e2;ap:a1", "", map[string]string{"resolve": ResolveSiblings})
	u1 := c.nodes["u1"].rep
	a, x, z := keyOwnedByBoth(t, u1, "u1", "e1", "a"), keyOwnedByBoth(t, u1, "u1", "e1", "x"), keyOwnedByBoth(t, u1, "u1", "e1", "z")
	c.do("u1", nil, "SET", a, "a1")
	c.run(time.Second)
	for _, p := range [][2]string{{"us", "eu"}, {"us", "ap"}, {"eu", "ap"}} {
		c.partition(p[0], p[1], true)
	}
	c.do("u1", nil, "SET", x, "x1")
	c.do("e1", nil, "SET", z, "z1")
	seqs := map[consistency.NodeID][]uint64{}
	for id, key := range map[consistency.NodeID]string{"u1": x, "e1": z} {
		for seq, e := range c.nodes[id].rep.queue {
			if e.Key == key {
				seqs[id] = append(seqs[id], seq)
			}
		}
	}
	c.crash("u1")
	c.crash("e1")
	for id := range seqs {
		corruptQueue(t, c, id, seqs[id]...)
	}
	rebuildAndRestart(t, c, "u1")
	rebuildAndRestart(t, c, "e1")
	for _, p := range [][2]string{{"us", "eu"}, {"us", "ap"}, {"eu", "ap"}} {
		c.partition(p[0], p[1], false)
	}
	c.run(5 * time.Second)
	var lost []string
	for _, id := range []consistency.NodeID{"u1", "e1"} {
		st := c.nodes[id].rep.RebuildStatus()
		if st.Rebuilding {
			t.Fatalf("%s still rebuilding: %+v", id, st)
		}
		for _, l := range st.Lost {
			lost = append(lost, string(id)+":"+l.Key+"@"+l.Region)
		}
	}
	want := []string{"u1:" + x + "@ap", "u1:" + x + "@eu", "u1:" + x + "@us", "e1:" + z + "@ap", "e1:" + z + "@eu", "e1:" + z + "@us"}
	if fmt.Sprint(lost) != fmt.Sprint(want) {
		t.Fatalf("lost %v, want %v", lost, want)
	}
	for _, reg := range []string{"us", "eu", "ap"} {
		if d := c.regionDump(reg); fmt.Sprint(d) != fmt.Sprint(map[string]string{a: `"a1"`}) {
			t.Errorf("%s: %v, want only %s=a1", reg, d, a)
		}
	}
}

// TestRebuildResendsHeldWritesToTheRegionsLackingThem: three regions, u1
// rebuilds. Its write x1 is missing in ap (its entry for ap is corrupt)
// but another copy holds it: eu's (acknowledged before the crash), or the
// rebuilt record itself (eu's entry is salvaged). x1 must reach ap with
// its value — in the "replaces" case it replaced ap's concurrent sibling,
// which must go there too — and the session write s that depends on x1
// must follow it; y1, whose every entry is corrupt, is the only write
// reported lost (for all three regions). The assertion is every region's
// final state. Session 8 review finding: x1 was reported lost for ap and
// ap applied a gone notice instead of x1, so the regions diverged.
func TestRebuildResendsHeldWritesToTheRegionsLackingThem(t *testing.T) {
	for _, tc := range []struct {
		name     string
		euHolds  bool // eu acknowledged x1 before the crash (else its entry is salvaged)
		replaces bool // x1 replaces ap's concurrent sibling x-ap
	}{
		{"held by eu", true, false},
		{"held by eu, replaces", true, true},
		{"salvaged for eu", false, false},
		{"salvaged for eu, replaces", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClusterWith(t, 12, "us:u1,u2;eu:e1,e2;ap:a1", "", map[string]string{"resolve": ResolveSiblings})
			u1 := c.nodes["u1"].rep
			x, y := keyOwnedBy(t, u1, "us", "u1", "x"), keyOwnedBy(t, u1, "us", "u1", "y")
			s := keyOwnedBy(t, u1, "us", "u2", "s")
			var tok []byte
			if tc.replaces {
				c.do("a1", nil, "SET", x, "x-ap")
				c.run(time.Second)
				tok = c.do("u1", nil, "GET", x).Token
			}
			c.partition("us", "ap", true)
			if !tc.euHolds {
				c.partition("us", "eu", true)
			}
			if r := c.do("u1", tok, "SET", x, "x1"); replyString(r.Reply) != "OK" {
				t.Fatalf("SET %s: %s", x, replyString(r.Reply))
			}
			g := c.do("u1", nil, "GET", x)
			c.do("u2", g.Token, "SET", s, "s1") // u2's entry for ap depends on x1
			c.run(time.Second)
			c.partition("us", "eu", true)
			c.do("u1", nil, "SET", y, "y1")
			var corrupt []uint64
			for seq, e := range c.nodes["u1"].rep.queue {
				if (e.Key == x && e.Region == "ap") || e.Key == y {
					corrupt = append(corrupt, seq)
				}
			}
			if len(corrupt) != 3 {
				t.Fatalf("entries to corrupt: %v, want x1's for ap and y1's two", corrupt)
			}
			c.crash("u1")
			corruptQueue(t, c, "u1", corrupt...)
			rebuildAndRestart(t, c, "u1")
			c.partition("us", "eu", false)
			c.partition("us", "ap", false)
			c.run(5 * time.Second)
			st := c.nodes["u1"].rep.RebuildStatus()
			var lost []string
			for _, l := range st.Lost {
				lost = append(lost, l.Key+"@"+l.Region)
			}
			if st.Rebuilding {
				t.Fatalf("u1 still rebuilding: %+v", st)
			}
			if fmt.Sprint(lost) != fmt.Sprint([]string{y + "@ap", y + "@eu", y + "@us"}) {
				t.Errorf("u1: lost %v; want only %s lost (for ap, eu, us)", lost, y)
			}
			want := fmt.Sprint(map[string]string{x: `"x1"`, s: `"s1"`})
			for _, reg := range c.regions() {
				if d := c.regionDump(reg); fmt.Sprint(d) != want {
					t.Errorf("%s after the rebuild: %v, want %s", reg, d, want)
				}
			}
			c.run(2 * time.Second)
			for _, id := range []consistency.NodeID{"u1", "u2"} {
				if q := len(c.nodes[id].rep.queue); q != 0 {
					t.Errorf("%s: %d entries still queued", id, q)
				}
			}
		})
	}
}

// TestResentWriteWaitsForWhatItsCopyHasSeen: ap's x-ap is replaced by eu's
// y-eu, concurrent with u1's x1; both x1 and y-eu are on their way to ap
// when u1 rebuilds and x1's entry for ap is lost. The re-sent x1 names
// x-ap in Over (the merged copy saw it replaced), so ap must not apply it
// before y-eu, the write that replaced x-ap: applied first it shows x1
// alone — x-ap gone without the write that replaced it. Once eu and ap
// are healed every region holds both siblings and nothing is lost.
func TestResentWriteWaitsForWhatItsCopyHasSeen(t *testing.T) {
	c, u1, x := resentScene(t)
	ex := u1.owner("eu", x)
	c.do("a1", nil, "SET", x, "x-ap")
	c.run(time.Second)
	for _, p := range [][2]string{{"us", "eu"}, {"us", "ap"}, {"eu", "ap"}} {
		c.partition(p[0], p[1], true)
	}
	c.do("u1", nil, "SET", x, "x1") // concurrent with x-ap: a sibling
	g := c.do(ex, nil, "GET", x)
	if r := c.do(ex, g.Token, "SET", x, "y-eu"); replyString(r.Reply) != "OK" { // replaces x-ap
		t.Fatalf("SET %s at %s: %s", x, ex, replyString(r.Reply))
	}
	c.partition("us", "eu", false)
	c.run(time.Second)
	resendToAp(t, c, x, 3*time.Second)
	if got := fmt.Sprint(c.regionDump("ap")[x]); got != `"x-ap"` {
		t.Errorf("%s in ap before y-eu arrives: %s, want \"x-ap\" (x1 waits for y-eu)", x, got)
	}
	c.partition("eu", "ap", false)
	c.run(3 * time.Second)
	want := fmt.Sprint(map[string]string{x: `siblings["x1","y-eu"]`})
	checkRegionsHold(t, c, want)
}

// TestResentOverSparesANodesSiblingSeenOnlyAsGone: ex (x's owner in eu)
// replaces its e-old with e-new while eu is cut off, then loses e-new
// (its entries corrupt): a gone notice moves every region's Seen for ex
// to e-new while e-old stays their sibling. u1 then writes x1 blind
// (concurrent with e-old) and loses its entry for ap: the re-sent x1 must
// not name e-new in Over, which would make ap drop e-old (every sibling of
// ex up to e-new) while eu and us keep it. Every region ends with both
// siblings. Session 9 review finding: before the fix ap held x1 alone.
func TestResentOverSparesANodesSiblingSeenOnlyAsGone(t *testing.T) {
	c, u1, x := resentScene(t)
	ex := u1.owner("eu", x)
	c.do(ex, nil, "SET", x, "e-old")
	c.run(time.Second)
	c.partition("us", "eu", true)
	c.partition("eu", "ap", true)
	g := c.do(ex, nil, "GET", x)
	if r := c.do(ex, g.Token, "SET", x, "e-new"); replyString(r.Reply) != "OK" { // replaces e-old
		t.Fatalf("SET e-new at %s: %s", ex, replyString(r.Reply))
	}
	lost := queuedSeqs(c, ex, x, "")
	c.crash(ex)
	corruptQueue(t, c, ex, lost...)
	rebuildAndRestart(t, c, ex)
	c.partition("us", "eu", false)
	c.partition("eu", "ap", false)
	c.run(5 * time.Second)
	if st := c.nodes[ex].rep.RebuildStatus(); st.Rebuilding || len(st.Lost) != 3 {
		t.Fatalf("%s: %+v, want done with e-new lost for all three regions", ex, st)
	}
	want := fmt.Sprint(map[string]string{x: `"e-old"`})
	for _, reg := range c.regions() {
		if d := c.regionDump(reg); fmt.Sprint(d) != want {
			t.Fatalf("%s after %s's rebuild: %v, want %s", reg, ex, d, want)
		}
	}
	c.partition("us", "ap", true)
	if r := c.do("u1", nil, "SET", x, "x1"); replyString(r.Reply) != "OK" { // blind: concurrent with e-old
		t.Fatalf("SET x1 at u1: %s", replyString(r.Reply))
	}
	c.run(time.Second)
	resendToAp(t, c, x, 5*time.Second)
	want = fmt.Sprint(map[string]string{x: `siblings["e-old","x1"]`})
	for _, reg := range c.regions() {
		if d := c.regionDump(reg); fmt.Sprint(d) != want {
			t.Errorf("%s: %v, want %s (the regions must not diverge)", reg, d, want)
		}
	}
}

// TestResentReplacedWriteIsNotCountedLost: u1's x1 reaches eu, where y-eu
// replaces it (eu read x1), while ap is cut off; u1 then loses x1's entry
// for ap. The rebuilt record has seen x1 but holds y-eu, so x1 is re-sent
// to ap as a notice without a value (y-eu depends on x1). ap must count
// it as a replaced write (ReplacedApplied, a ReplacedMetric sample), not
// as a lost write's gone notice (GoneApplied, GoneMetric: logged as a
// loss and counted in version-gone) — nothing was lost; u1 counts it
// re-sent. Every region ends with y-eu. Session 9 review finding.
func TestResentReplacedWriteIsNotCountedLost(t *testing.T) {
	c, u1, x := resentScene(t)
	ex, ax := u1.owner("eu", x), u1.owner("ap", x)
	c.partition("us", "ap", true)
	c.partition("eu", "ap", true)
	c.do("u1", nil, "SET", x, "x1")
	c.run(time.Second)
	g := c.do(ex, nil, "GET", x)
	if replyString(g.Reply) != "x1" {
		t.Fatalf("GET %s at %s: %s, want x1", x, ex, replyString(g.Reply))
	}
	if r := c.do(ex, g.Token, "SET", x, "y-eu"); replyString(r.Reply) != "OK" { // replaces x1
		t.Fatalf("SET %s at %s: %s", x, ex, replyString(r.Reply))
	}
	c.run(time.Second)
	lost := queuedSeqs(c, "u1", x, "ap")
	c.crash("u1")
	corruptQueue(t, c, "u1", lost...)
	rebuildAndRestart(t, c, "u1")
	c.nodes[ax].rep.TakeSamples()
	c.partition("us", "ap", false)
	c.partition("eu", "ap", false)
	c.run(3 * time.Second)
	if st := c.nodes["u1"].rep.RebuildStatus(); st.Rebuilding || len(st.Lost) != 0 || st.Resent != 1 {
		t.Fatalf("u1: %+v, want done, nothing lost, x1 re-sent to ap", st)
	}
	samples := map[string]int{}
	for _, s := range c.nodes[ax].rep.TakeSamples() {
		samples[s.Name]++
	}
	st := c.nodes[ax].rep.RebuildStatus()
	if st.ReplacedApplied != 1 || st.GoneApplied != 0 || samples[ReplacedMetric] != 1 || samples[GoneMetric] != 0 {
		t.Errorf("%s: replaced applied %d, gone applied %d, samples %v; want 1 replaced (one %s sample), no gone notice",
			ax, st.ReplacedApplied, st.GoneApplied, samples, ReplacedMetric)
	}
	want := fmt.Sprint(map[string]string{x: `"y-eu"`})
	checkRegionsHold(t, c, want)
}

// TestGoneNoticeIsNotReplicationLag: an ordinary remote write counts as a
// remote apply with its lag; a gone notice (applied, counted in
// GoneApplied) does not — its version is the lost write's, an hour old
// here, and would inflate the lag figures. Session 8 review finding.
func TestGoneNoticeIsNotReplicationLag(t *testing.T) {
	for _, tc := range []struct {
		name               string
		gone               bool
		applied, goneCount int64
		lagSamples         int
	}{
		{"write", false, 1, 0, 1},
		{"gone notice", true, 0, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClusterWith(t, 12, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
			u1 := c.nodes["u1"].rep
			x := keyOwnedBy(t, u1, "us", "u1", "x")
			ex := u1.owner("eu", x)
			rep := c.nodes[ex].rep
			rep.TakeSamples()
			v := Version{Wall: c.now.Add(-time.Hour).UnixMilli(), Node: "u1"}
			e := &outEntry{Seq: 1, First: 1, Region: "eu", Key: x, Rec: record{V: v, Value: []byte("x1"), Gone: tc.gone}}
			if tc.gone {
				e.Rec.Value = nil
			}
			rep.Receive(c.now, consistency.Message{From: "u1", To: ex, Body: mustJSON(msg{Kind: kindReplicate, Entry: e, Region: "us"})})
			c.collect(ex)
			c.run(100 * time.Millisecond)
			lags := 0
			for _, s := range rep.TakeSamples() {
				if s.Name == LagMetric {
					lags++
				}
			}
			st := rep.stats
			if st.RemoteApplied != tc.applied || st.GoneApplied != tc.goneCount || lags != tc.lagSamples || (st.LagTotal > 0) != (tc.applied > 0) {
				t.Fatalf("remote applied %d, gone applied %d, lag total %s, lag samples %d; want %d, %d, lag counted %v, %d",
					st.RemoteApplied, st.GoneApplied, st.LagTotal, lags, tc.applied, tc.goneCount, tc.applied > 0, tc.lagSamples)
			}
		})
	}
}

// TestRebuildHoldsKeysUntilTheirDependencyArrives: u1 and e1 rebuild at
// once. u1's salvaged write b1 depends on e1's a-e (key a, owned by u1),
// which u1 had applied but e1 still queues (its acknowledgement was cut):
// u1's rebuilt a lacks it until e1's rebuild finishes and resends it. e1
// is kept from finishing (cut off from u2) while u1 has finished: a reader
// in us must not see b1 without a-e — u1 refuses b until a-e arrives
// (before session 9 it served b1 while a read as missing). Once e1
// finishes both are read at every node of us. A restart of u1 in between
// keeps b refused (what it waits for is stored).
func TestRebuildHoldsKeysUntilTheirDependencyArrives(t *testing.T) {
	c, a, b := holdScene(t, "u1", func(c *cluster, b string, tok []byte) {
		c.do("u1", tok, "SET", b, "b1") // depends on a-e
	})
	check := func(when string) {
		for _, at := range []consistency.NodeID{"u1", "u2"} {
			rb := c.do(at, nil, "GET", b)
			if replyString(rb.Reply) != "b1" {
				continue // refused: b waits for a-e
			}
			if ra := c.do(at, rb.Token, "GET", a); replyString(ra.Reply) != "a-e" {
				t.Errorf("at %s while e1 rebuilds (%s): %s=b1 is visible but %s=%s (b1 depends on a-e)", at, when, b, a, replyString(ra.Reply))
			}
		}
	}
	if st := c.nodes["u1"].rep.RebuildStatus(); st.Held != 2 {
		t.Errorf("u1 status: %d keys held, want 2 (%s, and %s: e1's partial seed holds a-e)", st.Held, b, a)
	}
	check("u1 finished")
	c.crash("u1") // what b waits for is durable
	c.restart("u1")
	c.run(200 * time.Millisecond)
	check("u1 restarted")
	healE1(t, c)
	for _, at := range []consistency.NodeID{"u1", "u2"} {
		if r := c.do(at, nil, "GET", b); replyString(r.Reply) != "b1" {
			t.Errorf("GET %s at %s after both rebuilds: %s, want b1", b, at, replyString(r.Reply))
		}
		if r := c.do(at, nil, "GET", a); replyString(r.Reply) != "a-e" {
			t.Errorf("GET %s at %s after both rebuilds: %s, want a-e", a, at, replyString(r.Reply))
		}
	}
	checkRegionsAgree(t, c)
}

// TestRebuildHoldsAPartialSeedsWritesForOtherNodesKeys: as
// TestRebuildHoldsKeysUntilTheirDependencyArrives, but b is owned by u2,
// which was not rebuilt and serves b1 (it depends on a-e, read at u1
// before u1's crash). While e1 still rebuilds, u1 lacks a-e; e1's partial
// seed of a holds it, so u1 refuses a until a-e arrives: a reader that
// sees b1 at u1 or u2 must not read a as missing. Once e1 finishes a-e
// arrives, a is served at every node of us and the regions converge.
// Session 9 review finding: before the fix u1 held only its own keys and
// a read as (nil) after b1.
func TestRebuildHoldsAPartialSeedsWritesForOtherNodesKeys(t *testing.T) {
	c, a, b := holdScene(t, "u2", func(c *cluster, b string, tok []byte) {
		if r := c.do("u2", tok, "SET", b, "b1"); replyString(r.Reply) != "OK" { // depends on a-e
			t.Fatalf("SET %s at u2: %s", b, replyString(r.Reply))
		}
	})
	for _, at := range []consistency.NodeID{"u1", "u2"} {
		rb := c.do(at, nil, "GET", b)
		if replyString(rb.Reply) != "b1" {
			t.Fatalf("GET %s at %s: %s, want b1 (u2 serves it)", b, at, replyString(rb.Reply))
		}
		ra := c.do(at, rb.Token, "GET", a)
		refused := ra.Reply.Kind == core.KindError && ra.Reply.Err.Code == consistency.CodeUnavailable
		if !refused && replyString(ra.Reply) != "a-e" {
			t.Errorf("at %s while e1 rebuilds: %s=b1 is visible but %s=%s, want a-e or UNAVAILABLE (b1 depends on a-e)", at, b, a, replyString(ra.Reply))
		}
	}
	healE1(t, c)
	for _, at := range []consistency.NodeID{"u1", "u2"} {
		if r := c.do(at, nil, "GET", a); replyString(r.Reply) != "a-e" {
			t.Errorf("GET %s at %s after both rebuilds: %s, want a-e", a, at, replyString(r.Reply))
		}
	}
	checkRegionsAgree(t, c)
}

// holdScene sets the scene of the rebuild-hold tests and returns the
// cluster with u1's rebuild finished and e1's still running, and keys a
// and b. a (owned by u1 and e1) = a-e is written at e1 while us cannot
// acknowledge eu's writes, so e1 still queues it; u1 reads it and setB
// writes b (owned by bOwner in us) = b1 with that read's token, so b1
// depends on a-e. u1 and e1 then crash with a corrupt queue entry each (z
// at u1, y at e1) and rebuild at once; u2 and e1 stay cut off from each
// other, so e1's rebuild cannot finish.
func holdScene(t *testing.T, bOwner consistency.NodeID, setB func(c *cluster, b string, tok []byte)) (c *cluster, a, b string) {
	t.Helper()
	c = newClusterWith(t, 12, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
	u1 := c.nodes["u1"].rep
	a = keyOwnedByBoth(t, u1, "u1", "e1", "a")
	b, z := keyOwnedBy(t, u1, "us", bOwner, "b"), keyOwnedBy(t, u1, "us", "u1", "z")
	y := keyOwnedByBoth(t, u1, "u2", "e1", "y")
	cutUsToEu(c, true) // eu's writes reach us, the acknowledgements do not
	c.do("e1", nil, "SET", a, "a-e")
	c.do("e1", nil, "SET", y, "y1")
	c.run(time.Second)
	g := c.do("u1", nil, "GET", a)
	if replyString(g.Reply) != "a-e" {
		t.Fatalf("GET %s at u1: %s, want a-e", a, replyString(g.Reply))
	}
	setB(c, b, g.Token)
	c.do("u1", nil, "SET", z, "z1")
	zs, ys := queuedSeqs(c, "u1", z, ""), queuedSeqs(c, "e1", y, "")
	c.crash("u1")
	c.crash("e1")
	corruptQueue(t, c, "u1", zs...)
	corruptQueue(t, c, "e1", ys...)
	rebuildAndRestart(t, c, "u1")
	rebuildAndRestart(t, c, "e1")
	cutUsToEu(c, false)
	cutU2E1(c, true) // e1 waits for u2: its rebuild cannot finish
	c.run(2 * time.Second)
	if !c.nodes["e1"].rep.RebuildStatus().Rebuilding || c.nodes["u1"].rep.RebuildStatus().Rebuilding {
		t.Fatal("want u1 done and e1 still rebuilding")
	}
	return c, a, b
}

// cutUsToEu cuts (on) or heals the links from us's nodes to eu's.
func cutUsToEu(c *cluster, on bool) {
	for _, x := range []consistency.NodeID{"u1", "u2"} {
		for _, e := range []consistency.NodeID{"e1", "e2"} {
			c.cut[[2]consistency.NodeID{x, e}] = on
		}
	}
}

// cutU2E1 cuts (on) or heals both links between u2 and e1.
func cutU2E1(c *cluster, on bool) {
	for _, l := range [][2]consistency.NodeID{{"u2", "e1"}, {"e1", "u2"}} {
		c.cut[l] = on
	}
}

// queuedSeqs returns the sequence numbers of node id's replication-queue
// entries for key to region (to any region if region is "").
func queuedSeqs(c *cluster, id consistency.NodeID, key, region string) (seqs []uint64) {
	for seq, e := range c.nodes[id].rep.queue {
		if e.Key == key && (region == "" || e.Region == region) {
			seqs = append(seqs, seq)
		}
	}
	return seqs
}

// resentScene returns the cluster of the re-send tests — regions us (u1,
// u2), eu (e1, e2) and ap (a1), concurrent writes kept as siblings — with
// u1's replica and a key x that u1 owns in us.
func resentScene(t *testing.T) (c *cluster, u1 *Replica, x string) {
	t.Helper()
	c = newClusterWith(t, 12, "us:u1,u2;eu:e1,e2;ap:a1", "", map[string]string{"resolve": ResolveSiblings})
	u1 = c.nodes["u1"].rep
	return c, u1, keyOwnedBy(t, u1, "us", "u1", "x")
}

// resendToAp crashes u1 with its queued entries of x for ap corrupt,
// rebuilds it, heals us and ap, runs for d and checks that u1's rebuild is
// done, lost nothing and re-sent its write of x to ap.
func resendToAp(t *testing.T, c *cluster, x string, d time.Duration) {
	t.Helper()
	lost := queuedSeqs(c, "u1", x, "ap")
	c.crash("u1")
	corruptQueue(t, c, "u1", lost...)
	rebuildAndRestart(t, c, "u1")
	c.partition("us", "ap", false)
	c.run(d)
	if st := c.nodes["u1"].rep.RebuildStatus(); st.Rebuilding || len(st.Lost) != 0 || st.Resent != 1 {
		t.Fatalf("u1: %+v, want done, nothing lost, x1 re-sent to ap", st)
	}
}

// checkRegionsHold checks that every region's data is want (a printed
// regionDump).
func checkRegionsHold(t *testing.T, c *cluster, want string) {
	t.Helper()
	for _, reg := range c.regions() {
		if d := c.regionDump(reg); fmt.Sprint(d) != want {
			t.Errorf("%s: %v, want %s", reg, d, want)
		}
	}
}

// healE1 reconnects u2 and e1 of a holdScene, runs until e1's rebuild has
// finished and checks that u1 then holds no key.
func healE1(t *testing.T, c *cluster) {
	t.Helper()
	cutU2E1(c, false)
	c.run(3 * time.Second)
	if st := c.nodes["u1"].rep.RebuildStatus(); st.Held != 0 {
		t.Errorf("u1 status after e1's rebuild: %d keys held, want 0", st.Held)
	}
}

// checkRegionsAgree checks that regions us and eu hold the same data.
func checkRegionsAgree(t *testing.T, c *cluster) {
	t.Helper()
	if us, eu := c.regionDump("us"), c.regionDump("eu"); fmt.Sprint(us) != fmt.Sprint(eu) {
		t.Errorf("regions diverge:\nus %v\neu %v", us, eu)
	}
}

// TestRebuildHeldDropsKeysNoLongerOwned: a key a finished rebuild still
// refuses stays held while this node owns it and its dependency is not
// visible; once its owner is another node (a membership change since),
// the tick drops it, and with it the stored holds (m/rebuild-held) —
// before, it stayed in Keys for good (Held > 0). Session 9 review nit.
func TestRebuildHeldDropsKeysNoLongerOwned(t *testing.T) {
	for _, tc := range []struct {
		name  string
		owner consistency.NodeID
		held  int
	}{
		{"owned", "u1", 1},
		{"owned by another node", "u2", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClusterWith(t, 12, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
			u1 := c.nodes["u1"].rep
			k := keyOwnedBy(t, u1, "us", tc.owner, "k")
			missing := Dep{Key: keyOwnedBy(t, u1, "us", "u1", "d"), V: Version{Wall: 1, Node: "e1"}}
			h := rebuildHeld{Keys: map[string][]Dep{k: {missing}}}
			b := c.nodes["u1"].eng.NewBatch()
			b.Set([]byte(keyRebuildHeld), sealJSON([]byte(keyRebuildHeld), h))
			if err := b.Commit(false); err != nil {
				t.Fatal(err)
			}
			b.Close()
			u1.postRebuild = &h
			u1.tickRebuildHeld()
			if got := u1.RebuildStatus().Held; got != tc.held {
				t.Errorf("held %d keys, want %d", got, tc.held)
			}
			_, err := c.nodes["u1"].eng.Get([]byte(keyRebuildHeld))
			if stored := err == nil; stored != (tc.held > 0) {
				t.Errorf("m/rebuild-held stored: %v (%v), want %v", stored, err, tc.held > 0)
			}
		})
	}
}
