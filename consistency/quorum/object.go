package quorum

import (
	"bytes"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"

	"github.com/dialkv/dialkv/core"

	"github.com/dialkv/dialkv/consistency"
)

type nodeID = consistency.NodeID

// Dot is one event: the C-th write a node coordinated for one key.
type Dot struct {
	Node nodeID
	C    uint64
}

func (d Dot) less(o Dot) bool {
	if d.Node != o.Node {
		return d.Node < o.Node
	}
	return d.C < o.C
}

// VV is a version vector, sorted by node. VV[n] = c claims that every dot
// (n, 1..c) of the key has been seen (the contiguity that DVV keeps true by
// letting only an owner that holds all its own earlier dots mint new ones).
type VV []Dot

func (v VV) get(n nodeID) uint64 {
	i := sort.Search(len(v), func(i int) bool { return v[i].Node >= n })
	if i < len(v) && v[i].Node == n {
		return v[i].C
	}
	return 0
}

func (v VV) covers(d Dot) bool { return v.get(d.Node) >= d.C }

// join returns the pointwise maximum.
func (v VV) join(o VV) VV {
	out := make(VV, 0, len(v)+len(o))
	i, j := 0, 0
	for i < len(v) || j < len(o) {
		switch {
		case j == len(o) || (i < len(v) && v[i].Node < o[j].Node):
			out = append(out, v[i])
			i++
		case i == len(v) || o[j].Node < v[i].Node:
			out = append(out, o[j])
			j++
		default:
			c := v[i].C
			if o[j].C > c {
				c = o[j].C
			}
			out = append(out, Dot{v[i].Node, c})
			i++
			j++
		}
	}
	return out
}

// with returns v with n's entry raised to at least c.
func (v VV) with(d Dot) VV { return v.join(VV{d}) }

// Context is a causal context: a version vector plus loose dots that are not
// contiguous with it (a write's own dot). It is what a client hands back, in
// Request.Token, to say which versions its write supersedes.
type Context struct {
	VV   VV
	Dots []Dot
}

func (c Context) covers(d Dot) bool {
	if c.VV.covers(d) {
		return true
	}
	for _, x := range c.Dots {
		if x == d {
			return true
		}
	}
	return false
}

// Sibling is one concurrent version of a register.
type Sibling struct {
	Dot Dot
	TS  Timestamp // HLC time of the write, for last-write-wins and picking
	Del bool      // a tombstone: the write was a DEL
	Val []byte
}

// sibLess orders siblings by (HLC time, node, counter): the largest is the
// "last" write.
func sibLess(a, b Sibling) bool {
	if a.TS != b.TS {
		return a.TS.Less(b.TS)
	}
	return a.Dot.less(b.Dot)
}

// Kind is the data type a key holds.
type Kind uint8

// The kinds. In CRDT mode counters, sets and maps merge automatically;
// registers are multi-value (siblings) or last-write-wins.
const (
	KindRegister Kind = iota
	KindCounter       // PN-counter
	KindSet           // add-wins observed-remove set (ORSWOT)
	KindMap           // map of last-write-wins registers
)

func (k Kind) String() string {
	return [...]string{"register", "counter", "set", "map"}[k]
}

// Count is one node's share of a PN-counter.
type Count struct {
	Node nodeID
	P, N uint64
}

// Elem is one member of an OR-set with the dots of the adds that are live.
type Elem struct {
	Val  []byte
	Dots []Dot
}

// Field is one last-write-wins register of a map.
type Field struct {
	Name []byte
	Val  []byte
	TS   Timestamp
	Node nodeID
	Del  bool
}

func fieldWins(a, b Field) bool { // a beats b
	if a.TS != b.TS {
		return b.TS.Less(a.TS)
	}
	return a.Node > b.Node
}

// Object is everything a replica stores for one key. Clock is the causal
// context of the whole object: the join of the dots it has seen (register
// siblings and set adds share it).
type Object struct {
	Kind   Kind
	Clock  VV
	Mod    Timestamp // latest HLC time of any write merged in (tombstone age)
	Sibs   []Sibling // register, sorted by dot
	Counts []Count   // counter, sorted by node
	Elems  []Elem    // set, sorted by value
	Fields []Field   // map, sorted by name
}

