package raftsim

import (
	"math/rand"
	"sync"
	"unsafe"

	"github.com/lni/goutils/random"
)

// lockedRandLayout mirrors github.com/lni/goutils/random.LockedRand
// (goutils v1.4.0, random/rand.go): { source rand.Source64; mu sync.Mutex }.
// TestSeedElectionRandLayout guards the mirror.
type lockedRandLayout struct {
	source rand.Source64
	mu     sync.Mutex
}

// seedElectionRand re-seeds random.LockGuardedRand, the process-wide source
// Dragonboat draws randomized election timeouts from. It is seeded from
// pid, time and host name at init and has no setter, hence the unsafe
// write. Runs in one process must therefore not overlap.
func seedElectionRand(seed int64) {
	lr := (*lockedRandLayout)(unsafe.Pointer(random.LockGuardedRand))
	lr.mu.Lock()
	lr.source = rand.New(rand.NewSource(seed))
	lr.mu.Unlock()
}
