package core

import (
	"bytes"
	"math"
	"strconv"
)

func stringCommands() []cmdSpec {
	return []cmdSpec{
		{name: "GET", handler: cmdGet, arity: 2, readOnly: true, first: 1, last: 1},
		{name: "SET", handler: cmdSet, arity: -3, first: 1, last: 1},
		{name: "SETNX", handler: cmdSetNX, arity: 3, first: 1, last: 1},
		{name: "SETEX", handler: cmdSetEX, arity: 4, first: 1, last: 1},
		{name: "PSETEX", handler: cmdPSetEX, arity: 4, first: 1, last: 1},
		{name: "CAS", handler: cmdCAS, arity: 4, first: 1, last: 1},
		{name: "GETSET", handler: cmdGetSet, arity: 3, first: 1, last: 1},
		{name: "GETDEL", handler: cmdGetDel, arity: 2, first: 1, last: 1},
		{name: "APPEND", handler: cmdAppend, arity: 3, first: 1, last: 1},
		{name: "STRLEN", handler: cmdStrlen, arity: 2, readOnly: true, first: 1, last: 1},
		{name: "INCR", handler: cmdIncr, arity: -2, first: 1, last: 1},
		{name: "DECR", handler: cmdDecr, arity: -2, first: 1, last: 1},
		{name: "INCRBY", handler: cmdIncrBy, arity: -3, first: 1, last: 1},
		{name: "DECRBY", handler: cmdDecrBy, arity: -3, first: 1, last: 1},
		{name: "INCRBYFLOAT", handler: cmdIncrByFloat, arity: 3, first: 1, last: 1},
		{name: "MGET", handler: cmdMGet, arity: -2, readOnly: true, first: 1, last: -1},
		{name: "MSET", handler: cmdMSet, arity: -3, first: 1, last: -1, step: 2},
		{name: "MSETNX", handler: cmdMSetNX, arity: -3, first: 1, last: -1, step: 2},
	}
}

func cmdGet(o *op, a [][]byte) Reply {
	r, err := o.loadType(a[0], TypeString)
	if err != nil {
		return fail(err)
	}
	if r == nil {
		return Nil()
	}
	// No copy: the payload is either the engine's copy (owned by us) or an
	// overlay value, which is never modified once written.
	return Bulk(r.payload)
}

// setOpts are SET's options.
type setOpts struct {
	nx, xx, get, keepTTL bool
	expireAt             int64 // unix ms, 0 none
	ifVer                *uint64
	ifEq                 []byte
	hasIfEq              bool
}

// expireFrom turns a relative or absolute expiry argument into unix ms.
func expireFrom(o *op, arg []byte, unitMs int64, absolute bool, cmd string) (int64, *Error) {
	v, ok := parseInt(arg)
	if !ok {
		return 0, errNotInt
	}
	if v <= 0 && !absolute || v < 0 {
		return 0, Errorf(CodeErr, "invalid expire time in '%s' command", cmd)
	}
	if v > math.MaxInt64/unitMs {
		return 0, Errorf(CodeErr, "invalid expire time in '%s' command", cmd)
	}
	ms := v * unitMs
	if absolute {
		if ms == 0 {
			return 0, Errorf(CodeErr, "invalid expire time in '%s' command", cmd)
		}
		return ms, nil
	}
	if ms > math.MaxInt64-o.nowMs {
		return 0, Errorf(CodeErr, "invalid expire time in '%s' command", cmd)
	}
	return o.nowMs + ms, nil
}

func parseSetOpts(o *op, a [][]byte) (setOpts, *Error) {
	var s setOpts
	expSet := false
	for i := 0; i < len(a); i++ {
		opt := upper(a[i])
		hasArg := i+1 < len(a)
		switch {
		case opt == "NX" && !s.xx:
			s.nx = true
		case opt == "XX" && !s.nx:
			s.xx = true
		case opt == "GET":
			s.get = true
		case opt == "KEEPTTL" && !expSet:
			s.keepTTL = true
		case (opt == "EX" || opt == "PX" || opt == "EXAT" || opt == "PXAT") && !s.keepTTL && !expSet && hasArg:
			unit := int64(1000)
			if opt[0] == 'P' {
				unit = 1
			}
			at, e := expireFrom(o, a[i+1], unit, len(opt) == 4, "set")
			if e != nil {
				return s, e
			}
			s.expireAt, expSet = at, true
			i++
		case opt == "IFVER" && s.ifVer == nil && hasArg:
			v, ok := parseInt(a[i+1])
			if !ok || v < 0 {
				return s, errNotInt
			}
			uv := uint64(v)
			s.ifVer = &uv
			i++
		case opt == "IFEQ" && !s.hasIfEq && hasArg:
			s.ifEq, s.hasIfEq = a[i+1], true
			i++
		default:
			return s, errSyntax
		}
	}
	return s, nil
}

