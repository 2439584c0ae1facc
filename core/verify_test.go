package core

import (
	"errors"
	"fmt"
	"testing"
)

// TestVerifyRecords: paging visits every data record once, and a record
// whose value byte is flipped (only the checksum tells) fails its page
// with ErrCorruption and is counted; a clean store passes.
func TestVerifyRecords(t *testing.T) {
	cases := []struct {
		name    string
		corrupt int // index of the record to damage (-1: none)
		page    int
	}{
		{"clean, page 7", -1, 7},
		{"clean, one page", -1, 100},
		{"first record", 0, 7},
		{"last record", 49, 7},
		{"page boundary", 14, 7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := NewMemEngine()
			s, _ := NewStore(e, Limits{})
			const n = 50
			for i := range n {
				s.Apply(t0, Cmd("SET", fmt.Sprintf("k%02d", i), fmt.Sprint("value", i)))
			}
			s.Apply(t0, Cmd("RPUSH", "list", "a", "b")) // a non-string record too
			if c.corrupt >= 0 {
				k := dataKey([]byte(fmt.Sprintf("k%02d", c.corrupt)))
				raw, _ := e.Get(k)
				raw[len(raw)-5] ^= 0x5a
				b := e.NewBatch()
				b.Set(k, raw)
				b.Commit(false)
			}
			var cursor []byte
			total, pages := 0, 0
			var err error
			for {
				var k int
				cursor, k, err = s.VerifyRecords(cursor, c.page)
				total += k
				pages++
				if err != nil || cursor == nil || pages > 100 {
					break
				}
			}
			if c.corrupt < 0 {
				if err != nil || total != n+1 {
					t.Fatalf("clean store: checked %d records (want %d), err %v; reproduce: go test -run TestVerifyRecords ./core", total, n+1, err)
				}
				return
			}
			// Records sort k00..k49, list: the damaged one follows corrupt good ones.
			if !errors.Is(err, ErrCorruption) || total != c.corrupt {
				t.Fatalf("damaged k%02d: err %v after %d good records; want ErrCorruption after %d; reproduce: go test -run TestVerifyRecords ./core", c.corrupt, err, total, c.corrupt)
			}
			if s.Stats().CorruptionsSeen != 1 {
				t.Fatalf("CorruptionsSeen = %d, want 1", s.Stats().CorruptionsSeen)
			}
		})
	}
}

// BenchmarkVerifyRecords: the CPU of checking one record (100-byte string
// values over the memory engine, pages of 256 as the raft scrub reads):
// ns/op is per record. Pebble's reads come on top.
func BenchmarkVerifyRecords(b *testing.B) {
	e := NewMemEngine()
	s, _ := NewStore(e, Limits{})
	const n = 10000
	val := string(make([]byte, 100))
	for i := range n {
		s.Apply(t0, Cmd("SET", fmt.Sprintf("key:%06d", i), val))
	}
	b.ResetTimer()
	var cursor []byte
	for done := 0; done < b.N; {
		next, k, err := s.VerifyRecords(cursor, min(256, b.N-done))
		if err != nil {
			b.Fatal(err)
		}
		done += k
		cursor = next
	}
}
