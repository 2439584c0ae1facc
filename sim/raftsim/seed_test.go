package raftsim

import (
	"reflect"
	"testing"

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
	seedElectionRand(42)
	x := random.LockGuardedRand.Uint64()
	seedElectionRand(42)
	if y := random.LockGuardedRand.Uint64(); x != y {
		t.Errorf("re-seeding did not reset the source: %d then %d", x, y)
	}
}