func condFailed(version uint64, format string, args ...any) Reply {
	e := Errorf(CodeConditionFailed, format, args...)
	e.Condition = e.Msg
	e.Version = version
	return Reply{Kind: KindError, Err: e, Version: version}
}

// cmdSet: SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]
// [IFVER version] [IFEQ value]. NX/XX failures reply nil as in Redis;
// IFVER/IFEQ failures reply CONDFAILED with the current version.
func cmdSet(o *op, a [][]byte) Reply {
	opts, e := parseSetOpts(o, a[2:])
	if e != nil {
		return ErrorReply(e)
	}
	return doSet(o, a[0], a[1], opts)
}

func doSet(o *op, key, val []byte, opts setOpts) Reply {
	old, err := o.load(key)
	if err != nil {
		return fail(err)
	}
	var cur uint64
	if old != nil {
		cur = old.version
	}
	if opts.get && old != nil && old.typ != TypeString {
		return ErrorReply(errWrongType)
	}
	if opts.ifVer != nil && *opts.ifVer != cur {
		return condFailed(cur, "version of %s is %d, want %d", quoteArg(key), cur, *opts.ifVer)
	}
	if opts.hasIfEq {
		switch {
		case old == nil:
			return condFailed(cur, "value of %s: key does not exist", quoteArg(key))
		case old.typ != TypeString:
			return condFailed(cur, "value of %s: key holds a %s, not a string", quoteArg(key), old.typ)
		case !bytes.Equal(old.payload, opts.ifEq):
			return condFailed(cur, "value of %s differs", quoteArg(key))
		}
	}
	prev := Nil()
	if opts.get && old != nil {
		prev = Bulk(bytes.Clone(old.payload))
	}
	if (opts.nx && old != nil) || (opts.xx && old == nil) {
		if opts.get {
			prev.Version = cur
			return prev
		}
		return Reply{Kind: KindNil, Version: cur}
	}
	exp := opts.expireAt
	if opts.keepTTL && old != nil {
		exp = old.expireAt
	}
	if err := o.put(key, TypeString, val, exp); err != nil { // put keeps only the encoded record
		return fail(err)
	}
	if opts.get {
		prev.Version = o.lastVer
		return prev
	}
	return OK()
}

func cmdSetNX(o *op, a [][]byte) Reply {
	r := doSet(o, a[0], a[1], setOpts{nx: true})
	if r.IsError() {
		return r
	}
	if r.Kind == KindNil {
		return Reply{Kind: KindInt, Int: 0, Version: r.Version}
	}
	return Int(1)
}

func cmdSetEX(o *op, a [][]byte) Reply  { return setEx(o, a, 1000, "setex") }
func cmdPSetEX(o *op, a [][]byte) Reply { return setEx(o, a, 1, "psetex") }
func setEx(o *op, a [][]byte, unit int64, name string) Reply {
	at, e := expireFrom(o, a[1], unit, false, name)
	if e != nil {
		return ErrorReply(e)
	}
	return doSet(o, a[0], a[2], setOpts{expireAt: at})
}

// cmdCAS: CAS key expected-version new-value. Sets the value (dropping any
// TTL, like SET) when the key's version is expected-version (0: absent).
func cmdCAS(o *op, a [][]byte) Reply {
	v, ok := parseInt(a[1])
	if !ok || v < 0 {
		return ErrorReply(errNotInt)
	}
	uv := uint64(v)
	return doSet(o, a[0], a[2], setOpts{ifVer: &uv})
}

func cmdGetSet(o *op, a [][]byte) Reply {
	return doSet(o, a[0], a[1], setOpts{get: true})
}

func cmdGetDel(o *op, a [][]byte) Reply {
	r, err := o.loadType(a[0], TypeString)
	if err != nil {
		return fail(err)
	}
	if r == nil {
		return Nil()
	}
	if _, err := o.del(a[0]); err != nil {
		return fail(err)
	}
	return Bulk(bytes.Clone(r.payload))
}

func cmdAppend(o *op, a [][]byte) Reply {
	r, err := o.loadType(a[0], TypeString)
	if err != nil {
		return fail(err)
	}
	var v []byte
	if r != nil {
		v = append(bytes.Clone(r.payload), a[1]...)
	} else {
		v = bytes.Clone(a[1])
	}
	if err := o.putKeepTTL(a[0], TypeString, v, r); err != nil {
		return fail(err)
	}
	return Int(int64(len(v)))
}

