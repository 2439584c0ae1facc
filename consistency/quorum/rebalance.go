package quorum

import (
	"fmt"
	"sort"
	"time"

	"github.com/dialkv/dialkv/consistency"
)

// Ring changes (dynamic membership). A change from ring A (the members
// before) to ring B (after) goes through three states, which the driver
// (the node, told by `dialkv admin add-node/remove-node`) hands every
// replica with SetRing, in this order, each one only after every replica
// of the cluster has taken the one before:
//
//  1. joint (Prev=A, Members=B, Stream=false): writes are coordinated by
//     an owner in A and must be acknowledged by W owners of A and by
//     min(W, |owners in B|) owners of B; reads ask the owners of A and the
//     owners of B that are not in A and need R answers among each. So a
//     write acknowledged under A, B or joint is seen by a read under any
//     of them.
//  2. stream (the same, Stream=true): every owner in A of a key whose
//     preference list gained nodes hands the key's object (DVV, siblings,
//     tombstones) to each gained node, batched and throttled, each push
//     acknowledged once durable. With handoff=one (the default) only the
//     key's pusher sends the object; the other owners offer a digest and
//     send theirs only to a node whose copy differs (pusher,
//     offerVerdict). The replica reports done (RingStatus
//     Pending 0) when no push is queued or unacknowledged and it holds no
//     hints. Writes during the stream need no push (they reach the new
//     owners too: their puts say so, msg.covered); an object that changes
//     after its push for another reason (a hint of a write from before
//     the change delivered late, a read repair) is pushed again
//     (changedInStream), and a push not acknowledged when the stable ring
//     comes becomes a hint. A covered change at an owner that leaves the
//     key is only marked dirty — not counted as pending, so that a steady
//     write load cannot hold the change back.
//  3. stable (Prev=nil, Members=B): the ring is B. A replica whose stream
//     finished drops the objects it no longer owns (every new owner
//     acknowledged them) except dirty ones; those, and all of them when
//     the stream did not finish, become hints for their new owners, so
//     they leave only once acknowledged. Tombstone-GC confirmations are
//     reset (segments were renumbered).
//
// Anti-entropy and tombstone GC pause during a change (their segments are
// those of one ring); AAE messages carry the ring version and are ignored
// by a replica on another version.
//
// Hints held for a node that leaves (in Prev, not in Members) are, from
// the stream on, kept for the key's new owners instead (rehomed at the
// stream's start, and as they arrive): the leaving node would only have
// to push them on, and a leaving node that is down never takes them.
//
// Removing a node that is down (RingState.Down): it takes no state,
// pushes nothing, and from the joint state on counts in no quorum (it is
// neither asked nor stood in for by a fallback's hint: the old group of
// its keys is their other old owners); the replicas that stay hand its
// keys off from their own copies. A key that loses a down owner is pushed by each of its
// surviving old owners to every other new owner (not only to the gained
// ones), so each new owner ends with the merge of the surviving copies:
// a write acknowledged by W>=2 owners has one on a surviving owner or as
// a hint, and reaches every new owner. The down node's own copies are not
// needed; if it comes back, it adopts the stable ring, owns nothing, and
// its objects become hints for their owners (settleRing).

// RingState is the membership a replica's ring is built from.
type RingState struct {
	// Version orders ring states; a replica ignores a state whose version
	// is not above the one it has.
	Version uint64
	// Members are the ring's nodes (during a change: the ring after it).
	Members []consistency.NodeID
	// Prev, during a change, are the ring's nodes before it; nil when the
	// ring is stable.
	Prev []consistency.NodeID
	// Stream, during a change, starts the handoff of changed segments.
	Stream bool
	// Down, during a change, are nodes of Prev, not of Members, that are
	// down and removed without their cooperation (see above): their keys
	// are handed off from the surviving owners' merged copies.
	Down []consistency.NodeID
}

