package raftsim

import (
	"reflect"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lni/goutils/random"
)

// The unsafe mirror of goutils' LockedRand must match its layout.
func TestSeedElectionRandLayout(t *testing.T) {
	real := reflect.TypeOf((*random.LockedRand)(nil)).Elem()
	mine := reflect.TypeOf((*lockedRandLayout)(nil)).Elem()
	if real.NumField() != mine.NumField() || real.Size() != mine.Size() {
		t.Fatalf("goutils random.LockedRand changed: %d fields, %d bytes; mirror has %d, %d",
			real.NumField(), real.Size(), mine.NumField(), mine.Size())
	}
	for i := 0; i < real.NumField(); i++ {
		a, b := real.Field(i), mine.Field(i)
		if a.Name != b.Name || a.Type != b.Type || a.Offset != b.Offset {
			t.Errorf("field %d: goutils %s %v @%d, mirror %s %v @%d", i, a.Name, a.Type, a.Offset, b.Name, b.Type, b.Offset)
		}
	}
	// In a bubble: a draw depends on the seed and the virtual instant
	// only, not on the draws before it or their order.
	var first uint64
	synctest.Test(t, func(t *testing.T) {
		seedElectionRand(42)
		x := random.LockGuardedRand.Uint64()
		if y := random.LockGuardedRand.Uint64(); x != y {
			t.Errorf("two draws at one instant: %d then %d", x, y)
		}
		time.Sleep(time.Nanosecond)
		first = random.LockGuardedRand.Uint64()
		if first == x {
			t.Errorf("draws 1 ns apart are equal (%d)", x)
		}
		seedElectionRand(43)
		if w := random.LockGuardedRand.Uint64(); w == first {
			t.Errorf("seeds 42 and 43 drew the same value (%d)", w)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		seedElectionRand(42)
		random.LockGuardedRand.Uint64() // one draw fewer than before: no matter
		time.Sleep(time.Nanosecond)
		if y := random.LockGuardedRand.Uint64(); y != first {
			t.Errorf("seed 42, same instant, next run: %d, want %d", y, first)
		}
	})
}
