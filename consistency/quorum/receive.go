package quorum

import (
	"sort"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Receive hands the replica a message from a peer. Undecodable messages are
// dropped (the network may corrupt; the sender retries or times out).
func (r *Replica) Receive(now time.Time, m consistency.Message) {
	r.now = now
	r.ensureEpoch(now)
	x, err := decodeMsg(m.Body)
	if err != nil {
		return
	}
	r.clock.observe(x.ts)
	from := m.From
	delete(r.suspect, from) // it answered: it is alive
	r.heard[from] = now
	switch x.kind {
	case mFwd:
		if !r.firstForward(fwdKey{from: from, op: x.op, ts: x.ts}) {
			return // a duplicate delivery of a forward already taken
		}
		r.handleRequest(x.req, from, x.op)
	case mFwdReply:
		if o := r.ops[x.op]; o != nil && o.fwdTo != "" {
			delete(r.ops, o.id)
			r.respond(o, x.resp)
		}
	case mGet:
		obj := r.localObj(x.key, x.hintFor)
		r.send(from, &msg{kind: mGetResp, op: x.op, key: x.key, found: obj != nil, obj: obj})
	case mGetResp:
		o := r.ops[x.op]
		if o == nil || o.resps == nil || o.key != x.key {
			return
		}
		if _, dup := o.resps[from]; dup {
			return
		}
		o.resps[from] = x.obj
		switch o.phase {
		case 0:
			r.progress(o)
		case 2: // late answer after the reply: repair it asynchronously
			if o.repair != RepairOff && x.obj != nil {
				o.merged = r.merge(o.merged, x.obj)
				r.normalize(o.merged)
			}
			if o.repair != RepairOff && o.merged != nil {
				r.asyncRepair(o)
			}
			r.maybeDone(o)
		}
	case mPut:
		if r.staleOutsider(from, x) {
			// Refused, not applied: the sender coordinates with a ring it
			// is no longer in (see staleOutsider); its write gets no ack
			// from us, and a hint it delivers is retried once it caught up.
			if x.op != 0 {
				r.send(from, &msg{kind: mPutAck, op: x.op, ok: false})
			}
			return
		}
		ok := true
		var err error
		switch {
		case x.hintFor == "" && r.prev == nil && !r.ring.isOwner(r.ring.segment(x.key), r.id):
			// A put from a node still in a ring change we finished (we
			// owned the key in the old ring): keep it for the owners.
			for _, o := range r.ring.owners(r.ring.segment(x.key)) {
				if err = r.rehome(o, x.key, x.obj); err != nil {
					break
				}
			}
		case x.hintFor == "" || x.hintFor == r.id:
			err = r.mergeMainFrom(x.key, x.obj, x.covered)
		default:
			ok, err = r.storeHint(x.hintFor, x.key, x.obj)
		}
		if err != nil {
			return // not durable: no ack
		}
		if x.op != 0 {
			r.send(from, &msg{kind: mPutAck, op: x.op, ok: ok})
		}
	case mPutAck:
		if ho, found := r.hintOps[x.op]; found {
			r.hintAcked(x.op, ho, x.ok)
			return
		}
		if ho, found := r.handOps[x.op]; found {
			r.handAcked(x.op, ho, x.ok)
			return
		}
		o := r.ops[x.op]
		if o == nil || o.phase != 1 || !o.sent[from] {
			return
		}
		if x.ok {
			o.acks[from] = true
		} else {
			delete(o.sent, from) // refused (hint store full): not an ack
		}
		r.progress(o)
	case mOffer:
		r.send(from, &msg{kind: mOfferResp, op: x.op, verdict: r.offerVerdict(x.key, x.digest, x.retry)})
	case mOfferResp:
		if h, found := r.handOps[x.op]; found && h.offer {
			r.offerAnswered(x.op, h, x.verdict)
		}
	case mAAERoots, mAAELeaves, mAAEPush:
		// Segments are numbered per ring: exchanges across ring versions,
		// or during a change, are ignored (the stream moves the data).
		if r.prev != nil || x.ringVer != 0 && x.ringVer != r.ringVer {
			return
		}
		r.onAAE(from, x)
	}
}

// staleOutsider reports whether a put comes from a node that is in
// neither of our rings (members, or during a change the previous ones) and
// is on an older ring version, without the covered flag of a joint write
// or a handoff push: a node removed while it was down that came back and
// still coordinates with the member list it had (it pulls the new one
// within a catalog sync). Acknowledging its writes would count a node
// that owns nothing towards W: a write acknowledged by it and by one new
// owner would sit on that owner only. Refused, its writes time out
// (outcome unknown) until it adopts the new list, which turns what it
// holds into hints for the owners (settleRing). An older sender (no
// version) is accepted.
func (r *Replica) staleOutsider(from nodeID, x *msg) bool {
	if x.covered || x.putVer == 0 || x.putVer >= r.ringVer || hasID(r.ring.members, from) {
		return false
	}
	return r.prev == nil || !hasID(r.prev.members, from)
}

func (r *Replica) onAAE(from nodeID, x *msg) {
	switch x.kind {
	case mAAERoots:
		r.onAAERoots(from, x)
	case mAAELeaves:
		r.onAAELeaves(from, x)
	case mAAEPush:
		r.onAAEPush(from, x)
	}
}

// Tick expires requests, delivers hints and runs anti-entropy.
func (r *Replica) Tick(now time.Time) {
	r.now = now
	r.ensureEpoch(now)
	var ids []uint64
	for id, o := range r.ops {
		if !now.Before(o.deadline) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		r.expire(r.ops[id])
	}
	ids = ids[:0]
	for id, h := range r.hintOps {
		if !now.Before(h.deadline) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		h := r.hintOps[id]
		delete(r.hintOps, id)
		r.hintInflight[h.owner]--
		r.suspectPeer(h.owner)
	}
	if !now.Before(r.nextHint) {
		r.nextHint = now.Add(r.p.hintInterval)
		r.deliverHints()
	}
	r.pumpHandoff()
	if r.nextAAE.IsZero() { // first tick: start the rotation one interval in, jittered
		r.nextAAE = now.Add(r.p.aaeInterval + time.Duration(r.jitter(int64(r.p.aaeInterval))))
	}
	if !now.Before(r.nextAAE) {
		r.nextAAE = now.Add(r.p.aaeInterval)
		r.startAAE()
	}
}

func (r *Replica) suspectPeer(n nodeID) {
	if n != r.id {
		r.suspect[n] = r.now.Add(r.p.suspectFor)
	}
}

// expire ends a request at its deadline: peers that did not answer are
// suspected, and an unanswered client gets a TIMEOUT (outcome unknown).
func (r *Replica) expire(o *op) {
	delete(r.ops, o.id)
	switch {
	case o.fwdTo != "":
		r.suspectPeer(o.fwdTo)
	case o.phase == 0:
		for _, t := range o.targets {
			if _, ok := o.resps[t.node]; !ok {
				r.suspectPeer(t.node)
			}
		}
	case o.phase == 1:
		for n := range o.sent {
			if !o.acks[n] {
				r.suspectPeer(n)
			}
		}
	}
	if o.replied {
		return
	}
	if !o.write && !o.lin && o.phase == 1 {
		// Sync read repair is best effort: the read itself had its R
		// answers, so it still gets them.
		r.respond(o, o.reply)
		return
	}
	r.stats.Timeouts++
	what := "answers"
	got, need := len(o.resps), o.r
	if o.phase == 1 {
		what, got, need = "acks", len(o.acks), o.need
	}
	if o.fwdTo != "" {
		what, got, need = "reply from owner "+string(o.fwdTo), 0, 1
	}
	r.respond(o, errReply(o.req.ID, core.Errorf(consistency.CodeTimeout,
		"quorum not reached for %q: %d of %d %s within %v (outcome unknown)", o.key, got, need, what, r.p.timeout)))
}

// deliverHints sends a few hints to each owner that has none in flight.
// Owners that are suspected are tried too: an answer is how we learn they
// are back.
func (r *Replica) deliverHints() {
	var owners []nodeID
	for o, hm := range r.hints {
		if len(hm) > 0 && r.hintInflight[o] == 0 {
			owners = append(owners, o)
		}
	}
	sort.Slice(owners, func(i, j int) bool { return owners[i] < owners[j] })
	const batch = 32
	for _, owner := range owners {
		var keys []string
		for k := range r.hints[owner] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if len(keys) > batch {
			keys = keys[:batch]
		}
		for _, k := range keys {
			e := r.hints[owner][k]
			id := r.newID()
			r.hintOps[id] = hintOp{owner: owner, key: k, digest: e.digest, deadline: r.now.Add(r.p.timeout)}
			r.hintInflight[owner]++
			r.send(owner, &msg{kind: mPut, op: id, key: k, obj: e.obj})
		}
	}
}

func (r *Replica) hintAcked(id uint64, h hintOp, ok bool) {
	delete(r.hintOps, id)
	r.hintInflight[h.owner]--
	e := r.hints[h.owner][h.key]
	if !ok || e == nil || e.digest != h.digest {
		return // changed meanwhile: deliver the newer copy next round
	}
	if err := r.persist(hintKey(h.owner, h.key), nil); err != nil {
		return
	}
	delete(r.hints[h.owner], h.key)
	r.nhints--
	r.stats.HintsDelivered++
}

// Dump renders every live key of the main store (hints and tombstones are
// not user-visible).
func (r *Replica) Dump(now time.Time) (map[string]string, error) {
	out := make(map[string]string, len(r.objs))
	for k, e := range r.objs {
		if !e.obj.dead() {
			out[k] = e.obj.render()
		}
	}
	return out, nil
}

// fwdKey names one sent forward: the sender stamps every message with a
// fresh HLC reading (persisted, so greater after a restart too, when its op
// ids start again), so a duplicate delivery carries the same key and a new
// forward never does.
type fwdKey struct {
	from nodeID
	op   uint64
	ts   Timestamp
}

// fwdSeenMax bounds the forwards remembered for deduplication; a duplicate
// delivered after this many later forwards would run again.
const fwdSeenMax = 4096

// firstForward records k and reports whether it was new.
func (r *Replica) firstForward(k fwdKey) bool {
	if r.fwdSeen[k] {
		return false
	}
	r.fwdSeen[k] = true
	r.fwdOrd = append(r.fwdOrd, k)
	for len(r.fwdOrd) > fwdSeenMax {
		delete(r.fwdSeen, r.fwdOrd[0])
		r.fwdOrd = r.fwdOrd[1:]
	}
	return true
}