func (o *Object) clone() *Object {
	if o == nil {
		return nil
	}
	c := *o
	c.Clock = append(VV(nil), o.Clock...)
	c.Sibs = append([]Sibling(nil), o.Sibs...)
	c.Counts = append([]Count(nil), o.Counts...)
	c.Elems = make([]Elem, len(o.Elems))
	for i, e := range o.Elems {
		c.Elems[i] = Elem{Val: e.Val, Dots: append([]Dot(nil), e.Dots...)}
	}
	c.Fields = append([]Field(nil), o.Fields...)
	return &c
}

// dead reports whether the object holds no user-visible value: a register
// of tombstones, an empty set or a map of deleted fields. Dead objects are
// kept (they stop older versions from coming back) until tombstone GC.
func (o *Object) dead() bool {
	switch o.Kind {
	case KindRegister:
		for _, s := range o.Sibs {
			if !s.Del {
				return false
			}
		}
		return true
	case KindSet:
		return len(o.Elems) == 0
	case KindMap:
		for _, f := range o.Fields {
			if !f.Del {
				return false
			}
		}
		return true
	}
	return false
}

// live returns the non-tombstone siblings, latest first.
func (o *Object) live() []Sibling {
	var out []Sibling
	for _, s := range o.Sibs {
		if !s.Del {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return sibLess(out[j], out[i]) })
	return out
}

// latest is the register's greatest sibling by sibLess, tombstones
// included (the value of an ABD register); false if it has none.
func (o *Object) latest() (Sibling, bool) {
	if o == nil || len(o.Sibs) == 0 {
		return Sibling{}, false
	}
	best := o.Sibs[0]
	for _, s := range o.Sibs[1:] {
		if sibLess(best, s) {
			best = s
		}
	}
	return best, true
}

func hasDot(ds []Dot, d Dot) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

