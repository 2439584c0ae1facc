package core

import (
	"bytes"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// This file holds the model-based property tests: random command sequences
// run against a Store and against a tiny reference model built from Go maps
// and slices, written independently of the Store's code, and every reply is
// compared. Time advances by a drawn amount before each command, so TTLs and
// lazy expiry are exercised too. rapid prints the seed and the failing
// sequence; rerun one with -rapid.seed=N.

type mval struct {
	typ ValueType
	s   string
	l   []string
	set map[string]bool
	h   map[string]string
	z   map[string]float64
	exp int64 // unix ms, 0 = none
	ver uint64
}

type model struct {
	keys    map[string]*mval
	counter uint64
	now     int64
}

func newModel() *model { return &model{keys: map[string]*mval{}} }

func (m *model) clone() *model {
	c := &model{keys: map[string]*mval{}, counter: m.counter, now: m.now}
	for k, v := range m.keys {
		nv := *v
		nv.l = append([]string(nil), v.l...)
		nv.set = map[string]bool{}
		for x := range v.set {
			nv.set[x] = true
		}
		nv.h = map[string]string{}
		for f, x := range v.h {
			nv.h[f] = x
		}
		nv.z = map[string]float64{}
		for x, s := range v.z {
			nv.z[x] = s
		}
		c.keys[k] = &nv
	}
	return c
}

func (m *model) expired(v *mval) bool { return v.exp != 0 && m.now > v.exp }

func (m *model) live(k string) *mval {
	v := m.keys[k]
	if v == nil || m.expired(v) {
		return nil
	}
	return v
}

// write stores v at k with the versioning rules: +1 for a live key,
// counter+1 for a created one.
func (m *model) write(k string, v *mval) {
	old := m.keys[k]
	if old != nil && !m.expired(old) {
		v.ver = old.ver + 1
	} else {
		if old != nil {
			m.counter = max(m.counter, old.ver)
		}
		m.counter++
		v.ver = m.counter
	}
	m.keys[k] = v
}

func (m *model) del(k string) bool {
	old := m.keys[k]
	if old == nil {
		return false
	}
	m.counter = max(m.counter, old.ver)
	delete(m.keys, k)
	return !m.expired(old)
}

// store writes a collection, deleting the key when it is empty.
func (m *model) store(k string, v *mval) {
	n := len(v.l) + len(v.set) + len(v.h) + len(v.z)
	if v.typ != TypeString && n == 0 {
		m.del(k)
		return
	}
	m.write(k, v)
}

func (m *model) sweep() {
	for k, v := range m.keys {
		if m.expired(v) {
			m.del(k)
		}
	}
}

// dump renders the model like Store.Dump.
func (m *model) dump() map[string]string {
	out := map[string]string{}
	for k, v := range m.keys {
		if m.expired(v) {
			continue
		}
		q := strconv.Quote
		var b strings.Builder
		switch v.typ {
		case TypeString:
			b.WriteString("string " + q(v.s))
		case TypeList:
			qs := make([]string, len(v.l))
			for i, e := range v.l {
				qs[i] = q(e)
			}
			b.WriteString("list [" + strings.Join(qs, " ") + "]")
		case TypeSet:
			b.WriteString("set [" + strings.Join(quoteAll(sortedKeys(v.set)), " ") + "]")
		case TypeHash:
			var ps []string
			for _, f := range sortedKeys(v.h) {
				ps = append(ps, q(f)+":"+q(v.h[f]))
			}
			b.WriteString("hash {" + strings.Join(ps, " ") + "}")
		case TypeZSet:
			var ps []string
			for _, e := range sortZSet(v.z) {
				ps = append(ps, q(e.member)+":"+formatFloat(e.score))
			}
			b.WriteString("zset [" + strings.Join(ps, " ") + "]")
		}
		out[k] = b.String()
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = strconv.Quote(x)
	}
	return out
}

func mBulks(s []string) Reply {
	rs := make([]Reply, len(s))
	for i, x := range s {
		rs[i] = bulkStr(x)
	}
	return Array(rs...)
}

func mErr(code Code, msg string) Reply { return ErrorReply(Errorf(code, "%s", msg)) }

var mWrong = ErrorReply(errWrongType)

// typed returns the live value at k if it has type t; wrong reports a
// live value of another type.
func (m *model) typed(k string, t ValueType) (v *mval, wrong bool) {
	v = m.live(k)
	if v != nil && v.typ != t {
		return nil, true
	}
	return v, false
}

func mIndex(i, n int) (int, bool) {
	if i < 0 {
		i += n
	}
	return i, i >= 0 && i < n
}

func mRange(start, stop, n int) []int {
	if start < 0 {
		start += n
	}
	if stop < 0 {
		stop += n
	}
	start = max(start, 0)
	stop = min(stop, n-1)
	var out []int
	for i := start; i <= stop; i++ {
		out = append(out, i)
	}
	return out
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// apply runs one command on the model. Only the commands the generators
// produce are modelled; arguments are known to be well-formed where the
// generator makes them so.
func (m *model) apply(c Command) Reply {
	a := make([]string, len(c.Args))
	for i, x := range c.Args {
		a[i] = string(x)
	}
	switch c.Name {
	case "GET":
		v, wrong := m.typed(a[0], TypeString)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Nil()
		}
		return bulkStr(v.s)
	case "SET":
		old := m.live(a[0])
		var nx, xx, get, keep bool
		var exp int64
		for i := 2; i < len(a); i++ {
			switch a[i] {
			case "NX":
				nx = true
			case "XX":
				xx = true
			case "GET":
				get = true
			case "KEEPTTL":
				keep = true
			case "PX":
				exp = m.now + int64(atoi(a[i+1]))
				i++
			}
		}
		if get && old != nil && old.typ != TypeString {
			return mWrong
		}
		prev := Nil()
		if get && old != nil {
			prev = bulkStr(old.s)
		}
		if (nx && old != nil) || (xx && old == nil) {
			return prev
		}
		if keep && old != nil {
			exp = old.exp
		}
		m.write(a[0], &mval{typ: TypeString, s: a[1], exp: exp})
		if get {
			return prev
		}
		return OK()
	case "CAS":
		old := m.live(a[0])
		var cur uint64
		if old != nil {
			cur = old.ver
		}
		if strconv.FormatUint(cur, 10) != a[1] {
			return ErrorReply(&Error{Code: CodeConditionFailed, Msg: "version of " + a[0] + " is " + strconv.FormatUint(cur, 10) + ", want " + a[1]})
		}
		m.write(a[0], &mval{typ: TypeString, s: a[2]})
		return OK()
	case "VERSION":
		if v := m.live(a[0]); v != nil {
			return Int(int64(v.ver))
		}
		return Int(0)
	case "DEL":
		n := 0
		for _, k := range a {
			if m.del(k) {
				n++
			}
		}
		return Int(int64(n))
	case "EXISTS":
		n := 0
		for _, k := range a {
			if m.live(k) != nil {
				n++
			}
		}
		return Int(int64(n))
	case "TYPE":
		if v := m.live(a[0]); v != nil {
			return Reply{Kind: KindStatus, Str: []byte(v.typ.String())}
		}
		return Reply{Kind: KindStatus, Str: []byte("none")}
	case "INCRBY":
		v, wrong := m.typed(a[0], TypeString)
		if wrong {
			return mWrong
		}
		cur := int64(0)
		if v != nil {
			n, err := strconv.ParseInt(v.s, 10, 64)
			if err != nil || strconv.FormatInt(n, 10) != v.s {
				return ErrorReply(errNotInt)
			}
			cur = n
		}
		d := int64(atoi(a[1]))
		if (d > 0 && cur > math.MaxInt64-d) || (d < 0 && cur < math.MinInt64-d) {
			return ErrorReply(errOverflow)
		}
		nv := &mval{typ: TypeString, s: strconv.FormatInt(cur+d, 10)}
		if v != nil {
			nv.exp = v.exp
		}
		m.write(a[0], nv)
		return Int(cur + d)
	case "APPEND":
		v, wrong := m.typed(a[0], TypeString)
		if wrong {
			return mWrong
		}
		nv := &mval{typ: TypeString, s: a[1]}
		if v != nil {
			nv.s, nv.exp = v.s+a[1], v.exp
		}
		m.write(a[0], nv)
		return Int(int64(len(nv.s)))
	case "GETDEL":
		v, wrong := m.typed(a[0], TypeString)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Nil()
		}
		m.del(a[0])
		return bulkStr(v.s)
	case "MGET":
		rs := make([]Reply, len(a))
		for i, k := range a {
			rs[i] = Nil()
			if v := m.live(k); v != nil && v.typ == TypeString {
				rs[i] = bulkStr(v.s)
			}
		}
		return Array(rs...)
	case "MSETNX":
		for i := 0; i < len(a); i += 2 {
			if m.live(a[i]) != nil {
				return Int(0)
			}
		}
		for i := 0; i < len(a); i += 2 {
			m.write(a[i], &mval{typ: TypeString, s: a[i+1]})
		}
		return Int(1)
	case "PEXPIRE":
		v := m.live(a[0])
		if v == nil {
			return Int(0)
		}
		at := m.now + int64(atoi(a[1]))
		if at <= m.now {
			m.del(a[0])
			return Int(1)
		}
		nv := m.clone().keys[a[0]]
		nv.exp = at
		m.write(a[0], nv)
		return Int(1)
	case "PERSIST":
		v := m.live(a[0])
		if v == nil || v.exp == 0 {
			return Int(0)
		}
		nv := m.clone().keys[a[0]]
		nv.exp = 0
		m.write(a[0], nv)
		return Int(1)
	case "PTTL":
		v := m.live(a[0])
		switch {
		case v == nil:
			return Int(-2)
		case v.exp == 0:
			return Int(-1)
		}
		return Int(v.exp - m.now)
	case "LPUSH", "RPUSH":
		v, wrong := m.typed(a[0], TypeList)
		if wrong {
			return mWrong
		}
		nv := &mval{typ: TypeList}
		if v != nil {
			nv.l, nv.exp = append([]string(nil), v.l...), v.exp
		}
		for _, e := range a[1:] {
			if c.Name == "LPUSH" {
				nv.l = append([]string{e}, nv.l...)
			} else {
				nv.l = append(nv.l, e)
			}
		}
		m.store(a[0], nv)
		return Int(int64(len(nv.l)))
	case "LPOP", "RPOP":
		v, wrong := m.typed(a[0], TypeList)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Nil()
		}
		count := 1
		if len(a) == 2 {
			count = atoi(a[1])
		}
		nv := &mval{typ: TypeList, l: append([]string(nil), v.l...), exp: v.exp}
		var out []string
		for i := 0; i < count && len(nv.l) > 0; i++ {
			if c.Name == "LPOP" {
				out, nv.l = append(out, nv.l[0]), nv.l[1:]
			} else {
				out, nv.l = append(out, nv.l[len(nv.l)-1]), nv.l[:len(nv.l)-1]
			}
		}
		if len(out) > 0 {
			m.store(a[0], nv)
		}
		if len(a) == 1 {
			return bulkStr(out[0])
		}
		return mBulks(out)
	case "LRANGE":
		v, wrong := m.typed(a[0], TypeList)
		if wrong {
			return mWrong
		}
		var out []string
		if v != nil {
			for _, i := range mRange(atoi(a[1]), atoi(a[2]), len(v.l)) {
				out = append(out, v.l[i])
			}
		}
		return mBulks(out)
	case "LINDEX":
		v, wrong := m.typed(a[0], TypeList)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Nil()
		}
		i, ok := mIndex(atoi(a[1]), len(v.l))
		if !ok {
			return Nil()
		}
		return bulkStr(v.l[i])
	case "LSET":
		v, wrong := m.typed(a[0], TypeList)
		if wrong {
			return mWrong
		}
		if v == nil {
			return mErr(CodeErr, "no such key")
		}
		i, ok := mIndex(atoi(a[1]), len(v.l))
		if !ok {
			return mErr(CodeErr, "index out of range")
		}
		nv := &mval{typ: TypeList, l: append([]string(nil), v.l...), exp: v.exp}
		nv.l[i] = a[2]
		m.store(a[0], nv)
		return OK()
	case "LREM":
		v, wrong := m.typed(a[0], TypeList)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Int(0)
		}
		count := atoi(a[1])
		l := append([]string(nil), v.l...)
		removed := 0
		if count >= 0 {
			var out []string
			for _, e := range l {
				if e == a[2] && (count == 0 || removed < count) {
					removed++
					continue
				}
				out = append(out, e)
			}
			l = out
		} else {
			var out []string
			for i := len(l) - 1; i >= 0; i-- {
				if l[i] == a[2] && removed < -count {
					removed++
					continue
				}
				out = append([]string{l[i]}, out...)
			}
			l = out
		}
		if removed > 0 {
			m.store(a[0], &mval{typ: TypeList, l: l, exp: v.exp})
		}
		return Int(int64(removed))
	case "LTRIM":
		v, wrong := m.typed(a[0], TypeList)
		if wrong {
			return mWrong
		}
		if v == nil {
			return OK()
		}
		var out []string
		for _, i := range mRange(atoi(a[1]), atoi(a[2]), len(v.l)) {
			out = append(out, v.l[i])
		}
		if len(out) != len(v.l) {
			m.store(a[0], &mval{typ: TypeList, l: out, exp: v.exp})
		}
		return OK()
	case "LLEN":
		v, wrong := m.typed(a[0], TypeList)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Int(0)
		}
		return Int(int64(len(v.l)))
	case "SADD", "SREM":
		v, wrong := m.typed(a[0], TypeSet)
		if wrong {
			return mWrong
		}
		nv := &mval{typ: TypeSet, set: map[string]bool{}}
		if v != nil {
			nv.exp = v.exp
			for x := range v.set {
				nv.set[x] = true
			}
		}
		n := 0
		for _, x := range a[1:] {
			if c.Name == "SADD" && !nv.set[x] {
				nv.set[x] = true
				n++
			}
			if c.Name == "SREM" && nv.set[x] {
				delete(nv.set, x)
				n++
			}
		}
		if n > 0 {
			m.store(a[0], nv)
		}
		return Int(int64(n))
	case "SMEMBERS":
		v, wrong := m.typed(a[0], TypeSet)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Array()
		}
		return mBulks(sortedKeys(v.set))
	case "SISMEMBER":
		v, wrong := m.typed(a[0], TypeSet)
		if wrong {
			return mWrong
		}
		if v != nil && v.set[a[1]] {
			return Int(1)
		}
		return Int(0)
	case "SCARD":
		v, wrong := m.typed(a[0], TypeSet)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Int(0)
		}
		return Int(int64(len(v.set)))
	case "SINTER", "SUNION", "SDIFF", "SUNIONSTORE":
		keys := a
		if c.Name == "SUNIONSTORE" {
			keys = a[1:]
		}
		var sets []map[string]bool
		for _, k := range keys {
			v, wrong := m.typed(k, TypeSet)
			if wrong {
				return mWrong
			}
			s := map[string]bool{}
			if v != nil {
				s = v.set
			}
			sets = append(sets, s)
		}
		out := map[string]bool{}
		for x := range sets[0] {
			out[x] = true
		}
		for _, s := range sets[1:] {
			switch c.Name {
			case "SINTER":
				for x := range out {
					if !s[x] {
						delete(out, x)
					}
				}
			case "SUNION", "SUNIONSTORE":
				for x := range s {
					out[x] = true
				}
			case "SDIFF":
				for x := range s {
					delete(out, x)
				}
			}
		}
		if c.Name == "SUNIONSTORE" {
			if len(out) == 0 {
				m.del(a[0])
			} else {
				m.write(a[0], &mval{typ: TypeSet, set: out})
			}
			return Int(int64(len(out)))
		}
		return mBulks(sortedKeys(out))
	case "HSET", "HDEL", "HINCRBY":
		v, wrong := m.typed(a[0], TypeHash)
		if wrong {
			return mWrong
		}
		nv := &mval{typ: TypeHash, h: map[string]string{}}
		if v != nil {
			nv.exp = v.exp
			for f, x := range v.h {
				nv.h[f] = x
			}
		}
		n := 0
		switch c.Name {
		case "HSET":
			for i := 1; i < len(a); i += 2 {
				if _, ok := nv.h[a[i]]; !ok {
					n++
				}
				nv.h[a[i]] = a[i+1]
			}
		case "HDEL":
			for _, f := range a[1:] {
				if _, ok := nv.h[f]; ok {
					delete(nv.h, f)
					n++
				}
			}
			if n == 0 {
				return Int(0)
			}
		case "HINCRBY":
			cur := int64(0)
			if x, ok := nv.h[a[1]]; ok {
				p, err := strconv.ParseInt(x, 10, 64)
				if err != nil || strconv.FormatInt(p, 10) != x {
					return mErr(CodeErr, "hash value is not an integer")
				}
				cur = p
			}
			d := int64(atoi(a[2]))
			if (d > 0 && cur > math.MaxInt64-d) || (d < 0 && cur < math.MinInt64-d) {
				return ErrorReply(errOverflow)
			}
			cur += d
			nv.h[a[1]] = strconv.FormatInt(cur, 10)
			m.store(a[0], nv)
			return Int(cur)
		}
		m.store(a[0], nv)
		return Int(int64(n))
	case "HGET":
		v, wrong := m.typed(a[0], TypeHash)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Nil()
		}
		if x, ok := v.h[a[1]]; ok {
			return bulkStr(x)
		}
		return Nil()
	case "HGETALL":
		v, wrong := m.typed(a[0], TypeHash)
		if wrong {
			return mWrong
		}
		var out []string
		if v != nil {
			for _, f := range sortedKeys(v.h) {
				out = append(out, f, v.h[f])
			}
		}
		return mBulks(out)
	case "HLEN":
		v, wrong := m.typed(a[0], TypeHash)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Int(0)
		}
		return Int(int64(len(v.h)))
	case "ZADD", "ZREM", "ZINCRBY":
		v, wrong := m.typed(a[0], TypeZSet)
		if wrong {
			return mWrong
		}
		nv := &mval{typ: TypeZSet, z: map[string]float64{}}
		if v != nil {
			nv.exp = v.exp
			for x, s := range v.z {
				nv.z[x] = s
			}
		}
		switch c.Name {
		case "ZADD":
			n, changed := 0, 0
			for i := 1; i < len(a); i += 2 {
				s, _ := strconv.ParseFloat(a[i], 64)
				cur, ok := nv.z[a[i+1]]
				if !ok {
					n++
				} else if cur != s {
					changed++
				}
				nv.z[a[i+1]] = s
			}
			if n+changed > 0 {
				m.store(a[0], nv)
			}
			return Int(int64(n))
		case "ZREM":
			n := 0
			for _, x := range a[1:] {
				if _, ok := nv.z[x]; ok {
					delete(nv.z, x)
					n++
				}
			}
			if n > 0 {
				m.store(a[0], nv)
			}
			return Int(int64(n))
		default:
			d, _ := strconv.ParseFloat(a[1], 64)
			nv.z[a[2]] += d
			m.store(a[0], nv)
			return bulkStr(formatFloat(nv.z[a[2]]))
		}
	case "ZSCORE":
		v, wrong := m.typed(a[0], TypeZSet)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Nil()
		}
		if s, ok := v.z[a[1]]; ok {
			return bulkStr(formatFloat(s))
		}
		return Nil()
	case "ZRANGE":
		v, wrong := m.typed(a[0], TypeZSet)
		if wrong {
			return mWrong
		}
		var out []string
		if v != nil {
			all := sortZSet(v.z)
			for _, i := range mRange(atoi(a[1]), atoi(a[2]), len(all)) {
				out = append(out, all[i].member, formatFloat(all[i].score))
			}
		}
		return mBulks(out)
	case "ZRANGEBYSCORE":
		v, wrong := m.typed(a[0], TypeZSet)
		if wrong {
			return mWrong
		}
		var out []string
		if v != nil {
			lo, _ := strconv.ParseFloat(a[1], 64)
			hi, _ := strconv.ParseFloat(a[2], 64)
			for _, e := range sortZSet(v.z) {
				if e.score >= lo && e.score <= hi {
					out = append(out, e.member)
				}
			}
		}
		return mBulks(out)
	case "ZRANK":
		v, wrong := m.typed(a[0], TypeZSet)
		if wrong {
			return mWrong
		}
		if v != nil {
			for i, e := range sortZSet(v.z) {
				if e.member == a[1] {
					return Int(int64(i))
				}
			}
		}
		return Nil()
	case "ZCARD":
		v, wrong := m.typed(a[0], TypeZSet)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Int(0)
		}
		return Int(int64(len(v.z)))
	case "ZPOPMIN":
		v, wrong := m.typed(a[0], TypeZSet)
		if wrong {
			return mWrong
		}
		if v == nil {
			return Array()
		}
		count := atoi(a[1])
		all := sortZSet(v.z)
		nv := &mval{typ: TypeZSet, z: map[string]float64{}, exp: v.exp}
		var out []string
		for i, e := range all {
			if i < count {
				out = append(out, e.member, formatFloat(e.score))
			} else {
				nv.z[e.member] = e.score
			}
		}
		if len(out) > 0 {
			m.store(a[0], nv)
		}
		return mBulks(out)
	case "SCAN.PREFIX":
		var keys []string
		for _, k := range sortedKeys(m.keys) {
			if m.live(k) != nil && strings.HasPrefix(k, a[0]) && k > a[1] {
				keys = append(keys, k)
			}
		}
		count := atoi(a[3])
		next := ""
		if len(keys) > count {
			keys = keys[:count]
			next = keys[count-1]
		}
		return Array(bulkStr(next), mBulks(keys))
	}
	panic("model: unmodelled command " + c.Name)
}

