package quorum

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// ringTest drives ring changes over the test harness: a write load runs
// between the steps, and every acknowledged write is recorded.
type ringTest struct {
	c     *cluster
	ver   uint64
	next  int
	acked map[string]string // key -> value acknowledged ("" after an acknowledged DEL)
	fails int
	// refused counts writes refused with UNAVAILABLE (not applied).
	refused int
	// staggered hands each state to one replica at a time, with writes
	// between them.
	staggered bool
	// shuffle, if set, orders readAll's reads (DIALKV_RING_SHUFFLE=N:
	// a sweep over read orders; unset: key order).
	shuffle *rand.Rand
	// down are nodes that are down (isolated): they get no ring state,
	// coordinate nothing, and are left out of the checks; change passes
	// them as RingState.Down when noDown is false.
	down   []nodeID
	noDown bool
}

// live are the nodes that are not down.
func (rt *ringTest) live() []nodeID {
	var out []nodeID
	for _, id := range rt.c.ids {
		if !hasID(rt.down, id) {
			out = append(out, id)
		}
	}
	return out
}

func (rt *ringTest) setRing(s RingState) {
	rt.ver++
	s.Version = rt.ver
	if s.Prev != nil && !rt.noDown {
		s.Down = rt.down
	}
	for _, id := range rt.live() {
		if err := rt.c.rep(id).SetRing(rt.c.local(id), s); err != nil {
			rt.c.fatalf("SetRing %d at %s: %v", s.Version, id, err)
		}
		rt.c.collect(id)
		if rt.staggered {
			// As the driver does: one node after the other, with
			// requests in between (nodes hold different versions).
			rt.load(3)
		}
	}
}

// load writes n new keys through coordinators in turn (n4, not yet a
// member, forwards), and deletes every fifth key it wrote.
func (rt *ringTest) load(n int) {
	for i := 0; i < n; i++ {
		rt.next++
		k := fmt.Sprintf("k%04d", rt.next)
		live := rt.live()
		at := live[rt.next%len(live)]
		if r := rt.c.do(at, def, nil, "SET", k, "v"+k); str(r) == "OK" {
			rt.acked[k] = "v" + k
		} else {
			rt.failed(r)
		}
		if rt.next%5 == 0 {
			d := fmt.Sprintf("k%04d", rt.next-2)
			if _, ok := rt.acked[d]; ok {
				if r := rt.c.do(at, def, nil, "DEL", d); !isErr(r) {
					rt.acked[d] = ""
				} else {
					rt.failed(r)
				}
			}
		}
	}
}

// failed counts a failed write: UNAVAILABLE (certainly not applied: a
// forwarded write met a node on another ring version) or anything else.
func (rt *ringTest) failed(r consistency.Response) {
	if r.Reply.Err != nil && r.Reply.Err.Code == consistency.CodeUnavailable {
		rt.refused++
		return
	}
	rt.fails++
}

// change runs the three states of a ring change with load between them,
// and returns how long (virtual time) the stream took.
func (rt *ringTest) change(prev, next []nodeID, stream bool) time.Duration {
	rt.setRing(RingState{Members: next, Prev: prev})
	rt.load(20)
	rt.c.run(1500 * time.Millisecond) // writes started under the old ring have ended
	start := rt.c.now
	if stream {
		rt.setRing(RingState{Members: next, Prev: prev, Stream: true})
		for {
			rt.load(5)
			pending := 0
			for _, id := range rt.live() {
				pending += rt.c.rep(id).RingStatus().Pending
			}
			if pending == 0 {
				break
			}
			if rt.c.now.Sub(start) > time.Minute {
				rt.c.fatalf("handoff not done after a minute: %d pending", pending)
			}
		}
	}
	took := rt.c.now.Sub(start)
	rt.setRing(RingState{Members: next})
	return took
}

