package quorum

import (
	"fmt"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Message kinds between replicas.
const (
	mFwd       byte = iota + 1 // a write forwarded to an owner, which coordinates it
	mFwdReply                  // the owner's response to a forwarded write
	mGet                       // read one key (from the main store, or a hint)
	mGetResp                   // the object (or absence)
	mPut                       // merge an object (replication, hint, repair, handoff)
	mPutAck                    // merged and durable (ok=false: hint store full)
	mAAERoots                  // anti-entropy: Merkle roots of the shared segments
	mAAELeaves                 // anti-entropy: equal segments; leaves of differing ones
	mAAEPush                   // anti-entropy: objects of differing leaves (+ GC markers)
	mOffer                     // ring change: an old owner's digest of a key, for a new owner
	mOfferResp                 // the new owner's verdict (offerOK, offerLater, offerWant)
)

// Verdicts of an mOfferResp.
const (
	offerOK    byte = iota // the new owner's copy has exactly that digest: nothing to send
	offerLater             // it differs, first offer: ask again later (the pusher's copy may be on its way)
	offerWant              // it differs again: send the object
)

// msg is the decoded body of any message; fields are used per kind.
type msg struct {
	kind    byte
	ts      Timestamp // sender's HLC
	op      uint64
	key     string
	hintFor nodeID
	found   bool
	ok      bool
	obj     *Object
	req     consistency.Request
	resp    consistency.Response
	// anti-entropy
	segs    []uint32
	hashes  []uint64 // roots (mAAERoots) or 16 leaves per seg (mAAELeaves)
	equal   []uint32
	want    []uint32 // seg<<4 | leaf
	objs    []keyObj
	markers []keyDigest
	final   bool
	ringVer uint64 // AAE: the sender's ring version (0: not sent, an older sender)
	// covered (mPut) says that the sender sends the same object to the
	// key's new owners itself (a joint write's put, a handoff push): an
	// old owner that already handed the key off need not push it again.
	// A put without it (a hint delivered, a read repair) is pushed again
	// during a ring change's stream (rebalance.go, changedInStream).
	covered bool
	// putVer (mPut) is the sender's ring version (0: not sent, an older
	// sender): a node that is not in the receiver's ring and is behind it
	// (removed while down, back before it pulled the member list) has its
	// uncovered puts refused (receive.go).
	putVer uint64
	// mOffer, mOfferResp (rebalance.go)
	digest  uint64
	retry   bool
	verdict byte
}

type keyObj struct {
	key string
	obj *Object
}

type keyDigest struct {
	key    string
	digest uint64
}

func encodeMsg(m *msg) []byte {
	var e enc
	e.byte1(m.kind)
	e.ts(m.ts)
	e.u(m.op)
	switch m.kind {
	case mFwd:
		encodeRequest(&e, m.req)
	case mFwdReply:
		encodeResponse(&e, m.resp)
	case mGet:
		e.str(m.key)
		e.str(string(m.hintFor))
	case mGetResp:
		e.str(m.key)
		e.boolean(m.found)
		if m.found {
			e.bytes(encodeObject(m.obj))
		}
	case mPut:
		e.str(m.key)
		e.str(string(m.hintFor))
		e.bytes(encodeObject(m.obj))
		if m.covered || m.putVer != 0 {
			// Trailing fields: older decoders ignore them (and then push
			// again, which is only redundant, and accept the put).
			e.boolean(m.covered)
			e.u(m.putVer)
		}
	case mPutAck:
		e.boolean(m.ok)
	case mOffer:
		e.str(m.key)
		e.u64(m.digest)
		e.boolean(m.retry)
	case mOfferResp:
		e.byte1(m.verdict)
	case mAAERoots, mAAELeaves, mAAEPush:
		u32s := func(v []uint32) {
			e.u(uint64(len(v)))
			for _, x := range v {
				e.u(uint64(x))
			}
		}
		u32s(m.segs)
		e.u(uint64(len(m.hashes)))
		for _, h := range m.hashes {
			e.u64(h)
		}
		u32s(m.equal)
		u32s(m.want)
		e.u(uint64(len(m.objs)))
		for _, ko := range m.objs {
			e.str(ko.key)
			e.bytes(encodeObject(ko.obj))
		}
		e.u(uint64(len(m.markers)))
		for _, kd := range m.markers {
			e.str(kd.key)
			e.u64(kd.digest)
		}
		e.boolean(m.final)
		if m.ringVer != 0 {
			// A trailing field: older decoders ignore it.
			e.u(m.ringVer)
		}
	}
	return e.b
}

func decodeMsg(b []byte) (*msg, error) {
	d := &dec{b: b}
	m := &msg{kind: d.byte1(), ts: d.ts(), op: d.u()}
	obj := func() *Object {
		raw := d.bytes()
		if d.err != nil {
			return nil
		}
		od := &dec{b: raw}
		o := decodeObject(od)
		if od.err != nil {
			d.fail(od.err)
		}
		return o
	}
	switch m.kind {
	case mFwd:
		m.req = decodeRequest(d)
	case mFwdReply:
		m.resp = decodeResponse(d)
	case mGet:
		m.key = d.str()
		m.hintFor = nodeID(d.str())
	case mGetResp:
		m.key = d.str()
		if m.found = d.boolean(); m.found {
			m.obj = obj()
		}
	case mPut:
		m.key = d.str()
		m.hintFor = nodeID(d.str())
		m.obj = obj()
		if d.err == nil && len(d.b) > 0 {
			m.covered = d.boolean()
		}
		if d.err == nil && len(d.b) > 0 {
			m.putVer = d.u()
		}
	case mPutAck:
		m.ok = d.boolean()
	case mOffer:
		m.key = d.str()
		m.digest = d.u64()
		m.retry = d.boolean()
	case mOfferResp:
		m.verdict = d.byte1()
	case mAAERoots, mAAELeaves, mAAEPush:
		u32s := func() []uint32 {
			var v []uint32
			for n := d.n(); n > 0 && d.err == nil; n-- {
				v = append(v, uint32(d.u()))
			}
			return v
		}
		m.segs = u32s()
		for n := d.n(); n > 0 && d.err == nil; n-- {
			m.hashes = append(m.hashes, d.u64())
		}
		m.equal = u32s()
		m.want = u32s()
		for n := d.n(); n > 0 && d.err == nil; n-- {
			k := d.str()
			m.objs = append(m.objs, keyObj{k, obj()})
		}
		for n := d.n(); n > 0 && d.err == nil; n-- {
			m.markers = append(m.markers, keyDigest{d.str(), d.u64()})
		}
		m.final = d.boolean()
		if d.err == nil && len(d.b) > 0 {
			m.ringVer = d.u()
		}
	default:
		return nil, fmt.Errorf("quorum: unknown message kind %d", m.kind)
	}
	if d.err != nil {
		return nil, fmt.Errorf("quorum: decoding message kind %d: %w", m.kind, d.err)
	}
	return m, nil
}

func encodeRequest(e *enc, r consistency.Request) {
	e.u(r.ID)
	e.str(r.Client)
	e.str(r.Cmd.Name)
	e.u(uint64(len(r.Cmd.Args)))
	for _, a := range r.Cmd.Args {
		e.bytes(a)
	}
	e.i(int64(r.Opts.R))
	e.i(int64(r.Opts.W))
	e.boolean(r.Opts.Strict)
	e.str(r.Opts.Mode)
	e.str(r.Opts.Read)
	e.str(r.Opts.Repair)
	e.bytes(r.Token)
}

func decodeRequest(d *dec) consistency.Request {
	r := consistency.Request{ID: d.u(), Client: d.str()}
	c := &core.Command{Name: d.str()}
	for n := d.n(); n > 0 && d.err == nil; n-- {
		c.Args = append(c.Args, d.bytes())
	}
	r.Cmd = c
	r.Opts.R = int(d.i())
	r.Opts.W = int(d.i())
	r.Opts.Strict = d.boolean()
	r.Opts.Mode = d.str()
	r.Opts.Read = d.str()
	r.Opts.Repair = d.str()
	if t := d.bytes(); len(t) > 0 {
		r.Token = t
	}
	return r
}

func encodeReply(e *enc, r core.Reply) {
	e.byte1(byte(r.Kind))
	e.bytes(r.Str)
	e.i(r.Int)
	e.u(r.Version)
	if r.Kind == core.KindError && r.Err != nil {
		e.str(string(r.Err.Code))
		e.str(r.Err.Msg)
	}
	e.u(uint64(len(r.Array)))
	for _, x := range r.Array {
		encodeReply(e, x)
	}
}

func decodeReply(d *dec, depth int) core.Reply {
	r := core.Reply{Kind: core.Kind(d.byte1()), Str: d.bytes(), Int: d.i(), Version: d.u()}
	if r.Kind == core.KindError {
		r.Err = &core.Error{Code: core.Code(d.str()), Msg: d.str()}
	}
	n := d.n()
	if depth > 8 && n > 0 {
		d.fail(fmt.Errorf("quorum: reply nested too deep"))
		return r
	}
	for ; n > 0 && d.err == nil; n-- {
		r.Array = append(r.Array, decodeReply(d, depth+1))
	}
	if r.Kind == core.KindArray && r.Array == nil {
		r.Array = []core.Reply{}
	}
	return r
}

func encodeResponse(e *enc, r consistency.Response) {
	e.u(r.ID)
	encodeReply(e, r.Reply)
	e.bytes(r.Token)
	e.u(uint64(len(r.Values)))
	for _, v := range r.Values {
		e.bytes(v)
	}
}

func decodeResponse(d *dec) consistency.Response {
	r := consistency.Response{ID: d.u()}
	r.Reply = decodeReply(d, 0)
	if t := d.bytes(); len(t) > 0 {
		r.Token = t
	}
	for n := d.n(); n > 0 && d.err == nil; n-- {
		r.Values = append(r.Values, d.bytes())
	}
	return r
}

// Tokens: the causal context of one key, bound to the key by a hash so that
// a token sent with a request for another key is ignored rather than
// superseding unrelated versions.

func encodeToken(key string, c Context) []byte {
	var e enc
	e.byte1('Q')
	e.u64(hashString(key))
	e.u(uint64(len(c.VV)))
	for _, d := range c.VV {
		e.dot(d)
	}
	e.u(uint64(len(c.Dots)))
	for _, d := range c.Dots {
		e.dot(d)
	}
	return e.b
}

// decodeToken returns the context a token carries for key (empty if the
// token is absent, for another key, or not ours).
func decodeToken(key string, tok []byte) Context {
	if len(tok) == 0 {
		return Context{}
	}
	d := &dec{b: tok}
	if d.byte1() != 'Q' || d.u64() != hashString(key) {
		return Context{}
	}
	var c Context
	for n := d.n(); n > 0 && d.err == nil; n-- {
		c.VV = append(c.VV, d.dot())
	}
	for n := d.n(); n > 0 && d.err == nil; n-- {
		c.Dots = append(c.Dots, d.dot())
	}
	if d.err != nil {
		return Context{}
	}
	// Normalise: a VV from the wire must be sorted for get/join.
	c.VV = sortedVV(c.VV)
	return c
}

func sortedVV(v VV) VV {
	out := VV{}
	for _, d := range v {
		out = out.with(d)
	}
	return out
}
