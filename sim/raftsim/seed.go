package raftsim

import (
	"math/rand"
	"sync"
	"time"
	"unsafe"

	"github.com/dialkv/dialkv/core"

	"github.com/lni/goutils/random"
)

// lockedRandLayout mirrors github.com/lni/goutils/random.LockedRand
// (goutils v1.4.0, random/rand.go): { source rand.Source64; mu sync.Mutex }.
// TestSeedElectionRandLayout guards the mirror.
type lockedRandLayout struct {
	source rand.Source64
	mu     sync.Mutex
}

// seedElectionRand replaces the source of random.LockGuardedRand, the
// process-wide generator Dragonboat draws randomized election timeouts
// (and ReadIndex contexts) from, with instantSource{seed}. It is seeded
// from pid, time and host name at init and has no setter, hence the unsafe
// write. Runs in one process must therefore not overlap.
func seedElectionRand(seed int64) {
	lr := (*lockedRandLayout)(unsafe.Pointer(random.LockGuardedRand))
	lr.mu.Lock()
	lr.source = instantSource{seed: uint64(seed)}
	lr.mu.Unlock()
}

// instantSource answers every draw with a hash of the run's seed and the
// virtual instant of the draw. A stream of draws (a seeded generator)
// would hand its values out in the order the draws come, and the draws of
// one instant come in an order no one controls: one step worker steps a
// NodeHost's shards in Go's random map order (Dragonboat's
// engine.processSteps), so two shards resetting their election timeouts at
// one tick swapped timeouts from run to run (bank seeds 6 and 9 diverged
// so). Keyed by the instant, a draw depends on when it happens only, not
// on how many draws came before or in what order. Draws of one instant
// get the same value: for election timeouts that is harmless (the shards
// of one node are independent groups; the replicas of one shard live on
// different nodes, whose ticks never coincide); ReadIndex contexts of one
// shard on one node at one instant would collide, so one of the two reads
// would time out and be retried, never answered wrongly.
type instantSource struct{ seed uint64 }

var _ rand.Source64 = instantSource{}

func (s instantSource) Uint64() uint64 {
	return core.Mix64(s.seed ^ core.Mix64(uint64(time.Now().UnixNano())))
}

func (s instantSource) Int63() int64 { return int64(s.Uint64() >> 1) }

// Seed does nothing: the source is re-created for every run.
func (s instantSource) Seed(int64) {}