// drain delivers the messages in flight, in time order, until none is
// left, without ticking: no timer fires, so hinted handoff, handoff retries
// and anti-entropy cannot repair what the check after it looks at. A write
// is acknowledged once W owners acked it; its put to the remaining owner
// may still be in flight then (k0222 in the DIALKV_RING_SHUFFLE=2 run: the
// last write of the change, acked by n3 and n4 while n3's put to n2 was
// due 2 ms later), so a check of every owner's store must drain first.
func (rt *ringTest) drain() {
	c := rt.c
	for n := 0; len(c.queue) > 0; n++ {
		if n > 100000 {
			c.fatalf("drain: messages still in flight after %d deliveries", n)
		}
		sort.Slice(c.queue, func(i, j int) bool {
			if !c.queue[i].at.Equal(c.queue[j].at) {
				return c.queue[i].at.Before(c.queue[j].at)
			}
			return c.queue[i].seq < c.queue[j].seq
		})
		f := c.queue[0]
		c.queue = c.queue[1:]
		if f.at.After(c.now) {
			c.now = f.at
		}
		if c.blocked[[2]nodeID{f.m.From, f.m.To}] {
			continue
		}
		c.reps[f.m.To].Receive(c.local(f.m.To), f.m)
		c.collect(f.m.To)
	}
}

// missing lists acknowledged live keys that an owner (by the ring) does
// not hold in its own store, and objects held by non-owners, once the
// messages in flight have arrived (drain).
func (rt *ringTest) missing() []string { return rt.missingOf(nil) }

// missingOf is missing for the keys that only accepts (nil: every key).
func (rt *ringTest) missingOf(only func(key string) bool) []string {
	rt.drain()
	dumps := map[nodeID]map[string]string{}
	live := rt.live()
	for _, id := range live {
		dumps[id] = rt.c.dump(id)
	}
	var out []string
	for k, v := range rt.acked {
		if only != nil && !only(k) {
			continue
		}
		owners := rt.c.rep(live[0]).Holders(k)
		for _, o := range owners {
			if _, ok := dumps[o][k]; v != "" && !ok {
				out = append(out, fmt.Sprintf("%s missing at owner %s", k, o))
			}
		}
		for _, id := range live {
			if _, ok := dumps[id][k]; ok && !hasID(owners, id) {
				out = append(out, fmt.Sprintf("%s still held by non-owner %s", k, id))
			}
		}
	}
	return out
}

// readAll reads every acknowledged key with R=ALL (read repair off, so
// that reading does not fix what it checks) at a rotating node.
func (rt *ringTest) readAll() {
	opts := consistency.Options{R: ALL, Repair: RepairOff}
	// In key order: every read advances virtual time, so an order drawn
	// from map iteration made the rest of the run differ from run to run.
	keys := make([]string, 0, len(rt.acked))
	for k := range rt.acked {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if rt.shuffle != nil {
		rt.shuffle.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	}
	i := 0
	live := rt.live()
	for _, k := range keys {
		v := rt.acked[k]
		i++
		at := live[i%len(live)]
		r := rt.c.do(at, opts, nil, "GET", k)
		want := v
		if v == "" {
			want = "(nil)"
		}
		if str(r) != want {
			rt.c.fatalf("GET %s at %s with R=ALL: %s, want %s", k, at, str(r), want)
		}
	}
}

// TestRingChangeAddThenRemove adds n4, then removes n1, under a write
// load. Shuffle N reads back the acknowledged keys between the changes in
// an order drawn from N (every read advances virtual time, so the rest of
// the run differs); 2 and 13 are the orders that made the check fail when
// it ran with the last write's third put still in flight (see drain).
// DIALKV_RING_SHUFFLE=N runs one order only; the soak test sweeps 1..200.
func TestRingChangeAddThenRemove(t *testing.T) {
	shuffles := []uint64{0, 2, 13}
	if v := os.Getenv("DIALKV_RING_SHUFFLE"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("DIALKV_RING_SHUFFLE=%q: %v", v, err)
		}
		shuffles = []uint64{n}
	}
	for _, staggered := range []bool{false, true} {
		for _, sh := range shuffles {
			t.Run(fmt.Sprintf("staggered=%v/shuffle=%d", staggered, sh), func(t *testing.T) { ringAddThenRemove(t, staggered, sh) })
		}
	}
}

