package core

import "sort"

func setCommands() []cmdSpec {
	return []cmdSpec{
		{name: "SADD", handler: cmdSAdd, arity: -3, first: 1, last: 1},
		{name: "SREM", handler: cmdSRem, arity: -3, first: 1, last: 1},
		{name: "SMEMBERS", handler: cmdSMembers, arity: 2, readOnly: true, first: 1, last: 1},
		{name: "SISMEMBER", handler: cmdSIsMember, arity: 3, readOnly: true, first: 1, last: 1},
		{name: "SMISMEMBER", handler: cmdSMIsMember, arity: -3, readOnly: true, first: 1, last: 1},
		{name: "SCARD", handler: cmdSCard, arity: 2, readOnly: true, first: 1, last: 1},
		{name: "SINTER", handler: cmdSInter, arity: -2, readOnly: true, first: 1, last: -1},
		{name: "SUNION", handler: cmdSUnion, arity: -2, readOnly: true, first: 1, last: -1},
		{name: "SDIFF", handler: cmdSDiff, arity: -2, readOnly: true, first: 1, last: -1},
		{name: "SINTERSTORE", handler: cmdSInterStore, arity: -3, first: 1, last: -1},
		{name: "SUNIONSTORE", handler: cmdSUnionStore, arity: -3, first: 1, last: -1},
		{name: "SDIFFSTORE", handler: cmdSDiffStore, arity: -3, first: 1, last: -1},
	}
}

// loadSet returns the set at key (empty when absent) and its record.
func loadSet(o *op, key []byte) (map[string]struct{}, *record, error) {
	r, err := o.loadType(key, TypeSet)
	if err != nil || r == nil {
		return map[string]struct{}{}, r, err
	}
	s, err := decodeSet(key, r.payload)
	if err != nil {
		o.corrupt++
	}
	return s, r, err
}

// storeSet writes s at key, deleting the key when s is empty (empty
// collections disappear).
func storeSet(o *op, key []byte, s map[string]struct{}, old *record) error {
	if len(s) == 0 {
		_, err := o.del(key)
		return err
	}
	return o.putKeepTTL(key, TypeSet, encodeSet(s), old)
}

func sortedMembers(s map[string]struct{}) Reply {
	ms := make([]string, 0, len(s))
	for m := range s {
		ms = append(ms, m)
	}
	sort.Strings(ms)
	rs := make([]Reply, len(ms))
	for i, m := range ms {
		rs[i] = bulkStr(m)
	}
	return Array(rs...)
}

// loadSetPayload loads the set at key in its stored form (empty when
// absent). canonical is false, with a nil error, when the key holds a
// payload encodeSet cannot have written (members out of order or repeated);
// the command then runs on the map path (the ...Map handlers), which reads
// such a payload as it always did.
func loadSetPayload(o *op, key []byte) (s setPayload, r *record, canonical bool, err error) {
	r, err = o.loadType(key, TypeSet)
	if err != nil || r == nil {
		return setPayload{}, r, err == nil, err
	}
	s, canonical, err = parseSetPayload(key, r.payload)
	if err != nil {
		o.corrupt++
	}
	return s, r, canonical, err
}

// setSplice runs SADD (add) or SREM on the stored payload: one merge of the
// sorted arguments into the sorted members, no map and no re-sort.
func setSplice(o *op, a [][]byte, add bool) Reply {
	s, r, canonical, err := loadSetPayload(o, a[0])
	if err != nil {
		return fail(err)
	}
	if !canonical {
		if add {
			return cmdSAddMap(o, a)
		}
		return cmdSRemMap(o, a)
	}
	p, n := spliceSet(s, sortedUnique(a[1:]), add)
	if n == 0 {
		return Int(0)
	}
	if len(p) == 0 { // empty collections disappear
		if _, err := o.del(a[0]); err != nil {
			return fail(err)
		}
	} else if err := o.putKeepTTL(a[0], TypeSet, p, r); err != nil {
		return fail(err)
	}
	return Int(int64(n))
}

