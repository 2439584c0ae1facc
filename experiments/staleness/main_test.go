package main

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dialkv/dialkv/sim/netmodel"
)

// With R+W > N every read intersects the write quorum: no staleness, in
// every profile.
func TestStrictQuorumsAreNeverStale(t *testing.T) {
	for _, r := range run(20000, 7, 3, nil) {
		if r.q.r+r.q.w > 3 && r.consistentAt(0) != 1 {
			t.Errorf("%s R=%d W=%d: P(consistent at 0) = %v, want 1", r.p, r.q.r, r.q.w, r.consistentAt(0))
		}
	}
}

// Partial quorums are stale sometimes, and less so as t grows.
func TestPartialQuorumsAreSometimesStaleAndImprove(t *testing.T) {
	for _, r := range run(20000, 7, 3, nil) {
		if r.q.r != 1 || r.q.w != 1 {
			continue
		}
		p0, p100 := r.consistentAt(0), r.consistentAt(100)
		if p0 >= 1 {
			t.Errorf("%s R=W=1: never stale in 20000 trials: the model is broken", r.p)
		}
		if p100 < p0 {
			t.Errorf("%s R=W=1: P(100ms)=%v < P(0)=%v: not monotone", r.p, p100, p0)
		}
	}
}

// A hand-computable case: constant latencies, the write lands on every
// replica before the read can reach one, so every read is consistent; and a
// case where a slow write to one replica makes R=1 reads of it stale.
func TestTrialHandComputed(t *testing.T) {
	c := func(d time.Duration) netmodel.Dist { return netmodel.Constant{D: d} }
	p := profile{name: "const", w: c(time.Millisecond), a: c(time.Millisecond), r: c(time.Millisecond), s: c(time.Millisecond)}
	out := make([]float64, 1)
	trial(p, 3, rand.New(rand.NewPCG(1, 1)), []quorum{{1, 1}}, out)
	if out[0] != 0 {
		t.Fatalf("constant latencies: t* = %v, want 0", out[0])
	}
	// WAN by hand: writes take 10 ms plus 100 ms to remote replicas, acks
	// 0; reads 1 ms each way plus 100 ms to replicas outside the reader's
	// region (replica 1's). W=1 completes at c=10 ms (replica 0); the
	// R=1 read goes to replica 1 (local to the reader: R+S = 2 ms), which
	// gets the write at 110 ms: t* = 110 - 10 - 1 = 99 ms.
	p = profile{w: c(10 * time.Millisecond), a: c(0), r: c(time.Millisecond), s: c(time.Millisecond), remote: 100 * time.Millisecond}
	trial(p, 3, rand.New(rand.NewPCG(1, 1)), []quorum{{1, 1}}, out)
	if out[0] != 99 {
		t.Fatalf("WAN by hand: t* = %v, want 99", out[0])
	}
	// A stale read by hand: replica 0 gets the write at 1 ms and acks at
	// 2 ms (so W=1 completes at c=2), replicas 1 and 2 get it at 50 ms.
	// Replica 1 answers reads fastest (R+S = 2 ms), so an R=1 read must
	// start late enough that its request reaches replica 1 (1 ms) after
	// the write did: t* = 50 - 2 - 1 = 47 ms.
	seq := &seqDist{vals: []float64{
		1, 1, 5, 5, // replica 0: W A R S
		50, 1, 1, 1, // replica 1
		50, 1, 10, 10, // replica 2
	}}
	p = profile{w: seq, a: seq, r: seq, s: seq}
	trial(p, 3, nil, []quorum{{1, 1}}, out)
	if out[0] != 47 {
		t.Fatalf("stale read by hand: t* = %v, want 47", out[0])
	}
}

// seqDist returns the given millisecond values in order, whatever is asked.
type seqDist struct {
	vals []float64
	i    int
}

func (s *seqDist) Sample(*rand.Rand) time.Duration {
	v := s.vals[s.i]
	s.i++
	return time.Duration(v * float64(time.Millisecond))
}
func (s *seqDist) String() string { return "seq" }
