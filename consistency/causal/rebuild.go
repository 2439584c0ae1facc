package causal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Rebuild of a siblings-mode store whose outbound replication entries are
// corrupt (recover fails with ErrLostReplication): a replaced sibling
// cannot be rebuilt from the store, and a region may wait for it as a
// dependency. The host moves the store aside and calls PrepareRebuild,
// which writes into a fresh store the entries that still decode (this
// node's writes not yet acknowledged by some region: their records are
// rebuilt from them), the clock and sequence number, and a rebuild mark.
// A replica that finds the mark is rebuilding:
//
//   - It refuses client requests for the keys it owns (UNAVAILABLE, safe
//     to retry), leaves remote writes of them unacknowledged (their
//     senders resend them after the rebuild), and sends no replication.
//   - Every retry round it asks every node of every other region for its
//     keys (rebuild-req, with an id of this incarnation). Each of them
//     seeds it with its record of every key it owns whose owner in the
//     asker's region is the asker (the seed/seed-ack of a down node's
//     removal, seed.go), and answers rebuild-done once every such seed is
//     acknowledged. A region's copy is causally closed, so a seed is
//     stored once its dependencies on keys other nodes of this region own
//     are visible; its dependencies on the rebuilding node's own keys are
//     not waited for (they come with their own seeds: waiting could
//     deadlock, two records depending on each other's earlier versions),
//     which is safe because those keys are refused until every seed is in.
//   - Once every node of every other region answered done, it compares,
//     for every region (its own included), the newest own write of each
//     key the old store held with what that region's seed and the
//     salvaged entries give it. A write some region lacks that the
//     rebuilt record holds (it merges the salvaged writes and every full
//     seed) is re-sent to the regions lacking it as an ordinary
//     replication entry with its value (resendEntry; Stats.Requeued,
//     RebuildStatus.Resent). A write the rebuilt record does not hold is
//     lost (LostVersionMetric samples, one per key and region lacking it,
//     and Stats.LostVersions). The queued entries' dependencies on own
//     writes their region will never have are dropped (they can never
//     become visible there); a gone notice of each lost write is queued
//     for every other region and applied here (below); the mark is
//     deleted, and the node serves again.
//
// Two rebuilds at once. A node that is itself rebuilding answers another
// region's rebuild-req too, with Partial seeds and a Partial done: the
// asker notes what they hold of its writes but does not store them (a
// partial record's salvaged writes may depend on writes their node lost;
// they come by replication once that rebuild finished, checked like any
// remote write). Nothing else is missed: a rebuilding node's store ends
// up as its salvaged writes plus the other regions' seeds, which the
// asker gets from them directly. For the loss report, a region whose
// owner of a key answered Partial will hold what it holds now plus what
// the regions that answered in full hold (their seeds reach it too), so
// both rebuilds finish, in any number of regions. The first to finish
// keeps refusing its keys whose writes depend on a write the other still
// holds, and its keys of which the other's partial seed held a write not
// visible here (a write owned by another node of this region may depend
// on it), until it arrives (rebuildhold.go).
//
// The simulator never rebuilds a store (its corruption is a flaky read;
// only nodes/integrity.go calls PrepareRebuild): the rebuild is covered
// by this package's harness tests and a real-node test in package nodes.
//
// Gone notices. A lost write V of key k may be a dependency elsewhere: a
// client read it before the crash (its token), or another node of this
// region queued a write made after reading it. Without a notice such a
// dependency never becomes visible in a region that lacks V, and the
// write waiting for it — with every later write of its key from its node
// — waits for good. The notice is a replication entry whose record is
// {V, Gone}: applying it moves the record's Seen for this node to V
// without adding a sibling (the value is lost; the older siblings stay),
// so every dependency on V, or on an older lost write of k, is visible.
// Ordering rule: it depends on the newest salvaged write of k queued for
// its region, so it is applied after it (applied first, it would make the
// salvaged write look already seen). The receiver counts it
// (Stats.GoneApplied, GoneMetric samples): an acknowledged write that is
// lost stays lost — a reader sees the key's older state.
//
// The mark is durable, so a crash during the rebuild restarts it (seeds
// merge idempotently). With a single region there is no other copy:
// PrepareRebuild refuses with ErrNoOtherRegion.

// ErrLostReplication is wrapped (with core.ErrCorruption) by the error of
// a siblings-mode replica whose store holds corrupt outbound replication
// entries: the host rebuilds the store (PrepareRebuild).
var ErrLostReplication = errors.New("outbound replication entries are corrupt and siblings-mode writes cannot be rebuilt from the store")

// ErrNoOtherRegion is returned by PrepareRebuild for a namespace with a
// single region: no other copy of the keys exists.
var ErrNoOtherRegion = errors.New("the namespace has a single region: there is no other copy to rebuild the store from (restore a backup)")

// keyRebuild holds the rebuild mark (rebuildMark) while a store is rebuilt.
const keyRebuild = "m/rebuild"

// Message kinds of a rebuild.
const (
	kindRebuildReq  = "rebuild-req"  // rebuilding node -> every node of every other region: seed me (ID: this incarnation's rebuild)
	kindRebuildDone = "rebuild-done" // every seed for ID acknowledged
)

