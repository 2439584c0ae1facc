package quorum

import (
	"fmt"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// noAAE keeps anti-entropy out of the way so that a test sees one
// mechanism at a time.
var noAAE = []string{"aae_interval", "1h"}

// A write while an owner is partitioned goes to a fallback as a hint and
// reaches the owner when the partition heals.
func TestHintedHandoff(t *testing.T) {
	c := newCluster(t, 5, p(append(noAAE, "w", "3")...), "", 11)
	key := "hk"
	own := c.owners(key)
	down := own[2]
	c.isolate(down)
	// First write times out on the isolated owner and marks it suspected.
	c.do(own[0], def, nil, "SET", key, "v0")
	w := c.do(own[0], def, nil, "SET", key, "v1")
	if str(w) != "OK" {
		c.fatalf("sloppy W=3 write with an owner down: %s", str(w))
	}
	held := 0
	for _, id := range c.ids {
		held += c.rep(id).nhints
	}
	if held == 0 {
		c.fatalf("no hint stored")
	}
	// Strict quorum refuses to count the fallback.
	if s := c.do(own[0], consistency.Options{Strict: true}, nil, "SET", key, "v2"); !isErr(s) || s.Reply.Err.Code != consistency.CodeTimeout {
		c.fatalf("strict W=3 with an owner down: want TIMEOUT, got %s", str(s))
	}
	if _, ok := c.dump(down)[key]; ok {
		c.fatalf("isolated owner already has the key")
	}
	c.heal()
	c.run(3 * time.Second)
	if got := c.dump(down)[key]; got != `siblings["v0","v1"]` {
		c.fatalf("after heal the owner holds %q", got)
	}
	delivered := 0
	for _, id := range c.ids {
		delivered += c.rep(id).Stats().HintsDelivered
		if n := c.rep(id).nhints; n != 0 {
			c.fatalf("%s still holds %d hints", id, n)
		}
	}
	if delivered == 0 {
		c.fatalf("no hint delivered")
	}
}

func TestHintLimit(t *testing.T) {
	c := newCluster(t, 4, p(append(noAAE, "hint_limit", "0", "w", "3")...), "", 12)
	key := "k"
	own := c.owners(key)
	c.isolate(own[2])
	c.do(own[0], def, nil, "SET", key, "v0") // suspects own[2]
	if w := c.do(own[0], def, nil, "SET", key, "v1"); !isErr(w) {
		c.fatalf("with a full hint store W=3 must not be reached, got %s", str(w))
	}
	refused := 0
	for _, id := range c.ids {
		refused += c.rep(id).Stats().HintsRefused
	}
	if refused == 0 {
		c.fatalf("no hint refused")
	}
}

func TestReadRepair(t *testing.T) {
	for _, tc := range []struct{ mode, param, opt string }{
		{RepairSync, RepairSync, ""}, {RepairAsync, RepairAsync, ""}, {RepairOff, RepairOff, ""},
		{RepairOff, RepairSync, RepairOff}, {RepairSync, RepairOff, RepairSync}, {RepairAsync, RepairOff, RepairAsync},
	} {
		mode := tc.mode
		t.Run(tc.param+"/"+tc.opt, func(t *testing.T) {
			c := newCluster(t, 3, p(append(noAAE, "read_repair", tc.param, "sloppy", "false")...), "", 13)
			c.isolate("n3")
			c.do("n1", def, nil, "SET", "k", "v")
			c.heal()
			c.run(100 * time.Millisecond)
			if _, ok := c.dump("n3")["k"]; ok {
				c.fatalf("n3 got the value without repair")
			}
			got := c.do("n2", consistency.Options{R: 3, Repair: tc.opt}, nil, "GET", "k")
			if str(got) != "v" {
				c.fatalf("read: %s", str(got))
			}
			if mode == RepairSync {
				// Repaired before the reply.
				if c.dump("n3")["k"] != `"v"` {
					c.fatalf("sync repair did not happen before the reply")
				}
			}
			c.run(100 * time.Millisecond)
			_, has := c.dump("n3")["k"]
			if has != (mode != RepairOff) {
				c.fatalf("read_repair=%s: n3 has the key: %v", mode, has)
			}
		})
	}
}

func TestAntiEntropyConverges(t *testing.T) {
	c := newCluster(t, 5, p("sloppy", "false", "w", "1", "aae_interval", "100ms"), "", 14)
	c.partition([]nodeID{"n1", "n2"}, []nodeID{"n3", "n4", "n5"})
	n := 0
	for i := 0; i < 40; i++ {
		k := fmt.Sprintf("k%d", i)
		for _, at := range []nodeID{"n1", "n4"} {
			if w := c.do(at, def, nil, "SET", k, string(at)); !isErr(w) {
				n++
			}
		}
	}
	if n < 40 {
		c.fatalf("only %d writes acknowledged", n)
	}
	if c.divergence() == "" {
		c.fatalf("replicas agree before healing: the test shows nothing")
	}
	c.heal()
	c.run(5 * time.Second)
	if d := c.divergence(); d != "" {
		c.fatalf("not converged by anti-entropy: %s", d)
	}
	pushed := 0
	for _, id := range c.ids {
		pushed += c.rep(id).Stats().AAEPushed
	}
	if pushed == 0 {
		c.fatalf("anti-entropy pushed nothing")
	}
}

// A DEL that one replica missed: anti-entropy ships the tombstone, and
// tombstones are collected only once every owner has them, so the deleted
// value never comes back. Under aae-skips-tombstones the replica that
// missed the DEL keeps serving the value.
func TestTombstonesAndGC(t *testing.T) {
	for _, bug := range []string{"", BugAAESkipsTombstones} {
		t.Run("bug="+bug, func(t *testing.T) {
			c := newCluster(t, 3, p("sloppy", "false", "aae_interval", "50ms", "gc_grace", "1s"), bug, 15)
			w := c.do("n1", consistency.Options{W: 3}, nil, "SET", "k", "v")
			c.isolate("n3")
			c.run(100 * time.Millisecond)
			got := c.do("n1", def, nil, "GET", "k")
			if d := c.do("n1", def, got.Token, "DEL", "k"); str(d) != "1" {
				c.fatalf("DEL: %s (%s)", str(d), str(w))
			}
			c.heal()
			c.run(5 * time.Second)
			_, resurrected := c.dump("n3")["k"]
			one := c.do("n3", consistency.Options{R: 1}, nil, "GET", "k")
			if bug == "" {
				if resurrected || str(one) != "(nil)" {
					c.fatalf("deleted value still at n3: %v %s", resurrected, str(one))
				}
				gced := 0
				for _, id := range c.ids {
					gced += c.rep(id).Stats().TombstonesGCed
					if _, ok := c.rep(id).objs["k"]; ok {
						c.fatalf("%s still keeps the tombstone after gc_grace", id)
					}
				}
				if gced == 0 {
					c.fatalf("no tombstone collected")
				}
				// Nothing can bring it back: read with R=3 and let AAE run.
				c.do("n2", consistency.Options{R: 3}, nil, "GET", "k")
				c.run(2 * time.Second)
				for _, id := range c.ids {
					if _, ok := c.dump(id)["k"]; ok {
						c.fatalf("%s: deleted key resurrected after GC", id)
					}
				}
				return
			}
			if !resurrected || str(one) != "v" {
				c.fatalf("%s should keep the deleted value at n3: %v %s", bug, resurrected, str(one))
			}
		})
	}
}

// Tombstone GC waits for every owner: with one owner away, nothing is
// collected however long we wait.
func TestTombstoneGCWaitsForAllOwners(t *testing.T) {
	c := newCluster(t, 3, p("sloppy", "false", "aae_interval", "50ms", "gc_grace", "100ms"), "", 16)
	c.do("n1", consistency.Options{W: 3}, nil, "SET", "k", "v")
	c.isolate("n3")
	got := c.do("n1", def, nil, "GET", "k")
	c.do("n1", def, got.Token, "DEL", "k")
	c.run(3 * time.Second)
	for _, id := range c.ids {
		if n := c.rep(id).Stats().TombstonesGCed; n != 0 {
			c.fatalf("%s collected a tombstone while n3 was away", id)
		}
	}
	c.heal()
	c.run(3 * time.Second)
	for _, id := range c.ids {
		if _, ok := c.dump(id)["k"]; ok {
			c.fatalf("%s: deleted key present after heal", id)
		}
	}
}

// Read repair that keeps only one sibling loses a concurrent acknowledged
// write; the correct repair keeps both.
func TestReadRepairSiblingsAndBug(t *testing.T) {
	for _, bug := range []string{"", BugReadRepairDropsSiblings} {
		c := newCluster(t, 3, p(noAAE...), bug, 17)
		c.partition([]nodeID{"n1"}, []nodeID{"n2", "n3"})
		a := c.do("n1", consistency.Options{W: 1}, nil, "SET", "k", "a")
		b := c.do("n2", consistency.Options{W: 1}, nil, "SET", "k", "b")
		if str(a) != "OK" || str(b) != "OK" {
			c.fatalf("writes: %s %s", str(a), str(b))
		}
		c.heal()
		c.run(50 * time.Millisecond)
		c.do("n3", consistency.Options{R: 3}, nil, "GET", "k") // repairs
		c.run(100 * time.Millisecond)
		got := vals(c.do("n2", consistency.Options{R: 3}, nil, "GET", "k"))
		if bug == "" && got != "{a,b}" {
			c.fatalf("correct read repair lost a sibling: %s", got)
		}
		if bug != "" && got == "{a,b}" {
			c.fatalf("%s: both siblings survived; the bug is not observable", bug)
		}
	}
}

func TestCrashRecovery(t *testing.T) {
	c := newCluster(t, 3, p(noAAE...), "", 18)
	for i := 0; i < 10; i++ {
		if w := c.do("n1", consistency.Options{W: 3}, nil, "SET", fmt.Sprint("k", i), fmt.Sprint(i)); str(w) != "OK" {
			c.fatalf("SET: %s", str(w))
		}
	}
	c.do("n1", def, nil, "SET", "s", "x")
	before := c.dump("n2")
	for _, id := range c.ids {
		c.crash(id)
	}
	for _, id := range c.ids {
		if got := c.dump(id); fmt.Sprint(got) != fmt.Sprint(before) && id != "n3" {
			c.fatalf("%s after crash: %v, want %v", id, got, before)
		}
	}
	for i := 0; i < 10; i++ {
		if got := c.do("n3", consistency.Options{R: 1}, nil, "GET", fmt.Sprint("k", i)); str(got) != fmt.Sprint(i) {
			c.fatalf("k%d after crash: %s", i, str(got))
		}
	}
	// Dots are not reused after a crash: a blind write after restart is a
	// new sibling, not a silent overwrite of an old version.
	c.do("n1", def, nil, "SET", "s", "y")
	if got := vals(c.do("n2", consistency.Options{R: 3}, nil, "GET", "s")); got != "{x,y}" {
		c.fatalf("after restart: %s", got)
	}
	// Hints survive a crash of the fallback that holds them.
	c2 := newCluster(t, 4, p(append(noAAE, "w", "3")...), "", 19)
	own := c2.owners("h")
	c2.isolate(own[2])
	c2.do(own[0], def, nil, "SET", "h", "0")
	if w := c2.do(own[0], def, nil, "SET", "h", "1"); str(w) != "OK" {
		c2.fatalf("hinted write: %s", str(w))
	}
	for _, id := range c2.ids {
		c2.crash(id)
	}
	c2.heal()
	c2.run(3 * time.Second)
	if got := c2.dump(own[2])["h"]; got == "" {
		c2.fatalf("hint lost by the crash")
	}
}

func TestLinearizableABD(t *testing.T) {
	lin := consistency.Options{Mode: "linearizable"}
	c := newCluster(t, 3, p(noAAE...), "", 20)
	c.isolate("n3")
	if w := c.do("n1", lin, nil, "SET", "k", "v1"); str(w) != "OK" {
		c.fatalf("ABD write with a majority: %s", str(w))
	}
	c.partition([]nodeID{"n1"}, []nodeID{"n2", "n3"})
	// n3 is stale; a linearizable read through n3 must see v1 (from n2)
	// and write it back to n3 before replying.
	if got := c.do("n3", lin, nil, "GET", "k"); str(got) != "v1" {
		c.fatalf("ABD read: %s", str(got))
	}
	if c.dump("n3")["k"] != `"v1"` {
		c.fatalf("ABD read did not write back")
	}
	// An ABD write supersedes every version it read: no siblings.
	c.heal()
	c.do("n2", def, nil, "SET", "k", "blind") // a concurrent blind write
	if w := c.do("n2", lin, nil, "SET", "k", "v2"); str(w) != "OK" {
		c.fatalf("ABD write: %s", str(w))
	}
	if got := vals(c.do("n1", lin, nil, "GET", "k")); got != "v2" {
		c.fatalf("after ABD write: %s", got)
	}
	// Without a majority, linearizable operations time out.
	c.isolate("n1")
	if got := c.do("n1", lin, nil, "GET", "k"); !isErr(got) || got.Reply.Err.Code != consistency.CodeTimeout {
		c.fatalf("minority ABD read: %s", str(got))
	}
}

func TestCustomResolver(t *testing.T) {
	c := &cluster{}
	*c = *newCluster(t, 3, nil, "", 21)
	c.resolv = ResolverFunc(func(key []byte, sibs [][]byte) []byte {
		var out []byte
		for _, s := range sibs {
			out = append(out, s...)
		}
		return out
	})
	for _, id := range c.ids {
		c.eng[id] = core.NewMemEngine()
		c.start(id)
	}
	c.partition([]nodeID{"n1"}, []nodeID{"n2", "n3"})
	c.do("n1", consistency.Options{W: 1}, nil, "SET", "k", "a")
	c.do("n2", consistency.Options{W: 1}, nil, "SET", "k", "b")
	c.heal()
	if got := c.do("n3", consistency.Options{R: 3}, nil, "GET", "k"); str(got) != "ab" || len(got.Values) != 0 {
		c.fatalf("resolved read: %s %d", str(got), len(got.Values))
	}
	// The next write at an owner merges the siblings with the resolver.
	c.do("n2", def, nil, "SET", "k", "c")
	if got := c.do("n3", consistency.Options{R: 3}, nil, "GET", "k"); str(got) != "abc" {
		c.fatalf("after a write: %s", str(got))
	}
	if _, err := NewWithResolver(consistency.Config{ID: "n1", Peers: c.ids, Engine: core.NewMemEngine(), Params: p("resolve", "lww")}, c.resolv); err == nil {
		c.fatalf("NewWithResolver with resolve=lww accepted")
	}
}

// mode=linearizable makes ABD the namespace default.
func TestLinearizableParam(t *testing.T) {
	c := newCluster(t, 3, p(append(noAAE, "mode", "linearizable")...), "", 22)
	c.isolate("n3")
	if w := c.do("n1", def, nil, "SET", "k", "v"); str(w) != "OK" {
		c.fatalf("write: %s", str(w))
	}
	c.partition([]nodeID{"n1"}, []nodeID{"n2", "n3"})
	if got := c.do("n3", def, nil, "GET", "k"); str(got) != "v" || c.dump("n3")["k"] != `"v"` {
		c.fatalf("default ABD read: %s, n3 holds %q", str(got), c.dump("n3")["k"])
	}
	if _, err := New(consistency.Config{ID: "n1", Peers: c.ids, Engine: core.NewMemEngine(), Params: p("mode", "linearizable", "r", "1", "w", "1")}); err == nil {
		c.fatalf("mode=linearizable with r+w<=n accepted")
	}
}

// A record corrupted on disk is detected at recovery and dropped; the key
// comes back from the other owners by anti-entropy.
func TestCorruptRecordRecovered(t *testing.T) {
	c := newCluster(t, 3, p("aae_interval", "50ms"), "", 23)
	c.do("n1", consistency.Options{W: 3}, nil, "SET", "k", "value")
	c.do("n1", consistency.Options{W: 3}, nil, "SET", "j", "other")
	eng := c.eng["n2"].SyncedClone()
	raw, err := eng.Get([]byte(prefixObj + "k"))
	if err != nil {
		c.fatalf("reading the record: %v", err)
	}
	raw[len(raw)-2] ^= 0x5a // the value's bytes: still decodable, wrong
	b := eng.NewBatch()
	b.Set([]byte(prefixObj+"k"), raw)
	if err := b.Commit(true); err != nil {
		c.fatalf("%v", err)
	}
	c.eng["n2"] = eng
	c.start("n2")
	if n := c.rep("n2").Stats().Corrupt; n != 1 {
		c.fatalf("corrupt records seen: %d, want 1", n)
	}
	if _, ok := c.dump("n2")["k"]; ok {
		c.fatalf("corrupt record served")
	}
	c.run(2 * time.Second)
	if got := c.dump("n2")["k"]; got != `"value"` {
		c.fatalf("after anti-entropy n2 holds %q", got)
	}
}

// A node whose disk is wiped rejoins under a new epoch: its new dots and
// counter share cannot collide with the ones the others hold.
func TestWipedDiskRejoins(t *testing.T) {
	c := newCluster(t, 3, p("aae_interval", "50ms", "resolve", "crdt"), "", 24)
	c.do("n1", consistency.Options{W: 3}, nil, "SET", "k", "a")
	for i := 0; i < 5; i++ {
		c.do("n1", consistency.Options{W: 3}, nil, "INCR", "cnt")
	}
	c.eng["n1"] = core.NewMemEngine() // wiped
	c.start("n1")
	c.isolate("n1")
	c.do("n1", consistency.Options{W: 1}, nil, "INCR", "cnt")
	c.heal()
	c.run(3 * time.Second)
	if d := c.divergence(); d != "" {
		c.fatalf("diverged after a wiped node rejoined: %s", d)
	}
	if got := c.dump("n2")["cnt"]; got != "counter:6" {
		c.fatalf("counter after rejoin: %s, want 6 increments", got)
	}
}

// A forwarded write delivered twice runs once: a duplicate of an old
// forward must not overwrite a write acknowledged after it (under ABD the
// re-run would read the newer value and supersede it).
func TestDuplicateForwardRunsOnce(t *testing.T) {
	for _, mode := range []string{"", "linearizable"} {
		t.Run("mode="+mode, func(t *testing.T) {
			params := append([]string(nil), noAAE...)
			if mode != "" {
				params = append(params, "mode", mode)
			}
			c := newCluster(t, 4, p(params...), "", 31)
			x := c.nonOwner("k")
			if x == "" {
				c.fatalf("every node owns k")
			}
			id := c.submit(x, core.Cmd("SET", "k", "old"), def, nil)
			var fwd *consistency.Message
			for _, f := range c.queue {
				if m, err := decodeMsg(f.m.Body); err == nil && m.kind == mFwd && f.m.From == x {
					cp := f.m
					fwd = &cp
				}
			}
			if fwd == nil {
				c.fatalf("no forward sent by non-owner %s", x)
			}
			for end := c.now.Add(3 * time.Second); c.resps[x][id].Reply.Kind == 0 && c.now.Before(end); {
				c.step()
			}
			if r := c.resps[x][id]; str(r) != "OK" {
				c.fatalf("forwarded SET: %s", str(r))
			}
			if r := c.do(c.owners("k")[0], def, nil, "SET", "k", "new"); str(r) != "OK" {
				c.fatalf("SET new: %s", str(r))
			}
			c.reps[fwd.To].Receive(c.local(fwd.To), *fwd) // the duplicate
			c.collect(fwd.To)
			c.run(time.Second)
			if r := c.do(x, consistency.Options{Mode: "linearizable"}, nil, "GET", "k"); str(r) != "new" {
				c.fatalf("after a duplicate forward of SET old: GET = %s, want new", str(r))
			}
		})
	}
}
