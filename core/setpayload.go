package core

import (
	"bytes"
	"encoding/binary"
	"slices"
)

// Set payloads worked on in their stored form. encodeSet writes a set as its
// member count followed by the members, length-prefixed, in strictly
// increasing bytewise order (sort.Strings order). The set commands' hot
// paths (SADD, SREM, SISMEMBER, SMISMEMBER, SCARD, SMEMBERS) read and splice
// that encoding directly instead of decoding it into a map, re-sorting and
// re-encoding it; the bytes they write are the ones encodeSet would write for
// the same set (TestSetSpliceMatchesEncoder checks it), so stored data,
// snapshots and simulator histories do not change.

// setPayload is a set payload checked to be canonical: what encodeSet
// writes.
type setPayload struct {
	n    int    // number of members
	body []byte // the length-prefixed members, after the count
}

// parseSetPayload checks p in one pass. It returns an ErrCorruption error,
// the same one decodeSet returns, when p does not parse, and canonical=false
// with a nil error when p parses but its members are not strictly increasing
// (a payload encodeSet cannot have written); callers then take the map path,
// which reads such a payload as it always did.
func parseSetPayload(key, p []byte) (s setPayload, canonical bool, err error) {
	r := payloadReader{b: p}
	n := r.count()
	body := r.b
	canonical = true
	var prev []byte
	for i := 0; i < n && !r.bad; i++ {
		var m []byte
		if b := r.b; len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
			// The common one-byte length prefix (always minimal), read
			// directly as setIter.next does.
			l := int(b[0])
			m, r.b = b[1:1+l:1+l], b[1+l:]
		} else {
			m = r.bytes()
		}
		if i > 0 && canonical && bytes.Compare(prev, m) >= 0 {
			canonical = false
		}
		prev = m
	}
	if r.bad || len(r.b) != 0 {
		return setPayload{}, false, corruptf(key, "bad list payload")
	}
	return setPayload{n: n, body: body}, canonical, nil
}

// setIter walks a checked setPayload's members in order.
type setIter struct {
	body []byte
	off  int // offset in body of the next member's length prefix
}

func (s setPayload) iter() setIter { return setIter{body: s.body} }

// next returns the next member; ok is false after the last one. The member
// aliases the payload. The payload was checked by parseSetPayload, so the
// prefixes are minimal uvarints and the lengths in range.
func (it *setIter) next() (m []byte, ok bool) {
	b := it.body[it.off:]
	if len(b) == 0 {
		return nil, false
	}
	if n := int(b[0]); n < 0x80 { // the common one-byte length
		it.off += 1 + n
		return b[1 : 1+n : 1+n], true
	}
	r := payloadReader{b: b}
	m = r.bytes()
	it.off += len(b) - len(r.b)
	return m, true
}

// contains reports whether m is a member (a linear scan that stops at the
// first member not below m).
func (s setPayload) contains(m []byte) bool {
	it := s.iter()
	for x, ok := it.next(); ok; x, ok = it.next() {
		switch c := bytes.Compare(x, m); {
		case c == 0:
			return true
		case c > 0:
			return false
		}
	}
	return false
}

// sortedUnique returns ms sorted bytewise without duplicates, without
// reordering ms itself (it is the caller's command).
func sortedUnique(ms [][]byte) [][]byte {
	if len(ms) <= 1 {
		return ms
	}
	out := slices.Clone(ms)
	slices.SortFunc(out, bytes.Compare)
	return slices.CompactFunc(out, bytes.Equal)
}

// spliceSet returns the payload of s with the members ms (sorted, unique:
// see sortedUnique) added (add) or removed, and how many members that
// changed. When nothing changes it returns a nil payload and allocates
// nothing. The result is byte-identical to encodeSet of the changed set: the
// merge keeps the members in strictly increasing order, and the count and
// length prefixes are the same minimal uvarints.
func spliceSet(s setPayload, ms [][]byte, add bool) (payload []byte, changed int) {
	// The first walk counts the changes and sizes the result; the second
	// writes it.
	changed, bodyLen := spliceWalk(s, ms, add, nil)
	if changed == 0 {
		return nil, 0
	}
	n := s.n - changed
	if add {
		n = s.n + changed
	}
	if n == 0 {
		return []byte{}, changed
	}
	out := make([]byte, 0, uvarintLen(uint64(n))+bodyLen)
	out = binary.AppendUvarint(out, uint64(n))
	spliceWalk(s, ms, add, &out)
	return out, changed
}

