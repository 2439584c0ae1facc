package quorum

import (
	"sort"

	"github.com/dialkv/dialkv/core"
)

// Active anti-entropy. Every aae_interval a replica picks the next peer it
// shares ring segments with and compares, per shared segment, a Merkle tree
// of its objects: a root over 16 leaves, each leaf the XOR of
// mix(hash(key) ^ digest(object)) over the keys that fall in it.
//
//	A → B  roots of the shared segments
//	B → A  segments that are equal; B's 16 leaves of each differing one
//	A → B  A's objects in the differing leaves (+ GC markers), "send yours"
//	B → A  B's objects in those leaves (+ GC markers)
//
// Equal segments confirm tombstones: a dead object whose digest a peer
// matched counts that peer; when every other owner of its key has matched it
// and it is older than gc_grace, it is collected (see tryGC).

const leaves = 16

func leafOf(key string) int { return int(core.Mix64(hashString(key)^0x5bd1e995) % leaves) }

// aaeSkips reports whether anti-entropy leaves this object out (only under
// the aae-skips-tombstones bug).
func (r *Replica) aaeSkips(e *entry) bool {
	return r.bug == BugAAESkipsTombstones && e.obj.dead()
}

// trees computes the leaves of the given segments.
func (r *Replica) trees(segs []uint32) map[uint32]*[leaves]uint64 {
	out := make(map[uint32]*[leaves]uint64, len(segs))
	for _, s := range segs {
		out[s] = new([leaves]uint64)
	}
	for k, e := range r.objs {
		t := out[uint32(e.seg)]
		if t == nil || r.aaeSkips(e) {
			continue
		}
		t[leafOf(k)] ^= core.Mix64(hashString(k) ^ e.digest)
	}
	return out
}

func root(t *[leaves]uint64) uint64 {
	h := uint64(14695981039346656037)
	for _, x := range t {
		h = core.Mix64(h ^ x)
	}
	return h
}

func (r *Replica) startAAE() {
	if len(r.aaePeers) == 0 || r.prev != nil {
		return
	}
	peer := r.aaePeers[r.aaePeer%len(r.aaePeers)]
	r.aaePeer++
	segs := r.shared[peer]
	tr := r.trees(segs)
	m := &msg{kind: mAAERoots, op: r.newID(), segs: segs, ringVer: r.ringVer}
	for _, s := range segs {
		m.hashes = append(m.hashes, root(tr[s]))
	}
	r.send(peer, m)
}

func (r *Replica) onAAERoots(from nodeID, m *msg) {
	if len(m.hashes) != len(m.segs) {
		return
	}
	mine := map[uint32]bool{}
	for _, s := range r.shared[from] {
		mine[s] = true
	}
	var segs []uint32
	for _, s := range m.segs {
		if mine[s] {
			segs = append(segs, s)
		}
	}
	tr := r.trees(segs)
	reply := &msg{kind: mAAELeaves, op: m.op, ringVer: r.ringVer}
	for i, s := range m.segs {
		t := tr[s]
		if t == nil {
			continue
		}
		if root(t) == m.hashes[i] {
			reply.equal = append(reply.equal, s)
			continue
		}
		reply.segs = append(reply.segs, s)
		reply.hashes = append(reply.hashes, t[:]...)
	}
	r.send(from, reply)
	r.confirm(from, reply.equal)
}

func (r *Replica) onAAELeaves(from nodeID, m *msg) {
	if len(m.hashes) != len(m.segs)*leaves {
		return
	}
	r.confirm(from, m.equal)
	if len(m.segs) == 0 {
		return
	}
	tr := r.trees(m.segs)
	var want []uint32
	for i, s := range m.segs {
		t := tr[s]
		if t == nil {
			continue
		}
		for l := 0; l < leaves; l++ {
			if t[l] != m.hashes[i*leaves+l] {
				want = append(want, s<<4|uint32(l))
			}
		}
	}
	if len(want) == 0 {
		return
	}
	push := &msg{kind: mAAEPush, op: m.op, want: want, ringVer: r.ringVer}
	r.fillPush(push, want)
	r.send(from, push)
}

