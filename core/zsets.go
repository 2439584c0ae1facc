package core

import (
	"math"
	"sort"
)

func zsetCommands() []cmdSpec {
	return []cmdSpec{
		{name: "ZADD", handler: cmdZAdd, arity: -4, first: 1, last: 1},
		{name: "ZREM", handler: cmdZRem, arity: -3, first: 1, last: 1},
		{name: "ZSCORE", handler: cmdZScore, arity: 3, readOnly: true, first: 1, last: 1},
		{name: "ZMSCORE", handler: cmdZMScore, arity: -3, readOnly: true, first: 1, last: 1},
		{name: "ZINCRBY", handler: cmdZIncrBy, arity: 4, first: 1, last: 1},
		{name: "ZRANK", handler: cmdZRank, arity: 3, readOnly: true, first: 1, last: 1},
		{name: "ZREVRANK", handler: cmdZRevRank, arity: 3, readOnly: true, first: 1, last: 1},
		{name: "ZCARD", handler: cmdZCard, arity: 2, readOnly: true, first: 1, last: 1},
		{name: "ZCOUNT", handler: cmdZCount, arity: 4, readOnly: true, first: 1, last: 1},
		{name: "ZLEXCOUNT", handler: cmdZLexCount, arity: 4, readOnly: true, first: 1, last: 1},
		{name: "ZRANGE", handler: cmdZRange, arity: -4, readOnly: true, first: 1, last: 1},
		{name: "ZREVRANGE", handler: cmdZRevRange, arity: -4, readOnly: true, first: 1, last: 1},
		{name: "ZRANGEBYSCORE", handler: cmdZRangeByScore, arity: -4, readOnly: true, first: 1, last: 1},
		{name: "ZREVRANGEBYSCORE", handler: cmdZRevRangeByScore, arity: -4, readOnly: true, first: 1, last: 1},
		{name: "ZRANGEBYLEX", handler: cmdZRangeByLex, arity: -4, readOnly: true, first: 1, last: 1},
		{name: "ZREVRANGEBYLEX", handler: cmdZRevRangeByLex, arity: -4, readOnly: true, first: 1, last: 1},
		{name: "ZPOPMIN", handler: cmdZPopMin, arity: -2, first: 1, last: 1},
		{name: "ZPOPMAX", handler: cmdZPopMax, arity: -2, first: 1, last: 1},
	}
}

type zEntry struct {
	member string
	score  float64
}

// sortZSet orders a sorted set by score, then member, as Redis does.
func sortZSet(z map[string]float64) []zEntry {
	out := make([]zEntry, 0, len(z))
	for m, s := range z {
		out = append(out, zEntry{m, s})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].score != out[j].score {
			return out[i].score < out[j].score
		}
		return out[i].member < out[j].member
	})
	return out
}

func loadZSet(o *op, key []byte) (map[string]float64, *record, error) {
	r, err := o.loadType(key, TypeZSet)
	if err != nil || r == nil {
		return map[string]float64{}, r, err
	}
	z, err := decodeZSet(key, r.payload)
	if err != nil {
		o.corrupt++
	}
	return z, r, err
}

// storeZSet writes z at key, deleting the key when z is empty.
func storeZSet(o *op, key []byte, z map[string]float64, old *record) error {
	if len(z) == 0 {
		_, err := o.del(key)
		return err
	}
	return o.putKeepTTL(key, TypeZSet, encodeZSet(z), old)
}

func scoreReply(f float64) Reply { return bulkStr(formatFloat(f)) }

