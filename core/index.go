package core

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
)

func indexCommands() []cmdSpec {
	return []cmdSpec{
		{name: "IDX.CREATE", handler: cmdIdxCreate, arity: 10},
		{name: "IDX.DROP", handler: cmdIdxDrop, arity: 2},
		{name: "IDX.QUERY", handler: cmdIdxQuery, arity: -4, readOnly: true},
		{name: "IDX.LIST", handler: cmdIdxList, arity: 1, readOnly: true},
	}
}

// indexDef is a secondary index on one field of the hashes whose keys
// start with prefix. Entries live at
//
//	'i' + name + 0x00 + encoded field value + key
//
// so that an index scan returns keys ordered by (value, key). Numbers are
// encoded as 8 order-preserving bytes (a hash whose field does not parse
// as a number is left out of a number index); strings escape 0x00 as
// 0x00 0xff and end with 0x00 0x01, which keeps their byte order.
type indexDef struct {
	name   string
	prefix []byte
	field  []byte
	number bool
}

// Index definition format, under engine key 'm' + "idx/" + name: a flag
// byte (2, or 3 for a number index), the name, prefix and field (each
// uvarint length, bytes), then 4 bytes little-endian CRC32C of the engine
// key followed by everything before it (the records' scheme). Builds before
// session 6 wrote flag 0 or 1 and no checksum; decodeIndexDef still reads
// that form, unchecked, so their data directories open.
const (
	idxFlagLegacy = 0 // +1: number index; no checksum
	idxFlagSealed = 2 // +1: number index; CRC32C trailer
)

func encodeIndexDef(key []byte, d *indexDef) []byte {
	b := []byte{idxFlagSealed}
	if d.number {
		b[0]++
	}
	b = appendBytes(b, []byte(d.name))
	b = appendBytes(b, d.prefix)
	b = appendBytes(b, d.field)
	return seal(b, 0, keyCRC(key))
}

// decodeIndexDef reads the definition stored under engine key key, in
// either form; a damaged one is an error wrapping ErrCorruption.
func decodeIndexDef(key, b []byte) (*indexDef, error) {
	if len(b) == 0 || b[0] > idxFlagSealed+1 {
		return nil, fmt.Errorf("index definition %q: bad flag: %w", key, ErrCorruption)
	}
	body := b[1:]
	if b[0] >= idxFlagSealed {
		if len(b) < 5 {
			return nil, fmt.Errorf("index definition %q: %d bytes: %w", key, len(b), ErrCorruption)
		}
		sealed, got, want := unseal(b, keyCRC(key))
		if got != want {
			return nil, fmt.Errorf("index definition %q: checksum %08x, want %08x: %w", key, got, want, ErrCorruption)
		}
		body = sealed[1:]
	}
	r := payloadReader{b: body}
	d := &indexDef{number: b[0]&1 == 1}
	d.name = string(r.bytes())
	d.prefix = bytes.Clone(r.bytes())
	d.field = bytes.Clone(r.bytes())
	if r.bad || len(r.b) != 0 {
		return nil, fmt.Errorf("index definition %q: bad encoding: %w", key, ErrCorruption)
	}
	return d, nil
}

func (d *indexDef) entryPrefix() []byte {
	b := append([]byte{pfxIndex}, d.name...)
	return append(b, 0)
}

// encodeNumber maps a float64 to 8 bytes whose byte order is numeric order.
func encodeNumber(f float64) []byte {
	if f == 0 {
		f = 0 // -0 and +0 index alike
	}
	u := math.Float64bits(f)
	if u&(1<<63) != 0 {
		u = ^u
	} else {
		u |= 1 << 63
	}
	return binary.BigEndian.AppendUint64(nil, u)
}

func encodeIndexString(s []byte) []byte {
	b := make([]byte, 0, len(s)+2)
	for _, c := range s {
		b = append(b, c)
		if c == 0 {
			b = append(b, 0xff)
		}
	}
	return append(b, 0, 1)
}

// encodeValue encodes a field value for the index; ok is false when the
// value cannot be indexed (a non-number in a number index).
func (d *indexDef) encodeValue(v []byte) ([]byte, bool) {
	if d.number {
		f, ok := parseFloat(v)
		if !ok {
			return nil, false
		}
		return encodeNumber(f), true
	}
	return encodeIndexString(v), true
}

// entryKeyOf extracts the user key from an entry suffix (after the prefix).
func (d *indexDef) keyOf(suffix []byte) ([]byte, bool) {
	if d.number {
		if len(suffix) < 8 {
			return nil, false
		}
		return suffix[8:], true
	}
	for i := 0; i+1 < len(suffix); i++ {
		if suffix[i] == 0 {
			if suffix[i+1] == 1 {
				return suffix[i+2:], true
			}
			i++ // escaped 0x00 0xff
		}
	}
	return nil, false
}

// fieldOf returns the indexed field's encoded value in a record, if any.
func (d *indexDef) fieldOf(key []byte, r *record) ([]byte, bool, error) {
	if r == nil || r.typ != TypeHash {
		return nil, false, nil
	}
	h, err := decodeHash(key, r.payload)
	if err != nil {
		return nil, false, err
	}
	v, ok := h[string(d.field)]
	if !ok {
		return nil, false, nil
	}
	ev, ok := d.encodeValue(v)
	return ev, ok, nil
}

