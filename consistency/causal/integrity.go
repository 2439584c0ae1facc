package causal

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Every value the replica stores (records, replication entries, meta) is
// sealed: a 4-byte big-endian CRC-32C (Castagnoli) of the engine key
// followed by the JSON payload, then the payload. A value that fails its
// checksum (or does not decode) is reported as core.ErrCorruption instead
// of being decoded into a wrong value, clock or queue.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// seal returns the stored form of payload under key.
func seal(key, payload []byte) []byte {
	crc := crc32.Update(crc32.Checksum(key, crcTable), crcTable, payload)
	return append(binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(payload)), crc), payload...)
}

// sealJSON seals the JSON encoding of v under key.
func sealJSON(key []byte, v any) []byte { return seal(key, mustJSON(v)) }

// openJSON checks a stored value's checksum and decodes its payload into
// dst; failures wrap core.ErrCorruption.
func openJSON(key, v []byte, dst any) error {
	if len(v) < 4 {
		return fmt.Errorf("causal: %q: %d bytes, shorter than its checksum: %w", key, len(v), core.ErrCorruption)
	}
	p := v[4:]
	if binary.BigEndian.Uint32(v) != crc32.Update(crc32.Checksum(key, crcTable), crcTable, p) {
		return fmt.Errorf("causal: %q: checksum mismatch: %w", key, core.ErrCorruption)
	}
	if err := json.Unmarshal(p, dst); err != nil {
		return fmt.Errorf("causal: %q: %w: %w", key, core.ErrCorruption, err)
	}
	return nil
}

// recover loads the persisted sequence number, clock and outbound
// replication queue after a (re)start, checking every value.
//
// A corrupt meta (sequence number and clock) is rebuilt: the sequence
// number from the queue's keys (an entry's key holds its sequence number),
// the clock from the versions in the queue. Neither needs more for safety:
// acknowledgements name the write's version as well as its sequence number,
// so a reused sequence number cannot retire another write's entry, and a
// local write moves the clock past the key's stored versions and its
// client's dependencies before it takes a version (execute).
//
// A corrupt replication entry is a write that may not have reached one
// region yet. Under last-writer-wins it is rebuilt from the store: every
// record whose current version is this node's write is queued again for
// every other region (receivers apply a write only when it is newer, so the
// copies are harmless). A lost entry whose record was since overwritten by
// a newer write needs no resend: the newer write reaches every region from
// its own origin and covers it, as value and as dependency. In siblings
// mode a replaced sibling cannot be rebuilt from the store (its value is
// gone but a region may still wait for it as a dependency), so recovery
// fails with core.ErrCorruption rather than start with a hole.
func (r *Replica) recover() error {
	metaLost := false
	b, err := r.eng.Get([]byte(keyMeta))
	switch {
	case errors.Is(err, core.ErrNotFound):
	case err != nil:
		return fmt.Errorf("causal: read meta: %w", err)
	default:
		var m meta
		if err := openJSON([]byte(keyMeta), b, &m); err != nil {
			metaLost = true
			r.stats.CorruptMeta++
		} else {
			r.seq, r.clock.wall, r.clock.logical = m.Seq, m.Wall, m.Logical
		}
	}
	if err := r.loadRebuildMark(); err != nil {
		return err
	}
	if err := r.loadRebuildHeld(); err != nil {
		return err
	}
	var lost []uint64
	it := r.eng.NewIter([]byte(prefixQueue), []byte("q0"))
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(prefixQueue)+8 {
			continue
		}
		seq := binary.BigEndian.Uint64(k[len(prefixQueue):])
		r.seq = max(r.seq, seq)
		var e outEntry
		if err := openJSON(k, it.Value(), &e); err != nil || e.Seq != seq {
			lost = append(lost, seq)
			continue
		}
		r.clock.observe(e.Rec.V)
		r.queue[e.Seq] = &e
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("causal: scan queue: %w", err)
	}
	if len(lost) > 0 {
		r.stats.CorruptQueue += int64(len(lost))
		if r.siblings {
			return fmt.Errorf("causal: %d entries (first seq %d): %w: %w", len(lost), lost[0], ErrLostReplication, core.ErrCorruption)
		}
		if err := r.requeueOwnWrites(lost); err != nil {
			return err
		}
	} else if metaLost && r.rebuild == nil {
		// Rewrite the rebuilt meta so that the next restart reads it back.
		// Best effort: should this fail, the next local write rewrites it,
		// and until then a restart rebuilds it again the same way.
		bt := r.eng.NewBatch()
		defer bt.Close()
		bt.Set([]byte(keyMeta), sealJSON([]byte(keyMeta), meta{Seq: r.seq, Wall: r.clock.wall, Logical: r.clock.logical}))
		if bt.Commit(false) == nil {
			r.out.Sync = true
		}
	}
	return nil
}

