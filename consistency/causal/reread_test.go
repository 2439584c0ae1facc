package causal

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// flakyReads is an engine whose reads of one engine key fail while armed:
// with an I/O error, or (corrupt) by returning the value with a byte
// flipped, as the simulator's disk faults do. Everything else passes
// through.
type flakyReads struct {
	core.Engine
	key     string
	corrupt bool
	armed   bool
	failed  int // reads of key that failed
}

var _ core.Engine = (*flakyReads)(nil)

func (f *flakyReads) Get(key []byte) ([]byte, error) {
	v, err := f.Engine.Get(key)
	if !f.armed || string(key) != f.key || err != nil {
		return v, err
	}
	f.failed++
	if !f.corrupt {
		return nil, errors.New("flakyReads: injected I/O error")
	}
	v = append([]byte(nil), v...)
	v[len(v)/2] ^= 0x5a
	return v, nil
}

// keysForReread finds keys x, y, z with the same owner of x and z in eu
// and another owner of y there.
func keysForReread(t *testing.T, c *cluster) (x, y, z string) {
	t.Helper()
	r := c.nodes["e1"].rep
	for i := 0; i < 100; i++ {
		x, y, z = fmt.Sprintf("x%d", i), fmt.Sprintf("y%d", i), fmt.Sprintf("z%d", i)
		if r.owner("eu", x) == r.owner("eu", z) && r.owner("eu", y) != r.owner("eu", x) {
			return x, y, z
		}
	}
	t.Fatal("no keys with the owners wanted")
	return "", "", ""
}

// TestWaiterRetriesUnreadableLocalDependency: a remote write waits for a
// dependency checked by another owner (y) and for one its own node holds
// (z). When the check's answer arrives, z's record cannot be read (an I/O
// error, or a checksum failure whose repair cannot finish); the read works
// again later, but z does not change, so nothing announces it. The write
// must still become visible: the waiter is evaluated again every retry.
//
// Without that, the waiter stayed blocked for good (its checks were all
// answered, so it sent none, and only a new version of z would have
// re-evaluated it): `dialkv sim --strategy causal --seed 37 --nodes 4
// --faults all --regions 2 --params resolve=siblings` diverged for good
// (every write of the key from its origin chains on the blocked one in
// siblings mode, and writes of other keys chain on those).
func TestWaiterRetriesUnreadableLocalDependency(t *testing.T) {
	for _, mode := range []string{ResolveLWW, ResolveSiblings} {
		for _, corrupt := range []bool{false, true} {
			name := mode + "/io-error"
			if corrupt {
				name = mode + "/corrupt"
			}
			t.Run(name, func(t *testing.T) {
				c := newClusterWith(t, 21, twoRegions, "", map[string]string{"resolve": mode})
				x, y, z := keysForReread(t, c)
				u := c.nodes["u1"].rep
				ux, uy, uz := u.owner("us", x), u.owner("us", y), u.owner("us", z)
				ex, ey := u.owner("eu", x), u.owner("eu", y)
				// z's acknowledgements from eu (and a repair's fetches) are
				// cut, so z1 stays unstable: x2's dependency on it is kept
				// and checked at ex, which owns both x and z in eu.
				c.cut[[2]consistency.NodeID{ex, uz}] = true
				tok := c.do(uz, nil, "SET", z, "z1").Token
				c.run(300 * time.Millisecond)
				if r := c.do(ex, nil, "GET", z); replyString(r.Reply) != "z1" {
					t.Fatalf("GET %s at %s: %s, want z1", z, ex, replyString(r.Reply))
				}
				// y1 (another session, no dependencies) is held back from eu;
				// x2 depends on z1 and on y1 (read by x2's session).
				c.cut[[2]consistency.NodeID{uy, ey}] = true
				c.do(uy, nil, "SET", y, "y1")
				tok = c.do(uy, tok, "GET", y).Token
				if r := c.do(ux, tok, "SET", x, "x2"); replyString(r.Reply) != "OK" {
					t.Fatalf("SET %s x2: %s", x, replyString(r.Reply))
				}
				c.run(300 * time.Millisecond) // x2 waits at ex for y1 at ey
				f := &flakyReads{Engine: c.nodes[ex].rep.eng, key: prefixValue + z, corrupt: corrupt, armed: true}
				c.nodes[ex].rep.eng = f
				c.cut[[2]consistency.NodeID{uy, ey}] = false
				c.run(500 * time.Millisecond) // y1 reaches ey; its answer reaches ex, which cannot read z
				if f.failed == 0 {
					t.Fatalf("no read of %s at %s failed: the scenario did not happen", z, ex)
				}
				f.armed = false
				c.run(time.Second)
				if r := c.do(ex, nil, "GET", x); replyString(r.Reply) != "x2" {
					t.Fatalf("GET %s at %s after %s became readable again: %s, want x2 (a waiter that met an unreadable record must be evaluated again; go test -run TestWaiterRetriesUnreadableLocalDependency ./consistency/causal)", x, ex, z, replyString(r.Reply))
				}
				c.cut[[2]consistency.NodeID{ex, uz}] = false
				c.run(2 * time.Second)
				for _, reg := range c.regions() {
					d := c.regionDump(reg)
					if d[x] != `"x2"` || d[y] != `"y1"` || d[z] != `"z1"` {
						t.Fatalf("region %s holds %s=%s %s=%s %s=%s, want x2, y1, z1", reg, x, d[x], y, d[y], z, d[z])
					}
				}
			})
		}
	}
}