// cmdZAdd: ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]
func cmdZAdd(o *op, a [][]byte) Reply {
	var nx, xx, gt, lt, ch, incr bool
	i := 1
flags:
	for ; i < len(a); i++ {
		switch upper(a[i]) {
		case "NX":
			nx = true
		case "XX":
			xx = true
		case "GT":
			gt = true
		case "LT":
			lt = true
		case "CH":
			ch = true
		case "INCR":
			incr = true
		default:
			break flags
		}
	}
	pairs := a[i:]
	if len(pairs) == 0 || len(pairs)%2 != 0 {
		return ErrorReply(errSyntax)
	}
	if nx && xx {
		return ErrorReply(Errorf(CodeErr, "XX and NX options at the same time are not compatible"))
	}
	if (gt && nx) || (lt && nx) || (gt && lt) {
		return ErrorReply(Errorf(CodeErr, "GT, LT, and/or NX options at the same time are not compatible"))
	}
	if incr && len(pairs) > 2 {
		return ErrorReply(Errorf(CodeErr, "INCR option supports a single increment-element pair"))
	}
	scores := make([]float64, len(pairs)/2)
	for j := range scores {
		f, ok := parseFloat(pairs[2*j])
		if !ok {
			return ErrorReply(errNotFloat)
		}
		scores[j] = f
	}
	z, r, err := loadZSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	added, changed := int64(0), int64(0)
	var incrResult Reply = Nil()
	for j, score := range scores {
		m := string(pairs[2*j+1])
		cur, exists := z[m]
		if (nx && exists) || (xx && !exists) {
			continue
		}
		if incr && exists {
			score += cur
			if math.IsNaN(score) {
				return ErrorReply(Errorf(CodeErr, "resulting score is not a number (NaN)"))
			}
		}
		if exists && ((gt && score <= cur) || (lt && score >= cur)) {
			continue
		}
		if !exists {
			added++
		} else if score != cur {
			changed++
		}
		z[m] = score
		if incr {
			incrResult = scoreReply(score)
		}
	}
	if added+changed > 0 {
		if err := storeZSet(o, a[0], z, r); err != nil {
			return fail(err)
		}
	}
	if incr {
		return incrResult
	}
	if ch {
		return Int(added + changed)
	}
	return Int(added)
}

func cmdZRem(o *op, a [][]byte) Reply {
	z, r, err := loadZSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	n := int64(0)
	for _, m := range a[1:] {
		if _, ok := z[string(m)]; ok {
			delete(z, string(m))
			n++
		}
	}
	if n > 0 {
		if err := storeZSet(o, a[0], z, r); err != nil {
			return fail(err)
		}
	}
	return Int(n)
}

func cmdZScore(o *op, a [][]byte) Reply {
	z, _, err := loadZSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	s, ok := z[string(a[1])]
	if !ok {
		return Nil()
	}
	return scoreReply(s)
}

func cmdZMScore(o *op, a [][]byte) Reply {
	z, _, err := loadZSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	rs := make([]Reply, len(a)-1)
	for i, m := range a[1:] {
		if s, ok := z[string(m)]; ok {
			rs[i] = scoreReply(s)
		} else {
			rs[i] = Nil()
		}
	}
	return Array(rs...)
}

func cmdZIncrBy(o *op, a [][]byte) Reply {
	d, ok := parseFloat(a[1])
	if !ok {
		return ErrorReply(errNotFloat)
	}
	z, r, err := loadZSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	s := z[string(a[2])] + d
	if math.IsNaN(s) {
		return ErrorReply(Errorf(CodeErr, "resulting score is not a number (NaN)"))
	}
	z[string(a[2])] = s
	if err := storeZSet(o, a[0], z, r); err != nil {
		return fail(err)
	}
	return scoreReply(s)
}

func zrank(o *op, a [][]byte, rev bool) Reply {
	z, _, err := loadZSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	if _, ok := z[string(a[1])]; !ok {
		return Nil()
	}
	for i, e := range sortZSet(z) {
		if e.member == string(a[1]) {
			if rev {
				return Int(int64(len(z) - 1 - i))
			}
			return Int(int64(i))
		}
	}
	return Nil()
}

func cmdZRank(o *op, a [][]byte) Reply    { return zrank(o, a, false) }
func cmdZRevRank(o *op, a [][]byte) Reply { return zrank(o, a, true) }

func cmdZCard(o *op, a [][]byte) Reply {
	z, _, err := loadZSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	return Int(int64(len(z)))
}

// scoreBound is one end of a score range: "1.5", "(1.5", "-inf", "+inf".
type scoreBound struct {
	v    float64
	excl bool
}

func parseScoreBound(b []byte) (scoreBound, bool) {
	var sb scoreBound
	if len(b) > 0 && b[0] == '(' {
		sb.excl = true
		b = b[1:]
	}
	f, ok := parseFloat(b)
	sb.v = f
	return sb, ok
}

func (lo scoreBound) below(s float64) bool { // s is above the lower bound
	if lo.excl {
		return s > lo.v
	}
	return s >= lo.v
}

