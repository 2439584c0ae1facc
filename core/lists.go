package core

import "bytes"

func listCommands() []cmdSpec {
	return []cmdSpec{
		{name: "LPUSH", handler: cmdLPush, arity: -3, first: 1, last: 1},
		{name: "RPUSH", handler: cmdRPush, arity: -3, first: 1, last: 1},
		{name: "LPUSHX", handler: cmdLPushX, arity: -3, first: 1, last: 1},
		{name: "RPUSHX", handler: cmdRPushX, arity: -3, first: 1, last: 1},
		{name: "LPOP", handler: cmdLPop, arity: -2, first: 1, last: 1},
		{name: "RPOP", handler: cmdRPop, arity: -2, first: 1, last: 1},
		{name: "LRANGE", handler: cmdLRange, arity: 4, readOnly: true, first: 1, last: 1},
		{name: "LLEN", handler: cmdLLen, arity: 2, readOnly: true, first: 1, last: 1},
		{name: "LINDEX", handler: cmdLIndex, arity: 3, readOnly: true, first: 1, last: 1},
		{name: "LSET", handler: cmdLSet, arity: 4, first: 1, last: 1},
		{name: "LREM", handler: cmdLRem, arity: 4, first: 1, last: 1},
		{name: "LTRIM", handler: cmdLTrim, arity: 4, first: 1, last: 1},
	}
}

func loadList(o *op, key []byte) ([][]byte, *record, error) {
	r, err := o.loadType(key, TypeList)
	if err != nil || r == nil {
		return nil, r, err
	}
	l, err := decodeList(key, r.payload)
	if err != nil {
		o.corrupt++
	}
	return l, r, err
}

// storeList writes l at key, deleting the key when l is empty.
func storeList(o *op, key []byte, l [][]byte, old *record) error {
	if len(l) == 0 {
		_, err := o.del(key)
		return err
	}
	return o.putKeepTTL(key, TypeList, encodeList(l), old)
}

func push(o *op, a [][]byte, left, onlyExisting bool) Reply {
	l, r, err := loadList(o, a[0])
	if err != nil {
		return fail(err)
	}
	if onlyExisting && r == nil {
		return Int(0)
	}
	if left {
		nl := make([][]byte, 0, len(l)+len(a)-1)
		for i := len(a) - 1; i >= 1; i-- {
			nl = append(nl, a[i])
		}
		l = append(nl, l...)
	} else {
		l = append(l, a[1:]...)
	}
	if err := storeList(o, a[0], l, r); err != nil {
		return fail(err)
	}
	return Int(int64(len(l)))
}

func cmdLPush(o *op, a [][]byte) Reply  { return push(o, a, true, false) }
func cmdRPush(o *op, a [][]byte) Reply  { return push(o, a, false, false) }
func cmdLPushX(o *op, a [][]byte) Reply { return push(o, a, true, true) }
func cmdRPushX(o *op, a [][]byte) Reply { return push(o, a, false, true) }

// pop: LPOP key [count]. Without count: the element or nil. With count: an
// array of up to count elements, nil when the key is absent.
func pop(o *op, a [][]byte, left bool) Reply {
	if len(a) > 2 {
		return ErrorReply(errSyntax)
	}
	count, withCount := int64(1), len(a) == 2
	if withCount {
		c, ok := parseInt(a[1])
		if !ok || c < 0 {
			return ErrorReply(errNotPosLimt)
		}
		count = c
	}
	l, r, err := loadList(o, a[0])
	if err != nil {
		return fail(err)
	}
	if r == nil {
		return Nil()
	}
	n := int(min(count, int64(len(l))))
	var out [][]byte
	if left {
		out, l = l[:n], l[n:]
	} else {
		out = make([][]byte, 0, n)
		for i := len(l) - 1; i >= len(l)-n; i-- {
			out = append(out, l[i])
		}
		l = l[:len(l)-n]
	}
	if n > 0 {
		if err := storeList(o, a[0], l, r); err != nil {
			return fail(err)
		}
	}
	if !withCount {
		return Bulk(bytes.Clone(out[0]))
	}
	return strArray(out)
}