// TestRingChangeShuffleSweep (DIALKV_SOAK) runs TestRingChangeAddThenRemove
// with read orders 1..200.
func TestRingChangeShuffleSweep(t *testing.T) {
	if os.Getenv("DIALKV_SOAK") == "" {
		t.Skip("read-order sweep 1..200: set DIALKV_SOAK=1")
	}
	for sh := uint64(1); sh <= 200; sh++ {
		for _, staggered := range []bool{false, true} {
			t.Run(fmt.Sprintf("staggered=%v/shuffle=%d", staggered, sh), func(t *testing.T) { ringAddThenRemove(t, staggered, sh) })
		}
	}
}

// ringAddThenRemove runs the test; shuffle 0 reads back in key order.
func ringAddThenRemove(t *testing.T, staggered bool, shuffle uint64) {
	n1, n2, n3, n4 := nodeID("n1"), nodeID("n2"), nodeID("n3"), nodeID("n4")
	three, four, after := []nodeID{n1, n2, n3}, []nodeID{n1, n2, n3, n4}, []nodeID{n2, n3, n4}
	// Anti-entropy is off: only the handoff (and hints) may move data.
	params := p("n", "3", "r", "2", "w", "2", "aae_interval", "1h", "read_repair", RepairOff)
	c := newCluster(t, 0, params, "", 3)
	c.ids, c.peers = four, three // n4 runs, but is not a ring member yet
	for _, id := range c.ids {
		c.eng[id] = core.NewMemEngine()
		c.start(id)
	}
	rt := &ringTest{c: c, acked: map[string]string{}, staggered: staggered}
	if shuffle != 0 {
		rt.shuffle = rand.New(rand.NewPCG(shuffle, 0))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("reproduce: DIALKV_RING_SHUFFLE=%d go test -count=1 -run 'TestRingChangeAddThenRemove/staggered=%v' -v ./consistency/quorum", shuffle, staggered)
		}
	})
	rt.load(100)
	if m := rt.missing(); len(m) > 0 {
		c.fatalf("before the change: %v", m[:min(5, len(m))])
	}

	took := rt.change(three, four, true)
	if m := rt.missing(); len(m) > 0 {
		c.fatalf("after adding n4: %d problems, e.g. %v", len(m), m[:min(5, len(m))])
	}
	if moved := c.rep(n1).RingStatus().Moved + c.rep(n2).RingStatus().Moved + c.rep(n3).RingStatus().Moved; moved == 0 {
		c.fatalf("adding n4 moved nothing")
	}
	t.Logf("add n4: stream took %v (virtual)", took)
	rt.readAll()

	took = rt.change(four, after, true)
	if m := rt.missing(); len(m) > 0 {
		c.fatalf("after removing n1: %d problems, e.g. %v", len(m), m[:min(5, len(m))])
	}
	if d := rt.c.dump(n1); len(d) != 0 {
		c.fatalf("n1 left the ring but still holds %d keys", len(d))
	}
	t.Logf("remove n1: stream took %v (virtual); %d writes failed and %d were refused (UNAVAILABLE) during both changes", took, rt.fails, rt.refused)
	rt.readAll()
	if rt.fails > 0 || rt.refused > 0 && !staggered {
		c.fatalf("%d writes failed, %d refused during the changes (no node was down)", rt.fails, rt.refused)
	}
}