func (hi scoreBound) above(s float64) bool { // s is below the upper bound
	if hi.excl {
		return s < hi.v
	}
	return s <= hi.v
}

// lexBound is one end of a lex range: "[a", "(a", "-", "+".
type lexBound struct {
	v         string
	excl      bool
	inf, ninf bool // "+" and "-"
}

func parseLexBound(b []byte) (lexBound, bool) {
	switch {
	case len(b) == 1 && b[0] == '+':
		return lexBound{inf: true}, true
	case len(b) == 1 && b[0] == '-':
		return lexBound{ninf: true}, true
	case len(b) > 0 && b[0] == '(':
		return lexBound{v: string(b[1:]), excl: true}, true
	case len(b) > 0 && b[0] == '[':
		return lexBound{v: string(b[1:])}, true
	}
	return lexBound{}, false
}

func (lo lexBound) below(m string) bool {
	switch {
	case lo.ninf:
		return true
	case lo.inf:
		return false
	case lo.excl:
		return m > lo.v
	}
	return m >= lo.v
}

func (hi lexBound) above(m string) bool {
	switch {
	case hi.inf:
		return true
	case hi.ninf:
		return false
	case hi.excl:
		return m < hi.v
	}
	return m <= hi.v
}

func cmdZCount(o *op, a [][]byte) Reply {
	lo, ok1 := parseScoreBound(a[1])
	hi, ok2 := parseScoreBound(a[2])
	if !ok1 || !ok2 {
		return ErrorReply(Errorf(CodeErr, "min or max is not a float"))
	}
	z, _, err := loadZSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	n := int64(0)
	for _, s := range z {
		if lo.below(s) && hi.above(s) {
			n++
		}
	}
	return Int(n)
}

func cmdZLexCount(o *op, a [][]byte) Reply {
	lo, ok1 := parseLexBound(a[1])
	hi, ok2 := parseLexBound(a[2])
	if !ok1 || !ok2 {
		return ErrorReply(Errorf(CodeErr, "min or max not valid string range item"))
	}
	z, _, err := loadZSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	n := int64(0)
	for m := range z {
		if lo.below(m) && hi.above(m) {
			n++
		}
	}
	return Int(n)
}

// zrangeReq is a parsed ZRANGE.
type zrangeReq struct {
	by            byte // 'r' rank, 's' score, 'l' lex
	rev           bool
	withScores    bool
	hasLimit      bool
	offset, count int64
}

// zrange implements every ZRANGE form. start/stop are in the order given
// (for REV by score or lex that is max then min, as in Redis).
func zrange(o *op, key, start, stop []byte, q zrangeReq) Reply {
	if q.hasLimit && q.by == 'r' {
		return ErrorReply(Errorf(CodeErr, "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"))
	}
	if q.withScores && q.by == 'l' {
		return ErrorReply(Errorf(CodeErr, "syntax error, WITHSCORES not supported in combination with BYLEX"))
	}
	var sel func(e zEntry) bool
	var rankLo, rankHi int64
	switch q.by {
	case 'r':
		var e1, e2 *Error
		rankLo, e1 = argInt(start)
		rankHi, e2 = argInt(stop)
		if e1 != nil || e2 != nil {
			return ErrorReply(errNotInt)
		}
	case 's':
		if q.rev {
			start, stop = stop, start
		}
		lo, ok1 := parseScoreBound(start)
		hi, ok2 := parseScoreBound(stop)
		if !ok1 || !ok2 {
			return ErrorReply(Errorf(CodeErr, "min or max is not a float"))
		}
		sel = func(e zEntry) bool { return lo.below(e.score) && hi.above(e.score) }
	case 'l':
		if q.rev {
			start, stop = stop, start
		}
		lo, ok1 := parseLexBound(start)
		hi, ok2 := parseLexBound(stop)
		if !ok1 || !ok2 {
			return ErrorReply(Errorf(CodeErr, "min or max not valid string range item"))
		}
		sel = func(e zEntry) bool { return lo.below(e.member) && hi.above(e.member) }
	}
	z, _, err := loadZSet(o, key)
	if err != nil {
		return fail(err)
	}
	all := sortZSet(z)
	if q.rev {
		for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
			all[i], all[j] = all[j], all[i]
		}
	}
	var out []zEntry
	if q.by == 'r' {
		lo, hi, ok := normRange(rankLo, rankHi, len(all))
		if ok {
			out = all[lo : hi+1]
		}
	} else {
		for _, e := range all {
			if sel(e) {
				out = append(out, e)
			}
		}
		if q.hasLimit {
			if q.offset < 0 || q.offset >= int64(len(out)) {
				out = nil
			} else {
				out = out[q.offset:]
				if q.count >= 0 && q.count < int64(len(out)) {
					out = out[:q.count]
				}
			}
		}
	}
	rs := make([]Reply, 0, len(out))
	for _, e := range out {
		rs = append(rs, bulkStr(e.member))
		if q.withScores {
			rs = append(rs, scoreReply(e.score))
		}
	}
	return Array(rs...)
}