// Generators.

var (
	genKey   = rapid.SampledFrom([]string{"a", "b", "c", "h1", "h2"})
	genVal   = rapid.SampledFrom([]string{"", "x", "y", "1", "-2", "10", "9223372036854775807"})
	genElem  = rapid.SampledFrom([]string{"x", "y", "z", "w"})
	genSmall = rapid.IntRange(-4, 4)
	genScore = rapid.SampledFrom([]string{"0", "1", "1.5", "-2", "3"})
)

func drawN(t *rapid.T, g *rapid.Generator[string], lo, hi int, label string) []string {
	n := rapid.IntRange(lo, hi).Draw(t, label+"#")
	out := make([]string, n)
	for i := range out {
		out[i] = g.Draw(t, label)
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

func genStringCmd(t *rapid.T) Command {
	k := genKey.Draw(t, "key")
	switch rapid.IntRange(0, 13).Draw(t, "strcmd") {
	case 0, 1:
		args := []string{k, genVal.Draw(t, "val")}
		for _, opt := range []string{"NX", "XX", "GET", "KEEPTTL"} {
			if rapid.IntRange(0, 4).Draw(t, opt) == 0 {
				if (opt == "XX" && args[len(args)-1] == "NX") || (opt == "KEEPTTL" && contains(args, "PX")) {
					continue
				}
				args = append(args, opt)
			}
		}
		if !contains(args, "KEEPTTL") && rapid.Bool().Draw(t, "px") {
			args = append(args, "PX", itoa(rapid.IntRange(1, 3000).Draw(t, "ms")))
		}
		if contains(args, "NX") && contains(args, "XX") {
			args = args[:2]
		}
		return Cmd("SET", args...)
	case 2:
		return Cmd("GET", k)
	case 3:
		return Cmd("DEL", append([]string{k}, drawN(t, genKey, 0, 2, "key")...)...)
	case 4:
		return Cmd("INCRBY", k, itoa(genSmall.Draw(t, "d")))
	case 5:
		return Cmd("APPEND", k, genVal.Draw(t, "val"))
	case 6:
		return Cmd("GETDEL", k)
	case 7:
		return Cmd("MGET", append([]string{k}, drawN(t, genKey, 0, 3, "key")...)...)
	case 8:
		k2 := genKey.Draw(t, "key2")
		if k2 == k {
			return Cmd("MSETNX", k, "m")
		}
		return Cmd("MSETNX", k, "m", k2, "n")
	case 9:
		return Cmd("PEXPIRE", k, itoa(rapid.IntRange(-10, 3000).Draw(t, "ms")))
	case 10:
		return Cmd("PERSIST", k)
	case 11:
		return Cmd("PTTL", k)
	case 12:
		return Cmd("CAS", k, itoa(rapid.IntRange(0, 8).Draw(t, "ver")), genVal.Draw(t, "val"))
	default:
		return Cmd([]string{"EXISTS", "TYPE", "VERSION"}[rapid.IntRange(0, 2).Draw(t, "which")], k)
	}
}

func contains(s []string, x string) bool {
	for _, e := range s {
		if e == x {
			return true
		}
	}
	return false
}

func genListCmd(t *rapid.T) Command {
	k := genKey.Draw(t, "key")
	switch rapid.IntRange(0, 8).Draw(t, "listcmd") {
	case 0:
		return Cmd("LPUSH", append([]string{k}, drawN(t, genElem, 1, 3, "e")...)...)
	case 1:
		return Cmd("RPUSH", append([]string{k}, drawN(t, genElem, 1, 3, "e")...)...)
	case 2:
		name := []string{"LPOP", "RPOP"}[rapid.IntRange(0, 1).Draw(t, "side")]
		if rapid.Bool().Draw(t, "count") {
			return Cmd(name, k, itoa(rapid.IntRange(0, 3).Draw(t, "n")))
		}
		return Cmd(name, k)
	case 3:
		return Cmd("LRANGE", k, itoa(genSmall.Draw(t, "start")), itoa(genSmall.Draw(t, "stop")))
	case 4:
		return Cmd("LINDEX", k, itoa(genSmall.Draw(t, "i")))
	case 5:
		return Cmd("LSET", k, itoa(genSmall.Draw(t, "i")), genElem.Draw(t, "e"))
	case 6:
		return Cmd("LREM", k, itoa(rapid.IntRange(-2, 2).Draw(t, "n")), genElem.Draw(t, "e"))
	case 7:
		return Cmd("LTRIM", k, itoa(genSmall.Draw(t, "start")), itoa(genSmall.Draw(t, "stop")))
	default:
		return Cmd("LLEN", k)
	}
}

func genSetCmd(t *rapid.T) Command {
	k := genKey.Draw(t, "key")
	switch rapid.IntRange(0, 6).Draw(t, "setcmd") {
	case 0:
		return Cmd("SADD", append([]string{k}, drawN(t, genElem, 1, 3, "e")...)...)
	case 1:
		return Cmd("SREM", append([]string{k}, drawN(t, genElem, 1, 2, "e")...)...)
	case 2:
		return Cmd("SMEMBERS", k)
	case 3:
		return Cmd("SISMEMBER", k, genElem.Draw(t, "e"))
	case 4:
		return Cmd("SCARD", k)
	case 5:
		return Cmd([]string{"SINTER", "SUNION", "SDIFF"}[rapid.IntRange(0, 2).Draw(t, "op")], append([]string{k}, drawN(t, genKey, 1, 2, "key")...)...)
	default:
		return Cmd("SUNIONSTORE", append([]string{k}, drawN(t, genKey, 1, 2, "key")...)...)
	}
}

func genHashCmd(t *rapid.T) Command {
	k := genKey.Draw(t, "key")
	f := rapid.SampledFrom([]string{"f", "g", "n"})
	switch rapid.IntRange(0, 5).Draw(t, "hashcmd") {
	case 0, 1:
		args := []string{k}
		for i, n := 0, rapid.IntRange(1, 2).Draw(t, "pairs"); i < n; i++ {
			args = append(args, f.Draw(t, "field"), genVal.Draw(t, "val"))
		}
		return Cmd("HSET", args...)
	case 2:
		return Cmd("HDEL", append([]string{k}, drawN(t, f, 1, 2, "field")...)...)
	case 3:
		return Cmd("HGET", k, f.Draw(t, "field"))
	case 4:
		return Cmd("HINCRBY", k, f.Draw(t, "field"), itoa(genSmall.Draw(t, "d")))
	default:
		return Cmd([]string{"HGETALL", "HLEN"}[rapid.IntRange(0, 1).Draw(t, "which")], k)
	}
}

func genZSetCmd(t *rapid.T) Command {
	k := genKey.Draw(t, "key")
	switch rapid.IntRange(0, 8).Draw(t, "zcmd") {
	case 0, 1:
		args := []string{k}
		for i, n := 0, rapid.IntRange(1, 3).Draw(t, "pairs"); i < n; i++ {
			args = append(args, genScore.Draw(t, "score"), genElem.Draw(t, "m"))
		}
		return Cmd("ZADD", args...)
	case 2:
		return Cmd("ZREM", append([]string{k}, drawN(t, genElem, 1, 2, "m")...)...)
	case 3:
		return Cmd("ZINCRBY", k, genScore.Draw(t, "d"), genElem.Draw(t, "m"))
	case 4:
		return Cmd("ZSCORE", k, genElem.Draw(t, "m"))
	case 5:
		return Cmd("ZRANGE", k, itoa(genSmall.Draw(t, "start")), itoa(genSmall.Draw(t, "stop")), "WITHSCORES")
	case 6:
		return Cmd("ZRANGEBYSCORE", k, genScore.Draw(t, "lo"), genScore.Draw(t, "hi"))
	case 7:
		return Cmd("ZRANK", k, genElem.Draw(t, "m"))
	default:
		return Cmd([]string{"ZCARD", "ZPOPMIN"}[rapid.IntRange(0, 1).Draw(t, "which")], k, "2")
	}
}

func genScanCmd(t *rapid.T) Command {
	prefix := rapid.SampledFrom([]string{"", "h", "a", "z"}).Draw(t, "prefix")
	cursor := rapid.SampledFrom([]string{"", "a", "b", "h1"}).Draw(t, "cursor")
	return Cmd("SCAN.PREFIX", prefix, cursor, "COUNT", itoa(rapid.IntRange(1, 4).Draw(t, "count")))
}

func genAnyCmd(t *rapid.T) Command {
	switch rapid.IntRange(0, 5).Draw(t, "type") {
	case 0:
		return genStringCmd(t)
	case 1:
		return genListCmd(t)
	case 2:
		return genSetCmd(t)
	case 3:
		return genHashCmd(t)
	case 4:
		return genZSetCmd(t)
	default:
		return genScanCmd(t)
	}
}

// fixZSet turns the ZCARD/ZPOPMIN draw into a well-formed command.
func fixCmd(c Command) Command {
	if c.Name == "ZCARD" && len(c.Args) > 1 {
		c.Args = c.Args[:1]
	}
	return c
}

// checkAgainstModel runs random commands from gen on a Store and a model.
func checkAgainstModel(t *rapid.T, gen func(*rapid.T) Command) {
	s, err := NewStore(NewMemEngine(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	m := newModel()
	now := t0
	for i, n := 0, rapid.IntRange(5, 100).Draw(t, "steps"); i < n; i++ {
		now = now.Add(time.Duration(rapid.IntRange(0, 700).Draw(t, "advance_ms")) * time.Millisecond)
		m.now = now.UnixMilli()
		if rapid.IntRange(0, 15).Draw(t, "sweep") == 0 {
			if _, err := s.ExpireStep(now, 1000); err != nil {
				t.Fatal(err)
			}
			m.sweep()
			continue
		}
		c := fixCmd(gen(t))
		var before bytes.Buffer
		if IsReadOnly(c.Name) {
			if err := s.SaveSnapshot(&before); err != nil {
				t.Fatal(err)
			}
		}
		var got Reply
		if IsReadOnly(c.Name) {
			// Read (the concurrent read path) must answer as Apply does.
			got = s.Read(now, c)
			if a := s.Apply(now, c); render(a) != render(got) {
				t.Fatalf("step %d: %s: Read %s, Apply %s", i, c, render(got), render(a))
			}
		} else {
			got = s.Apply(now, c)
		}
		if IsReadOnly(c.Name) {
			var after bytes.Buffer
			if err := s.SaveSnapshot(&after); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before.Bytes(), after.Bytes()) {
				t.Fatalf("step %d: read-only %s changed the engine", i, c)
			}
		}
		want := m.apply(c)
		if render(got) != render(want) {
			t.Fatalf("step %d at +%v: %s\n store %s\n model %s", i, now.Sub(t0), c, render(got), render(want))
		}
	}
	checkDump(t, s, m, now)
}

func checkDump(t *rapid.T, s *Store, m *model, now time.Time) {
	d, err := s.Dump(now)
	if err != nil {
		t.Fatal(err)
	}
	md := m.dump()
	if len(d) != len(md) {
		t.Fatalf("dump has %d keys, model %d:\n%v\n%v", len(d), len(md), d, md)
	}
	for k, v := range md {
		if d[k] != v {
			t.Fatalf("key %q: store %s, model %s", k, d[k], v)
		}
	}
}

func TestModelStrings(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { checkAgainstModel(t, genStringCmd) })
}
func TestModelLists(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { checkAgainstModel(t, genListCmd) })
}
func TestModelSets(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { checkAgainstModel(t, genSetCmd) })
}
func TestModelHashes(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { checkAgainstModel(t, genHashCmd) })
}
func TestModelZSets(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { checkAgainstModel(t, genZSetCmd) })
}
func TestModelMixed(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { checkAgainstModel(t, genAnyCmd) })
}