// RingStatus is what a replica reports about a ring change.
type RingStatus struct {
	Version uint64 `json:"version"`
	// Pending is Queued+Inflight+Hints; a change may be committed once
	// every replica reports 0 in its stream state.
	Pending int `json:"pending"`
	// Queued and Inflight are the pushes not sent yet and those sent but
	// not acknowledged; Hints the hints this replica holds for others.
	Queued   int `json:"queued"`
	Inflight int `json:"inflight"`
	Hints    int `json:"hints"`
	// Moved counts the objects pushed to new owners and acknowledged by
	// them (this incarnation).
	Moved int `json:"moved"`
	// Offered counts the offers (handoff=one) a new owner answered with
	// "I have that copy": objects not sent. Bytes is what the pushes and
	// offers sent weighed (message bodies, retries included).
	Offered int   `json:"offered,omitempty"`
	Bytes   int64 `json:"bytes,omitempty"`
	// Strategy and Paused are set by nodes for a causal namespace, whose
	// status CLUSTER RING reports in this form (causal.RingStatus):
	// Paused while it refuses clients for a change; quorum never pauses.
	Strategy string `json:"strategy,omitempty"`
	Paused   bool   `json:"paused,omitempty"`
}

type handItem struct {
	key  string
	dest nodeID
}

type handOp struct {
	handItem
	deadline time.Time
	offer    bool // an mOffer (handoff=one), not an mPut
}

// handoffBatch bounds the pushes in flight to one destination (the
// throttle: a new push starts when an ack comes back).
const handoffBatch = 64

// SetRing hands the replica a ring state (see the comment above). States
// must come in order; an older or equal version is ignored.
func (r *Replica) SetRing(now time.Time, s RingState) error {
	r.now = now
	if s.Version <= r.ringVer {
		return nil
	}
	if len(s.Members) == 0 {
		return fmt.Errorf("quorum: ring version %d has no members", s.Version)
	}
	wasStream := r.prev != nil && r.stream
	// A node removed as down that took part anyway (it pulled the list)
	// pushed nothing: it keeps what it held as hints (settleRing).
	done := wasStream && r.pendingHandoff() == 0 && !r.downLeaving[r.id]
	// Keys whose last version may not have reached their new owners, and
	// the pushes not acknowledged (a key we keep: only those dests).
	unsure := r.handDirty
	var unsent []handItem
	for _, it := range r.handQ {
		unsure[it.key] = true
		unsent = append(unsent, it)
	}
	for _, h := range r.handOps {
		unsure[h.key] = true
		unsent = append(unsent, h.handItem)
	}
	r.handDirty = map[string]bool{}
	r.ringVer = s.Version
	r.ring = newRing(sortedIDs(s.Members), r.p.vnodes, r.p.n)
	r.handQ, r.handSet, r.handOps, r.handInflight = nil, map[handItem]bool{}, map[uint64]handOp{}, map[nodeID]int{}
	r.handRetry, r.handFull = map[handItem]bool{}, map[handItem]bool{}
	r.conf = map[string]map[nodeID]uint64{}
	r.downLeaving = map[nodeID]bool{}
	if s.Prev != nil {
		r.prev = newRing(sortedIDs(s.Prev), r.p.vnodes, r.p.n)
		r.stream = s.Stream
		for _, d := range s.Down {
			if !hasID(r.ring.members, d) {
				r.downLeaving[d] = true
			}
		}
	} else {
		r.prev, r.stream = nil, false
	}
	for k, e := range r.objs {
		e.seg = r.ring.segment(k)
	}
	for _, hm := range r.hints {
		for k, e := range hm {
			e.seg = r.ring.segment(k)
		}
	}
	r.rebuildShared()
	if r.prev != nil {
		if r.stream {
			if err := r.rehomeLeaving(); err != nil {
				return err
			}
			keys := make([]string, 0, len(r.objs))
			for k := range r.objs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				r.enqueueHandoff(k)
			}
		}
		return nil
	}
	return r.settleRing(done, unsure, unsent)
}

