package quorum

import (
	"fmt"
	"testing"

	"github.com/dialkv/dialkv/consistency"
)

// BenchmarkSetGet measures the protocol's CPU cost per operation: one SET
// (W=2) and one GET (R=2) through three replicas and the in-memory test
// driver (message encoding, merges, engine commits and syncs included).
func BenchmarkSetGet(b *testing.B) {
	c := newCluster(b, 3, p("aae_interval", "1h"), "", 1)
	opts := consistency.Options{}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := fmt.Sprint("k", i%100)
		w := c.do(c.ids[i%3], opts, nil, "SET", k, "value")
		c.do(c.ids[(i+1)%3], opts, w.Token, "GET", k)
	}
}

// BenchmarkMergeSiblings merges two 8-sibling registers.
func BenchmarkMergeSiblings(b *testing.B) {
	var x, y *Object
	for i := 0; i < 8; i++ {
		x = putSibling(x, Context{}, Sibling{Dot: Dot{"n1", uint64(i + 1)}, Val: []byte("value")})
		y = putSibling(y, Context{}, Sibling{Dot: Dot{"n2", uint64(i + 1)}, Val: []byte("value")})
	}
	b.ReportAllocs()
	for b.Loop() {
		merge(x, y)
	}
}

// BenchmarkAAEConfirm measures recording one anti-entropy exchange's equal
// segments (tombstone confirmation) at a replica holding 12,000 objects, 1%
// of them tombstones, all segments it shares with a peer equal: the work
// behind the session-3 stall (it cost segments x objects; now one pass over
// the objects).
func BenchmarkAAEConfirm(b *testing.B) {
	c := newCluster(b, 3, p("aae_interval", "1h"), "", 1)
	r := c.reps["n1"].(*Replica)
	for i := range 12000 {
		k := fmt.Sprint("k", i)
		o := &Object{Kind: KindRegister} // dead (no live sibling): 1 in 100
		if i%100 != 0 {
			o.Sibs = []Sibling{{Dot: Dot{"n1", uint64(i + 1)}, Val: []byte("v")}}
		}
		r.objs[k] = &entry{obj: o, seg: r.ring.segment(k)}
	}
	segs := r.shared["n2"]
	for b.Loop() {
		r.confirm("n2", segs)
	}
	b.ReportMetric(float64(len(segs)), "segments")
}