// Without the stream, the new owners lack data right after the change:
// the check above can fail. The data is not lost — the old owners keep
// it as hints for the new owners — and hinted handoff then delivers it.
func TestRingChangeWithoutStreamIsCaught(t *testing.T) {
	n1, n2, n3, n4 := nodeID("n1"), nodeID("n2"), nodeID("n3"), nodeID("n4")
	three, four := []nodeID{n1, n2, n3}, []nodeID{n1, n2, n3, n4}
	params := p("n", "3", "r", "2", "w", "2", "aae_interval", "1h", "read_repair", RepairOff, "hint_interval", "1h")
	c := newCluster(t, 0, params, "", 3)
	c.ids, c.peers = four, three
	for _, id := range c.ids {
		c.eng[id] = core.NewMemEngine()
		c.start(id)
	}
	rt := &ringTest{c: c, acked: map[string]string{}}
	rt.load(100)
	rt.change(three, four, false)
	if m := rt.missing(); len(m) == 0 {
		c.fatalf("a ring change without the stream left no key missing at n4: the check cannot fail")
	}
	held := 0
	for _, id := range three {
		held += c.rep(id).Unsettled()
	}
	if held == 0 {
		c.fatalf("the old owners dropped what they no longer own without keeping it as hints")
	}
}

// TestRingChangeRemoveDownNode removes n3 while it is down (isolated for
// good): the replicas that stay hand its keys off from their own copies.
// Before, writes at W=2 with strict quorum while n2 was cut off left keys
// only at n3 and one other owner, and sloppy writes while n3 is down left
// hints for n3 at fallbacks. Every acknowledged write of a key n3 owned
// must be at every new owner afterwards (anti-entropy and read repair off;
// the other keys keep what W=2 gave them), and every acknowledged write
// reads back with R=ALL. Without RingState.Down the surviving copies are not merged: some
// key then misses at an owner (the negative control).
func TestRingChangeRemoveDownNode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		noDown bool
	}{{"down", false}, {"without-Down-not-merged", true}} {
		t.Run(tc.name, func(t *testing.T) {
			m, rt := ringRemoveDown(t, tc.noDown)
			switch {
			case !tc.noDown && len(m) > 0:
				rt.c.fatalf("after removing down n3: %d problems, e.g. %v", len(m), m[:min(5, len(m))])
			case tc.noDown && len(m) == 0:
				rt.c.fatalf("removing down n3 without RingState.Down left no key missing at a new owner: the check cannot fail")
			}
			if !tc.noDown {
				rt.readAll()
			}
			t.Logf("%d problems; %d writes failed (n3 not suspected yet), %d refused", len(m), rt.fails, rt.refused)
		})
	}
}

func ringRemoveDown(t *testing.T, noDown bool) ([]string, *ringTest) {
	n1, n2, n3, n4 := nodeID("n1"), nodeID("n2"), nodeID("n3"), nodeID("n4")
	four, after := []nodeID{n1, n2, n3, n4}, []nodeID{n1, n2, n4}
	params := p("n", "3", "r", "2", "w", "2", "aae_interval", "1h", "read_repair", RepairOff)
	c := newCluster(t, 4, params, "", 5)
	rt := &ringTest{c: c, acked: map[string]string{}, noDown: noDown}
	rt.load(40)
	// n2 cut off: strict W=2 writes reach the two other owners only.
	c.isolate(n2)
	strict := consistency.Options{Strict: true}
	var onlyTwo int
	for i := 0; i < 60; i++ {
		k := fmt.Sprintf("s%03d", i)
		at := []nodeID{n1, n3, n4}[i%3]
		if r := c.do(at, strict, nil, "SET", k, "v"+k); str(r) == "OK" {
			rt.acked[k] = "v" + k
			if hasID(c.owners(k), n2) && hasID(c.owners(k), n3) {
				onlyTwo++
			}
		}
	}
	if onlyTwo == 0 {
		c.fatalf("no acknowledged key lives only on n3 and one other owner: the scenario tests nothing")
	}
	c.heal()
	c.run(500 * time.Millisecond)
	// n3 goes down for good; sloppy writes leave hints for it.
	c.isolate(n3)
	rt.down = []nodeID{n3}
	rt.load(40)
	hinted := 0
	for _, id := range rt.live() {
		hinted += len(c.rep(id).hints[n3])
	}
	if hinted == 0 {
		c.fatalf("no hint held for n3: the scenario tests nothing")
	}
	rt.change(four, after, true)
	old := newRing(four, c.rep(n1).p.vnodes, 3)
	return rt.missingOf(func(k string) bool { return old.isOwner(old.segment(k), n3) }), rt
}

