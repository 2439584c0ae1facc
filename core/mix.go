package core

// Mix64 is the SplitMix64 finalizer: a bijection on uint64 that spreads
// FNV hashes of similar strings over the whole range. Strategies use it
// for ring positions, anti-entropy leaves and rendezvous weights; its
// output is part of their deterministic placement, so it must not change.
func Mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
