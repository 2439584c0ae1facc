package core

import (
	"bytes"
	"math"
	"sort"
	"strconv"
)

func hashCommands() []cmdSpec {
	return []cmdSpec{
		{name: "HSET", handler: cmdHSet, arity: -4, first: 1, last: 1},
		{name: "HMSET", handler: cmdHMSet, arity: -4, first: 1, last: 1},
		{name: "HSETNX", handler: cmdHSetNX, arity: 4, first: 1, last: 1},
		{name: "HGET", handler: cmdHGet, arity: 3, readOnly: true, first: 1, last: 1},
		{name: "HMGET", handler: cmdHMGet, arity: -3, readOnly: true, first: 1, last: 1},
		{name: "HDEL", handler: cmdHDel, arity: -3, first: 1, last: 1},
		{name: "HGETALL", handler: cmdHGetAll, arity: 2, readOnly: true, first: 1, last: 1},
		{name: "HINCRBY", handler: cmdHIncrBy, arity: 4, first: 1, last: 1},
		{name: "HINCRBYFLOAT", handler: cmdHIncrByFloat, arity: 4, first: 1, last: 1},
		{name: "HEXISTS", handler: cmdHExists, arity: 3, readOnly: true, first: 1, last: 1},
		{name: "HLEN", handler: cmdHLen, arity: 2, readOnly: true, first: 1, last: 1},
		{name: "HSTRLEN", handler: cmdHStrlen, arity: 3, readOnly: true, first: 1, last: 1},
		{name: "HKEYS", handler: cmdHKeys, arity: 2, readOnly: true, first: 1, last: 1},
		{name: "HVALS", handler: cmdHVals, arity: 2, readOnly: true, first: 1, last: 1},
	}
}

func loadHash(o *op, key []byte) (map[string][]byte, *record, error) {
	r, err := o.loadType(key, TypeHash)
	if err != nil || r == nil {
		return map[string][]byte{}, r, err
	}
	h, err := decodeHash(key, r.payload)
	if err != nil {
		o.corrupt++
	}
	return h, r, err
}

// storeHash writes h at key, deleting the key when h is empty.
func storeHash(o *op, key []byte, h map[string][]byte, old *record) error {
	if len(h) == 0 {
		_, err := o.del(key)
		return err
	}
	return o.putKeepTTL(key, TypeHash, encodeHash(h), old)
}

func sortedFields(h map[string][]byte) []string {
	fs := make([]string, 0, len(h))
	for f := range h {
		fs = append(fs, f)
	}
	sort.Strings(fs)
	return fs
}

func hset(o *op, a [][]byte) (int64, Reply, bool) {
	if len(a)%2 != 1 {
		return 0, ErrorReply(Errorf(CodeErr, "wrong number of arguments for 'hset' command")), false
	}
	h, r, err := loadHash(o, a[0])
	if err != nil {
		return 0, fail(err), false
	}
	added := int64(0)
	for i := 1; i < len(a); i += 2 {
		if _, ok := h[string(a[i])]; !ok {
			added++
		}
		h[string(a[i])] = a[i+1]
	}
	if err := storeHash(o, a[0], h, r); err != nil {
		return 0, fail(err), false
	}
	return added, Reply{}, true
}

func cmdHSet(o *op, a [][]byte) Reply {
	n, r, ok := hset(o, a)
	if !ok {
		return r
	}
	return Int(n)
}

func cmdHMSet(o *op, a [][]byte) Reply {
	_, r, ok := hset(o, a)
	if !ok {
		return r
	}
	return OK()
}

func cmdHSetNX(o *op, a [][]byte) Reply {
	h, r, err := loadHash(o, a[0])
	if err != nil {
		return fail(err)
	}
	if _, ok := h[string(a[1])]; ok {
		return Int(0)
	}
	h[string(a[1])] = a[2]
	if err := storeHash(o, a[0], h, r); err != nil {
		return fail(err)
	}
	return Int(1)
}

func cmdHGet(o *op, a [][]byte) Reply {
	h, _, err := loadHash(o, a[0])
	if err != nil {
		return fail(err)
	}
	v, ok := h[string(a[1])]
	if !ok {
		return Nil()
	}
	return Bulk(bytes.Clone(v))
}