// settleRing, on a stable ring, moves out what this replica no longer
// owns: dropped when its stream finished (the new owners acknowledged
// it), else kept as hints for the new owners. Hints held for nodes no
// longer in the ring go to their key's owners the same way. A push of a
// key we keep that was not acknowledged (unsent: a push queued again by
// changedInStream after the driver last saw the replica idle) becomes a
// hint for its destination, so it is still delivered.
func (r *Replica) settleRing(streamed bool, unsure map[string]bool, unsent []handItem) error {
	sort.Slice(unsent, func(i, j int) bool {
		if unsent[i].key != unsent[j].key {
			return unsent[i].key < unsent[j].key
		}
		return unsent[i].dest < unsent[j].dest
	})
	for _, it := range unsent {
		e := r.objs[it.key]
		if e == nil || !r.ring.isOwner(e.seg, r.id) || !r.ring.isOwner(e.seg, it.dest) {
			continue // a key we drop is handled below
		}
		if err := r.rehome(it.dest, it.key, e.obj); err != nil {
			return err
		}
	}
	var keys []string
	for k, e := range r.objs {
		if !r.ring.isOwner(e.seg, r.id) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		e := r.objs[k]
		if !streamed || unsure[k] {
			for _, o := range r.ring.owners(e.seg) {
				if err := r.rehome(o, k, e.obj); err != nil {
					return err
				}
			}
		}
		if err := r.persist(prefixObj+k, nil); err != nil {
			return err
		}
		delete(r.objs, k)
	}
	return r.rehomeLeaving()
}

// rehomeLeaving keeps the hints held for nodes that are not in the (new)
// ring for their keys' owners in it instead.
func (r *Replica) rehomeLeaving() error {
	var gone []nodeID
	for o := range r.hints {
		if !hasID(r.ring.members, o) {
			gone = append(gone, o)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i] < gone[j] })
	for _, g := range gone {
		var hk []string
		for k := range r.hints[g] {
			hk = append(hk, k)
		}
		sort.Strings(hk)
		for _, k := range hk {
			e := r.hints[g][k]
			for _, o := range r.ring.owners(r.ring.segment(k)) {
				if err := r.rehome(o, k, e.obj); err != nil {
					return err
				}
			}
			if err := r.persist(hintKey(g, k), nil); err != nil {
				return err
			}
			delete(r.hints[g], k)
			r.nhints--
		}
		delete(r.hints, g)
	}
	return nil
}

// rehome keeps obj for owner: in the main store if that is us, else as a
// hint (not bounded by hint_limit: it is data we already hold).
func (r *Replica) rehome(owner nodeID, key string, obj *Object) error {
	if owner == r.id {
		return r.mergeMain(key, obj)
	}
	hm := r.hints[owner]
	if hm == nil {
		hm = map[string]*entry{}
		r.hints[owner] = hm
	}
	e := hm[key]
	if e == nil {
		e = &entry{seg: r.ring.segment(key)}
		r.nhints++
	}
	n := r.merge(e.obj, obj)
	if err := r.persist(hintKey(owner, key), n); err != nil {
		return err
	}
	e.obj, e.digest = n, n.digest()
	hm[key] = e
	return nil
}