// requeueOwnWrites rebuilds lost replication entries under last-writer-wins:
// it deletes them and queues every record whose current version is this
// node's write again for every other region, in one batch with the meta.
// A corrupt record makes it fail (its version, possibly this node's
// unreplicated write, is unknown).
func (r *Replica) requeueOwnWrites(lost []uint64) error {
	type own struct {
		key string
		rec record
	}
	var mine []own
	it := r.eng.NewIter([]byte(prefixValue), []byte("v0"))
	for ok := it.First(); ok; ok = it.Next() {
		var rec record
		if err := openJSON(it.Key(), it.Value(), &rec); err != nil {
			it.Close()
			return fmt.Errorf("causal: rebuilding %d lost replication entries: %w", len(lost), err)
		}
		r.clock.observe(rec.V)
		if rec.V.Node == string(r.id) {
			mine = append(mine, own{key: string(it.Key()[len(prefixValue):]), rec: rec})
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("causal: scan records: %w", err)
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].key < mine[j].key })
	b := r.eng.NewBatch()
	defer b.Close()
	for _, seq := range lost {
		b.Delete(queueKey(seq))
	}
	for _, w := range mine {
		deps := r.prune(w.rec.Deps)
		first := r.seq + 1
		for _, g := range r.regions {
			if g.name == r.region {
				continue
			}
			r.seq++
			e := &outEntry{Seq: r.seq, First: first, Region: g.name, Key: w.key, Rec: w.rec, Deps: deps}
			b.Set(queueKey(e.Seq), sealJSON(queueKey(e.Seq), e))
			r.queue[e.Seq] = e
		}
	}
	b.Set([]byte(keyMeta), sealJSON([]byte(keyMeta), meta{Seq: r.seq, Wall: r.clock.wall, Logical: r.clock.logical}))
	r.stats.Requeued += int64(len(mine))
	// Best effort too: should the commit fail, the rebuilt entries are
	// sent from memory, and the corrupt ones stay on disk, so a restart
	// before the next successful commit rebuilds them again.
	if b.Commit(false) == nil {
		r.out.Sync = true
	}
	return nil
}

// Message kinds of a corrupt record's repair.
const (
	kindFetch      = "fetch"       // owner -> owner of the key in another region: your record of Entry.Key?
	kindFetchReply = "fetch-reply" // its record (zero when it has none), from Region
)

// RepairMetric is the name of the samples counting corrupt records this
// replica rebuilt from the other regions (label "record"; a node counts
// them in dialkv_corruption_repairs_total and logs them).
const RepairMetric = "dialkv_corruption_repairs"

// repair is the re-fetch of a record that failed its checksum: the
// answers of the key's owner in every other region, then (applying) the
// wait for the merged record's dependencies.
type repair struct {
	// id tells this repair's answers from those of an earlier one of the
	// same key (a late or duplicated fetch-reply holds an older state).
	id       uint64
	answers  map[string]record // region -> its owner's record of the key
	sent     time.Time
	applying bool
	// own are this node's writes of the key whose last replication entry
	// was retired during the repair: an answer sent before the other
	// region applied one of them does not hold it, and the queue no
	// longer does either.
	own []record
}

// noteCorrupt starts the repair of key's record, which failed its
// checksum here: the owners of the key in the other regions are asked for
// theirs at the next Tick (repairTick). With a single region there is
// no other copy and the record stays corrupt (reads answer CORRUPTION).
func (r *Replica) noteCorrupt(key string) {
	if _, ok := r.repairs[key]; ok || r.region == "" || len(r.regions) < 2 {
		return
	}
	r.nextID++
	r.repairs[key] = &repair{id: r.nextID, answers: map[string]record{}}
}

// repairWritten cancels the repair of key after its record was stored
// by the ordinary path (a write, a remote write or a handoff read it and
// rewrote it, sealed): the corruption was a failed read, and the record
// is sound again.
func (r *Replica) repairWritten(key string) {
	delete(r.repairs, key)
}