// merge joins two replicas' objects of one key (the dotted causal container
// join): a version survives if both sides have it or the other side has not
// seen it. It is commutative, associative and idempotent. Different kinds
// (concurrent writes of different types) resolve to the larger kind.
func merge(a, b *Object) *Object {
	if a == nil {
		return b.clone()
	}
	if b == nil {
		return a.clone()
	}
	if a.Kind != b.Kind {
		if a.Kind > b.Kind {
			return a.clone()
		}
		return b.clone()
	}
	out := &Object{Kind: a.Kind, Clock: a.Clock.join(b.Clock), Mod: a.Mod}
	if out.Mod.Less(b.Mod) {
		out.Mod = b.Mod
	}
	switch a.Kind {
	case KindRegister:
		inB := map[Dot]bool{}
		for _, s := range b.Sibs {
			inB[s.Dot] = true
		}
		inA := map[Dot]bool{}
		for _, s := range a.Sibs {
			inA[s.Dot] = true
			if inB[s.Dot] || !b.Clock.covers(s.Dot) {
				out.Sibs = append(out.Sibs, s)
			}
		}
		for _, s := range b.Sibs {
			if !inA[s.Dot] && !a.Clock.covers(s.Dot) {
				out.Sibs = append(out.Sibs, s)
			}
		}
		sortSibs(out.Sibs)
	case KindCounter:
		m := map[nodeID]Count{}
		for _, c := range a.Counts {
			m[c.Node] = c
		}
		for _, c := range b.Counts {
			x := m[c.Node]
			x.Node = c.Node
			x.P = max(x.P, c.P)
			x.N = max(x.N, c.N)
			m[c.Node] = x
		}
		for _, c := range m {
			out.Counts = append(out.Counts, c)
		}
		sort.Slice(out.Counts, func(i, j int) bool { return out.Counts[i].Node < out.Counts[j].Node })
	case KindSet:
		// Both element lists are sorted by value: merge them in one pass.
		out.Elems = make([]Elem, 0, max(len(a.Elems), len(b.Elems)))
		i, j := 0, 0
		for i < len(a.Elems) || j < len(b.Elems) {
			var ad, bd []Dot
			var val []byte
			switch {
			case j == len(b.Elems) || (i < len(a.Elems) && bytes.Compare(a.Elems[i].Val, b.Elems[j].Val) < 0):
				ad, val = a.Elems[i].Dots, a.Elems[i].Val
				i++
			case i == len(a.Elems) || bytes.Compare(a.Elems[i].Val, b.Elems[j].Val) > 0:
				bd, val = b.Elems[j].Dots, b.Elems[j].Val
				j++
			default:
				ad, bd, val = a.Elems[i].Dots, b.Elems[j].Dots, a.Elems[i].Val
				i++
				j++
			}
			var ds []Dot
			for _, d := range ad {
				if hasDot(bd, d) || !b.Clock.covers(d) {
					ds = append(ds, d)
				}
			}
			for _, d := range bd {
				if !hasDot(ad, d) && !a.Clock.covers(d) {
					ds = append(ds, d)
				}
			}
			if len(ds) > 0 {
				for x := 1; x < len(ds); x++ { // insertion sort: a handful of dots
					for y := x; y > 0 && ds[y].less(ds[y-1]); y-- {
						ds[y], ds[y-1] = ds[y-1], ds[y]
					}
				}
				out.Elems = append(out.Elems, Elem{Val: val, Dots: ds})
			}
		}
	case KindMap:
		m := map[string]Field{}
		for _, f := range a.Fields {
			m[string(f.Name)] = f
		}
		for _, f := range b.Fields {
			if x, ok := m[string(f.Name)]; !ok || fieldWins(f, x) {
				m[string(f.Name)] = f
			}
		}
		for _, f := range m {
			out.Fields = append(out.Fields, f)
		}
		sort.Slice(out.Fields, func(i, j int) bool { return bytes.Compare(out.Fields[i].Name, out.Fields[j].Name) < 0 })
	}
	return out
}

func sortSibs(s []Sibling) { sort.Slice(s, func(i, j int) bool { return s[i].Dot.less(s[j].Dot) }) }

// lwwReduce keeps only the latest sibling (last-write-wins).
func (o *Object) lwwReduce() {
	if o.Kind != KindRegister || len(o.Sibs) <= 1 {
		return
	}
	best := o.Sibs[0]
	for _, s := range o.Sibs[1:] {
		if sibLess(best, s) {
			best = s
		}
	}
	o.Sibs = []Sibling{best}
}

// nextDot mints the coordinator's next dot for the object. Only an owner
// mints dots and it syncs the object before any message leaves, so its
// counter never repeats.
func (o *Object) nextDot(self nodeID, ctx Context) Dot {
	c := o.Clock.get(self)
	if x := ctx.VV.get(self); x > c {
		c = x
	}
	for _, d := range ctx.Dots {
		if d.Node == self && d.C > c {
			c = d.C
		}
	}
	return Dot{Node: self, C: c + 1}
}

// putSibling applies a register write (SET or DEL) with the client's
// context: siblings the context covers are superseded.
func putSibling(o *Object, ctx Context, s Sibling) *Object {
	out := &Object{Kind: KindRegister, Mod: s.TS}
	if o != nil {
		out.Clock = o.Clock
		if s.TS.Less(o.Mod) {
			out.Mod = o.Mod
		}
		for _, x := range o.Sibs {
			if !ctx.covers(x.Dot) {
				out.Sibs = append(out.Sibs, x)
			}
		}
	}
	out.Clock = out.Clock.join(ctx.VV).with(s.Dot)
	out.Sibs = append(out.Sibs, s)
	sortSibs(out.Sibs)
	return out
}

// digest is a 64-bit hash of the canonical encoding (for Merkle trees,
// repair decisions and tombstone-GC confirmations).
func (o *Object) digest() uint64 {
	if o == nil {
		return 0
	}
	h := fnv.New64a()
	h.Write(encodeObject(o))
	return core.Mix64(h.Sum64())
}

