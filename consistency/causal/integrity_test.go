package causal

import (
	"errors"
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

// TestCorruptQueueInSiblingsModeFailsTyped: siblings-mode writes cannot be
// rebuilt from the store, so a lost replication entry makes the restart
// fail with core.ErrCorruption rather than start with a hole.
func TestCorruptQueueInSiblingsModeFailsTyped(t *testing.T) {
	c := newClusterWith(t, 12, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
	c.partition("us", "eu", true)
	owner := c.nodes["u1"].rep.owner("us", "k")
	c.do(owner, nil, "SET", "k", "v1")
	c.crash(owner)
	if corruptStored(t, c, owner, prefixQueue) == 0 {
		t.Fatal("nothing to corrupt")
	}
	_, err := NewReplica(consistency.Config{ID: owner, Peers: c.peers, Engine: c.nodes[owner].eng, Rand: rand.New(rand.NewPCG(1, 2)), Params: c.params})
	if !errors.Is(err, core.ErrCorruption) {
		t.Fatalf("restart: err=%v, want core.ErrCorruption", err)
	}
	// Corrupt meta alone is rebuilt in siblings mode too.
	c2 := newClusterWith(t, 13, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
	c2.do(owner, nil, "SET", "k", "v1")
	c2.crash(owner)
	corruptStored(t, c2, owner, keyMeta)
	c2.restart(owner)
	if r := c2.do(owner, nil, "GET", "k"); replyString(r.Reply) != "v1" {
		t.Fatalf("siblings, after meta rebuild: %s, want v1", replyString(r.Reply))
	}
}

// TestCorruptRecordIsATypedError: a record that fails its checksum is
// answered with a CORRUPTION error, never decoded into a wrong value, and
// the node keeps serving its other keys.
func TestCorruptRecordIsATypedError(t *testing.T) {
	c := newCluster(t, 14, twoRegions, "")
	x, y := keysWithOwners(t, c)
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
	r := c.do(ox, nil, "GET", x)
	if r.Reply.Kind != core.KindError || r.Reply.Err.Code != core.CodeCorruption {
		t.Fatalf("GET of a corrupt record: %s, want a CORRUPTION error", replyString(r.Reply))
	}
	if r := c.do(ox, nil, "GET", y); replyString(r.Reply) != "vy" {
		t.Fatalf("GET of a sound key through the same node: %s, want vy", replyString(r.Reply))
	}
	// The corrupt read is reported once, as a corruption sample (a node
	// counts it in dialkv_corruption_events_total{kind="record-read"}).
	count := func() (n float64) {
		for _, s := range c.nodes[ox].rep.TakeSamples() {
			if s.Name == CorruptionMetric && s.Label == "record-read" {
				n += s.Value
			}
		}
		return n
	}
	if n := count(); n < 1 {
		t.Fatalf("corrupt reads reported: %v; want at least 1", n)
	}
	if n := count(); n != 0 {
		t.Fatalf("corrupt reads reported again: %v", n)
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
