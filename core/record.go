package core

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
)

// Engine key space. Every engine key starts with a one-byte prefix:
//
//	'd' + user key                      -> record (the key's value)
//	'x' + be64(expire unix ms) + key    -> empty (expiry queue for ExpireStep)
//	'i' + index name + 0x00 + field + key -> empty (secondary index entry)
//	'm' + name                          -> store metadata (version counter, see encodeCounter; index definitions)
const (
	pfxData   = 'd'
	pfxExpiry = 'x'
	pfxIndex  = 'i'
	pfxMeta   = 'm'
)

func dataKey(key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = pfxData
	copy(k[1:], key)
	return k
}

func expiryKey(at int64, key []byte) []byte {
	k := make([]byte, 9+len(key))
	k[0] = pfxExpiry
	binary.BigEndian.PutUint64(k[1:9], uint64(at))
	copy(k[9:], key)
	return k
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil when there is none.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// ValueType is the type of a stored value, as TYPE reports it.
type ValueType uint8

// The value types.
const (
	TypeNone ValueType = iota
	TypeString
	TypeList
	TypeSet
	TypeHash
	TypeZSet
)

func (t ValueType) String() string {
	switch t {
	case TypeString:
		return "string"
	case TypeList:
		return "list"
	case TypeSet:
		return "set"
	case TypeHash:
		return "hash"
	case TypeZSet:
		return "zset"
	}
	return "none"
}

// Record format (all integers little-endian or unsigned varints):
//
//	byte    type | flagTTL (0x80) when the key has an expiry
//	uvarint version
//	[8 bytes expire-at, unix milliseconds, only with flagTTL]
//	payload (type-specific, below)
//	4 bytes CRC32C (Castagnoli) of the user key followed by everything above
//
// Covering the user key in the checksum also catches a record that ended up
// under the wrong key. Payloads:
//
//	string: the bytes
//	list:   uvarint n, then n times (uvarint len, bytes), head first
//	set:    uvarint n, then n members (uvarint len, bytes), sorted
//	hash:   uvarint n, then n times field, value (each uvarint len, bytes), sorted by field
//	zset:   uvarint n, then n times member (uvarint len, bytes) and 8-byte float64 bits, sorted by member
const flagTTL = 0x80

// record is a decoded record header plus its raw payload.
type record struct {
	typ      ValueType
	version  uint64
	expireAt int64 // unix ms; 0 = no expiry
	payload  []byte
}

func encodeRecord(key []byte, r *record) []byte {
	return appendRecord(make([]byte, 0, recordBound(r)), key, r)
}

// recordBound is the most bytes appendRecord appends for r.
func recordBound(r *record) int {
	n := 1 + binary.MaxVarintLen64 + len(r.payload) + 4
	if r.expireAt != 0 {
		n += 8
	}
	return n
}

// appendRecord appends the record r of user key key to b.
func appendRecord(b, key []byte, r *record) []byte {
	from := len(b)
	t := byte(r.typ)
	if r.expireAt != 0 {
		t |= flagTTL
	}
	b = append(b, t)
	b = binary.AppendUvarint(b, r.version)
	if r.expireAt != 0 {
		b = binary.LittleEndian.AppendUint64(b, uint64(r.expireAt))
	}
	b = append(b, r.payload...)
	return seal(b, from, keyCRC(key))
}

func corruptf(key []byte, format string, args ...any) error {
	return fmt.Errorf("record of key %q: %s: %w", key, fmt.Sprintf(format, args...), ErrCorruption)
}

func decodeRecord(key, b []byte) (*record, error) {
	if len(b) < 6 {
		return nil, corruptf(key, "record too short (%d bytes)", len(b))
	}
	body, got, want := unseal(b, keyCRC(key))
	if got != want {
		return nil, corruptf(key, "checksum %08x, want %08x", got, want)
	}
	r := &record{typ: ValueType(body[0] &^ flagTTL)}
	if r.typ < TypeString || r.typ > TypeZSet {
		return nil, corruptf(key, "unknown type %d", r.typ)
	}
	v, n := binary.Uvarint(body[1:])
	if n <= 0 {
		return nil, corruptf(key, "bad version")
	}
	r.version = v
	p := body[1+n:]
	if body[0]&flagTTL != 0 {
		if len(p) < 8 {
			return nil, corruptf(key, "truncated expiry")
		}
		r.expireAt = int64(binary.LittleEndian.Uint64(p))
		p = p[8:]
	}
	r.payload = p
	return r, nil
}

// Version counter format, under engine key 'm' + "counter" (metaCounter):
//
//	8 bytes big-endian counter
//	4 bytes CRC32C (Castagnoli) of the engine key followed by the 8 bytes
//
// the records' scheme, so a flipped bit in the counter is ErrCorruption
// instead of a different counter (versions going backwards or colliding).
// Builds before session 6 wrote the 8 bytes alone; decodeCounter still reads
// that form, unchecked (it has nothing to check against), so a data
// directory or snapshot written by them opens. The next commit that moves
// the counter rewrites it in the checksummed form.
const counterLen, legacyCounterLen = 12, 8

// counterKeyCRC is the CRC32C of the counter's engine key, the start of
// every counter checksum (computed once: the counter moves on every write).
var counterKeyCRC = keyCRC(metaKey(metaCounter))

func encodeCounter(c uint64) []byte { return appendCounter(make([]byte, 0, counterLen), c) }

// appendCounter appends the stored form of counter c to b.
func appendCounter(b []byte, c uint64) []byte {
	from := len(b)
	return seal(binary.BigEndian.AppendUint64(b, c), from, counterKeyCRC)
}

// decodeCounter reads a stored version counter in either form; a value of
// another length or failing its checksum is an error wrapping ErrCorruption.
func decodeCounter(b []byte) (uint64, error) {
	switch len(b) {
	case legacyCounterLen:
		return binary.BigEndian.Uint64(b), nil
	case counterLen:
		if _, got, want := unseal(b, counterKeyCRC); got != want {
			return 0, fmt.Errorf("version counter: checksum %08x, want %08x: %w", got, want, ErrCorruption)
		}
		return binary.BigEndian.Uint64(b), nil
	}
	return 0, fmt.Errorf("version counter of %d bytes: %w", len(b), ErrCorruption)
}

// Payload codecs. Decoders return ErrCorruption-wrapped errors: a payload
// that passed its checksum but does not parse is still a corrupted record.

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type payloadReader struct {
	b   []byte
	bad bool
}

func (r *payloadReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || n != uvarintLen(v) { // overlong encodings are malformed
		r.bad = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *payloadReader) bytes() []byte {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		r.b = nil
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

func (r *payloadReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) { // every element takes at least one byte
		r.bad = true
		r.b = nil
		return 0
	}
	return int(n)
}

func encodeList(l [][]byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(l)))
	for _, e := range l {
		b = appendBytes(b, e)
	}
	return b
}