// LostVersionMetric is the name of the samples a rebuild reports its
// losses with: one per key and region, label "KEY VERSION REGION" (a node
// logs it as "version lost" and counts it in
// dialkv_corruption_events_total{kind="version-lost"}).
const LostVersionMetric = "dialkv_lost_versions"

// RebuiltMetric is the name of the sample a replica reports when its
// store's rebuild completed (value: the keys seeded into it).
const RebuiltMetric = "dialkv_store_rebuilt"

// GoneMetric is the name of the samples a replica reports when it applies
// another node's gone notice (label "KEY VERSION"): a dependency on that
// lost write is satisfied here from now on, without its value.
const GoneMetric = "dialkv_gone_versions"

// ReplacedMetric is the name of the samples a replica reports when it
// applies another node's re-send of a write that a newer write replaced
// (label "KEY VERSION"): applied as a gone notice, though nothing was lost
// (its replacement reaches the region from its own origin).
const ReplacedMetric = "dialkv_replaced_versions"

// StalledMetric is the name of the sample a rebuilding replica reports
// when a node it waits for has not answered for rebuildStallAfter (label:
// the nodes it waits for); reported again every rebuildStallAfter while
// the rebuild waits.
const StalledMetric = "dialkv_rebuild_stalled"

// rebuildStallAfter (in retries) is how long a rebuild waits without
// progress before it reports itself stalled.
const rebuildStallAfter = 100

// rebuildMark is what a rebuilding store remembers of the store it
// replaces (the rebuild's loss report needs it).
type rebuildMark struct {
	// Own: per key, the newest write of this node the old store held.
	Own map[string]Version `json:"own,omitempty"`
	// Lost: the sequence numbers of the corrupt entries.
	Lost []uint64 `json:"lost"`
	// Salvaged: the entries that decoded and were carried over.
	Salvaged int `json:"salvaged"`
}

// RebuildReport is what PrepareRebuild found in the corrupt store.
type RebuildReport struct {
	// Salvaged entries: this node's writes not yet acknowledged by some
	// region, carried over with their records.
	Salvaged int
	// Lost are the sequence numbers of the corrupt entries.
	Lost []uint64
	// OwnKeys are the keys holding a write of this node in the old store
	// (the rebuild checks each of them for loss).
	OwnKeys int
	// BadRecords are the old store's records that failed their checksum:
	// their own writes are not in the loss report.
	BadRecords int
}

// rebuilding is a rebuild under way (Replica.rebuild).
type rebuilding struct {
	id   uint64 // this incarnation's request id
	mark rebuildMark
	done map[consistency.NodeID]bool
	sent time.Time
	// seen: per region and key, the newest own write that region's seed
	// holds (its Seen entry for this node).
	seen   map[string]map[string]Version
	seeded int
	// awaited: per key, the newest own write of a partially answering
	// node its seed held (rebuildhold.go: refused until visible here).
	awaited map[string][]Dep
	// partial: the nodes that answered done while rebuilding themselves.
	partial map[consistency.NodeID]bool
	// Status only (RebuildStatus): when this incarnation's rebuild began
	// and last progressed (a seed or a done), the stall reported last,
	// and the client requests (and distinct keys, up to maxRefusedKeys)
	// refused meanwhile.
	began, progress, stallNoted time.Time
	refused                     int
	refusedKeys                 map[string]bool
}

// maxRefusedKeys bounds the distinct refused keys a rebuild counts.
const maxRefusedKeys = 10000