// spliceWalk merges s's members with ms in order, appending the result's
// members to *out when out is not nil: unchanged runs of stored members are
// copied as they are (their prefixes are already minimal), new members are
// encoded. It returns how many members change and the length of the
// result's body (the members, without the count).
func spliceWalk(s setPayload, ms [][]byte, add bool, out *[]byte) (changed, bodyLen int) {
	bodyLen = len(s.body)
	run := 0 // start in s.body of the stored members not yet copied to *out
	flush := func(end int) {
		if out != nil {
			*out = append(*out, s.body[run:end]...)
		}
	}
	it := s.iter()
	at := it.off // offset of cur
	cur, have := it.next()
	for j := 0; have || j < len(ms); {
		c := -1 // the stored member cur comes first
		switch {
		case !have:
			c = 1
		case j < len(ms):
			c = bytes.Compare(cur, ms[j])
		}
		switch {
		case c < 0: // stored, not in ms: kept (stays in the run)
			at = it.off
			cur, have = it.next()
		case c == 0: // stored and in ms: kept by SADD, dropped by SREM
			if !add {
				changed++
				bodyLen -= it.off - at
				flush(at)
				run = it.off
			}
			at = it.off
			cur, have = it.next()
			j++
		default: // in ms, not stored: added by SADD before cur
			if add {
				changed++
				bodyLen += uvarintLen(uint64(len(ms[j]))) + len(ms[j])
				if out != nil {
					flush(at)
					run = at
					*out = appendBytes(*out, ms[j])
				}
			}
			j++
		}
	}
	flush(len(s.body))
	return changed, bodyLen
}

// mergeSets computes the intersection ('i'), union ('u') or difference
// ('d': the first set minus the others) of checked payloads in one merge of
// their sorted members: the result comes out in strictly increasing order,
// as encodeSet would order it, without a map or a sort. size is the total
// length of the members. The members alias the payloads.
func mergeSets(sets []setPayload, kind byte) (ms [][]byte, size int) {
	its := make([]setIter, len(sets))
	heads := make([][]byte, len(sets))
	have := make([]bool, len(sets))
	for i, s := range sets {
		its[i] = s.iter()
		heads[i], have[i] = its[i].next()
	}
	emit := func(m []byte) {
		ms = append(ms, m)
		size += len(m)
	}
	// skipBelow advances set j to its first member not below m and reports
	// whether that member is m.
	skipBelow := func(j int, m []byte) bool {
		for have[j] {
			switch c := bytes.Compare(heads[j], m); {
			case c == 0:
				return true
			case c > 0:
				return false
			}
			heads[j], have[j] = its[j].next()
		}
		return false
	}
	switch kind {
	case 'u':
		for {
			var min []byte
			any := false // the empty member is a member: track presence apart
			for j := range heads {
				if have[j] && (!any || bytes.Compare(heads[j], min) < 0) {
					min, any = heads[j], true
				}
			}
			if !any {
				return ms, size
			}
			emit(min)
			for j := range heads {
				if have[j] && bytes.Equal(heads[j], min) {
					heads[j], have[j] = its[j].next()
				}
			}
		}
	case 'i':
		for ; have[0]; heads[0], have[0] = its[0].next() {
			in := true
			for j := 1; j < len(sets) && in; j++ {
				in = skipBelow(j, heads[0])
				if !in && !have[j] {
					return ms, size // set j has nothing left to meet
				}
			}
			if in {
				emit(heads[0])
			}
		}
	case 'd':
		for ; have[0]; heads[0], have[0] = its[0].next() {
			out := false
			for j := 1; j < len(sets) && !out; j++ {
				out = skipBelow(j, heads[0])
			}
			if !out {
				emit(heads[0])
			}
		}
	}
	return ms, size
}

// encodeSortedSet encodes members in strictly increasing order (size bytes
// in all) as a set payload: the bytes encodeSet writes for the same set.
func encodeSortedSet(ms [][]byte, size int) []byte {
	n := uvarintLen(uint64(len(ms))) + size
	for _, m := range ms {
		n += uvarintLen(uint64(len(m)))
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(ms)))
	for _, m := range ms {
		b = appendBytes(b, m)
	}
	return b
}