func sortedIDs(ids []consistency.NodeID) []nodeID {
	out := append([]nodeID(nil), ids...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// rebuildShared recomputes the segments this replica shares with each
// peer (anti-entropy).
func (r *Replica) rebuildShared() {
	r.shared = map[nodeID][]uint32{}
	r.aaePeers = nil
	for seg := range r.ring.walks {
		if !r.ring.isOwner(seg, r.id) {
			continue
		}
		for _, o := range r.ring.owners(seg) {
			if o != r.id {
				r.shared[o] = append(r.shared[o], uint32(seg))
			}
		}
	}
	for x := range r.shared {
		r.aaePeers = append(r.aaePeers, x)
	}
	sort.Slice(r.aaePeers, func(i, j int) bool { return r.aaePeers[i] < r.aaePeers[j] })
	if len(r.aaePeers) > 0 {
		r.aaePeer = int(r.jitter(int64(len(r.aaePeers))))
	}
}

// changing reports whether a ring change is under way.
func (r *Replica) changing() bool { return r.prev != nil }

// gained lists the owners of key in the new ring that are not owners in
// the old one (nil when the ring is stable).
func (r *Replica) gained(key string) []nodeID {
	if r.prev == nil {
		return nil
	}
	old := r.prev.owners(r.prev.segment(key))
	var out []nodeID
	for _, x := range r.ring.owners(r.ring.segment(key)) {
		if !hasID(old, x) {
			out = append(out, x)
		}
	}
	return out
}

func hasID(s []nodeID, x nodeID) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// handoffDests are the nodes an old owner pushes key to: those that gain
// it, or, when one of its old owners is down and removed, every new owner
// (the surviving copies are merged at each of them).
func (r *Replica) handoffDests(key string) []nodeID {
	if len(r.downLeaving) > 0 {
		for _, x := range r.prev.owners(r.prev.segment(key)) {
			if r.downLeaving[x] {
				return r.ring.owners(r.ring.segment(key))
			}
		}
	}
	return r.gained(key)
}

// enqueueHandoff queues key for the nodes it is pushed to (handoffDests),
// if we own it in the old ring and the stream runs.
func (r *Replica) enqueueHandoff(key string) {
	if r.prev == nil || !r.stream || !r.prev.isOwner(r.prev.segment(key), r.id) || r.downLeaving[r.id] {
		return
	}
	for _, d := range r.handoffDests(key) {
		if d == r.id {
			continue
		}
		it := handItem{key, d}
		if !r.handSet[it] {
			r.handSet[it] = true
			r.handQ = append(r.handQ, it)
		}
	}
}

// changedInStream is called when the main store's object of key changed
// during a ring change's stream, at an old owner of key (else it does
// nothing). covered says the write reaches the key's new owners without
// us (a joint write, a handoff push). One that does not — a hint
// delivered late, a read repair — is pushed again (queued like the
// stream's pushes, so the change waits for it; an ordering rule: a hint
// delivered after this replica pushed the key's segment would otherwise
// reach the new owners only with anti-entropy after the change, and with
// the write's coordinator removed as down it may sit on fewer than W of
// them meanwhile). A covered change at an owner that will not own the key
// is only marked dirty: settleRing keeps it as hints for the new owners
// instead of dropping it, and a steady write load on hot keys does not
// hold the stream back.
func (r *Replica) changedInStream(key string, covered bool) {
	if r.prev == nil || !r.stream || r.downLeaving[r.id] || !r.prev.isOwner(r.prev.segment(key), r.id) {
		return
	}
	if !covered {
		r.enqueueHandoff(key)
		return
	}
	if !r.ring.isOwner(r.ring.segment(key), r.id) {
		r.handDirty[key] = true
	}
}

// pumpHandoff sends queued pushes, at most handoffBatch in flight per
// destination; pushes that time out are queued again.
func (r *Replica) pumpHandoff() {
	if r.prev == nil || !r.stream {
		return
	}
	var ids []uint64
	for id, h := range r.handOps {
		if !r.now.Before(h.deadline) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		h := r.handOps[id]
		delete(r.handOps, id)
		r.handInflight[h.dest]--
		if h.offer {
			// Unanswered (the new owner may not know offers, or is
			// slow): fall back to pushing the object.
			r.handFull[h.handItem] = true
		}
		if !r.handSet[h.handItem] {
			r.handSet[h.handItem] = true
			r.handQ = append(r.handQ, h.handItem)
		}
	}
	keep := r.handQ[:0]
	for _, it := range r.handQ {
		if r.handInflight[it.dest] >= handoffBatch {
			keep = append(keep, it)
			continue
		}
		delete(r.handSet, it)
		e := r.objs[it.key]
		if e == nil {
			continue // collected meanwhile (GC pauses during a change: not expected)
		}
		id := r.newID()
		offer := r.p.handoff == HandoffOne && !r.handFull[it] && r.pusher(it.key) != r.id
		r.handOps[id] = handOp{handItem: it, deadline: r.now.Add(r.p.timeout), offer: offer}
		r.handInflight[it.dest]++
		if offer {
			r.send(it.dest, &msg{kind: mOffer, op: id, key: it.key, digest: e.digest, retry: r.handRetry[it]})
		} else {
			r.send(it.dest, &msg{kind: mPut, op: id, key: it.key, obj: e.obj, covered: true})
		}
		r.stats.HandoffBytes += int64(len(r.out.Messages[len(r.out.Messages)-1].Body))
	}
	r.handQ = keep
}

// pusher is the old owner of key that pushes its object under
// handoff=one: the first of the old preference list not removed as down.
// The other old owners offer their copy's digest to each new owner
// instead (offerVerdict), and send the object only when that owner's copy
// differs. Electing the pusher alone would not do: a write acknowledged
// by W=2 of the 3 old owners may be missing from it (it was cut off, and
// the write's hint went elsewhere or was strict), and pushing only its
// copy would lose that write once the others leave the key.
func (r *Replica) pusher(key string) nodeID {
	for _, x := range r.prev.owners(r.prev.segment(key)) {
		if !r.downLeaving[x] {
			return x
		}
	}
	return ""
}

// offerVerdict is a new owner's answer to an old owner's offer of key
// with digest: offerOK when its own copy has exactly that digest (it then
// holds that version: merges only grow, and it was made durable before
// this answer leaves); else offerLater the first time (the pusher's copy
// may still be on its way: the offer is queued again behind the other
// pushes) and offerWant when asked again (then the old owner pushes its
// object: the new owner ends with every old owner's copy merged, as when
// each pushed).
func (r *Replica) offerVerdict(key string, digest uint64, retry bool) byte {
	if e := r.objs[key]; e != nil && e.digest == digest {
		return offerOK
	}
	if !retry {
		return offerLater
	}
	return offerWant
}

// offerAnswered ends an offer: done when the new owner holds our copy,
// else queued again (as a second offer, or as a push of the object).
func (r *Replica) offerAnswered(id uint64, h handOp, verdict byte) {
	delete(r.handOps, id)
	r.handInflight[h.dest]--
	switch verdict {
	case offerOK:
		delete(r.handRetry, h.handItem)
		r.stats.Offered++
		return
	case offerLater:
		r.handRetry[h.handItem] = true
	default:
		r.handFull[h.handItem] = true
	}
	if !r.handSet[h.handItem] {
		r.handSet[h.handItem] = true
		r.handQ = append(r.handQ, h.handItem)
	}
}

// handAcked ends a push; a refused one is queued again.
func (r *Replica) handAcked(id uint64, h handOp, ok bool) {
	delete(r.handOps, id)
	r.handInflight[h.dest]--
	if !ok {
		if !r.handSet[h.handItem] {
			r.handSet[h.handItem] = true
			r.handQ = append(r.handQ, h.handItem)
		}
		return
	}
	delete(r.handRetry, h.handItem)
	delete(r.handFull, h.handItem)
	r.stats.HandedOff++
}

func (r *Replica) pendingHandoff() int { return len(r.handQ) + len(r.handOps) + r.nhints }

// RingStatus reports the ring version this replica has and how much of a
// ring change's handoff is left.
func (r *Replica) RingStatus() RingStatus {
	return RingStatus{Version: r.ringVer, Pending: r.pendingHandoff(), Queued: len(r.handQ), Inflight: len(r.handOps),
		Hints: r.nhints, Moved: r.stats.HandedOff, Offered: r.stats.Offered, Bytes: r.stats.HandoffBytes}
}

// jointTargets adds to an op's targets (those of the old ring) the nodes
// that gain its key, and records the two owner groups its quorums count.
func (r *Replica) jointTargets(o *op) {
	o.oldOwn = map[nodeID]bool{}
	o.newOwn = map[nodeID]bool{}
	for _, x := range r.prev.owners(r.prev.segment(o.key)) {
		if !r.downLeaving[x] { // removed as down: in no quorum
			o.oldOwn[x] = true
		}
	}
	for _, x := range r.ring.owners(r.ring.segment(o.key)) {
		o.newOwn[x] = true
	}
	has := map[nodeID]bool{}
	for _, t := range o.targets {
		has[t.node] = true
	}
	for _, x := range r.gained(o.key) {
		if !has[x] {
			o.targets = append(o.targets, target{node: x})
		}
	}
}

// met reports whether the nodes that answered (or acked) meet need: a
// plain count, or during a ring change min(need, old owners) among the old
// owners and min(need, new owners) among the new ones (the old owners
// without those removed as down: they count in no quorum). A hinted answer counts for
// the owner it stands in for in the old group only.
func (o *op) met(answered func(nodeID) bool, need int, joint bool) bool {
	if !joint || o.newOwn == nil {
		n := 0
		for _, t := range o.targets {
			if answered(t.node) {
				n++
			}
		}
		return n >= need
	}
	oldN, newN := 0, 0
	for _, t := range o.targets {
		if !answered(t.node) {
			continue
		}
		owner := t.node
		if t.hintFor != "" {
			owner = t.hintFor
		}
		if o.oldOwn[owner] {
			oldN++
		}
		if t.hintFor == "" && o.newOwn[t.node] {
			newN++
		}
	}
	return oldN >= min(need, len(o.oldOwn)) && newN >= min(need, len(o.newOwn))
}
