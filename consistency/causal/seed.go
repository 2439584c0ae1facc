package causal

import (
	"slices"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency"
)

// Seeding: the records of a node removed while down (Membership.Down)
// come from the other regions. Every region holds every key, one owner
// per region, and each region's copy is causally closed (a region applies
// a write only once its dependencies are visible there), so in the stream
// version each node pushes, for every key it holds whose owner in another
// region was a down node, its record to the key's new owner there. The
// new owner merges every region's seed (mergeRecords, as a handoff or a
// repair does) and acknowledges it once durable; the driver moves to the
// stable version when no seed is unacknowledged.
//
// Ordering rule: a seed is stored only once the dependencies it carries
// on keys that do not move in the receiver's region are visible there
// (they may still be on their way from their origin, like a remote
// write's). Its dependencies on keys that move are not waited for: the
// other seeds satisfy them (they come from closed copies), and waiting
// could deadlock — two merged records may depend on each other's
// versions, which no remote write does. That is safe because every key
// that moves is refused to clients until every node confirmed the stable
// version, which comes after every seed is stored.
//
// What no other region has is lost: the writes the down node
// acknowledged whose replication had not reached another region (its
// outbound queue). If it comes back it hands what it holds to the new
// owners and resends its queue (it is then outside the member list).

// Message kinds of seeding.
const (
	kindSeed    = "seed"     // a node of another region -> the new owner: its record of a key whose owner was down
	kindSeedAck = "seed-ack" // stored there (Ver: the seed's version)
)

// Values of Replica.seedWait (tests only): the default waits for the
// dependencies on keys that do not move.
const (
	seedWaitAll  = 1
	seedWaitNone = 2
)

// seedKey identifies a seed being stored (it may wait for dependencies).
type seedKey struct {
	from consistency.NodeID
	key  string
	v    Version
}

// seedsOf queues a seed of key (stored here) for every other region whose
// owner of it is a down node, to its new owner there (the placement next),
// if this node is the key's owner in home under next (else it is not this
// node's to seed from: a handoff of its own).
func (r *Replica) seedsOf(home, key string) {
	if len(r.down) == 0 || home == "" || r.region == "" || ownerIn(r.next, home, key) != r.id {
		return
	}
	for _, g := range r.next {
		if g.name == home || !slices.Contains(r.down, ownerIn(r.moveFrom, g.name, key)) {
			continue
		}
		if to := ownerIn(r.next, g.name, key); to != "" {
			r.seeds[key+"\x00"+g.name] = &push{to: to}
		}
	}
}

// sendSeeds (re)sends the seeds due, at most maxPushes per round.
func (r *Replica) sendSeeds(now time.Time) {
	if len(r.seeds) == 0 || !r.streaming || r.skipHandoff {
		return
	}
	r.sendDueSeeds(now, r.seeds, nil, nil)
}

// sendDueSeeds (re)sends the seeds of m that are due (sendSeeds' for a ring
// change, sendFeeds' for a rebuilding node): each key's current record, in a
// message that tag (nil: none) marks for its target (a rebuild's ID and
// Partial). A key whose record is corrupt waits (it is re-fetched first);
// one no longer stored leaves m and is handed to gone (nil: nothing more
// to do).
func (r *Replica) sendDueSeeds(now time.Time, m map[string]*push, tag func(*msg, consistency.NodeID), gone func(*push)) {
	for _, id := range r.due(now, m) {
		p := m[id]
		key, _, _ := strings.Cut(id, "\x00")
		rec, err := r.load(key)
		if err != nil {
			continue // corrupt: re-fetched first (the seed waits)
		}
		if rec.V.IsZero() {
			delete(m, id) // nothing stored any more
			if gone != nil {
				gone(p)
			}
			continue
		}
		p.v, p.sent = rec.V, now
		out := msg{Kind: kindSeed, Entry: &outEntry{Key: key, Rec: rec}, Region: r.region}
		if tag != nil {
			tag(&out, p.to)
		}
		r.send(p.to, out)
	}
}

// onSeed stores another region's record of a key this node gained from
// a down node, merged into what it has, once the seed's dependencies on
// keys that do not move are visible here; then acknowledges it.
func (r *Replica) onSeed(now time.Time, from consistency.NodeID, in msg) {
	e := in.Entry
	if e == nil || r.held || r.region == "" || r.owner(r.region, e.Key) != r.id {
		return // not the owner under this node's list, or held: the sender resends
	}
	key, rec := e.Key, e.Rec
	if in.Partial {
		// A rebuilding node's record, for this node's rebuild: noted
		// (what its region holds of this node's writes), not stored —
		// its salvaged writes may depend on writes it lost, and come
		// by replication once its rebuild finished (rebuild.go).
		if rb := r.rebuild; rb != nil && in.ID == rb.id {
			r.noteRebuildSeed(now, in.Region, key, rec)
			r.awaitPartialSeed(from, key, rec)
		}
		v := rec.V
		r.send(from, msg{Kind: kindSeedAck, ID: in.ID, Entry: &outEntry{Key: key}, Ver: &v, Region: r.region})
		return
	}
	sk := seedKey{from: from, key: key, v: rec.V}
	if r.seeding[sk] {
		return // already waiting for its dependencies
	}
	r.observeRecord(rec)
	var deps []Dep
	for _, s := range append([]record{rec}, rec.Sibs...) {
		for _, d := range s.Deps {
			if d.Key != key && (!r.frozen(d.Key) || r.seedWait == seedWaitAll) && r.seedWait != seedWaitNone {
				deps = r.merge(deps, d)
			}
		}
	}
	r.seeding[sk] = true
	store := r.unlessHeld(func(now time.Time, _ []Dep) {
		delete(r.seeding, sk)
		if r.region == "" || r.owner(r.region, key) != r.id {
			return
		}
		stored, err := r.storeMerged(now, key, rec)
		if err != nil {
			return // not acknowledged: the sender resends
		}
		if stored {
			r.stats.SeedsStored++
		}
		if in.ID != 0 {
			r.noteRebuildSeed(now, in.Region, key, rec) // a seed for this node's rebuild
		}
		// Ordering rule: acknowledge only what is durable.
		r.out.Sync = true
		v := rec.V
		r.send(from, msg{Kind: kindSeedAck, ID: in.ID, Entry: &outEntry{Key: key}, Ver: &v, Region: r.region})
	})
	r.await(now, r.prune(deps), time.Time{}, store, func(time.Time) { delete(r.seeding, sk) })
}

func (r *Replica) onSeedAck(in msg) {
	if in.Entry == nil || in.Ver == nil {
		return
	}
	p, ok := r.seeds[in.Entry.Key+"\x00"+in.Region]
	if !ok || p.acked || p.v != *in.Ver {
		return
	}
	p.acked = true
	r.stats.Seeded++
	r.maybeResume()
}