func decodeList(key, p []byte) ([][]byte, error) {
	r := payloadReader{b: p}
	n := r.count()
	l := make([][]byte, 0, n)
	for i := 0; i < n && !r.bad; i++ {
		l = append(l, r.bytes())
	}
	if r.bad || len(r.b) != 0 {
		return nil, corruptf(key, "bad list payload")
	}
	return l, nil
}

// sets are map[string]struct{} in memory, sorted members on disk.
func encodeSet(s map[string]struct{}) []byte {
	members := make([]string, 0, len(s))
	for m := range s {
		members = append(members, m)
	}
	sort.Strings(members)
	b := binary.AppendUvarint(nil, uint64(len(members)))
	for _, m := range members {
		b = appendBytes(b, []byte(m))
	}
	return b
}

func decodeSet(key, p []byte) (map[string]struct{}, error) {
	l, err := decodeList(key, p)
	if err != nil {
		return nil, err
	}
	s := make(map[string]struct{}, len(l))
	for _, m := range l {
		s[string(m)] = struct{}{}
	}
	return s, nil
}

func encodeHash(h map[string][]byte) []byte {
	fields := make([]string, 0, len(h))
	for f := range h {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	b := binary.AppendUvarint(nil, uint64(len(fields)))
	for _, f := range fields {
		b = appendBytes(b, []byte(f))
		b = appendBytes(b, h[f])
	}
	return b
}

func decodeHash(key, p []byte) (map[string][]byte, error) {
	r := payloadReader{b: p}
	n := r.count()
	h := make(map[string][]byte, n)
	for i := 0; i < n && !r.bad; i++ {
		f := r.bytes()
		v := r.bytes()
		h[string(f)] = v
	}
	if r.bad || len(r.b) != 0 {
		return nil, corruptf(key, "bad hash payload")
	}
	return h, nil
}

func encodeZSet(z map[string]float64) []byte {
	members := make([]string, 0, len(z))
	for m := range z {
		members = append(members, m)
	}
	sort.Strings(members)
	b := binary.AppendUvarint(nil, uint64(len(members)))
	for _, m := range members {
		b = appendBytes(b, []byte(m))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(z[m]))
	}
	return b
}

func decodeZSet(key, p []byte) (map[string]float64, error) {
	r := payloadReader{b: p}
	n := r.count()
	z := make(map[string]float64, n)
	for i := 0; i < n && !r.bad; i++ {
		m := r.bytes()
		if len(r.b) < 8 {
			r.bad = true
			break
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
		r.b = r.b[8:]
		if math.IsNaN(f) {
			r.bad = true
			break
		}
		z[string(m)] = f
	}
	if r.bad || len(r.b) != 0 {
		return nil, corruptf(key, "bad zset payload")
	}
	return z, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