// TestRingChangeLateHint: a hint that reaches a surviving old owner during
// the stream, after that owner pushed the key, must still reach the key's
// other new owners. n3 coordinates a write while it suspects owner b and
// cannot reach owner a: it is acknowledged by n3 and by a fallback f that
// holds it as a hint for b. n3 then goes down for good and is removed
// with Down; f's hint reaches b only once b has pushed the key. So the
// write survives only at b (its coordinator is gone, a and f never got
// it), and every new owner's own copy must have it after the change
// (anti-entropy and read repair off). "stable-first" makes the driver
// hand out the stable ring while b's second push to a cannot get through
// (the driver saw b idle before the hint arrived): b keeps it as a hint.
// Without the push again (changedInStream), or without those hints
// (settleRing's unsent), the key misses at a and f.
func TestRingChangeLateHint(t *testing.T) {
	for _, stableFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("stable-first=%v", stableFirst), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("reproduce: go test -count=1 -run 'TestRingChangeLateHint/stable-first=%v' -v ./consistency/quorum", stableFirst)
				}
			})
			ringLateHint(t, stableFirst)
		})
	}
}

func ringLateHint(t *testing.T, stableFirst bool) {
	n3 := nodeID("n3")
	params := p("n", "3", "r", "2", "w", "2", "aae_interval", "1h", "read_repair", RepairOff)
	c := newCluster(t, 5, params, "", 1)
	all := append([]nodeID(nil), c.ids...)
	var after []nodeID
	for _, id := range all {
		if id != n3 {
			after = append(after, id)
		}
	}
	// A key n3 owns; a and b are its other owners, f the first fallback.
	var key string
	var a, b, f nodeID
	for i := 0; key == ""; i++ {
		k := fmt.Sprintf("late%d", i)
		seg := c.rep(n3).ring.segment(k)
		own := c.rep(n3).ring.owners(seg)
		if !hasID(own, n3) {
			continue
		}
		var others []nodeID
		for _, o := range own {
			if o != n3 {
				others = append(others, o)
			}
		}
		key, a, b, f = k, others[0], others[1], c.rep(n3).ring.fallbacks(seg)[0]
	}
	rt := &ringTest{c: c, acked: map[string]string{}}
	c.rep(n3).SetPeerState(b, false)
	c.blocked[[2]nodeID{n3, a}] = true
	if r := c.do(n3, def, nil, "SET", key, "late"); str(r) != "OK" {
		c.fatalf("SET %s at n3 (acked by n3 and %s's hint for %s): %s", key, f, b, str(r))
	}
	if c.rep(f).hints[b][key] == nil {
		c.fatalf("%s holds no hint of %s for %s: the scenario tests nothing", f, key, b)
	}
	// n3 goes down for good; f's hints cannot reach b until b pushed.
	c.isolate(n3)
	rt.down = []nodeID{n3}
	c.blocked[[2]nodeID{f, b}] = true
	rt.setRing(RingState{Members: after, Prev: all})
	c.run(1500 * time.Millisecond)
	rt.setRing(RingState{Members: after, Prev: all, Stream: true})
	idle := func(id nodeID) bool { st := c.rep(id).RingStatus(); return st.Queued+st.Inflight == 0 }
	for i := 0; !idle(b); i++ {
		if i > 1000 {
			c.fatalf("%s did not push its keys", b)
		}
		c.step()
	}
	delete(c.blocked, [2]nodeID{f, b})
	if stableFirst {
		// b's push to a cannot get through; the driver saw b idle before
		// f's hint arrived and hands out the stable ring once f is done.
		c.blocked[[2]nodeID{b, a}] = true
		for i := 0; c.rep(f).RingStatus().Hints > 0; i++ {
			if i > 1000 {
				c.fatalf("%s did not hand its hint to %s: %+v %v", f, b, c.rep(f).RingStatus(), c.rep(f).hints)
			}
			c.step()
		}
		if idle(b) {
			c.fatalf("%s took the late hint without queuing a push: the scenario tests nothing", b)
		}
		rt.setRing(RingState{Members: after})
		delete(c.blocked, [2]nodeID{b, a})
		c.run(time.Second) // hinted handoff
	} else {
		for i := 0; ; i++ {
			pending := 0
			for _, id := range rt.live() {
				pending += c.rep(id).RingStatus().Pending
			}
			if pending == 0 {
				break
			}
			if i > 1000 {
				c.fatalf("handoff not done: %d pending", pending)
			}
			c.step()
		}
		rt.setRing(RingState{Members: after})
	}
	rt.drain()
	for _, o := range c.rep(a).Holders(key) {
		if got := c.dump(o)[key]; got != `"late"` {
			c.fatalf("%s at new owner %s: %s, want \"late\" (a=%s b=%s f=%s)", key, o, got, a, b, f)
		}
	}
	rt.acked[key] = "late"
	rt.readAll()
}

