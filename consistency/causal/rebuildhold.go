package causal

import (
	"errors"
	"fmt"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Keys held after a rebuild. When two nodes of different regions rebuild
// at once, the one that finishes first may hold a write (salvaged, or
// from a third region's seed) that depends on a write of the other
// rebuilding node to a key this node owns: that write comes only by
// replication once the other rebuild finished (a partial seed is not
// stored). Served meanwhile, a reader in this region could see the later
// write and not the earlier one (same-region sessions skip the dependency
// wait). So a finishing rebuild scans the records this node owns and
// keeps refusing every key with a sibling whose dependency on a key this
// node owns is not visible here, until it is (checked every tick).
//
// A write owned by another node of this region may depend on such a
// missing write too (it read it here before the crash); that node does
// not know this one was rebuilt and serves it. So the finishing rebuild
// also keeps refusing each own key whose partial seed (the record of its
// owner in the other rebuilding region) holds a write of that owner not
// visible here, until it is: the later write is served, but the missing
// one is not read as absent meanwhile (a same-region session skips the
// dependency wait, so it would be). The write comes by replication once
// the other rebuild finished (re-sent if this region lacks it), or, lost,
// as a gone notice; both make it visible. A write of that owner its
// partial seed lacks and no region holds is lost, as every lost write (a
// reader sees the key's older state).
//
// Keys this node no longer owns (its region's owners changed) are dropped
// at each tick: their new owner serves them.
//
// Ordering rule: the finishing batch marks the scan pending (Scan), with
// the partial seeds' writes, in the same commit that deletes the rebuild
// mark, so a crash before the scan is written keeps every own key refused
// until it is redone (the partial seeds' writes are kept in Keys).

// keyRebuildHeld stores a rebuildHeld while a finished rebuild still
// refuses some keys.
const keyRebuildHeld = "m/rebuild-held"

// rebuildHeld is what a finished rebuild still waits for.
type rebuildHeld struct {
	// Scan: the records have not been scanned yet (every own key is
	// refused until they are).
	Scan bool `json:"scan,omitempty"`
	// Keys: per key, the dependencies on keys this node owns, and the
	// writes of the key a partial seed held, that are not visible here
	// yet.
	Keys map[string][]Dep `json:"keys,omitempty"`
}

// heldKey reports whether a finished rebuild still refuses key.
func (r *Replica) heldKey(key string) bool {
	h := r.postRebuild
	return h != nil && r.region != "" && r.owner(r.region, key) == r.id && (h.Scan || len(h.Keys[key]) > 0)
}

// loadRebuildHeld reads what a finished rebuild still waits for (at
// recover).
func (r *Replica) loadRebuildHeld() error {
	b, err := r.eng.Get([]byte(keyRebuildHeld))
	switch {
	case errors.Is(err, core.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("causal: read rebuild holds: %w", err)
	}
	var h rebuildHeld
	if err := openJSON([]byte(keyRebuildHeld), b, &h); err != nil {
		h = rebuildHeld{Scan: true} // scanned again: the records say it all
	}
	r.postRebuild = &h
	return nil
}

// tickRebuildHeld scans the records if a finished rebuild has not yet,
// and releases the keys whose dependencies became visible.
func (r *Replica) tickRebuildHeld() {
	h := r.postRebuild
	if h == nil {
		return
	}
	next := rebuildHeld{Keys: map[string][]Dep{}}
	cand := h.Keys
	if h.Scan {
		scanned, err := r.scanRebuildHeld()
		if err != nil {
			return // every own key stays refused; scanned again next tick
		}
		for key, deps := range h.Keys { // the partial seeds' writes
			scanned[key] = r.merge(scanned[key], deps...)
		}
		cand = scanned
	}
	changed := h.Scan
	for key, deps := range cand {
		if r.region == "" || r.owner(r.region, key) != r.id {
			changed = true // no longer this node's: its owner serves it
			continue
		}
		for _, d := range deps {
			if ok, err := r.visible(d); err != nil || !ok {
				next.Keys[key] = append(next.Keys[key], d)
			}
		}
		changed = changed || len(next.Keys[key]) != len(deps)
	}
	if !changed {
		return
	}
	b := r.eng.NewBatch()
	defer b.Close()
	if len(next.Keys) == 0 {
		b.Delete([]byte(keyRebuildHeld))
	} else {
		b.Set([]byte(keyRebuildHeld), sealJSON([]byte(keyRebuildHeld), next))
	}
	if err := b.Commit(false); err != nil {
		return // kept as it was; tried again next tick
	}
	r.postRebuild = &next
	if len(next.Keys) == 0 {
		r.postRebuild = nil
	}
}

// scanRebuildHeld returns, per key this node owns, its siblings'
// dependencies on other keys this node owns (the caller keeps those not
// visible).
func (r *Replica) scanRebuildHeld() (map[string][]Dep, error) {
	out := map[string][]Dep{}
	it := r.eng.NewIter([]byte(prefixValue), []byte("v0"))
	for ok := it.First(); ok; ok = it.Next() {
		key := string(it.Key()[len(prefixValue):])
		var rec record
		if r.owner(r.region, key) != r.id || openJSON(it.Key(), it.Value(), &rec) != nil {
			continue // not this node's, or unreadable (refused until repaired)
		}
		for _, s := range rec.Sibs {
			for _, d := range s.Deps {
				if d.Key != key && r.owner(r.region, d.Key) == r.id {
					out[key] = r.merge(out[key], d)
				}
			}
		}
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("causal: scan records after the rebuild: %w", err)
	}
	return out, nil
}

// awaitPartialSeed notes, during a rebuild, the writes of node from
// (which answered this rebuild partially, rebuilding itself) that its
// record rec of key holds: the finished rebuild refuses key until they are
// visible here. Only from's own writes: its rebuild ends by re-sending
// them to this region or sending their gone notices (judgeOwn), so each
// becomes visible here; another node's version in rec may have been seen
// only through a write's Over and would never be.
func (r *Replica) awaitPartialSeed(from consistency.NodeID, key string, rec record) {
	if rb := r.rebuild; rb != nil {
		if v := seenOf(rec.Seen, string(from)); !v.IsZero() {
			rb.awaited[key] = r.merge(rb.awaited[key], Dep{Key: key, V: v})
		}
	}
}
