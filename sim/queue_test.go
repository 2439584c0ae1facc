package sim

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestQueueOrder: events come out in (at, seq) order whatever the mix of
// heap pushes and FIFO pushes (in order, and out of order, which go to the
// heap), interleaved with pops.
func TestQueueOrder(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fifoFrac float64 // share of pushLate among pushes
		popEvery int
	}{
		{"heap only", 0, 3},
		{"fifo only", 1, 2},
		{"mixed", 0.5, 2},
		{"mixed, bursts", 0.3, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(1, 7))
			var q queue
			var now int64
			var seq uint64
			// The reference: every pending event in a slice; a pop must
			// return the least by (at, seq).
			var pending []event
			pop := func() {
				e, ok := q.next()
				if !ok {
					t.Fatal("empty queue with events pending")
				}
				i := 0
				for j := range pending {
					if before(&pending[j], &pending[i]) {
						i = j
					}
				}
				if e != pending[i] {
					t.Fatalf("popped %+v, want %+v", e, pending[i])
				}
				pending = slices.Delete(pending, i, i+1)
				now = e.at
			}
			for i := 0; i < 3000; i++ {
				seq++
				e := event{seq: seq, a: int32(i)}
				if rnd.Float64() < tc.fifoFrac {
					e.at = now + 500 - int64(rnd.IntN(3)) // mostly in order
					q.pushLate(e)
				} else {
					e.at = now + int64(rnd.IntN(100))
					q.push(e)
				}
				pending = append(pending, e)
				if i%tc.popEvery == 0 {
					pop()
				}
			}
			for len(pending) > 0 {
				pop()
			}
			if _, ok := q.next(); ok || q.len() != 0 {
				t.Fatal("event after the queue emptied")
			}
		})
	}
}

// BenchmarkQueue: a steady state of 64 pending events, one push and one
// pop per iteration (the simulator's pattern).
func BenchmarkQueue(b *testing.B) {
	rnd := rand.New(rand.NewPCG(1, 7))
	var q queue
	var seq uint64
	for i := 0; i < 64; i++ {
		seq++
		q.push(event{at: int64(rnd.IntN(2000)), seq: seq})
	}
	for b.Loop() {
		e, _ := q.next()
		seq++
		q.push(event{at: e.at + int64(rnd.IntN(2000)), seq: seq})
	}
}