// TestRingChangePusherLacksWrite (handoff=one): writes acknowledged by
// W=2 of the three old owners while the third, n1, was cut off (strict
// quorum: no hint) are missing from n1; n4 is then added. For the keys
// whose pusher (first old owner) is n1, only the other old owners' offers
// bring those writes to n4: n4's own copy must have every acknowledged
// write of the keys it gains (anti-entropy and read repair off; n1, which
// stays an owner, keeps lacking them). With the offers
// answered offerOK whatever the digest (checked by editing offerVerdict),
// keys miss at n4.
func TestRingChangePusherLacksWrite(t *testing.T) {
	n1, n2, n3, n4 := nodeID("n1"), nodeID("n2"), nodeID("n3"), nodeID("n4")
	three, four := []nodeID{n1, n2, n3}, []nodeID{n1, n2, n3, n4}
	params := p("n", "3", "r", "2", "w", "2", "aae_interval", "1h", "read_repair", RepairOff)
	c := newCluster(t, 0, params, "", 3)
	c.ids, c.peers = four, three
	for _, id := range c.ids {
		c.eng[id] = core.NewMemEngine()
		c.start(id)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("reproduce: go test -count=1 -run TestRingChangePusherLacksWrite -v ./consistency/quorum")
		}
	})
	rt := &ringTest{c: c, acked: map[string]string{}}
	rt.load(40)
	c.partition([]nodeID{n1}, []nodeID{n2, n3, n4})
	strict := consistency.Options{Strict: true}
	for i := 0; i < 60; i++ {
		k := fmt.Sprintf("p%03d", i)
		if r := c.do([]nodeID{n2, n3}[i%2], strict, nil, "SET", k, "v"+k); str(r) == "OK" {
			rt.acked[k] = "v" + k
		}
	}
	c.heal()
	c.run(500 * time.Millisecond)
	old, next := newRing(three, c.rep(n1).p.vnodes, 3), newRing(four, c.rep(n1).p.vnodes, 3)
	lacking := 0
	for k := range rt.acked {
		if k[0] == 'p' && old.owners(old.segment(k))[0] == n1 && hasID(next.owners(next.segment(k)), n4) {
			lacking++
		}
	}
	if lacking == 0 {
		c.fatalf("no acknowledged key has pusher n1 and gains n4: the scenario tests nothing")
	}
	rt.change(three, four, true)
	// n1 itself keeps lacking them (anti-entropy off): only n4 is checked.
	var m []string
	for _, x := range rt.missing() {
		if strings.HasSuffix(x, "missing at owner n4") {
			m = append(m, x)
		}
	}
	if len(m) > 0 {
		c.fatalf("after adding n4: %d problems, e.g. %v (%d keys had pusher n1 lacking them)", len(m), m[:min(5, len(m))], lacking)
	}
	offered := 0
	for _, id := range three {
		offered += c.rep(id).RingStatus().Offered
	}
	t.Logf("%d keys with pusher n1 lacking them; %d offers answered OK", lacking, offered)
}