// parseZRangeOpts parses [BYSCORE|BYLEX] [REV] [LIMIT offset count]
// [WITHSCORES]; allowBy is false for the legacy forms.
func parseZRangeOpts(opts [][]byte, q *zrangeReq, allowBy bool) *Error {
	for i := 0; i < len(opts); i++ {
		switch upper(opts[i]) {
		case "BYSCORE":
			if !allowBy || q.by != 'r' {
				return errSyntax
			}
			q.by = 's'
		case "BYLEX":
			if !allowBy || q.by != 'r' {
				return errSyntax
			}
			q.by = 'l'
		case "REV":
			if !allowBy {
				return errSyntax
			}
			q.rev = true
		case "WITHSCORES":
			q.withScores = true
		case "LIMIT":
			if i+2 >= len(opts) {
				return errSyntax
			}
			off, e1 := argInt(opts[i+1])
			cnt, e2 := argInt(opts[i+2])
			if e1 != nil || e2 != nil {
				return errNotInt
			}
			q.hasLimit, q.offset, q.count = true, off, cnt
			i += 2
		default:
			return errSyntax
		}
	}
	return nil
}

func cmdZRange(o *op, a [][]byte) Reply {
	q := zrangeReq{by: 'r'}
	if e := parseZRangeOpts(a[3:], &q, true); e != nil {
		return ErrorReply(e)
	}
	return zrange(o, a[0], a[1], a[2], q)
}

func legacyZRange(o *op, a [][]byte, by byte, rev bool) Reply {
	q := zrangeReq{by: by}
	if e := parseZRangeOpts(a[3:], &q, false); e != nil {
		return ErrorReply(e)
	}
	q.rev = rev
	return zrange(o, a[0], a[1], a[2], q)
}

func cmdZRevRange(o *op, a [][]byte) Reply        { return legacyZRange(o, a, 'r', true) }
func cmdZRangeByScore(o *op, a [][]byte) Reply    { return legacyZRange(o, a, 's', false) }
func cmdZRevRangeByScore(o *op, a [][]byte) Reply { return legacyZRange(o, a, 's', true) }
func cmdZRangeByLex(o *op, a [][]byte) Reply      { return legacyZRange(o, a, 'l', false) }
func cmdZRevRangeByLex(o *op, a [][]byte) Reply   { return legacyZRange(o, a, 'l', true) }

// zpop: ZPOPMIN key [count] -> [member, score, ...].
func zpop(o *op, a [][]byte, max bool) Reply {
	if len(a) > 2 {
		return ErrorReply(errSyntax)
	}
	count := int64(1)
	if len(a) == 2 {
		c, ok := parseInt(a[1])
		if !ok || c < 0 {
			return ErrorReply(errNotPosLimt)
		}
		count = c
	}
	z, r, err := loadZSet(o, a[0])
	if err != nil {
		return fail(err)
	}
	all := sortZSet(z)
	if max {
		for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
			all[i], all[j] = all[j], all[i]
		}
	}
	n := int(min(count, int64(len(all))))
	rs := make([]Reply, 0, 2*n)
	for _, e := range all[:n] {
		delete(z, e.member)
		rs = append(rs, bulkStr(e.member), scoreReply(e.score))
	}
	if n > 0 {
		if err := storeZSet(o, a[0], z, r); err != nil {
			return fail(err)
		}
	}
	return Array(rs...)
}

func cmdZPopMin(o *op, a [][]byte) Reply { return zpop(o, a, false) }
func cmdZPopMax(o *op, a [][]byte) Reply { return zpop(o, a, true) }
