package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"
)

// TestVersionCounterFormat opens stores whose version counter was stored in
// each form a build wrote, or damaged: the checksummed form and the legacy
// 8-byte form (builds before session 6) open and number the next new key
// above the counter; a flipped bit, a truncated or an extended value fails
// NewStore with an error wrapping ErrCorruption (CORRUPTION, never a
// different counter).
//
// Reproduce: go test ./core -run '^TestVersionCounterFormat$' -count=1
func TestVersionCounterFormat(t *testing.T) {
	legacy := binary.BigEndian.AppendUint64(nil, 41) // as builds before session 6 wrote it
	good := encodeCounter(41)
	flip := func(b []byte, bit int) []byte {
		b = bytes.Clone(b)
		b[bit/8] ^= 1 << (bit % 8)
		return b
	}
	type tc struct {
		name    string
		stored  []byte
		corrupt bool
	}
	tcs := []tc{
		{name: "checksummed", stored: good},
		{name: "legacy 8 bytes", stored: legacy},
		{name: "empty", stored: []byte{}, corrupt: true},
		{name: "truncated to 11 bytes", stored: good[:11], corrupt: true},
		{name: "extended to 13 bytes", stored: append(bytes.Clone(good), 0), corrupt: true},
		{name: "checksum of another key", stored: func() []byte {
			b := bytes.Clone(good[:8])
			return binary.LittleEndian.AppendUint32(b, crcOf([]byte("mcounteR"), b))
		}(), corrupt: true},
	}
	// Every single-bit flip, in the counter and in its checksum.
	for bit := 0; bit < 8*len(good); bit++ {
		tcs = append(tcs, tc{name: fmt.Sprintf("bit %d flipped", bit), stored: flip(good, bit), corrupt: true})
	}
	for _, c := range tcs {
		t.Run(c.name, func(t *testing.T) {
			e := NewMemEngine()
			// A key written before, at the version the counter says.
			b := e.NewBatch()
			b.Set(dataKey([]byte("old")), encodeRecord([]byte("old"), &record{typ: TypeString, version: 41, payload: []byte("v")}))
			b.Set(metaKey(metaCounter), c.stored)
			if err := b.Commit(false); err != nil {
				t.Fatal(err)
			}
			s, err := NewStore(e, Limits{})
			if c.corrupt {
				if !errors.Is(err, ErrCorruption) || AsError(err).Code != CodeCorruption {
					t.Fatalf("NewStore over counter %x: %v (store %v), want an error wrapping ErrCorruption\nreproduce: go test ./core -run '^TestVersionCounterFormat$' -count=1", c.stored, err, s != nil)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewStore over counter %x: %v\nreproduce: go test ./core -run '^TestVersionCounterFormat$' -count=1", c.stored, err)
			}
			want, _ := decodeCounter(c.stored)
			if r := s.Apply(t0, Cmd("SET", "new", "v")); r.Err != nil {
				t.Fatalf("SET: %s", render(r))
			}
			if r := s.Apply(t0, Cmd("VERSION", "new")); r.Int != int64(want)+1 {
				t.Fatalf("new key's version %s over counter %d, want %d\nreproduce: go test ./core -run '^TestVersionCounterFormat$' -count=1", render(r), want, want+1)
			}
			// The write stored the counter checksummed, and it reopens.
			raw, err := e.Get(metaKey(metaCounter))
			if err != nil || !bytes.Equal(raw, encodeCounter(want+1)) || len(raw) != counterLen {
				t.Fatalf("stored counter %x, %v; want %x", raw, err, encodeCounter(want+1))
			}
			s2, err := NewStore(e, Limits{})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			if r := s2.Apply(t0, Cmd("SET", "newer", "v")); r.Err != nil || s2.Apply(t0, Cmd("VERSION", "newer")).Int != int64(want)+2 {
				t.Fatalf("after reopen, a new key's version is not %d", want+2)
			}
		})
	}
}

func crcOf(key, b []byte) uint32 {
	return crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, b)
}

// TestIndexDefFormat opens stores holding an index definition in each form
// a build wrote, or damaged: the checksummed form and the legacy one
// (builds before session 6: flag 0/1, no checksum) load; every single-bit
// flip of the checksummed form, and the definition moved under another
// name, fail NewStore with an error wrapping ErrCorruption.
//
// Reproduce: go test ./core -run '^TestIndexDefFormat$' -count=1
func TestIndexDefFormat(t *testing.T) {
	const repro = "reproduce: go test ./core -run '^TestIndexDefFormat$' -count=1"
	def := &indexDef{name: "byage", prefix: []byte("user:"), field: []byte("age"), number: true}
	key := metaKey(metaIndexPfx + "byage")
	good := encodeIndexDef(key, def)
	legacy := appendBytes(appendBytes(appendBytes([]byte{1}, []byte("byage")), []byte("user:")), []byte("age"))
	type tc struct {
		name    string
		key     []byte
		stored  []byte
		corrupt bool
	}
	tcs := []tc{
		{name: "checksummed", key: key, stored: good},
		{name: "legacy", key: key, stored: legacy},
		{name: "checksummed, under another name", key: metaKey(metaIndexPfx + "byagf"), stored: good, corrupt: true},
		{name: "truncated", key: key, stored: good[:len(good)-1], corrupt: true},
	}
	for bit := 0; bit < 8*len(good); bit++ {
		b := bytes.Clone(good)
		b[bit/8] ^= 1 << (bit % 8)
		tcs = append(tcs, tc{name: fmt.Sprintf("bit %d flipped", bit), key: key, stored: b, corrupt: true})
	}
	for _, c := range tcs {
		t.Run(c.name, func(t *testing.T) {
			e := NewMemEngine()
			b := e.NewBatch()
			b.Set(c.key, c.stored)
			if err := b.Commit(false); err != nil {
				t.Fatal(err)
			}
			s, err := NewStore(e, Limits{})
			if c.corrupt {
				if !errors.Is(err, ErrCorruption) || AsError(err).Code != CodeCorruption {
					t.Fatalf("NewStore over definition %x: %v, want an error wrapping ErrCorruption\n%s", c.stored, err, repro)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewStore over definition %x: %v\n%s", c.stored, err, repro)
			}
			got := s.indexes["byage"]
			if got == nil || got.name != def.name || !bytes.Equal(got.prefix, def.prefix) || !bytes.Equal(got.field, def.field) || got.number != def.number {
				t.Fatalf("loaded definition %+v, want %+v\n%s", got, def, repro)
			}
		})
	}
}