// TestRingHandoffTraffic runs the same ring changes (add n4, then remove
// n1, with 300 keys of 1 KiB preloaded and a write load) with handoff=each
// and handoff=one on the same seed, and logs the pushes, offers, bytes and
// stream time (virtual) of each side by side; one must send fewer bytes.
// Every owner's own copy is checked after each change (ringTest.missing).
func TestRingHandoffTraffic(t *testing.T) {
	type res struct {
		pushes, offers int
		bytes          int64
		stream         time.Duration
	}
	run := func(mode string) [2]res {
		n1, n2, n3, n4 := nodeID("n1"), nodeID("n2"), nodeID("n3"), nodeID("n4")
		three, four, after := []nodeID{n1, n2, n3}, []nodeID{n1, n2, n3, n4}, []nodeID{n2, n3, n4}
		params := p("n", "3", "r", "2", "w", "2", "aae_interval", "1h", "read_repair", RepairOff, "handoff", mode)
		c := newCluster(t, 0, params, "", 9)
		c.ids, c.peers = four, three
		for _, id := range c.ids {
			c.eng[id] = core.NewMemEngine()
			c.start(id)
		}
		rt := &ringTest{c: c, acked: map[string]string{}}
		big := strings.Repeat("x", 1024)
		for i := 0; i < 300; i++ {
			k := fmt.Sprintf("b%03d", i)
			if r := c.do(c.ids[i%3], def, nil, "SET", k, big); str(r) == "OK" {
				rt.acked[k] = big
			}
		}
		rt.load(50)
		var out [2]res
		for i, ch := range [][2][]nodeID{{three, four}, {four, after}} {
			before := map[nodeID]RingStatus{}
			for _, id := range four {
				before[id] = c.rep(id).RingStatus()
			}
			out[i].stream = rt.change(ch[0], ch[1], true)
			if m := rt.missing(); len(m) > 0 {
				c.fatalf("handoff=%s, change %d: %d problems, e.g. %v", mode, i+1, len(m), m[:min(5, len(m))])
			}
			for _, id := range four {
				st := c.rep(id).RingStatus()
				out[i].pushes += st.Moved - before[id].Moved
				out[i].offers += st.Offered - before[id].Offered
				out[i].bytes += st.Bytes - before[id].Bytes
			}
		}
		return out
	}
	each, one := run(HandoffEach), run(HandoffOne)
	for i, name := range []string{"add n4", "remove n1"} {
		t.Logf("%s: handoff=each %d pushes, %d bytes, stream %v; handoff=one %d pushes + %d offers answered OK, %d bytes, stream %v; bytes one/each %.2f",
			name, each[i].pushes, each[i].bytes, each[i].stream, one[i].pushes, one[i].offers, one[i].bytes, one[i].stream, float64(one[i].bytes)/float64(each[i].bytes))
		if one[i].bytes >= each[i].bytes {
			t.Errorf("%s: handoff=one sent %d bytes, handoff=each %d: no saving; reproduce: go test -count=1 -run TestRingHandoffTraffic -v ./consistency/quorum", name, one[i].bytes, each[i].bytes)
		}
	}
}
