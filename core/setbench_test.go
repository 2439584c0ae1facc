package core

import (
	"strconv"
	"testing"
)

// Benchmarks of the set commands on sets of a given size (the simulator's
// mixed workload grows its sets with SADD of fresh values, so SADD on a
// set of hundreds of members is its hot path). Run:
//
//	go test -run '^$' -bench 'S(Add|Rem|IsMember|Members)' -benchmem ./core

var setBenchSizes = []int{10, 100, 1000}

// setBenchStore returns a store holding one set "s" of n members
// "member-0".."member-(n-1)".
func setBenchStore(b *testing.B, n int) *Store {
	s := benchStore(b)
	for i := 0; i < n; i++ {
		mustOK(b, s.Apply(t0, Cmd("SADD", "s", "member-"+strconv.Itoa(i))))
	}
	return s
}

// BenchmarkSAdd adds a new member to a set of n members and removes it
// again, so the set keeps its size: each iteration is one SADD and one SREM
// that both change the set.
func BenchmarkSAdd(b *testing.B) {
	for _, n := range setBenchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := setBenchStore(b, n)
			add, rem := Cmd("SADD", "s", "member-new"), Cmd("SREM", "s", "member-new")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if r := s.Apply(t0, add); r.Int != 1 {
					b.Fatal(render(r))
				}
				if r := s.Apply(t0, rem); r.Int != 1 {
					b.Fatal(render(r))
				}
			}
		})
	}
}

// BenchmarkSAddExisting adds a member the set already holds (no write).
func BenchmarkSAddExisting(b *testing.B) {
	for _, n := range setBenchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := setBenchStore(b, n)
			add := Cmd("SADD", "s", "member-"+strconv.Itoa(n/2))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if r := s.Apply(t0, add); r.Int != 0 {
					b.Fatal(render(r))
				}
			}
		})
	}
}

// BenchmarkSIsMember looks up a member of a set of n members.
func BenchmarkSIsMember(b *testing.B) {
	for _, n := range setBenchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := setBenchStore(b, n)
			c := Cmd("SISMEMBER", "s", "member-"+strconv.Itoa(n/2))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if r := s.Apply(t0, c); r.Int != 1 {
					b.Fatal(render(r))
				}
			}
		})
	}
}

// BenchmarkSMembers reads a whole set of n members.
func BenchmarkSMembers(b *testing.B) {
	for _, n := range setBenchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := setBenchStore(b, n)
			c := Cmd("SMEMBERS", "s")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if r := s.Apply(t0, c); len(r.Array) != n {
					b.Fatal(render(r))
				}
			}
		})
	}
}

// BenchmarkSetAlgebra runs SINTER, SUNION, SDIFF and SUNIONSTORE over two
// sets of n members that share half of them ("a" holds member-0..n-1, "b"
// member-n/2..n/2+n-1).
func BenchmarkSetAlgebra(b *testing.B) {
	for _, n := range setBenchSizes {
		s := benchStore(b)
		for i := 0; i < n; i++ {
			mustOK(b, s.Apply(t0, Cmd("SADD", "a", "member-"+strconv.Itoa(i))))
			mustOK(b, s.Apply(t0, Cmd("SADD", "b", "member-"+strconv.Itoa(n/2+i))))
		}
		for _, c := range []struct {
			cmd  Command
			want int // members in the reply, or the stored set's size
		}{
			{Cmd("SINTER", "a", "b"), n - n/2},
			{Cmd("SUNION", "a", "b"), n + n/2},
			{Cmd("SDIFF", "a", "b"), n / 2},
			{Cmd("SUNIONSTORE", "d", "a", "b"), n + n/2},
		} {
			b.Run(c.cmd.Name+"/"+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					r := s.Apply(t0, c.cmd)
					got := len(r.Array)
					if r.Kind == KindInt {
						got = int(r.Int)
					}
					if got != c.want {
						b.Fatalf("%s: %s, want %d members", c.cmd.Name, render(r), c.want)
					}
				}
			})
		}
	}
}
