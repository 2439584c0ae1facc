package security

import (
	"errors"
	"testing"
	"time"
)

func TestTokenBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b, err := NewTokenBucket(10, 3) // 10/s, burst 3: one token per 100ms
	if err != nil {
		t.Fatal(err)
	}
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, step := range []struct {
		ms    int
		n     int
		ok    bool
		retry time.Duration
	}{
		{0, 1, true, 0}, {0, 1, true, 0}, {0, 1, true, 0}, // the burst
		{0, 1, false, 100 * time.Millisecond},
		{50, 1, false, 50 * time.Millisecond},
		{100, 1, true, 0},
		{100, 1, false, 100 * time.Millisecond},
		{40, 1, false, 100 * time.Millisecond}, // time went back: nothing refilled
		{10000, 2, true, 0},                    // refilled to the burst, not beyond
		{10000, 2, false, 100 * time.Millisecond},
		{20000, 5, true, 0}, // larger than the burst: allowed on a full bucket, draining it
		{20000, 1, false, 100 * time.Millisecond},
	} {
		err := b.AllowN(at(step.ms), step.n)
		var rl *RateLimitError
		switch {
		case step.ok && err != nil:
			t.Fatalf("t=%dms n=%d: %v; want allowed", step.ms, step.n, err)
		case !step.ok && !errors.As(err, &rl):
			t.Fatalf("t=%dms n=%d: %v; want *RateLimitError", step.ms, step.n, err)
		case !step.ok && rl.RetryAfter != step.retry:
			t.Fatalf("t=%dms n=%d: retry after %v; want %v", step.ms, step.n, rl.RetryAfter, step.retry)
		case !step.ok && !errors.Is(err, ErrOverloaded):
			t.Fatalf("not ErrOverloaded: %v", err)
		}
	}
	for _, bad := range []struct {
		rate  float64
		burst int
	}{{0, 1}, {-1, 1}, {1, 0}} {
		if _, err := NewTokenBucket(bad.rate, bad.burst); err == nil {
			t.Errorf("NewTokenBucket(%v, %d) accepted", bad.rate, bad.burst)
		}
	}
}

func TestShedder(t *testing.T) {
	now := time.Unix(2000, 0)
	s, err := NewShedder(ShedderConfig{MaxInFlight: 2, BaseRetry: 100 * time.Millisecond, MaxRetry: time.Second, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	r1, err1 := s.Acquire(now)
	r2, err2 := s.Acquire(now)
	if err1 != nil || err2 != nil || s.InFlight() != 2 {
		t.Fatalf("first two: %v %v in flight %d", err1, err2, s.InFlight())
	}
	var hints []time.Duration
	for range 12 {
		_, err := s.Acquire(now)
		var oe *OverloadError
		if !errors.As(err, &oe) || !errors.Is(err, ErrOverloaded) {
			t.Fatalf("over the limit: %v; want *OverloadError", err)
		}
		hints = append(hints, oe.RetryAfter)
	}
	// Hints are jittered in [h/2, h] with h = 100ms doubling every 2
	// rejections (the first two get the base), capped at 1s.
	for i, h := range hints {
		base := min(100*time.Millisecond<<(i/2), time.Second)
		if h < base/2 || h > base {
			t.Errorf("hint %d = %v; want in [%v, %v]", i, h, base/2, base)
		}
	}
	if hints[len(hints)-1] < hints[0] {
		t.Errorf("hint did not grow under a storm: %v", hints)
	}
	r1()
	r1() // idempotent
	if s.InFlight() != 1 {
		t.Fatalf("in flight %d after one release; want 1", s.InFlight())
	}
	r3, err := s.Acquire(now)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	r2()
	r3()
	// A new second resets the storm: the hint is back near the base.
	s.Acquire(now)
	s.Acquire(now)
	_, err = s.Acquire(now.Add(2 * time.Second))
	var oe *OverloadError
	if !errors.As(err, &oe) || oe.RetryAfter > 100*time.Millisecond {
		t.Fatalf("after a quiet second: %v; want a hint <= 100ms", err)
	}
	// Same seed, same hints.
	s2, _ := NewShedder(ShedderConfig{MaxInFlight: 2, BaseRetry: 100 * time.Millisecond, MaxRetry: time.Second, Seed: 7})
	s2.Acquire(now)
	s2.Acquire(now)
	for i := range hints {
		_, err := s2.Acquire(now)
		errors.As(err, &oe)
		if oe.RetryAfter != hints[i] {
			t.Fatalf("seed 7 run 2 hint %d = %v; run 1 gave %v", i, oe.RetryAfter, hints[i])
		}
	}
}
