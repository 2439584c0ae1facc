package core

func keyCommands() []cmdSpec {
	return []cmdSpec{
		{name: "DEL", handler: cmdDel, arity: -2, first: 1, last: -1},
		{name: "UNLINK", handler: cmdDel, arity: -2, first: 1, last: -1},
		{name: "EXISTS", handler: cmdExists, arity: -2, readOnly: true, first: 1, last: -1},
		{name: "TYPE", handler: cmdType, arity: 2, readOnly: true, first: 1, last: 1},
		{name: "EXPIRE", handler: cmdExpire, arity: -3, first: 1, last: 1},
		{name: "PEXPIRE", handler: cmdPExpire, arity: -3, first: 1, last: 1},
		{name: "EXPIREAT", handler: cmdExpireAt, arity: -3, first: 1, last: 1},
		{name: "PEXPIREAT", handler: cmdPExpireAt, arity: -3, first: 1, last: 1},
		{name: "PERSIST", handler: cmdPersist, arity: 2, first: 1, last: 1},
		{name: "TTL", handler: cmdTTL, arity: 2, readOnly: true, first: 1, last: 1},
		{name: "PTTL", handler: cmdPTTL, arity: 2, readOnly: true, first: 1, last: 1},
		{name: "VERSION", handler: cmdVersion, arity: 2, readOnly: true, first: 1, last: 1},
	}
}

func cmdDel(o *op, a [][]byte) Reply {
	n := int64(0)
	for _, k := range a {
		ok, err := o.del(k)
		if err != nil {
			return fail(err)
		}
		if ok {
			n++
		}
	}
	return Int(n)
}

func cmdExists(o *op, a [][]byte) Reply {
	n := int64(0)
	for _, k := range a {
		r, err := o.load(k)
		if err != nil {
			return fail(err)
		}
		if r != nil {
			n++
		}
	}
	return Int(n)
}

func cmdType(o *op, a [][]byte) Reply {
	r, err := o.load(a[0])
	if err != nil {
		return fail(err)
	}
	if r == nil {
		return Reply{Kind: KindStatus, Str: []byte("none")}
	}
	return Reply{Kind: KindStatus, Str: []byte(r.typ.String())}
}

// cmdVersion: VERSION key -> the key's current version (0 when absent).
func cmdVersion(o *op, a [][]byte) Reply {
	r, err := o.load(a[0])
	if err != nil {
		return fail(err)
	}
	if r == nil {
		return Int(0)
	}
	return Reply{Kind: KindInt, Int: int64(r.version), Version: r.version}
}

func cmdExpire(o *op, a [][]byte) Reply    { return expireCmd(o, a, 1000, false, "expire") }
func cmdPExpire(o *op, a [][]byte) Reply   { return expireCmd(o, a, 1, false, "pexpire") }
func cmdExpireAt(o *op, a [][]byte) Reply  { return expireCmd(o, a, 1000, true, "expireat") }
func cmdPExpireAt(o *op, a [][]byte) Reply { return expireCmd(o, a, 1, true, "pexpireat") }

// expireCmd: EXPIRE key seconds [NX|XX|GT|LT]. A time in the past deletes
// the key. Replies 1 when the timeout was set, 0 otherwise.
func expireCmd(o *op, a [][]byte, unit int64, absolute bool, name string) Reply {
	v, ok := parseInt(a[1])
	if !ok {
		return ErrorReply(errNotInt)
	}
	var nx, xx, gt, lt bool
	for _, f := range a[2:] {
		switch upper(f) {
		case "NX":
			nx = true
		case "XX":
			xx = true
		case "GT":
			gt = true
		case "LT":
			lt = true
		default:
			return ErrorReply(Errorf(CodeErr, "Unsupported option %s", f))
		}
	}
	if nx && (xx || gt || lt) {
		return ErrorReply(Errorf(CodeErr, "NX and XX, GT or LT options at the same time are not compatible"))
	}
	if gt && lt {
		return ErrorReply(Errorf(CodeErr, "GT and LT options at the same time are not compatible"))
	}
	var at int64
	const maxMs = int64(1) << 62
	if v > maxMs/unit || v < -maxMs/unit {
		return ErrorReply(Errorf(CodeErr, "invalid expire time in '%s' command", name))
	}
	if absolute {
		at = v * unit
	} else {
		at = o.nowMs + v*unit
	}
	r, err := o.load(a[0])
	if err != nil {
		return fail(err)
	}
	if r == nil {
		return Int(0)
	}
	cur := r.expireAt // 0: persistent, which GT/LT treat as infinite
	switch {
	case nx && cur != 0, xx && cur == 0:
		return Int(0)
	case gt && (cur == 0 || at <= cur):
		return Int(0)
	case lt && cur != 0 && at >= cur:
		return Int(0)
	}
	if at <= o.nowMs {
		if _, err := o.del(a[0]); err != nil {
			return fail(err)
		}
		return Int(1)
	}
	if err := o.put(a[0], r.typ, r.payload, at); err != nil {
		return fail(err)
	}
	return Int(1)
}

func cmdPersist(o *op, a [][]byte) Reply {
	r, err := o.load(a[0])
	if err != nil {
		return fail(err)
	}
	if r == nil || r.expireAt == 0 {
		return Int(0)
	}
	if err := o.put(a[0], r.typ, r.payload, 0); err != nil {
		return fail(err)
	}
	return Int(1)
}

func ttlCmd(o *op, a [][]byte, ms bool) Reply {
	r, err := o.load(a[0])
	if err != nil {
		return fail(err)
	}
	switch {
	case r == nil:
		return Int(-2)
	case r.expireAt == 0:
		return Int(-1)
	}
	left := r.expireAt - o.nowMs
	if ms {
		return Int(left)
	}
	return Int((left + 500) / 1000)
}

func cmdTTL(o *op, a [][]byte) Reply  { return ttlCmd(o, a, false) }
func cmdPTTL(o *op, a [][]byte) Reply { return ttlCmd(o, a, true) }