// PrepareRebuild fills fresh (an empty engine) for the rebuild of the
// siblings-mode replica cfg.ID, whose store cfg.Engine failed to recover
// with ErrLostReplication: the replication entries that decode (and the
// records of their writes), the sequence number and clock, and the
// rebuild mark, in one synced batch. It only reads cfg.Engine, which the
// caller keeps for forensics. It refuses with ErrNoOtherRegion when the
// namespace has a single region, and for last-writer-wins (which
// rebuilds its entries in place).
func PrepareRebuild(cfg consistency.Config, fresh core.Engine) (RebuildReport, error) {
	var rep RebuildReport
	if cfg.Params["resolve"] != ResolveSiblings {
		return rep, errors.New("causal: a last-writer-wins store rebuilds lost replication entries in place; nothing to prepare")
	}
	regionOf, err := ParseRegions(cfg.Params["regions"], cfg.Peers)
	if err != nil {
		return rep, err
	}
	names := map[string]bool{}
	for _, g := range regionOf {
		names[g] = true
	}
	if len(names) < 2 {
		return rep, fmt.Errorf("causal: rebuild of %s: %w", cfg.ID, ErrNoOtherRegion)
	}
	old := cfg.Engine
	self := string(cfg.ID)
	var clock hlc
	var seq uint64
	if b, err := old.Get([]byte(keyMeta)); err == nil {
		var m meta
		if openJSON([]byte(keyMeta), b, &m) == nil {
			seq, clock.wall, clock.logical = m.Seq, m.Wall, m.Logical
		}
	}
	mark := rebuildMark{Own: map[string]Version{}}
	it := old.NewIter([]byte(prefixValue), []byte("v0"))
	for ok := it.First(); ok; ok = it.Next() {
		var rec record
		if openJSON(it.Key(), it.Value(), &rec) != nil {
			rep.BadRecords++
			continue
		}
		for _, v := range append([]Version{rec.V}, rec.Seen...) {
			clock.observe(v)
		}
		if v := seenOf(rec.Seen, self); !v.IsZero() {
			mark.Own[string(it.Key()[len(prefixValue):])] = v
		}
	}
	if err := it.Close(); err != nil {
		return rep, fmt.Errorf("causal: rebuild: scan old records: %w", err)
	}
	var salvaged, gone []*outEntry
	it = old.NewIter([]byte(prefixQueue), []byte("q0"))
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(prefixQueue)+8 {
			continue
		}
		s := binary.BigEndian.Uint64(k[len(prefixQueue):])
		seq = max(seq, s)
		var e outEntry
		if openJSON(k, it.Value(), &e) != nil || e.Seq != s {
			mark.Lost = append(mark.Lost, s)
			continue
		}
		if e.Rec.Gone {
			// A gone notice of an earlier rebuild still unacknowledged: its
			// write is lost already; the notice is carried over.
			gone = append(gone, &e)
			continue
		}
		clock.observe(e.Rec.V)
		salvaged = append(salvaged, &e)
	}
	if err := it.Close(); err != nil {
		return rep, fmt.Errorf("causal: rebuild: scan old queue: %w", err)
	}
	// Ordering rule: the salvaged writes are applied in their order (one
	// node's writes of a key in sequence order), as their origin did.
	// A write's Over (the siblings it replaced, other regions' included)
	// goes into Seen: the record has seen them, so a region's seed that
	// still holds one does not bring it back here (mergeRecords keeps a
	// sibling the other record has not seen).
	recs := map[string]record{}
	for _, e := range salvaged {
		if cur := recs[e.Key]; !seenOf(cur.Seen, e.Rec.V.Node).AtLeast(e.Rec.V) {
			recs[e.Key] = seeAll(applySibling(cur, e.Rec), e.Rec.Over)
		}
	}
	mark.Salvaged = len(salvaged)
	for _, e := range gone {
		if cur := recs[e.Key]; !seenOf(cur.Seen, e.Rec.V.Node).AtLeast(e.Rec.V) {
			recs[e.Key] = applyGone(cur, e.Rec.V)
		}
	}
	salvaged = append(salvaged, gone...)
	b := fresh.NewBatch()
	defer b.Close()
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.Set([]byte(prefixValue+k), sealJSON([]byte(prefixValue+k), recs[k]))
	}
	for _, e := range salvaged {
		b.Set(queueKey(e.Seq), sealJSON(queueKey(e.Seq), e))
	}
	b.Set([]byte(keyMeta), sealJSON([]byte(keyMeta), meta{Seq: seq, Wall: clock.wall, Logical: clock.logical}))
	b.Set([]byte(keyRebuild), sealJSON([]byte(keyRebuild), mark))
	if err := b.Commit(true); err != nil {
		return rep, fmt.Errorf("causal: rebuild: write the fresh store: %w", err)
	}
	rep.Salvaged, rep.Lost, rep.OwnKeys = len(salvaged), mark.Lost, len(mark.Own)
	return rep, nil
}

// applyGone returns cur with the gone notice of the lost write v applied:
// Seen moves to v for v's node, no sibling is added or removed (the
// value is lost; what the region held before stays). cur is not written.
func applyGone(cur record, v Version) record {
	cur.Seen = slices.Clone(cur.Seen)
	return seeAll(cur, []Version{v})
}

// seeAll returns rec with every version of over in its Seen (the newest
// per origin node, sorted by node) and V the greatest of Seen; it may
// write into rec.Seen's array (callers pass a record of their own).
func seeAll(rec record, over []Version) record {
	for _, o := range over {
		i := slices.IndexFunc(rec.Seen, func(x Version) bool { return x.Node == o.Node })
		switch {
		case i < 0:
			rec.Seen = append(rec.Seen, o)
		case rec.Seen[i].Less(o):
			rec.Seen[i] = o
		}
	}
	sort.Slice(rec.Seen, func(i, j int) bool { return rec.Seen[i].Node < rec.Seen[j].Node })
	for _, v := range rec.Seen {
		if rec.V.Less(v) {
			rec.V = v
		}
	}
	return rec
}