func encodeObject(o *Object) []byte {
	var e enc
	e.byte1(byte(o.Kind))
	e.u(uint64(len(o.Clock)))
	for _, d := range o.Clock {
		e.dot(d)
	}
	e.ts(o.Mod)
	switch o.Kind {
	case KindRegister:
		e.u(uint64(len(o.Sibs)))
		for _, s := range o.Sibs {
			e.dot(s.Dot)
			e.ts(s.TS)
			e.boolean(s.Del)
			e.bytes(s.Val)
		}
	case KindCounter:
		e.u(uint64(len(o.Counts)))
		for _, c := range o.Counts {
			e.str(string(c.Node))
			e.u(c.P)
			e.u(c.N)
		}
	case KindSet:
		e.u(uint64(len(o.Elems)))
		for _, x := range o.Elems {
			e.bytes(x.Val)
			e.u(uint64(len(x.Dots)))
			for _, d := range x.Dots {
				e.dot(d)
			}
		}
	case KindMap:
		e.u(uint64(len(o.Fields)))
		for _, f := range o.Fields {
			e.bytes(f.Name)
			e.bytes(f.Val)
			e.ts(f.TS)
			e.str(string(f.Node))
			e.boolean(f.Del)
		}
	}
	return e.b
}

func decodeObject(d *dec) *Object {
	o := &Object{Kind: Kind(d.byte1())}
	if o.Kind > KindMap {
		d.fail(errShort)
		return nil
	}
	for n := d.n(); n > 0 && d.err == nil; n-- {
		o.Clock = append(o.Clock, d.dot())
	}
	o.Mod = d.ts()
	switch o.Kind {
	case KindRegister:
		for n := d.n(); n > 0 && d.err == nil; n-- {
			o.Sibs = append(o.Sibs, Sibling{Dot: d.dot(), TS: d.ts(), Del: d.boolean(), Val: d.bytes()})
		}
	case KindCounter:
		for n := d.n(); n > 0 && d.err == nil; n-- {
			o.Counts = append(o.Counts, Count{Node: nodeID(d.str()), P: d.u(), N: d.u()})
		}
	case KindSet:
		for n := d.n(); n > 0 && d.err == nil; n-- {
			x := Elem{Val: d.bytes()}
			for m := d.n(); m > 0 && d.err == nil; m-- {
				x.Dots = append(x.Dots, d.dot())
			}
			o.Elems = append(o.Elems, x)
		}
	case KindMap:
		for n := d.n(); n > 0 && d.err == nil; n-- {
			o.Fields = append(o.Fields, Field{Name: d.bytes(), Val: d.bytes(), TS: d.ts(), Node: nodeID(d.str()), Del: d.boolean()})
		}
	}
	if d.err != nil {
		return nil
	}
	return o
}

func (o *Object) counter() int64 {
	var v int64
	for _, c := range o.Counts {
		v += int64(c.P) - int64(c.N)
	}
	return v
}

// render is the canonical user-visible rendering used by Dump: values and
// members sorted, tombstones omitted.
func (o *Object) render() string {
	switch o.Kind {
	case KindRegister:
		var vals []string
		for _, s := range o.live() {
			vals = append(vals, strconv.Quote(string(s.Val)))
		}
		sort.Strings(vals)
		if len(vals) == 1 {
			return vals[0]
		}
		return "siblings[" + strings.Join(vals, ",") + "]"
	case KindCounter:
		return "counter:" + strconv.FormatInt(o.counter(), 10)
	case KindSet:
		var vals []string
		for _, e := range o.Elems {
			vals = append(vals, strconv.Quote(string(e.Val)))
		}
		return "set{" + strings.Join(vals, ",") + "}"
	case KindMap:
		var vals []string
		for _, f := range o.Fields {
			if !f.Del {
				vals = append(vals, strconv.Quote(string(f.Name))+"="+strconv.Quote(string(f.Val)))
			}
		}
		return "map{" + strings.Join(vals, ",") + "}"
	}
	return ""
}
