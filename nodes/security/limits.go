package security

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// ErrOverloaded is wrapped by RateLimitError and OverloadError.
var ErrOverloaded = errors.New("overloaded")

// RateLimitError says a connection sent requests faster than its rate.
type RateLimitError struct {
	RetryAfter time.Duration // when one token will be available
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("request rate limit exceeded; retry after %v", e.RetryAfter)
}

// Unwrap returns ErrOverloaded.
func (e *RateLimitError) Unwrap() error { return ErrOverloaded }

// TokenBucket is a per-connection request rate limiter: it holds up to
// Burst tokens, refilled at Rate per second; each request takes one. It
// reads no clock: the caller passes the time, so a test drives it exactly.
// Safe for concurrent use.
type TokenBucket struct {
	rate  float64 // tokens per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// NewTokenBucket returns a full bucket. rate must be > 0 and burst >= 1.
func NewTokenBucket(rate float64, burst int) (*TokenBucket, error) {
	if !(rate > 0) || math.IsInf(rate, 0) || burst < 1 {
		return nil, fmt.Errorf("security: rate limit needs rate > 0 and burst >= 1 (got %v, %d)", rate, burst)
	}
	return &TokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}, nil
}

// Allow takes one token at time now, or returns a *RateLimitError whose
// RetryAfter is when the next token will be there. Time going backwards
// refills nothing.
func (b *TokenBucket) Allow(now time.Time) error {
	return b.AllowN(now, 1)
}

// AllowN takes n tokens (a batch of n commands counts n) or none.
func (b *TokenBucket) AllowN(now time.Time, n int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
	need := float64(n)
	if need > b.burst {
		// Never satisfiable in one go: let it through only on a full bucket,
		// draining it, so one huge batch cannot be starved forever.
		need = b.burst
	}
	if b.tokens >= need {
		b.tokens -= need
		return nil
	}
	wait := time.Duration(math.Ceil((need - b.tokens) / b.rate * float64(time.Second)))
	return &RateLimitError{RetryAfter: wait}
}

// OverloadError says the node sheds load; the client should retry after
// RetryAfter (with its own jitter on top).
type OverloadError struct {
	RetryAfter time.Duration
	InFlight   int
}

func (e *OverloadError) Error() string {
	return fmt.Sprintf("node overloaded (%d requests in flight); retry after %v", e.InFlight, e.RetryAfter)
}

// Unwrap returns ErrOverloaded.
func (e *OverloadError) Unwrap() error { return ErrOverloaded }

// ShedderConfig configures a Shedder.
type ShedderConfig struct {
	MaxInFlight int           // requests admitted at once
	BaseRetry   time.Duration // retry-after hint at light overload; default 50ms
	MaxRetry    time.Duration // cap of the hint; default 5s
	Seed        uint64        // seeds the jitter of the hint
}

// Shedder admits at most MaxInFlight requests at once and rejects the rest
// at once with an *OverloadError instead of queueing them (queueing under
// overload only makes every request late). The retry-after hint grows with
// the number of rejections in the current second, so a retry storm is told
// to back off further, and is jittered (uniform in [hint/2, hint]) so the
// retries do not come back in lockstep. Safe for concurrent use.
type Shedder struct {
	cfg ShedderConfig

	mu       sync.Mutex
	inFlight int
	window   time.Time // start of the current one-second window
	rejects  int       // rejections in the window
	rng      *rand.Rand
}

// NewShedder returns a shedder.
func NewShedder(cfg ShedderConfig) (*Shedder, error) {
	if cfg.MaxInFlight < 1 {
		return nil, fmt.Errorf("security: shedder needs MaxInFlight >= 1 (got %d)", cfg.MaxInFlight)
	}
	if cfg.BaseRetry <= 0 {
		cfg.BaseRetry = 50 * time.Millisecond
	}
	if cfg.MaxRetry < cfg.BaseRetry {
		cfg.MaxRetry = max(5*time.Second, cfg.BaseRetry)
	}
	return &Shedder{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed))}, nil
}

// Acquire admits a request at time now and returns the function that ends
// it, or an *OverloadError.
func (s *Shedder) Acquire(now time.Time) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight < s.cfg.MaxInFlight {
		s.inFlight++
		var once sync.Once
		return func() {
			once.Do(func() {
				s.mu.Lock()
				s.inFlight--
				s.mu.Unlock()
			})
		}, nil
	}
	if now.Sub(s.window) >= time.Second || now.Before(s.window) {
		s.window, s.rejects = now, 0
	}
	s.rejects++
	// The hint doubles each time the rejections in this second pass another
	// MaxInFlight: a storm of retries is pushed further out.
	steps := min((s.rejects-1)/s.cfg.MaxInFlight, 20)
	hint := min(s.cfg.BaseRetry<<steps, s.cfg.MaxRetry)
	hint = hint/2 + time.Duration(s.rng.Int64N(int64(hint/2)+1))
	return nil, &OverloadError{RetryAfter: hint, InFlight: s.inFlight}
}

// InFlight is the number of admitted requests not yet released.
func (s *Shedder) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}