func cmdStrlen(o *op, a [][]byte) Reply {
	r, err := o.loadType(a[0], TypeString)
	if err != nil {
		return fail(err)
	}
	if r == nil {
		return Int(0)
	}
	return Int(int64(len(r.payload)))
}

// incrBy adds delta to the integer at key. rest may hold "IFVER n": the
// increment then only happens when the key's version is n (0: absent).
func incrBy(o *op, key []byte, delta int64, rest [][]byte) Reply {
	var ifVer *uint64
	switch len(rest) {
	case 0:
	case 2:
		if upper(rest[0]) != "IFVER" {
			return ErrorReply(errSyntax)
		}
		v, ok := parseInt(rest[1])
		if !ok || v < 0 {
			return ErrorReply(errNotInt)
		}
		uv := uint64(v)
		ifVer = &uv
	default:
		return ErrorReply(errSyntax)
	}
	r, err := o.loadType(key, TypeString)
	if err != nil {
		return fail(err)
	}
	var cur int64
	var ver uint64
	if r != nil {
		ver = r.version
		v, ok := parseInt(r.payload)
		if !ok {
			return ErrorReply(errNotInt)
		}
		cur = v
	}
	if ifVer != nil && *ifVer != ver {
		return condFailed(ver, "version of %s is %d, want %d", quoteArg(key), ver, *ifVer)
	}
	if (delta > 0 && cur > math.MaxInt64-delta) || (delta < 0 && cur < math.MinInt64-delta) {
		return ErrorReply(errOverflow)
	}
	n := cur + delta
	if err := o.putKeepTTL(key, TypeString, strconv.AppendInt(nil, n, 10), r); err != nil {
		return fail(err)
	}
	return Int(n)
}

func cmdIncr(o *op, a [][]byte) Reply { return incrBy(o, a[0], 1, a[1:]) }
func cmdDecr(o *op, a [][]byte) Reply { return incrBy(o, a[0], -1, a[1:]) }
func cmdIncrBy(o *op, a [][]byte) Reply {
	d, e := argInt(a[1])
	if e != nil {
		return ErrorReply(e)
	}
	return incrBy(o, a[0], d, a[2:])
}
func cmdDecrBy(o *op, a [][]byte) Reply {
	d, e := argInt(a[1])
	if e != nil {
		return ErrorReply(e)
	}
	if d == math.MinInt64 {
		return ErrorReply(Errorf(CodeErr, "decrement would overflow"))
	}
	return incrBy(o, a[0], -d, a[2:])
}

func cmdIncrByFloat(o *op, a [][]byte) Reply {
	d, ok := parseFloat(a[1])
	if !ok {
		return ErrorReply(errNotFloat)
	}
	r, err := o.loadType(a[0], TypeString)
	if err != nil {
		return fail(err)
	}
	var cur float64
	if r != nil {
		cur, ok = parseFloat(r.payload)
		if !ok {
			return ErrorReply(errNotFloat)
		}
	}
	n := cur + d
	if math.IsNaN(n) || math.IsInf(n, 0) {
		return ErrorReply(errNaNInf)
	}
	s := formatFloatHuman(n)
	if err := o.putKeepTTL(a[0], TypeString, []byte(s), r); err != nil {
		return fail(err)
	}
	return bulkStr(s)
}

func cmdMGet(o *op, a [][]byte) Reply {
	rs := make([]Reply, len(a))
	for i, k := range a {
		r, err := o.load(k)
		if err != nil {
			return fail(err)
		}
		if r == nil || r.typ != TypeString {
			rs[i] = Nil()
			continue
		}
		rs[i] = Reply{Kind: KindBulk, Str: bytes.Clone(r.payload), Version: r.version}
	}
	return Array(rs...)
}

func cmdMSet(o *op, a [][]byte) Reply {
	if len(a)%2 != 0 {
		return ErrorReply(Errorf(CodeErr, "wrong number of arguments for 'mset' command"))
	}
	for i := 0; i < len(a); i += 2 {
		if err := o.put(a[i], TypeString, bytes.Clone(a[i+1]), 0); err != nil {
			return fail(err)
		}
	}
	return OK()
}

func cmdMSetNX(o *op, a [][]byte) Reply {
	if len(a)%2 != 0 {
		return ErrorReply(Errorf(CodeErr, "wrong number of arguments for 'msetnx' command"))
	}
	for i := 0; i < len(a); i += 2 {
		r, err := o.load(a[i])
		if err != nil {
			return fail(err)
		}
		if r != nil {
			return Int(0)
		}
	}
	for i := 0; i < len(a); i += 2 {
		if err := o.put(a[i], TypeString, bytes.Clone(a[i+1]), 0); err != nil {
			return fail(err)
		}
	}
	return Int(1)
}