func cmdLPop(o *op, a [][]byte) Reply { return pop(o, a, true) }
func cmdRPop(o *op, a [][]byte) Reply { return pop(o, a, false) }

func cmdLRange(o *op, a [][]byte) Reply {
	start, e1 := argInt(a[1])
	stop, e2 := argInt(a[2])
	if e1 != nil || e2 != nil {
		return ErrorReply(errNotInt)
	}
	l, _, err := loadList(o, a[0])
	if err != nil {
		return fail(err)
	}
	lo, hi, ok := normRange(start, stop, len(l))
	if !ok {
		return Array()
	}
	return strArray(l[lo : hi+1])
}

func cmdLLen(o *op, a [][]byte) Reply {
	l, _, err := loadList(o, a[0])
	if err != nil {
		return fail(err)
	}
	return Int(int64(len(l)))
}

func listIndex(idx int64, n int) (int, bool) {
	if idx < 0 {
		idx += int64(n)
	}
	if idx < 0 || idx >= int64(n) {
		return 0, false
	}
	return int(idx), true
}

func cmdLIndex(o *op, a [][]byte) Reply {
	idx, e := argInt(a[1])
	if e != nil {
		return ErrorReply(e)
	}
	l, _, err := loadList(o, a[0])
	if err != nil {
		return fail(err)
	}
	i, ok := listIndex(idx, len(l))
	if !ok {
		return Nil()
	}
	return Bulk(bytes.Clone(l[i]))
}

func cmdLSet(o *op, a [][]byte) Reply {
	idx, e := argInt(a[1])
	if e != nil {
		return ErrorReply(e)
	}
	l, r, err := loadList(o, a[0])
	if err != nil {
		return fail(err)
	}
	if r == nil {
		return ErrorReply(Errorf(CodeErr, "no such key"))
	}
	i, ok := listIndex(idx, len(l))
	if !ok {
		return ErrorReply(Errorf(CodeErr, "index out of range"))
	}
	l[i] = a[2]
	if err := storeList(o, a[0], l, r); err != nil {
		return fail(err)
	}
	return OK()
}

// cmdLRem: LREM key count element: count > 0 removes the first count
// matches from the head, count < 0 from the tail, 0 all of them.
func cmdLRem(o *op, a [][]byte) Reply {
	count, e := argInt(a[1])
	if e != nil {
		return ErrorReply(e)
	}
	l, r, err := loadList(o, a[0])
	if err != nil {
		return fail(err)
	}
	limit := count
	if limit < 0 {
		limit = -limit
	}
	removed := int64(0)
	keep := make([]bool, len(l))
	for i := range keep {
		keep[i] = true
	}
	visit := func(i int) {
		if (limit == 0 || removed < limit) && bytes.Equal(l[i], a[2]) {
			keep[i] = false
			removed++
		}
	}
	if count >= 0 {
		for i := range l {
			visit(i)
		}
	} else {
		for i := len(l) - 1; i >= 0; i-- {
			visit(i)
		}
	}
	if removed == 0 {
		return Int(0)
	}
	nl := l[:0]
	for i, e := range l {
		if keep[i] {
			nl = append(nl, e)
		}
	}
	if err := storeList(o, a[0], nl, r); err != nil {
		return fail(err)
	}
	return Int(removed)
}

func cmdLTrim(o *op, a [][]byte) Reply {
	start, e1 := argInt(a[1])
	stop, e2 := argInt(a[2])
	if e1 != nil || e2 != nil {
		return ErrorReply(errNotInt)
	}
	l, r, err := loadList(o, a[0])
	if err != nil {
		return fail(err)
	}
	if r == nil {
		return OK()
	}
	lo, hi, ok := normRange(start, stop, len(l))
	var nl [][]byte
	if ok {
		nl = l[lo : hi+1]
	}
	if len(nl) != len(l) {
		if err := storeList(o, a[0], nl, r); err != nil {
			return fail(err)
		}
	}
	return OK()
}
