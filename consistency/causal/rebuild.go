package causal

import (
	"encoding/binary"
	"errors"
	"fmt"
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
//     for every region, the newest own write of each key the old store
//     held with what that region's seed and the salvaged entries give it:
//     a write no copy holds is lost (LostVersionMetric samples, one per
//     key and region, and Stats.LostVersions). The salvaged entries'
//     dependencies on such lost writes are dropped (they can never become
//     visible there), the mark is deleted, and the node serves again.
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
}

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
	var salvaged []*outEntry
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
	r.rebuild = &rebuilding{id: r.nextID, mark: m, done: map[consistency.NodeID]bool{}, seen: map[string]map[string]Version{}}
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
	for _, n := range r.rebuildWaiting() {
		r.send(n, msg{Kind: kindRebuildReq, ID: rb.id, Region: r.region})
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
// node whose own store is being rebuilt does not answer (its store is
// partial: its done would make the asker report as lost, or take as
// held, what this region has not given back yet); the asker asks again
// every round and is answered once this rebuild finished. Two nodes of
// different regions rebuilding at once therefore wait for each other.
func (r *Replica) onRebuildReq(from consistency.NodeID, in msg) {
	if r.region == "" || in.Region == "" || in.Region == r.region || in.ID == 0 || r.rebuild != nil {
		return
	}
	if r.feedID[from] != in.ID {
		r.dropFeeds(from)
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
	r.send(to, msg{Kind: kindRebuildDone, ID: r.feedID[to]})
}

// sendFeeds (re)sends the seeds for rebuilding nodes that are due.
func (r *Replica) sendFeeds(now time.Time) {
	r.sendDueSeeds(now, r.feeds, func(to consistency.NodeID) uint64 { return r.feedID[to] },
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
func (r *Replica) noteRebuildSeed(region, key string, rec record) {
	rb := r.rebuild
	if rb == nil {
		return
	}
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
func (r *Replica) onRebuildDone(from consistency.NodeID, in msg) {
	rb := r.rebuild
	if rb == nil || in.ID != rb.id {
		return
	}
	rb.done[from] = true
	if len(r.rebuildWaiting()) > 0 {
		return
	}
	if err := r.finishRebuild(); err != nil {
		rb.done = map[consistency.NodeID]bool{} // ask again
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

// finishRebuild ends a rebuild once every seed is in: it reports what no
// copy holds, drops the salvaged entries' dependencies on it, and deletes
// the mark.
func (r *Replica) finishRebuild() error {
	rb := r.rebuild
	// has[region][key]: the newest own write of key that region holds
	// (its seed) or will hold once the salvaged entries for it before
	// the one considered are applied. Ordering rule: in sequence order,
	// an entry's dependency on an own write its region will never have
	// is dropped — waiting for it would block the entry (and every later
	// write of its key) there for good; an entry cannot satisfy its own
	// or an earlier entry's dependencies.
	has := map[string]map[string]Version{}
	for _, g := range r.regions {
		if g.name == r.region {
			continue
		}
		has[g.name] = map[string]Version{}
		for k, v := range rb.seen[g.name] {
			has[g.name][k] = v
		}
	}
	// The changes are collected and written once each, and applied to
	// the in-memory queue only after the batch committed: with three
	// regions or more a write has one entry per region, each dropping
	// its region's lost dependencies from the same stored record (the
	// record's drops are their union), and a failed commit leaves the
	// queue as it was for the next attempt.
	entries := map[uint64]outEntry{}
	recs := map[string]record{}
	for _, seq := range sortedKeys(r.queue) {
		e := r.queue[seq]
		h, ok := has[e.Region]
		if !ok {
			continue
		}
		gone := func(d Dep) bool { return d.V.Node == string(r.id) && h[d.Key].Less(d.V) }
		if slices.ContainsFunc(e.Deps, gone) || slices.ContainsFunc(e.Rec.Deps, gone) {
			ne := *e
			ne.Deps = slices.DeleteFunc(slices.Clone(e.Deps), gone)
			ne.Rec.Deps = slices.DeleteFunc(slices.Clone(e.Rec.Deps), gone)
			entries[seq] = ne
			// The stored sibling too: a reader inherits its
			// dependencies, and a write of that reader would wait for
			// the lost one.
			cur, ok := recs[e.Key]
			if !ok {
				var err error
				if cur, err = r.load(e.Key); err != nil {
					cur = record{}
				}
			}
			if i := slices.IndexFunc(cur.Sibs, func(x record) bool { return x.V == e.Rec.V }); i >= 0 {
				cur.Sibs[i].Deps = slices.DeleteFunc(cur.Sibs[i].Deps, gone)
				recs[e.Key] = cur
			}
		}
		if h[e.Key].Less(e.Rec.V) {
			h[e.Key] = e.Rec.V
		}
	}
	b := r.eng.NewBatch()
	defer b.Close()
	for _, seq := range sortedKeys(entries) {
		ne := entries[seq]
		b.Set(queueKey(seq), sealJSON(queueKey(seq), ne))
	}
	for _, k := range sortedKeys(recs) {
		b.Set([]byte(prefixValue+k), sealJSON([]byte(prefixValue+k), recs[k]))
	}
	var lost []LostVersion
	keys := make([]string, 0, len(rb.mark.Own))
	for k := range rb.mark.Own {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, g := range r.regions {
			if h, ok := has[g.name]; ok && h[k].Less(rb.mark.Own[k]) {
				lost = append(lost, LostVersion{Key: k, V: rb.mark.Own[k], Region: g.name, Has: h[k]})
			}
		}
	}
	b.Delete([]byte(keyRebuild))
	if err := b.Commit(false); err != nil {
		return fmt.Errorf("causal: finish rebuild: %w", err)
	}
	for seq, ne := range entries {
		r.queue[seq].Deps, r.queue[seq].Rec.Deps = ne.Deps, ne.Rec.Deps
	}
	r.out.Sync = true
	r.rebuild = nil
	r.stats.LostVersions += int64(len(lost))
	for _, l := range lost {
		r.lags = append(r.lags, consistency.Sample{Name: LostVersionMetric, Label: l.String(), Value: 1})
	}
	r.lags = append(r.lags, consistency.Sample{Name: RebuiltMetric, Label: fmt.Sprintf("seeds=%d salvaged=%d corrupt-entries=%d", rb.seeded, rb.mark.Salvaged, len(rb.mark.Lost)), Value: float64(rb.seeded)})
	r.lost = append(r.lost, lost...)
	// The salvaged entries go out at the next round.
	for _, seq := range sortedKeys(r.queue) {
		r.queue[seq].every, r.queue[seq].sent = 0, time.Time{}
	}
	return nil
}

// RebuildStatus is a causal replica's store rebuild (see PrepareRebuild).
type RebuildStatus struct {
	// Rebuilding: the keys this node owns are refused until every node
	// of every other region seeded them.
	Rebuilding bool
	// Waiting are the nodes of other regions not done seeding yet.
	Waiting []consistency.NodeID
	// Seeded counts the seeds stored so far (this incarnation).
	Seeded int
	// Lost are the own writes found lost by the rebuilds of this
	// incarnation.
	Lost []LostVersion
}

// RebuildStatus reports the replica's store rebuild.
func (r *Replica) RebuildStatus() RebuildStatus {
	s := RebuildStatus{Lost: append([]LostVersion(nil), r.lost...)}
	if rb := r.rebuild; rb != nil {
		s.Rebuilding, s.Seeded, s.Waiting = true, rb.seeded, r.rebuildWaiting()
	}
	return s
}
