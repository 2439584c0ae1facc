package causal

import (
	"fmt"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// keyOwnedBy returns the first key prefix<i> whose owner in region reg is
// node.
func keyOwnedBy(t *testing.T, r *Replica, reg string, node consistency.NodeID, prefix string) string {
	t.Helper()
	for i := range 1000 {
		k := fmt.Sprintf("%s%d", prefix, i)
		if r.owner(reg, k) == node {
			return k
		}
	}
	t.Fatalf("no key %s* owned by %s in %s", prefix, node, reg)
	return ""
}

// TestHoldRemoteKeepsCheckpointsClosed: a session writes x then y in r1;
// in r2, b1 owns x and b2 owns y. b1 is "checkpointed" (its synced engine
// cloned) while both writes are on their way, b2 a second later, as a
// cluster backup's nodes may be. Without the hold, b2's copy holds y and
// b1's lacks the x that y depends on: ClosureViolations reports it. With
// HoldRemote on both from before the first checkpoint to after the last,
// nothing is applied in between, a1 keeps both writes queued for r2, and
// the pair of copies is closed; the release applies them in order.
// Both resolve modes.
func TestHoldRemoteKeepsCheckpointsClosed(t *testing.T) {
	for _, mode := range []string{ResolveLWW, ResolveSiblings} {
		for _, hold := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/hold=%v", mode, hold), func(t *testing.T) {
				c := newClusterWith(t, 1, "r1:a1;r2:b1,b2", "", map[string]string{"resolve": mode})
				a1, b1, b2 := c.nodes["a1"], c.nodes["b1"], c.nodes["b2"]
				x := keyOwnedBy(t, a1.rep, "r2", "b1", "x")
				y := keyOwnedBy(t, a1.rep, "r2", "b2", "y")
				if hold {
					b1.rep.HoldRemote(c.now, true)
					b2.rep.HoldRemote(c.now, true)
				}
				r := c.do("a1", nil, "SET", x, "1")
				if r.Reply.IsError() {
					t.Fatal(r.Reply.Err)
				}
				if r = c.do("a1", r.Token, "SET", y, "2"); r.Reply.IsError() {
					t.Fatal(r.Reply.Err)
				}
				snap := func(n *tnode) core.Engine {
					if err := n.eng.Sync(); err != nil {
						t.Fatal(err)
					}
					return n.eng.SyncedClone()
				}
				cp1 := snap(b1) // before x reaches b1 (50 ms or more)
				c.run(time.Second)
				cp2 := snap(b2)
				bad, err := ClosureViolations(map[string][]core.Engine{"r2": {cp1, cp2}}, mode == ResolveSiblings)
				if err != nil {
					t.Fatal(err)
				}
				if !hold {
					if len(bad) == 0 {
						t.Fatalf("control: without the hold the copies are closed; the test shows nothing (go test -run TestHoldRemoteKeepsCheckpointsClosed ./consistency/causal)")
					}
					t.Logf("without the hold: %v", bad)
					return
				}
				if len(bad) > 0 {
					t.Fatalf("held copies not causally closed: %v (go test -run TestHoldRemoteKeepsCheckpointsClosed ./consistency/causal)", bad)
				}
				if d := c.regionDump("r2"); len(d) != 0 {
					t.Fatalf("r2 applied %v while held", d)
				}
				if n := len(a1.rep.queue); n != 2 {
					t.Fatalf("a1 queues %d replication entries while r2 is held, want 2 (x and y)", n)
				}
				// x waits at b1 for the release; y waits at b2 for x.
				if h, n := b1.rep.Held(); !h || n != 1 {
					t.Fatalf("b1: held %v with %d deferred, want held with x deferred", h, n)
				}
				b1.rep.HoldRemote(c.now, false)
				b2.rep.HoldRemote(c.now, false)
				c.collect("b1")
				c.collect("b2")
				c.run(2 * time.Second)
				if d := c.regionDump("r2"); d[x] != `"1"` || d[y] != `"2"` {
					t.Fatalf("after the release r2 holds %v, want %s and %s", d, x, y)
				}
				if n := len(a1.rep.queue); n != 0 {
					t.Fatalf("a1 still queues %d entries after the release", n)
				}
			})
		}
	}
}

// TestClosureViolations: the checker itself, on hand-made stores.
func TestClosureViolations(t *testing.T) {
	v := func(w int64, n string) Version { return Version{Wall: w, Node: n} }
	put := func(eng core.Engine, key string, rec record) {
		b := eng.NewBatch()
		b.Set([]byte(prefixValue+key), sealJSON([]byte(prefixValue+key), rec))
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	for _, tt := range []struct {
		name string
		xAt  Version // x's version in the region (zero: absent)
		bad  int
	}{
		{"dependency present", v(10, "a1"), 0},
		{"dependency newer", v(20, "a1"), 0},
		{"dependency missing", Version{}, 1},
		{"dependency older", v(5, "a1"), 1},
	} {
		e1, e2 := core.NewMemEngine(), core.NewMemEngine()
		if !tt.xAt.IsZero() {
			put(e1, "x", record{Value: []byte("1"), V: tt.xAt})
		}
		put(e2, "y", record{Value: []byte("2"), V: v(30, "a1"), Deps: []Dep{{Key: "x", V: v(10, "a1")}}})
		bad, err := ClosureViolations(map[string][]core.Engine{"r2": {e1, e2}}, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(bad) != tt.bad {
			t.Errorf("%s: %d violations %v, want %d", tt.name, len(bad), bad, tt.bad)
		}
	}
}