// fillPush adds our objects and GC markers of the wanted leaves.
func (r *Replica) fillPush(m *msg, want []uint32) {
	w := map[uint32]bool{}
	for _, x := range want {
		w[x] = true
	}
	var keys []string
	for k, e := range r.objs {
		if w[uint32(e.seg)<<4|uint32(leafOf(k))] && !r.aaeSkips(e) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		m.objs = append(m.objs, keyObj{k, r.objs[k].obj})
	}
	keys = keys[:0]
	for k := range r.recentGC {
		if w[uint32(r.ring.segment(k))<<4|uint32(leafOf(k))] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		m.markers = append(m.markers, keyDigest{k, r.recentGC[k]})
	}
	r.stats.AAEPushed += len(m.objs)
}

func (r *Replica) onAAEPush(from nodeID, m *msg) {
	for _, ko := range m.objs {
		if ko.obj == nil || !r.ring.isOwner(r.ring.segment(ko.key), r.id) {
			continue
		}
		if r.bug == BugAAESkipsTombstones && ko.obj.dead() {
			continue
		}
		_ = r.mergeMain(ko.key, ko.obj)
	}
	for _, kd := range m.markers {
		// The sender collected this tombstone after every owner had
		// confirmed it: we may collect our identical copy too.
		if e := r.objs[kd.key]; e != nil && e.obj.dead() && e.digest == kd.digest {
			r.collect(kd.key)
		}
	}
	if m.final {
		return
	}
	reply := &msg{kind: mAAEPush, op: m.op, final: true, ringVer: r.ringVer}
	r.fillPush(reply, m.want)
	r.send(from, reply)
}

// confirm records that peer holds the same objects as we do in segs, and
// collects the tombstones every owner now holds. It makes one pass over the
// objects for all segs (one pass per segment made an exchange cost
// segments x objects: with ~12,000 keys the host loop spent all its time
// here and the node stopped answering). Ordering rule: segments are
// confirmed in the order given, the keys of each in sorted order (the same
// order as one call per segment).
func (r *Replica) confirm(peer nodeID, segs []uint32) {
	if len(segs) == 0 {
		return
	}
	bySeg := make(map[uint32][]string, len(segs))
	for _, s := range segs {
		bySeg[s] = nil
	}
	for k, e := range r.objs {
		if ks, ok := bySeg[uint32(e.seg)]; ok && e.obj.dead() {
			bySeg[uint32(e.seg)] = append(ks, k)
		}
	}
	for _, s := range segs {
		keys := bySeg[s]
		bySeg[s] = nil // a segment listed twice is confirmed once
		sort.Strings(keys)
		for _, k := range keys {
			c := r.conf[k]
			if c == nil {
				c = map[nodeID]uint64{}
				r.conf[k] = c
			}
			c[peer] = r.objs[k].digest
			r.tryGC(k)
		}
	}
}

// tryGC collects a dead object once every other owner of its key has been
// seen (by anti-entropy) holding the identical object, and it is older than
// gc_grace (so that hints and messages still in flight, which could carry an
// older version, have been delivered or expired).
func (r *Replica) tryGC(key string) {
	e := r.objs[key]
	if e == nil || !e.obj.dead() || r.prev != nil {
		return
	}
	for _, o := range r.ring.owners(e.seg) {
		if o != r.id && r.conf[key][o] != e.digest {
			return
		}
	}
	if r.now.UnixNano()-e.obj.Mod.Wall < int64(r.p.gcGrace) {
		return
	}
	r.collect(key)
}

const recentGCMax = 4096

func (r *Replica) collect(key string) {
	e := r.objs[key]
	if err := r.persist(prefixObj+key, nil); err != nil {
		return
	}
	delete(r.objs, key)
	delete(r.conf, key)
	if _, ok := r.recentGC[key]; !ok {
		r.recentOrd = append(r.recentOrd, key)
	}
	r.recentGC[key] = e.digest
	for len(r.recentOrd) > recentGCMax {
		delete(r.recentGC, r.recentOrd[0])
		r.recentOrd = r.recentOrd[1:]
	}
	r.stats.TombstonesGCed++
}
