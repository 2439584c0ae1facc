package quorum

import (
	"bytes"
	"sort"
	"strconv"
	"strings"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// The commands the strategy serves, how reads render their answer and how
// writes change an object.

type cmdInfo struct {
	write bool
	crdt  bool // needs resolve=crdt
	minA  int  // minimum args (including the key)
	maxA  int  // -1: unbounded
	pairs bool // args after the key come in pairs
}

var commands = map[string]cmdInfo{
	"GET":       {minA: 1, maxA: 1},
	"SET":       {write: true, minA: 2, maxA: 2},
	"DEL":       {write: true, minA: 1, maxA: 1},
	"INCR":      {write: true, crdt: true, minA: 1, maxA: 1},
	"DECR":      {write: true, crdt: true, minA: 1, maxA: 1},
	"INCRBY":    {write: true, crdt: true, minA: 2, maxA: 2},
	"DECRBY":    {write: true, crdt: true, minA: 2, maxA: 2},
	"SADD":      {write: true, crdt: true, minA: 2, maxA: -1},
	"SREM":      {write: true, crdt: true, minA: 2, maxA: -1},
	"SMEMBERS":  {crdt: true, minA: 1, maxA: 1},
	"SISMEMBER": {crdt: true, minA: 2, maxA: 2},
	"SCARD":     {crdt: true, minA: 1, maxA: 1},
	"HSET":      {write: true, crdt: true, minA: 3, maxA: -1, pairs: true},
	"HDEL":      {write: true, crdt: true, minA: 2, maxA: -1},
	"HGET":      {crdt: true, minA: 2, maxA: 2},
	"HGETALL":   {crdt: true, minA: 1, maxA: 1},
}

// readReply renders a read's answer from the merged object.
func (r *Replica) readReply(o *op, m *Object) consistency.Response {
	args := o.req.Cmd.Args
	name := strings.ToUpper(o.req.Cmd.Name)
	var resp consistency.Response
	if m != nil && m.Kind == KindRegister {
		resp.Token = encodeToken(o.key, Context{VV: m.Clock})
	}
	wrong := func(k Kind) consistency.Response {
		return errReply(0, core.Errorf(core.CodeWrongType, "Operation against a key holding the wrong kind of value (%s)", k))
	}
	switch name {
	case "GET":
		if o.lin && m != nil && m.Kind == KindRegister {
			// ABD: the register's value is its single latest write by
			// (HLC, dot), tombstones included. Every ABD write is stamped
			// above all it read from a quorum, so this order extends real
			// time; concurrent writes that left siblings are ordered by it
			// rather than all returned (a set of values is no register read).
			if s, ok := m.latest(); !ok || s.Del {
				resp.Reply = core.Nil()
			} else {
				resp.Reply = core.Bulk(s.Val)
			}
			return resp
		}
		if m == nil || m.dead() {
			resp.Reply = core.Nil()
			return resp
		}
		switch m.Kind {
		case KindCounter:
			resp.Reply = core.Bulk([]byte(strconv.FormatInt(m.counter(), 10)))
			return resp
		case KindRegister:
		default:
			return wrong(m.Kind)
		}
		lv := m.live()
		vals := make([][]byte, len(lv))
		for i, s := range lv {
			vals[i] = s.Val
		}
		sort.Slice(vals, func(i, j int) bool { return bytes.Compare(vals[i], vals[j]) < 0 })
		switch {
		case len(lv) == 1:
			resp.Reply = core.Bulk(lv[0].Val)
		case r.p.resolve == ResolveCustom:
			resp.Reply = core.Bulk(r.resolver.Resolve([]byte(o.key), vals))
		default:
			resp.Reply = core.Bulk(lv[0].Val) // the latest by HLC; all in Values
			resp.Values = vals
		}
	case "SMEMBERS", "SISMEMBER", "SCARD":
		if m != nil && m.Kind != KindSet {
			return wrong(m.Kind)
		}
		var elems []Elem
		if m != nil {
			elems = m.Elems
		}
		switch name {
		case "SMEMBERS":
			rs := make([]core.Reply, len(elems))
			for i, e := range elems {
				rs[i] = core.Bulk(e.Val)
			}
			resp.Reply = core.Array(rs...)
		case "SCARD":
			resp.Reply = core.Int(int64(len(elems)))
		default:
			n := int64(0)
			for _, e := range elems {
				if bytes.Equal(e.Val, args[1]) {
					n = 1
				}
			}
			resp.Reply = core.Int(n)
		}
	case "HGET", "HGETALL":
		if m != nil && m.Kind != KindMap {
			return wrong(m.Kind)
		}
		var fields []Field
		if m != nil {
			fields = m.Fields
		}
		if name == "HGET" {
			resp.Reply = core.Nil()
			for _, f := range fields {
				if bytes.Equal(f.Name, args[1]) && !f.Del {
					resp.Reply = core.Bulk(f.Val)
				}
			}
			return resp
		}
		rs := []core.Reply{}
		for _, f := range fields {
			if !f.Del {
				rs = append(rs, core.Bulk(f.Name), core.Bulk(f.Val))
			}
		}
		resp.Reply = core.Array(rs...)
	}
	return resp
}

// applyWrite computes the new object for a write command on base; lin
// (ABD) makes DEL report existence by the latest write, as ABD reads do.
func (r *Replica) applyWrite(key string, base *Object, ctx Context, cmd *core.Command, ts Timestamp, lin bool) (*Object, core.Reply, []byte, *core.Error) {
	name := strings.ToUpper(cmd.Name)
	args := cmd.Args
	kind := KindRegister
	switch name {
	case "INCR", "DECR", "INCRBY", "DECRBY":
		kind = KindCounter
	case "SADD", "SREM":
		kind = KindSet
	case "HSET", "HDEL":
		kind = KindMap
	case "DEL":
		if base != nil {
			kind = base.Kind
		}
	}
	if base != nil && base.Kind != kind {
		return nil, core.Reply{}, nil, core.Errorf(core.CodeWrongType, "Operation against a key holding the wrong kind of value (%s)", base.Kind)
	}
	n := base.clone()
	if n == nil {
		n = &Object{Kind: kind}
	}
	if n.Mod.Less(ts) {
		n.Mod = ts
	}
	switch name {
	case "SET", "DEL":
		if kind == KindRegister {
			dot := n.nextDot(r.dotID, ctx)
			reply := core.OK()
			if name == "DEL" {
				had := int64(0)
				if base != nil && !base.dead() {
					had = 1
				}
				if lin {
					// ABD: the key existed iff its latest write is no tombstone.
					had = 0
					if s, ok := base.latest(); ok && !s.Del {
						had = 1
					}
				}
				reply = core.Int(had)
			}
			var val []byte
			if name == "SET" {
				val = args[1]
			}
			obj := putSibling(base, ctx, Sibling{Dot: dot, TS: ts, Del: name == "DEL", Val: val})
			tok := encodeToken(key, Context{VV: ctx.VV, Dots: append(append([]Dot(nil), ctx.Dots...), dot)})
			return obj, reply, tok, nil
		}
		had := int64(0)
		if !base.dead() {
			had = 1
		}
		switch kind {
		case KindSet:
			n.Elems = nil
		case KindMap:
			for i := range n.Fields {
				n.Fields[i] = Field{Name: n.Fields[i].Name, TS: ts, Node: r.id, Del: true}
			}
		default:
			return nil, core.Reply{}, nil, core.Errorf(core.CodeErr, "DEL of a counter is not supported by the quorum strategy (a PN-counter cannot be reset)")
		}
		return n, core.Int(had), nil, nil
	case "INCR", "DECR", "INCRBY", "DECRBY":
		d := int64(1)
		if len(args) > 1 {
			v, err := strconv.ParseInt(string(args[1]), 10, 64)
			if err != nil {
				return nil, core.Reply{}, nil, core.Errorf(core.CodeErr, "value is not an integer or out of range")
			}
			d = v
		}
		if name == "DECR" || name == "DECRBY" {
			d = -d
		}
		i := sort.Search(len(n.Counts), func(i int) bool { return n.Counts[i].Node >= r.dotID })
		if i == len(n.Counts) || n.Counts[i].Node != r.dotID {
			n.Counts = append(n.Counts, Count{})
			copy(n.Counts[i+1:], n.Counts[i:])
			n.Counts[i] = Count{Node: r.dotID}
		}
		if d >= 0 {
			n.Counts[i].P += uint64(d)
		} else {
			n.Counts[i].N += uint64(-d)
		}
		return n, core.Int(n.counter()), nil, nil
	case "SADD", "SREM":
		changed := int64(0)
		for _, m := range args[1:] {
			i := sort.Search(len(n.Elems), func(i int) bool { return bytes.Compare(n.Elems[i].Val, m) >= 0 })
			present := i < len(n.Elems) && bytes.Equal(n.Elems[i].Val, m)
			if name == "SREM" {
				if present {
					n.Elems = append(n.Elems[:i], n.Elems[i+1:]...)
					changed++
				}
				continue
			}
			dot := Dot{Node: r.dotID, C: n.Clock.get(r.dotID) + 1}
			n.Clock = n.Clock.with(dot)
			if present {
				n.Elems[i].Dots = []Dot{dot}
				continue
			}
			n.Elems = append(n.Elems, Elem{})
			copy(n.Elems[i+1:], n.Elems[i:])
			n.Elems[i] = Elem{Val: append([]byte(nil), m...), Dots: []Dot{dot}}
			changed++
		}
		return n, core.Int(changed), nil, nil
	case "HSET", "HDEL":
		changed := int64(0)
		step := 2
		if name == "HDEL" {
			step = 1
		}
		for j := 1; j+step-1 < len(args); j += step {
			f := Field{Name: append([]byte(nil), args[j]...), TS: ts, Node: r.id, Del: name == "HDEL"}
			if name == "HSET" {
				f.Val = append([]byte(nil), args[j+1]...)
			}
			i := sort.Search(len(n.Fields), func(i int) bool { return bytes.Compare(n.Fields[i].Name, f.Name) >= 0 })
			present := i < len(n.Fields) && bytes.Equal(n.Fields[i].Name, f.Name)
			live := present && !n.Fields[i].Del
			switch {
			case name == "HDEL" && !live:
				continue
			case present:
				n.Fields[i] = f
			default:
				n.Fields = append(n.Fields, Field{})
				copy(n.Fields[i+1:], n.Fields[i:])
				n.Fields[i] = f
			}
			if name == "HDEL" || !live {
				changed++
			}
		}
		return n, core.Int(changed), nil, nil
	}
	return nil, core.Reply{}, nil, core.Errorf(core.CodeErr, "command %s is not supported by the quorum strategy; use a raft namespace", name)
}