func cmdSAdd(o *op, a [][]byte) Reply { return setSplice(o, a, true) }
func cmdSRem(o *op, a [][]byte) Reply { return setSplice(o, a, false) }

// cmdSMembers replies with the members sorted, for determinism (Redis's
// order is unspecified): the stored order. The replies share one copy of
// the members.
func cmdSMembers(o *op, a [][]byte) Reply {
	s, _, canonical, err := loadSetPayload(o, a[0])
	if err != nil {
		return fail(err)
	}
	if !canonical {
		return cmdSMembersMap(o, a)
	}
	buf := make([]byte, 0, len(s.body))
	rs := make([]Reply, 0, s.n)
	it := s.iter()
	for m, ok := it.next(); ok; m, ok = it.next() {
		buf = append(buf, m...)
		rs = append(rs, Bulk(buf[len(buf)-len(m):len(buf):len(buf)]))
	}
	return Array(rs...)
}

func cmdSIsMember(o *op, a [][]byte) Reply {
	s, _, canonical, err := loadSetPayload(o, a[0])
	if err != nil {
		return fail(err)
	}
	if !canonical {
		return cmdSIsMemberMap(o, a)
	}
	if s.contains(a[1]) {
		return Int(1)
	}
	return Int(0)
}

func cmdSMIsMember(o *op, a [][]byte) Reply {
	s, _, canonical, err := loadSetPayload(o, a[0])
	if err != nil {
		return fail(err)
	}
	if !canonical {
		return cmdSMIsMemberMap(o, a)
	}
	rs := make([]Reply, len(a)-1)
	for i, m := range a[1:] {
		if s.contains(m) {
			rs[i] = Int(1)
		} else {
			rs[i] = Int(0)
		}
	}
	return Array(rs...)
}

func cmdSCard(o *op, a [][]byte) Reply {
	s, _, canonical, err := loadSetPayload(o, a[0])
	if err != nil {
		return fail(err)
	}
	if !canonical {
		return cmdSCardMap(o, a)
	}
	return Int(int64(s.n))
}

// The map path: the set decoded into a map. The commands above fall back
// to it for a payload that is not canonical; the set algebra uses it.

func cmdSAddMap(o *op, a [][]byte) Reply {
	s, r, err := loadSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	n := int64(0)
	for _, m := range a[1:] {
		if _, ok := s[string(m)]; !ok {
			s[string(m)] = struct{}{}
			n++
		}
	}
	if n > 0 {
		if err := storeSet(o, a[0], s, r); err != nil {
			return fail(err)
		}
	}
	return Int(n)
}

func cmdSRemMap(o *op, a [][]byte) Reply {
	s, r, err := loadSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	n := int64(0)
	for _, m := range a[1:] {
		if _, ok := s[string(m)]; ok {
			delete(s, string(m))
			n++
		}
	}
	if n > 0 {
		if err := storeSet(o, a[0], s, r); err != nil {
			return fail(err)
		}
	}
	return Int(n)
}

// cmdSMembersMap replies with the members sorted, for determinism (Redis's
// order is unspecified).
func cmdSMembersMap(o *op, a [][]byte) Reply {
	s, _, err := loadSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	return sortedMembers(s)
}

func cmdSIsMemberMap(o *op, a [][]byte) Reply {
	s, _, err := loadSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	if _, ok := s[string(a[1])]; ok {
		return Int(1)
	}
	return Int(0)
}

func cmdSMIsMemberMap(o *op, a [][]byte) Reply {
	s, _, err := loadSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	rs := make([]Reply, len(a)-1)
	for i, m := range a[1:] {
		if _, ok := s[string(m)]; ok {
			rs[i] = Int(1)
		} else {
			rs[i] = Int(0)
		}
	}
	return Array(rs...)
}

func cmdSCardMap(o *op, a [][]byte) Reply {
	s, _, err := loadSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	return Int(int64(len(s)))
}