// indexDefs returns the indexes as the op sees them, sorted by name.
func (o *op) indexDefs() []*indexDef {
	if len(o.s.indexes) == 0 && len(o.idxChanges) == 0 {
		return nil
	}
	m := map[string]*indexDef{}
	for n, d := range o.s.indexes {
		m[n] = d
	}
	for n, d := range o.idxChanges {
		if d == nil {
			delete(m, n)
		} else {
			m[n] = d
		}
	}
	out := make([]*indexDef, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// indexUpdate keeps every index on key's prefix in step with a write of key
// from old to nw (either may be nil), in the same op, so in the same batch.
func (s *Store) indexUpdate(o *op, key []byte, old, nw *record) error {
	for _, d := range o.indexDefs() {
		if !bytes.HasPrefix(key, d.prefix) {
			continue
		}
		ov, ook, err := d.fieldOf(key, old)
		if err != nil {
			o.corrupt++
			return err
		}
		nv, nok, err := d.fieldOf(key, nw)
		if err != nil {
			return err
		}
		if ook == nok && bytes.Equal(ov, nv) {
			continue
		}
		p := d.entryPrefix()
		if ook {
			o.delete(append(append(bytes.Clone(p), ov...), key...))
		}
		if nok {
			o.set(append(append(bytes.Clone(p), nv...), key...), nil)
		}
	}
	return nil
}

func validIndexName(n []byte) bool {
	return len(n) > 0 && len(n) <= 256 && bytes.IndexByte(n, 0) < 0
}

// cmdIdxCreate: IDX.CREATE name ON HASH PREFIX p FIELD f TYPE string|number.
// Back-fills the index from existing hashes in the same batch.
func cmdIdxCreate(o *op, a [][]byte) Reply {
	if upper(a[1]) != "ON" || upper(a[2]) != "HASH" || upper(a[3]) != "PREFIX" || upper(a[5]) != "FIELD" || upper(a[7]) != "TYPE" {
		return ErrorReply(errSyntax)
	}
	if !validIndexName(a[0]) {
		return ErrorReply(Errorf(CodeErr, "invalid index name"))
	}
	d := &indexDef{name: string(a[0]), prefix: bytes.Clone(a[4]), field: bytes.Clone(a[6])}
	switch upper(a[8]) {
	case "STRING":
	case "NUMBER":
		d.number = true
	default:
		return ErrorReply(Errorf(CodeErr, "index TYPE must be string or number"))
	}
	for _, x := range o.indexDefs() {
		if x.name == d.name {
			return ErrorReply(Errorf(CodeErr, "index %s already exists", quoteArg(a[0])))
		}
	}
	// Back-fill.
	it := o.iter(dataKey(d.prefix), prefixEnd(dataKey(d.prefix)))
	p := d.entryPrefix()
	for ; it.Valid(); it.Next() {
		key := bytes.Clone(it.key[1:])
		r, err := decodeRecord(key, it.val)
		if err != nil {
			o.corrupt++
			it.Close()
			return fail(err)
		}
		v, ok, err := d.fieldOf(key, r)
		if err != nil {
			o.corrupt++
			it.Close()
			return fail(err)
		}
		if ok {
			o.set(append(append(bytes.Clone(p), v...), key...), nil)
		}
	}
	if err := it.Close(); err != nil {
		return fail(err)
	}
	o.setIndex(d.name, d)
	return OK()
}

func (o *op) setIndex(name string, d *indexDef) {
	if o.idxChanges == nil {
		o.idxChanges = map[string]*indexDef{}
	}
	o.idxChanges[name] = d
	if d == nil {
		o.delete(metaKey(metaIndexPfx + name))
	} else {
		k := metaKey(metaIndexPfx + name)
		o.set(k, encodeIndexDef(k, d))
	}
}

func (o *op) findIndex(name []byte) *indexDef {
	for _, d := range o.indexDefs() {
		if d.name == string(name) {
			return d
		}
	}
	return nil
}

func cmdIdxDrop(o *op, a [][]byte) Reply {
	d := o.findIndex(a[0])
	if d == nil {
		return Int(0)
	}
	p := d.entryPrefix()
	it := o.iter(p, prefixEnd(p))
	var doomed [][]byte
	for ; it.Valid(); it.Next() {
		doomed = append(doomed, bytes.Clone(it.key))
	}
	if err := it.Close(); err != nil {
		return fail(err)
	}
	for _, k := range doomed {
		o.delete(k)
	}
	o.setIndex(d.name, nil)
	return Int(1)
}

func cmdIdxList(o *op, a [][]byte) Reply {
	var rs []Reply
	for _, d := range o.indexDefs() {
		t := "string"
		if d.number {
			t = "number"
		}
		rs = append(rs, Array(bulkStr(d.name), Bulk(bytes.Clone(d.prefix)), Bulk(bytes.Clone(d.field)), bulkStr(t)))
	}
	return Array(rs...)
}

// cmdIdxQuery: IDX.QUERY name EQ value [LIMIT n] [CURSOR c]
//
//	| IDX.QUERY name RANGE min max [LIMIT n] [CURSOR c]
//
// replies [next-cursor, [keys]] ordered by (field value, key). RANGE bounds
// use ZRANGEBYSCORE syntax for number indexes ("(1.5", "-inf", "+inf") and
// ZRANGEBYLEX syntax for string indexes ("[a", "(a", "-", "+"). The cursor
// is opaque; pass "" to start; "" comes back when the query is complete.
func cmdIdxQuery(o *op, a [][]byte) Reply {
	d := o.findIndex(a[0])
	if d == nil {
		return ErrorReply(Errorf(CodeErr, "no such index %s", quoteArg(a[0])))
	}
	p := d.entryPrefix()
	var lo, hi []byte // entry bounds, [lo, hi)
	var rest [][]byte
	switch upper(a[1]) {
	case "EQ":
		if len(a) < 3 {
			return ErrorReply(errSyntax)
		}
		v, ok := d.encodeValue(a[2])
		if !ok {
			return ErrorReply(errNotFloat)
		}
		lo = append(bytes.Clone(p), v...)
		hi = prefixEnd(lo)
		rest = a[3:]
	case "RANGE":
		if len(a) < 4 {
			return ErrorReply(errSyntax)
		}
		var ok bool
		lo, hi, ok = d.rangeBounds(p, a[2], a[3])
		if !ok {
			if d.number {
				return ErrorReply(Errorf(CodeErr, "min or max is not a float"))
			}
			return ErrorReply(Errorf(CodeErr, "min or max not valid string range item"))
		}
		rest = a[4:]
	default:
		return ErrorReply(errSyntax)
	}
	limit := defaultScanCount
	var cursor []byte
	for i := 0; i < len(rest); i += 2 {
		if i+1 >= len(rest) {
			return ErrorReply(errSyntax)
		}
		switch upper(rest[i]) {
		case "LIMIT":
			v, ok := parseInt(rest[i+1])
			if !ok || v <= 0 {
				return ErrorReply(errNotPosLimt)
			}
			limit = int(min(v, maxScanCount))
		case "CURSOR":
			cursor = rest[i+1]
		default:
			return ErrorReply(errSyntax)
		}
	}
	if len(cursor) > 0 {
		c := append(append(bytes.Clone(p), cursor...), 0)
		if bytes.Compare(c, lo) > 0 {
			lo = c
		}
	}
	var keys [][]byte
	var next, lastSuffix []byte
	if hi == nil || bytes.Compare(lo, hi) < 0 {
		it := o.iter(lo, hi)
		for ; it.Valid(); it.Next() {
			suffix := it.key[len(p):]
			key, ok := d.keyOf(suffix)
			if !ok {
				o.corrupt++
				it.Close()
				return fail(corruptf(it.key, "bad index entry"))
			}
			r, err := o.load(key)
			if err != nil {
				it.Close()
				return fail(err)
			}
			if r == nil {
				continue // expired, not yet swept
			}
			if len(keys) == limit {
				next = lastSuffix
				break
			}
			keys = append(keys, bytes.Clone(key))
			lastSuffix = bytes.Clone(suffix)
		}
		if err := it.Close(); err != nil {
			return fail(err)
		}
	}
	return Array(Bulk(next), strArray(keys))
}

// rangeBounds turns RANGE min max into entry bounds [lo, hi).
func (d *indexDef) rangeBounds(p, minArg, maxArg []byte) (lo, hi []byte, ok bool) {
	if d.number {
		mn, ok1 := parseScoreBound(minArg)
		mx, ok2 := parseScoreBound(maxArg)
		if !ok1 || !ok2 {
			return nil, nil, false
		}
		lo = append(bytes.Clone(p), encodeNumber(mn.v)...)
		if mn.excl {
			lo = prefixEnd(lo)
		}
		hi = append(bytes.Clone(p), encodeNumber(mx.v)...)
		if !mx.excl {
			hi = prefixEnd(hi)
		}
		if lo == nil || hi == nil { // cannot happen for finite prefixes
			return nil, nil, false
		}
		return lo, hi, true
	}
	mn, ok1 := parseLexBound(minArg)
	mx, ok2 := parseLexBound(maxArg)
	if !ok1 || !ok2 {
		return nil, nil, false
	}
	switch {
	case mn.ninf:
		lo = bytes.Clone(p)
	case mn.inf:
		return p, p, true // empty
	default:
		lo = append(bytes.Clone(p), encodeIndexString([]byte(mn.v))...)
		if mn.excl {
			lo = prefixEnd(lo) // past every key with exactly this value
		}
	}
	switch {
	case mx.inf:
		hi = prefixEnd(p)
	case mx.ninf:
		return p, p, true
	default:
		hi = append(bytes.Clone(p), encodeIndexString([]byte(mx.v))...)
		if !mx.excl {
			hi = prefixEnd(hi)
		}
	}
	return lo, hi, true
}