// repairTick (re)sends the fetches of the repairs still waiting for
// answers: at once for a new one, then every 4 retries.
func (r *Replica) repairTick(now time.Time) {
	if len(r.repairs) == 0 {
		return
	}
	keys := make([]string, 0, len(r.repairs))
	for k, rp := range r.repairs {
		if !rp.applying && (rp.sent.IsZero() || now.Sub(rp.sent) >= 4*r.retry) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		rp := r.repairs[k]
		rp.sent = now
		for _, g := range r.regions {
			if _, ok := rp.answers[g.name]; ok || g.name == r.region {
				continue
			}
			r.send(r.owner(g.name, k), msg{Kind: kindFetch, ID: rp.id, Entry: &outEntry{Key: k}, Region: r.region})
		}
	}
}

// onFetch answers another region's repair with this node's record of the
// key, if it owns the key and its record is sound.
func (r *Replica) onFetch(from consistency.NodeID, in msg) {
	if in.Entry == nil || r.region == "" || r.owner(r.region, in.Entry.Key) != r.id || r.rebuilds(in.Entry.Key) {
		return // not the owner under this node's list (or rebuilding it): the asker resends
	}
	rec, err := r.load(in.Entry.Key)
	if err != nil {
		return // corrupt here too (and being repaired): no answer
	}
	r.send(from, msg{Kind: kindFetchReply, ID: in.ID, Entry: &outEntry{Key: in.Entry.Key, Rec: rec}, Region: r.region})
}

// onFetchReply collects a region's answer; once every other region has
// answered, the merged record is applied like a remote write: after its
// dependencies are visible here.
//
// The merge covers every write the corrupt record can have held: a write
// from another region is at its origin (or a newer one is); this node's
// own write is in every other region once they all acknowledged it, and
// in the outbound queue until then (its entries are merged too).
func (r *Replica) onFetchReply(now time.Time, in msg) {
	if in.Entry == nil {
		return
	}
	key := in.Entry.Key
	rp, ok := r.repairs[key]
	if !ok || rp.applying || rp.id != in.ID {
		return
	}
	rp.answers[in.Region] = in.Entry.Rec
	for _, g := range r.regions {
		if _, ok := rp.answers[g.name]; !ok && g.name != r.region {
			return
		}
	}
	regions := make([]string, 0, len(rp.answers))
	for reg := range rp.answers {
		regions = append(regions, reg)
	}
	sort.Strings(regions)
	var merged record
	for _, reg := range regions {
		merged, _ = mergeRecords(merged, rp.answers[reg], r.siblings)
		r.clock.observe(rp.answers[reg].V)
	}
	own := append([]record(nil), rp.own...)
	for _, seq := range sortedKeys(r.queue) {
		if e := r.queue[seq]; e.Key == key {
			own = append(own, e.Rec)
		}
	}
	sort.SliceStable(own, func(i, j int) bool { return own[i].V.Less(own[j].V) })
	for _, w := range own {
		switch {
		case w.Gone && r.siblings && !seenOf(merged.Seen, w.V.Node).AtLeast(w.V):
			merged = applyGone(merged, w.V) // a gone notice of a lost write (rebuild.go)
		case w.Gone:
		case r.siblings && !seenOf(merged.Seen, w.V.Node).AtLeast(w.V):
			merged = applySibling(merged, w)
		case !r.siblings && merged.V.Less(w.V):
			merged = w
		}
	}
	// Its dependencies, except on the key itself (the merged record
	// holds those versions).
	var deps []Dep
	for _, s := range append([]record{merged}, merged.Sibs...) {
		for _, d := range s.Deps {
			if d.Key != key {
				deps = r.merge(deps, d)
			}
		}
	}
	rp.applying = true
	store := r.unlessHeld(func(now time.Time, _ []Dep) {
		if r.repairs[key] != rp {
			return // cancelled meanwhile
		}
		delete(r.repairs, key)
		if r.region == "" || r.owner(r.region, key) != r.id {
			return // the key moved meanwhile: its new owner has its own copy
		}
		b, err := r.eng.Get([]byte(prefixValue + key))
		if err == nil {
			var cur record
			if openJSON([]byte(prefixValue+key), b, &cur) == nil {
				merged, _ = mergeRecords(cur, merged, r.siblings) // sound again meanwhile
			}
		}
		bt := r.eng.NewBatch()
		bt.Set([]byte(prefixValue+key), sealJSON([]byte(prefixValue+key), merged))
		err = bt.Commit(false)
		bt.Close()
		if err != nil {
			r.noteCorrupt(key) // not stored: start again
			return
		}
		r.out.Sync = true
		r.stats.Repaired++
		r.changed(key)
		r.recheck(now, key)
	})
	r.await(now, r.prune(deps), time.Time{}, store, func(time.Time) {})
}
