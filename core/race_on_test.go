//go:build race

package core

// raceEnabled: the race detector is on. sync.Pool drops some Puts at
// random under it, so allocation counts of pooled paths are not exact.
const raceEnabled = true