func cmdHMGet(o *op, a [][]byte) Reply {
	h, _, err := loadHash(o, a[0])
	if err != nil {
		return fail(err)
	}
	rs := make([]Reply, len(a)-1)
	for i, f := range a[1:] {
		if v, ok := h[string(f)]; ok {
			rs[i] = Bulk(bytes.Clone(v))
		} else {
			rs[i] = Nil()
		}
	}
	return Array(rs...)
}

func cmdHDel(o *op, a [][]byte) Reply {
	h, r, err := loadHash(o, a[0])
	if err != nil {
		return fail(err)
	}
	n := int64(0)
	for _, f := range a[1:] {
		if _, ok := h[string(f)]; ok {
			delete(h, string(f))
			n++
		}
	}
	if n > 0 {
		if err := storeHash(o, a[0], h, r); err != nil {
			return fail(err)
		}
	}
	return Int(n)
}

// cmdHGetAll replies field, value, ... sorted by field, for determinism.
func cmdHGetAll(o *op, a [][]byte) Reply {
	h, _, err := loadHash(o, a[0])
	if err != nil {
		return fail(err)
	}
	rs := make([]Reply, 0, 2*len(h))
	for _, f := range sortedFields(h) {
		rs = append(rs, bulkStr(f), Bulk(bytes.Clone(h[f])))
	}
	return Array(rs...)
}

func cmdHKeys(o *op, a [][]byte) Reply {
	h, _, err := loadHash(o, a[0])
	if err != nil {
		return fail(err)
	}
	rs := make([]Reply, 0, len(h))
	for _, f := range sortedFields(h) {
		rs = append(rs, bulkStr(f))
	}
	return Array(rs...)
}

func cmdHVals(o *op, a [][]byte) Reply {
	h, _, err := loadHash(o, a[0])
	if err != nil {
		return fail(err)
	}
	rs := make([]Reply, 0, len(h))
	for _, f := range sortedFields(h) {
		rs = append(rs, Bulk(bytes.Clone(h[f])))
	}
	return Array(rs...)
}

func cmdHIncrBy(o *op, a [][]byte) Reply {
	d, e := argInt(a[2])
	if e != nil {
		return ErrorReply(e)
	}
	h, r, err := loadHash(o, a[0])
	if err != nil {
		return fail(err)
	}
	var cur int64
	if v, ok := h[string(a[1])]; ok {
		n, ok := parseInt(v)
		if !ok {
			return ErrorReply(Errorf(CodeErr, "hash value is not an integer"))
		}
		cur = n
	}
	if (d > 0 && cur > math.MaxInt64-d) || (d < 0 && cur < math.MinInt64-d) {
		return ErrorReply(errOverflow)
	}
	cur += d
	h[string(a[1])] = strconv.AppendInt(nil, cur, 10)
	if err := storeHash(o, a[0], h, r); err != nil {
		return fail(err)
	}
	return Int(cur)
}

func cmdHIncrByFloat(o *op, a [][]byte) Reply {
	d, ok := parseFloat(a[2])
	if !ok {
		return ErrorReply(errNotFloat)
	}
	h, r, err := loadHash(o, a[0])
	if err != nil {
		return fail(err)
	}
	var cur float64
	if v, ok := h[string(a[1])]; ok {
		cur, ok = parseFloat(v)
		if !ok {
			return ErrorReply(Errorf(CodeErr, "hash value is not a float"))
		}
	}
	n := cur + d
	if math.IsNaN(n) || math.IsInf(n, 0) {
		return ErrorReply(errNaNInf)
	}
	s := formatFloatHuman(n)
	h[string(a[1])] = []byte(s)
	if err := storeHash(o, a[0], h, r); err != nil {
		return fail(err)
	}
	return bulkStr(s)
}

func cmdHExists(o *op, a [][]byte) Reply {
	h, _, err := loadHash(o, a[0])
	if err != nil {
		return fail(err)
	}
	if _, ok := h[string(a[1])]; ok {
		return Int(1)
	}
	return Int(0)
}

func cmdHLen(o *op, a [][]byte) Reply {
	h, _, err := loadHash(o, a[0])
	if err != nil {
		return fail(err)
	}
	return Int(int64(len(h)))
}

func cmdHStrlen(o *op, a [][]byte) Reply {
	h, _, err := loadHash(o, a[0])
	if err != nil {
		return fail(err)
	}
	return Int(int64(len(h[string(a[1])])))
}