// loadRebuildMark starts the rebuild a fresh store's mark asks for (at
// recover).
func (r *Replica) loadRebuildMark() error {
	b, err := r.eng.Get([]byte(keyRebuild))
	switch {
	case errors.Is(err, core.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("causal: read rebuild mark: %w", err)
	}
	var m rebuildMark
	if err := openJSON([]byte(keyRebuild), b, &m); err != nil {
		return fmt.Errorf("causal: rebuild mark: %w", err)
	}
	if len(r.regions) < 2 {
		return fmt.Errorf("causal: rebuild of %s: %w", r.id, ErrNoOtherRegion)
	}
	r.nextID++
	r.rebuild = &rebuilding{id: r.nextID, mark: m, done: map[consistency.NodeID]bool{}, seen: map[string]map[string]Version{},
		partial: map[consistency.NodeID]bool{}, refusedKeys: map[string]bool{}, awaited: map[string][]Dep{}}
	return nil
}

// rebuilds reports whether key is one of the keys this node rebuilds (it
// owns it and its rebuild is under way): refused to clients, frozen.
func (r *Replica) rebuilds(key string) bool {
	return r.rebuild != nil && r.region != "" && r.owner(r.region, key) == r.id
}

// rebuildTick asks the nodes of the other regions that have not finished
// seeding this node (every 4 retries), and sends the seeds this node owes
// to rebuilding nodes.
func (r *Replica) rebuildTick(now time.Time) {
	r.sendFeeds(now)
	rb := r.rebuild
	if rb == nil || (!rb.sent.IsZero() && now.Sub(rb.sent) < 4*r.retry) {
		return
	}
	rb.sent = now
	if rb.began.IsZero() {
		rb.began, rb.progress = now, now
	}
	waiting := r.rebuildWaiting()
	for _, n := range waiting {
		r.send(n, msg{Kind: kindRebuildReq, ID: rb.id, Region: r.region})
	}
	// A node of another region that is down (or cut off) stalls the
	// rebuild until it answers: say so, once every rebuildStallAfter
	// retries without progress.
	if len(waiting) > 0 && now.Sub(rb.progress) >= rebuildStallAfter*r.retry && now.Sub(rb.stallNoted) >= rebuildStallAfter*r.retry {
		rb.stallNoted = now
		r.lags = append(r.lags, consistency.Sample{Name: StalledMetric, Label: fmt.Sprintf("waiting for %v since %s without progress", waiting, now.Sub(rb.progress)), Value: float64(len(waiting))})
	}
}

// noteRefused counts a client request for key refused while rebuilding.
func (r *Replica) noteRefused(key string) {
	if rb := r.rebuild; rb != nil {
		rb.refused++
		if len(rb.refusedKeys) < maxRefusedKeys {
			rb.refusedKeys[key] = true
		}
	}
}

// rebuildWaiting lists the nodes of the other regions that have not yet
// said they seeded this node's rebuild, in region and node order.
func (r *Replica) rebuildWaiting() []consistency.NodeID {
	var w []consistency.NodeID
	for _, g := range r.regions {
		if g.name == r.region {
			continue
		}
		for _, n := range g.nodes {
			if !r.rebuild.done[n] {
				w = append(w, n)
			}
		}
	}
	return w
}

// feedKey is the id of a seed for a rebuilding node (Replica.feeds).
func feedKey(key string, to consistency.NodeID) string { return key + "\x00" + string(to) }

// onRebuildReq answers a rebuilding node of another region: a new rebuild
// (id) queues a seed of every key this node owns whose owner in the
// asker's region is the asker; once they are all acknowledged, done. A
// node whose own store is being rebuilt answers too, its seeds and done
// marked Partial (see "Two rebuilds at once" above): the asker only notes
// them, so two rebuilding nodes of different regions do not wait for each
// other.
func (r *Replica) onRebuildReq(from consistency.NodeID, in msg) {
	if r.region == "" || in.Region == "" || in.Region == r.region || in.ID == 0 {
		return
	}
	if r.feedID[from] != in.ID {
		r.dropFeeds(from)
		r.feedPartial[from] = r.rebuild != nil
		it := r.eng.NewIter([]byte(prefixValue), []byte("v0"))
		for ok := it.First(); ok; ok = it.Next() {
			key := string(it.Key()[len(prefixValue):])
			if r.owner(r.region, key) == r.id && r.owner(in.Region, key) == from {
				r.feeds[feedKey(key, from)] = &push{to: from}
			}
		}
		if err := it.Close(); err != nil {
			r.dropFeeds(from)
			return // asked again at the next round
		}
		r.feedID[from] = in.ID
	}
	r.maybeFed(from)
}

// dropFeeds forgets the seeds queued for node to.
func (r *Replica) dropFeeds(to consistency.NodeID) {
	for id, p := range r.feeds {
		if p.to == to {
			delete(r.feeds, id)
		}
	}
}

// maybeFed answers done to a rebuilding node once every seed for it is
// acknowledged.
func (r *Replica) maybeFed(to consistency.NodeID) {
	for _, p := range r.feeds {
		if p.to == to && !p.acked {
			return
		}
	}
	r.dropFeeds(to)
	r.send(to, msg{Kind: kindRebuildDone, ID: r.feedID[to], Partial: r.feedPartial[to]})
}

// sendFeeds (re)sends the seeds for rebuilding nodes that are due.
func (r *Replica) sendFeeds(now time.Time) {
	r.sendDueSeeds(now, r.feeds, func(m *msg, to consistency.NodeID) { m.ID, m.Partial = r.feedID[to], r.feedPartial[to] },
		func(p *push) { r.maybeFed(p.to) })
}

// onFeedAck takes a rebuilding node's acknowledgement of a seed.
func (r *Replica) onFeedAck(from consistency.NodeID, in msg) {
	if in.Entry == nil || in.Ver == nil {
		return // malformed: dropped, as onSeedAck does
	}
	p, ok := r.feeds[feedKey(in.Entry.Key, from)]
	if !ok || p.acked || p.v != *in.Ver || r.feedID[from] != in.ID {
		return
	}
	p.acked = true
	r.stats.Seeded++
	r.maybeFed(from)
}

// noteRebuildSeed records, during a rebuild, the newest own write the
// seed's region holds of key.
func (r *Replica) noteRebuildSeed(now time.Time, region, key string, rec record) {
	rb := r.rebuild
	if rb == nil {
		return
	}
	rb.progress = now
	if rb.seen[region] == nil {
		rb.seen[region] = map[string]Version{}
	}
	if v := seenOf(rec.Seen, string(r.id)); rb.seen[region][key].Less(v) {
		rb.seen[region][key] = v
	}
	rb.seeded++
}

// onRebuildDone takes a node's word that it seeded this node; once every
// node of every other region gave it, the rebuild ends.
func (r *Replica) onRebuildDone(now time.Time, from consistency.NodeID, in msg) {
	rb := r.rebuild
	if rb == nil || in.ID != rb.id {
		return
	}
	rb.done[from] = true
	rb.progress = now
	if in.Partial {
		rb.partial[from] = true
	}
	if len(r.rebuildWaiting()) > 0 {
		return
	}
	if err := r.finishRebuild(now); err != nil {
		rb.done, rb.partial = map[consistency.NodeID]bool{}, map[consistency.NodeID]bool{} // ask again
	}
}

// LostVersion is an own write no region's copy holds after a rebuild.
type LostVersion struct {
	Key    string
	V      Version // the newest lost write of the key (older ones of it may be lost too)
	Region string  // the region that will never have it
	Has    Version // the newest own write of the key that region holds (zero: none)
}

func (l LostVersion) String() string {
	return fmt.Sprintf("%q %s %s (it has %s)", l.Key, l.V, l.Region, l.Has)
}

// finishRebuild ends a rebuild once every seed is in: for each own write
// the old store held that some region lacks, it re-queues the write (its
// value, from the rebuilt record) for the regions that lack it when a copy
// still holds it, and otherwise reports it lost, queues a gone notice of
// it for every other region (and applies it here); it drops the queued
// entries' dependencies on own writes a region will never have, and
// deletes the mark.
func (r *Replica) finishRebuild(now time.Time) error {
	rb := r.rebuild
	has := r.regionHas(rb)
	// The changes are collected and written once each, and applied to
	// the in-memory queue only after the batch committed: with three
	// regions or more a write has one entry per region, each dropping
	// its region's lost dependencies from the same stored record (the
	// record's drops are their union), and a failed commit leaves the
	// queue as it was for the next attempt.
	recs := map[string]record{}
	// loadRec: the record of k as this batch leaves it; ok false when it
	// cannot be read (then nothing may be written over it: an empty
	// record would replace the corrupt one, seeds included, and claim
	// versions it never saw, so no repair would start).
	loadRec := func(k string) (record, bool) {
		cur, ok := recs[k]
		if !ok {
			var err error
			if cur, err = r.load(k); err != nil {
				return record{}, false
			}
		}
		return cur, true
	}
	// newest[region][key]: the newest salvaged write of key queued for
	// region (a gone notice or a re-sent write of key follows it there);
	// final[region][key]: what the region holds once the salvaged
	// entries for it are applied.
	newest := map[string]map[string]Version{}
	final := map[string]map[string]Version{}
	for g, h := range has {
		newest[g], final[g] = map[string]Version{}, maps.Clone(h)
	}
	for _, seq := range sortedKeys(r.queue) {
		e := r.queue[seq]
		if _, ok := has[e.Region]; !ok {
			continue
		}
		if newest[e.Region][e.Key].Less(e.Rec.V) {
			newest[e.Region][e.Key] = e.Rec.V
		}
		if final[e.Region][e.Key].Less(e.Rec.V) {
			final[e.Region][e.Key] = e.Rec.V
		}
	}
	plan := r.judgeOwn(rb, final, newest, loadRec)
	entries := r.dropLostDeps(has, plan.resend, loadRec, recs)
	b := r.eng.NewBatch()
	defer b.Close()
	seq := r.seq
	var queued []*outEntry
	// Gone notices: one entry per other region (consecutive, as a
	// write's), each after the newest salvaged write of its key queued
	// for that region; applied here too where this region lacks it.
	for _, k := range sortedKeys(plan.goneKeys) {
		v := rb.mark.Own[k]
		first := seq + 1
		for _, g := range r.regions {
			if g.name == r.region {
				continue
			}
			seq++
			e := &outEntry{Seq: seq, First: first, Region: g.name, Key: k, Rec: record{V: v, Gone: true}}
			if n := newest[g.name][k]; !n.IsZero() {
				e.Deps = []Dep{{Key: k, V: n}}
			}
			queued = append(queued, e)
		}
		if cur, ok := loadRec(k); ok && seenOf(cur.Seen, string(r.id)).Less(v) {
			recs[k] = applyGone(cur, v)
		}
	}
	// Re-sent writes: only for the regions that lack them, so First is
	// 0 — their acknowledgements do not make the write stable (stability
	// needs every region's; the write is then merely checked, not pruned,
	// as a dependency).
	resent := 0
	for _, g := range r.regions {
		for _, e := range plan.resend[g.name] {
			seq++
			e.Seq = seq
			queued = append(queued, e)
			resent++
		}
	}
	for _, e := range queued {
		b.Set(queueKey(e.Seq), sealJSON(queueKey(e.Seq), e))
	}
	for _, seq := range sortedKeys(entries) {
		ne := entries[seq]
		b.Set(queueKey(seq), sealJSON(queueKey(seq), ne))
	}
	for _, k := range sortedKeys(recs) {
		b.Set([]byte(prefixValue+k), sealJSON([]byte(prefixValue+k), recs[k]))
	}
	b.Set([]byte(keyMeta), sealJSON([]byte(keyMeta), meta{Seq: seq, Wall: r.clock.wall, Logical: r.clock.logical}))
	// Ordering rule: the scan for keys still waiting (rebuildhold.go) is
	// marked pending, with the partial seeds' writes, in the batch that
	// deletes the mark.
	held := rebuildHeld{Scan: true, Keys: rb.awaited}
	b.Set([]byte(keyRebuildHeld), sealJSON([]byte(keyRebuildHeld), held))
	b.Delete([]byte(keyRebuild))
	if err := b.Commit(false); err != nil {
		return fmt.Errorf("causal: finish rebuild: %w", err)
	}
	r.postRebuild = &held
	for seq, ne := range entries {
		r.queue[seq].Deps, r.queue[seq].Rec.Deps = ne.Deps, ne.Rec.Deps
	}
	r.seq = seq
	for _, e := range queued {
		r.queue[e.Seq] = e
	}
	r.out.Sync = true
	r.rebuild = nil
	r.stats.LostVersions += int64(len(plan.lost))
	r.stats.Requeued += int64(resent)
	for _, l := range plan.lost {
		r.lags = append(r.lags, consistency.Sample{Name: LostVersionMetric, Label: l.String(), Value: 1})
	}
	r.lags = append(r.lags, consistency.Sample{Name: RebuiltMetric, Label: fmt.Sprintf("seeds=%d salvaged=%d corrupt-entries=%d gone-notices=%d resent=%d partial-answers=%d after=%s",
		rb.seeded, rb.mark.Salvaged, len(rb.mark.Lost), len(plan.goneKeys), resent, len(rb.partial), now.Sub(rb.began)), Value: float64(rb.seeded)})
	r.lost = append(r.lost, plan.lost...)
	for _, k := range sortedKeys(plan.goneKeys) {
		r.recheck(now, k) // a local waiter may wait for the lost write
	}
	r.tickRebuildHeld()
	last := rb.status()
	last.Finished, last.Resent = now, resent
	r.last = &last
	// The salvaged entries, the notices and the re-sent writes go out at
	// the next round.
	for _, seq := range sortedKeys(r.queue) {
		r.queue[seq].every, r.queue[seq].sent = 0, time.Time{}
	}
	return nil
}

// regionHas returns, per other region and key, the newest own write that
// region's seed holds.
func (r *Replica) regionHas(rb *rebuilding) map[string]map[string]Version {
	has := map[string]map[string]Version{}
	for _, g := range r.regions {
		if g.name != r.region {
			has[g.name] = maps.Clone(rb.seen[g.name])
			if has[g.name] == nil {
				has[g.name] = map[string]Version{}
			}
		}
	}
	if len(rb.partial) == 0 {
		return has
	}
	// A region whose owner of a key answered Partial (it is rebuilding
	// too) will hold of this node's writes what it holds now plus what
	// the regions that answered in full for the key hold: their seeds
	// reach it as they reached this node (its salvaged writes are
	// counted by the caller, as for every region).
	cand := map[string]bool{}
	for k := range rb.mark.Own {
		cand[k] = true
	}
	for _, e := range r.queue {
		cand[e.Key] = true
		for _, d := range append(slices.Clone(e.Deps), e.Rec.Deps...) {
			cand[d.Key] = true
		}
	}
	for _, k := range sortedKeys(cand) {
		for _, g := range r.regions {
			if g.name == r.region || !rb.partial[r.owner(g.name, k)] {
				continue
			}
			for _, f := range r.regions {
				if f.name == r.region || rb.partial[r.owner(f.name, k)] {
					continue
				}
				if v := rb.seen[f.name][k]; has[g.name][k].Less(v) {
					has[g.name][k] = v
				}
			}
		}
	}
	return has
}

// rebuildPlan is what a finishing rebuild does with the newest own write
// of each key the old store held.
type rebuildPlan struct {
	// lost: per key and region, the writes no copy holds (reported).
	lost []LostVersion
	// goneKeys: the keys whose lost write gets a gone notice in every
	// other region.
	goneKeys map[string]bool
	// resend: per region, the entries (Seq not set yet, in version
	// order) of the own writes a copy holds that the region lacks.
	resend map[string][]*outEntry
}

// judgeOwn decides, for each key's newest own write of the old store,
// which regions lack it (final: what each other region holds once the
// salvaged entries are applied; this region holds what the rebuilt record
// holds, i.e. the salvaged writes and every full seed). A write the
// rebuilt record holds is re-sent to the regions that lack it (not lost:
// a copy exists); one it does not hold is lost for every region that
// lacks it. A key whose record cannot be read is judged from the other
// regions alone, as a lost write (it is re-fetched, its value unknown).
func (r *Replica) judgeOwn(rb *rebuilding, final, newest map[string]map[string]Version, loadRec func(string) (record, bool)) rebuildPlan {
	self := string(r.id)
	p := rebuildPlan{goneKeys: map[string]bool{}, resend: map[string][]*outEntry{}}
	for _, k := range sortedKeys(rb.mark.Own) {
		own := rb.mark.Own[k]
		cur, readable := loadRec(k)
		held := readable && seenOf(cur.Seen, self).AtLeast(own)
		for _, g := range r.regions {
			h, other := final[g.name]
			switch {
			case !other && (!readable || held):
				// This region: unreadable (re-fetched, not judged), or
				// the rebuilt record holds the write.
			case !other:
				p.lost = append(p.lost, LostVersion{Key: k, V: own, Region: g.name, Has: seenOf(cur.Seen, self)})
				p.goneKeys[k] = true
			case !h[k].Less(own):
			case held:
				p.resend[g.name] = append(p.resend[g.name], r.resendEntry(g.name, k, own, cur, newest[g.name][k]))
			default:
				p.lost = append(p.lost, LostVersion{Key: k, V: own, Region: g.name, Has: h[k]})
				p.goneKeys[k] = true
			}
		}
	}
	for g := range p.resend {
		slices.SortFunc(p.resend[g], func(a, b *outEntry) int {
			switch {
			case a.Rec.V.Less(b.Rec.V):
				return -1
			case b.Rec.V.Less(a.Rec.V):
				return 1
			}
			return 0
		})
	}
	return p
}

// resendEntry is the entry re-sending the own write v of key, which the
// rebuilt record cur holds, to region g, which lacks it (newest: the
// newest salvaged write of key queued for g). While v is a sibling of cur
// it is v's write: its value and dependencies, and in Over what it
// replaced that g may still hold — this node's older writes of key, and
// the newest version of every other node that cur has seen while holding
// no sibling of that node (cur merges every copy: such a sibling was
// replaced, by v or by a write cur holds). A node of which cur still
// holds a sibling is left out of Over even when cur has seen a newer
// version of it: that newer version reached cur only as a gone notice
// (applyGone keeps the older sibling), and Over would make g drop every
// sibling of that node up to it, the held one included (the regions
// would diverge). A write cur no longer holds as a sibling was replaced
// by a newer one, which reaches g from its origin: its value is not
// needed, and the entry is a gone notice (it moves g's Seen past v without
// a sibling, as applying v and then its replacement would), so what
// depends on v is freed there; it is not lost, and not reported: marked
// Replaced, g counts it apart from lost writes' notices.
//
// Ordering rules: the entry depends on newest, so it is applied after it
// as the original write was (a notice applied first would make newest
// look seen and drop it), and a write also on every version of another
// node that cur has seen, so g applies it only once it has seen all of
// them (its Over could otherwise drop a sibling there before the write
// that replaced it arrived).
func (r *Replica) resendEntry(g, key string, v Version, cur record, newest Version) *outEntry {
	e := &outEntry{Region: g, Key: key, Rec: record{V: v, Gone: true}, Replaced: true}
	if !newest.IsZero() {
		e.Deps = []Dep{{Key: key, V: newest}}
	}
	i := slices.IndexFunc(cur.Sibs, func(s record) bool { return s.V == v })
	if i < 0 {
		return e
	}
	s := cur.Sibs[i]
	e.Replaced = false
	e.Rec = record{Value: s.Value, Deleted: s.Deleted, V: v, Deps: slices.Clone(s.Deps), Over: []Version{v}}
	e.Deps = r.merge(e.Deps, s.Deps...)
	for _, o := range cur.Seen {
		if o.Node == v.Node {
			continue
		}
		e.Deps = r.merge(e.Deps, r.prune([]Dep{{Key: key, V: o}})...)
		if !slices.ContainsFunc(cur.Sibs, func(s record) bool { return s.V.Node == o.Node }) {
			e.Rec.Over = append(e.Rec.Over, o) // replaced: cur holds nothing of o's node
		}
	}
	return e
}

// dropLostDeps drops, from the queued entries and the re-sent writes
// (resend, changed in place), the dependencies on own writes their region
// will never have, and from the stored siblings of those writes too (a
// reader inherits a sibling's dependencies, and a write of that reader
// would wait for the lost one); it returns the changed queued entries by
// sequence number. has: per other region, what its seed holds (advanced
// here). Ordering rule: per region in write order — the queue's sequence
// order, each re-sent write before the first queued write newer than it —
// an entry's dependency on an own write its region neither holds nor gets
// from an earlier entry is dropped: waiting for it would block the entry
// (and every later write of its key) there for good; an entry cannot
// satisfy its own or a later entry's dependencies.
func (r *Replica) dropLostDeps(has map[string]map[string]Version, resend map[string][]*outEntry, loadRec func(string) (record, bool), recs map[string]record) map[uint64]outEntry {
	self := string(r.id)
	drop := func(e *outEntry, h map[string]Version) bool {
		gone := func(d Dep) bool { return d.V.Node == self && h[d.Key].Less(d.V) }
		changed := slices.ContainsFunc(e.Deps, gone) || slices.ContainsFunc(e.Rec.Deps, gone)
		if changed {
			e.Deps = slices.DeleteFunc(slices.Clone(e.Deps), gone)
			e.Rec.Deps = slices.DeleteFunc(slices.Clone(e.Rec.Deps), gone)
			cur, _ := loadRec(e.Key) // unreadable: no siblings, nothing written
			if i := slices.IndexFunc(cur.Sibs, func(x record) bool { return x.V == e.Rec.V }); i >= 0 {
				cur.Sibs[i].Deps = slices.DeleteFunc(cur.Sibs[i].Deps, gone)
				recs[e.Key] = cur
			}
		}
		if h[e.Key].Less(e.Rec.V) {
			h[e.Key] = e.Rec.V
		}
		return changed
	}
	next := map[string]int{} // per region: the re-sent writes handled
	flush := func(g string, before *Version) {
		for ; next[g] < len(resend[g]); next[g]++ {
			e := resend[g][next[g]]
			if before != nil && !e.Rec.V.Less(*before) {
				return
			}
			drop(e, has[g])
		}
	}
	entries := map[uint64]outEntry{}
	for _, seq := range sortedKeys(r.queue) {
		e := r.queue[seq]
		h, ok := has[e.Region]
		if !ok {
			continue
		}
		if !e.Rec.Gone { // a carried-over notice holds an old version, not its place in write order
			flush(e.Region, &e.Rec.V)
		}
		if ne := *e; drop(&ne, h) {
			entries[seq] = ne
		}
	}
	for _, g := range sortedKeys(resend) {
		flush(g, nil)
	}
	return entries
}

// RebuildStatus is a causal replica's store rebuild (see PrepareRebuild):
// the one under way, or else the last one this incarnation finished.
type RebuildStatus struct {
	// Rebuilding: the keys this node owns are refused until every node
	// of every other region seeded them.
	Rebuilding bool `json:"rebuilding"`
	// Waiting are the nodes of other regions not done seeding yet.
	Waiting []consistency.NodeID `json:"waiting,omitempty"`
	// SeededBy are the nodes that said they seeded it; Partial those of
	// them that were rebuilding themselves (noted, not stored).
	SeededBy []consistency.NodeID `json:"seeded_by,omitempty"`
	Partial  []consistency.NodeID `json:"partial,omitempty"`
	// Seeded counts the seeds stored or noted so far (this incarnation).
	Seeded int `json:"seeded"`
	// Refused counts the client requests refused for the keys being
	// rebuilt, RefusedKeys the distinct keys (at most maxRefusedKeys).
	Refused     int `json:"refused"`
	RefusedKeys int `json:"refused_keys"`
	// Began is the first round of the rebuild, Progress the last seed or
	// done received, Finished its end (zero while under way); times are
	// the replica's inputs.
	Began    time.Time `json:"began,omitzero"`
	Progress time.Time `json:"progress,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	// Lost are the own writes found lost by the rebuilds of this
	// incarnation.
	Lost []LostVersion `json:"lost,omitempty"`
	// Resent counts the entries the last finished rebuild queued to
	// re-send an own write some region lacked but a copy still held (one
	// per write and region lacking it; not lost).
	Resent int `json:"resent"`
	// Feeding are the rebuilding nodes of other regions this node is
	// seeding (not yet acknowledged in full).
	Feeding []consistency.NodeID `json:"feeding,omitempty"`
	// Held counts the keys a finished rebuild still refuses until a
	// write they depend on, held by another rebuilding region, arrives
	// (rebuildhold.go; -1 while the records are not scanned yet).
	Held int `json:"held"`
	// GoneApplied counts the gone notices of other nodes' lost writes
	// applied here (Stats.GoneApplied).
	GoneApplied int64 `json:"gone_applied"`
	// ReplacedApplied counts the notices of other nodes' re-sent writes
	// that newer writes replaced, applied here (Stats.ReplacedApplied;
	// nothing lost).
	ReplacedApplied int64 `json:"replaced_applied"`
}

// status is rb's progress as a RebuildStatus (not Rebuilding, Waiting,
// Finished, Lost, Feeding, GoneApplied or ReplacedApplied: the replica's).
func (rb *rebuilding) status() RebuildStatus {
	return RebuildStatus{Seeded: rb.seeded, SeededBy: sortedKeys(rb.done), Partial: sortedKeys(rb.partial),
		Refused: rb.refused, RefusedKeys: len(rb.refusedKeys), Began: rb.began, Progress: rb.progress}
}

// RebuildStatus reports the replica's store rebuild.
func (r *Replica) RebuildStatus() RebuildStatus {
	var s RebuildStatus
	if r.last != nil {
		s = *r.last
	}
	if rb := r.rebuild; rb != nil {
		s = rb.status()
		s.Rebuilding, s.Waiting = true, r.rebuildWaiting()
	}
	s.Lost = append([]LostVersion(nil), r.lost...)
	feeding := map[consistency.NodeID]bool{}
	for _, p := range r.feeds {
		feeding[p.to] = true
	}
	s.Feeding = sortedKeys(feeding)
	s.GoneApplied, s.ReplacedApplied = r.stats.GoneApplied, r.stats.ReplacedApplied
	if h := r.postRebuild; h != nil {
		s.Held = len(h.Keys)
		if h.Scan {
			s.Held = -1
		}
	}
	return s
}