// setAlgebraMap computes the intersection, union or difference of the sets
// at keys on the map path (the commands fall back to it when a payload is
// not canonical). Every key is type-checked, as in Redis.
func setAlgebraMap(o *op, keys [][]byte, kind byte) (map[string]struct{}, error) {
	sets := make([]map[string]struct{}, len(keys))
	for i, k := range keys {
		s, _, err := loadSet(o, k)
		if err != nil {
			return nil, err
		}
		sets[i] = s
	}
	out := map[string]struct{}{}
	switch kind {
	case 'i':
		for m := range sets[0] {
			in := true
			for _, s := range sets[1:] {
				if _, ok := s[m]; !ok {
					in = false
					break
				}
			}
			if in {
				out[m] = struct{}{}
			}
		}
	case 'u':
		for _, s := range sets {
			for m := range s {
				out[m] = struct{}{}
			}
		}
	case 'd':
		for m := range sets[0] {
			out[m] = struct{}{}
		}
		for _, s := range sets[1:] {
			for m := range s {
				delete(out, m)
			}
		}
	}
	return out, nil
}

// setAlgebra computes the intersection ('i'), union ('u') or difference
// ('d') of the sets at keys on their stored payloads: a merge of sorted
// runs (mergeSets). Every key is loaded, and so type-checked, before any
// is merged, in key order, as on the map path (the same error, the same
// version recorded for the reply). canonical is false, with a nil error,
// when a payload is not canonical: the caller then takes the map path.
// The members alias the loaded payloads.
func setAlgebra(o *op, keys [][]byte, kind byte) (ms [][]byte, size int, canonical bool, err error) {
	sets := make([]setPayload, len(keys))
	for i, k := range keys {
		s, _, c, err := loadSetPayload(o, k)
		if err != nil {
			return nil, 0, false, err
		}
		if !c {
			return nil, 0, false, nil
		}
		sets[i] = s
	}
	ms, size = mergeSets(sets, kind)
	return ms, size, true, nil
}

func setAlgebraCmd(o *op, keys [][]byte, kind byte) Reply {
	ms, size, canonical, err := setAlgebra(o, keys, kind)
	if err != nil {
		return fail(err)
	}
	if !canonical {
		s, err := setAlgebraMap(o, keys, kind)
		if err != nil {
			return fail(err)
		}
		return sortedMembers(s)
	}
	// The replies share one copy of the members (the payloads they alias
	// are the store's).
	buf := make([]byte, 0, size)
	rs := make([]Reply, len(ms))
	for i, m := range ms {
		buf = append(buf, m...)
		rs[i] = Bulk(buf[len(buf)-len(m) : len(buf) : len(buf)])
	}
	return Array(rs...)
}

// setAlgebraStore stores the result at dest (replacing whatever it held,
// dropping its TTL) and replies with its size.
func setAlgebraStore(o *op, dest []byte, keys [][]byte, kind byte) Reply {
	ms, size, canonical, err := setAlgebra(o, keys, kind)
	if err != nil {
		return fail(err)
	}
	n := len(ms)
	var payload []byte
	if canonical {
		if n > 0 {
			payload = encodeSortedSet(ms, size)
		}
	} else {
		s, err := setAlgebraMap(o, keys, kind)
		if err != nil {
			return fail(err)
		}
		if n = len(s); n > 0 {
			payload = encodeSet(s)
		}
	}
	if n == 0 {
		if _, err := o.del(dest); err != nil {
			return fail(err)
		}
		return Int(0)
	}
	if err := o.put(dest, TypeSet, payload, 0); err != nil {
		return fail(err)
	}
	return Int(int64(n))
}

func cmdSInter(o *op, a [][]byte) Reply      { return setAlgebraCmd(o, a, 'i') }
func cmdSUnion(o *op, a [][]byte) Reply      { return setAlgebraCmd(o, a, 'u') }
func cmdSDiff(o *op, a [][]byte) Reply       { return setAlgebraCmd(o, a, 'd') }
func cmdSInterStore(o *op, a [][]byte) Reply { return setAlgebraStore(o, a[0], a[1:], 'i') }
func cmdSUnionStore(o *op, a [][]byte) Reply { return setAlgebraStore(o, a[0], a[1:], 'u') }
func cmdSDiffStore(o *op, a [][]byte) Reply  { return setAlgebraStore(o, a[0], a[1:], 'd') }
